//! Signing in without a password, against real parts: codes mailed through
//! a real SMTP server (aiosmtpd, STARTTLS, AUTH) and read from the mail that
//! arrived; guests from another organisation opening what was addressed to
//! them; and single sign-on through a real OpenID Provider (npm
//! oidc-provider), including every way its answer can be wrong.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use medseal_e2e::services::{OpenIdProvider, Smtp, TestCert, code_in, private_file};
use medseal_e2e::{Backend, Client, Device, KeyServer, medseal_bin, ok, write_file};
use serde_json::{Value, json};

const PW: &str = "correct horse battery staple";

/// A key server that mails codes through its own SMTP server.
struct Mailing {
    ks: KeyServer,
    smtp: Smtp,
    /// The `serve` flags that mail through `smtp`.
    flags: Vec<String>,
    _cert_dir: tempfile::TempDir,
}

impl Mailing {
    fn new(backend: Backend) -> Mailing {
        let dir = tempfile::tempdir().expect("dir");
        let cert = TestCert::new(dir.path());
        let pw = private_file(&dir.path().join("smtp.pass"), "mail secret\n");
        let smtp = Smtp::start("starttls", &cert, "keyserver", &pw);
        let mut ks = KeyServer::new(backend);
        ks.org("St Elsewhere");
        ks.user("St Elsewhere", "alice@st.example", "clinician", PW);
        ks.user("St Elsewhere", "svc@st.example", "service", PW);
        let flags = smtp.keyserver_flags(&cert, &pw);
        ks.start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        Mailing {
            ks,
            smtp,
            flags,
            _cert_dir: dir,
        }
    }

    /// Sets St Elsewhere's guest policy (`any`, `none` or a domain).
    fn let_guests_in(&self, policy: &str) {
        self.ks
            .admin_ok(&["org", "set", "--org", "St Elsewhere", "--guests", policy]);
    }

    /// Waits a moment for stray mail, then checks that only `n` came.
    fn only_mailed(&self, n: usize, why: &str) {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(self.smtp.messages().len(), n, "{why}");
    }

    /// The `n`th mail (1-based), once it has come.
    fn mail(&self, n: usize) -> Value {
        self.smtp.wait_for(n)
    }

    fn ask(&self, client: &Client, email: &str) -> u16 {
        client
            .post(
                "/v1/sessions/code",
                &json!({"email": email, "device_id": client.device}),
            )
            .status
    }

    fn sign_in(&self, client: &Client, email: &str, code: &str) -> medseal_e2e::Reply {
        client.post(
            "/v1/sessions",
            &json!({"email": email, "code": code, "device_id": client.device}),
        )
    }
}

fn audit(ks: &KeyServer) -> Vec<Value> {
    let out = ks.admin_ok(&["audit", "export", "--format", "json"]);
    let v: Value = serde_json::from_str(&out).expect("audit JSON");
    v["events"].as_array().cloned().expect("events")
}

fn actions(ks: &KeyServer, action: &str) -> Vec<Value> {
    audit(ks)
        .into_iter()
        .filter(|e| e["action"] == action)
        .collect()
}

fn wrong_code(right: &str) -> String {
    let n: u32 = right.parse().expect("digits");
    format!("{:08}", (n + 1) % 100_000_000)
}

#[test]
fn a_mailed_code_signs_in_once_and_a_scanner_opening_the_link_does_not_use_it() {
    let m = Mailing::new(Backend::Sqlite);
    let phone = Client::new(&m.ks.base, "phone-1");
    assert_eq!(m.ask(&phone, "alice@st.example"), 202);
    let mail = m.mail(1);
    assert_eq!(mail["tls"], true);
    assert_eq!(mail["authenticated"], true);
    assert_eq!(mail["rcpt_tos"], json!(["alice@st.example"]));
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains("St Elsewhere"),
        "names the organisation: {text}"
    );
    let code = code_in(&mail);
    // The link a mail scanner would follow: it reaches the app, which asks
    // for a click; fetching it does not touch the code.
    let link = text
        .lines()
        .find(|l| l.contains("/app/#/code?"))
        .expect("a link to the code page")
        .trim()
        .to_owned();
    assert!(link.starts_with(&m.ks.base), "{link}");
    let page = reqwest::blocking::get(&link).expect("GET the link");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().unwrap().contains("<html"));

    let r = m.sign_in(&phone, "alice@st.example", &code);
    assert_eq!(r.status, 201, "{}", r.body);
    let mut s = Client::new(&m.ks.base, "phone-1");
    s.token = r.json["token"].as_str().map(str::to_owned);
    let me = s.get("/v1/sessions/current");
    assert_eq!(me.json["email"], "alice@st.example");
    assert_eq!(me.json["role"], "clinician");
    // Used up: the same code again is refused.
    let again = m.sign_in(&phone, "alice@st.example", &code);
    assert_eq!(again.status, 401);
    assert_eq!(again.json["message"], "wrong or expired code");
    assert_eq!(actions(&m.ks, "code.sent").len(), 1);
    assert_eq!(actions(&m.ks, "code.used").len(), 1);
    assert_eq!(actions(&m.ks, "code.refused").len(), 1);
    // The session from a code is device-bound like any other.
    let mut thief = Client::new(&m.ks.base, "laptop-9");
    thief.token = s.token.clone();
    assert_eq!(thief.get("/v1/sessions/current").status, 401);
}

