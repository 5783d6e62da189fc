//! The web app the key server serves at `/app/`: its files and headers, and
//! its viewer — the WebAssembly build of the format, downloaded from the
//! server — opening real sealed files under Node the way the browser's
//! worker does: a report sealed with a key-server key for Bob (the key
//! fetched as Bob), a password-sealed file, a tampered file (nothing
//! released) and a wrong password.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use medseal_e2e::{Backend, KeyServer, alice_and_bob, write_file};
use serde_json::Value;

const PW: &str = "a long clinician password";

fn get(url: &str) -> reqwest::blocking::Response {
    get_with(url, &[])
}

/// A GET with these request headers (reqwest here neither asks for nor
/// decodes compression by itself).
fn get_with(url: &str, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut req = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

/// Downloads the app's files from the server into `dir`, checking each.
fn download_app(base: &str, dir: &Path) {
    let index = get(&format!("{base}/app/"));
    assert_eq!(index.status(), 200);
    let html = index.text().unwrap();
    for name in [
        "index.html",
        "app.js",
        "console.js",
        "app.css",
        "worker.js",
        "medseal_web.js",
        "medseal_web_bg.wasm",
    ] {
        let r = get(&format!("{base}/app/{name}"));
        assert_eq!(r.status(), 200, "{name}");
        let body = r.bytes().unwrap();
        std::fs::write(dir.join(name), &body).unwrap();
    }
    // The HTML pins its script and style by hash (Subresource Integrity),
    // and the hashes are those of the files served beside it.
    for name in ["app.js", "console.js", "app.css"] {
        use sha2::Digest;
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let sri = format!(
            "sha384-{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha384::digest(&bytes))
        );
        assert!(html.contains(&sri), "{name}: {sri} not in the HTML");
    }
    assert!(!html.contains("<script>"), "no inline script");
}

fn viewer(app: &Path, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/wasm_open.mjs");
    let out = Command::new("node")
        .arg(script)
        .arg(app)
        .args(args)
        .output()
        .expect("node (apt-get install nodejs)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_app_is_served_with_strict_headers() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.start();
    let r = get(&format!("{}/app", ks.base));
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/app/");
    let r = get(&format!("{}/app/", ks.base));
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("http"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cross-origin-embedder-policy"], "require-corp");
    assert_eq!(h["cross-origin-opener-policy"], "same-origin");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let wasm = get(&format!("{}/app/medseal_web_bg.wasm", ks.base));
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    let viewer = wasm.bytes().unwrap();
    assert_eq!(&viewer[..4], b"\0asm");
    // The capture worker's module is separate: the viewer every recipient
    // downloads does not carry the PDF writer and the image code.
    let capture = get(&format!("{}/app/medseal_capture_bg.wasm", ks.base));
    assert_eq!(capture.headers()["content-type"], "application/wasm");
    let capture = capture.bytes().unwrap();
    assert_eq!(&capture[..4], b"\0asm");
    assert!(
        viewer.len() * 2 < capture.len(),
        "viewer {} bytes, capture {} bytes",
        viewer.len(),
        capture.len()
    );
    let missing = get(&format!("{}/app/nope.js", ks.base));
    assert_eq!(missing.status(), 404);

    // Sent gzipped to a browser that takes it: the same bytes, a third of
    // the size, under their own entity tag.
    let url = format!("{}/app/medseal_capture_bg.wasm", ks.base);
    let plain = get(&url);
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_tag = plain.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(plain.headers()["vary"], "Accept-Encoding");
    let zipped = get_with(&url, &[("accept-encoding", "br, gzip, deflate")]);
    assert_eq!(zipped.status(), 200);
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["content-type"], "application/wasm");
    let zip_tag = zipped.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(zip_tag, plain_tag);
    let small = zipped.bytes().unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&small[..]), &mut unzipped)
        .unwrap();
    assert_eq!(unzipped, capture, "gzip decodes to the file");
    assert!(
        small.len() * 2 < capture.len(),
        "{} bytes gzipped",
        small.len()
    );
    let refused = get_with(&url, &[("accept-encoding", "gzip;q=0, identity")]);
    assert!(refused.headers().get("content-encoding").is_none());
    assert_eq!(refused.bytes().unwrap(), capture);

    // What the browser holds is revalidated, not sent again.
    for (tag, coding) in [(&plain_tag, "identity"), (&zip_tag, "gzip")] {
        let again = get_with(
            &url,
            &[("if-none-match", tag.as_str()), ("accept-encoding", coding)],
        );
        assert_eq!(again.status(), 304, "{coding}");
        assert_eq!(&again.headers()["etag"], tag.as_str());
        assert!(again.bytes().unwrap().is_empty());
    }
    // A tag of the other encoding, or of another build, is not this file.
    let stale = get_with(&url, &[("if-none-match", zip_tag.as_str())]);
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.bytes().unwrap(), capture);
    let listed = format!("\"0123\", W/{plain_tag}");
    assert_eq!(get_with(&url, &[("if-none-match", &listed)]).status(), 304);
    let index_tag = get(&format!("{}/app/", ks.base)).headers()["etag"].clone();
    assert_ne!(index_tag.to_str().unwrap(), plain_tag);
    // API answers are never cached.
    let api = get(&format!("{}/v1/audit/checkpoint", ks.base));
    assert_eq!(api.headers()["cache-control"], "no-store");
}

