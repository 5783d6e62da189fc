//! Delivering sealed reports through the outbox to real and faithfully faked
//! destinations: SMTP (aiosmtpd, STARTTLS and implicit TLS), Dropbox and Box
//! (local fakes of their public APIs), a generic EMR endpoint, a FHIR server
//! and a real Orthanc over DICOMweb. Faults are real: refused connections,
//! 429 with Retry-After, 5xx, a sender killed with SIGKILL mid-upload.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use medseal_e2e::fakes::{self, Resp};
use medseal_e2e::services::{Fhir, Orthanc, Smtp, TestCert};
use medseal_e2e::{medseal_bin, write_file};
use serde_json::Value;

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// A clinician's machine: a config dir, a destinations file, an outbox, a
/// key, and a captured report.
struct Desk {
    dir: tempfile::TempDir,
}

impl Desk {
    fn new() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), [7u8; 32]).unwrap();
        Desk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the destinations file: an `[outbox]` with quick retries, then
    /// `destinations`.
    fn config(&self, destinations: &str) {
        let text = format!(
            "[outbox]\ndir = \"outbox\"\nbackoff_initial_seconds = 0.2\nbackoff_max_seconds = 2\nwait_in_process_seconds = 5\nmax_attempts = 6\n\n{destinations}"
        );
        std::fs::write(self.path().join("destinations.toml"), text).unwrap();
    }

    fn secret(&self, name: &str, value: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = write_file(self.path(), name, value.as_bytes());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(medseal_bin());
        c.current_dir(self.path())
            .args(args)
            .env("MEDSEAL_CONFIG_DIR", self.path().join("config"))
            .env(
                "MEDSEAL_DESTINATIONS",
                self.path().join("destinations.toml"),
            );
        c
    }

    /// Writes a destinations file with one Dropbox destination, `dbx`, at
    /// the fake `url`, with the app's secrets in private files.
    fn dropbox(&self, url: &str) {
        self.secret("dbx.secret", "app-secret");
        self.secret("dbx.refresh", "refresh-1");
        self.config(&format!(
            "[destinations.dbx]\ntype = \"dropbox\"\nfolder = \"/Clinical reports\"\napi_url = \"{url}\"\ncontent_url = \"{url}\"\ntoken_url = \"{url}/oauth2/token\"\nchunk_bytes = 4194304\noauth = {{ client_id = \"app-key\", client_secret = {{ file = \"dbx.secret\" }}, refresh_token = {{ file = \"dbx.refresh\" }} }}\n"
        ));
    }

    /// Starts `medseal send --to DEST FILE` in the background, to be killed.
    fn spawn_send(&self, dest: &str, file: &str) -> std::process::Child {
        self.cmd(&["send", "--to", dest, file])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// A report with two photos for patient `patient`, sealed with the key.
    fn capture(&self, name: &str, patient: &str) -> PathBuf {
        let d = self.path();
        std::fs::write(d.join("p1.jpg"), medseal_capture::fixtures::phone_jpeg(1)).unwrap();
        std::fs::write(d.join("p2.jpg"), medseal_capture::fixtures::phone_jpeg(6)).unwrap();
        self.ok(&[
            "capture",
            "--patient-id",
            patient,
            "--patient-id-system",
            NHS,
            "--consent",
            "written",
            "--consent-evidence",
            "p1.jpg",
            "--body-site",
            "left forearm",
            "--photo",
            "p1.jpg",
            "p2.jpg",
            "--capturer",
            "Dr A",
            "--key-file",
            "key",
            "-o",
            name,
        ]);
        d.join(name)
    }

    /// A sealed file of `size` random-ish bytes.
    fn sealed(&self, name: &str, size: usize) -> PathBuf {
        let plain = self.path().join(format!("{name}.plain"));
        let data: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&plain, data).unwrap();
        self.ok(&[
            "seal",
            "--key-file",
            "key",
            "-o",
            name,
            plain.to_str().unwrap(),
        ]);
        self.path().join(name)
    }

    fn list(&self) -> Vec<Value> {
        let o = self.run(&["outbox", "list", "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Forgets everything the outbox knew (as on a replaced phone).
    fn lose_outbox(&self) {
        std::fs::remove_dir_all(self.path().join("outbox")).unwrap();
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn email_over_starttls_and_implicit_tls_carries_a_report_that_opens() {
    let desk = Desk::new();
    let cert = TestCert::new(desk.path());
    let pw = desk.secret("smtp.pass", "correct horse");
    let starttls = Smtp::start("starttls", &cert, "reports", &pw);
    let implicit = Smtp::start("implicit", &cert, "reports", &pw);
    desk.secret("wrong.pass", "battery staple");
    let dest = |name: &str, port: u16, tls: &str, pass: &str| {
        format!(
            "[destinations.{name}]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nca_file = \"{}\"\nusername = \"reports\"\npassword = {{ file = \"{pass}\" }}\nfrom = \"Clinical reports <reports@st-elsewhere.example>\"\nto = [\"ward7@st-elsewhere.example\", \"Dr B <b@st-elsewhere.example>\"]\n\n",
            cert.cert.display()
        )
    };
    desk.config(
        &[
            dest("ward", starttls.port, "starttls", "smtp.pass"),
            dest("ward-smtps", implicit.port, "implicit", "smtp.pass"),
            dest("badauth", starttls.port, "starttls", "wrong.pass"),
        ]
        .concat(),
    );
    let report = desk.capture("report-e1.mseal", "9434765919");
    desk.ok(&[
        "send",
        "--to",
        "ward",
        "--to",
        "ward-smtps",
        "report-e1.mseal",
    ]);

    for smtp in [&starttls, &implicit] {
        let msgs = smtp.messages();
        assert_eq!(msgs.len(), 1, "exactly one message");
        let m = &msgs[0];
        assert_eq!(m["tls"], true);
        assert_eq!(m["authenticated"], true);
        assert_eq!(m["rcpt_tos"].as_array().unwrap().len(), 2);
        assert_eq!(m["subject"], "Secure clinical report");
        let text = m["text"].as_str().unwrap();
        let html = m["html"].as_str().unwrap();
        assert!(
            text.contains("You have received a secure clinical report"),
            "{text}"
        );
        assert!(text.contains("medseal open --key-file"), "{text}");
        assert!(html.contains("report-e1.mseal"), "{html}");
        // No patient data anywhere outside the sealed attachment.
        let raw = std::fs::read_to_string(smtp.out.path().join("1.eml")).unwrap_or_default();
        for secret in ["9434765919", "left forearm", "Dr A"] {
            assert!(
                !text.contains(secret)
                    && !html.contains(secret)
                    && !m["subject"].as_str().unwrap().contains(secret)
            );
            assert!(!raw.contains(secret), "{secret} leaked into the message");
        }
        let att = &m["attachments"].as_array().unwrap()[0];
        assert_eq!(att["filename"], "report-e1.mseal");
        let got = std::fs::read(att["path"].as_str().unwrap()).unwrap();
        assert_eq!(
            got,
            std::fs::read(&report).unwrap(),
            "the attachment is the sealed file, byte for byte"
        );
        let received = write_file(desk.path(), "received.mseal", &got);
        let extracted = desk.path().join(format!("extracted-{}", smtp.port));
        desk.ok(&[
            "open",
            "--key-file",
            "key",
            "--extract",
            extracted.to_str().unwrap(),
            received.to_str().unwrap(),
        ]);
        assert!(extracted.join("report.pdf").exists());
    }
    let list = desk.list();
    assert!(list.iter().all(|d| d["state"] == "delivered"), "{list:?}");
    assert!(
        list[0]["receipt"]["id"]
            .as_str()
            .unwrap()
            .contains("@st-elsewhere.example>")
    );

    // A wrong SMTP password is a permanent failure, said in one line.
    let o = desk.run(&["send", "--to", "badauth", "report-e1.mseal"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let bad = desk
        .list()
        .into_iter()
        .find(|d| d["destination"] == "badauth")
        .unwrap();
    assert_eq!(bad["state"], "failed");
    assert_eq!(
        bad["attempts"], 1,
        "authentication failures are not retried"
    );
    assert!(
        !stderr(&o).contains("battery"),
        "the password is never printed"
    );
}

#[test]
fn dropbox_uploads_with_sessions_refresh_retry_and_conflicts() {
    let desk = Desk::new();
    let fake = fakes::dropbox::start("app-key", "app-secret", "refresh-1", None);
    desk.dropbox(&fake.url);
    let small = desk.sealed("small.mseal", 100_000);
    let large = desk.sealed("large.mseal", 9 * 1024 * 1024 + 123);
    // The first upload meets a 429 with Retry-After: 1, then succeeds.
    fake.state
        .lock()
        .unwrap()
        .faults
        .push("/2/files/upload", fakes::dropbox::too_many_requests(1));
    let t = Instant::now();
    let err = desk.ok(&["send", "--to", "dbx", "small.mseal"]);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert!(err.contains("HTTP 429"), "{err}");
    // The access token expires in the middle of the upload session: the
    // client meets a 401, refreshes and carries on.
    fake.state.lock().unwrap().tokens.expire_after = Some(2);
    desk.ok(&["send", "--to", "dbx", "large.mseal"]);
    {
        let mut s = fake.state.lock().unwrap();
        assert_eq!(s.tokens.rejected, 1, "one 401, mid-session");
        assert_eq!(
            s.tokens.refreshes, 3,
            "one refresh per process, one after the 401"
        );
        s.tokens.expire_after = None;
        let log = s.log.join(" ");
        assert!(
            log.contains("/2/files/upload_session/start")
                && log.contains("/2/files/upload_session/append_v2")
                && log.contains("/2/files/upload_session/finish"),
            "{log}"
        );
        assert_eq!(s.files.len(), 2);
        assert_eq!(
            s.files["/clinical reports/small.mseal"].data,
            std::fs::read(&small).unwrap()
        );
        assert_eq!(
            s.files["/clinical reports/large.mseal"].data,
            std::fs::read(&large).unwrap()
        );
    }
    // The outbox is lost and the report is sent again: Dropbox answers
    // path/conflict, the content hash matches, nothing is duplicated.
    desk.lose_outbox();
    let err = desk.ok(&["send", "--to", "dbx", "large.mseal"]);
    assert!(err.contains("already there"), "{err}");
    assert_eq!(fake.state.lock().unwrap().files.len(), 2);
    // A different file under the same name is never overwritten.
    let other = desk.sealed("other.mseal", 1000);
    std::fs::copy(&other, desk.path().join("sub-small.mseal")).unwrap();
    std::fs::create_dir_all(desk.path().join("elsewhere")).unwrap();
    std::fs::copy(&other, desk.path().join("elsewhere/small.mseal")).unwrap();
    let o = desk.run(&["send", "--to", "dbx", "elsewhere/small.mseal"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a different file already exists"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fake.state.lock().unwrap().files["/clinical reports/small.mseal"].data,
        std::fs::read(&small).unwrap()
    );
    // A revoked refresh token is a permanent, explained failure.
    fake.state.lock().unwrap().tokens.refresh = "revoked".into();
    fake.state.lock().unwrap().tokens.access = "expired".into();
    desk.sealed("fourth.mseal", 1000);
    let o = desk.run(&["send", "--to", "dbx", "fourth.mseal"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid_grant"), "{}", stderr(&o));
}

/// A sender killed in the middle of a Dropbox upload session resumes that
/// session where Dropbox says it stands, rather than uploading the whole
/// file again; a file already there with the same content hash is found
/// before a byte is sent.
#[test]
fn dropbox_resumes_an_interrupted_session_and_skips_a_file_it_has() {
    let desk = Desk::new();
    // 256 KiB every 20 ms: 17 MiB take over a second.
    let fake = fakes::dropbox::start(
        "app-key",
        "app-secret",
        "refresh-1",
        Some((256 * 1024, Duration::from_millis(20))),
    );
    desk.dropbox(&fake.url);
    let big = desk.sealed("big.mseal", 17 * 1024 * 1024);
    let mut child = desk.spawn_send("dbx", "big.mseal");
    // Killed once the session holds two chunks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let appended = fake
            .state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.contains("append_v2"))
            .count();
        if appended >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the session never grew");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let count = |what: &str| {
        fake.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    assert_eq!(count("upload_session/start"), 1);
    assert_eq!(count("upload_session/finish"), 0, "killed before the end");
    desk.ok(&["outbox", "flush"]);
    assert_eq!(count("upload_session/start"), 1, "the session was resumed");
    {
        let s = fake.state.lock().unwrap();
        assert_eq!(
            s.files["/clinical reports/big.mseal"].data,
            std::fs::read(&big).unwrap()
        );
    }
    assert_eq!(desk.list()[0]["state"], "delivered");
    // Nothing is left for resuming once delivered.
    assert_eq!(
        std::fs::read_dir(desk.path().join("outbox/uploads"))
            .unwrap()
            .count(),
        0
    );
    // The outbox lost and the file sent again: found by its hash, not one
    // byte uploaded.
    let before = fake.state.lock().unwrap().log.len();
    desk.lose_outbox();
    let err = desk.ok(&["send", "--to", "dbx", "big.mseal"]);
    assert!(err.contains("already there"), "{err}");
    let after: Vec<String> = fake.state.lock().unwrap().log[before..].to_vec();
    assert!(
        after.iter().all(|l| !l.contains("upload")),
        "no upload request: {after:?}"
    );
}

#[test]
fn box_uploads_small_and_chunked_rotating_refresh_tokens() {
    let desk = Desk::new();
    let fake = fakes::boxcom::start("box-client", "box-secret", "box-refresh-0", None);
    desk.secret("box.secret", "box-secret");
    let refresh = desk.secret("box.refresh", "box-refresh-0");
    desk.config(&format!(
        "[destinations.box]\ntype = \"box\"\nfolder_id = \"4242\"\napi_url = \"{u}/2.0\"\nupload_url = \"{u}/api/2.0\"\ntoken_url = \"{u}/oauth2/token\"\nchunked_threshold_bytes = 20000000\n[destinations.box.oauth]\nclient_id = \"box-client\"\nclient_secret = {{ file = \"box.secret\" }}\nrefresh_token = {{ file = \"box.refresh\" }}\n",
        u = fake.url
    ));
    let small = desk.sealed("small.mseal", 300_000);
    let large = desk.sealed("large.mseal", 21_000_000);
    fake.state
        .lock()
        .unwrap()
        .faults
        .push("/api/2.0/files/content", fakes::boxcom::rate_limited(1));
    fake.state.lock().unwrap().faults.push(
        "/api/2.0/files/upload_sessions",
        Resp::json(
            503,
            &serde_json::json!({"type": "error", "status": 503, "code": "unavailable"}),
        ),
    );
    desk.ok(&["send", "--to", "box", "small.mseal"]);
    desk.ok(&["send", "--to", "box", "large.mseal"]);
    {
        let s = fake.state.lock().unwrap();
        assert_eq!(s.files.len(), 2);
        assert_eq!(s.files[0].data, std::fs::read(&small).unwrap());
        assert_eq!(s.files[0].folder, "4242");
        assert_eq!(s.files[1].data, std::fs::read(&large).unwrap());
        let parts = s
            .log
            .iter()
            .filter(|l| l.starts_with("PUT /api/2.0/files/upload_sessions/"))
            .count();
        assert_eq!(parts, 3, "21 MB in 8 MiB parts");
        assert!(s.log.iter().any(|l| l.ends_with("/commit")));
        // Box rotated the refresh token; the new one was saved, 0600.
        assert_eq!(std::fs::read_to_string(&refresh).unwrap(), s.tokens.refresh);
        assert_ne!(s.tokens.refresh, "box-refresh-0");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&refresh).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = desk.list();
    assert!(list.iter().all(|d| d["state"] == "delivered"), "{list:?}");
    // Sent again from a lost outbox: item_name_in_use with the same SHA-1.
    desk.lose_outbox();
    let err = desk.ok(&["send", "--to", "box", "small.mseal"]);
    assert!(err.contains("already there"), "{err}");
    assert_eq!(fake.state.lock().unwrap().files.len(), 2);
    // The access token expires: a 401, one refresh, and on.
    fake.state.lock().unwrap().tokens.access = "expired".into();
    let before = fake.state.lock().unwrap().tokens.refreshes;
    desk.sealed("third.mseal", 5000);
    desk.ok(&["send", "--to", "box", "third.mseal"]);
    assert_eq!(fake.state.lock().unwrap().tokens.refreshes, before + 1);
}

fn emr_config(url: &str) -> String {
    format!(
        "[destinations.emr]\ntype = \"https\"\nurl = \"{url}/inbox\"\nauth = {{ bearer = {{ file = \"emr.token\" }} }}\n\n[destinations.emr-plain]\ntype = \"https\"\nurl = \"{url}/inbox\"\npayload = \"plain\"\nmanifest = true\nauth = {{ basic = {{ username = \"medseal\", password = {{ env = \"EMR_PASSWORD\" }} }} }}\n"
    )
}

#[test]
fn https_endpoint_fails_then_succeeds_exactly_once() {
    let desk = Desk::new();
    let fake = fakes::emr::start("Bearer emr-token", None);
    desk.secret("emr.token", "emr-token");
    desk.config(&emr_config(&fake.url));
    let report = desk.sealed("r.mseal", 50_000);
    {
        let mut s = fake.state.lock().unwrap();
        s.faults.push(
            "/inbox",
            Resp::json(503, &serde_json::json!({"error": "maintenance"})),
        );
        s.faults.push(
            "/inbox",
            Resp::json(502, &serde_json::json!({"error": "bad_gateway"})),
        );
        s.faults.push(
            "/inbox",
            Resp::json(429, &serde_json::json!({"error": "slow_down"})).with("Retry-After", "1"),
        );
    }
    let err = desk.ok(&["send", "--to", "emr", "r.mseal"]);
    assert!(
        err.contains("attempt 1 failed") && err.contains("attempt 3 failed"),
        "{err}"
    );
    let s = fake.state.lock().unwrap();
    assert_eq!(s.requests, 4);
    assert_eq!(s.stored.len(), 1);
    assert_eq!(s.stored[0].report, std::fs::read(&report).unwrap());
    assert_eq!(s.stored[0].file_name, "r.mseal");
    let row = &desk.list()[0];
    assert_eq!(row["attempts"], 4);
    assert_eq!(row["receipt"]["id"], "emr-1");
    assert_eq!(row["idempotency_key"].as_str().unwrap(), s.stored[0].key);
}

#[test]
fn plain_payload_with_manifest_needs_the_key_and_gets_it_on_retry() {
    let desk = Desk::new();
    let fake = fakes::emr::start("Basic bWVkc2VhbDpzM2NyZXQ=", None);
    desk.secret("emr.token", "unused");
    desk.config(&emr_config(&fake.url));
    desk.capture("report-p.mseal", "9434765919");
    // Without a key the report cannot be opened: failed, with the reason.
    let o = desk
        .cmd(&["send", "--to", "emr-plain", "report-p.mseal"])
        .env("EMR_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let row = &desk.list()[0];
    assert_eq!(row["state"], "failed");
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("organisation key"),
        "{row}"
    );
    assert_eq!(fake.state.lock().unwrap().requests, 0);
    let id = row["id"].to_string();
    let o = desk
        .cmd(&["outbox", "retry", &id, "--key-file", "key"])
        .env("EMR_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = fake.state.lock().unwrap();
    assert_eq!(s.stored.len(), 1);
    let manifest: Value = serde_json::from_slice(s.stored[0].manifest.as_ref().unwrap()).unwrap();
    assert_eq!(manifest["patient"]["identifiers"][0]["value"], "9434765919");
    assert_eq!(s.stored[0].file_name, "report-p.tar");
    assert_eq!(
        &s.stored[0].report[257..262],
        b"ustar",
        "the plain payload is the report's tar bundle"
    );
}

#[test]
fn network_down_at_send_time_then_flush_delivers() {
    let desk = Desk::new();
    let port = medseal_e2e::free_port();
    desk.secret("emr.token", "emr-token");
    desk.config(
        &emr_config(&format!("http://127.0.0.1:{port}"))
            .replace("wait_in_process_seconds = 5", "wait_in_process_seconds = 0"),
    );
    std::fs::write(
        desk.path().join("destinations.toml"),
        std::fs::read_to_string(desk.path().join("destinations.toml"))
            .unwrap()
            .replace("wait_in_process_seconds = 5", "wait_in_process_seconds = 0"),
    )
    .unwrap();
    let report = desk.sealed("r.mseal", 20_000);
    let o = desk.run(&["send", "--to", "emr", "r.mseal"]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "queued, not failed: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("queued"), "{}", stderr(&o));
    assert_eq!(desk.list()[0]["state"], "pending");
    // The original may be deleted: the outbox has its own copy.
    std::fs::remove_file(&report).unwrap();
    let fake = fakes::emr::start_on(port, "Bearer emr-token", None);
    std::thread::sleep(Duration::from_millis(2500));
    desk.ok(&["outbox", "flush"]);
    assert_eq!(fake.state.lock().unwrap().stored.len(), 1);
    assert_eq!(desk.list()[0]["state"], "delivered");
    // Once delivered everywhere, the outbox drops its copy.
    assert_eq!(
        std::fs::read_dir(desk.path().join("outbox/reports"))
            .unwrap()
            .count(),
        0
    );
}

/// `wait_in_process_seconds` bounds the whole `send`, not each wait in it:
/// with a destination down, the send gives up the foreground after the
/// attempts that fit in its wait, exits 7 and leaves the delivery queued
/// with most of its attempts left.
#[test]
fn the_foreground_wait_bounds_the_whole_send() {
    let desk = Desk::new();
    let port = medseal_e2e::free_port();
    desk.secret("emr.token", "emr-token");
    let text = format!(
        "[outbox]\ndir = \"outbox\"\nmax_attempts = 12\nbackoff_initial_seconds = 1\nbackoff_max_seconds = 2\nwait_in_process_seconds = 6\n\n{}",
        emr_config(&format!("http://127.0.0.1:{port}"))
    );
    std::fs::write(desk.path().join("destinations.toml"), text).unwrap();
    desk.sealed("r.mseal", 10_000);
    let o = desk.run(&["send", "--to", "emr", "r.mseal"]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "queued, not failed: {}",
        stderr(&o)
    );
    let row = &desk.list()[0];
    assert_eq!(row["state"], "pending", "{row}");
    // 1 s doubling to 2 s, ±50 %: at most 9 attempts fit in 6 s, and at
    // least 3 do.
    let attempts = row["attempts"].as_u64().unwrap();
    assert!((3..=9).contains(&attempts), "{attempts} attempts: {row}");
}

#[test]
fn sender_killed_mid_upload_resumes_without_loss_or_duplicate() {
    let desk = Desk::new();
    // 64 KiB every 25 ms: a 3 MiB report takes over a second to upload.
    let fake = fakes::emr::start(
        "Bearer emr-token",
        Some((64 * 1024, Duration::from_millis(25))),
    );
    desk.secret("emr.token", "emr-token");
    desk.config(&emr_config(&fake.url));
    let report = desk.sealed("big.mseal", 3 * 1024 * 1024);
    let mut child = desk.spawn_send("emr", "big.mseal");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = desk.list();
        if rows.first().is_some_and(|r| r["state"] == "sending") {
            break;
        }
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        fake.state.lock().unwrap().stored.len(),
        0,
        "killed before the upload finished"
    );
    assert_eq!(
        desk.list()[0]["state"],
        "sending",
        "the interrupted attempt is visible"
    );
    let err = desk.ok(&["outbox", "flush"]);
    assert!(err.contains("delivered"), "{err}");
    {
        let s = fake.state.lock().unwrap();
        assert_eq!(s.stored.len(), 1);
        assert_eq!(s.stored[0].report, std::fs::read(&report).unwrap());
    }
    let row = &desk.list()[0];
    assert_eq!(row["state"], "delivered");
    assert_eq!(row["attempts"], 2);
    // A crash after the endpoint stored the report but before the outbox
    // recorded it is the same as sending again with the same key: the
    // endpoint replays its answer and stores nothing new.
    desk.lose_outbox();
    let err = desk.ok(&["send", "--to", "emr", "big.mseal"]);
    assert!(err.contains("already there"), "{err}");
    assert_eq!(fake.state.lock().unwrap().stored.len(), 1);
}

#[test]
fn fhir_document_reference_lands_on_the_right_patient_once() {
    let desk = Desk::new();
    let fhir = Fhir::start();
    fhir.add_patient(NHS, "9434765919");
    desk.config(&format!(
        "[destinations.fhir]\ntype = \"fhir\"\nbase_url = \"{}\"\n",
        fhir.url
    ));
    desk.capture("report-f.mseal", "9434765919");
    desk.ok(&[
        "send",
        "--to",
        "fhir",
        "--key-file",
        "key",
        "report-f.mseal",
    ]);
    let patients = fhir.get(&format!("/Patient?identifier={NHS}|9434765919"));
    let pid = patients["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let docs = fhir.get(&format!("/DocumentReference?subject=Patient/{pid}"));
    assert_eq!(docs["total"], 1, "{docs}");
    let doc = &docs["entry"][0]["resource"];
    assert_eq!(doc["status"], "current");
    // Captured with a key file and no --organisation: no custodian at all,
    // rather than an empty one (the server refuses empty strings, as FHIR
    // does, after validating every resource with fhir.resources).
    assert!(doc.get("custodian").is_none(), "{doc}");
    assert_eq!(doc["type"]["coding"][0]["code"], "72170-4");
    let att = &doc["content"][0]["attachment"];
    assert_eq!(att["contentType"], "application/pdf");
    // The attachment is the report's PDF, with FHIR's SHA-1 hash.
    use base64::Engine;
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(att["data"].as_str().unwrap())
        .unwrap();
    let extracted = desk.path().join("x");
    desk.ok(&[
        "open",
        "--key-file",
        "key",
        "--extract",
        extracted.to_str().unwrap(),
        "report-f.mseal",
    ]);
    assert_eq!(pdf, std::fs::read(extracted.join("report.pdf")).unwrap());
    use sha1::Digest;
    let sha1 = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&pdf));
    assert_eq!(att["hash"], sha1);
    assert_eq!(att["size"], pdf.len());
    // Sent again from a lost outbox: ifNoneExist finds the document.
    desk.lose_outbox();
    let err = desk.ok(&[
        "send",
        "--to",
        "fhir",
        "--key-file",
        "key",
        "report-f.mseal",
    ]);
    assert!(err.contains("already there"), "{err}");
    assert_eq!(fhir.get("/DocumentReference")["total"], 1);
    // A report for a patient the record does not know is refused (412).
    desk.capture("report-u.mseal", "4010232137");
    let o = desk.run(&[
        "send",
        "--to",
        "fhir",
        "--key-file",
        "key",
        "report-u.mseal",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("HTTP 412"), "{}", stderr(&o));
    assert_eq!(fhir.get("/DocumentReference")["total"], 1);
}

#[test]
fn dicomweb_photos_arrive_in_orthanc_under_the_patient() {
    let desk = Desk::new();
    let orthanc = Orthanc::start();
    let pw = desk.secret("orthanc.pass", &orthanc.credentials.1);
    desk.config(&format!(
        "[destinations.pacs]\ntype = \"dicomweb\"\nurl = \"{}/dicom-web\"\nauth = {{ basic = {{ username = \"{}\", password = {{ file = \"{}\" }} }} }}\n",
        orthanc.url,
        orthanc.credentials.0,
        pw.display()
    ));
    desk.capture("report-d.mseal", "9434765919");
    desk.ok(&[
        "send",
        "--to",
        "pacs",
        "--key-file",
        "key",
        "report-d.mseal",
    ]);
    let patients = orthanc.get("/patients?expand");
    let patients = patients.as_array().unwrap();
    assert_eq!(patients.len(), 1, "{patients:?}");
    assert_eq!(patients[0]["MainDicomTags"]["PatientID"], "9434765919");
    let instances = orthanc.get("/instances?expand");
    let instances = instances.as_array().unwrap();
    assert_eq!(instances.len(), 2, "both photos");
    for i in instances {
        let id = i["ID"].as_str().unwrap();
        let tags = orthanc.get(&format!("/instances/{id}/simplified-tags"));
        assert_eq!(
            tags["SOPClassUID"], "1.2.840.10008.5.1.4.1.1.77.1.4",
            "VL Photographic Image"
        );
        assert_eq!(tags["Modality"], "XC");
        assert_eq!(tags["PatientID"], "9434765919");
        assert_eq!(tags["SeriesDescription"], "left forearm");
        // Orthanc decodes the pixel data: the image is really there.
        let png = orthanc.get_bytes(&format!("/instances/{id}/preview"));
        assert_eq!(&png[1..4], b"PNG", "Orthanc renders the photo");
    }
    // Again, from a lost outbox: the same UIDs, still two instances.
    desk.lose_outbox();
    desk.ok(&[
        "send",
        "--to",
        "pacs",
        "--key-file",
        "key",
        "report-d.mseal",
    ]);
    assert_eq!(orthanc.get("/instances").as_array().unwrap().len(), 2);
}

#[test]
fn configuration_mistakes_are_clear_one_line_errors() {
    let desk = Desk::new();
    desk.sealed("r.mseal", 100);
    let o = desk.run(&["send", "--to", "nowhere", "r.mseal"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no destinations file"),
        "{}",
        stderr(&o)
    );
    desk.config("[destinations.a]\ntype = \"folder\"\npath = \".\"\n");
    let o = desk.run(&["send", "--to", "b", "r.mseal"]);
    assert!(
        stderr(&o).contains("no destination named \"b\"") && stderr(&o).contains("known: a"),
        "{}",
        stderr(&o)
    );
    desk.config("[destinations.a]\ntype = \"https\"\nurl = \"https://x.example\"\nauth = { bearer = \"tok-123\" }\n");
    let o = desk.run(&["send", "--to", "a", "r.mseal"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("never written in the configuration") && !e.contains("tok-123"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    // An unknown key is named at its own line, not its table's.
    desk.config("[destinations.a]\ntype = \"folder\"\npath = \".\"\ncolour = \"blue\"\n");
    let o = desk.run(&["send", "--to", "a", "r.mseal"]);
    assert!(
        stderr(&o).contains("line 11") && stderr(&o).contains("colour"),
        "{}",
        stderr(&o)
    );
    // A secret file other users can read is refused when the report is
    // handed over, and nothing is queued.
    let token = write_file(desk.path(), "emr.token", b"tok");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    desk.config("[destinations.a]\ntype = \"https\"\nurl = \"https://x.example/inbox\"\nauth = { bearer = { file = \"emr.token\" } }\n");
    let o = desk.run(&["send", "--to", "a", "r.mseal"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    assert!(desk.list().is_empty(), "nothing queued");
    // Errors of the https destination say https.
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let port = medseal_e2e::free_port();
    desk.config(&format!("[destinations.a]\ntype = \"https\"\nurl = \"http://127.0.0.1:{port}/inbox\"\nauth = {{ bearer = {{ file = \"emr.token\" }} }}\n"));
    let o = desk.run(&["send", "--to", "a", "r.mseal"]);
    assert!(
        stderr(&o).contains("https:") && !stderr(&o).contains("endpoint:"),
        "{}",
        stderr(&o)
    );
    desk.config("[destinations.a]\ntype = \"https\"\nurl = \"http://emr.example/inbox\"\n");
    let o = desk.run(&["send", "--to", "a", "r.mseal"]);
    assert!(stderr(&o).contains("use https"), "{}", stderr(&o));
    desk.config("[destinations.a]\ntype = \"folder\"\npath = \".\"\n");
    let o = desk.run(&["send", "--to", "a", "destinations.toml"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "not a medseal file: {}",
        stderr(&o)
    );
}

/// `link = true`: the mail carries a share link instead of the report, the
/// key server keeps the sealed bytes, and the link opens for the recipient
/// only — whatever the size limit on attachments.
#[test]
fn email_with_link_sends_a_share_link_not_the_report() {
    let desk = Desk::new();
    let cert = TestCert::new(desk.path());
    let pw = desk.secret("smtp.pass", "correct horse");
    let smtp = Smtp::start("starttls", &cert, "reports", &pw);
    let mut ks = medseal_e2e::KeyServer::new(medseal_e2e::Backend::Sqlite);
    ks.org("St Elsewhere");
    let clinician_pw = "a long clinician password";
    medseal_e2e::staff(
        &ks,
        "St Elsewhere",
        &["alice", "bob", "eve"],
        "clinician",
        clinician_pw,
    );
    ks.start();
    let pwfile = desk.secret("alice.pw", &format!("{clinician_pw}\n"));
    desk.ok(&[
        "login",
        "--keyserver",
        &ks.base,
        "--email",
        "alice@st.example",
        "--password-file",
        pwfile.to_str().unwrap(),
    ]);
    desk.config(&format!(
        "[destinations.gp]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"reports\"\npassword = {{ file = \"smtp.pass\" }}\nfrom = \"Clinical reports <reports@st-elsewhere.example>\"\nto = [\"bob@st.example\"]\nmax_attachment_bytes = 1000\nlink = true\n",
        smtp.port,
        cert.cert.display()
    ));
    std::fs::write(
        desk.path().join("p1.jpg"),
        medseal_capture::fixtures::phone_jpeg(1),
    )
    .unwrap();
    desk.ok(&[
        "capture",
        "--patient-id",
        "9434765919",
        "--patient-id-system",
        NHS,
        "--consent",
        "written",
        "--consent-evidence",
        "p1.jpg",
        "--photo",
        "p1.jpg",
        "--keyserver",
        &ks.base,
        "--recipient",
        "bob@st.example",
        "-o",
        "report-l1.mseal",
    ]);
    desk.ok(&["send", "--to", "gp", "report-l1.mseal"]);

    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "exactly one message");
    let m = &msgs[0];
    assert!(
        m["attachments"].as_array().is_none_or(|a| a.is_empty()),
        "no attachment: {m}"
    );
    let text = m["text"].as_str().unwrap();
    let html = m["html"].as_str().unwrap();
    let prefix = format!("{}/app/#/drop/", ks.base);
    let at = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no link in {text}"));
    let url: String = text[at..].split_whitespace().next().unwrap().to_owned();
    assert!(html.contains(&url), "{html}");
    assert!(text.contains("nothing to install"), "{text}");
    let raw = std::fs::read_to_string(smtp.out.path().join("1.eml")).unwrap_or_default();
    assert!(!raw.contains("9434765919"), "no patient data in the mail");

    let id = url.rsplit('/').next().unwrap();
    let bob = ks.login("bob@st.example", clinician_pw, "dev-bob");
    let (status, bytes) = bob.get_bytes(&format!("/v1/drops/{id}"));
    assert_eq!(status, 200);
    assert_eq!(
        bytes,
        std::fs::read(desk.path().join("report-l1.mseal")).unwrap()
    );
    let eve = ks.login("eve@st.example", clinician_pw, "dev-eve");
    assert_eq!(eve.get_bytes(&format!("/v1/drops/{id}")).0, 403);
    let list = desk.list();
    assert!(list.iter().all(|d| d["state"] == "delivered"), "{list:?}");
}
