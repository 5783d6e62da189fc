//! The administrator's commands: a store is never started by accident,
//! passwords meet NIST SP 800-63B, and users and organisations can be
//! listed and changed — each change with its audit event, so that
//! `audit verify` still finds the log and the store in agreement.

use std::process::Command;

use medseal_e2e::{Backend, KeyServer, both_backends, medseal_bin, write_file};
use serde_json::Value;

const PW: &str = "a long clinician password";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// In an empty folder (a git checkout, say), `keyserver org add` or `user
/// list` refuses to begin a new store and creates nothing; `--init` does.
#[test]
fn admin_commands_do_not_start_a_store_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        Command::new(medseal_bin())
            .current_dir(d)
            .args(args)
            .env_remove("MEDSEAL_DATA_DIR")
            .env_remove("MEDSEAL_DATABASE_URL")
            .env_remove("MEDSEAL_KEYRING")
            .output()
            .unwrap()
    };
    for args in [
        &["keyserver", "org", "add", "St Elsewhere"][..],
        &["keyserver", "user", "list"],
        &["keyserver", "audit", "verify"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains("no key server store") && e.contains("--init"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(!d.join("medseal-data").exists(), "{args:?} created a store");
    }
    let o = run(&["keyserver", "--init", "org", "add", "St Elsewhere"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("creating a new key server store"));
    assert!(d.join("medseal-data/keyserver.sqlite3").exists());
    // From now on the store exists and no flag is needed.
    let o = run(&["keyserver", "org", "list", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let orgs: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(orgs[0]["name"], "St Elsewhere");

    // A PostgreSQL database the key server never set up is a new store too.
    let pg = KeyServer::new(Backend::Postgres);
    let mut args: Vec<String> = ["keyserver", "org", "add", "X"].map(String::from).to_vec();
    args.extend(pg.store_args());
    let o = Command::new(medseal_bin()).args(&args).output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no key server store at PostgreSQL"),
        "{}",
        stderr(&o)
    );
}

/// The server itself may begin a store, and says so.
#[test]
fn serve_says_when_it_creates_a_store() {
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.start();
    let mut waited = 0;
    while !ks.log_text().contains("listening on") && waited < 100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    assert!(
        ks.log_text().contains("a new, empty store was created"),
        "{}",
        ks.log_text()
    );
}

/// New passwords: at least 12 characters and not a common one, for `user
/// add` and `user passwd`; the message never repeats the password.
fn passwords_follow_nist(backend: Backend) {
    let ks = KeyServer::new(backend);
    ks.org("St Elsewhere");
    let add = |email: &str, pw: &str| {
        let f = write_file(ks.dir.path(), "try.pw", format!("{pw}\n").as_bytes());
        ks.admin(&[
            "user",
            "add",
            "--org",
            "St Elsewhere",
            "--email",
            email,
            "--role",
            "clinician",
            "--password-file",
            f.to_str().unwrap(),
        ])
    };
    for (pw, why) in [
        ("hunter2", "at least 12 characters"),
        ("password1234", "commonly used"),
        ("Qwertyuiop123!", "commonly used"),
        ("zzzzzzzzzzzzzz", "too few characters"),
    ] {
        let o = add("new@st.example", pw);
        assert!(!o.status.success(), "{pw} was accepted");
        let e = stderr(&o);
        assert!(e.contains(why), "{pw}: {e}");
        assert!(!e.contains(pw), "the error repeats the password");
    }
    assert!(add("new@st.example", PW).status.success());
    let f = write_file(ks.dir.path(), "short.pw", b"tooshort\n");
    let o = ks.admin(&[
        "user",
        "passwd",
        "--email",
        "new@st.example",
        "--password-file",
        f.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("at least 12 characters"),
        "{}",
        stderr(&o)
    );
}

/// `user list|role|passwd|disable|enable` and `org list`, against a
/// running server: each change takes effect at once (sessions end where
/// they should), is audited, and leaves `audit verify` passing.
fn users_are_managed_from_the_command_line(backend: Backend) {
    let mut ks = KeyServer::new(backend);
    ks.org("St Elsewhere");
    ks.org("Other");
    ks.user("St Elsewhere", "alice@st.example", "clinician", PW);
    ks.user("Other", "bob@other.example", "clinician", PW);
    ks.admin_ok(&["org", "set", "--org", "Other", "--guests", "st.example"]);
    ks.start();
    let alice = ks.login("alice@st.example", PW, "phone-1");
    let _alice2 = ks.login("alice@st.example", PW, "laptop");

    let list: Value =
        serde_json::from_str(&ks.admin_ok(&["user", "list", "--format", "json"])).unwrap();
    let a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "alice@st.example")
        .unwrap();
    assert_eq!(a["role"], "clinician");
    assert_eq!(a["status"], "enabled");
    assert_eq!(a["sessions"], 2);
    assert_eq!(a["devices"], 2);
    assert_eq!(a["intact"], true);
    let only: Value =
        serde_json::from_str(&ks.admin_ok(&["user", "list", "--org", "Other", "--format", "json"]))
            .unwrap();
    assert_eq!(only.as_array().unwrap().len(), 1);
    let table = ks.admin_ok(&["user", "list"]);
    assert!(table.starts_with("EMAIL"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("alice@st.example") && l.contains("clinician"))
    );
    let orgs: Value =
        serde_json::from_str(&ks.admin_ok(&["org", "list", "--format", "json"])).unwrap();
    let other = orgs
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "Other")
        .unwrap();
    assert_eq!(other["users"], 1);
    assert_eq!(other["guests"], "st.example");
    assert_eq!(other["single_sign_on"], false);

    // A new role ends the sessions; the next sign-in has it.
    ks.admin_ok(&[
        "user",
        "role",
        "--email",
        "alice@st.example",
        "--role",
        "auditor",
    ]);
    assert_eq!(alice.get("/v1/sessions/current").status, 401);
    let alice = ks.login("alice@st.example", PW, "phone-1");
    assert_eq!(alice.get("/v1/sessions/current").json["role"], "auditor");
    let o = ks.admin(&[
        "user",
        "role",
        "--email",
        "alice@st.example",
        "--role",
        "emperor",
    ]);
    assert!(stderr(&o).contains("unknown role"));

    // Locked out by failed sign-ins, then let in by `user enable`.
    let mut locked = false;
    for _ in 0..12 {
        let c = medseal_e2e::Client::new(&ks.base, "phone-1");
        let r = c.post(
            "/v1/sessions",
            &serde_json::json!({"email": "bob@other.example", "password": "wrong wrong wrong", "device_id": "phone-1"}),
        );
        if r.status == 429 {
            locked = true;
            break;
        }
    }
    assert!(locked, "no lockout");
    let list: Value =
        serde_json::from_str(&ks.admin_ok(&["user", "list", "--format", "json"])).unwrap();
    let b = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "bob@other.example")
        .unwrap();
    assert_eq!(b["status"], "locked");
    ks.admin_ok(&["user", "enable", "--email", "bob@other.example"]);
    let bob = ks.login("bob@other.example", PW, "bob-phone");

    // A new password: the old one no longer works, sessions end.
    let f = write_file(ks.dir.path(), "new.pw", b"another long passphrase here\n");
    ks.admin_ok(&[
        "user",
        "passwd",
        "--email",
        "bob@other.example",
        "--password-file",
        f.to_str().unwrap(),
    ]);
    assert_eq!(bob.get("/v1/sessions/current").status, 401);
    let c = medseal_e2e::Client::new(&ks.base, "bob-phone");
    let r = c.post(
        "/v1/sessions",
        &serde_json::json!({"email": "bob@other.example", "password": PW, "device_id": "bob-phone"}),
    );
    assert_eq!(r.status, 401);
    ks.login(
        "bob@other.example",
        "another long passphrase here",
        "bob-phone",
    );

    // Disabled, then enabled again.
    ks.admin_ok(&["user", "disable", "--email", "bob@other.example"]);
    let r = c.post(
        "/v1/sessions",
        &serde_json::json!({"email": "bob@other.example", "password": "another long passphrase here", "device_id": "bob-phone"}),
    );
    assert_eq!(r.status, 401);
    ks.admin_ok(&["user", "enable", "--email", "bob@other.example"]);
    ks.login(
        "bob@other.example",
        "another long passphrase here",
        "bob-phone",
    );

    // Every change is an event, and the log and the store agree.
    let trail = ks.admin_ok(&["audit", "export", "--format", "json"]);
    for action in [
        "user.role_changed",
        "user.password_changed",
        "user.enabled",
        "user.disabled",
    ] {
        assert!(trail.contains(action), "{action} is not in the log");
    }
    assert!(
        !trail.contains("another long passphrase"),
        "a password in the log"
    );
    let v = ks.admin(&["audit", "verify"]);
    assert!(v.status.success(), "{}", stderr(&v));

    // A user row put back whole, seal and all, as it was before a change
    // (a demotion undone): every row still matches its seal, but no longer
    // what the events say.
    for (change, restore_cols) in [
        (
            &["role", "--email", "bob@other.example", "--role", "auditor"][..],
            "role",
        ),
        (&["disable", "--email", "bob@other.example"][..], "disabled"),
    ] {
        ks.sql(&[
            "DROP TABLE IF EXISTS saved_user",
            "CREATE TABLE saved_user AS SELECT * FROM users WHERE email = 'bob@other.example'",
        ]);
        let mut args = vec!["user"];
        args.extend_from_slice(change);
        ks.admin_ok(&args);
        assert!(ks.admin(&["audit", "verify"]).status.success());
        ks.sql(&[&format!(
            "UPDATE users SET {restore_cols} = (SELECT {restore_cols} FROM saved_user), \
             state_mac = (SELECT state_mac FROM saved_user) WHERE email = 'bob@other.example'"
        )]);
        let v = ks.admin(&["audit", "verify"]);
        assert!(!v.status.success(), "{change:?} undone without trace");
        assert!(
            stderr(&v)
                .contains("user bob@other.example in the store is not as the events left them"),
            "{}",
            stderr(&v)
        );
        let mut undo = vec!["user"];
        undo.extend_from_slice(match change[0] {
            "role" => &[
                "role",
                "--email",
                "bob@other.example",
                "--role",
                "clinician",
            ][..],
            _ => &["enable", "--email", "bob@other.example"][..],
        });
        // The restored row is intact, so the key server changes it again,
        // and the log and the store agree once more.
        ks.admin_ok(&undo);
        let v = ks.admin(&["audit", "verify"]);
        assert!(v.status.success(), "{}", stderr(&v));
    }

    // A role written into the database without its seal is caught too,
    // and the row is not acted on.
    ks.sql(&["UPDATE users SET role = 'admin' WHERE email = 'bob@other.example'"]);
    let v = ks.admin(&["audit", "verify"]);
    assert!(!v.status.success());
    let o = ks.admin(&[
        "user",
        "role",
        "--email",
        "bob@other.example",
        "--role",
        "clinician",
    ]);
    assert!(
        stderr(&o).contains("changed outside the key server"),
        "{}",
        stderr(&o)
    );
}

both_backends!(
    passwords_follow_nist,
    users_are_managed_from_the_command_line
);
