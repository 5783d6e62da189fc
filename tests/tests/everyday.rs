//! What a clinician, a recipient, an auditor and an administrator do every
//! day at a terminal, against a real key server: reach it over TLS with a
//! private CA (the recipe in docs/keyserver.md, run as written), have a
//! mistyped recipient caught before sealing, and manage a report already
//! sent — add a recipient, read its trail, revoke it — then see who they
//! are and log out.

use std::path::Path;
use std::process::{Command, Output};

use medseal_e2e::{Backend, Device, KeyServer, medseal_bin, write_file};
use serde_json::Value;

const PW: &str = "a long clinician password";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `medseal ARGS…` as the person whose configuration is `config`, with
/// extra environment variables.
fn as_user(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(medseal_bin())
        .args(args)
        .env("MEDSEAL_CONFIG_DIR", config)
        .env_remove("MEDSEAL_CA_CERT")
        .env_remove("SSL_CERT_FILE")
        .envs(env.iter().copied())
        .output()
        .expect("run medseal")
}

/// The shell lines of the recipe block in docs/keyserver.md.
fn recipe() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/keyserver.md"))
        .unwrap();
    let start = doc
        .find("<!-- private-ca-recipe -->")
        .expect("recipe marker");
    let end = doc.find("<!-- /private-ca-recipe -->").expect("recipe end");
    let block = &doc[start..end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("```"))
        .map(|(b, _)| b)
        .expect("a sh block");
    body.to_owned()
}

