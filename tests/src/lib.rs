//! Support for the end-to-end tests: the real `medseal` binary, a real key
//! server process on a free loopback port, and a real PostgreSQL server
//! started from Debian's binaries into a temporary directory.
//!
//! Every process started here is stopped when its handle is dropped, or —
//! for PostgreSQL, shared by a whole test binary — when the test process
//! exits (a watchdog shell stops it as soon as our end of a pipe closes).

#![forbid(unsafe_code)]

pub mod browser;
pub mod fakes;
pub mod reports;
pub mod services;
pub mod wire;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;

/// The `medseal` binary built for this test run.
pub fn medseal_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/debug/deps/<test-exe> → target/debug/medseal
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target directory")
            .to_path_buf();
        // Build (or confirm up to date) the binary these tests drive, so that
        // `cargo test -p medseal-e2e` never runs a stale one.
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "medseal", "--bin", "medseal"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build");
        assert!(status.success(), "building medseal failed");
        dir.join("medseal")
    })
    .clone()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL server for the whole test binary.
pub struct Postgres {
    port: u16,
    _dir: tempfile::TempDir,
    _watchdog: std::sync::Mutex<Child>,
}

static PG_DB_COUNTER: AtomicU32 = AtomicU32::new(0);

fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

impl Postgres {
    /// The shared server, started on first use.
    pub fn shared() -> &'static Postgres {
        static PG: OnceLock<Postgres> = OnceLock::new();
        PG.get_or_init(Postgres::start)
    }

    fn start() -> Postgres {
        let bin = pg_bin_dir().expect(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: \
             apt-get install -y postgresql (scripts/test-all.sh does this)",
        );
        let dir = tempfile::Builder::new()
            .prefix("medseal-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let root = running_as_root();
        // initdb refuses to run as root: use the postgres system user then.
        let as_pg = |cmd: &Path| -> Command {
            if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(cmd);
                c
            } else {
                Command::new(cmd)
            }
        };
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "cannot hand the temp dir to the postgres user");
        }
        let out = as_pg(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-instructions",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        // The watchdog keeps postgres in the foreground and, when its stdin
        // (our end of the pipe) closes because this test process ended,
        // stops it with pg_ctl (a signal to `runuser` would not reach it)
        // and deletes its directory: the static holding it is never dropped.
        let postgres = bin.join("postgres");
        let prefix = if root { "runuser -u postgres -- " } else { "" };
        let script = format!(
            "{prefix}'{}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
             -c max_connections=200 >'{dir}/postgres.log' 2>&1 & pid=$!; cat >/dev/null; \
             {prefix}'{}' stop -D '{data}' -m fast -w >/dev/null 2>&1 || kill -INT $pid; \
             wait $pid; rm -rf '{dir}'",
            postgres.display(),
            bin.join("pg_ctl").display(),
            data = data.display(),
            dir = dir.path().display(),
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let pg = Postgres {
            port,
            _dir: dir,
            _watchdog: std::sync::Mutex::new(watchdog),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while PgConnection::establish(&pg.url("postgres")).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    /// URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; returns its URL.
    pub fn fresh_database(&self) -> String {
        let n = PG_DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("medseal_{}_{n}", std::process::id());
        let mut c = PgConnection::establish(&self.url("postgres")).expect("connect to postgres");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .expect("create database");
        self.url(&name)
    }
}

/// Which storage backend a key server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in the data directory.
    Sqlite,
    /// The shared PostgreSQL server, a fresh database per key server.
    Postgres,
}

/// A key server's state and, once started, its process.
pub struct KeyServer {
    /// The data directory.
    pub dir: tempfile::TempDir,
    /// `--database-url`, for PostgreSQL.
    pub database_url: Option<String>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    port: u16,
    /// `--keyring`, when the master key lives outside the data directory.
    pub keyring: Option<PathBuf>,
    /// Extra environment for every command run on this store.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    /// Everything the server printed on stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl KeyServer {
    /// A fresh, empty store on `backend`; not yet serving.
    pub fn new(backend: Backend) -> KeyServer {
        let dir = tempfile::Builder::new()
            .prefix("medseal-ks-")
            .tempdir()
            .expect("temp dir");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Postgres::shared().fresh_database()),
        };
        let port = free_port();
        KeyServer {
            dir,
            database_url,
            base: format!("http://127.0.0.1:{port}"),
            port,
            keyring: None,
            env: Vec::new(),
            child: None,
            log: Default::default(),
        }
    }

    /// A second server on the same PostgreSQL database and master key (as
    /// on another machine behind the same load balancer); not yet serving.
    pub fn replica(&self) -> KeyServer {
        assert!(
            self.database_url.is_some(),
            "replicas share a PostgreSQL database"
        );
        let dir = tempfile::Builder::new()
            .prefix("medseal-ks-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        KeyServer {
            dir,
            database_url: self.database_url.clone(),
            base: format!("http://127.0.0.1:{port}"),
            port,
            keyring: Some(
                self.keyring
                    .clone()
                    .unwrap_or_else(|| self.dir.path().join("data").join("master.keyring")),
            ),
            env: self.env.clone(),
            child: None,
            log: Default::default(),
        }
    }

    /// An empty SQLite store that will serve on the same address (as a
    /// rebuilt machine would): for restoring a backup into.
    pub fn successor(&self) -> KeyServer {
        self.successor_on(Backend::Sqlite)
    }

    /// An empty store on `backend` (a fresh PostgreSQL database, or a new
    /// SQLite data directory) that will serve on the same address.
    pub fn successor_on(&self, backend: Backend) -> KeyServer {
        let dir = tempfile::Builder::new()
            .prefix("medseal-ks-")
            .tempdir()
            .expect("temp dir");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Postgres::shared().fresh_database()),
        };
        KeyServer {
            dir,
            database_url,
            base: self.base.clone(),
            port: self.port,
            keyring: None,
            env: Vec::new(),
            child: None,
            log: Default::default(),
        }
    }

    /// The flags that point a `keyserver` command at this store.
    pub fn store_args(&self) -> Vec<String> {
        let mut v = vec![
            "--data-dir".to_owned(),
            self.dir.path().join("data").display().to_string(),
        ];
        if let Some(u) = &self.database_url {
            v.push("--database-url".into());
            v.push(u.clone());
        }
        if let Some(k) = &self.keyring {
            v.push("--keyring".into());
            v.push(k.display().to_string());
        }
        v
    }

    /// Runs `medseal keyserver ARGS… <store flags>`.
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(medseal_bin())
            .arg("keyserver")
            .args(args)
            .args(self.store_args())
            .env_remove("MEDSEAL_KEYRING")
            .envs(self.env.iter().cloned())
            .output()
            .expect("run medseal")
    }

    /// Like [`KeyServer::admin`] but panics unless it succeeds.
    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = ok(self.admin(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates an organisation (the store too, if this is its first).
    pub fn org(&self, name: &str) {
        self.admin_ok(&["org", "add", "--init", name]);
    }

    /// Creates a user with `password`.
    pub fn user(&self, org: &str, email: &str, role: &str, password: &str) {
        let pw = self.dir.path().join(format!("pw-{email}"));
        std::fs::write(&pw, format!("{password}\n")).expect("write password file");
        let pw = pw.display().to_string();
        self.admin_ok(&[
            "user",
            "add",
            "--org",
            org,
            "--email",
            email,
            "--role",
            role,
            "--password-file",
            &pw,
        ]);
    }

    /// Starts serving with extra `serve` flags and waits until it answers.
    pub fn start_with(&mut self, extra: &[&str]) {
        let listen = format!("127.0.0.1:{}", self.port);
        let mut child = Command::new(medseal_bin())
            .args(["keyserver", "serve", "--listen", &listen])
            .args(extra)
            .args(self.store_args())
            .env_remove("MEDSEAL_KEYRING")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the key server");
        if let Some(err) = child.stderr.take() {
            let log = self.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        self.child = Some(child);
        self.wait_ready();
    }

    /// Starts serving plain HTTP on loopback.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("key server exited with {status}: {}", self.log_text());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "key server did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops the server with SIGKILL (no chance to clean up).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs SQL statements straight on the store, as an insider with write
    /// access to the database (but not the keyring) would.
    pub fn sql(&self, statements: &[&str]) {
        match &self.database_url {
            Some(url) => {
                let mut c = PgConnection::establish(url).expect("connect to PostgreSQL");
                for s in statements {
                    diesel::sql_query(*s)
                        .execute(&mut c)
                        .unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
            None => {
                let path = self.dir.path().join("data/keyserver.sqlite3");
                let mut c = diesel::SqliteConnection::establish(path.to_str().expect("utf-8"))
                    .expect("open SQLite");
                for s in statements {
                    diesel::sql_query(*s)
                        .execute(&mut c)
                        .unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
        }
    }

    /// Runs one statement and answers how many rows it touched (`UPDATE t
    /// SET c = c WHERE …` counts rows).
    pub fn sql_rows(&self, statement: &str) -> usize {
        let done = match &self.database_url {
            Some(url) => {
                let mut c = PgConnection::establish(url).expect("connect to PostgreSQL");
                diesel::sql_query(statement).execute(&mut c)
            }
            None => {
                let path = self.dir.path().join("data/keyserver.sqlite3");
                let mut c = diesel::SqliteConnection::establish(path.to_str().expect("utf-8"))
                    .expect("open SQLite");
                diesel::sql_query(statement).execute(&mut c)
            }
        };
        done.unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// Removes the database's append-only guard on audit events (an
    /// insider's first step).
    pub fn drop_append_only_guards(&self) {
        match self.database_url {
            Some(_) => self.sql(&["DROP TRIGGER audit_events_no_change ON audit_events"]),
            None => self.sql(&[
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
            ]),
        }
    }

    /// A client for `email` on `device`, logged in with `password`.
    pub fn login(&self, email: &str, password: &str, device: &str) -> Client {
        let mut c = Client::new(&self.base, device);
        let r = c.post(
            "/v1/sessions",
            &serde_json::json!({"email": email, "password": password, "device_id": device}),
        );
        assert_eq!(r.status, 201, "login of {email} failed: {}", r.body);
        c.token = r.json["token"].as_str().map(str::to_owned);
        c
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs each named test function `fn(Backend)` as two tests, `NAME::sqlite`
/// and `NAME::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[test]
            fn sqlite() { super::$name($crate::Backend::Sqlite) }
            #[test]
            fn postgres() { super::$name($crate::Backend::Postgres) }
        }
    )* };
}

/// A status and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body as text.
    pub body: String,
    /// Body as JSON (`Null` if not JSON).
    pub json: Value,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
}

/// An HTTP client that carries a bearer token and a device id.
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    /// The session token, once logged in.
    pub token: Option<String>,
    /// The device id sent in `X-Device-Id`.
    pub device: String,
}

impl Client {
    /// A client without a session.
    pub fn new(base: &str, device: &str) -> Client {
        Client {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base: base.to_owned(),
            token: None,
            device: device.to_owned(),
        }
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Reply {
        self.try_send(req).expect("request")
    }

    /// Sends, or says why no answer came (the server was down or died).
    fn try_send(
        &self,
        mut req: reqwest::blocking::RequestBuilder,
    ) -> Result<Reply, reqwest::Error> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req = req.header("X-Device-Id", &self.device);
        let resp = req.send()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text()?;
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            body,
            json,
            headers,
        })
    }

    /// GET, without panicking when no answer comes.
    pub fn try_get(&self, path: &str) -> Result<Reply, reqwest::Error> {
        self.try_send(self.http.get(format!("{}{path}", self.base)))
    }

    /// POST, without panicking when no answer comes.
    pub fn try_post(&self, path: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.try_send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    /// DELETE, without panicking when no answer comes.
    pub fn try_delete(&self, path: &str) -> Result<Reply, reqwest::Error> {
        self.try_send(self.http.delete(format!("{}{path}", self.base)))
    }

    /// GET.
    pub fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    /// POST a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    /// PUT a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
    }

    /// PATCH a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(body))
    }

    /// POST raw bytes with a content type.
    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("Content-Type", content_type)
                .body(body),
        )
    }

    /// POST a multipart form.
    pub fn post_form(&self, path: &str, form: reqwest::blocking::multipart::Form) -> Reply {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .multipart(form),
        )
    }

    /// GET a binary body: the status and the bytes.
    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .header("X-Device-Id", &self.device)
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.bytes().expect("body").to_vec())
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(format!("{}{path}", self.base)))
    }
}

