//! What the web app's capture page needs from the servers, end to end:
//!
//! - an organisation's receiving endpoint (`org set --endpoint-url`), shown
//!   to its members by `GET /v1/org`, sealed (a database edit reads as none
//!   and fails `audit verify`) and replayed by `audit verify`;
//! - the app's CSP `connect-src` naming every endpoint's origin, and
//!   following a change within its ten-second cache;
//! - send tickets (`POST /v1/sessions/ticket`): accepted by `GET
//!   /v1/sessions/current` alone, from the session's device alone, dead
//!   with the session (logout, disabled user), and refused when a bit of
//!   one is flipped;
//! - a receiving endpoint started with `--allow-origin` taking a report
//!   posted with a ticket as its token (202), answering CORS for that
//!   origin only.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use medseal_e2e::services::{ENDPOINT_PASSWORD, Endpoint};
use medseal_e2e::{Backend, Client, Device, KeyServer, both_backends, free_port};
use reqwest::blocking::multipart::{Form, Part};
use serde_json::{Value, json};

const PW: &str = "a long clinician password";
const ST: &str = "St Elsewhere";

/// St Elsewhere (admin Amy, clinician Alice, the endpoint's service
/// account) and Other (clinician Bob, guests from other.example allowed);
/// not started.
fn two_organisations(backend: Backend) -> KeyServer {
    let ks = KeyServer::new(backend);
    ks.org(ST);
    ks.org("Other");
    for (org, who, role) in [
        (ST, "amy@st.example", "admin"),
        (ST, "alice@st.example", "clinician"),
        ("Other", "bob@other.example", "clinician"),
    ] {
        ks.user(org, who, role, PW);
    }
    ks.user(ST, "endpoint@st.example", "service", ENDPOINT_PASSWORD);
    ks
}

fn csp(ks: &KeyServer) -> String {
    let r = reqwest::blocking::get(format!("{}/app/", ks.base)).expect("GET /app/");
    assert_eq!(r.status(), 200, "the web app is built into this server");
    r.headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("a CSP")
        .to_owned()
}

/// The `connect-src` directive of a CSP.
fn connect_src(csp: &str) -> String {
    csp.split(';')
        .map(str::trim)
        .find(|d| d.starts_with("connect-src"))
        .unwrap_or_default()
        .to_owned()
}

fn org_endpoints_are_shown_to_members_and_sealed(backend: Backend) {
    let mut ks = two_organisations(backend);
    // Refused: plain HTTP off loopback, not a URL, a path with a query.
    for bad in [
        "http://gw.st.example",
        "gw.st.example",
        "https://gw.st.example/?x=1",
    ] {
        let o = ks.admin(&["org", "set", "--org", ST, "--endpoint-url", bad]);
        assert!(!o.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    ks.admin_ok(&[
        "org",
        "set",
        "--org",
        ST,
        "--endpoint-url",
        "https://GW.st.example:8443/medseal/",
    ]);
    ks.admin_ok(&[
        "org",
        "set",
        "--org",
        "Other",
        "--endpoint-url",
        "https://gw.other.example",
        "--guests",
        "other.example",
    ]);
    let list: Value =
        serde_json::from_str(&ks.admin_ok(&["org", "list", "--format", "json"])).unwrap();
    let of = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {list}"))["endpoint_url"]
            .clone()
    };
    assert_eq!(of(ST), "https://gw.st.example:8443/medseal");
    assert_eq!(of("Other"), "https://gw.other.example");
    assert!(
        ks.admin_ok(&["org", "list"])
            .contains("https://gw.other.example")
    );
    ks.start();

    // Any member sees their own organisation, and only it.
    let alice = ks.login("alice@st.example", PW, "alice-phone");
    let r = alice.get("/v1/org");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json,
        json!({
            "name": ST,
            "endpoint_url": "https://gw.st.example:8443/medseal",
            "guests": "none",
            "drop_max_days": 30,
            "allowed_recipient_domains": [],
        })
    );
    let service = ks.login("endpoint@st.example", ENDPOINT_PASSWORD, "gw-1");
    assert_eq!(service.get("/v1/org").json["name"], ST);
    let bob = ks.login("bob@other.example", PW, "bob-phone");
    let r = bob.get("/v1/org");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["name"], "Other");
    assert_eq!(r.json["endpoint_url"], "https://gw.other.example");
    assert_eq!(r.json["guests"], "other.example");
    assert_eq!(Client::new(&ks.base, "x").get("/v1/org").status, 401);
    // In the OpenAPI document.
    let api: Value = reqwest::blocking::get(format!("{}/openapi.json", ks.base))
        .unwrap()
        .json()
        .unwrap();
    assert!(api["paths"]["/v1/org"]["get"].is_object());
    assert!(api["paths"]["/v1/sessions/ticket"]["post"].is_object());
    assert!(api["components"]["schemas"]["OrgInfo"].is_object());

    // Cleared: null. Every change is an event `audit verify` replays.
    ks.admin_ok(&["org", "set", "--org", "Other", "--endpoint-url", "none"]);
    let r = bob.get("/v1/org");
    assert_eq!(r.json["endpoint_url"], Value::Null, "{}", r.body);
    ks.admin_ok(&["audit", "verify"]);
    let trail: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    let details: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "org.updated")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.contains(&"receiving endpoint: https://gw.st.example:8443/medseal")
            && details.contains(&"receiving endpoint: none"),
        "{details:?}"
    );

    // An insider points St Elsewhere at their own server: without the
    // keyring the value does not count, and `audit verify` says so.
    ks.sql(&["UPDATE orgs SET endpoint_url = 'https://evil.example' WHERE name = 'St Elsewhere'"]);
    let r = alice.get("/v1/org");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["endpoint_url"], Value::Null);
    let o = ks.admin(&["audit", "verify"]);
    assert!(!o.status.success(), "audit verify missed the edit");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("settings of organisation St Elsewhere"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ks.admin_ok(&[
        "org",
        "set",
        "--org",
        ST,
        "--endpoint-url",
        "https://gw.st.example:8443/medseal",
    ]);
    assert_eq!(
        alice.get("/v1/org").json["endpoint_url"],
        "https://gw.st.example:8443/medseal"
    );
}

