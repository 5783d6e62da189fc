//! Real servers for the delivery tests, each on a free loopback port and
//! stopped when its handle is dropped: an SMTP server (aiosmtpd, STARTTLS or
//! implicit TLS, AUTH required), a FHIR server (validating every resource),
//! and Orthanc with its DICOMweb plugin (Debian's `orthanc` and
//! `orthanc-dicomweb`).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

use crate::{KeyServer, free_port, medseal_bin, write_file};

/// A certificate for 127.0.0.1 / localhost, self-signed, that clients are
/// told to trust.
pub struct TestCert {
    /// The certificate (PEM): also the trust anchor.
    pub cert: PathBuf,
    /// Its key (PEM), 0600.
    pub key: PathBuf,
}

impl TestCert {
    /// Makes one in `dir`.
    pub fn new(dir: &Path) -> TestCert {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("certificate");
        TestCert {
            cert: write_file(dir, "server-cert.pem", c.cert.pem().as_bytes()),
            key: write_file(
                dir,
                "server-key.pem",
                c.signing_key.serialize_pem().as_bytes(),
            ),
        }
    }
}

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("support")
        .join(name)
}

/// A child process that prints READY when it is listening, stopped (stdin
/// closed, then killed) on drop.
struct Service {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Service {
    fn python(script: &str, args: &[String]) -> Service {
        let mut child = Command::new("python3")
            .arg(support(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 (install it and the packages in scripts/test-all.sh)");
        let stdin = child.stdin.take();
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out)
            .read_line(&mut line)
            .expect("read READY");
        assert_eq!(
            line.trim(),
            "READY",
            "{script} did not start (are aiosmtpd and fhir.resources installed?)"
        );
        Service {
            child,
            _stdin: stdin,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self._stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SMTP server.
pub struct Smtp {
    /// Its port.
    pub port: u16,
    /// Where received messages are written.
    pub out: tempfile::TempDir,
    _service: Service,
}

impl Smtp {
    /// Starts it with `mode` "starttls" or "implicit", accepting `user` with
    /// the password in `password_file`.
    pub fn start(mode: &str, cert: &TestCert, user: &str, password_file: &Path) -> Smtp {
        let port = free_port();
        let out = tempfile::tempdir().expect("tempdir");
        let args = [
            "--port".into(),
            port.to_string(),
            "--cert".into(),
            cert.cert.display().to_string(),
            "--key".into(),
            cert.key.display().to_string(),
            "--mode".into(),
            mode.into(),
            "--user".into(),
            user.into(),
            "--password-file".into(),
            password_file.display().to_string(),
            "--out".into(),
            out.path().display().to_string(),
        ];
        Smtp {
            port,
            _service: Service::python("smtp_server.py", &args),
            out,
        }
    }

    /// The `keyserver serve` flags that mail sign-in codes through this
    /// server as user `keyserver` (password in the 0600 `password_file`),
    /// trusting `cert`.
    pub fn keyserver_flags(&self, cert: &TestCert, password_file: &Path) -> Vec<String> {
        vec![
            "--smtp-url".into(),
            format!("smtp://keyserver@127.0.0.1:{}", self.port),
            "--smtp-password-file".into(),
            password_file.display().to_string(),
            "--smtp-ca-cert".into(),
            cert.cert.display().to_string(),
            "--mail-from".into(),
            "medseal <no-reply@st.example>".into(),
        ]
    }

    /// Waits (up to 20 s) for the `n`th message (1-based) and returns it.
    pub fn wait_for(&self, n: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m[n - 1].clone();
            }
            assert!(Instant::now() < deadline, "message {n} never came");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The messages received so far, as parsed by Python's e-mail parser.
    pub fn messages(&self) -> Vec<Value> {
        let mut v: Vec<(u32, Value)> = std::fs::read_dir(self.out.path())
            .expect("read dir")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n: u32 = name.strip_suffix(".json")?.parse().ok()?;
                Some((
                    n,
                    serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?,
                ))
            })
            .collect();
        v.sort_by_key(|(n, _)| *n);
        v.into_iter().map(|(_, m)| m).collect()
    }
}

/// The 8-digit sign-in code in a code mail (printed "1234 5678").
pub fn code_in(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("text body");
    let codes: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 9 && l.as_bytes()[4] == b' ')
        .collect();
    assert_eq!(codes.len(), 1, "one code in {text}");
    codes[0].replace(' ', "")
}

/// Writes `text` to a new file that only its owner may read.
pub fn private_file(path: &Path, text: &str) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create");
    f.write_all(text.as_bytes()).expect("write");
    path.to_owned()
}

/// The FHIR server.
pub struct Fhir {
    /// Its base URL.
    pub url: String,
    _service: Service,
}

impl Fhir {
    /// Starts it.
    pub fn start() -> Fhir {
        let port = free_port();
        let service = Service::python("fhir_server.py", &["--port".into(), port.to_string()]);
        Fhir {
            url: format!("http://127.0.0.1:{port}"),
            _service: service,
        }
    }