#[test]
fn the_served_viewer_opens_what_the_cli_sealed_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let mut ks = KeyServer::new(Backend::Sqlite);
    let (alice, _bob) = alice_and_bob(&mut ks, dir, PW);
    let app = dir.join("app");
    std::fs::create_dir(&app).unwrap();
    download_app(&ks.base, &app);

    // A key-server report for Bob: the viewer shows its header without a
    // key, and opens it with the key Bob fetches.
    let plain: Vec<u8> = (0..2_500_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let input = write_file(dir, "photo.jpg", &plain);
    let sealed = dir.join("photo.mseal");
    alice.seal_for(&ks, "bob@st.example", &input, &sealed);
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let header = viewer(&app, &["describe", &s(&sealed)]);
    assert_eq!(header["key_mode"], "keyserver", "{header}");
    assert_eq!(header["keyserver"], ks.base.as_str());
    let key_id = header["key_id"].as_str().unwrap();
    let bob = ks.login("bob@st.example", PW, "web_0123456789abcdef0123456789abcdef");
    let fetched = bob.get(&format!("/v1/keys/{key_id}"));
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    let key = fetched.json["key"].as_str().unwrap();
    let out = dir.join("opened.jpg");
    let r = viewer(&app, &["key", key, &s(&sealed), &s(&out)]);
    assert_eq!(r["length"], plain.len(), "{r}");
    assert_eq!(std::fs::read(&out).unwrap(), plain);

    // One bit flipped in the middle: "damaged", and no length, no output.
    let mut t = std::fs::read(&sealed).unwrap();
    let mid = t.len() / 2;
    t[mid] ^= 0x10;
    let tampered = write_file(dir, "tampered.mseal", &t);
    let r = viewer(&app, &["key", key, &s(&tampered), &s(&dir.join("t.out"))]);
    assert_eq!(r["error"]["class"], "damaged", "{r}");
    assert!(!dir.join("t.out").exists());

    // A password-sealed file, and a wrong password.
    let pw = write_file(dir, "pw", b"correct horse battery staple\n");
    let by_pw = dir.join("note.mseal");
    alice.ok(&[
        "seal",
        "--password-file",
        &s(&pw),
        "-o",
        &s(&by_pw),
        &s(&input),
    ]);
    let out = dir.join("note.out");
    let r = viewer(
        &app,
        &[
            "password",
            "correct horse battery staple",
            &s(&by_pw),
            &s(&out),
        ],
    );
    assert_eq!(r["length"], plain.len(), "{r}");
    assert_eq!(std::fs::read(&out).unwrap(), plain);
    let r = viewer(
        &app,
        &[
            "password",
            "Correct horse battery staple",
            &s(&by_pw),
            &s(&dir.join("x")),
        ],
    );
    assert_eq!(r["error"]["class"], "key", "{r}");
}

