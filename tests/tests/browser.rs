//! The web app in a real headless Chromium (Debian `chromium` and
//! `chromium-driver`), driven over WebDriver as a person would use it: by
//! the labels and button names on the page.
//!
//! - A clinician captures a report with the CLI for Bob; Bob opens it in
//!   the browser: the photos shown are the captured ones (hashes of what
//!   the page holds, against what `medseal open --extract` gives Bob), the
//!   consent is on the page, the audit shows Bob's fetch from a browser
//!   device, and on the wire no request carries the report and no answer
//!   but the key fetch carries key material.
//! - Refusals: a tampered file, a stranger, a revoked key, a password file
//!   and a wrong password.
//! - Share links: opened by Bob, refused to Eve, expired, purged.

use std::path::{Path, PathBuf};

use base64::Engine;
use medseal_e2e::browser::Browser;
use medseal_e2e::wire::{Proxy, occurrences};
use medseal_e2e::{Backend, Device, KeyServer, key_id_of, write_file};
use serde_json::{Value, json};
use sha2::Digest;

const PW: &str = "a long clinician password";

/// St Elsewhere with clinicians Alice, Bob and Eve; the server started.
fn clinic() -> KeyServer {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    for who in ["alice", "bob", "eve"] {
        ks.user(
            "St Elsewhere",
            &format!("{who}@st.example"),
            "clinician",
            PW,
        );
    }
    ks.start();
    ks
}

fn login(dev: &Device, keyserver: &str, email: &str) {
    let dir = dev.config.with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let pw = write_file(&dir, "pw", format!("{PW}\n").as_bytes());
    dev.ok(&[
        "login",
        "--keyserver",
        keyserver,
        "--email",
        email,
        "--password-file",
        pw.to_str().unwrap(),
    ]);
}

/// Alice captures a report for `recipient`: two phone photos and a voice
/// note, with witnessed verbal consent. Answers the sealed file.
fn capture(alice: &Device, keyserver: &str, recipient: &str, dir: &Path) -> PathBuf {
    let p1 = write_file(
        dir,
        "wound-1.jpg",
        &medseal_capture::fixtures::phone_jpeg(1),
    );
    let p2 = write_file(
        dir,
        "wound-2.jpg",
        &medseal_capture::fixtures::phone_jpeg(6),
    );
    let voice = write_file(dir, "voice.wav", &medseal_e2e::wav(1));
    let out = dir.join("report.mseal");
    alice.ok(&[
        "capture",
        "--patient-id",
        "9434765919",
        "--patient-id-system",
        "https://fhir.nhs.uk/Id/nhs-number",
        "--consent",
        "verbal-witnessed",
        "--consent-by",
        "patient",
        "--consent-scope",
        "care,teaching",
        "--witness",
        "Nurse Jones",
        "--body-site",
        "left forearm",
        "--note",
        "Healing well",
        "--photo",
        p1.to_str().unwrap(),
        p2.to_str().unwrap(),
        "--audio",
        voice.to_str().unwrap(),
        "--keyserver",
        keyserver,
        "--recipient",
        recipient,
        "-o",
        out.to_str().unwrap(),
    ]);
    out
}

/// A report bundle with a photo its manifest does not list and one that
/// differs from what it records, followed by a 12 MiB recording.
fn inconsistent_bundle() -> Vec<u8> {
    use medseal_format::bundle::BundleWriter;
    let photo = medseal_capture::fixtures::phone_jpeg(1);
    let big: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut big_file = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    big_file.extend_from_slice(&big);
    let m: medseal_format::manifest::Manifest = serde_json::from_value(json!({
        "manifest_version": 1,
        "report_id": "r_bad",
        "created_at": "2026-12-02T08:00:00Z",
        "capturer": {"name": "Alice"},
        "organisation": "St Elsewhere",
        "patient": {"identifiers": [{"system": "mrn", "value": "MRN-1"}], "minimised": false},
        "consent": {"method": "verbal-witnessed", "given_by": "patient", "scope": ["care"],
                    "witness": "Nurse Jones", "recorded_at": "2026-12-02T08:00:00Z"},
        "media": [
            {"path": "media/photo-1.jpg", "kind": "photo", "mime_type": "image/jpeg",
             "size": photo.len(), "sha256": sha_hex(b"another photo")},
            {"path": "media/video-1.mp4", "kind": "video", "mime_type": "video/mp4",
             "size": big_file.len(), "sha256": sha_hex(&big_file)}
        ]
    }))
    .unwrap();
    let mut w = BundleWriter::new(Vec::new(), &m).unwrap();
    w.add("report.pdf", 8, &b"%PDF-1.7"[..]).unwrap();
    // Not in the manifest: the reader stops here, before the 12 MiB.
    w.add("media/extra.jpg", photo.len() as u64, &photo[..])
        .unwrap();
    w.add("media/photo-1.jpg", photo.len() as u64, &photo[..])
        .unwrap();
    w.add("media/video-1.mp4", big_file.len() as u64, &big_file[..])
        .unwrap();
    w.finish().unwrap()
}

