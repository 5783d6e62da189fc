//! The organisation console in a real headless Chromium, used as its
//! admins and auditors use it: by the labels, links and button names on the
//! page, at a phone's 390-px width.
//!
//! - An admin adds a user, who signs in with the e-mailed code; the admin
//!   disables them and their open console stops at the next step.
//! - The admin revokes a report's key from its page; the recipient's next
//!   open in the browser says "revoked".
//! - An auditor finds who opened a report and exports it: the file is the
//!   API's answer to the same search, byte for byte. Auditors see no
//!   management buttons.
//! - A clinician gets no console; a form posted from another origin with
//!   the admin's cookie is refused and changes nothing.
//! - The recipient policy set on the Settings screen is enforced.
//!
//! Screenshots of each screen are left in the test's temporary folder, and
//! copied to docs/console/ when `MEDSEAL_DOC_SCREENSHOTS=1`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use medseal_e2e::browser::Browser;
use medseal_e2e::services::{Smtp, TestCert, code_in, private_file};
use medseal_e2e::{Backend, Device, KeyServer, key_id_of, write_file};
use serde_json::{Value, json};

const PW: &str = "a long clinician password";

/// Saves a screenshot, after checking that the screen fits a phone: nothing
/// makes the page scroll sideways.
fn shot(b: &Browser, name: &str) {
    b.assert_fits_phone(name);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    b.screenshot(&path);
    if std::env::var("MEDSEAL_DOC_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&path, docs.join(name)).unwrap();
    }
}

fn sign_in(b: &Browser, email: &str) {
    b.shown("#signin-form");
    b.fill("Email", email);
    b.fill("Password", PW);
    b.click("Sign in");
}

/// A one-page site on another origin whose form posts to `action` as soon
/// as it loads; answers its address.
fn hostile_site(action: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let page = format!(
            "<!doctype html><title>Win a prize</title>\
             <form id=f method=post action=\"{action}\"><input name=x value=1></form>\
             <script>document.getElementById('f').submit()</script>"
        );
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    format!("http://{addr}/")
}

