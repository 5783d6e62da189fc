//! Backup and restore of a key server: a sealed backup taken while serving,
//! restored into a fresh data directory on a rebuilt machine; every report
//! sealed before the backup still opens, and the audit chain continues.

use std::path::Path;
use std::process::{Command, Output};

use medseal_e2e::{Backend, KeyServer, medseal_bin, write_file};
use serde_json::Value;

const PASSWORD: &str = "a long clinician password";

fn medseal(config: &Path, args: &[&str]) -> Output {
    Command::new(medseal_bin())
        .args(args)
        .env("MEDSEAL_CONFIG_DIR", config)
        .output()
        .expect("run medseal")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn events(ks: &KeyServer) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    v["events"].as_array().unwrap().clone()
}

#[test]
fn backup_while_serving_restore_on_a_new_machine_and_reports_still_open() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.user("St Elsewhere", "alice@st.example", "clinician", PASSWORD);
    ks.user("St Elsewhere", "bob@st.example", "clinician", PASSWORD);
    ks.start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let pw = write_file(w, "pw", PASSWORD.as_bytes());
    let (alice, bob) = (w.join("alice"), w.join("bob"));
    for (cfg, email) in [(&alice, "alice@st.example"), (&bob, "bob@st.example")] {
        ok(medseal(
            cfg,
            &[
                "login",
                "--keyserver",
                &ks.base,
                "--email",
                email,
                "--password-file",
                pw.to_str().unwrap(),
            ],
        ));
    }
    let plain = write_file(w, "photo.jpg", &medseal_capture::fixtures::phone_jpeg(1));
    let sealed = w.join("r1.mseal");
    ok(medseal(
        &alice,
        &[
            "seal",
            "--keyserver",
            &ks.base,
            "--recipient",
            "bob@st.example",
            "-o",
            sealed.to_str().unwrap(),
            plain.to_str().unwrap(),
        ],
    ));

    // The backup, taken while the server serves.
    let backup_pw = write_file(w, "backup-pw", b"the backup passphrase, kept in the safe");
    let backup = w.join("keyserver-backup.mseal");
    let args = [
        "backup",
        "--password-file",
        backup_pw.to_str().unwrap(),
        backup.to_str().unwrap(),
    ];
    let out = ks.admin(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let events_in_backup = events(&ks).len();

    // A stolen backup reveals nothing: it is a sealed file, and none of the
    // keyring's secrets appear in it.
    let bytes = std::fs::read(&backup).unwrap();
    let keyring: Value = serde_json::from_str(
        &std::fs::read_to_string(ks.dir.path().join("data/master.keyring")).unwrap(),
    )
    .unwrap();
    let mut secrets = vec![keyring["audit_key"].as_str().unwrap().to_owned()];
    for (_, k) in keyring["keys"].as_object().unwrap() {
        secrets.push(k.as_str().unwrap().to_owned());
    }
    assert!(secrets.len() >= 2);
    for s in &secrets {
        assert!(
            !bytes.windows(s.len()).any(|x| x == s.as_bytes()),
            "a keyring secret is readable in the backup"
        );
    }
    let inspect = ok(medseal(&alice, &["inspect", backup.to_str().unwrap()]));
    let header: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(header["key_mode"], "password");

    // After the backup: one more report, which the backup cannot know.
    let late = w.join("r2.mseal");
    ok(medseal(
        &alice,
        &[
            "seal",
            "--keyserver",
            &ks.base,
            "--recipient",
            "bob@st.example",
            "-o",
            late.to_str().unwrap(),
            plain.to_str().unwrap(),
        ],
    ));

    // The machine is lost. A new one restores the backup and serves on the
    // same address.
    ks.kill();
    let mut new = ks.successor();
    let target = new.dir.path().join("data");
    let target_s = target.to_str().unwrap();
    let wrong = write_file(w, "wrong", b"not the passphrase at all");
    let o = Command::new(medseal_bin())
        .args([
            "keyserver",
            "restore",
            "--password-file",
            wrong.to_str().unwrap(),
            "--data-dir",
            target_s,
            backup.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "wrong passphrase: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !target.join("keyserver.sqlite3").exists(),
        "nothing restored on failure"
    );
    let restore = [
        "keyserver",
        "restore",
        "--password-file",
        backup_pw.to_str().unwrap(),
        "--data-dir",
        target_s,
        backup.to_str().unwrap(),
    ];
    ok(Command::new(medseal_bin()).args(restore).output().unwrap());
    let again = Command::new(medseal_bin()).args(restore).output().unwrap();
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already exists")
    );
    new.start();
    assert!(new.admin(&["audit", "verify"]).status.success());

    // Bob opens the report sealed before the backup.
    let opened = w.join("opened.jpg");
    ok(medseal(
        &bob,
        &[
            "open",
            "-o",
            opened.to_str().unwrap(),
            sealed.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read(&opened).unwrap(),
        std::fs::read(&plain).unwrap()
    );
    // The one sealed after it cannot be opened: its key was never backed up.
    let o = medseal(
        &bob,
        &[
            "open",
            "-o",
            w.join("late.jpg").to_str().unwrap(),
            late.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The chain continues from the backup: contiguous, and verified.
    let after = events(&new);
    assert!(after.len() > events_in_backup);
    let seqs: Vec<i64> = after.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(
        after
            .iter()
            .skip(events_in_backup)
            .any(|e| e["action"] == "key.fetched" && e["actor"] == "bob@st.example")
    );
    assert!(new.admin(&["audit", "verify"]).status.success());
}