    /// GET a path, as JSON.
    pub fn get(&self, path: &str) -> Value {
        reqwest::blocking::get(format!("{}{path}", self.url))
            .and_then(|r| r.json())
            .expect("FHIR GET")
    }

    /// Creates a Patient with this identifier.
    pub fn add_patient(&self, system: &str, value: &str) {
        let body = serde_json::json!({"resourceType": "Patient", "identifier": [{"system": system, "value": value}]});
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/Patient", self.url))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .expect("FHIR POST");
        assert_eq!(r.status().as_u16(), 201);
    }
}

/// Orthanc with the DICOMweb plugin, basic auth required.
pub struct Orthanc {
    /// Its HTTP base URL.
    pub url: String,
    /// The user and password it accepts.
    pub credentials: (String, String),
    child: Child,
    _dir: tempfile::TempDir,
}

/// Where Debian puts the DICOMweb plugin.
pub const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

impl Orthanc {
    /// Starts it and waits until it answers.
    pub fn start() -> Orthanc {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let credentials = ("medseal".to_owned(), "orthanc-test-password".to_owned());
        let config = serde_json::json!({
            "Name": "medseal-test",
            "StorageDirectory": dir.path().join("db"),
            "IndexDirectory": dir.path().join("db"),
            "HttpPort": port,
            "DicomServerEnabled": false,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": true,
            "RegisteredUsers": { credentials.0.clone(): credentials.1.clone() },
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": { "Enable": true, "Root": "/dicom-web/" },
            "HttpTimeout": 30,
            "StableAge": 1
        });
        let cfg = write_file(dir.path(), "orthanc.json", config.to_string().as_bytes());
        let log = std::fs::File::create(dir.path().join("orthanc.log")).expect("log");
        let child = Command::new("Orthanc")
            .arg(&cfg)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .or_else(|_| {
                Command::new("/usr/sbin/Orthanc")
                    .arg(&cfg)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .expect("Orthanc (Debian packages orthanc and orthanc-dicomweb)");
        let o = Orthanc {
            url: format!("http://127.0.0.1:{port}"),
            credentials,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if o.try_get("/system").is_some() {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "Orthanc did not start: {}",
                o.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Orthanc's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("orthanc.log")).unwrap_or_default()
    }

    fn try_get(&self, path: &str) -> Option<Value> {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.url))
            .basic_auth(&self.credentials.0, Some(&self.credentials.1))
            .send()
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().ok()
    }

    /// GET a path of Orthanc's REST API, as JSON.
    pub fn get(&self, path: &str) -> Value {
        self.try_get(path)
            .unwrap_or_else(|| panic!("Orthanc GET {path} failed"))
    }

    /// GET raw bytes.
    pub fn get_bytes(&self, path: &str) -> Vec<u8> {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.url))
            .basic_auth(&self.credentials.0, Some(&self.credentials.1))
            .send()
            .and_then(|r| r.bytes())
            .map(|b| b.to_vec())
            .expect("Orthanc GET")
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where Debian puts SoftHSM2's PKCS#11 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 token in a private directory (Debian `softhsm2`), initialised
/// with a user PIN kept in a 0600 file; inspected with OpenSC's
/// `pkcs11-tool` (Debian `opensc`), a reader independent of medseal.
pub struct SoftHsm {
    dir: tempfile::TempDir,
    /// The token's label.
    pub label: String,
    pin: String,
}

impl SoftHsm {
    /// Initialises a fresh token.
    pub fn new() -> SoftHsm {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("tokens")).expect("token dir");
        let conf = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        );
        write_file(dir.path(), "softhsm2.conf", conf.as_bytes());
        let hsm = SoftHsm {
            dir,
            label: "medseal-test".into(),
            pin: "4711-user-pin".into(),
        };
        let pin_file = write_file(hsm.dir.path(), "pin", hsm.pin.as_bytes());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod pin");
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &hsm.label])
            .args(["--pin", &hsm.pin, "--so-pin", "so-pin-0815"])
            .envs(hsm.env())
            .output()
            .expect("softhsm2-util (Debian package softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hsm
    }

