//! Abuse of the key server over raw connections: oversized headers, a
//! client that sends its request too slowly, and one address spraying
//! logins over many accounts. Each is answered with a clear 4xx (or the
//! connection is closed) and the server keeps serving others.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use medseal_e2e::{Backend, Client, KeyServer};
use serde_json::json;

fn addr(ks: &KeyServer) -> String {
    ks.base.trim_start_matches("http://").to_owned()
}

fn status_of(reply: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(reply).ok()?.lines().next()?.to_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn oversized_headers_slow_clients_and_login_spraying_are_refused() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.start();

    // 256 KiB of header (past the 128 KiB the HTTP layer buffers): refused
    // with 431, not buffered without end.
    let mut s = TcpStream::connect(addr(&ks)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let big = "a".repeat(256 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes());
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert_eq!(
        status_of(&reply),
        Some(431),
        "{}",
        String::from_utf8_lossy(&reply[..reply.len().min(200)])
    );

    // A client that starts a request and stalls is cut off (request
    // timeout 10 s), while others are served meanwhile.
    let mut slow = TcpStream::connect(addr(&ks)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        .unwrap();
    let t = Instant::now();
    let anon = Client::new(&ks.base, "d");
    assert_eq!(
        anon.get("/healthz").status,
        200,
        "others are served while a client stalls"
    );
    let mut reply = Vec::new();
    let _ = slow.read_to_end(&mut reply);
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(25),
        "the stalled connection was closed after {waited:?}"
    );
    if !reply.is_empty() {
        assert_eq!(
            status_of(&reply),
            Some(408),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }

    // One address trying many accounts: limited per address, with a JSON
    // body and Retry-After, whatever the accounts.
    let mut limited = None;
    for i in 0..40 {
        let r = anon.post(
            "/v1/sessions",
            &json!({"email": format!("user{i}@st.example"), "password": "guess", "device_id": "d"}),
        );
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let (after, r) = limited.expect("the per-address limit never engaged");
    assert_eq!(after, 30, "30 attempts per minute per address");
    assert_eq!(r.json["error"], "rate_limited");
    assert!(r.headers.get("retry-after").is_some());
    assert!(ks.admin(&["audit", "verify"]).status.success());
}

/// Behind a trusted proxy, the client address is the entry the proxy
/// appended (the rightmost), never text the client wrote further left or in
/// `Forwarded:`. Here the test plays both the client and the proxy: each
/// request carries a different spoofed address and the same proxy-added one.
#[test]
fn forwarded_for_takes_the_proxy_entry_not_the_clients() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.start_with(&["--trust-forwarded-for"]);
    let http = reqwest::blocking::Client::new();
    let login = |spoof: &str, via: &str| {
        http.post(format!("{}/v1/sessions", ks.base))
            .header("X-Forwarded-For", format!("{spoof}, {via}"))
            .header("Forwarded", format!("for=\"{spoof}\""))
            .json(&json!({"email": "nobody@st.example", "password": "guess", "device_id": "d"}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let mut limited = None;
    for i in 0..45 {
        let status = login(&format!("10.0.{i}.1"), "192.0.2.7");
        if status == 429 {
            limited = Some(i);
            break;
        }
        assert_eq!(status, 401);
    }
    assert_eq!(limited, Some(30), "one limit for the one real client");
    // Another real client (another proxy entry) is not affected.
    assert_eq!(login("10.9.9.9", "192.0.2.8"), 401);
    // Text that is not an address falls back to the peer, never stored.
    assert_eq!(login("192.0.2.9", "=SUM(1+44)*cmd|x!A0"), 401);

    let out = ks.admin(&["audit", "export", "--format", "json"]);
    assert!(out.status.success());
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ips: std::collections::BTreeSet<String> = events
        .as_array()
        .or_else(|| events["events"].as_array())
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "session.failed")
        .filter_map(|e| e["client_ip"].as_str().map(str::to_owned))
        .collect();
    let want: std::collections::BTreeSet<String> = ["192.0.2.7", "192.0.2.8", "127.0.0.1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(ips, want, "stored addresses");
}
