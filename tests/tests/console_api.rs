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

fn console_manages_users(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path());
    let smtp_pw = private_file(&dir.path().join("smtp.pass"), "mail secret\n");
    let smtp = Smtp::start("starttls", &cert, "keyserver", &smtp_pw);
    let mut ks = KeyServer::new(backend);
    ks.org("St Elsewhere");
    ks.org("Other");
    for (org, who, role) in [
        ("St Elsewhere", "amy@st.example", "admin"),
        ("St Elsewhere", "audrey@st.example", "auditor"),
        ("St Elsewhere", "alice@st.example", "clinician"),
        ("Other", "olga@other.example", "admin"),
        ("Other", "bob@other.example", "clinician"),
    ] {
        ks.user(org, who, role, PW);
    }
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