    /// The environment every process using the token needs.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "SOFTHSM2_CONF".into(),
            self.dir.path().join("softhsm2.conf").display().to_string(),
        )]
    }

    /// The PIN file.
    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// The `--keyring` URI naming this token.
    pub fn uri(&self) -> String {
        format!(
            "pkcs11:token={};object=medseal?module-path={SOFTHSM_MODULE}&pin-source=file:{}",
            self.label,
            self.pin_file().display()
        )
    }

    /// Runs `pkcs11-tool` logged in to the token.
    pub fn tool(&self, args: &[&str]) -> std::process::Output {
        Command::new("pkcs11-tool")
            .args(["--module", SOFTHSM_MODULE, "--token-label", &self.label])
            .args(["--login", "--pin", &self.pin])
            .args(args)
            .envs(self.env())
            .output()
            .expect("pkcs11-tool (Debian package opensc)")
    }

    /// The secret-key objects on the token, as `pkcs11-tool` lists them:
    /// (label, the lines describing it).
    pub fn secret_keys(&self) -> Vec<(String, String)> {
        let out = self.tool(&["--list-objects", "--type", "secrkey"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut keys = Vec::new();
        for block in text.split("Secret Key Object").skip(1) {
            let label = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("label:"))
                .map(|l| l.trim().to_owned())
                .unwrap_or_default();
            keys.push((label, block.to_owned()));
        }
        keys
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        Self::new()
    }
}

/// The OpenID Provider the single sign-on tests sign in through: the npm
/// package oidc-provider, run by `tests/oidc/provider.mjs` on loopback.
pub struct OpenIdProvider {
    /// Its issuer URL.
    pub issuer: String,
    child: Child,
}

