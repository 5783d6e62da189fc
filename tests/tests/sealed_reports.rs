//! The clinician-to-recipient story on one machine, through the real binary:
//! a clinician captures a report from photos carrying GPS EXIF, sealed with a
//! per-report key from the key server; the recipient opens and extracts it
//! (no metadata left), a stranger cannot, revocation stops the recipient, and
//! the audit export tells exactly that story.

use std::path::PathBuf;
use std::process::Output;

use medseal_e2e::{Backend, Device, KeyServer};
use serde_json::{Value, json};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn seal_for_a_recipient_open_refuse_revoke_and_audit() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.org("Other Hospital");
    ks.user(
        "St Elsewhere",
        "alice@st.example",
        "clinician",
        "alice-password-1",
    );
    ks.user(
        "Other Hospital",
        "bob@other.example",
        "clinician",
        "bob-password-1",
    );
    ks.user(
        "Other Hospital",
        "carol@other.example",
        "clinician",
        "carol-password-1",
    );
    ks.start();
    let root = ks.dir.path().to_path_buf();
    let (alice, bob, carol) = (
        Device::new(&root, "alice"),
        Device::new(&root, "bob"),
        Device::new(&root, "carol"),
    );
    alice.login(&ks, "alice@st.example", "alice-password-1");
    bob.login(&ks, "bob@other.example", "bob-password-1");
    carol.login(&ks, "carol@other.example", "carol-password-1");

    // The session file and device id are private to their owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(alice.config.clone()), 0o700);
    assert_eq!(mode(alice.config.join("sessions.json")), 0o600);
    assert_eq!(mode(alice.config.join("device-id")), 0o600);

    // Alice captures a report from phone photos that carry GPS EXIF.
    let photo = root.join("wound.jpg");
    std::fs::write(&photo, medseal_capture::fixtures::phone_jpeg(1)).unwrap();
    let photo2 = root.join("wound-2.jpg");
    std::fs::write(&photo2, medseal_capture::fixtures::phone_jpeg(6)).unwrap();
    let sealed = root.join("wound.mseal");
    let out = alice.medseal(&[
        "capture",
        "--patient-id",
        "P-77",
        "--consent",
        "verbal-witnessed",
        "--witness",
        "Nurse B",
        "--body-site",
        "left forearm",
        "--photo",
        photo.to_str().unwrap(),
        photo2.to_str().unwrap(),
        "--keyserver",
        &ks.base,
        "--recipient",
        "bob@other.example",
        "-o",
        sealed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = alice.medseal(&["inspect", sealed.to_str().unwrap()]);
    let header: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(header["key_mode"], "keyserver");
    assert_eq!(header["keyserver"], ks.base.as_str());
    let key_id = header["key_id"].as_str().unwrap().to_owned();

    // The recipient opens it with the key the server releases: the photos
    // are there, with no GPS or device details left in them.
    let opened = root.join("bob-report");
    let out = bob.medseal(&[
        "open",
        "--extract",
        opened.to_str().unwrap(),
        sealed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(opened.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["capturer"]["email"], "alice@st.example");
    assert_eq!(manifest["media"].as_array().unwrap().len(), 2);
    for p in ["media/photo-1.jpg", "media/photo-2.jpg"] {
        let bytes = std::fs::read(opened.join(p)).unwrap();
        assert!(bytes.starts_with(&[0xFF, 0xD8]));
        for needle in [&b"Exif"[..], b"PhoneCo", b"serial 12345"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{p}");
        }
    }
    assert!(opened.join("report.pdf").exists());

    // A stranger is told plainly, and nothing is written.
    let stranger_out = root.join("carol-wound.jpg");
    let out = carol.medseal(&[
        "open",
        "-o",
        stranger_out.to_str().unwrap(),
        sealed.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("you are not a recipient of this report"),
        "{}",
        stderr(&out)
    );
    assert!(!stranger_out.exists());

    // Bob's session copied to another device is refused (and burnt).
    let thief = Device::new(&root, "thief");
    std::fs::create_dir_all(&thief.config).unwrap();
    std::fs::copy(
        bob.config.join("sessions.json"),
        thief.config.join("sessions.json"),
    )
    .unwrap();
    let out = thief.medseal(&["open", "-o", "-", sealed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("session"), "{}", stderr(&out));
    bob.login(&ks, "bob@other.example", "bob-password-1");

    // The creator revokes; the recipient can no longer open it.
    let web = ks.login("alice@st.example", "alice-password-1", "alice-web");
    assert_eq!(
        web.post(&format!("/v1/keys/{key_id}/revoke"), &json!({}))
            .status,
        204
    );
    let out = bob.medseal(&["open", "-o", "-", sealed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // The audit export lists exactly those events, in order.
    let export = ks.admin_ok(&["audit", "export", "--format", "json", "--key-id", &key_id]);
    let events: Value = serde_json::from_str(&export).unwrap();
    let story: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("key.created", "alice@st.example"),
        ("key.fetched", "bob@other.example"),
        ("key.denied", "carol@other.example"),
        ("key.revoked", "alice@st.example"),
        ("key.denied", "bob@other.example"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(story, want);
    assert!(ks.admin(&["audit", "verify"]).status.success());
}

#[test]
fn opening_without_a_session_says_how_to_log_in() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("O");
    ks.user("O", "a@o.example", "clinician", "a-password-123");
    ks.start();
    let root = ks.dir.path().to_path_buf();
    let alice = Device::new(&root, "a");
    alice.login(&ks, "a@o.example", "a-password-123");
    let f = root.join("x");
    std::fs::write(&f, b"x").unwrap();
    let sealed = root.join("x.mseal");
    let out = alice.medseal(&[
        "seal",
        "--keyserver",
        &ks.base,
        "--recipient",
        "b@o.example",
        "--allow-unknown-recipients",
        "-o",
        sealed.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let nobody = Device::new(&root, "nobody");
    let out = nobody.medseal(&["open", "-o", "-", sealed.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("medseal login --keyserver"),
        "{}",
        stderr(&out)
    );
    let out = Device::new(&root, "z").medseal(&[
        "login",
        "--keyserver",
        &ks.base,
        "--email",
        "a@o.example",
        "--password-file",
        "/dev/null",
    ]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