/// The password of the password-sealed files.
const PASSWORD: &str = "correct horse battery staple";

/// Seals `input` with [`PASSWORD`] into `INPUT.mseal` (beside it).
fn seal_with_password(dev: &Device, input: &Path) -> PathBuf {
    let dir = input.parent().unwrap();
    let pw = write_file(dir, "pw", format!("{PASSWORD}\n").as_bytes());
    let sealed = PathBuf::from(format!("{}.mseal", input.display()));
    dev.ok(&[
        "seal",
        "--password-file",
        pw.to_str().unwrap(),
        "-o",
        sealed.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    sealed
}

/// Chooses `sealed` in the app and opens it with `password`.
fn open_with_password(b: &Browser, base: &str, sealed: &Path, password: &str) {
    b.goto(&format!("{base}/app/#/open"));
    b.choose_file("Sealed report", sealed);
    b.fill("Password", password);
    b.click("Open");
}

fn sign_in(b: &Browser, email: &str) {
    b.fill("Email", email);
    b.fill("Password", PW);
    b.click("Sign in");
}

/// Opens `report` in `b` as `email` (signing in if asked).
fn open_in_browser(b: &Browser, base: &str, report: &Path, email: Option<&str>) {
    b.goto(&format!("{base}/app/#/open"));
    b.choose_file("Sealed report", report);
    b.click("Open");
    if let Some(email) = email {
        b.shown("#signin-form");
        sign_in(b, email);
    }
}

/// The photos on the page: alt text and Blob URL.
fn photos(b: &Browser) -> Vec<(String, String)> {
    let v = b.js(
        "return Array.from(document.querySelectorAll('#report img'), (i) => [i.alt, i.src]);",
        vec![],
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn audit_of(ks: &KeyServer, key_id: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(
        &ks.admin_ok(&["audit", "export", "--format", "json", "--key-id", key_id]),
    )
    .unwrap();
    doc["events"].as_array().cloned().unwrap_or_default()
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn bob_opens_a_captured_report_in_the_browser_and_only_the_key_crosses_the_wire() {
    let ks = clinic();
    let port: u16 = ks.base.rsplit(':').next().unwrap().parse().unwrap();
    // Everyone reaches the key server through a recording proxy; the
    // report names the proxy's address as its key server.
    let proxy = Proxy::start(port);
    let root = tempfile::tempdir().unwrap();
    let alice = Device::new(root.path(), "alice");
    login(&alice, &proxy.base, "alice@st.example");
    let report = capture(&alice, &proxy.base, "bob@st.example", root.path());
    let sealed = std::fs::read(&report).unwrap();
    // The app loads, and its service worker keeps the app's files, before
    // the report is chosen: what is counted is what opening it sends.
    let b = Browser::new();
    b.goto(&format!("{}/app/#/open", proxy.base));
    b.js_async(
        "const done = arguments[0]; navigator.serviceWorker.ready.then(() => done(true));",
        vec![],
    );
    let before = proxy.recorded();
    open_in_browser(&b, &proxy.base, &report, Some("bob@st.example"));
    b.shown("#report");
    // The app is cross-origin isolated, so the viewer's two workers share
    // memory: the fast path is the one tested here.
    assert_eq!(
        b.js("return self.crossOriginIsolated;", vec![]),
        json!(true)
    );
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("viewer-report-390px.png");
    b.screenshot(&shot);

    // What the page says.
    let facts = b.text("#report-facts");
    assert!(facts.contains("9434765919"), "{facts}");
    assert!(facts.contains("left forearm"), "{facts}");
    assert!(facts.contains("alice@st.example"), "{facts}");
    let consent = b.text("#report-consent");
    for said in [
        "verbal witnessed",
        "patient",
        "care, teaching",
        "Nurse Jones",
    ] {
        assert!(consent.contains(said), "{said:?} not in {consent}");
    }
    assert!(b.text("#report-notes").contains("Healing well"));
    let players = b.js(
        "return document.querySelectorAll('#report audio[controls]').length;",
        vec![],
    );
    assert_eq!(players, json!(1), "one voice note player");
    assert!(b.is_shown("#pdf-link"));
    let shown = photos(&b);
    assert_eq!(shown.len(), 2, "{shown:?}");

    // Nothing of the report was sent while it was opened, and only the key
    // fetch answer carried the key.
    let after = proxy.recorded();
    let sent = &after.sent[before.sent.len()..];
    let received = &after.received[before.received.len()..];
    for at in [4096, sealed.len() / 2, sealed.len() - 300] {
        let probe = &sealed[at..at + 64];
        assert_eq!(
            occurrences(sent, probe),
            0,
            "report bytes at {at} were sent"
        );
    }
    assert!(
        sent.len() < sealed.len() / 2,
        "{} bytes sent while opening a {}-byte report",
        sent.len(),
        sealed.len()
    );
    assert_eq!(occurrences(sent, b"GET /v1/keys/"), 1, "one key fetch");
    assert_eq!(
        occurrences(received, b"\"key\":\""),
        1,
        "one answer with a key"
    );
    let at = received
        .windows(7)
        .position(|w| w == b"\"key\":\"")
        .unwrap()
        + 7;
    let end = at + received[at..].iter().position(|&c| c == b'"').unwrap();
    let key_b64 = &received[at..end];
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(occurrences(received, key_b64), 1);
    assert_eq!(occurrences(received, &key), 0, "raw key bytes nowhere");

    // The photos the page shows are, byte for byte, those Bob's command
    // line extracts from the same report: "Save all" saves every file, and
    // each image shown has the size the manifest records.
    let bob = Device::new(root.path(), "bob");
    login(&bob, &proxy.base, "bob@st.example");
    let extracted = root.path().join("by-cli");
    bob.ok(&[
        "open",
        "--extract",
        extracted.to_str().unwrap(),
        report.to_str().unwrap(),
    ]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(extracted.join("manifest.json")).unwrap()).unwrap();
    b.click("Save all");
    let mut compared = 0;
    for m in manifest["media"].as_array().unwrap() {
        let path = m["path"].as_str().unwrap();
        let name = path.rsplit('/').next().unwrap();
        let on_disk = std::fs::read(extracted.join(path)).unwrap();
        assert_eq!(sha_hex(&b.saved(name)), sha_hex(&on_disk), "{name}");
        if m["kind"] == "photo" {
            assert!(
                shown.iter().any(|(alt, _)| alt == name),
                "no image with alt text {name}: {shown:?}"
            );
            let size = b.js(
                "const i = Array.from(document.querySelectorAll('#report img')).find((i) => i.alt === arguments[0]);
                 return [i.naturalWidth, i.naturalHeight];",
                vec![json!(name)],
            );
            assert_eq!(size, json!([m["width"], m["height"]]), "{name} as decoded");
        }
        compared += 1;
    }
    assert_eq!(compared, 3, "two photos and a voice note");
    assert_eq!(
        b.saved("report.pdf"),
        std::fs::read(extracted.join("report.pdf")).unwrap()
    );

    // The audit shows Bob's fetch, from the browser's own device id.
    let key_id = key_id_of(&report);
    let events = audit_of(&ks, &key_id);
    let web = events
        .iter()
        .find(|e| {
            e["action"] == "key.fetched"
                && e["actor"] == "bob@st.example"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("web app, browser:") && d.contains("Chrome"))
        })
        .unwrap_or_else(|| panic!("no browser fetch by Bob: {events:?}"));
    let device = web["device_id"].as_str().unwrap();
    assert!(device.starts_with("web_") && device.len() == 36, "{device}");
    let stored = b.js("return localStorage.getItem('medseal-device-id');", vec![]);
    assert_eq!(stored, json!(device), "the browser keeps its device id");
    // The session is a cookie scripts cannot read.
    let cookies = b.js("return document.cookie;", vec![]);
    assert!(!cookies.as_str().unwrap_or("").contains("medseal_session"));
}

#[test]
fn the_browser_shows_nothing_of_a_tampered_report_and_says_why_keys_are_refused() {
    let ks = clinic();
    let root = tempfile::tempdir().unwrap();
    let alice = Device::new(root.path(), "alice");
    login(&alice, &ks.base, "alice@st.example");
    let report = capture(&alice, &ks.base, "bob@st.example", root.path());

    // One flipped bit near the end of the file: the last chunk fails.
    let mut bytes = std::fs::read(&report).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x01;
    let tampered = write_file(root.path(), "tampered.mseal", &bytes);
    let bob = Browser::new();
    open_in_browser(&bob, &ks.base, &tampered, Some("bob@st.example"));
    let said = bob.alert();
    assert!(said.contains("damaged or tampered"), "{said}");
    bob.screenshot(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("viewer-tampered-390px.png"));
    assert!(!bob.is_shown("#report"), "nothing of the report is shown");
    assert!(photos(&bob).is_empty());

    // Eve is no recipient.
    drop(bob);
    let eve = Browser::new();
    open_in_browser(&eve, &ks.base, &report, Some("eve@st.example"));
    let said = eve.alert();
    assert!(said.contains("not a recipient"), "{said}");
    assert!(!eve.is_shown("#report"));
    drop(eve);

    // Alice revokes the key: Bob's next open says so.
    let api = ks.login("alice@st.example", PW, "dev-alice-api");
    let key_id = key_id_of(&report);
    let r = api.post(&format!("/v1/keys/{key_id}/revoke"), &json!({}));
    assert_eq!(r.status, 204, "{}", r.body);
    let bob = Browser::new();
    open_in_browser(&bob, &ks.base, &report, Some("bob@st.example"));
    let said = bob.alert();
    assert!(said.contains("revoked"), "{said}");
    assert!(!bob.is_shown("#report"));

    // A password-sealed file (not a report): opened and offered to save.
    let notes = write_file(
        root.path(),
        "notes.txt",
        b"handover notes for the ward round\n",
    );
    let sealed = seal_with_password(&alice, &notes);
    open_with_password(&bob, &ks.base, &sealed, "not the password");
    let said = bob.alert();
    assert!(said.contains("password is not right"), "{said}");
    bob.fill("Password", PASSWORD);
    bob.click("Open");
    bob.click("Save the opened file");
    assert_eq!(bob.saved("notes.txt"), std::fs::read(&notes).unwrap());

    // Sealed whole and intact, but holding a photo its manifest does not
    // list (and 12 MiB after it, more than the workers' ring holds): the
    // reader stops early, the decryption stops with it, and the page says
    // "damaged or tampered" and shows nothing.
    let inconsistent = write_file(root.path(), "inconsistent.tar", &inconsistent_bundle());
    let sealed = seal_with_password(&alice, &inconsistent);
    open_with_password(&bob, &ks.base, &sealed, PASSWORD);
    let said = bob.alert();
    assert!(said.contains("damaged or tampered"), "{said}");
    assert!(!bob.is_shown("#report"));
    assert!(!bob.is_shown("#result"));
    assert!(
        !bob.is_shown("#report"),
        "a plain file is not shown as a report"
    );
}

#[test]
fn a_share_link_opens_for_bob_not_for_eve_and_stops_when_it_expires() {
    let mut ks = clinic();
    let root = tempfile::tempdir().unwrap();
    let alice = Device::new(root.path(), "alice");
    login(&alice, &ks.base, "alice@st.example");
    let report = capture(&alice, &ks.base, "bob@st.example", root.path());
    let out = alice.ok(&["share", report.to_str().unwrap()]);
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with(&format!("{}/app/#/drop/d_", ks.base)),
        "{url}"
    );
    let drop_id = url.rsplit('/').next().unwrap().to_owned();

    let bob = Browser::new();
    bob.goto(&url);
    bob.click("Open");
    bob.shown("#signin-form");
    bob.screenshot(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("viewer-share-link-390px.png"));
    sign_in(&bob, "bob@st.example");
    bob.shown("#report");
    assert_eq!(photos(&bob).len(), 2);
    assert!(bob.text("#report-facts").contains("9434765919"));

    drop(bob);
    let eve = Browser::new();
    eve.goto(&url);
    eve.click("Open");
    sign_in(&eve, "eve@st.example");
    let said = eve.alert();
    assert!(said.contains("not a recipient"), "{said}");
    assert!(!eve.is_shown("#report"));
    drop(eve);

    let key_id = key_id_of(&report);
    let events = audit_of(&ks, &key_id);
    let has = |action: &str, actor: &str| {
        events
            .iter()
            .any(|e| e["action"] == action && e["actor"] == actor)
    };
    assert!(has("drop.created", "alice@st.example"), "{events:?}");
    assert!(has("drop.downloaded", "bob@st.example"), "{events:?}");
    assert!(has("key.denied", "eve@st.example"), "{events:?}");
    assert!(!has("drop.downloaded", "eve@st.example"), "{events:?}");

    // The link's time runs out: Bob is told it expired.
    ks.sql(&["UPDATE drops SET expires_at = 1"]);
    let bob = Browser::new();
    bob.goto(&url);
    bob.click("Open");
    sign_in(&bob, "bob@st.example");
    let said = bob.alert();
    assert!(said.contains("expired"), "{said}");
    drop(bob);

    // A restarted server purges it: its bytes are gone, and that is audited.
    // An upload abandoned two hours ago goes too; one still arriving stays.
    let now = medseal_format::clock::now_ms();
    ks.sql(&[
        "INSERT INTO drop_chunks (drop_id, seq, bytes, written_at) VALUES ('d_0000000000000000000000000000dead', 0, X'00', 1)",
        &format!("INSERT INTO drop_chunks (drop_id, seq, bytes, written_at) VALUES ('d_0000000000000000000000000000dead', 1, X'00', {})", now - 2 * 3_600_000),
        &format!("INSERT INTO drop_chunks (drop_id, seq, bytes, written_at) VALUES ('d_00000000000000000000000000000a1e', 0, X'00', {})", now - 2 * 3_600_000),
        &format!("INSERT INTO drop_chunks (drop_id, seq, bytes, written_at) VALUES ('d_00000000000000000000000000000a1e', 1, X'00', {now})"),
    ]);
    ks.kill();
    ks.start();
    let api = ks.login("bob@st.example", PW, "dev-bob-api");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, _) = api.get_bytes(&format!("/v1/drops/{drop_id}"));
        if status == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {status}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let events = audit_of(&ks, &key_id);
    assert!(
        events.iter().any(|e| e["action"] == "drop.purged"),
        "{events:?}"
    );
    let rows = |id: &str| {
        ks.sql_rows(&format!(
            "UPDATE drop_chunks SET seq = seq WHERE drop_id = '{id}'"
        ))
    };
    assert_eq!(rows(&drop_id), 0, "the expired link's bytes are deleted");
    assert_eq!(
        rows("d_0000000000000000000000000000dead"),
        0,
        "abandoned upload"
    );
    assert_eq!(
        rows("d_00000000000000000000000000000a1e"),
        2,
        "upload under way"
    );
}

/// A key server that mails codes, with Alice and the St Elsewhere guest
/// policy `guests`; answers it and its SMTP server.
fn mailing_clinic(dir: &Path, guests: &str) -> (KeyServer, medseal_e2e::services::Smtp) {
    use medseal_e2e::services::{Smtp, TestCert, private_file};
    let cert = TestCert::new(dir);
    let pw = private_file(&dir.join("smtp.pass"), "mail secret\n");
    let smtp = Smtp::start("starttls", &cert, "keyserver", &pw);
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.user("St Elsewhere", "alice@st.example", "clinician", PW);
    ks.admin_ok(&["org", "set", "--org", "St Elsewhere", "--guests", guests]);
    let flags = smtp.keyserver_flags(&cert, &pw);
    ks.start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    (ks, smtp)
}

#[test]
fn a_guest_with_no_account_opens_a_report_with_an_emailed_code() {
    let root = tempfile::tempdir().unwrap();
    let (ks, smtp) = mailing_clinic(root.path(), "partner.example");
    let alice = Device::new(root.path(), "alice");
    login(&alice, &ks.base, "alice@st.example");
    let report = capture(&alice, &ks.base, "bob@partner.example", root.path());

    let b = Browser::new();
    b.goto(&format!("{}/app/#/open", ks.base));
    b.choose_file("Sealed report", &report);
    b.click("Open");
    b.fill("Email", "bob@partner.example");
    b.click("Email me a code");
    b.shown("#code-row");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("signin-code-390px.png");
    b.screenshot(&shot);
    let code = medseal_e2e::services::code_in(&smtp.wait_for(1));
    b.fill("Code", &code);
    b.click("Sign in");
    b.shown("#report");
    assert!(b.text("#report-facts").contains("9434765919"));
    assert_eq!(b.text("#who"), "bob@partner.example");
    let events = audit_of(&ks, &key_id_of(&report));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "key.fetched" && e["actor"] == "bob@partner.example"),
        "{events:?}"
    );

    // The link in a second mail: opening it signs nobody in; "Sign in" does.
    let c = reqwest::blocking::Client::new();
    let r = c
        .post(format!("{}/v1/sessions/code", ks.base))
        .json(&json!({"email": "bob@partner.example", "device_id": "other-phone"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let mail = smtp.wait_for(2);
    let link = mail["text"]
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.contains("/app/#/code?"))
        .unwrap()
        .trim()
        .to_owned();
    // One Chromium at a time: Bob's first browser goes before the second.
    drop(b);
    let fresh = Browser::new();
    fresh.goto(&link);
    fresh.shown("#code-row");
    assert_eq!(
        fresh.js("return location.hash;", vec![]),
        json!("#/code"),
        "the code leaves the address bar"
    );
    let used_before = audit_of_all(&ks, "code.used");
    fresh.click("Sign in");
    fresh.until("signed in", |b| {
        (b.text("#who") == "bob@partner.example").then_some(())
    });
    assert_eq!(audit_of_all(&ks, "code.used"), used_before + 1);
}

fn audit_of_all(ks: &KeyServer, action: &str) -> usize {
    let doc: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .count()
}

#[test]
fn a_clinician_signs_in_with_their_organisation_and_opens_a_shared_report() {
    use medseal_e2e::services::OpenIdProvider;
    let mut ks = KeyServer::new(Backend::Sqlite);
    let idp = OpenIdProvider::start(
        "medseal-st",
        "browser-test-secret",
        &format!("{}/v1/sso/callback", ks.base),
    );
    ks.org("St Elsewhere");
    for who in ["alice", "bob"] {
        ks.user(
            "St Elsewhere",
            &format!("{who}@st.example"),
            "clinician",
            PW,
        );
    }
    idp.register(
        &ks,
        "St Elsewhere",
        "medseal-st",
        "browser-test-secret",
        &["--allowed-domain", "st.example"],
    );
    ks.start();
    let root = tempfile::tempdir().unwrap();
    let alice = Device::new(root.path(), "alice");
    login(&alice, &ks.base, "alice@st.example");
    let report = capture(&alice, &ks.base, "bob@st.example", root.path());
    let link = String::from_utf8(
        alice
            .ok(&["share", "--keyserver", &ks.base, report.to_str().unwrap()])
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();

    idp.next_login("bob@st.example", true);
    let b = Browser::new();
    b.goto(&link);
    b.click("Open");
    b.click("Sign in with your organisation");
    b.fill("Organisation or email domain", "st.example");
    b.click("Continue");
    // To the provider and back; the shared report opens on its own.
    b.shown("#report");
    assert_eq!(b.text("#who"), "bob@st.example");
    assert!(b.text("#report-facts").contains("9434765919"));
    let hash = b.js("return location.hash;", vec![]);
    assert!(!hash.as_str().unwrap().contains("grant"), "{hash}");
    assert_eq!(audit_of_all(&ks, "sso.login"), 1);
}
