//! What `send` and `outbox` share: finding the destinations file and the
//! outbox, opening queued reports with the user's keys, and reporting each
//! attempt on stderr (with an upload bar on a terminal).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use indicatif::ProgressBar;
use medseal_format::{Header, KeyMode};
use medseal_integrations::outbox::{
    DeliveryRow, Observer, Outbox, OutboxLock, RunSummary, Unsealer,
};
use medseal_integrations::{
    Config, DeliveryError, OpenedReport, Progress, ProgressHandle, Receipt, SenderSession,
};

use crate::files::InputPath;
use crate::keysource::OpenKeys;
use crate::{progress, sessions};

/// Flags every delivering command takes.
#[derive(Debug, clap::Args)]
pub struct DeliveryArgs {
    /// The destinations file (default: $MEDSEAL_DESTINATIONS, else
    /// destinations.toml in the config directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// For destinations that need the report's contents (FHIR, DICOMweb,
    /// plain HTTPS): the password, read from this file (`-` for stdin).
    /// Key-server reports use this device's session instead.
    #[arg(long, value_name = "FILE", conflicts_with = "key_file")]
    pub password_file: Option<String>,
    /// …or the organisation key: 32 raw bytes, hex or base64.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<String>,
}

impl DeliveryArgs {
    /// The paths read from, to check stdin is used once.
    pub fn inputs(&self) -> Vec<InputPath> {
        [&self.password_file, &self.key_file]
            .into_iter()
            .flatten()
            .map(|p| InputPath::from(p.as_str()))
            .collect()
    }

    /// Loads the destinations file.
    pub fn load(&self) -> Result<Config> {
        load_destinations(self.config.as_deref())
    }

    /// Reads the keys given for opening.
    pub fn keys(&self) -> Result<OpenKeys> {
        let pw = self.password_file.as_deref().map(InputPath::from);
        let key = self.key_file.as_deref().map(InputPath::from);
        OpenKeys::read(pw.as_ref(), key.as_ref())
    }
}

/// Loads the destinations file: `config`, else $MEDSEAL_DESTINATIONS, else
/// destinations.toml in the config directory.
pub fn load_destinations(config: Option<&Path>) -> Result<Config> {
    let path = match config {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("MEDSEAL_DESTINATIONS") {
            Some(p) => PathBuf::from(p),
            None => sessions::config_dir()?.join("destinations.toml"),
        },
    };
    if !path.exists() {
        return Err(anyhow!(
            "no destinations file at {}: write one (see docs/integrations.md) or give --config",
            path.display()
        ));
    }
    Ok(Config::load(&path)?)
}

/// The outbox directory: the configuration's `[outbox] dir`, else
/// $MEDSEAL_OUTBOX, else `$XDG_STATE_HOME/medseal/outbox` (default
/// `~/.local/state/medseal/outbox`).
pub fn outbox_dir(config: &Config) -> Result<PathBuf> {
    if let Some(d) = &config.outbox.dir {
        return Ok(d.clone());
    }
    if let Some(d) = std::env::var_os("MEDSEAL_OUTBOX") {
        return Ok(PathBuf::from(d));
    }
    let state = match std::env::var_os("XDG_STATE_HOME") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?)
            .join(".local/state"),
    };
    Ok(state.join("medseal/outbox"))
}

/// Opens the outbox and takes its delivery lock.
pub fn open_outbox(config: &Config) -> Result<(Outbox, OutboxLock)> {
    let dir = outbox_dir(config)?;
    let mut outbox = Outbox::open(&dir)
        .with_context(|| format!("cannot open the outbox in {}", dir.display()))?;
    let lock = outbox.lock(|| {
        eprintln!(
            "waiting for another medseal process delivering from {}…",
            dir.display()
        )
    })?;
    Ok((outbox, lock))
}

/// Opens queued reports with the user's keys or key-server session.
pub struct KeyUnsealer(pub OpenKeys);

