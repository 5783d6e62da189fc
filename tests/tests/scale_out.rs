//! Two key servers on one PostgreSQL, as behind a load balancer: load
//! spread over both leaves one audit chain with no lost or duplicated
//! sequence numbers; a revocation on one is honoured at once by the other;
//! lockout after failed logins on one holds on the other, and so does the
//! per-address login limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use medseal_e2e::{Backend, Client, KeyServer};
use serde_json::{Value, json};

const PASSWORD: &str = "a long clinician password";

#[test]
fn two_servers_one_postgres_one_chain_shared_policy() {
    let mut a = KeyServer::new(Backend::Postgres);
    a.org("St Elsewhere");
    for (email, role) in [
        ("alice@st.example", "clinician"),
        ("bob@st.example", "clinician"),
        ("amy@st.example", "admin"),
        ("colin@st.example", "clinician"),
    ] {
        a.user("St Elsewhere", email, role, PASSWORD);
    }
    // Behind the load balancer, client addresses come from X-Forwarded-For.
    a.start_with(&["--trust-forwarded-for"]);
    let mut b = a.replica();
    b.start_with(&["--trust-forwarded-for"]);

    // Load over both servers from several clients at once (bounded count).
    let alice_token = a
        .login("alice@st.example", PASSWORD, "alice-phone")
        .token
        .unwrap();
    let created = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let bases = [a.base.clone(), b.base.clone()];
            let (token, created) = (alice_token.clone(), created.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let mut c = Client::new(&bases[(w + i) % 2], "alice-phone");
                    c.token = Some(token.clone());
                    let r = c.post("/v1/keys", &json!({"report_id": format!("so-{w}-{i}"), "recipients": ["bob@st.example"]}));
                    assert_eq!(r.status, 201, "{}", r.body);
                    let id = r.json["key_id"].as_str().unwrap().to_owned();
                    // Fetched through the other server.
                    let mut other = Client::new(&bases[(w + i + 1) % 2], "alice-phone");
                    other.token = Some(token.clone());
                    assert_eq!(other.get(&format!("/v1/keys/{id}")).status, 200);
                    created.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(created.lock().unwrap().len(), 100);

    // One chain: sequence numbers 1..=N, each once, and it verifies.
    let export: Value =
        serde_json::from_str(&a.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    let seqs: Vec<i64> = export["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.len() >= 201,
        "login + 100 creations + 100 fetches: {}",
        seqs.len()
    );
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no lost or duplicated sequence numbers"
    );
    assert!(a.admin(&["audit", "verify"]).status.success());
    assert!(b.admin(&["audit", "verify"]).status.success());

    // Revoked on A, refused by B at once.
    let alice_a = a.login("alice@st.example", PASSWORD, "alice-phone");
    let bob_b = b.login("bob@st.example", PASSWORD, "bob-laptop");
    let r = alice_a.post(
        "/v1/keys",
        &json!({"report_id": "revoke-me", "recipients": ["bob@st.example"]}),
    );
    let path = format!("/v1/keys/{}", r.json["key_id"].as_str().unwrap());
    assert_eq!(bob_b.get(&path).status, 200);
    let amy_a = a.login("amy@st.example", PASSWORD, "amy-desk");
    assert_eq!(
        amy_a.post(&format!("{path}/revoke"), &json!({})).status,
        204
    );
    let refused = bob_b.get(&path);
    assert_eq!(refused.status, 410, "{}", refused.body);

    // A user disabled through one server's store loses access on both.
    let bob_a = a.login("bob@st.example", PASSWORD, "bob-laptop-2");
    a.admin_ok(&["user", "disable", "--email", "bob@st.example"]);
    assert_eq!(bob_a.get(&path).status, 401);
    assert_eq!(bob_b.get("/v1/keys/anything").status, 401);

    // Lockout: failures spread over both servers count together.
    let try_login = |base: &str, pw: &str| {
        Client::new(base, "d").post(
            "/v1/sessions",
            &json!({"email": "colin@st.example", "password": pw, "device_id": "d"}),
        )
    };
    for i in 0..5 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        assert_eq!(try_login(base, "guess").status, 401);
    }
    for base in [&a.base, &b.base] {
        let r = try_login(base, PASSWORD);
        assert_eq!(r.status, 429, "locked on every server: {}", r.body);
    }
    // One address spraying logins over both servers meets one limit of 30
    // a minute, not 30 on each.
    let http = reqwest::blocking::Client::new();
    let mut limited = None;
    for i in 0..40 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let r = http
            .post(format!("{base}/v1/sessions"))
            .header("X-Forwarded-For", "198.51.100.23")
            .json(&json!({"email": format!("nobody{i}@st.example"), "password": "guess", "device_id": "d"}))
            .send()
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
            limited = Some(i);
            break;
        }
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        limited,
        Some(30),
        "30 attempts per minute per address in all"
    );
    // Another address is not affected.
    let r = http
        .post(format!("{}/v1/sessions", b.base))
        .header("X-Forwarded-For", "198.51.100.24")
        .json(&json!({"email": "nobody@st.example", "password": "guess", "device_id": "d"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    std::thread::sleep(Duration::from_millis(10));
    assert!(a.admin(&["audit", "verify"]).status.success());
}