#[test]
fn a_private_ca_made_by_the_documented_recipe_is_trusted_when_named() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let run = Command::new("bash")
        .current_dir(w)
        .args(["-euo", "pipefail", "-c", &recipe()])
        .output()
        .unwrap();
    assert!(run.status.success(), "the recipe failed: {}", stderr(&run));
    // And the one-step certificate people make first: its own CA.
    let one_step = Command::new("openssl")
        .current_dir(w)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-keyout",
            "self.key",
            "-out",
            "self.crt",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(one_step.status.success(), "{}", stderr(&one_step));
    let pem = |n: &str| w.join(n).to_str().unwrap().to_owned();
    for key in ["server.key", "self.key"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(w.join(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.user("St Elsewhere", "alice@st.example", "clinician", PW);
    ks.start_with(&[
        "--tls-cert",
        &pem("server.crt"),
        "--tls-key",
        &pem("server.key"),
    ]);
    let url = ks.base.replacen("http://", "https://", 1);
    let pw = write_file(w, "pw", format!("{PW}\n").as_bytes());
    let config = w.join("alice");
    let login = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["login", "--keyserver", &url, "--email", "alice@st.example"];
        args.extend(["--password-file", pw.to_str().unwrap()]);
        args.extend(extra);
        as_user(&config, &args, env)
    };

    // Not trusted: the reason, and what to do, on one line.
    let o = login(&[], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("invalid peer certificate") && e.contains("UnknownIssuer"),
        "{e}"
    );
    assert!(e.contains("--ca-cert"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");

    // Trusted three ways.
    let ca = pem("ca.crt");
    let o = login(&["--ca-cert", &ca], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = as_user(
        &config,
        &["whoami", "--keyserver", &url],
        &[("MEDSEAL_CA_CERT", &ca)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("alice@st.example (clinician, St Elsewhere)")
    );
    let o = as_user(
        &config,
        &["whoami", "--keyserver", &url],
        &[("SSL_CERT_FILE", &ca)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    drop(ks);

    // The one-step certificate is refused even when named, with its reason.
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.start_with(&[
        "--tls-cert",
        &pem("self.crt"),
        "--tls-key",
        &pem("self.key"),
    ]);
    let url = ks.base.replacen("http://", "https://", 1);
    let o = as_user(
        &config,
        &[
            "login",
            "--keyserver",
            &url,
            "--email",
            "alice@st.example",
            "--password-file",
            pw.to_str().unwrap(),
            "--ca-cert",
            &pem("self.crt"),
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("CaUsedAsEndEntity"), "{}", stderr(&o));
}

/// A key server with two organisations, "St Elsewhere" (which admits
/// guests from partner.example) and "Other", and these people (organisation,
/// address, role), each with the password `PW`; not yet started.
fn two_hospitals(people: &[(&str, &str, &str)]) -> KeyServer {
    let ks = KeyServer::new(Backend::Sqlite);
    ks.org("St Elsewhere");
    ks.org("Other");
    for (org, who, role) in people {
        ks.user(org, who, role, PW);
    }
    ks.admin_ok(&[
        "org",
        "set",
        "--org",
        "St Elsewhere",
        "--guests",
        "partner.example",
    ]);
    ks
}

#[test]
fn recipients_are_checked_and_a_sent_report_is_managed_from_the_terminal() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut ks = two_hospitals(&[
        ("St Elsewhere", "alice@st.example", "clinician"),
        ("St Elsewhere", "dan@st.example", "clinician"),
        ("St Elsewhere", "audrey@st.example", "auditor"),
        ("Other", "bob@other.example", "clinician"),
    ]);
    ks.start();
    // Each person's device (`Device::config` is its MEDSEAL_CONFIG_DIR).
    let device = |name: &str, email: &str| {
        let d = Device::new(w, name);
        d.login(&ks, email, PW);
        d.config
    };
    let alice = device("alice", "alice@st.example");
    let bob = device("bob", "bob@other.example");
    let dan = device("dan", "dan@st.example");
    let audrey = device("audrey", "audrey@st.example");
    let photo = write_file(w, "photo.jpg", &medseal_capture::fixtures::phone_jpeg(1));
    let seal = |to: &str, out: &str, extra: &[&str]| {
        let out = w.join(out);
        let mut args = vec!["seal", "--keyserver", &ks.base, "--recipient", to, "-o"];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        args.push(photo.to_str().unwrap());
        as_user(&alice, &args, &[])
    };

    // A typo is caught before anything is sealed or any key made.
    let o = seal("bob@other.exmaple", "typo.mseal", &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("nobody at bob@other.exmaple could open this report"),
        "{e}"
    );
    assert!(!w.join("typo.mseal").exists());
    let log: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    assert!(
        !log["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "key.created"),
        "a key was made for the typo"
    );
    // The same through capture.
    let o = as_user(
        &alice,
        &[
            "capture",
            "--patient-id",
            "P1",
            "--consent",
            "unable",
            "--no-consent-reason",
            "unconscious",
            "--photo",
            photo.to_str().unwrap(),
            "--keyserver",
            &ks.base,
            "--recipient",
            "bob@other.exmaple",
            "-o",
            w.join("typo-cap.mseal").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        stderr(&o).contains("nobody at bob@other.exmaple"),
        "{}",
        stderr(&o)
    );
    assert!(!w.join("typo-cap.mseal").exists());
    // A guest address the organisation admits: sealed, with a word about it.
    let o = seal("carol@partner.example", "guest.mseal", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("as a guest"), "{}", stderr(&o));
    // Sealing anyway is possible, with a warning.
    let o = seal(
        "nobody@nowhere.example",
        "anyway.mseal",
        &["--allow-unknown-recipients"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: nobody at nobody@nowhere.example"));

    // A report for Bob; Dan cannot open it until added.
    assert!(seal("bob@other.example", "r.mseal", &[]).status.success());
    let r = w.join("r.mseal");
    let r = r.to_str().unwrap();
    let open = |who: &Path| as_user(who, &["open", "-o", "-", r], &[]);
    assert!(open(&bob).status.success());
    assert_eq!(open(&dan).status.code(), Some(3));
    let o = as_user(&bob, &["recipients", "add", r, "dan@st.example"], &[]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "only its creator adds: {}",
        stderr(&o)
    );
    let o = as_user(&alice, &["recipients", "add", r, "dan@st.example"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(open(&dan).stdout, std::fs::read(&photo).unwrap());

    // Its trail: the creator reads it by file, as JSON and CSV.
    let o = as_user(&alice, &["audit", r], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let trail: Value = serde_json::from_slice(&o.stdout).unwrap();
    let events = trail["events"].as_array().unwrap();
    let fetched_by: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "key.fetched" && e["outcome"] == "success")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(fetched_by, ["bob@other.example", "dan@st.example"]);
    let report_id = events[0]["report_id"].as_str().unwrap().to_owned();
    let csv_out = w.join("trail.csv");
    let o = as_user(
        &alice,
        &[
            "audit",
            r,
            "--format",
            "csv",
            "-o",
            csv_out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(&csv_out).unwrap();
    assert!(csv.lines().next().unwrap().contains("action"), "{csv}");
    assert_eq!(
        csv.lines().filter(|l| l.contains("key.fetched")).count(),
        2,
        "{csv}"
    );
    // An auditor by report id; a recipient may not read the trail.
    let o = as_user(
        &audrey,
        &["audit", "--report-id", &report_id, "--keyserver", &ks.base],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let by_report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(by_report["events"].as_array().unwrap().len() >= events.len());
    let o = as_user(&bob, &["audit", r], &[]);
    assert!(!o.status.success());

    // Revoked: asked for confirmation, then no copy opens.
    let o = as_user(&alice, &["revoke", r], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(
        open(&bob).status.success(),
        "nothing was revoked without --yes"
    );
    let o = as_user(&alice, &["revoke", "--yes", r], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = open(&bob);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("revoked"), "{}", stderr(&o));

    // whoami and logout.
    let o = as_user(&alice, &["whoami"], &[]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("alice@st.example (clinician, St Elsewhere)")
    );
    let o = as_user(&alice, &["logout", "--keyserver", &ks.base], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = as_user(&alice, &["whoami"], &[]);
    assert_eq!(o.status.code(), Some(3));
    let o = seal("bob@other.example", "after.mseal", &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("not logged in"), "{}", stderr(&o));
    let log = ks.admin_ok(&["audit", "export", "--format", "json"]);
    assert!(log.contains("session.ended"));
    assert!(log.contains("key.revoked"));
    assert!(log.contains("key.recipients_added"));
}

/// `POST /v1/recipients/check` as the API: who may ask, what each answer
/// means, that a disabled account is not told apart where guests are
/// admitted, that every check is recorded and bounded.
#[test]
fn the_recipient_check_answers_staff_only_and_is_recorded() {
    let mut ks = two_hospitals(&[
        ("St Elsewhere", "alice@st.example", "clinician"),
        ("St Elsewhere", "audrey@st.example", "auditor"),
        ("St Elsewhere", "ep@st.example", "service"),
        ("Other", "bob@other.example", "clinician"),
        ("Other", "gone@partner.example", "clinician"),
        ("Other", "left@other.example", "clinician"),
    ]);
    ks.admin_ok(&["user", "disable", "--email", "gone@partner.example"]);
    ks.admin_ok(&["user", "disable", "--email", "left@other.example"]);
    ks.start();
    let alice = ks.login("alice@st.example", PW, "alice-phone");
    let ask = |c: &medseal_e2e::Client, who: &[&str]| {
        c.post(
            "/v1/recipients/check",
            &serde_json::json!({ "recipients": who }),
        )
    };
    let r = ask(
        &alice,
        &[
            "Bob@Other.example ",
            "carol@partner.example",
            "gone@partner.example",
            "left@other.example",
            "nobody@nowhere.example",
            "not an address",
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let got: Vec<(String, String)> = r.json["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["email"].as_str().unwrap().to_owned(),
                x["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("bob@other.example", "user"),
        ("carol@partner.example", "guest"),
        // Disabled, but in an admitted domain: answered as any guest address.
        ("gone@partner.example", "guest"),
        ("left@other.example", "unknown"),
        ("nobody@nowhere.example", "unknown"),
        ("not an address", "invalid"),
    ];
    assert_eq!(
        got,
        want.map(|(e, s)| (e.to_owned(), s.to_owned())).to_vec()
    );
    // Only those who seal may ask.
    for who in ["audrey@st.example", "ep@st.example"] {
        let c = ks.login(who, PW, "desk");
        assert_eq!(ask(&c, &["bob@other.example"]).status, 403, "{who}");
    }
    let none: [&str; 0] = [];
    assert_eq!(ask(&alice, &none).status, 400);
    let many: Vec<String> = (0..101).map(|i| format!("u{i}@st.example")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(ask(&alice, &many).status, 400);
    assert_eq!(
        medseal_e2e::Client::new(&ks.base, "x")
            .post(
                "/v1/recipients/check",
                &serde_json::json!({"recipients": ["bob@other.example"]}),
            )
            .status,
        401
    );
    // Bounded: 20 checks a minute per user (one used above).
    let mut limited = false;
    for _ in 0..25 {
        let r = ask(&alice, &["bob@other.example"]);
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            limited = true;
            break;
        }
        assert_eq!(r.status, 200);
    }
    assert!(limited, "no limit on recipient checks");
    // Recorded: who asked about which addresses, and each refusal.
    let log: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    let checks: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "recipients.checked")
        .collect();
    assert!(checks.iter().any(|e| {
        e["outcome"] == "success"
            && e["actor"] == "alice@st.example"
            && e["detail"]
                .as_str()
                .unwrap()
                .contains("left@other.example (unknown)")
    }));
    assert_eq!(
        checks
            .iter()
            .filter(|e| e["outcome"] == "denied" && e["detail"] == "not allowed to check recipients")
            .count(),
        2
    );
    assert!(checks.iter().any(|e| e["detail"] == "rate limited"));

    // No password for staff of an organisation with single sign-on.
    let secret =
        medseal_e2e::services::private_file(&ks.dir.path().join("sso.secret"), "client secret\n");
    ks.admin_ok(&[
        "org",
        "sso",
        "set",
        "--org",
        "Other",
        "--issuer",
        "http://127.0.0.1:9/",
        "--client-id",
        "medseal",
        "--client-secret-file",
        secret.to_str().unwrap(),
    ]);
    let pw = write_file(ks.dir.path(), "new.pw", b"another long passphrase\n");
    let o = ks.admin(&[
        "user",
        "passwd",
        "--email",
        "bob@other.example",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("identity provider"), "{}", stderr(&o));
}
