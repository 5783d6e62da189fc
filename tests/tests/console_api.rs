//! The organisation console's user calls, as the API (the browser console
//! drives the same calls): admins of an organisation manage its users and
//! no other organisation's; auditors only list; everyone else gets 403,
//! recorded. Each change takes effect at once and is an audited event that
//! `audit verify` replays.

use medseal_e2e::services::{Smtp, TestCert, code_in, private_file};
use medseal_e2e::{Backend, KeyServer, both_backends};
use serde_json::{Value, json};

const PW: &str = "a long clinician password";

fn users_of(list: &Value) -> Vec<(String, String, String)> {
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["email"].as_str().unwrap().to_owned(),
                u["role"].as_str().unwrap().to_owned(),
                u["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// St Elsewhere (admin Amy, auditor Audrey, clinician Alice and the
/// `clinicians` given) and Other (admin Olga, clinician Bob); not started.
fn two_organisations(backend: Backend, clinicians: &[&str]) -> KeyServer {
    let ks = KeyServer::new(backend);
    ks.org("St Elsewhere");
    ks.org("Other");
    let extra = clinicians
        .iter()
        .map(|who| ("St Elsewhere", *who, "clinician"));
    for (org, who, role) in [
        ("St Elsewhere", "amy@st.example", "admin"),
        ("St Elsewhere", "audrey@st.example", "auditor"),
        ("St Elsewhere", "alice@st.example", "clinician"),
        ("Other", "olga@other.example", "admin"),
        ("Other", "bob@other.example", "clinician"),
    ]
    .into_iter()
    .chain(extra)
    {
        ks.user(org, who, role, PW);
    }
    ks
}

fn console_manages_users(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path());
    let smtp_pw = private_file(&dir.path().join("smtp.pass"), "mail secret\n");
    let smtp = Smtp::start("starttls", &cert, "keyserver", &smtp_pw);
    let mut ks = two_organisations(backend, &[]);
    let flags = smtp.keyserver_flags(&cert, &smtp_pw);
    ks.start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let amy = ks.login("amy@st.example", PW, "amy-desk");
    let audrey = ks.login("audrey@st.example", PW, "audrey-desk");
    let alice = ks.login("alice@st.example", PW, "alice-phone");
    let olga = ks.login("olga@other.example", PW, "olga-desk");

    // The list: the caller's organisation only, searchable.
    let list = amy.get("/v1/users");
    assert_eq!(list.status, 200, "{}", list.body);
    let mut seen = users_of(&list.json);
    seen.sort();
    assert_eq!(
        seen,
        [
            ("alice@st.example", "clinician", "enabled"),
            ("amy@st.example", "admin", "enabled"),
            ("audrey@st.example", "auditor", "enabled"),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
    let alice_row = &list.json["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "alice@st.example")
        .unwrap()
        .clone();
    assert_eq!(alice_row["sessions"], 1);
    assert!(alice_row["last_sign_in"].is_string());
    let alice_id = alice_row["id"].as_i64().unwrap();
    assert_eq!(users_of(&amy.get("/v1/users?q=AUD").json).len(), 1);
    assert_eq!(users_of(&amy.get("/v1/users?role=clinician").json).len(), 1);
    // Auditors read; clinicians get nothing; nobody without a session.
    assert_eq!(audrey.get("/v1/users").status, 200);
    assert_eq!(alice.get("/v1/users").status, 403);
    assert_eq!(
        medseal_e2e::Client::new(&ks.base, "x")
            .get("/v1/users")
            .status,
        401
    );

    // Add a user: nobody types a password; they sign in with a mailed code.
    let r = audrey.post(
        "/v1/users",
        &json!({"email": "carl@st.example", "role": "clinician"}),
    );
    assert_eq!(r.status, 403, "auditors do not manage");
    let r = amy.post(
        "/v1/users",
        &json!({"email": "Carl@St.example", "role": "clinician"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["user"]["email"], "carl@st.example");
    assert_eq!(r.json["sign_in"], "code");
    let carl_id = r.json["user"]["id"].as_i64().unwrap();
    assert_eq!(
        amy.post(
            "/v1/users",
            &json!({"email": "carl@st.example", "role": "clinician"})
        )
        .status,
        409
    );
    assert_eq!(
        amy.post(
            "/v1/users",
            &json!({"email": "g@st.example", "role": "guest"})
        )
        .status,
        400
    );
    // No password works for Carl; a mailed code does.
    let pwless = medseal_e2e::Client::new(&ks.base, "carl-phone").post(
        "/v1/sessions",
        &json!({"email": "carl@st.example", "password": "", "device_id": "carl-phone"}),
    );
    assert_ne!(pwless.status, 201);
    let c = medseal_e2e::Client::new(&ks.base, "carl-phone");
    assert_eq!(
        c.post(
            "/v1/sessions/code",
            &json!({"email": "carl@st.example", "device_id": "carl-phone"})
        )
        .status,
        202
    );
    let code = code_in(&smtp.wait_for(1));
    let mut carl = medseal_e2e::Client::new(&ks.base, "carl-phone");
    let s = carl.post(
        "/v1/sessions",
        &json!({"email": "carl@st.example", "code": code, "device_id": "carl-phone"}),
    );
    assert_eq!(s.status, 201, "{}", s.body);
    carl.token = s.json["token"].as_str().map(str::to_owned);
    assert_eq!(carl.get("/v1/sessions/current").json["role"], "clinician");

    // Another organisation's admin cannot see or touch them.
    assert_eq!(
        olga.post(&format!("/v1/users/{alice_id}/disable"), &json!({}))
            .status,
        404
    );
    assert!(!olga.get("/v1/users").body.contains("st.example"));

    // Disable: Alice's open session dies at once; enable lets her back.
    let r = amy.post(&format!("/v1/users/{alice_id}/disable"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["status"], "disabled");
    assert_eq!(alice.get("/v1/sessions/current").status, 401);
    assert_eq!(
        amy.post(&format!("/v1/users/{alice_id}/enable"), &json!({}))
            .json["status"],
        "enabled"
    );
    let alice = ks.login("alice@st.example", PW, "alice-phone");
    // End sessions: the session dies, the account stays.
    let r = amy.post(&format!("/v1/users/{alice_id}/sessions/revoke"), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json["sessions"], 0);
    assert_eq!(alice.get("/v1/sessions/current").status, 401);
    // Role: Carl's session ends; he signs in again as an auditor.
    let r = amy.patch(&format!("/v1/users/{carl_id}"), &json!({"role": "auditor"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["role"], "auditor");
    assert_eq!(carl.get("/v1/sessions/current").status, 401);
    // An admin cannot lock themselves out.
    let amy_id = users_of(&amy.get("/v1/users?q=amy").json);
    assert_eq!(amy_id.len(), 1);
    let amy_row = amy.get("/v1/users?q=amy").json["users"][0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        amy.post(&format!("/v1/users/{amy_row}/disable"), &json!({}))
            .status,
        400
    );
    // A clinician is refused every change, and the refusal is recorded.
    assert_eq!(
        ks.login("alice@st.example", PW, "alice-phone")
            .post(&format!("/v1/users/{carl_id}/disable"), &json!({}))
            .status,
        403
    );

    // The log says what happened, and agrees with the store.
    let log: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    let events = log["events"].as_array().unwrap();
    let by_amy = |action: &str| {
        events
            .iter()
            .filter(|e| e["action"] == action && e["actor"] == "amy@st.example")
            .count()
    };
    assert_eq!(by_amy("user.created"), 1);
    assert_eq!(by_amy("user.disabled"), 1);
    assert_eq!(by_amy("user.enabled"), 1);
    assert_eq!(by_amy("user.sessions_ended"), 1);
    assert_eq!(by_amy("user.role_changed"), 1);
    let denied = events
        .iter()
        .filter(|e| e["action"] == "admin.denied")
        .count();
    assert!(denied >= 3, "refusals recorded: {denied}");
    let v = ks.admin(&["audit", "verify"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

both_backends!(console_manages_users);

/// An organisation that sends only to listed domains: a key for anyone
/// else is refused with 403 and recorded, whether asked for by the API or
/// the command line; the setting is sealed and replayed, so neither an
/// edit nor a row put back in the database goes unnoticed.
fn recipient_policy_is_enforced(backend: Backend) {
    let mut ks = KeyServer::new(backend);
    ks.org("St Elsewhere");
    for (who, role) in [
        ("amy@st.example", "admin"),
        ("audrey@st.example", "auditor"),
        ("alice@st.example", "clinician"),
    ] {
        ks.user("St Elsewhere", who, role, PW);
    }
    ks.start();
    let amy = ks.login("amy@st.example", PW, "amy-desk");
    let audrey = ks.login("audrey@st.example", PW, "audrey-desk");
    let alice = ks.login("alice@st.example", PW, "alice-phone");
    let key_for = |who: &str, report: &str| {
        alice.post(
            "/v1/keys",
            &json!({"report_id": report, "recipients": [who]}),
        )
    };
    // By default, any address.
    assert_eq!(
        amy.get("/v1/org/policy").json["allowed_recipient_domains"],
        json!([])
    );
    assert_eq!(key_for("bob@other.example", "r1").status, 201);

    // Only admins set it; auditors read it; clinicians neither.
    let set = |c: &medseal_e2e::Client, d: Value| {
        c.put("/v1/org/policy", &json!({ "allowed_recipient_domains": d }))
    };
    assert_eq!(set(&audrey, json!(["st.example"])).status, 403);
    assert_eq!(alice.get("/v1/org/policy").status, 403);
    assert_eq!(set(&amy, json!(["not a domain"])).status, 400);
    let r = set(&amy, json!(["St.Example", "partner.example"]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json["allowed_recipient_domains"],
        json!(["partner.example", "st.example"])
    );
    assert_eq!(audrey.get("/v1/org/policy").json, r.json);

    // Enforced: outside refused (403, recorded), inside made.
    let r = key_for("bob@other.example", "r2");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("outside the domains"), "{}", r.body);
    assert_eq!(key_for("carol@partner.example", "r3").status, 201);
    let r = alice.post(
        "/v1/keys",
        &json!({"report_id": "r4", "recipients": ["dan@st.example", "eve@evil.example"]}),
    );
    assert_eq!(r.status, 403, "one outsider refuses the whole key");
    // Adding an outsider to an existing key is refused too.
    let k = key_for("dan@st.example", "r5");
    let key_id = k.json["key_id"].as_str().unwrap();
    let r = alice.post(
        &format!("/v1/keys/{key_id}/recipients"),
        &json!({"recipients": ["bob@other.example"]}),
    );
    assert_eq!(r.status, 403);
    // The recipient check says so before anything is sealed.
    let r = alice.post(
        "/v1/recipients/check",
        &json!({"recipients": ["bob@other.example", "dan@st.example"]}),
    );
    assert_eq!(r.json["recipients"][0]["status"], "refused");
    let log: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    let denied: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "key.denied" && e["actor"] == "alice@st.example")
        .collect();
    assert_eq!(denied.len(), 3, "{denied:?}");
    assert!(
        denied
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("eve@evil.example"))
    );
    assert!(ks.admin(&["audit", "verify"]).status.success());

    // Both ways: the restricted row put back whole after the restriction
    // was lifted — every seal still valid, but not what the events say.
    ks.sql(&[
        "DROP TABLE IF EXISTS saved_org",
        "CREATE TABLE saved_org AS SELECT * FROM orgs",
    ]);
    assert_eq!(set(&amy, json!([])).status, 200);
    assert_eq!(key_for("bob@other.example", "r6").status, 201);
    ks.sql(&[
        "UPDATE orgs SET recipient_domains = (SELECT recipient_domains FROM saved_org WHERE saved_org.id = orgs.id), \
         recipients_mac = (SELECT recipients_mac FROM saved_org WHERE saved_org.id = orgs.id)",
    ]);
    let v = ks.admin(&["audit", "verify"]);
    assert!(!v.status.success());
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("settings of organisation St Elsewhere"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    // An edit without the keyring (the restriction lifted by hand): the
    // seal fails, and no key is made at all until an admin sets it again.
    ks.sql(&["UPDATE orgs SET recipient_domains = 'any'"]);
    let r = key_for("dan@st.example", "r7");
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("changed outside the key server"),
        "{}",
        r.body
    );
    assert_eq!(set(&amy, json!([])).status, 200);
    assert_eq!(key_for("bob@other.example", "r8").status, 201);
    // The command line sets the same policy.
    ks.admin_ok(&[
        "org",
        "set",
        "--org",
        "St Elsewhere",
        "--allowed-recipient-domains",
        "st.example",
    ]);
    assert_eq!(key_for("bob@other.example", "r9").status, 403);
}

both_backends!(recipient_policy_is_enforced);

fn keys_of(list: &Value) -> Vec<&Value> {
    list["keys"].as_array().unwrap().iter().collect()
}

fn events_of(page: &Value) -> Vec<(i64, String, String)> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The console's reports, search and overview: an organisation's keys with
/// their recipients and fetch counts, a key's expiry changed by those who
/// manage it (an audited event that `audit verify` replays), the log
/// searched by report, actor, action and outcome in pages whose CSV export
/// is the same rows, its integrity status, and the day-by-day counts.
/// Clinicians get 403 from all of it, and no organisation sees another's.
fn console_reads_reports_and_the_log(backend: Backend) {
    let mut ks = two_organisations(backend, &["carl@st.example"]);
    ks.start();
    let amy = ks.login("amy@st.example", PW, "amy-desk");
    let audrey = ks.login("audrey@st.example", PW, "audrey-desk");
    let alice = ks.login("alice@st.example", PW, "alice-phone");
    let carl = ks.login("carl@st.example", PW, "carl-phone");
    let olga = ks.login("olga@other.example", PW, "olga-desk");
    let bob = ks.login("bob@other.example", PW, "bob-laptop");
    let mut ids = Vec::new();
    for (i, who) in ["bob@other.example", "carl@st.example", "bob@other.example"]
        .iter()
        .enumerate()
    {
        let r = alice.post(
            "/v1/keys",
            &json!({"report_id": format!("rep-{i}"), "recipients": [who]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.json["key_id"].as_str().unwrap().to_owned());
    }
    let other = bob.post(
        "/v1/keys",
        &json!({"report_id": "rep-0", "recipients": ["olga@other.example"]}),
    );
    assert_eq!(other.status, 201);
    for _ in 0..3 {
        assert_eq!(bob.get(&format!("/v1/keys/{}", ids[0])).status, 200);
    }
    assert_eq!(carl.get(&format!("/v1/keys/{}", ids[1])).status, 200);
    assert_eq!(carl.get(&format!("/v1/keys/{}", ids[0])).status, 403);
    assert_eq!(
        alice
            .post(&format!("/v1/keys/{}/revoke", ids[2]), &json!({}))
            .status,
        204
    );

    // The list: newest first, this organisation's only, with fetch counts.
    let list = audrey.get("/v1/keys");
    assert_eq!(list.status, 200, "{}", list.body);
    let keys = keys_of(&list.json);
    let listed: Vec<&str> = keys.iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]]);
    assert_eq!(keys[2]["fetches"], 3, "only released keys count");
    assert_eq!(keys[2]["creator"], "alice@st.example");
    assert_eq!(keys[2]["recipients"], json!(["bob@other.example"]));
    assert_eq!(keys[2]["status"], "live");
    assert_eq!(keys[2]["intact"], true);
    assert_eq!(keys[1]["fetches"], 1);
    assert_eq!(keys[0]["status"], "revoked");
    assert!(keys[0]["revoked_at"].is_string());
    assert_eq!(list.json["next_offset"], Value::Null);
    let page = amy.get("/v1/keys?limit=2");
    assert_eq!(keys_of(&page.json).len(), 2);
    assert_eq!(page.json["next_offset"], 2);
    let rest = amy.get("/v1/keys?limit=2&offset=2");
    assert_eq!(keys_of(&rest.json)[0]["key_id"], ids[0].as_str());
    assert_eq!(
        keys_of(&amy.get("/v1/keys?report_id=rep-1").json).len(),
        1,
        "by report"
    );
    assert_eq!(
        keys_of(&amy.get("/v1/keys?creator=ALICE@st.example").json).len(),
        3
    );
    assert!(keys_of(&amy.get("/v1/keys?creator=bob@other.example").json).is_empty());
    assert!(keys_of(&amy.get("/v1/keys?since=2100-01-01T00:00:00Z").json).is_empty());
    let theirs = olga.get("/v1/keys");
    assert_eq!(keys_of(&theirs.json).len(), 1, "Other sees its own only");
    assert_eq!(amy.get("/v1/keys?limit=0").status, 400);
    assert_eq!(amy.get("/v1/keys?since=yesterday").status, 400);
    for path in ["/v1/keys", "/v1/overview", "/v1/audit/status"] {
        assert_eq!(alice.get(path).status, 403, "{path}");
        assert_eq!(bob.get(path).status, 403, "{path}");
    }

    // Expiry: the creator or an admin of its organisation; in the future,
    // or none; a revoked key stays revoked.
    let expiry = |c: &medseal_e2e::Client, k: &str, v: Value| {
        c.patch(&format!("/v1/keys/{k}"), &json!({ "expires_at": v }))
    };
    let r = expiry(&amy, &ids[0], json!("2030-01-01T00:00:00Z"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(r.json["status"], "live");
    assert_eq!(
        expiry(&alice, &ids[0], json!(null)).json["expires_at"],
        Value::Null
    );
    assert_eq!(
        expiry(&alice, &ids[0], json!("2000-01-01T00:00:00Z")).status,
        400
    );
    assert_eq!(
        amy.patch(&format!("/v1/keys/{}", ids[0]), &json!({}))
            .status,
        400
    );
    assert_eq!(
        expiry(&carl, &ids[0], json!("2030-01-01T00:00:00Z")).status,
        403
    );
    assert_eq!(
        expiry(&audrey, &ids[0], json!("2030-01-01T00:00:00Z")).status,
        403
    );
    assert_eq!(
        expiry(&olga, &ids[0], json!("2030-01-01T00:00:00Z")).status,
        403
    );
    assert_eq!(
        expiry(&amy, &ids[2], json!("2030-01-01T00:00:00Z")).status,
        410
    );
    let r = expiry(&amy, &ids[1], json!("2031-06-01T12:00:00Z"));
    assert_eq!(r.status, 200);
    assert!(ks.admin(&["audit", "verify"]).status.success());

    // Both ways: the key row put back whole (seal and all) as it was
    // before its expiry was set: every seal valid, but not what the events
    // say; putting it right again through the server passes.
    ks.sql(&[
        "DROP TABLE IF EXISTS saved_key",
        &format!(
            "CREATE TABLE saved_key AS SELECT * FROM data_keys WHERE key_id = '{}'",
            ids[1]
        ),
    ]);
    assert_eq!(expiry(&amy, &ids[1], json!(null)).status, 200);
    ks.sql(&[&format!(
        "UPDATE data_keys SET expires_at = (SELECT expires_at FROM saved_key), \
         state_mac = (SELECT state_mac FROM saved_key) WHERE key_id = '{}'",
        ids[1]
    )]);
    let v = ks.admin(&["audit", "verify"]);
    assert!(!v.status.success());
    let why = String::from_utf8_lossy(&v.stderr);
    assert!(why.contains("does not expire when its events say"), "{why}");
    let status = amy.get("/v1/audit/status?fresh=true");
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.json["status"], "broken");
    let problem = status.json["problem"].as_str().unwrap();
    assert!(problem.contains("not what the events say"), "{problem}");
    assert!(
        !problem.contains("k_"),
        "no key of the server is named: {problem}"
    );
    // A second fresh check within five seconds is the same check.
    assert_eq!(amy.get("/v1/audit/status?fresh=true").json, status.json);
    assert_eq!(
        expiry(&amy, &ids[1], json!("2031-06-01T12:00:00Z")).status,
        200
    );
    assert_eq!(expiry(&amy, &ids[1], json!(null)).status, 200);
    assert!(ks.admin(&["audit", "verify"]).status.success());
    // After five seconds a fresh check is a new one.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let status = audrey.get("/v1/audit/status?fresh=true");
    assert_eq!(status.json["status"], "intact", "{}", status.body);
    assert_eq!(status.json["verified_up_to"], status.json["events"]);
    assert!(status.json["checkpoint"]["size"].as_u64().unwrap() > 0);

    // Search: who opened rep-0, as the trail and in pages; export equals.
    let opened = audrey.get("/v1/audit?report_id=rep-0&action=key.fetched");
    assert_eq!(opened.status, 200, "{}", opened.body);
    let who: Vec<(i64, String, String)> = events_of(&opened.json);
    assert_eq!(who.len(), 3, "{}", opened.body);
    assert!(who.iter().all(|(_, a, _)| a == "bob@other.example"));
    assert!(who.windows(2).all(|w| w[0].0 < w[1].0), "oldest first");
    let first = audrey.get("/v1/audit?report_id=rep-0&action=key.fetched&order=newest&limit=2");
    let page1 = events_of(&first.json);
    assert_eq!(
        page1.iter().map(|e| e.0).collect::<Vec<_>>(),
        [who[2].0, who[1].0]
    );
    let next = first.json["next_before"].as_i64().expect("a next page");
    assert_eq!(next, who[1].0);
    let second = audrey.get(&format!(
        "/v1/audit?report_id=rep-0&action=key.fetched&order=newest&limit=2&before={next}"
    ));
    assert_eq!(
        events_of(&second.json)
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        [who[0].0]
    );
    assert!(second.json.get("next_before").is_none());
    let oldest = audrey.get("/v1/audit?report_id=rep-0&action=key.fetched&limit=2");
    assert_eq!(
        events_of(&oldest.json)
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        [who[0].0, who[1].0]
    );
    let after = oldest.json["next_after"].as_i64().expect("a next page");
    let rest = audrey.get(&format!(
        "/v1/audit?report_id=rep-0&action=key.fetched&limit=2&after={after}"
    ));
    assert_eq!(
        events_of(&rest.json)
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        [who[2].0]
    );
    let csv =
        audrey.get("/v1/audit?report_id=rep-0&action=key.fetched&order=newest&limit=2&format=csv");
    assert!(csv.body.starts_with("seq,"), "{}", csv.body);
    let seqs: Vec<i64> = csv
        .body
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs, [who[2].0, who[1].0], "the export is the page shown");
    // By actor and by outcome; another organisation's events never show.
    let carls = audrey.get("/v1/audit?actor=carl@st.example&outcome=denied");
    let denied = events_of(&carls.json);
    // His refused fetch and his refused expiry change.
    assert_eq!(denied.len(), 2, "{}", carls.body);
    assert!(denied.iter().all(|e| e.2 == "key.denied"));
    // Olga's sign-in and key are Other's business; her refused attempt on
    // this organisation's key is this organisation's.
    let olgas = events_of(&audrey.get("/v1/audit?actor=olga@other.example").json);
    assert_eq!(olgas.len(), 1, "{olgas:?}");
    assert_eq!(olgas[0].2, "key.denied");
    assert!(
        events_of(
            &audrey
                .get("/v1/audit?actor=bob@other.example&action=key.created")
                .json
        )
        .is_empty()
    );
    let until = audrey.get("/v1/audit?until=2000-01-01T00:00:00Z");
    assert!(events_of(&until.json).is_empty());
    for bad in [
        "order=sideways",
        "outcome=maybe",
        "limit=0",
        "limit=1001",
        "action=DROP%20TABLE",
    ] {
        assert_eq!(audrey.get(&format!("/v1/audit?{bad}")).status, 400, "{bad}");
    }

    // Overview: today's counts; refused sign-ins; a locked account.
    assert_eq!(
        medseal_e2e::Client::new(&ks.base, "x")
            .post(
                "/v1/sessions",
                &json!({"email": "carl@st.example", "password": "not it at all", "device_id": "x"})
            )
            .status,
        401
    );
    let o = audrey.get("/v1/overview?days=7");
    assert_eq!(o.status, 200, "{}", o.body);
    let days = o.json["days"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    let today = days.last().unwrap();
    assert_eq!(
        (
            today["sealed"].as_u64(),
            today["opened"].as_u64(),
            today["revoked"].as_u64()
        ),
        (Some(3), Some(4), Some(1)),
        "{}",
        o.body
    );
    assert!(o.json["failed_sign_ins"].as_u64().unwrap() >= 1);
    assert_eq!(o.json["users"], 4);
    assert_eq!(o.json["locked_accounts"], 0);
    assert_eq!(
        olga.get("/v1/overview").json["days"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["sealed"],
        1
    );
    assert_eq!(amy.get("/v1/overview?days=0").status, 400);
}

both_backends!(console_reads_reports_and_the_log);
