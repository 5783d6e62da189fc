//! The receiving endpoint, end to end: a clinician captures a report sealed
//! with a key-server key and sends it with `medseal send` to a running
//! `medseal endpoint serve`; the endpoint fetches the key as its service
//! account, opens and verifies the report, and forwards it to a real
//! Orthanc (DICOMweb), a FHIR server and a drop folder. The key server's
//! audit trail shows the endpoint's fetch. Refusals are checked with
//! hand-made uploads, and a tampered report is caught before anything is
//! forwarded.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use medseal_e2e::services::{Endpoint, Fhir, Orthanc, report_form as form};
use medseal_e2e::{Backend, Device, KeyServer, free_port, key_id_of, medseal_bin, write_file};
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
const PATIENT: &str = "9434765919";
const ORG: &str = "St Elsewhere";

fn private(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Every byte under `dir`, file by file.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The session of the device in `config` for `origin`: (token, device id).
fn session_of(device: &Device, origin: &str) -> (String, String) {
    let sessions: Value = serde_json::from_slice(
        &std::fs::read(device.config.join("sessions.json")).expect("sessions.json"),
    )
    .expect("sessions JSON");
    let token = sessions[origin]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let device_id = std::fs::read_to_string(device.config.join("device-id")).expect("device id");
    (token, device_id.trim().to_owned())
}

/// Captures a two-photo report for the patient on `device`, sealed with a
/// key from `ks` addressed to Bob.
fn capture(device: &Device, ks: &KeyServer, dir: &Path, out: &str) -> PathBuf {
    for (name, seed) in [("p1.jpg", 1), ("p2.jpg", 6)] {
        std::fs::write(dir.join(name), medseal_capture::fixtures::phone_jpeg(seed)).expect("photo");
    }
    let out = dir.join(out);
    let p = |n: &str| dir.join(n).to_str().unwrap_or_default().to_owned();
    device.ok(&[
        "capture",
        "--patient-id",
        PATIENT,
        "--patient-id-system",
        NHS,
        "--consent",
        "written",
        "--consent-evidence",
        &p("p1.jpg"),
        "--body-site",
        "left forearm",
        "--photo",
        &p("p1.jpg"),
        &p("p2.jpg"),
        "--capturer",
        "Dr A",
        "--keyserver",
        &ks.base,
        "--recipient",
        "bob@st.example",
        "-o",
        out.to_str().unwrap_or_default(),
    ]);
    out
}

/// St Elsewhere with clinicians Alice and Bob and the endpoint's service
/// account (plus whatever `more` adds), the key server started, and Alice
/// logged in on her device.
fn st_elsewhere(dir: &Path, more: impl FnOnce(&mut KeyServer)) -> (KeyServer, Device) {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org(ORG);
    ks.user(ORG, "alice@st.example", "clinician", "alice-password-1");
    ks.user(ORG, "bob@st.example", "clinician", "bob-password-1");
    ks.user(ORG, "endpoint@st.example", "service", "endpoint-password-1");
    more(&mut ks);
    ks.start();
    let alice = Device::new(dir, "alice");
    alice.login(&ks, "alice@st.example", "alice-password-1");
    (ks, alice)
}

#[test]
fn a_captured_report_reaches_orthanc_and_fhir_through_the_endpoint() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    let (ks, alice) = st_elsewhere(dir, |ks| {
        ks.user(ORG, "audrey@st.example", "auditor", "audrey-password-1");
    });

    // The record systems beside the endpoint.
    let fhir = Fhir::start();
    fhir.add_patient(NHS, PATIENT);
    let orthanc = Orthanc::start();
    let orthanc_pw = write_file(dir, "orthanc.pass", orthanc.credentials.1.as_bytes());
    private(&orthanc_pw);
    let drop_dir = dir.join("emr-import");
    let config = write_file(
        dir,
        "endpoint.toml",
        format!(
            "[outbox]\nbackoff_initial_seconds = 0.2\nbackoff_max_seconds = 1\nmax_attempts = 100\n\n\
             [destinations.fhir]\ntype = \"fhir\"\nbase_url = \"{}\"\n\n\
             [destinations.pacs]\ntype = \"dicomweb\"\nurl = \"{}/dicom-web\"\n\
             auth = {{ basic = {{ username = \"{}\", password = {{ file = \"{}\" }} }} }}\n\n\
             [destinations.drop]\ntype = \"folder\"\npath = \"{}\"\npayload = \"plain\"\n",
            fhir.url,
            orthanc.url,
            orthanc.credentials.0,
            orthanc_pw.display(),
            drop_dir.display()
        )
        .as_bytes(),
    );
    let endpoint = Endpoint::start(&ks, dir, &config, &["fhir", "pacs", "drop"], &[]);

    // Alice captures and sends with the ordinary command line.
    let report = capture(&alice, &ks, dir, "report-e2e.mseal");
    let sender_config = write_file(
        dir,
        "alice-destinations.toml",
        format!(
            "[outbox]\ndir = \"{}\"\n\n[destinations.emr]\ntype = \"endpoint\"\nurl = \"{}\"\n",
            dir.join("alice-outbox").display(),
            endpoint.base
        )
        .as_bytes(),
    );
    let sent = alice.ok(&[
        "send",
        "--to",
        "emr",
        "--config",
        sender_config.to_str().unwrap_or_default(),
        report.to_str().unwrap_or_default(),
    ]);
    let said = String::from_utf8_lossy(&sent.stderr).into_owned();
    assert!(said.contains("delivered"), "{said}");
    let listed = alice.ok(&[
        "outbox",
        "list",
        "--json",
        "--config",
        sender_config.to_str().unwrap_or_default(),
    ]);
    let rows: Value = serde_json::from_slice(&listed.stdout).expect("outbox JSON");
    let receipt = rows[0]["receipt"]["id"]
        .as_str()
        .expect("receipt")
        .to_owned();
    assert!(receipt.starts_with("rcpt_"), "{receipt}");
    assert!(
        rows[0]["receipt"]["location"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("/v1/reports/{receipt}"))),
        "{rows}"
    );

    // The drop folder does not exist yet: FHIR and Orthanc get the report,
    // the folder delivery fails and is retried, visibly.
    let alice_session = session_of(&alice, &ks.base);
    let v = endpoint.wait_for(&receipt, &alice_session, "fhir and pacs delivered", |v| {
        let by = |name: &str| {
            v["deliveries"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["destination"] == name).cloned())
                .unwrap_or(Value::Null)
        };
        by("fhir")["state"] == "delivered"
            && by("pacs")["state"] == "delivered"
            && by("drop")["attempts"].as_u64().is_some_and(|n| n >= 2)
    });
    assert_eq!(v["state"], "forwarding", "{v}");
    let drop_row = v["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["destination"] == "drop"))
        .expect("drop delivery");
    // Between attempts it waits ("pending"); the status may also catch it
    // in the middle of one ("sending").
    assert!(
        drop_row["state"] == "pending" || drop_row["state"] == "sending",
        "{v}"
    );
    assert!(
        drop_row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not a reachable directory")),
        "{v}"
    );
    std::fs::create_dir(&drop_dir).expect("mkdir");
    let v = endpoint.wait_for(
        &receipt,
        &alice_session,
        "every destination delivered",
        |v| v["state"] == "delivered",
    );
    // The sender sees where it went by name, not where on the endpoint's
    // disks: no local path in the receipts.
    assert!(!v.to_string().contains(&*drop_dir.to_string_lossy()), "{v}");
    assert!(
        v["received_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );

    // Orthanc has both photos under the right patient.
    let patients = orthanc.get("/patients?expand");
    let patients = patients.as_array().expect("patients");
    assert_eq!(patients.len(), 1, "{patients:?}");
    assert_eq!(patients[0]["MainDicomTags"]["PatientID"], PATIENT);
    let instances = orthanc.get("/instances?expand");
    assert_eq!(instances.as_array().map(Vec::len), Some(2), "both photos");
    for i in instances.as_array().into_iter().flatten() {
        let id = i["ID"].as_str().unwrap_or_default();
        let tags = orthanc.get(&format!("/instances/{id}/simplified-tags"));
        assert_eq!(tags["PatientID"], PATIENT);
        assert_eq!(tags["SeriesDescription"], "left forearm");
    }
    // The FHIR server has the PDF as a DocumentReference on the patient,
    // the same PDF Bob (a recipient) gets when he opens the report.
    let found = fhir.get(&format!("/Patient?identifier={NHS}|{PATIENT}"));
    let pid = found["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let docs = fhir.get(&format!("/DocumentReference?subject=Patient/{pid}"));
    assert_eq!(docs["total"], 1, "{docs}");
    // Captured without --organisation: the custodian is the sender's
    // organisation as the key server names it.
    assert_eq!(
        docs["entry"][0]["resource"]["custodian"]["display"], ORG,
        "{docs}"
    );
    use base64::Engine;
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(
            docs["entry"][0]["resource"]["content"][0]["attachment"]["data"]
                .as_str()
                .unwrap_or_default(),
        )
        .expect("base64 PDF");
    let bob = Device::new(dir, "bob");
    bob.login(&ks, "bob@st.example", "bob-password-1");
    let opened = dir.join("opened");
    bob.ok(&[
        "open",
        "--extract",
        opened.to_str().unwrap_or_default(),
        report.to_str().unwrap_or_default(),
    ]);
    assert_eq!(pdf, std::fs::read(opened.join("report.pdf")).expect("pdf"));
    // The drop folder has the opened report as a tar, named by the
    // endpoint after the sealed file's hash, not by the sender.
    let dropped = files_under(&drop_dir);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    let tar_path = dropped[0].0.clone();
    let tar_name = tar_path.file_name().unwrap_or_default().to_string_lossy();
    assert!(
        tar_name.starts_with("report-") && tar_name.ends_with(".tar") && tar_name.len() == 31,
        "{tar_name}"
    );
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).expect("tar"));
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        names.push(entry.path().expect("path").display().to_string());
        let mut sink = Vec::new();
        entry.read_to_end(&mut sink).expect("read entry");
    }
    assert!(names.contains(&"manifest.json".to_owned()), "{names:?}");
    assert!(names.contains(&"report.pdf".to_owned()), "{names:?}");

    // The key server's audit trail shows the endpoint's fetch, as such.
    let key_id = key_id_of(&report);
    let audit: Value = serde_json::from_str(
        &ks.admin_ok(&["audit", "export", "--format", "json", "--key-id", &key_id]),
    )
    .expect("audit JSON");
    let fetches: Vec<&Value> = audit["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "key.fetched")
        .collect();
    assert!(
        fetches.iter().any(|e| e["actor"] == "endpoint@st.example"
            && e["outcome"] == "success"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("receiving endpoint"))),
        "{audit}"
    );
    // The drop folder's retries cost no fetch while it was missing: one
    // opening for FHIR and Orthanc, one for the folder once it was there,
    // each on the record as the endpoint's.
    let by_endpoint = fetches
        .iter()
        .filter(|e| e["actor"] == "endpoint@st.example")
        .count();
    assert!(
        (1..=2).contains(&by_endpoint),
        "{by_endpoint} fetches: {audit}"
    );
    assert!(
        fetches
            .iter()
            .filter(|e| e["actor"] == "endpoint@st.example")
            .all(|e| e["device_id"]
                .as_str()
                .is_some_and(|d| d.starts_with("endpoint_"))),
        "{audit}"
    );

    // Nothing of the report is kept: no sealed copy, and no file in the
    // endpoint's data directory holds the patient's number or a PDF.
    let kept = files_under(&endpoint.data);
    for (path, bytes) in &kept {
        assert!(
            path.extension().is_none_or(|e| e != "mseal"),
            "sealed copy left: {}",
            path.display()
        );
        assert!(
            !contains(bytes, PATIENT.as_bytes()) && !contains(bytes, b"%PDF"),
            "plaintext in {}",
            path.display()
        );
    }
    // The log names no patient and no token.
    let (token, _) = session_of(&alice, &ks.base);
    let log = endpoint.log_text();
    assert!(!log.contains(PATIENT) && !log.contains(&token), "{log}");
}