#[test]
fn five_wrong_tries_kill_the_code_and_unknown_addresses_get_the_same_answer() {
    let m = Mailing::new(Backend::Sqlite);
    let c = Client::new(&m.ks.base, "phone-2");
    // Unknown address, a service account: 202 and no mail.
    assert_eq!(m.ask(&c, "nobody@st.example"), 202);
    assert_eq!(m.ask(&c, "svc@st.example"), 202);
    assert_eq!(m.ask(&c, "alice@st.example"), 202);
    let mail = m.mail(1);
    assert_eq!(mail["rcpt_tos"], json!(["alice@st.example"]));
    let code = code_in(&mail);
    m.only_mailed(1, "nothing mailed to the others");
    let denied: Vec<Value> = actions(&m.ks, "code.sent")
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 2, "both refusals are in the trail");
    for _ in 0..5 {
        assert_eq!(
            m.sign_in(&c, "alice@st.example", &wrong_code(&code)).status,
            401
        );
    }
    // The sixth try, with the right code: the code is dead.
    let r = m.sign_in(&c, "alice@st.example", &code);
    assert_eq!(r.status, 401, "{}", r.body);
    // Wrong tries counted towards the account's lockout too.
    assert_eq!(actions(&m.ks, "session.locked").len(), 1);
    // Malformed codes are refused before anything is counted.
    assert_eq!(m.sign_in(&c, "alice@st.example", "12ab").status, 400);
    // A new code replaces the old one.
    assert_eq!(m.ask(&c, "alice@st.example"), 202);
    let second = code_in(&m.mail(2));
    assert_eq!(m.ask(&c, "alice@st.example"), 202);
    let third = code_in(&m.mail(3));
    if second != third {
        assert_eq!(m.sign_in(&c, "alice@st.example", &second).status, 401);
    }
}

#[test]
fn codes_and_their_limits_are_shared_by_two_servers_on_one_postgresql() {
    let m = Mailing::new(Backend::Postgres);
    let mut b = m.ks.replica();
    b.start_with(&m.flags.iter().map(String::as_str).collect::<Vec<_>>());
    let on_a = Client::new(&m.ks.base, "phone-3");
    let on_b = Client::new(&b.base, "phone-3");
    assert_eq!(m.ask(&on_a, "alice@st.example"), 202);
    let code = code_in(&m.mail(1));
    // Asked on A, used on B.
    assert_eq!(m.sign_in(&on_b, "alice@st.example", &code).status, 201);
    // Five codes an hour per address, counted across the pool.
    for i in 0..4 {
        let c = if i % 2 == 0 { &on_a } else { &on_b };
        assert_eq!(m.ask(c, "alice@st.example"), 202);
    }
    let refused = on_b.post(
        "/v1/sessions/code",
        &json!({"email": "alice@st.example", "device_id": "phone-3"}),
    );
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.headers.get("retry-after").is_some());
    // Another address is not held back by that.
    assert_eq!(m.ask(&on_a, "nobody@st.example"), 202);
}

/// Alice (St Elsewhere) seals `text` for `recipient` and returns the file.
/// The recipient may not be admitted yet (these tests change the guest
/// setting after sealing), so the recipient check only warns.
fn sealed_for(ks: &KeyServer, dir: &Path, recipient: &str, name: &str) -> PathBuf {
    let alice = Device::new(dir, "alice");
    alice.login(ks, "alice@st.example", PW);
    let plain = write_file(dir, &format!("{name}.txt"), b"wound photo notes");
    let sealed = dir.join(format!("{name}.mseal"));
    alice.ok(&[
        "seal",
        "--keyserver",
        &ks.base,
        "--recipient",
        recipient,
        "--allow-unknown-recipients",
        "-o",
        sealed.to_str().unwrap(),
        plain.to_str().unwrap(),
    ]);
    sealed
}

