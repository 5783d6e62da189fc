//! The master keys on a PKCS#11 token (SoftHSM2): the key server wraps and
//! unwraps through the token, the keys are generated there as sensitive and
//! never extractable (checked with OpenSC's pkcs11-tool, not with medseal),
//! nothing secret is written to the data directory, rotation and retirement
//! happen on the token while reports keep opening, and a backup taken with
//! the token restores only with the token.

use std::process::Command;

use medseal_e2e::services::SoftHsm;
use medseal_e2e::{Backend, KeyServer, alice_and_bob, medseal_bin, ok, write_file};

const PASSWORD: &str = "a long clinician password";

fn labels(hsm: &SoftHsm) -> Vec<String> {
    let mut v: Vec<String> = hsm.secret_keys().into_iter().map(|(l, _)| l).collect();
    v.sort();
    v
}

#[test]
fn master_keys_stay_on_the_token_through_use_rotation_restart_and_backup() {
    let hsm = SoftHsm::new();
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.keyring = Some(hsm.uri().into());
    ks.env = hsm.env();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (alice, bob) = alice_and_bob(&mut ks, w, PASSWORD);

    // First use generated version 1 and the audit key on the token, both
    // sensitive and never extractable; nothing secret is in the data dir.
    assert_eq!(labels(&hsm), ["medseal-audit", "medseal-kek-1"]);
    for (label, desc) in hsm.secret_keys() {
        assert!(
            desc.contains("sensitive, always sensitive, never extractable, local"),
            "{label}: {desc}"
        );
    }
    let read = hsm.tool(&[
        "--read-object",
        "--type",
        "secrkey",
        "--label",
        "medseal-kek-1",
    ]);
    assert!(!read.status.success(), "the master key was readable");
    assert!(String::from_utf8_lossy(&read.stderr).contains("CKR_ATTRIBUTE_SENSITIVE"));
    let data = ks.dir.path().join("data");
    let files: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.iter().any(|f| f.contains("keyring")),
        "a keyring file was written: {files:?}"
    );

    let plain = medseal_capture::fixtures::phone_jpeg(3);
    let plain_path = write_file(w, "photo.jpg", &plain);
    let sealed = w.join("r1.mseal");
    alice.seal_for(&ks, "bob@st.example", &plain_path, &sealed);
    assert_eq!(bob.open(&sealed), plain);

    // Rotation while serving: version 2 is generated on the token, the
    // stored key is re-wrapped by the token, version 1 is destroyed there,
    // and the report still opens through the running server.
    let rotated = ok(ks.admin(&["rotate-master-key"]));
    let said = String::from_utf8_lossy(&rotated.stderr);
    assert!(said.contains("version 2 is current"), "{said}");
    assert_eq!(labels(&hsm), ["medseal-audit", "medseal-kek-2"]);
    assert_eq!(bob.open(&sealed), plain);

    // A report sealed after the rotation, and a restart: both open.
    let late = w.join("r2.mseal");
    alice.seal_for(&ks, "bob@st.example", &plain_path, &late);
    ks.kill();
    ks.start();
    assert_eq!(bob.open(&sealed), plain);
    assert_eq!(bob.open(&late), plain);
    let verify = ks.admin_ok(&["audit", "verify"]);
    assert!(verify.contains("intact"), "{verify}");

    // A wrong PIN: the server refuses to start, in one line, without
    // echoing either PIN.
    let bad_pin = write_file(w, "bad-pin", b"0000-wrong");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad_pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bad_uri = hsm
        .uri()
        .replace(hsm.pin_file().to_str().unwrap(), bad_pin.to_str().unwrap());
    let mut wrong = KeyServer::new(Backend::Sqlite);
    wrong.keyring = Some(bad_uri.into());
    wrong.env = hsm.env();
    let o = wrong.admin(&["--init", "audit", "verify"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("CKR_PIN_INCORRECT") || err.contains("PinIncorrect"),
        "{err}"
    );
    assert!(
        !err.contains("0000-wrong") && !err.contains("4711"),
        "{err}"
    );
    // One line of error, after the note that --init is creating the store.
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("creating a new key server store"))
        .collect();
    assert_eq!(errors.len(), 1, "{err}");

    // A PIN file other users can read is refused.
    std::fs::set_permissions(&bad_pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = wrong.admin(&["audit", "verify"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("chmod 600"));

    // A backup taken with the token carries no keyring; it restores onto
    // the same token, and not without it.
    let backup_pw = write_file(w, "backup-pw", b"the backup passphrase, kept in the safe");
    let backup = w.join("ks-backup.mseal");
    ks.admin_ok(&[
        "backup",
        "--password-file",
        backup_pw.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    ks.kill();
    let restore = |new: &KeyServer| {
        let mut c = Command::new(medseal_bin());
        c.args(["keyserver", "restore", "--password-file"])
            .arg(&backup_pw)
            .args(new.store_args())
            .arg(&backup)
            .envs(new.env.iter().cloned());
        c.output().unwrap()
    };
    let plain_store = ks.successor();
    let o = restore(&plain_store);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("PKCS#11 token"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut new = ks.successor();
    new.keyring = ks.keyring.clone();
    new.env = hsm.env();
    ok(restore(&new));
    new.start();
    // Sessions are not restored: Bob signs in again.
    bob.login(&new, "bob@st.example", PASSWORD);
    assert_eq!(bob.open(&sealed), plain);
    assert_eq!(bob.open(&late), plain);
    assert!(new.admin_ok(&["audit", "verify"]).contains("intact"));
}