fn user_id(admin: &medseal_e2e::Client, email: &str) -> (i64, String) {
    let list = admin.get(&format!("/v1/users?q={email}"));
    let u = &list.json["users"][0];
    assert_eq!(u["email"], email, "{}", list.body);
    (
        u["id"].as_i64().unwrap(),
        u["status"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn admins_manage_and_auditors_read_in_the_browser_console() {
    let root = tempfile::tempdir().unwrap();
    let cert = TestCert::new(root.path());
    let smtp_pw = private_file(&root.path().join("smtp.pass"), "mail secret\n");
    let smtp = Smtp::start("starttls", &cert, "keyserver", &smtp_pw);
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    for (who, role) in [
        ("amy@st.example", "admin"),
        ("audrey@st.example", "auditor"),
        ("alice@st.example", "clinician"),
        ("bob@st.example", "clinician"),
    ] {
        ks.user("St Elsewhere", who, role, PW);
    }
    let flags = smtp.keyserver_flags(&cert, &smtp_pw);
    ks.start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let api = ks.login("amy@st.example", PW, "amy-api");

    // A report from Alice to Bob, which Bob opens once.
    let alice = Device::new(root.path(), "alice");
    alice.login(&ks, "alice@st.example", PW);
    let plain = write_file(root.path(), "letter.txt", b"discharge letter");
    let sealed = root.path().join("letter.mseal");
    alice.seal_for(&ks, "bob@st.example", &plain, &sealed);
    let key_id = key_id_of(&sealed);
    let report_id = api.get(&format!("/v1/keys?key_id={key_id}")).json["keys"][0]["report_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The admin signs in to the console.
    let amy = Browser::new();
    amy.goto(&format!("{}/app/#/console", ks.base));
    sign_in(&amy, "amy@st.example");
    amy.shown("#c-overview-facts dd");
    assert!(amy.text("#c-overview-facts").contains("Users"));
    amy.shown("#c-chart svg");
    shot(&amy, "console-overview-390px.png");

    // Adds Nina, an auditor, who signs in with the e-mailed code.
    amy.click("Users");
    amy.shown("#c-user-table tbody tr");
    amy.fill("New user's email", "nina@st.example");
    amy.select("Role", "Auditor");
    amy.click("Add user");
    amy.status_says("nina@st.example was added as an auditor");
    amy.until("Nina in the list", |b| {
        b.text("#c-user-table")
            .contains("nina@st.example")
            .then_some(())
    });
    shot(&amy, "console-users-390px.png");
    // A role is changed only with "Change role"; the user's sessions end.
    amy.select_named("Role of alice@st.example", "auditor");
    amy.click_in_row("alice@st.example", "Change role");
    amy.status_says("alice@st.example is now an auditor");
    assert_eq!(
        api.get("/v1/users?q=alice@").json["users"][0]["role"],
        "auditor"
    );
    amy.select_named("Role of alice@st.example", "clinician");
    amy.click_in_row("alice@st.example", "Change role");
    amy.status_says("alice@st.example is now a clinician");
    let nina = amy.alongside();
    nina.goto(&format!("{}/app/#/console", ks.base));
    nina.shown("#signin-form");
    nina.fill("Email", "nina@st.example");
    nina.click("Email me a code");
    nina.shown("#code-row");
    nina.fill("Code", &code_in(&smtp.wait_for(1)));
    nina.click("Sign in");
    nina.shown("#c-overview-facts dd");
    assert!(
        nina.text("#console-org")
            .contains("nina@st.example (auditor)")
    );
    assert!(!nina.is_shown("#c-add-user"), "auditors add nobody");

    // Disabled by the admin, her open console stops at its next step.
    amy.click_in_row("nina@st.example", "Disable");
    amy.status_says("nina@st.example is disabled");
    assert_eq!(user_id(&api, "nina@st.example").1, "disabled");
    nina.click("Reports");
    assert!(
        nina.alert().contains("Your session has ended"),
        "{}",
        nina.text("body")
    );
    nina.shown("#signin-form");
    drop(nina);

    // A form on another origin posts with the admin's cookie: refused for
    // want of the CSRF header, and Bob stays enabled.
    let (bob_id, _) = user_id(&api, "bob@st.example");
    let site = hostile_site(format!("{}/v1/users/{bob_id}/disable", ks.base));
    amy.goto(&site);
    amy.until("the forged post answered", |b| {
        let t = b.text("body");
        (t.contains("X-CSRF-Token") || t.contains("unauthorized")).then_some(t)
    });
    assert_eq!(user_id(&api, "bob@st.example").1, "enabled");
    let disabled: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    assert!(
        !disabled["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "user.disabled" && e["detail"] == "bob@st.example"),
        "the forged post disabled Bob"
    );

    // Bob opens the report; the admin revokes its key on its page; Bob's
    // next open says it is revoked.
    let bob = amy.alongside();
    bob.goto(&format!("{}/app/#/open", ks.base));
    bob.choose_file("Sealed report", &sealed);
    bob.click("Open");
    sign_in(&bob, "bob@st.example");
    bob.shown("#result");
    amy.goto(&format!("{}/app/#/console/reports", ks.base));
    amy.shown("#c-report-table tbody tr");
    amy.click(&report_id);
    amy.shown("#c-report-facts dd");
    assert!(amy.text("#c-openers").contains("bob@st.example"));
    amy.click("Revoke");
    amy.click("Yes, revoke it");
    amy.status_says("Nobody can open it any more");
    shot(&amy, "console-report-390px.png");
    bob.goto(&format!("{}/app/#/open", ks.base));
    bob.choose_file("Sealed report", &sealed);
    bob.click("Open");
    let said = bob.alert();
    assert!(said.contains("revoked"), "{said}");
    drop(bob);

    // Settings: the recipient policy, enforced by the key server.
    amy.click("Settings");
    amy.fill("Allowed recipient domains", "st.example");
    amy.click("Save settings");
    amy.status_says("only for st.example");
    assert_eq!(
        api.get("/v1/org/policy").json["allowed_recipient_domains"],
        json!(["st.example"])
    );
    let alice_api = ks.login("alice@st.example", PW, "alice-api");
    let refused = alice_api.post(
        "/v1/keys",
        &json!({"report_id": "outside", "recipients": ["eve@elsewhere.example"]}),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    shot(&amy, "console-settings-390px.png");

    // The auditor: who opened the report, exported exactly as shown.
    amy.click("Sign out");
    sign_in(&amy, "audrey@st.example");
    amy.until("the auditor's console", |b| {
        b.text("#console-org")
            .contains("audrey@st.example (auditor)")
            .then_some(())
    });
    amy.click("Audit");
    amy.shown("#c-integrity.intact");
    assert!(amy.text("#c-integrity").contains("The log is intact"));
    amy.fill("Report id", &report_id);
    amy.select("Action", "Report opened (key.fetched)");
    amy.click("Search");
    amy.until("Bob's opening listed", |b| {
        let t = b.text("#c-audit-count");
        t.starts_with("Showing 1 event").then_some(())
    });
    assert!(amy.text("#c-audit-table").contains("bob@st.example"));
    shot(&amy, "console-audit-390px.png");
    amy.click("Export");
    let file = amy.until("the export saved", |b| {
        b.downloaded()
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "csv"))
    });
    let exported = std::fs::read(&file).unwrap();
    let audrey = ks.login("audrey@st.example", PW, "audrey-api");
    let (status, from_api) = audrey.get_bytes(&format!(
        "/v1/audit?order=newest&limit=50&report_id={report_id}&action=key.fetched&format=csv"
    ));
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&exported),
        String::from_utf8_lossy(&from_api),
        "the export is the API's answer"
    );
    assert_eq!(
        exported
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        2
    );
    amy.click("Users");
    amy.shown("#c-user-table tbody tr");
    assert!(!amy.is_shown("#c-add-user"));
    assert!(!amy.text("#c-user-table").contains("Disable"));
    drop(amy);

    // A clinician gets no console.
    let c = Browser::new();
    c.goto(&format!("{}/app/#/console", ks.base));
    sign_in(&c, "alice@st.example");
    let said = c.alert();
    assert!(said.contains("for admins and auditors"), "{said}");
    assert!(!c.is_shown(".console-nav"));
    assert_eq!(alice_api.get("/v1/users").status, 403);
}