/// `medseal login --code --code-file -` on `device`, typing the code that
/// arrives as mail number `n`.
fn cli_code_login(m: &Mailing, device: &Device, email: &str, n: usize) -> std::process::Output {
    let mut child = Command::new(medseal_bin())
        .args([
            "login",
            "--keyserver",
            &m.ks.base,
            "--email",
            email,
            "--code",
        ])
        .args(["--code-file", "-"])
        .env("MEDSEAL_CONFIG_DIR", &device.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("medseal login");
    let code = code_in(&m.mail(n));
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{code}").expect("type the code");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

#[test]
fn a_guest_from_another_organisation_opens_what_was_addressed_to_them_and_nothing_else() {
    let m = Mailing::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    m.let_guests_in("partner.example");
    let report = sealed_for(&m.ks, dir.path(), "bob@partner.example", "for-bob");
    let other = sealed_for(&m.ks, dir.path(), "carol@partner.example", "for-carol");

    // Bob has no account anywhere here; the code mail says why he gets it.
    let bob = Device::new(dir.path(), "bob");
    let out = cli_code_login(&m, &bob, "bob@partner.example", 1);
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stderr),
        m.ks.log_text()
    );
    let mail = m.mail(1);
    assert!(mail["text"].as_str().unwrap().contains("as a guest"));
    assert!(mail["text"].as_str().unwrap().contains("St Elsewhere"));
    assert_eq!(bob.open(&report), b"wound photo notes");

    // Nothing else: another recipient's report, and every other call.
    let refused = bob.medseal(&["open", "-o", "-", other.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not"),
        "{refused:?}"
    );
    let session: Value = serde_json::from_slice(
        &std::fs::read(bob.config.join("sessions.json")).expect("sessions file"),
    )
    .expect("sessions JSON");
    let token = session
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|s| s["token"].as_str())
        .expect("a saved token")
        .to_owned();
    let device_id = std::fs::read_to_string(bob.config.join("device-id"))
        .expect("device id")
        .trim()
        .to_owned();
    let mut api = Client::new(&m.ks.base, &device_id);
    api.token = Some(token);
    assert_eq!(api.get("/v1/sessions/current").json["role"], "guest");
    let key = medseal_e2e::key_id_of(&report);
    for (status, reply) in [
        (
            403,
            api.post(
                "/v1/keys",
                &json!({"report_id": "r9", "recipients": ["bob@partner.example"]}),
            ),
        ),
        (
            403,
            api.post(
                &format!("/v1/keys/{key}/recipients"),
                &json!({"recipients": ["eve@partner.example"]}),
            ),
        ),
        (403, api.post(&format!("/v1/keys/{key}/revoke"), &json!({}))),
        (403, api.get(&format!("/v1/audit?key_id={key}"))),
        (403, api.get("/v1/audit")),
    ] {
        assert_eq!(reply.status, status, "{}", reply.body);
    }
    let form = reqwest::blocking::multipart::Form::new().part(
        "report",
        reqwest::blocking::multipart::Part::bytes(std::fs::read(&report).unwrap())
            .file_name("r.mseal"),
    );
    assert_eq!(api.post_form("/v1/drops", form).status, 403);
    let fetched: Vec<Value> = actions(&m.ks, "key.fetched")
        .into_iter()
        .filter(|e| e["actor"] == "bob@partner.example")
        .collect();
    assert_eq!(
        fetched.len(),
        1,
        "the guest's fetch is audited with the address"
    );

    // Guests off: the open session can fetch nothing, and no code is sent.
    m.let_guests_in("none");
    assert_eq!(api.get(&format!("/v1/keys/{key}")).status, 403);
    let c = Client::new(&m.ks.base, "bob-laptop");
    assert_eq!(m.ask(&c, "bob@partner.example"), 202);
    m.only_mailed(1, "no second code for a guest of nobody");
}

