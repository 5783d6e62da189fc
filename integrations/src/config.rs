//! The destinations file (TOML), documented in `docs/integrations.md`.
//!
//! ```toml
//! [outbox]
//! dir = "/var/lib/medseal/outbox"     # optional
//!
//! [destinations.ward-mail]
//! type = "email"
//! …
//! ```
//!
//! Relative paths are relative to the file's own directory. Unknown keys are
//! errors (a misspelt `ca_file` must not silently mean "no CA"), and secrets
//! are references (see [`crate::secret`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::destination::Destination;
use crate::secret::SecretError;
use crate::{boxcom, dicomweb, dropbox, email, endpoint, fhir, folder, https};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// Which file.
        path: String,
        /// The parser's message (line and key).
        message: String,
    },
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No destination of that name.
    #[error("no destination named {name:?} in {path} (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The file.
        path: String,
        /// The names it has.
        known: String,
    },
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl ConfigError {
    pub(crate) fn file(path: &Path, source: std::io::Error) -> Self {
        ConfigError::Read {
            path: path.display().to_string(),
            source,
        }
    }
}

/// How the outbox retries (`[outbox]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Where the outbox keeps its database and queued reports.
    pub dir: Option<PathBuf>,
    /// Attempts before a delivery is marked failed and left for a person.
    pub max_attempts: u32,
    /// First retry delay, in seconds; doubled at each attempt.
    pub backoff_initial_seconds: f64,
    /// Longest retry delay, in seconds.
    pub backoff_max_seconds: f64,
    /// `send` and `flush` keep retrying in the foreground while the next
    /// attempt is due within this many seconds; later ones wait for the
    /// next `medseal outbox flush`.
    pub wait_in_process_seconds: f64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            dir: None,
            max_attempts: 12,
            backoff_initial_seconds: 2.0,
            backoff_max_seconds: 3600.0,
            wait_in_process_seconds: 30.0,
        }
    }
}

/// One destination's settings, by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DestinationConfig {
    /// SMTP e-mail.
    Email(email::EmailConfig),
    /// A Box folder.
    Box(boxcom::BoxConfig),
    /// A Dropbox folder.
    Dropbox(dropbox::DropboxConfig),
    /// A generic HTTPS endpoint.
    Https(https::HttpsConfig),
    /// A FHIR R4 server.
    Fhir(fhir::FhirConfig),
    /// A DICOMweb (STOW-RS) server.
    Dicomweb(dicomweb::DicomwebConfig),
    /// A local or mounted folder.
    Folder(folder::FolderConfig),
    /// A medseal receiving endpoint.
    Endpoint(endpoint::EndpointConfig),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Outbox settings.
    #[serde(default)]
    pub outbox: OutboxSettings,
    /// Destinations by name.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    #[serde(skip)]
    path: PathBuf,
    /// The `{ file = "…" }` secrets of each destination, resolved: checked
    /// when the destination is built, so that a secret others can read is
    /// refused when a report is handed over, not when it is delivered.
    #[serde(skip)]
    secret_files: BTreeMap<String, Vec<PathBuf>>,
}

/// Largest destinations file read: far above any real one, and a bound for
/// a path that names a device.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Largest PEM file (CA bundle or client certificate) read.
const MAX_PEM_FILE: u64 = 1 << 20;