/// The web app's session is an HttpOnly, Secure, SameSite=Strict cookie
/// that is never in the answer's body; a request with it must echo the
/// CSRF token and come from the session's device.
#[test]
fn browser_sessions_are_cookies_that_need_their_csrf_token() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let mut ks = KeyServer::new(Backend::Sqlite);
    let (alice, _bob) = alice_and_bob(&mut ks, dir, PW);
    let input = write_file(dir, "photo.jpg", b"a photo");
    let sealed = dir.join("photo.mseal");
    alice.seal_for(&ks, "bob@st.example", &input, &sealed);
    let key_id = medseal_e2e::key_id_of(&sealed);

    let device = "web_0123456789abcdef0123456789abcdef";
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{}/v1/sessions", ks.base))
        .json(&serde_json::json!({"email": "bob@st.example", "password": PW, "device_id": device, "cookie": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "medseal_session=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/v1",
    ] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let body: Value = r.json().unwrap();
    assert!(
        body.get("token").is_none(),
        "no token a script could read: {body}"
    );
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();

    let fetch = |csrf: Option<&str>, device: &str| {
        let mut r = http
            .get(format!("{}/v1/keys/{key_id}", ks.base))
            .header("Cookie", &cookie)
            .header("X-Device-Id", device)
            .header("User-Agent", "medseal-test-browser/1.0");
        if let Some(c) = csrf {
            r = r.header("X-CSRF-Token", c);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(fetch(None, device), 401, "the cookie alone is not enough");
    assert_eq!(fetch(Some("forged"), device), 401);
    assert_eq!(fetch(Some(&csrf), device), 200);
    // The trail shows Bob's fetch from the browser: its device id and which
    // browser.
    let audit: Value = serde_json::from_str(
        &ks.admin_ok(&["audit", "export", "--format", "json", "--key-id", &key_id]),
    )
    .unwrap();
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "key.fetched"
                && e["actor"] == "bob@st.example"
                && e["device_id"] == device
                && e["detail"] == "web app, browser: medseal-test-browser/1.0"),
        "{audit}"
    );
    // Logging out clears the cookie and ends the session.
    let r = http
        .delete(format!("{}/v1/sessions/current", ks.base))
        .header("Cookie", &cookie)
        .header("X-Device-Id", device)
        .header("X-CSRF-Token", &csrf)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(fetch(Some(&csrf), device), 401);
}

fn sealed_file(
    dir: &Path,
    alice: &medseal_e2e::Device,
    ks: &KeyServer,
    name: &str,
    len: u32,
) -> PathBuf {
    let plain: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let input = write_file(dir, &format!("{name}.plain"), &plain);
    let sealed = dir.join(format!("{name}.mseal"));
    alice.seal_for(ks, "bob@st.example", &input, &sealed);
    sealed
}

fn share(c: &medseal_e2e::Client, file: &Path, days: Option<&str>) -> medseal_e2e::Reply {
    let part = reqwest::blocking::multipart::Part::bytes(std::fs::read(file).unwrap())
        .file_name("report.mseal");
    let mut form = reqwest::blocking::multipart::Form::new();
    if let Some(d) = days {
        form = form.text("days", d.to_owned());
    }
    c.post_form("/v1/drops", form.part("report", part))
}

/// Share links through the API: stored in chunks in the store (on
/// PostgreSQL, downloaded from another server of the pool), released only
/// to those who may fetch the report's key, limited in size and lifetime,
/// every step audited.
fn share_links(backend: Backend) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let mut ks = KeyServer::new(backend);
    ks.org("St Elsewhere");
    medseal_e2e::staff(
        &ks,
        "St Elsewhere",
        &["alice", "bob", "eve"],
        "clinician",
        PW,
    );
    ks.user("St Elsewhere", "audit@st.example", "auditor", PW);
    ks.start_with(&["--drop-max-mib", "3"]);
    let alice = medseal_e2e::Device::new(dir, "alice");
    alice.login(&ks, "alice@st.example", PW);
    // On PostgreSQL the recipient downloads from a second server.
    let mut other = (backend == Backend::Postgres).then(|| ks.replica());
    if let Some(o) = other.as_mut() {
        // Every server of a pool is reached under one public address.
        let public = ks.base.clone();
        o.start_with(&["--public-url", &public]);
    }
    let far = other.as_ref().unwrap_or(&ks);

    let report = sealed_file(dir, &alice, &ks, "big", 2_500_000);
    let a = ks.login("alice@st.example", PW, "dev-alice");
    let r = share(&a, &report, None);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json["drop_id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.json["url"].as_str().unwrap(),
        format!("{}/app/#/drop/{id}", ks.base)
    );
    let expires =
        medseal_format::clock::parse_rfc3339(r.json["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires - medseal_format::clock::now_ms()) as f64 / 86_400_000.0;
    assert!(
        (6.9..=7.0).contains(&days),
        "default lifetime 7 days: {days}"
    );

    let bob = far.login("bob@st.example", PW, "dev-bob");
    let (status, bytes) = bob.get_bytes(&format!("/v1/drops/{id}"));
    assert_eq!(status, 200);
    assert_eq!(
        bytes,
        std::fs::read(&report).unwrap(),
        "the sealed bytes, whole"
    );
    let eve = far.login("eve@st.example", PW, "dev-eve");
    let (status, body) = eve.get_bytes(&format!("/v1/drops/{id}"));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(body.len() < 1000, "no sealed bytes to a stranger");
    for unknown in ["d_00000000000000000000000000000000", "d_x", "..%2F..%2Fetc"] {
        assert_eq!(
            bob.get_bytes(&format!("/v1/drops/{unknown}")).0,
            404,
            "{unknown}"
        );
    }
    // Eve may not share a report that is not hers to hand out, nor may
    // Bob, a recipient: a link goes out under the server's name, so only
    // the report's creator (or an admin of its organisation) makes one.
    let r = share(&eve, &report, None);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = share(&bob, &report, None);
    assert_eq!(r.status, 403, "{}", r.body);

    // What cannot be shared is refused with a clear answer.
    let junk = write_file(dir, "junk.mseal", b"not a sealed report at all, just text");
    let r = share(&a, &junk, None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("not a medseal"),
        "{}",
        r.body
    );
    let too_big = sealed_file(dir, &alice, &ks, "huge", 3_500_000);
    let r = share(&a, &too_big, None);
    assert_eq!(r.status, 413, "{}", r.body);
    let r = share(&a, &report, Some("31"));
    assert_eq!(r.status, 400, "{}", r.body);

    // The organisation's maximum bounds every link.
    ks.admin_ok(&[
        "org",
        "set",
        "--org",
        "St Elsewhere",
        "--drop-max-days",
        "3",
    ]);
    let r = share(&a, &report, Some("5"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json["message"].as_str().unwrap().contains("1 to 3 days"),
        "{}",
        r.body
    );
    let r = share(&a, &report, None);
    assert_eq!(r.status, 201, "{}", r.body);
    let expires =
        medseal_format::clock::parse_rfc3339(r.json["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires - medseal_format::clock::now_ms()) as f64 / 86_400_000.0;
    assert!((2.9..=3.0).contains(&days), "capped at 3 days: {days}");

    // A revoked key takes its links with it.
    let key_id = medseal_e2e::key_id_of(&report);
    assert_eq!(
        a.post(&format!("/v1/keys/{key_id}/revoke"), &serde_json::json!({}))
            .status,
        204
    );
    let (status, _) = bob.get_bytes(&format!("/v1/drops/{id}"));
    assert_eq!(status, 410);

    let doc: Value = serde_json::from_str(
        &ks.admin_ok(&["audit", "export", "--format", "json", "--key-id", &key_id]),
    )
    .unwrap();
    let events = doc["events"].as_array().unwrap();
    let count = |action: &str, actor: &str| {
        events
            .iter()
            .filter(|e| e["action"] == action && e["actor"] == actor)
            .count()
    };
    assert_eq!(count("drop.created", "alice@st.example"), 2, "{events:?}");
    assert_eq!(count("drop.downloaded", "bob@st.example"), 1, "{events:?}");
    assert_eq!(count("drop.downloaded", "eve@st.example"), 0, "{events:?}");
    assert!(count("key.denied", "eve@st.example") >= 2, "{events:?}");
    assert!(
        count("key.denied", "bob@st.example") >= 1,
        "revoked: {events:?}"
    );
    let org: Value = serde_json::from_str(&ks.admin_ok(&[
        "audit",
        "export",
        "--format",
        "json",
        "--org",
        "St Elsewhere",
    ]))
    .unwrap();
    assert!(
        org["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "org.updated"),
        "the setting's change is audited"
    );
    ks.admin_ok(&["audit", "verify"]);
}

medseal_e2e::both_backends!(share_links);