#[test]
fn a_guest_code_goes_only_to_addresses_a_live_report_names_in_an_allowed_domain() {
    let m = Mailing::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    m.let_guests_in("partner.example");
    sealed_for(&m.ks, dir.path(), "dan@elsewhere.example", "for-dan");
    let c = Client::new(&m.ks.base, "phone-5");
    // Named by a report but outside the allowed domains; in the domain but
    // named by no report.
    assert_eq!(m.ask(&c, "dan@elsewhere.example"), 202);
    assert_eq!(m.ask(&c, "zed@partner.example"), 202);
    m.only_mailed(0, "no code for either");
    // Opened to any address: Dan may come in.
    m.let_guests_in("any");
    assert_eq!(m.ask(&c, "dan@elsewhere.example"), 202);
    assert_eq!(m.mail(1)["rcpt_tos"], json!(["dan@elsewhere.example"]));
}

#[test]
fn a_guest_policy_written_into_the_database_lets_nobody_in() {
    let m = Mailing::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    sealed_for(&m.ks, dir.path(), "bob@partner.example", "for-bob");
    // An insider opens the organisation to guests without the keyring.
    m.ks.sql(&["UPDATE orgs SET guests = 'any'"]);
    let c = Client::new(&m.ks.base, "phone-6");
    assert_eq!(m.ask(&c, "bob@partner.example"), 202);
    m.only_mailed(0, "the unsealed setting counts as none");
}

#[test]
fn the_key_server_refuses_mail_settings_that_would_leak_or_not_encrypt() {
    let ks = KeyServer::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose.pass");
    std::fs::write(&loose, "x").unwrap();
    for (flags, says) in [
        (
            vec![
                "--smtp-url",
                "http://mail.example",
                "--mail-from",
                "a@b.example",
            ],
            "smtp",
        ),
        (
            vec![
                "--smtp-url",
                "smtp://u:pw@mail.example",
                "--mail-from",
                "a@b.example",
            ],
            "password",
        ),
        (
            vec![
                "--smtp-url",
                "smtp://u@mail.example",
                "--smtp-password-file",
                loose.to_str().unwrap(),
                "--mail-from",
                "a@b.example",
            ],
            "password file",
        ),
    ] {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend(flags);
        let out = ks.admin(&args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }
}

// ---------------------------------------------------------------- SSO ----

struct Sso {
    ks: KeyServer,
    idp: OpenIdProvider,
}

const CLIENT_SECRET: &str = "provider-shared-secret";

impl Sso {
    fn new(provision: &str) -> Sso {
        let mut ks = KeyServer::new(Backend::Sqlite);
        let idp = OpenIdProvider::start(
            "medseal-st",
            CLIENT_SECRET,
            &format!("{}/v1/sso/callback", ks.base),
        );
        ks.org("St Elsewhere");
        ks.org("Other Trust");
        ks.user("St Elsewhere", "alice@st.example", "clinician", PW);
        ks.user("St Elsewhere", "gone@st.example", "clinician", PW);
        ks.user("Other Trust", "carol@st.example", "clinician", PW);
        idp.register(
            &ks,
            "St Elsewhere",
            "medseal-st",
            CLIENT_SECRET,
            &["--allowed-domain", "st.example", "--provision", provision],
        );
        ks.admin_ok(&["user", "disable", "--email", "gone@st.example"]);
        ks.start();
        Sso { ks, idp }
    }

    /// Runs a sign-in in a cookie-keeping HTTP client, as a browser would,
    /// for the app (`/app/`): answers the fragment the key server sent the
    /// browser back with (`grant=…` or `error=…`), parsed.
    fn sign_in_as(&self, email: &str, verified: bool, verifier: &str) -> Value {
        self.idp.next_login(email, verified);
        let url = self.start_url(verifier, "/app/");
        let callback = browse_until(&url, |u| u.path() == "/v1/sso/callback");
        fragment_pairs(&location(&callback))
    }

    fn start_url(&self, verifier: &str, return_to: &str) -> String {
        let challenge = medseal_keyserver::signin::sso::challenge_of(verifier);
        format!(
            "{}/v1/sso/St%20Elsewhere/start?device_id=web-1&return_to={}&challenge={challenge}",
            self.ks.base,
            urlenc(return_to)
        )
    }

    fn exchange(&self, grant: &str, verifier: &str, device: &str) -> medseal_e2e::Reply {
        Client::new(&self.ks.base, device).post(
            "/v1/sso/session",
            &json!({"grant": grant, "verifier": verifier, "device_id": device}),
        )
    }
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Follows redirects with a cookie jar until one points where `stop` says;
/// returns that address.
fn browse_until(url: &str, stop: impl Fn(&reqwest::Url) -> bool + Send + Sync + 'static) -> String {
    let stop = std::sync::Arc::new(stop);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let (s2, seen2) = (stop.clone(), seen.clone());
    let http = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if s2(attempt.url()) {
                *seen2.lock().unwrap() = Some(attempt.url().to_string());
                attempt.stop()
            } else if attempt.previous().len() > 12 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }))
        .build()
        .unwrap();
    let r = http.get(url).send().expect("sign-in round trip");
    let got = seen.lock().unwrap().clone();
    got.unwrap_or_else(|| {
        panic!(
            "never sent to the stop address; last {} {}",
            r.status(),
            r.text().unwrap_or_default()
        )
    })
}