/// Writes `bytes` to a new file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).expect("create file");
    f.write_all(bytes).expect("write file");
    p
}

/// `out`, after checking that its command succeeded (else panics with its
/// stderr).
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One person's device: its own configuration directory (device id,
/// sessions), driving the real binary.
pub struct Device {
    /// `MEDSEAL_CONFIG_DIR` for this device.
    pub config: PathBuf,
}

impl Device {
    /// A device whose configuration lives under `root`.
    pub fn new(root: &Path, name: &str) -> Device {
        Device {
            config: root.join(format!("device-{name}")),
        }
    }

    /// Runs `medseal ARGS…` on this device.
    pub fn medseal(&self, args: &[&str]) -> Output {
        Command::new(medseal_bin())
            .args(args)
            .env("MEDSEAL_CONFIG_DIR", &self.config)
            .output()
            .expect("run medseal")
    }

    /// Like [`Device::medseal`], but panics (with its stderr) unless it
    /// succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        ok(self.medseal(args))
    }

    /// Logs in to `ks` as `email`.
    pub fn login(&self, ks: &KeyServer, email: &str, password: &str) {
        let pw = self.config.with_extension("pw");
        std::fs::write(&pw, format!("{password}\n")).expect("write password file");
        self.ok(&[
            "login",
            "--keyserver",
            &ks.base,
            "--email",
            email,
            "--password-file",
            pw.to_str().unwrap_or_default(),
        ]);
    }

    /// Seals `input` into `out` with a new key from `ks` for `recipient`.
    pub fn seal_for(&self, ks: &KeyServer, recipient: &str, input: &Path, out: &Path) {
        self.ok(&[
            "seal",
            "--keyserver",
            &ks.base,
            "--recipient",
            recipient,
            "-o",
            out.to_str().unwrap_or_default(),
            input.to_str().unwrap_or_default(),
        ]);
    }

    /// Opens `sealed` (key from its key server) and returns the plaintext.
    pub fn open(&self, sealed: &Path) -> Vec<u8> {
        self.ok(&["open", "-o", "-", sealed.to_str().unwrap_or_default()])
            .stdout
    }
}

