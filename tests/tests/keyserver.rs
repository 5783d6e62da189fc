//! The key-server suite, run against both backends: the real `medseal`
//! binary serving on loopback, driven over HTTP and through the admin CLI,
//! with embedded SQLite and with a real PostgreSQL server.

use std::time::Duration;

use medseal_e2e::{Backend, Client, KeyServer, both_backends};
use serde_json::{Value, json};

both_backends!(
    concurrent_guesses_cannot_outrun_the_lockout,
    sessions_are_bound_to_a_device_and_end_on_logout,
    repeated_failures_lock_the_account,
    key_policy_creator_recipients_admins_and_strangers,
    disabled_user_loses_access_at_once,
    expired_keys_answer_gone,
    audit_api_and_export_tell_the_story_in_order,
    audit_verify_finds_edits_deletions_and_reordering,
    bad_requests_get_clear_json_errors,
    master_key_rotation_while_serving_keeps_every_key,
    report_ids_belong_to_one_organisation,
);

const ST: &str = "St Elsewhere";
const OTHER: &str = "Other Hospital";

/// Two organisations with a few users each, served over HTTP.
fn hospital(backend: Backend) -> KeyServer {
    let mut ks = KeyServer::new(backend);
    ks.org(ST);
    ks.org(OTHER);
    ks.user(ST, "alice@st.example", "clinician", "alice-password-1");
    ks.user(ST, "colin@st.example", "clinician", "colin-password-1");
    ks.user(ST, "amy@st.example", "admin", "amy-password-1");
    ks.user(ST, "audrey@st.example", "auditor", "audrey-password-1");
    ks.user(OTHER, "bob@other.example", "clinician", "bob-password-1");
    ks.user(OTHER, "olga@other.example", "admin", "olga-password-1");
    ks.start();
    ks
}

