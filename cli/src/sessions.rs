//! The device's identity and its key server sessions, kept in the user's
//! config directory (`$MEDSEAL_CONFIG_DIR`, else `$XDG_CONFIG_HOME/medseal`,
//! else `~/.config/medseal`), owner-only: the directory 0700, files 0600.
//!
//! - `device-id`: a random id made on first use and sent with every request;
//!   the key server binds each session to it.
//! - `sessions.json`: one session per key server origin.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use medseal_capture::keyclient::{KeyClient, Session};

use crate::files::{InputPath, Output};

pub fn config_dir() -> Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("MEDSEAL_CONFIG_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        PathBuf::from(d).join("medseal")
    } else {
        let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?;
        PathBuf::from(home).join(".config/medseal")
    };
    if !dir.exists() {
        medseal_files::private_dir(&dir).context("cannot create the config directory")?;
    }
    Ok(dir)
}

/// Writes a private file atomically, through the same temporary-file-and-
/// rename path as every other output of the CLI (0600, never half-written).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dest = path
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", path.display()))?;
    let mut out = Output::create(dest, &InputPath::Stdin)?;
    out.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    out.commit()
}

/// This device's stable id, created on first use.
pub fn device_id() -> Result<String> {
    let path = config_dir()?.join("device-id");
    medseal_capture::keyclient::device_id_at(&path, "dev")
        .with_context(|| format!("cannot keep this device's id in {}", path.display()))
}

fn sessions_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("sessions.json"))
}

fn load_all() -> Result<BTreeMap<String, Session>> {
    let path = sessions_path()?;
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{} is damaged; delete it and log in again", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Saves `session` for its origin, replacing any earlier one.
pub fn save(session: &Session) -> Result<()> {
    let mut all = load_all()?;
    all.insert(session.origin.clone(), session.clone());
    write_private(&sessions_path()?, &serde_json::to_vec_pretty(&all)?)
}

/// The saved session for `origin`.
pub fn load(origin: &str) -> Result<Session> {
    load_all()?
        .remove(origin)
        .ok_or_else(|| crate::exit::NotLoggedIn(origin.to_owned()).into())
}

static CA_CERT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Records `--ca-cert` (or `$MEDSEAL_CA_CERT`, which clap reads into it),
/// once, before any client is made.
pub fn set_ca_cert(path: Option<PathBuf>) {
    let _ = CA_CERT.set(path);
}

/// The `--ca-cert` file, if one was given.
pub fn ca_cert_path() -> Option<PathBuf> {
    CA_CERT.get().cloned().flatten()
}

fn read_pem(what: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::File::open(path)
        .and_then(|f| medseal_format::read_bounded(f, 4 << 20))
        .with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The extra CA certificates (PEM) to trust for a key server, besides the
/// public web roots: `--ca-cert` / `$MEDSEAL_CA_CERT` (a private CA), and
/// the bundle named by `$SSL_CERT_FILE` (the usual way to point programs at
/// an organisation's roots).
pub fn extra_ca() -> Result<Option<Vec<u8>>> {
    let mut pem = Vec::new();
    if let Some(Some(p)) = CA_CERT.get() {
        pem.extend(read_pem("the CA certificate", p)?);
        pem.push(b'\n');
    }
    if let Some(p) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        pem.extend(read_pem("SSL_CERT_FILE", std::path::Path::new(&p))?);
    }
    Ok((!pem.is_empty()).then_some(pem))
}

/// A client for `url` from this device, trusting the extra CAs too.
pub fn client(url: &str) -> Result<KeyClient> {
    let ca = extra_ca()?;
    Ok(KeyClient::new(url, &device_id()?, ca.as_deref())?)
}

/// Forgets the session for `origin` on this device; whether there was one.
pub fn forget(origin: &str) -> Result<bool> {
    let mut all = load_all()?;
    let had = all.remove(origin).is_some();
    if had {
        write_private(&sessions_path()?, &serde_json::to_vec_pretty(&all)?)?;
    }
    Ok(had)
}

/// Every saved session, by origin.
pub fn all() -> Result<BTreeMap<String, Session>> {
    load_all()
}