/// The app's CSP lets the browser connect to the server itself and to each
/// organisation's endpoint origin, deduplicated and sorted; a change shows
/// within the cache's ten seconds.
fn the_app_may_connect_to_the_endpoints(backend: Backend) {
    let mut ks = two_organisations(backend);
    for (org, url) in [
        (ST, "http://127.0.0.1:8700/"),
        ("Other", "https://gw.other.example:8443/intake"),
    ] {
        ks.admin_ok(&["org", "set", "--org", org, "--endpoint-url", url]);
    }
    ks.start();
    let policy = csp(&ks);
    assert_eq!(
        connect_src(&policy),
        "connect-src 'self' http://127.0.0.1:8700 https://gw.other.example:8443",
        "{policy}"
    );
    // The rest of the policy is as strict as ever.
    for part in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{policy}");
    }
    // Both organisations on one origin: named once.
    ks.admin_ok(&[
        "org",
        "set",
        "--org",
        "Other",
        "--endpoint-url",
        "http://127.0.0.1:8700/other",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = connect_src(&csp(&ks));
        if now == "connect-src 'self' http://127.0.0.1:8700" {
            break;
        }
        assert!(Instant::now() < deadline, "the CSP did not follow: {now}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A client of `ks` on `device` whose bearer token is `ticket`.
fn with_ticket(ks: &KeyServer, ticket: &str, device: &str) -> Client {
    let mut t = Client::new(&ks.base, device);
    t.token = Some(ticket.to_owned());
    t
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_ticket(c: &Client) -> String {
    let r = c.post("/v1/sessions/ticket", &json!({}));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json["ticket"].as_str().expect("ticket").to_owned()
}

/// `ticket` with one bit of its payload flipped.
fn flipped(ticket: &str, bit: usize) -> String {
    let (prefix, body) = ticket.split_at(ticket.find('_').expect("prefix") + 1);
    let mut raw = B64URL.decode(body).expect("base64url");
    raw[bit / 8] ^= 1 << (bit % 8);
    format!("{prefix}{}", B64URL.encode(raw))
}

fn tickets_prove_a_session_to_one_call_only(backend: Backend) {
    let mut ks = two_organisations(backend);
    ks.start();
    let alice = ks.login("alice@st.example", PW, "alice-phone");
    let r = alice.post("/v1/sessions/ticket", &json!({}));
    assert_eq!(r.status, 201, "{}", r.body);
    let ticket = r.json["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("mstk_"), "{ticket}");
    let expires = r.json["expires_at"].as_str().unwrap();
    assert!(!ks.log_text().contains(&ticket), "a ticket is never logged");

    // Who: the same answer as the session's own.
    let own = alice.get("/v1/sessions/current");
    let t = with_ticket(&ks, &ticket, "alice-phone");
    let by_ticket = t.get("/v1/sessions/current");
    assert_eq!(by_ticket.status, 200, "{}", by_ticket.body);
    assert_eq!(by_ticket.json, own.json);
    assert_eq!(by_ticket.json["email"], "alice@st.example");
    // Ten minutes at most.
    let expires = medseal_keyserver::time::parse_rfc3339(expires).unwrap();
    let left = expires - now_ms();
    assert!(left > 9 * 60_000 && left <= 10 * 60_000, "{left} ms");

    // Another device: refused, and the session itself lives on.
    assert_eq!(
        with_ticket(&ks, &ticket, "mallory-laptop")
            .get("/v1/sessions/current")
            .status,
        401
    );
    assert_eq!(alice.get("/v1/sessions/current").status, 200);

    // Every other call refuses it.
    assert_eq!(
        t.post(
            "/v1/keys",
            &json!({"report_id": "r-1", "recipients": ["bob@other.example"]})
        )
        .status,
        401
    );
    let amy = ks.login("amy@st.example", PW, "amy-desk");
    let amy_ticket = with_ticket(&ks, &new_ticket(&amy), "amy-desk");
    assert_eq!(amy_ticket.get("/v1/sessions/current").status, 200);
    for path in ["/v1/audit", "/v1/users", "/v1/org"] {
        let r = amy_ticket.get(path);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(r.json["error"], "unauthorized");
    }
    assert_eq!(t.post("/v1/sessions/ticket", &json!({})).status, 401);
    assert_eq!(t.delete("/v1/sessions/current").status, 401);
    assert_eq!(alice.get("/v1/sessions/current").status, 200);

    // A bit flipped anywhere — the session it names, its expiry, its MAC —
    // and it is refused.
    for bit in [3, 8 * 32 + 62, 8 * 40 + 5, 8 * 72 - 1] {
        let r = with_ticket(&ks, &flipped(&ticket, bit), "alice-phone").get("/v1/sessions/current");
        assert_eq!(r.status, 401, "bit {bit}: {}", r.body);
    }
    // A session token is not a ticket, nor the other way round.
    let as_token = with_ticket(&ks, &ticket.replacen("mstk_", "mst_", 1), "alice-phone");
    assert_eq!(as_token.get("/v1/sessions/current").status, 401);

    // The web app's cookie session gets one too, and it works as a bearer.
    let http = reqwest::blocking::Client::new();
    let device = "web_0123456789abcdef0123456789abcdef";
    let r = http
        .post(format!("{}/v1/sessions", ks.base))
        .json(&json!({"email": "alice@st.example", "password": PW, "device_id": device, "cookie": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = r.json::<Value>().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{}/v1/sessions/ticket", ks.base))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .header("X-Device-Id", device)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let web_ticket = r.json::<Value>().unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let wt = with_ticket(&ks, &web_ticket, device);
    assert_eq!(wt.get("/v1/sessions/current").json["device_id"], device);
    // Without the CSRF header the cookie gets no ticket.
    let r = http
        .post(format!("{}/v1/sessions/ticket", ks.base))
        .header("Cookie", &cookie)
        .header("X-Device-Id", device)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // Logout ends the session, and its tickets with it.
    assert_eq!(alice.delete("/v1/sessions/current").status, 204);
    assert_eq!(t.get("/v1/sessions/current").status, 401);
    // A disabled user's tickets stop at once.
    assert_eq!(wt.get("/v1/sessions/current").status, 200);
    ks.admin_ok(&["user", "disable", "--email", "alice@st.example"]);
    assert_eq!(wt.get("/v1/sessions/current").status, 401);
    ks.admin_ok(&["audit", "verify"]);
    assert!(!ks.log_text().contains("mstk_"), "a ticket is never logged");
}

both_backends!(
    org_endpoints_are_shown_to_members_and_sealed,
    the_app_may_connect_to_the_endpoints,
    tickets_prove_a_session_to_one_call_only,
);

/// A two-photo report captured on `device`, sealed with a key from `ks`.
fn capture(device: &Device, ks: &KeyServer, dir: &Path) -> Vec<u8> {
    for (name, seed) in [("p1.jpg", 1), ("p2.jpg", 6)] {
        std::fs::write(dir.join(name), medseal_capture::fixtures::phone_jpeg(seed)).unwrap();
    }
    let out = dir.join("report.mseal");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    device.ok(&[
        "capture",
        "--patient-id",
        "9434765919",
        "--patient-id-system",
        "https://fhir.nhs.uk/Id/nhs-number",
        "--consent",
        "written",
        "--consent-evidence",
        &p("p1.jpg"),
        "--photo",
        &p("p1.jpg"),
        &p("p2.jpg"),
        "--keyserver",
        &ks.base,
        "--recipient",
        "amy@st.example",
        "-o",
        out.to_str().unwrap(),
    ]);
    std::fs::read(out).unwrap()
}

fn header(r: &reqwest::blocking::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The browser's path: the app (origin: the key server) gets a ticket and
/// posts the sealed report to its organisation's endpoint, which answers
/// CORS for that origin and no other.
#[test]
fn a_browser_sends_a_report_to_the_endpoint_with_a_ticket() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let mut ks = two_organisations(Backend::Sqlite);
    let port = free_port();
    let endpoint_url = format!("http://127.0.0.1:{port}");
    ks.admin_ok(&["org", "set", "--org", ST, "--endpoint-url", &endpoint_url]);
    ks.start();
    let app_origin = ks.base.clone();
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let config = dir.join("endpoint.toml");
    std::fs::write(
        &config,
        format!(
            "[outbox]\nbackoff_initial_seconds = 0.2\nbackoff_max_seconds = 1\n\n\
             [destinations.inbox]\ntype = \"folder\"\npath = \"{}\"\npayload = \"plain\"\n",
            inbox.display()
        ),
    )
    .unwrap();
    let allow = format!("{app_origin}/");
    let endpoint = Endpoint::start_on(
        port,
        &ks,
        dir,
        &config,
        &["inbox"],
        &["--allow-origin", &allow],
    );
    let http = reqwest::blocking::Client::new();

    // What the capture page does: where to send, then a ticket.
    let alice = ks.login("alice@st.example", PW, "alice-browser");
    assert_eq!(alice.get("/v1/org").json["endpoint_url"], endpoint_url);
    let ticket = new_ticket(&alice);
    let phone = Device::new(dir, "alice");
    phone.login(&ks, "alice@st.example", PW);
    let report = capture(&phone, &ks, dir);

    // The preflight: answered for the app's origin only.
    let preflight = |origin: &str, path: &str, method: &str| {
        http.request(reqwest::Method::OPTIONS, format!("{}{path}", endpoint.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", "content-type")
            .send()
            .unwrap()
    };
    let r = preflight(&app_origin, "/v1/reports", "POST");
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some(app_origin.clone())
    );
    assert_eq!(
        header(&r, "access-control-allow-methods").as_deref(),
        Some("POST")
    );
    assert_eq!(
        header(&r, "access-control-allow-headers").as_deref(),
        Some("content-type")
    );
    assert!(header(&r, "access-control-max-age").is_some());
    assert_eq!(header(&r, "vary").as_deref(), Some("Origin"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    let r = preflight("https://evil.example", "/v1/reports", "POST");
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"], "forbidden");

    // The upload, with the ticket as the token: 202, readable by the app.
    let form = |token: &str, report: Vec<u8>| {
        Form::new()
            .text("token", token.to_owned())
            .text("device_id", "alice-browser")
            .part("report", Part::bytes(report).file_name("report.mseal"))
    };
    let r = http
        .post(format!("{}/v1/reports", endpoint.base))
        .header("Origin", &app_origin)
        .multipart(form(&ticket, report.clone()))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some(app_origin.clone())
    );
    assert_eq!(header(&r, "vary").as_deref(), Some("Origin"));
    let accepted: Value = r.json().unwrap();
    assert_eq!(status, 202, "{accepted}\n{}", endpoint.log_text());
    let id = accepted["id"].as_str().unwrap().to_owned();

    // Its status, polled with the ticket, from the app's origin.
    let r = preflight(&app_origin, &format!("/v1/reports/{id}"), "GET");
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-headers").as_deref(),
        Some("authorization, x-device-id")
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .get(format!("{}/v1/reports/{id}", endpoint.base))
            .header("Origin", &app_origin)
            .bearer_auth(&ticket)
            .header("X-Device-Id", "alice-browser")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some(app_origin.clone())
        );
        let v: Value = r.json().unwrap();
        if v["state"] == "delivered" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered: {v}\n{}",
            endpoint.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Another origin's request gets no CORS header (the browser keeps the
    // answer from that page); a refused ticket's 401 still does for the app.
    let r = http
        .post(format!("{}/v1/reports", endpoint.base))
        .header("Origin", "https://evil.example")
        .multipart(form(&flipped(&ticket, 100), report.clone()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = http
        .post(format!("{}/v1/reports", endpoint.base))
        .header("Origin", &app_origin)
        .multipart(form(&flipped(&ticket, 100), report))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some(app_origin.clone())
    );
    // Requests without an Origin (the command line) are as before.
    let r = http
        .get(format!("{}/healthz", endpoint.base))
        .header("Origin", &app_origin)
        .send()
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}