fn new_key(c: &Client, report: &str, recipients: &[&str]) -> (String, String) {
    let r = c.post(
        "/v1/keys",
        &json!({"report_id": report, "recipients": recipients}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json["key"].as_str().unwrap().to_owned();
    assert_eq!(
        base64_len(&key),
        32,
        "a 256-bit key, base64: {}",
        r.json["key"]
    );
    (r.json["key_id"].as_str().unwrap().to_owned(), key)
}

fn base64_len(s: &str) -> usize {
    let pad = s.chars().rev().take_while(|c| *c == '=').count();
    s.len() / 4 * 3 - pad
}

fn events(c: &Client, query: &str) -> Vec<Value> {
    let r = c.get(&format!("/v1/audit?{query}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["events"].as_array().unwrap().clone()
}

fn sessions_are_bound_to_a_device_and_end_on_logout(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "phone-1");
    let token = alice.token.clone().unwrap();
    assert!(token.starts_with("mst_") && token.len() > 40);

    // The token works on its own device.
    let (key_id, _) = new_key(&alice, "r-1", &["bob@other.example"]);
    assert_eq!(alice.get(&format!("/v1/keys/{key_id}")).status, 200);

    // Stolen and replayed from another device: refused, and the session is
    // revoked so that the thief's attempt also locks out the token.
    let mut thief = Client::new(&ks.base, "laptop-x");
    thief.token = Some(token.clone());
    let r = thief.get(&format!("/v1/keys/{key_id}"));
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"], "unauthorized");
    assert_eq!(alice.get(&format!("/v1/keys/{key_id}")).status, 401);

    // Logout ends a session; until then the session says whose it is.
    let alice = ks.login("alice@st.example", "alice-password-1", "phone-1");
    let me = alice.get("/v1/sessions/current");
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json["email"], "alice@st.example");
    assert_eq!(me.json["role"], "clinician");
    assert_eq!(me.json["device_id"], "phone-1");
    assert_eq!(alice.delete("/v1/sessions/current").status, 204);
    assert_eq!(alice.get(&format!("/v1/keys/{key_id}")).status, 401);
    assert_eq!(alice.get("/v1/sessions/current").status, 401);

    // Wrong password and unknown e-mail look the same.
    let anon = Client::new(&ks.base, "d");
    for (email, pw) in [("alice@st.example", "nope"), ("nobody@st.example", "nope")] {
        let r = anon.post(
            "/v1/sessions",
            &json!({"email": email, "password": pw, "device_id": "d"}),
        );
        assert_eq!(r.status, 401);
        assert_eq!(r.json["message"], "wrong e-mail or password");
    }
    // No credentials at all.
    let r = anon.get(&format!("/v1/keys/{key_id}"));
    assert_eq!(r.status, 401);
    assert!(r.headers.get("www-authenticate").is_some());

    let amy = ks.login("amy@st.example", "amy-password-1", "desk");
    let actions: Vec<String> = events(&amy, "")
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for a in [
        "session.created",
        "session.device_mismatch",
        "session.ended",
        "session.failed",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
}

fn repeated_failures_lock_the_account(backend: Backend) {
    let ks = hospital(backend);
    let anon = Client::new(&ks.base, "d");
    let attempt = |pw: &str| {
        anon.post(
            "/v1/sessions",
            &json!({"email": "colin@st.example", "password": pw, "device_id": "d"}),
        )
    };
    for _ in 0..5 {
        assert_eq!(attempt("guess").status, 401);
    }
    // Locked: even the right password is refused for now.
    let r = attempt("colin-password-1");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json["error"], "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 60);
    let amy = ks.login("amy@st.example", "amy-password-1", "desk");
    let locked = events(&amy, "")
        .into_iter()
        .filter(|e| e["action"] == "session.locked" && e["actor"] == "colin@st.example")
        .count();
    assert_eq!(locked, 1);
}

fn key_policy_creator_recipients_admins_and_strangers(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "a");
    let bob = ks.login("bob@other.example", "bob-password-1", "b");
    let colin = ks.login("colin@st.example", "colin-password-1", "c");
    let amy = ks.login("amy@st.example", "amy-password-1", "m");
    let olga = ks.login("olga@other.example", "olga-password-1", "o");
    let audrey = ks.login("audrey@st.example", "audrey-password-1", "u");

    let (key_id, key) = new_key(&alice, "report-42", &["Bob@Other.Example"]);
    let path = format!("/v1/keys/{key_id}");

    // Creator and recipient get the same key; the response is not cacheable.
    for c in [&alice, &bob] {
        let r = c.get(&path);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json["key"], key.as_str());
        assert_eq!(r.json["report_id"], "report-42");
        assert_eq!(r.headers["cache-control"], "no-store");
    }
    // A colleague, the creator's own admin, another organisation's admin, an
    // auditor: none is a recipient.
    for c in [&colin, &amy, &olga, &audrey] {
        let r = c.get(&path);
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.json["message"], "you are not a recipient of this report");
    }
    // Auditors cannot create keys.
    let r = audrey.post(
        "/v1/keys",
        &json!({"report_id": "x", "recipients": ["a@b.c"]}),
    );
    assert_eq!(r.status, 403);
    // Unknown keys.
    assert_eq!(
        alice
            .get("/v1/keys/k_00000000000000000000000000000000")
            .status,
        404
    );
    assert_eq!(alice.get("/v1/keys/not-a-key-id").status, 404);

    // Only the creator or the key's org admin may add recipients or revoke.
    let add = json!({"recipients": ["colin@st.example"]});
    assert_eq!(bob.post(&format!("{path}/recipients"), &add).status, 403);
    assert_eq!(olga.post(&format!("{path}/recipients"), &add).status, 403);
    assert_eq!(alice.post(&format!("{path}/recipients"), &add).status, 204);
    assert_eq!(colin.get(&path).status, 200, "colin is now a recipient");

    assert_eq!(olga.post(&format!("{path}/revoke"), &json!({})).status, 403);
    assert_eq!(bob.post(&format!("{path}/revoke"), &json!({})).status, 403);
    assert_eq!(amy.post(&format!("{path}/revoke"), &json!({})).status, 204);
    for c in [&alice, &bob, &colin] {
        let r = c.get(&path);
        assert_eq!(r.status, 410, "{}", r.body);
        assert_eq!(r.json["error"], "gone");
    }
    // A stranger still learns nothing beyond "not for you".
    assert_eq!(olga.get(&path).status, 403);

    // Every refusal is in the audit trail.
    let denied = events(&amy, &format!("key_id={key_id}"))
        .into_iter()
        .filter(|e| e["action"] == "key.denied")
        .count();
    // 4 fetches, 2 additions and 2 revocations refused; 3 fetches of the
    // revoked key; 1 more stranger.
    assert_eq!(denied, 4 + 2 + 2 + 3 + 1, "denials audited");
}