/// Where a GET of `url` redirects to (a browser keeps the fragment,
/// which an HTTP client's redirect following drops).
fn location(url: &str) -> String {
    let r = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 302, "{url}");
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn fragment_pairs(url: &str) -> Value {
    let frag = url.split_once("#/sso?").map(|(_, f)| f).unwrap_or("");
    let u = reqwest::Url::parse(&format!("http://x/?{frag}")).unwrap();
    Value::Object(
        u.query_pairs()
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    )
}

const VERIFIER: &str = "a-verifier-the-app-keeps-in-its-tab-0123456789";

#[test]
fn single_sign_on_signs_a_user_in_through_their_organisations_provider() {
    let s = Sso::new("none");
    let back = s.sign_in_as("alice@st.example", true, VERIFIER);
    let grant = back["grant"].as_str().unwrap_or_else(|| panic!("{back}"));
    // Only with the verifier, only from the device that started, only once.
    assert_eq!(
        s.exchange(grant, "another-verifier-entirely-0123456789abcdef", "web-1")
            .status,
        401
    );
    let back = s.sign_in_as("alice@st.example", true, VERIFIER);
    let grant = back["grant"].as_str().unwrap().to_owned();
    assert_eq!(s.exchange(&grant, VERIFIER, "web-2").status, 401);
    let back = s.sign_in_as("alice@st.example", true, VERIFIER);
    let grant = back["grant"].as_str().unwrap().to_owned();
    let r = s.exchange(&grant, VERIFIER, "web-1");
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.exchange(&grant, VERIFIER, "web-1").status, 401, "once");
    let mut c = Client::new(&s.ks.base, "web-1");
    c.token = r.json["token"].as_str().map(str::to_owned);
    assert_eq!(
        c.get("/v1/sessions/current").json["email"],
        "alice@st.example"
    );
    let logins = actions(&s.ks, "sso.login");
    assert!(
        logins
            .iter()
            .any(|e| e["outcome"] == "success" && e["actor"] == "alice@st.example")
    );
    assert!(
        logins.iter().any(|e| e["outcome"] == "denied"
            && e["detail"].as_str().unwrap().contains("wrong verifier"))
    );
}

#[test]
fn every_wrong_answer_from_the_provider_is_refused_with_its_reason_audited() {
    let s = Sso::new("none");
    let cases: [(&str, &str, bool, Option<&str>, &str); 7] = [
        (
            "audience",
            "alice@st.example",
            true,
            Some("aud"),
            "audience",
        ),
        (
            "expired",
            "alice@st.example",
            true,
            Some("expired"),
            "Expired",
        ),
        (
            "signature",
            "alice@st.example",
            true,
            Some("foreign-key"),
            "ignature",
        ),
        (
            "nonce replay",
            "alice@st.example",
            true,
            Some("replay"),
            "nonce",
        ),
        (
            "unverified",
            "alice@st.example",
            false,
            None,
            "not verified",
        ),
        (
            "other org",
            "carol@st.example",
            true,
            None,
            "another organisation",
        ),
        ("disabled", "gone@st.example", true, None, "disabled"),
    ];
    // A good sign-in first, so that "replay" has an earlier id_token.
    assert!(s.sign_in_as("alice@st.example", true, VERIFIER)["grant"].is_string());
    for (what, email, verified, tamper, says) in cases {
        if let Some(mode) = tamper {
            s.idp.tamper(mode);
        }
        let back = s.sign_in_as(email, verified, VERIFIER);
        assert!(back.get("grant").is_none(), "{what}: {back}");
        let why = back["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {back}"));
        assert!(why.contains(says), "{what}: {why}");
    }
    let denied: Vec<String> = actions(&s.ks, "sso.login")
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(denied.len(), 7, "{denied:?}");
    // And no session came of any of them.
    assert_eq!(actions(&s.ks, "session.created").len(), 0);
}