impl Unsealer for KeyUnsealer {
    fn open(&self, sealed: &Path, header: &Header) -> Result<OpenedReport, DeliveryError> {
        let material = self
            .0
            .material(header.key_mode(), &sealed.display())
            .map_err(|e| {
                // Network trouble reaching the key server is worth retrying;
                // anything else (no session, not a recipient, revoked) needs a
                // person.
                let line = crate::exit::one_line(&e);
                let unreachable = e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<medseal_capture::keyclient::ClientError>(),
                        Some(
                            medseal_capture::keyclient::ClientError::Unreachable { .. }
                                | medseal_capture::keyclient::ClientError::Unavailable(_)
                        )
                    )
                });
                if unreachable {
                    DeliveryError::transient(line)
                } else {
                    DeliveryError::needs_key(line)
                }
            })?;
        OpenedReport::open(sealed, material.secret())
    }

    fn session(&self, mode: &KeyMode) -> Result<SenderSession, DeliveryError> {
        let KeyMode::KeyServer { origin, .. } = mode else {
            return Err(DeliveryError::permanent(
                "a medseal endpoint takes only reports sealed with a key server's key",
            ));
        };
        let session = sessions::client(origin)
            .and_then(|c| sessions::load(c.origin()))
            .map_err(|e| DeliveryError::needs_key(crate::exit::one_line(&e)))?;
        let device_id = sessions::device_id()
            .map_err(|e| DeliveryError::permanent(crate::exit::one_line(&e)))?;
        Ok(SenderSession {
            token: zeroize::Zeroizing::new(session.token),
            device_id,
            ca_file: sessions::ca_cert_path(),
        })
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn begin(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

/// Reports attempts on stderr.
pub struct Console {
    current: std::sync::Mutex<Option<Arc<Bar>>>,
}

impl Console {
    /// A console observer.
    pub fn new() -> Self {
        Self {
            current: std::sync::Mutex::new(None),
        }
    }

    fn finish_bar(&self) {
        if let Ok(mut g) = self.current.lock()
            && let Some(b) = g.take()
        {
            b.0.finish_and_clear();
        }
    }
}

fn when(at_ms: i64) -> String {
    let secs = (at_ms - medseal_integrations::outbox::store::now_ms()).max(0) as f64 / 1000.0;
    if secs < 90.0 {
        format!("in {secs:.0} s")
    } else {
        format!("in {:.0} min", secs / 60.0)
    }
}

impl Observer for Console {
    fn progress(&self, d: &DeliveryRow) -> ProgressHandle {
        self.finish_bar();
        let bar = Arc::new(Bar(progress::bar(
            Some(d.size),
            &format!("→ {}", d.destination),
        )));
        if let Ok(mut g) = self.current.lock() {
            *g = Some(bar.clone());
        }
        bar
    }

    fn outcome(
        &self,
        d: &DeliveryRow,
        result: &Result<Receipt, DeliveryError>,
        retry_at: Option<i64>,
    ) {
        self.finish_bar();
        match (result, retry_at) {
            (Ok(r), _) => eprintln!(
                "{} → {}: delivered{} ({})",
                d.file_name,
                d.destination,
                if r.already_present {
                    " (it was already there)"
                } else {
                    ""
                },
                r.id
            ),
            (Err(e), Some(at)) => eprintln!(
                "{} → {}: attempt {} failed: {}; next attempt {}",
                d.file_name,
                d.destination,
                d.attempts,
                e.message,
                when(at)
            ),
            (Err(e), None) => {
                eprintln!("{} → {}: failed: {}", d.file_name, d.destination, e.message)
            }
        }
    }
}

/// The exit status of a run: every selected delivery delivered, or why not.
pub fn conclude(summary: &RunSummary) -> Result<()> {
    if summary.failed > 0 {
        return Err(anyhow!(
            "{} deliver{} failed; see `medseal outbox list`, fix the cause, then `medseal outbox retry`",
            summary.failed,
            if summary.failed == 1 { "y" } else { "ies" }
        ));
    }
    if summary.pending > 0 {
        return Err(Queued(summary.pending).into());
    }
    Ok(())
}

/// Some deliveries are queued for a later attempt (exit code 7).
#[derive(Debug, thiserror::Error)]
#[error("{0} deliver{s} queued for a later attempt; run `medseal outbox flush` (or leave it to a scheduled flush)", s = if *.0 == 1 { "y is" } else { "ies are" })]
pub struct Queued(pub usize);