fn disabled_user_loses_access_at_once(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "a");
    let (key_id, _) = new_key(&alice, "r", &["bob@other.example"]);
    let bob = ks.login("bob@other.example", "bob-password-1", "b");
    assert_eq!(bob.get(&format!("/v1/keys/{key_id}")).status, 200);
    ks.admin_ok(&["user", "disable", "--email", "bob@other.example"]);
    assert_eq!(bob.get(&format!("/v1/keys/{key_id}")).status, 401);
    let r = Client::new(&ks.base, "b").post(
        "/v1/sessions",
        &json!({"email": "bob@other.example", "password": "bob-password-1", "device_id": "b"}),
    );
    assert_eq!(r.status, 401);
    // Answered as a wrong password (a right one is not confirmed), and the
    // trail says why.
    assert_eq!(r.json["message"], "wrong e-mail or password");
    let export: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    assert!(export["events"].as_array().unwrap().iter().any(|e| {
        e["action"] == "session.failed"
            && e["actor"] == "bob@other.example"
            && e["detail"] == "account disabled"
    }));
}

fn expired_keys_answer_gone(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "a");
    let soon = medseal_keyserver::time::rfc3339(medseal_keyserver::time::now_ms() + 1500);
    let r = alice.post(
        "/v1/keys",
        &json!({"report_id": "r", "recipients": ["bob@other.example"], "expires_at": soon}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let path = format!("/v1/keys/{}", r.json["key_id"].as_str().unwrap());
    assert_eq!(alice.get(&path).status, 200);
    std::thread::sleep(Duration::from_millis(1700));
    let r = alice.get(&path);
    assert_eq!(r.status, 410);
    assert!(r.json["message"].as_str().unwrap().contains("expired"));
    let past = alice.post(
        "/v1/keys",
        &json!({"report_id": "r", "recipients": ["a@b.c"], "expires_at": "2020-01-01T00:00:00Z"}),
    );
    assert_eq!(past.status, 400);
}

fn audit_api_and_export_tell_the_story_in_order(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "a");
    let bob = ks.login("bob@other.example", "bob-password-1", "b");
    let olga = ks.login("olga@other.example", "olga-password-1", "o");
    let (key_id, _) = new_key(&alice, "report-7", &["bob@other.example"]);
    bob.get(&format!("/v1/keys/{key_id}"));
    olga.get(&format!("/v1/keys/{key_id}"));
    alice.post(&format!("/v1/keys/{key_id}/revoke"), &json!({}));
    bob.get(&format!("/v1/keys/{key_id}"));

    // The creator may read the trail of their key (with key_id), not more.
    let trail = events(&alice, &format!("key_id={key_id}"));
    let story: Vec<(String, String, String)> = trail
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("key.created", "alice@st.example", "success"),
        ("key.fetched", "bob@other.example", "success"),
        ("key.denied", "olga@other.example", "denied"),
        ("key.revoked", "alice@st.example", "success"),
        ("key.denied", "bob@other.example", "denied"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(story, want);
    for e in &trail {
        assert_eq!(e["org"], ST, "key events belong to the key's organisation");
        assert_eq!(e["report_id"], "report-7");
        assert_eq!(e["client_ip"], "127.0.0.1");
        assert!(e["at"].as_str().unwrap().ends_with('Z'));
    }
    let seqs: Vec<i64> = trail.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    assert_eq!(alice.get("/v1/audit").status, 403);
    assert_eq!(bob.get(&format!("/v1/audit?key_id={key_id}")).status, 403);

    // CSV for the patient record, by report.
    let audrey = ks.login("audrey@st.example", "audrey-password-1", "u");
    let r = audrey.get("/v1/audit?report_id=report-7&format=csv");
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = r.body.lines().collect();
    assert!(lines[0].starts_with("seq,at,actor,org,action,key_id,report_id,client_ip"));
    assert_eq!(lines.len(), 1 + 5, "{}", r.body);
    // Another organisation's auditor-level user sees none of it.
    let olga_view = events(&olga, "report_id=report-7");
    assert!(olga_view.is_empty());

    // The admin CLI exports the same events.
    let out = ks.admin_ok(&[
        "audit",
        "export",
        "--format",
        "json",
        "--report-id",
        "report-7",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 5);
    let csv = ks.admin_ok(&["audit", "export", "--format", "csv", "--key-id", &key_id]);
    assert_eq!(csv.lines().count(), 1 + 5);
    let ok = ks.admin(&["audit", "verify"]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact"));
}

/// A store with 8 audit events made through the admin CLI.
fn eight_events(backend: Backend) -> KeyServer {
    let ks = KeyServer::new(backend);
    ks.org(ST);
    ks.org(OTHER);
    for i in 0..6 {
        ks.user(
            ST,
            &format!("u{i}@st.example"),
            "clinician",
            "pw-123456-long",
        );
    }
    assert!(ks.admin(&["audit", "verify"]).status.success());
    ks
}

fn verify_fails_at(ks: &KeyServer, seq: i64) {
    let out = ks.admin(&["audit", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "tampering went unnoticed");
    assert!(err.contains(&format!("broken at event {seq}:")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn audit_verify_finds_edits_deletions_and_reordering(backend: Backend) {
    // The server refuses edits through the database's own guard…
    let ks = eight_events(backend);
    let edit = "UPDATE audit_events SET actor = 'mallory@x' WHERE seq = 5";
    let blocked = std::panic::catch_unwind(|| ks.sql(&[edit]));
    assert!(blocked.is_err(), "append-only guard must refuse updates");

    // …and once an insider removes the guard, the chain still tells.
    ks.drop_append_only_guards();
    ks.sql(&[edit]);
    verify_fails_at(&ks, 5);

    let ks = eight_events(backend);
    ks.drop_append_only_guards();
    ks.sql(&["DELETE FROM audit_events WHERE seq = 4"]);
    verify_fails_at(&ks, 4);

    let ks = eight_events(backend);
    ks.drop_append_only_guards();
    ks.sql(&[
        "UPDATE audit_events SET seq = -1 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 6",
        "UPDATE audit_events SET seq = 6 WHERE seq = -1",
    ]);
    verify_fails_at(&ks, 3);

    let ks = eight_events(backend);
    ks.drop_append_only_guards();
    ks.sql(&["DELETE FROM audit_events WHERE seq = 8"]);
    verify_fails_at(&ks, 8);
}

fn bad_requests_get_clear_json_errors(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "a");
    let check = |r: medseal_e2e::Reply, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.json["error"], code, "{}", r.body);
        assert!(r.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    check(
        alice.post_raw("/v1/keys", "application/json", b"{not json".to_vec()),
        400,
        "bad_request",
    );
    check(
        alice.post_raw("/v1/keys", "application/json", vec![0xff, 0xfe, b'{']),
        400,
        "bad_request",
    );
    check(
        alice.post(
            "/v1/keys",
            &json!({"report_id": "r", "recipients": ["a@b.c"], "admin": true}),
        ),
        400,
        "bad_request",
    );
    check(
        alice.post(
            "/v1/keys",
            &json!({"report_id": "../../etc", "recipients": ["a@b.c"]}),
        ),
        400,
        "bad_request",
    );
    check(
        alice.post("/v1/keys", &json!({"report_id": "r", "recipients": []})),
        400,
        "bad_request",
    );
    check(
        alice.post(
            "/v1/keys",
            &json!({"report_id": "r", "recipients": ["not an email"]}),
        ),
        400,
        "bad_request",
    );
    let huge = format!(
        "{{\"report_id\":\"r\",\"recipients\":[\"{}@b.c\"]}}",
        "a".repeat(200_000)
    );
    check(
        alice.post_raw("/v1/keys", "application/json", huge.into_bytes()),
        413,
        "payload_too_large",
    );
    check(
        alice.post_raw("/v1/keys", "text/plain", b"{}".to_vec()),
        415,
        "unsupported_media_type",
    );
    check(alice.get("/v1/nothing-here"), 404, "not_found");
    check(alice.get("/v1/audit?format=xml"), 400, "bad_request");
    check(
        alice.get("/v1/keys/k_00000000000000000000000000000000"),
        404,
        "not_found",
    );
    let audrey = ks.login("audrey@st.example", "audrey-password-1", "u");
    check(
        audrey.post(
            "/v1/keys",
            &json!({"report_id": "r", "recipients": ["a@b.c"]}),
        ),
        403,
        "forbidden",
    );

    // Health, metrics and the OpenAPI document need no credentials.
    let anon = Client::new(&ks.base, "x");
    assert_eq!(anon.get("/healthz").json["status"], "ok");
    assert_eq!(anon.get("/readyz").status, 200);
    let m = anon.get("/metrics").body;
    assert!(m.contains("medseal_keyserver_http_requests_total"), "{m}");
    assert!(m.contains("route=\"/v1/keys\""), "routes, never raw paths");
    assert!(
        m.contains("medseal_keyserver_denials_total{reason=\"create_forbidden\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("medseal_keyserver_key_fetches_total{outcome=\"unknown\"} 1"),
        "{m}"
    );
    assert!(m.contains("medseal_keyserver_audit_commit_seconds_bucket"));
    let api = anon.get("/openapi.json").json;
    for p in [
        "/v1/sessions",
        "/v1/sessions/current",
        "/v1/keys",
        "/v1/keys/{key_id}",
        "/v1/keys/{key_id}/recipients",
        "/v1/keys/{key_id}/revoke",
        "/v1/audit",
    ] {
        assert!(
            api["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
}

fn master_key_rotation_while_serving_keeps_every_key(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "a");
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(new_key(&alice, &format!("r-{i}"), &["bob@other.example"]));
    }
    let out = ks.admin(&["rotate-master-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("version 2 is current"), "{msg}");
    assert!(msg.contains("5 data keys re-wrapped"), "{msg}");
    // The running server answers with the same keys, and new keys work too.
    for (id, key) in &before {
        let r = alice.get(&format!("/v1/keys/{id}"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json["key"], key.as_str());
    }
    let (id, key) = new_key(&alice, "after", &["bob@other.example"]);
    assert_eq!(
        alice.get(&format!("/v1/keys/{id}")).json["key"],
        key.as_str()
    );
    let ring: Value = serde_json::from_str(
        &std::fs::read_to_string(ks.dir.path().join("data/master.keyring")).unwrap(),
    )
    .unwrap();
    assert_eq!(ring["current"], 2);
    assert!(ks.admin(&["audit", "verify"]).status.success());
}

#[test]
fn serves_https_with_the_given_certificate() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let c = medseal_e2e::write_file(ks.dir.path(), "cert.pem", cert_pem.as_bytes());
    let k = medseal_e2e::write_file(
        ks.dir.path(),
        "key.pem",
        cert.signing_key.serialize_pem().as_bytes(),
    );
    // A key other users can read is refused, with one line saying how to fix it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = std::process::Command::new(medseal_e2e::medseal_bin())
        .args(["keyserver", "serve", "--listen", "127.0.0.1:1"])
        .args([
            "--tls-cert",
            c.to_str().unwrap(),
            "--tls-key",
            k.to_str().unwrap(),
        ])
        .args(ks.store_args())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("chmod 600"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    ks.start_with(&[
        "--tls-cert",
        c.to_str().unwrap(),
        "--tls-key",
        k.to_str().unwrap(),
    ]);
    let port = ks.base.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(ks.log_text().contains("https://"), "{}", ks.log_text());
}

#[test]
fn refuses_plain_http_beyond_loopback_and_says_so() {
    let ks = KeyServer::new(Backend::Sqlite);
    let out = std::process::Command::new(medseal_e2e::medseal_bin())
        .args(["keyserver", "serve", "--listen", "0.0.0.0:1"])
        .args(ks.store_args())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing plain HTTP"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn zero_config_start_creates_a_private_data_directory() {
    use std::os::unix::fs::PermissionsExt;
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.start();
    let data = ks.dir.path().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("master.keyring")), 0o600);
    assert_eq!(mode(&data.join("keyserver.sqlite3")), 0o600);
    assert!(ks.log_text().contains("loopback only"), "{}", ks.log_text());
}

/// 28 wrong passwords at once for one account: the attempt is counted
/// before the password is checked, so at most 5 are checked before the
/// account locks (before, the check came first and 10 got through).
fn concurrent_guesses_cannot_outrun_the_lockout(backend: Backend) {
    let mut ks = KeyServer::new(backend);
    ks.org(ST);
    ks.user(ST, "alice@st.example", "clinician", "alice-password-1");
    ks.start_with(&["--logins-per-minute", "1000"]);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(28));
    let guesses: Vec<_> = (0..28)
        .map(|i| {
            let (base, barrier) = (ks.base.clone(), barrier.clone());
            std::thread::spawn(move || {
                let c = Client::new(&base, &format!("guesser-{i}"));
                barrier.wait();
                c.post(
                    "/v1/sessions",
                    &json!({"email": "alice@st.example", "password": format!("guess {i}"), "device_id": format!("guesser-{i}")}),
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    let export: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    let checked = export["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "session.failed" && e["detail"] == "wrong e-mail or password")
        .count();
    assert!(checked <= 5, "{checked} passwords were checked");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), checked);
    // Locked: even the right password is refused now.
    let c = Client::new(&ks.base, "alice-phone");
    let r = c.post(
        "/v1/sessions",
        &json!({"email": "alice@st.example", "password": "alice-password-1", "device_id": "alice-phone"}),
    );
    assert_eq!(r.status, 429, "{}", r.body);
}

/// A report id names one report of one organisation: a second key for it is
/// refused, a stranger's key under the same id stays in the stranger's
/// trail, and an export by report id says whose report it is.
fn report_ids_belong_to_one_organisation(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "phone-1");
    let bob = ks.login("bob@other.example", "bob-password-1", "bob-desk");
    new_key(&alice, "r-wound-7", &["colin@st.example"]);
    let again = alice.post(
        "/v1/keys",
        &json!({"report_id": "r-wound-7", "recipients": ["colin@st.example"]}),
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json["error"], "conflict");
    // Another organisation's report may carry the same id: it is theirs.
    new_key(&bob, "r-wound-7", &["mallory@evil.example"]);

    // The admin export must be told which organisation's report it is.
    let out = ks.admin(&["audit", "export", "--report-id", "r-wound-7"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--org") && err.contains(OTHER) && err.contains(ST),
        "{err}"
    );
    let out = ks.admin(&["audit", "export", "--report-id", "r-wound-7", "--org", ST]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["org"], ST);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["action"], "key.created");
    assert!(!body.to_string().contains("mallory"), "{body}");
    let csv = ks.admin(&[
        "audit",
        "export",
        "--report-id",
        "r-wound-7",
        "--org",
        ST,
        "--format",
        "csv",
    ]);
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(csv.lines().skip(1).all(|l| l.contains(ST)), "{csv}");

    // Over HTTP the trail is the caller's organisation's, and says so.
    let amy = ks.login("amy@st.example", "amy-password-1", "desk");
    let r = amy.get("/v1/audit?report_id=r-wound-7");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["org"], ST);
    assert!(!r.body.contains("mallory"), "{}", r.body);
    assert!(ks.admin(&["audit", "verify"]).status.success());
}
