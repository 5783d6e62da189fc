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
    // One limit for the one real client: 30 a minute, counted in fixed
    // windows, so a run that straddles a window's end may see up to 44
    // before the first refusal, never 45 distinct "clients".
    let first = limited.expect("45 logins from one client were never limited");
    assert!((30..45).contains(&first), "limited after {first}");
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

/// `/metrics` can be kept off the public address and behind a token: on its
/// own listener it answers only with the token, the public address answers
/// 404, the metrics listener serves nothing else, and a token file other
/// users can read stops the start.
#[test]
fn metrics_are_served_only_where_and_to_whom_configured() {
    use std::os::unix::fs::PermissionsExt;
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    let token_file = ks.dir.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-me-7f3a9c\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let metrics_addr = format!("127.0.0.1:{}", medseal_e2e::free_port());
    let open = std::process::Command::new(medseal_e2e::medseal_bin())
        .args(["keyserver", "serve", "--listen", &metrics_addr])
        .args(["--metrics-token-file", token_file.to_str().unwrap()])
        .args(ks.store_args())
        .env_remove("MEDSEAL_KEYRING")
        .output()
        .unwrap();
    assert!(!open.status.success());
    let err = String::from_utf8_lossy(&open.stderr);
    assert!(err.contains("chmod 600"), "{err}");

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ks.start_with(&[
        "--metrics-listen",
        &metrics_addr,
        "--metrics-token-file",
        token_file.to_str().unwrap(),
    ]);
    let http = reqwest::blocking::Client::new();
    let get = |url: String, token: Option<&str>| {
        let mut r = http.get(url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    let on_metrics = |path: &str| format!("http://{metrics_addr}{path}");
    assert_eq!(
        get(format!("{}/metrics", ks.base), Some("scrape-me-7f3a9c")).0,
        404
    );
    assert_eq!(get(on_metrics("/metrics"), None).0, 401);
    assert_eq!(get(on_metrics("/metrics"), Some("scrape-me-7f3a9")).0, 401);
    let (status, body) = get(on_metrics("/metrics"), Some("scrape-me-7f3a9c"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("medseal_keyserver_"), "{body}");
    assert_eq!(get(on_metrics("/healthz"), None).0, 404);
    assert_eq!(get(on_metrics("/v1/audit/checkpoint"), None).0, 404);
    // The public address still serves the API.
    assert_eq!(get(format!("{}/healthz", ks.base), None).0, 200);
}
