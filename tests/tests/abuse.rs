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