#[test]
fn a_replayed_callback_finds_its_sign_in_already_used() {
    let s = Sso::new("none");
    s.idp.next_login("alice@st.example", true);
    let url = s.start_url(VERIFIER, "/app/");
    let callback = browse_until(&url, |u| u.path() == "/v1/sso/callback");
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = http.get(&callback).send().unwrap();
    let loc = first.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.contains("grant="), "{loc}");
    let second = http.get(&callback).send().unwrap();
    assert_eq!(second.status().as_u16(), 400);
    assert!(second.text().unwrap().contains("already used"));
}

#[test]
fn just_in_time_provisioning_only_where_on_and_only_in_the_allowed_domain() {
    let off = Sso::new("none");
    let back = off.sign_in_as("dave@st.example", true, VERIFIER);
    assert!(
        back["error"]
            .as_str()
            .unwrap()
            .contains("provisioning is off"),
        "{back}"
    );

    let on = Sso::new("clinician");
    let back = on.sign_in_as("dave@st.example", true, VERIFIER);
    let r = on.exchange(back["grant"].as_str().unwrap(), VERIFIER, "web-1");
    assert_eq!(r.status, 201, "{}", r.body);
    let mut c = Client::new(&on.ks.base, "web-1");
    c.token = r.json["token"].as_str().map(str::to_owned);
    assert_eq!(c.get("/v1/sessions/current").json["role"], "clinician");
    assert!(
        actions(&on.ks, "user.created")
            .iter()
            .any(|e| e["detail"] == "dave@st.example as clinician")
    );
    let back = on.sign_in_as("eve@elsewhere.example", true, VERIFIER);
    assert!(
        back["error"].as_str().unwrap().contains("allowed domain"),
        "{back}"
    );
    // What was provisioned is ordinary, audited state.
    ok(Command::new(medseal_bin())
        .arg("keyserver")
        .args(["audit", "verify"])
        .args(on.ks.store_args())
        .output()
        .unwrap());
}

#[test]
fn the_command_line_signs_in_through_the_browser_and_a_loopback_port() {
    let s = Sso::new("none");
    let dir = tempfile::tempdir().unwrap();
    let device = Device::new(dir.path(), "alice");
    s.idp.next_login("alice@st.example", true);
    let mut child = Command::new(medseal_bin())
        .args(["login", "--keyserver", &s.ks.base, "--sso", "st.example"])
        .env("MEDSEAL_CONFIG_DIR", &device.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut url = String::new();
    while !url.starts_with("http") {
        url.clear();
        std::io::BufRead::read_line(&mut err, &mut url).unwrap();
        assert!(!url.is_empty(), "no address printed");
    }
    // The "browser": follows everything, ending on the command line's page.
    let page = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
        .get(url.trim())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("You are signed in"), "{page}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert!(
        rest.contains("logged in to") && rest.contains("alice@st.example"),
        "{rest}"
    );
    // The session works for sealing.
    let plain = write_file(dir.path(), "n.txt", b"x");
    device.seal_for(
        &s.ks,
        "alice@st.example",
        &plain,
        &dir.path().join("n.mseal"),
    );
}

#[test]
fn sso_settings_written_into_the_database_stop_sign_ins() {
    let s = Sso::new("none");
    // An insider points the organisation at a provider of their own.
    s.ks.sql(&["UPDATE sso_configs SET issuer = 'http://127.0.0.1:1'"]);
    let url = s.start_url(VERIFIER, "/app/");
    assert!(
        fragment_pairs(&location(&url))["error"]
            .as_str()
            .unwrap()
            .contains("changed outside")
    );
    let out = s.ks.admin(&["org", "sso", "show", "--org", "St Elsewhere"]);
    assert!(!out.status.success());
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["intact"], false);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(CLIENT_SECRET));
}