impl OpenIdProvider {
    /// Starts it with one client allowed to come back to `redirect_uri`.
    pub fn start(client_id: &str, client_secret: &str, redirect_uri: &str) -> OpenIdProvider {
        let port = free_port();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc");
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .args(["--port", &port.to_string()])
            .args(["--client-id", client_id, "--client-secret", client_secret])
            .args(["--redirect-uri", redirect_uri])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (and tests/oidc/node_modules: npm ci in tests/oidc)");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut line).expect("read ready");
        // Kept draining: a closed pipe would end the provider at its next
        // line of output.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        assert!(
            line.starts_with("ready "),
            "the OpenID Provider did not start (run npm ci in tests/oidc): {line}"
        );
        OpenIdProvider {
            issuer: line.trim()["ready ".len()..].to_owned(),
            child,
        }
    }

    /// Makes this provider `org`'s single sign-on on `ks` (`org sso set`),
    /// as client `client_id` with `secret`, plus `extra` flags.
    pub fn register(
        &self,
        ks: &crate::KeyServer,
        org: &str,
        client_id: &str,
        secret: &str,
        extra: &[&str],
    ) {
        let file = private_file(&ks.dir.path().join(format!("{client_id}.secret")), secret);
        let mut args = vec![
            "org",
            "sso",
            "set",
            "--org",
            org,
            "--issuer",
            &self.issuer,
            "--client-id",
            client_id,
            "--client-secret-file",
            file.to_str().unwrap_or_default(),
        ];
        args.extend_from_slice(extra);
        ks.admin_ok(&args);
    }

    fn post(&self, path: &str, body: Value) {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.issuer))
            .json(&body)
            .send()
            .expect("provider test call");
        assert_eq!(r.status().as_u16(), 204);
    }

    /// The account the next sign-in at the provider is.
    pub fn next_login(&self, email: &str, verified: bool) {
        self.post(
            "/_test/login",
            serde_json::json!({"sub": format!("sub-{email}"), "email": email, "email_verified": verified}),
        );
    }

    /// Spoils the next id_token: "aud", "expired", "foreign-key" or "replay".
    pub fn tamper(&self, mode: &str) {
        self.post("/_test/tamper", serde_json::json!({ "mode": mode }));
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The password of the service account `endpoint@st.example` that
/// [`Endpoint`] signs in as.
pub const ENDPOINT_PASSWORD: &str = "endpoint-password-1";

/// A running `medseal endpoint serve`, signed in as the organisation's
/// service account `endpoint@st.example` ([`ENDPOINT_PASSWORD`]).
pub struct Endpoint {
    /// Its address.
    pub base: String,
    /// Its data directory (outbox, device id).
    pub data: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Endpoint {
    /// Starts the endpoint for `ks`, forwarding to `forward` (with `extra`
    /// flags), and waits until it answers.
    pub fn start(
        ks: &KeyServer,
        dir: &Path,
        config: &Path,
        forward: &[&str],
        extra: &[&str],
    ) -> Endpoint {
        Endpoint::start_on(free_port(), ks, dir, config, forward, extra)
    }

    /// [`Endpoint::start`] on `port` (for an address known before it runs,
    /// e.g. set as the organisation's endpoint before the key server starts).
    pub fn start_on(
        port: u16,
        ks: &KeyServer,
        dir: &Path,
        config: &Path,
        forward: &[&str],
        extra: &[&str],
    ) -> Endpoint {
        let creds = write_file(
            dir,
            "endpoint.credentials",
            format!("email = \"endpoint@st.example\"\npassword = \"{ENDPOINT_PASSWORD}\"\n")
                .as_bytes(),
        );
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let data = dir.join("endpoint-data");
        let log = dir.join("endpoint.log");
        let mut cmd = Command::new(medseal_bin());
        cmd.args([
            "endpoint",
            "serve",
            "--keyserver",
            &ks.base,
            "--credentials",
            creds.to_str().unwrap_or_default(),
            "--config",
            config.to_str().unwrap_or_default(),
            "--data-dir",
            data.to_str().unwrap_or_default(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]);
        for f in forward {
            cmd.args(["--forward", f]);
        }
        cmd.args(extra);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start the endpoint");
        let e = Endpoint {
            base: format!("http://127.0.0.1:{port}"),
            data,
            log,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("{}/healthz", e.base)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the endpoint did not start: {}",
                e.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        e
    }

    /// Kills it (SIGKILL, no chance to tidy up) and waits for it to go.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill the endpoint");
        self.child.wait().expect("wait for the endpoint");
    }

    /// What it logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The status of receipt `id`, asked with the session `who` (token,
    /// device id): only a receipt's sender sees it.
    pub fn status(&self, id: &str, who: &(String, String)) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v1/reports/{id}", self.base))
            .bearer_auth(&who.0)
            .header("X-Device-Id", &who.1)
            .send()
            .expect("GET");
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    /// Polls the status of `id` until `done` holds (bounded).
    pub fn wait_for(
        &self,
        id: &str,
        who: &(String, String),
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, v) = self.status(id, who);
            assert_eq!(code, 200, "{v}");
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {v}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Hands `report` over with the session `(token, device)`; it must be
    /// accepted (202). Answers the receipt id.
    pub fn hand_over(&self, token: &str, device: &str, report: Vec<u8>) -> String {
        let (code, body) = self.post(report_form(token, device, report));
        assert_eq!(code, 202, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Posts a multipart form as it is.
    pub fn post(&self, form: Form) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/v1/reports", self.base))
            .multipart(form)
            .send()
            .expect("POST");
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn report_form(token: &str, device: &str, report: Vec<u8>) -> Form {
    Form::new()
        .text("token", token.to_owned())
        .text("device_id", device.to_owned())
        .part("report", Part::bytes(report).file_name("report-x.mseal"))
}