#[test]
fn the_endpoint_refuses_what_it_cannot_vouch_for_and_catches_tampering() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    let (ks, alice) = st_elsewhere(dir, |ks| {
        ks.org("Elsewhere General");
        ks.user(
            "Elsewhere General",
            "olga@eg.example",
            "clinician",
            "olga-password-1",
        );
        ks.user(ORG, "audrey@st.example", "auditor", "audrey-password-1");
    });
    let olga = Device::new(dir, "olga");
    olga.login(&ks, "olga@eg.example", "olga-password-1");
    let inbox = dir.join("inbox");
    std::fs::create_dir(&inbox).expect("mkdir");
    let config = write_file(
        dir,
        "endpoint.toml",
        format!(
            "[outbox]\nbackoff_initial_seconds = 0.2\nbackoff_max_seconds = 1\n\n\
             [destinations.inbox]\ntype = \"folder\"\npath = \"{}\"\npayload = \"plain\"\n",
            inbox.display()
        )
        .as_bytes(),
    );
    // A wrong service password stops the start with one line.
    {
        let bad = write_file(
            dir,
            "bad.credentials",
            b"email = \"endpoint@st.example\"\npassword = \"hunter2-not-it\"\n",
        );
        private(&bad);
        let o = Command::new(medseal_bin())
            .args([
                "endpoint",
                "serve",
                "--keyserver",
                &ks.base,
                "--credentials",
                bad.to_str().unwrap_or_default(),
                "--config",
                config.to_str().unwrap_or_default(),
                "--forward",
                "inbox",
                "--data-dir",
                dir.join("bad-data").to_str().unwrap_or_default(),
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains("cannot log in"), "{err}");
        assert!(
            !err.contains("hunter2"),
            "the password is not echoed: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let (token, device) = session_of(&alice, &ks.base);
    let report = capture(&alice, &ks, dir, "report-t.mseal");
    let sealed = std::fs::read(&report).expect("report");
    // The largest report accepted: this one, with a little room.
    let limit = (sealed.len() + 1024).to_string();
    let endpoint = Endpoint::start(
        &ks,
        dir,
        &config,
        &["inbox"],
        &["--max-report-bytes", &limit],
    );

    // Refusals, each a JSON error and nothing queued.
    let cases: Vec<(&str, Form, u16)> = vec![
        (
            "no session",
            Form::new().part("report", Part::bytes(sealed.clone()).file_name("r.mseal")),
            401,
        ),
        (
            "a made-up token",
            form("tok_nope", &device, sealed.clone()),
            401,
        ),
        (
            "not a medseal file",
            form(&token, &device, b"hello".repeat(100)),
            422,
        ),
        (
            "a report over --max-report-bytes",
            form(&token, &device, [sealed.clone(), vec![0; 4096]].concat()),
            413,
        ),
        ("an empty report", form(&token, &device, Vec::new()), 400),
        (
            "an unknown field",
            Form::new()
                .text("token", token.clone())
                .text("colour", "blue"),
            400,
        ),
        (
            "no report",
            Form::new()
                .text("token", token.clone())
                .text("device_id", device.clone()),
            400,
        ),
    ];
    for (what, f, want) in cases {
        let (code, body) = endpoint.post(f);
        assert_eq!(code, want, "{what}: {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{what}: {body}"
        );
        assert!(!body.to_string().contains(&token), "{what}: {body}");
    }
    // A file sealed with an organisation key carries no key-server
    // reference.
    let plain = write_file(dir, "note.txt", b"a note");
    let key = write_file(dir, "org.key", &[7u8; 32]);
    let by_org_key = dir.join("note.mseal");
    alice.ok(&[
        "seal",
        "--key-file",
        key.to_str().unwrap_or_default(),
        "-o",
        by_org_key.to_str().unwrap_or_default(),
        plain.to_str().unwrap_or_default(),
    ]);
    let (code, body) = endpoint.post(form(
        &token,
        &device,
        std::fs::read(&by_org_key).expect("read"),
    ));
    assert_eq!(code, 422, "{body}");
    // Not a form at all.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/reports", endpoint.base))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 400);
    // Unknown and malformed receipts.
    let alice_session = (token.clone(), device.clone());
    for id in [
        "rcpt_00000000000000000000000000000000",
        "nope",
        "..%2F..%2Fetc",
    ] {
        let (code, body) = endpoint.status(id, &alice_session);
        assert_eq!(code, 404, "{id}: {body}");
    }
    // A status asked without a session is refused.
    let r = reqwest::blocking::get(format!(
        "{}/v1/reports/rcpt_00000000000000000000000000000000",
        endpoint.base
    ))
    .expect("GET");
    assert_eq!(r.status().as_u16(), 401);
    // An auditor of the organisation has a session but sends nothing.
    let audrey = Device::new(dir, "audrey");
    audrey.login(&ks, "audrey@st.example", "audrey-password-1");
    let (atoken, adevice) = session_of(&audrey, &ks.base);
    let (code, body) = endpoint.post(form(&atoken, &adevice, sealed.clone()));
    assert_eq!(code, 403, "{body}");
    // Another organisation's clinician is not a sender this endpoint
    // accepts (its own organisation by default), whatever the report.
    let foreign = capture(&olga, &ks, dir, "report-o.mseal");
    let (otoken, odevice) = session_of(&olga, &ks.base);
    let (code, body) = endpoint.post(form(
        &otoken,
        &odevice,
        std::fs::read(&foreign).expect("read"),
    ));
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"], "forbidden", "{body}");
    assert!(files_under(&endpoint.data.join("outbox/reports")).is_empty());

    // Alice's token presented from another device is refused, and the key
    // server ends that session as it would for any stolen token.
    let (code, body) = endpoint.post(form(&token, "dev_someone_else", sealed.clone()));
    assert_eq!(code, 401, "{body}");
    let (code, body) = endpoint.post(form(&token, &device, sealed.clone()));
    assert_eq!(code, 401, "the session was ended: {body}");
    alice.login(&ks, "alice@st.example", "alice-password-1");
    let (token, device) = session_of(&alice, &ks.base);
    let alice_session = (token.clone(), device.clone());

    // A tampered report (one bit of the last chunk flipped) is accepted for
    // storage, then fails verification: nothing reaches the inbox, the
    // status says why, and the refused upload is deleted at once.
    let mut tampered = sealed.clone();
    let at = tampered.len() - 40;
    tampered[at] ^= 0x01;
    let bad = endpoint.hand_over(&token, &device, tampered);
    let v = endpoint.wait_for(&bad, &alice_session, "the tampered report fails", |v| {
        v["state"] == "failed"
    });
    assert!(
        files_under(&endpoint.data.join("outbox/reports")).is_empty(),
        "a refused report is not kept"
    );
    let why = v["deliveries"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("cannot open"), "{v}");
    assert!(files_under(&inbox).is_empty(), "nothing forwarded");

    // A sealed file that is not a report, whose damaged "tar header" holds
    // a name: it fails, and neither the status nor the log repeats what
    // was inside.
    let mut inside = b"Jane Doe 1970-01-01 ward 7".to_vec();
    inside.resize(1024, 0);
    let not_a_report = write_file(dir, "not-a-report.bin", &inside);
    let sealed_other = dir.join("not-a-report.mseal");
    alice.seal_for(&ks, "bob@st.example", &not_a_report, &sealed_other);
    let id = endpoint.hand_over(&token, &device, std::fs::read(&sealed_other).expect("read"));
    let v = endpoint.wait_for(&id, &alice_session, "the non-report fails", |v| {
        v["state"] == "failed"
    });
    assert!(
        v["deliveries"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("malformed")),
        "{v}"
    );
    assert!(!v.to_string().contains("Jane"), "{v}");
    assert!(
        !endpoint.log_text().contains("Jane"),
        "{}",
        endpoint.log_text()
    );

    // The genuine report goes through; sent twice, it is forwarded once.
    let good = endpoint.hand_over(&token, &device, sealed.clone());
    endpoint.wait_for(&good, &alice_session, "delivered", |v| {
        v["state"] == "delivered"
    });
    let again = endpoint.hand_over(&token, &device, sealed.clone());
    assert_ne!(again, good, "each hand-over has its own receipt");
    endpoint.wait_for(&again, &alice_session, "delivered", |v| {
        v["state"] == "delivered"
    });
    assert_eq!(files_under(&inbox).len(), 1, "forwarded once");

    // Another report under the same sender's file name is forwarded too:
    // the endpoint names what it forwards, so the two do not collide.
    let second = capture(&alice, &ks, dir, "report-t2.mseal");
    let id = endpoint.hand_over(&token, &device, std::fs::read(&second).expect("read"));
    endpoint.wait_for(&id, &alice_session, "the second delivered", |v| {
        v["state"] == "delivered"
    });
    assert_eq!(files_under(&inbox).len(), 2, "both forwarded");

    // Bob hands over a copy of Alice's report: his receipt is his own,
    // and Alice's receipt is nobody else's business.
    let bob = Device::new(dir, "bob");
    bob.login(&ks, "bob@st.example", "bob-password-1");
    let bob_session = session_of(&bob, &ks.base);
    let his = endpoint.hand_over(&bob_session.0, &bob_session.1, sealed.clone());
    let v = endpoint.wait_for(&his, &bob_session, "bob's copy delivered", |v| {
        v["state"] == "delivered"
    });
    assert!(!v.to_string().contains(&*inbox.to_string_lossy()), "{v}");
    let (code, body) = endpoint.status(&good, &bob_session);
    assert_eq!(code, 404, "another sender's receipt: {body}");
}

#[test]
fn a_report_answered_202_survives_the_endpoint_being_killed() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    let (ks, alice) = st_elsewhere(dir, |_| {});
    // The inbox is not there yet: nothing can be forwarded before the kill.
    let inbox = dir.join("inbox");
    let config = write_file(
        dir,
        "endpoint.toml",
        format!(
            "[outbox]\nbackoff_initial_seconds = 0.2\nbackoff_max_seconds = 0.5\nmax_attempts = 1000\n\n\
             [destinations.inbox]\ntype = \"folder\"\npath = \"{}\"\npayload = \"plain\"\n",
            inbox.display()
        )
        .as_bytes(),
    );
    let quota = ["--sender-quota-reports", "1"];
    let mut endpoint = Endpoint::start(&ks, dir, &config, &["inbox"], &quota);
    let (token, device) = session_of(&alice, &ks.base);
    let alice_session = (token.clone(), device.clone());
    let report = capture(&alice, &ks, dir, "report-k.mseal");
    let another = capture(&alice, &ks, dir, "report-k2.mseal");
    let id = endpoint.hand_over(&token, &device, std::fs::read(&report).expect("read"));
    // SIGKILL the moment the 202 is in: no chance to flush anything.
    endpoint.kill();

    let endpoint = Endpoint::start(&ks, dir, &config, &["inbox"], &quota);
    let (code, v) = endpoint.status(&id, &alice_session);
    assert_eq!(code, 200, "the receipt survived: {v}");
    assert_ne!(v["state"], "delivered", "{v}");
    // One report waiting is Alice's quota here: another waits its turn.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/reports", endpoint.base))
        .multipart(form(
            &token,
            &device,
            std::fs::read(&another).expect("read"),
        ))
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().unwrap_or(Value::Null);
    assert_eq!(body["error"], "quota_exceeded", "{body}");
    std::fs::create_dir(&inbox).expect("mkdir");
    endpoint.wait_for(&id, &alice_session, "delivered after the restart", |v| {
        v["state"] == "delivered"
    });
    let delivered = files_under(&inbox);
    assert_eq!(delivered.len(), 1, "exactly one copy");
    // Delivered, it no longer counts: the next one is taken.
    let next = endpoint.hand_over(&token, &device, std::fs::read(&another).expect("read"));
    endpoint.wait_for(&next, &alice_session, "the next delivered", |v| {
        v["state"] == "delivered"
    });
    assert_eq!(files_under(&inbox).len(), 2);
    assert!(files_under(&endpoint.data.join("outbox/reports")).is_empty());
}

/// The key fetches of `key_id` by `actor`, from the key server's trail.
fn fetches_by(ks: &KeyServer, key_id: &str, actor: &str) -> usize {
    let audit: Value = serde_json::from_str(
        &ks.admin_ok(&["audit", "export", "--format", "json", "--key-id", key_id]),
    )
    .expect("audit JSON");
    audit["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "key.fetched" && e["actor"] == actor)
        .count()
}

/// A destination that needs the report's contents costs the sender an
/// audited key fetch only when it can be reached, and one per run however
/// often the run retries it.
#[test]
fn a_destination_that_is_down_costs_no_key_fetch() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    let (ks, alice) = st_elsewhere(dir, |_| {});
    let inbox = dir.join("inbox");
    let emr = medseal_e2e::fakes::emr::start("Bearer emr-token", None);
    let token = write_file(dir, "emr.token", b"emr-token");
    private(&token);
    let config = write_file(
        dir,
        "alice.toml",
        format!(
            "[outbox]\ndir = \"{}\"\nbackoff_initial_seconds = 0.2\nbackoff_max_seconds = 0.5\nwait_in_process_seconds = 3\nmax_attempts = 100\n\n\
             [destinations.inbox]\ntype = \"folder\"\npath = \"{}\"\npayload = \"plain\"\n\n\
             [destinations.emr]\ntype = \"https\"\nurl = \"{}/inbox\"\npayload = \"plain\"\nauth = {{ bearer = {{ file = \"{}\" }} }}\n",
            dir.join("alice-outbox").display(),
            inbox.display(),
            emr.url,
            token.display()
        )
        .as_bytes(),
    );
    let cfg = config.to_str().unwrap_or_default();

    // The folder is not there: three seconds of retries, no fetch at all.
    let report = capture(&alice, &ks, dir, "report-d.mseal");
    let key_id = key_id_of(&report);
    let r = report.to_str().unwrap_or_default();
    let o = alice.medseal(&["send", "--to", "inbox", "--config", cfg, r]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(fetches_by(&ks, &key_id, "alice@st.example"), 0);
    std::fs::create_dir(&inbox).expect("mkdir");
    alice.ok(&["outbox", "flush", "--config", cfg]);
    assert_eq!(files_under(&inbox).len(), 1);
    assert_eq!(fetches_by(&ks, &key_id, "alice@st.example"), 1);

    // A destination that answers 503 twice, then takes it, in one send:
    // one fetch, not three.
    {
        let mut s = emr.state.lock().expect("fake state");
        for _ in 0..2 {
            s.faults.push(
                "/inbox",
                medseal_e2e::fakes::Resp::json(503, &serde_json::json!({"error": "busy"})),
            );
        }
    }
    let report = capture(&alice, &ks, dir, "report-e.mseal");
    let key_id = key_id_of(&report);
    alice.ok(&[
        "send",
        "--to",
        "emr",
        "--config",
        cfg,
        report.to_str().unwrap_or_default(),
    ]);
    assert_eq!(emr.state.lock().expect("fake state").stored.len(), 1);
    assert_eq!(fetches_by(&ks, &key_id, "alice@st.example"), 1);
}