/// The usual cast: organisation "St Elsewhere" with clinicians Alice and Bob
/// (`password`), the server started, and each logged in on their own device
/// under `root`.
pub fn alice_and_bob(ks: &mut KeyServer, root: &Path, password: &str) -> (Device, Device) {
    ks.org("St Elsewhere");
    ks.user("St Elsewhere", "alice@st.example", "clinician", password);
    ks.user("St Elsewhere", "bob@st.example", "clinician", password);
    ks.start();
    let (alice, bob) = (Device::new(root, "alice"), Device::new(root, "bob"));
    alice.login(ks, "alice@st.example", password);
    bob.login(ks, "bob@st.example", password);
    (alice, bob)
}

/// A mono 8 kHz, 8-bit PCM WAV recording of `seconds` of a quiet tone:
/// a real audio file for capture.
pub fn wav(seconds: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..8000 * seconds).map(|i| (118 + i % 20) as u8).collect();
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&[1, 0, 1, 0]);
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&[1, 0, 8, 0]);
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

/// `org`, with a user of `role` for each name (`NAME@st.example`, password
/// `password`).
pub fn staff(ks: &KeyServer, org: &str, names: &[&str], role: &str, password: &str) {
    for who in names {
        ks.user(org, &format!("{who}@st.example"), role, password);
    }
}

/// The key id in a sealed file's header, as `medseal inspect` shows it.
pub fn key_id_of(sealed: &Path) -> String {
    let o = ok(Command::new(medseal_bin())
        .args(["inspect", sealed.to_str().unwrap_or_default()])
        .output()
        .expect("inspect"));
    let h: Value = serde_json::from_slice(&o.stdout).expect("header JSON");
    h["key_id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no key id in {h}"))
}