/// Reads a PEM file named in the configuration, with a bound.
pub(crate) fn read_pem(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::File::open(path)
        .and_then(|f| medseal_format::read_bounded(f, MAX_PEM_FILE))
        .map_err(|e| ConfigError::file(path, e))
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::File::open(path)
            .and_then(|f| medseal_format::read_bounded_string(f, MAX_CONFIG_FILE))
            .map_err(|e| ConfigError::file(path, e))?;
        let path = std::path::absolute(path).map_err(|e| ConfigError::file(path, e))?;
        Self::parse(&text, &path)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // The parser's own rendering quotes the offending line, which may be
        // a password typed where a reference belongs: give the line number
        // and the message only.
        let mut c: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1)
                .map(|n| unknown_key_line(text, e.message(), n).unwrap_or(n));
            ConfigError::Parse {
                path: path.display().to_string(),
                message: match line {
                    Some(n) => format!("line {n}: {}", e.message()),
                    None => e.message().to_owned(),
                },
            }
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Some(d) = &mut c.outbox.dir
            && d.is_relative()
        {
            *d = base.join(&*d);
        }
        let o = &c.outbox;
        if !(o.backoff_initial_seconds > 0.0
            && o.backoff_max_seconds >= o.backoff_initial_seconds
            && o.wait_in_process_seconds >= 0.0
            && o.max_attempts >= 1)
        {
            return Err(ConfigError::Invalid(format!(
                "{}: [outbox] needs 0 < backoff_initial_seconds <= backoff_max_seconds, wait_in_process_seconds >= 0 and max_attempts >= 1",
                path.display()
            )));
        }
        for (name, d) in &mut c.destinations {
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::Invalid(format!(
                    "{}: destination name {name:?}: use letters, digits, '-' and '_'",
                    path.display()
                )));
            }
            d.resolve(&base);
        }
        c.path = path.to_path_buf();
        if let Ok(raw) = text.parse::<toml::Table>()
            && let Some(toml::Value::Table(ds)) = raw.get("destinations")
        {
            for (name, d) in ds {
                let mut files = Vec::new();
                secret_files_in(d, &mut files);
                c.secret_files.insert(
                    name.clone(),
                    files.into_iter().map(|f| base.join(f)).collect(),
                );
            }
        }
        Ok(c)
    }

    /// The file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings of destination `name`.
    pub fn destination(&self, name: &str) -> Result<&DestinationConfig, ConfigError> {
        self.destinations
            .get(name)
            .ok_or_else(|| ConfigError::Unknown {
                name: name.to_owned(),
                path: self.path.display().to_string(),
                known: if self.destinations.is_empty() {
                    "none".into()
                } else {
                    self.destinations
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// Builds destination `name`, ready to deliver.
    pub fn build(&self, name: &str) -> Result<Box<dyn Destination>, ConfigError> {
        let d = self.destination(name)?;
        for f in self.secret_files.get(name).into_iter().flatten() {
            if let Some(why) = medseal_files::not_private(f) {
                return Err(ConfigError::Invalid(format!("destination {name}: {why}")));
            }
        }
        d.build()
    }
}

/// Every `{ file = "…" }` secret reference under `v`.
fn secret_files_in(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            if t.len() == 1
                && let Some(toml::Value::String(f)) = t.get("file")
            {
                out.push(f.clone());
                return;
            }
            t.values().for_each(|x| secret_files_in(x, out));
        }
        toml::Value::Array(a) => a.iter().for_each(|x| secret_files_in(x, out)),
        _ => {}
    }
}

/// The line of an unknown key that serde reports against its whole table
/// (a destination's table is read through its `type` tag, which loses the
/// key's own position): the first `key =` line from the table's line on.
fn unknown_key_line(text: &str, message: &str, table_line: usize) -> Option<usize> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    text.lines()
        .enumerate()
        .skip(table_line.saturating_sub(1))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
}

impl DestinationConfig {
    fn resolve(&mut self, base: &Path) {
        match self {
            DestinationConfig::Email(c) => c.resolve(base),
            DestinationConfig::Box(c) => c.resolve(base),
            DestinationConfig::Dropbox(c) => c.resolve(base),
            DestinationConfig::Https(c) => c.resolve(base),
            DestinationConfig::Fhir(c) => c.resolve(base),
            DestinationConfig::Dicomweb(c) => c.resolve(base),
            DestinationConfig::Folder(c) => c.resolve(base),
            DestinationConfig::Endpoint(c) => c.resolve(base),
        }
    }

    /// Builds the destination.
    pub fn build(&self) -> Result<Box<dyn Destination>, ConfigError> {
        Ok(match self {
            DestinationConfig::Email(c) => Box::new(email::Email::new(c.clone())?),
            DestinationConfig::Box(c) => Box::new(boxcom::BoxFolder::new(c.clone())?),
            DestinationConfig::Dropbox(c) => Box::new(dropbox::Dropbox::new(c.clone())?),
            DestinationConfig::Https(c) => Box::new(https::Https::new(c.clone())?),
            DestinationConfig::Fhir(c) => Box::new(fhir::Fhir::new(c.clone())?),
            DestinationConfig::Dicomweb(c) => Box::new(dicomweb::DicomWeb::new(c.clone())?),
            DestinationConfig::Folder(c) => Box::new(folder::Folder::new(c.clone())?),
            DestinationConfig::Endpoint(c) => Box::new(endpoint::Endpoint::new(c.clone())?),
        })
    }
}

pub(crate) fn resolve_path(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[outbox]
dir = "queue"
backoff_initial_seconds = 0.5

[destinations.ward-mail]
type = "email"
host = "smtp.example.org"
from = "Reports <reports@example.org>"
to = ["ward@example.org"]
username = "reports"
password = { file = "smtp.pass" }

[destinations.drop]
type = "folder"
path = "inbox"
"#;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = Config::parse(SAMPLE, Path::new("/etc/medseal/destinations.toml")).unwrap();
        assert_eq!(
            c.outbox.dir.as_deref(),
            Some(Path::new("/etc/medseal/queue"))
        );
        assert_eq!(c.outbox.max_attempts, 12);
        match c.destination("drop").unwrap() {
            DestinationConfig::Folder(f) => assert_eq!(f.path, Path::new("/etc/medseal/inbox")),
            other => panic!("{other:?}"),
        }
        let e = c.destination("nope").err().unwrap().to_string();
        assert!(e.contains("known: drop, ward-mail"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let bad = [
            (SAMPLE.replace("host =", "hots ="), "hots"),
            (
                SAMPLE.replace(
                    r#"password = { file = "smtp.pass" }"#,
                    r#"password = "s3cret""#,
                ),
                "never written",
            ),
            (
                SAMPLE.replace(r#"type = "folder""#, r#"type = "fax""#),
                "fax",
            ),
            (
                SAMPLE.replace("[destinations.drop]", "[destinations.\"a b\"]"),
                "a b",
            ),
            (SAMPLE.replace("0.5", "-1"), "backoff"),
        ];
        for (text, needle) in bad {
            let e = Config::parse(&text, Path::new("d.toml"))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