/// In process, on a clock the test moves: a code works until its twentieth
/// minute and not after, and the late try is recorded as `code.expired`.
#[actix_web::test]
async fn a_code_expires_after_twenty_minutes_on_an_injected_clock() {
    use actix_web::{App, test};
    use medseal_keyserver::admin::Admin;
    use medseal_keyserver::http::configure;
    use medseal_keyserver::server::{ServeConfig, app_state};
    use medseal_keyserver::signin::mail::MailSettings;
    use medseal_keyserver::time::ManualClock;
    use medseal_keyserver::{Role, Store};

    const MINUTE: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path());
    let pw = private_file(&dir.path().join("smtp.pass"), "mail secret\n");
    // TLS from the first byte (smtps://), where the other tests use STARTTLS.
    let smtp = Smtp::start("implicit", &cert, "keyserver", &pw);
    let store = Store::resolve(Some(dir.path().join("data")), None, None).unwrap();
    let mut admin = Admin::open(store.clone()).unwrap();
    admin.add_org("St Elsewhere").unwrap();
    admin
        .add_user(
            "St Elsewhere",
            "alice@st.example",
            Role::Clinician,
            PW.as_bytes(),
        )
        .unwrap();
    drop(admin);
    let clock = std::sync::Arc::new(ManualClock::at(1_893_456_000_000));
    let mut cfg = ServeConfig::new(store.clone()).unwrap();
    cfg.pool_size = 2;
    cfg.clock = clock.clone();
    cfg.mail = Some(MailSettings {
        url: format!("smtps://keyserver@127.0.0.1:{}", smtp.port),
        password_file: Some(pw),
        ca_cert: Some(cert.cert.clone()),
        from: "medseal <no-reply@st.example>".into(),
    });
    let (state, _) = app_state(&cfg).unwrap();
    let app = test::init_service(App::new().app_data(state).configure(configure)).await;
    let call = |path: &str, body: Value| {
        test::TestRequest::post()
            .uri(path)
            .set_json(body)
            .to_request()
    };
    let ask = || {
        call(
            "/v1/sessions/code",
            json!({"email": "alice@st.example", "device_id": "phone"}),
        )
    };
    let use_code = |code: &str| {
        call(
            "/v1/sessions",
            json!({"email": "alice@st.example", "code": code, "device_id": "phone"}),
        )
    };
    let status = |r: actix_web::dev::ServiceResponse| r.status().as_u16();

    assert_eq!(status(test::call_service(&app, ask()).await), 202);
    let first = wait_mail(&smtp, 1).await;
    clock.advance(20 * MINUTE - 1);
    assert_eq!(
        status(test::call_service(&app, use_code(&first)).await),
        201
    );

    assert_eq!(status(test::call_service(&app, ask()).await), 202);
    let second = wait_mail(&smtp, 2).await;
    clock.advance(20 * MINUTE);
    assert_eq!(
        status(test::call_service(&app, use_code(&second)).await),
        401
    );
    let mut admin = Admin::open(store).unwrap();
    let events: Value = serde_json::from_slice(
        &admin
            .export_audit(&Default::default(), "json".parse().unwrap())
            .unwrap(),
    )
    .unwrap();
    let expired = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "code.expired")
        .count();
    assert_eq!(expired, 1);
}

async fn wait_mail(smtp: &Smtp, n: usize) -> String {
    for _ in 0..400 {
        if smtp.messages().len() >= n {
            return code_in(&smtp.messages()[n - 1]);
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mail {n} never came");
}

#[test]
fn staff_of_an_organisation_with_single_sign_on_get_no_code_but_its_guests_do() {
    let m = Mailing::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    m.let_guests_in("partner.example");
    sealed_for(&m.ks, dir.path(), "bob@partner.example", "for-bob");
    let secret = private_file(&dir.path().join("oidc.secret"), "s");
    m.ks.admin_ok(&[
        "org",
        "sso",
        "set",
        "--org",
        "St Elsewhere",
        "--issuer",
        "https://login.st.example/realms/staff",
        "--client-id",
        "medseal",
        "--client-secret-file",
        secret.to_str().unwrap(),
    ]);
    let c = Client::new(&m.ks.base, "phone-7");
    // A mailbox must not get round the provider's second factor.
    assert_eq!(m.ask(&c, "alice@st.example"), 202);
    m.only_mailed(0, "no code for staff who sign in through their provider");
    assert!(
        actions(&m.ks, "code.sent")
            .iter()
            .any(|e| e["outcome"] == "denied"
                && e["detail"].as_str().unwrap().contains("single sign-on"))
    );
    assert_eq!(m.ask(&c, "bob@partner.example"), 202);
    assert_eq!(m.mail(1)["rcpt_tos"], json!(["bob@partner.example"]));
}
