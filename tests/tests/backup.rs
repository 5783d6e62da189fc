//! Backup and restore of a key server: a sealed backup taken while serving,
//! restored into a fresh data directory on a rebuilt machine; every report
//! sealed before the backup still opens, and the audit chain continues.

use std::path::Path;
use std::process::Command;

use medseal_e2e::{Backend, KeyServer, alice_and_bob, medseal_bin, ok, write_file};
use serde_json::Value;

const PASSWORD: &str = "a long clinician password";

fn events(ks: &KeyServer) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    v["events"].as_array().unwrap().clone()
}

#[test]
fn backup_while_serving_restore_on_a_new_machine_and_reports_still_open() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (alice, bob) = alice_and_bob(&mut ks, w, PASSWORD);
    let plain = write_file(w, "photo.jpg", &medseal_capture::fixtures::phone_jpeg(1));
    let sealed = w.join("r1.mseal");
    alice.seal_for(&ks, "bob@st.example", &plain, &sealed);

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
    let inspect = alice.ok(&["inspect", backup.to_str().unwrap()]);
    let header: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(header["key_mode"], "password");

    // After the backup: one more report, which the backup cannot know.
    let late = w.join("r2.mseal");
    alice.seal_for(&ks, "bob@st.example", &plain, &late);

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

    // Sessions are not restored: Bob's, taken before the backup, opens
    // nothing until he signs in again.
    let o = bob.medseal(&[
        "open",
        "-o",
        w.join("early.jpg").to_str().unwrap(),
        sealed.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("session with"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    bob.login(&new, "bob@st.example", PASSWORD);
    // Bob opens the report sealed before the backup.
    assert_eq!(bob.open(&sealed), std::fs::read(&plain).unwrap());
    // The one sealed after it cannot be opened: its key was never backed up.
    let o = bob.medseal(&[
        "open",
        "-o",
        w.join("late.jpg").to_str().unwrap(),
        late.to_str().unwrap(),
    ]);
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

#[test]
fn postgres_store_backs_up_while_serving_and_restores_into_postgres_or_sqlite() {
    let mut ks = KeyServer::new(Backend::Postgres);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (alice, bob) = alice_and_bob(&mut ks, w, PASSWORD);
    let plain = write_file(w, "photo.jpg", &medseal_capture::fixtures::phone_jpeg(2));
    let mut sealed = Vec::new();
    for i in 0..3 {
        let out = w.join(format!("r{i}.mseal"));
        alice.seal_for(&ks, "bob@st.example", &plain, &out);
        sealed.push(out);
    }

    // Backed up while serving, sealed with an organisation key.
    let backup_key = write_file(w, "backup.key", &[0x5a; 32]);
    let backup = w.join("pg-backup.mseal");
    let out = ok(ks.admin(&[
        "backup",
        "--key-file",
        backup_key.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verified"));
    let events_in_backup = events(&ks).len();
    ks.kill();

    let restore = |target: &KeyServer| {
        Command::new(medseal_bin())
            .args(["keyserver", "restore", "--key-file"])
            .arg(&backup_key)
            .args(target.store_args())
            .arg(&backup)
            .output()
            .unwrap()
    };
    let photo = std::fs::read(&plain).unwrap();
    let opens = |report: &Path| assert_eq!(bob.open(report), photo);

    // Into a fresh PostgreSQL database on a rebuilt machine.
    let mut pg = ks.successor_on(Backend::Postgres);
    ok(restore(&pg));
    // A second restore into the now populated database is refused and
    // changes nothing.
    let again = restore(&pg);
    assert!(!again.status.success());
    pg.start();
    bob.login(&pg, "bob@st.example", PASSWORD);
    for r in &sealed {
        opens(r);
    }
    let after = events(&pg);
    assert!(after.len() > events_in_backup);
    let seqs: Vec<i64> = after.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(pg.admin(&["audit", "verify"]).status.success());
    // New organisations and users get fresh ids after the restored ones.
    pg.org("Another Clinic");
    pg.user(
        "Another Clinic",
        "carol@another.example",
        "clinician",
        PASSWORD,
    );
    pg.kill();

    // Or into a new SQLite store: a way off PostgreSQL, too.
    let mut lite = ks.successor_on(Backend::Sqlite);
    ok(restore(&lite));
    lite.start();
    bob.login(&lite, "bob@st.example", PASSWORD);
    opens(&sealed[0]);
    assert!(lite.admin(&["audit", "verify"]).status.success());

    // Someone who holds the backup's key rewrites history inside it (one
    // event's action, same length, so the tar stays well formed) and seals
    // it again: the restore checks the chain, refuses, and leaves the target
    // database empty — the genuine backup still restores into it.
    let tar = w.join("backup.tar");
    alice.ok(&[
        "open",
        "--key-file",
        backup_key.to_str().unwrap(),
        "-o",
        tar.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    let mut bytes = std::fs::read(&tar).unwrap();
    let (from, to) = (
        &b"\"action\":\"key.created\""[..],
        &b"\"action\":\"key.revoked\""[..],
    );
    let at = bytes
        .windows(from.len())
        .position(|x| x == from)
        .expect("a key.created event in the backup");
    bytes[at..at + to.len()].copy_from_slice(to);
    std::fs::write(&tar, &bytes).unwrap();
    let forged = w.join("forged.mseal");
    alice.ok(&[
        "seal",
        "--key-file",
        backup_key.to_str().unwrap(),
        "-o",
        forged.to_str().unwrap(),
        tar.to_str().unwrap(),
    ]);
    let target = ks.successor_on(Backend::Postgres);
    let o = Command::new(medseal_bin())
        .args(["keyserver", "restore", "--key-file"])
        .arg(&backup_key)
        .args(target.store_args())
        .arg(&forged)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("does not verify"), "{err}");
    assert!(!target.dir.path().join("data/master.keyring").exists());
    ok(restore(&target));
}
