//! `medseal audit …`: a report's trail, read through the API by an auditor
//! or the report's creator; and checks anyone can make of a key server's
//! audit log without access to its database — a receipt, offline, and a
//! witness that holds the server to the log it signed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args as ClapArgs, Subcommand};
use medseal_capture::keyclient::KeyClient;
use medseal_keyserver_api::transparency::{Checkpoint, Receipt, check_extends, parse_public_key};

use crate::sessions;

/// Arguments of `medseal audit`: a report's trail
/// (`audit REPORT.mseal`, `audit --report-id R --keyserver URL`), or one of
/// the checks.
#[derive(Debug, ClapArgs)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    trail: TrailArgs,
}

/// `medseal audit REPORT.mseal | --report-id R | --key-id K`.
#[derive(Debug, ClapArgs)]
struct TrailArgs {
    /// The report whose trail to read (its key's events).
    #[command(flatten)]
    key: super::keyref::KeyTarget,
    /// Every event about this report id (auditors and admins), with --keyserver.
    #[arg(long, value_name = "R", conflicts_with_all = ["report", "key_id"], requires = "keyserver")]
    report_id: Option<String>,
    /// json or csv.
    #[arg(long, value_name = "FORMAT", default_value = "json", value_parser = ["json", "csv"])]
    format: String,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "OUT")]
    output: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a receipt offline: the event it names is in the log that the
    /// key server signed.
    CheckReceipt {
        /// The receipt (JSON), or a whole key-fetch answer holding one.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The server's Ed25519 public key, base64 (from
        /// `medseal keyserver audit public-key` or `GET /v1/audit/public-key`).
        #[arg(long, value_name = "BASE64", required_unless_present = "keyserver")]
        public_key: Option<String>,
        /// Fetch the public key from this key server instead (trusts the
        /// connection; prefer --public-key obtained out of band).
        #[arg(long, value_name = "URL", conflicts_with = "public_key")]
        keyserver: Option<String>,
    },
    /// Watch a key server's audit log: keep the last checkpoint seen and
    /// check that every new one extends it. Exits non-zero on a rollback,
    /// truncation or fork.
    Witness {
        /// The key server to watch.
        #[arg(long, value_name = "URL")]
        keyserver: String,
        /// Where the witness keeps what it has seen (created 0700).
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Check again every S seconds instead of once.
        #[arg(long, value_name = "S")]
        interval: Option<u64>,
        /// Pin this public key (base64) instead of trusting the first one
        /// the server shows.
        #[arg(long, value_name = "BASE64")]
        public_key: Option<String>,
    },
}

/// The largest receipt or state file read.
const MAX_FILE: u64 = 1 << 20;

fn read_small(path: &Path) -> Result<Vec<u8>> {
    std::fs::File::open(path)
        .and_then(|f| medseal_format::read_bounded(f, MAX_FILE))
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Reads a report's trail through the API and writes it as the server
/// sent it.
fn trail(t: TrailArgs) -> Result<()> {
    use std::io::Write;
    let (client, session, key_id, report_id) = match &t.report_id {
        Some(r) => {
            let url = t.key.keyserver.as_deref().unwrap_or_default();
            let client = sessions::client(url)?;
            let session = sessions::load(client.origin())?;
            (client, session, None, Some(r.clone()))
        }
        None => {
            let k = t.key.resolve()?;
            (k.client, k.session, Some(k.key_id), None)
        }
    };
    let body = client
        .audit(&session, key_id.as_deref(), report_id.as_deref(), &t.format)
        .context("cannot read the audit trail")?;
    let dest = t.output.unwrap_or_else(|| "-".into());
    let mut out = crate::files::Output::create(&dest, &crate::files::InputPath::Stdin)?;
    out.write_all(&body).context("cannot write the trail")?;
    out.commit()
}

/// Runs `medseal audit`.
pub fn run(a: Args) -> Result<()> {
    let Some(command) = a.command else {
        return trail(a.trail);
    };
    match command {
        Command::CheckReceipt {
            file,
            public_key,
            keyserver,
        } => check_receipt(&file, public_key, keyserver),
        Command::Witness {
            keyserver,
            state,
            interval,
            public_key,
        } => {
            let client = witness_client(&keyserver)?;
            let mut w = Witness::open(&state, public_key)?;
            loop {
                let line = w.check(&client)?;
                println!("{line}");
                match interval {
                    Some(s) => std::thread::sleep(Duration::from_secs(s.max(1))),
                    None => return Ok(()),
                }
            }
        }
    }
}

fn witness_client(url: &str) -> Result<KeyClient> {
    let ca = sessions::extra_ca()?;
    Ok(KeyClient::new(url, "medseal-audit-witness", ca.as_deref())?)
}

fn check_receipt(file: &Path, public_key: Option<String>, keyserver: Option<String>) -> Result<()> {
    let bytes = read_small(file)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a receipt (not JSON)", file.display()))?;
    let inner = value.get("receipt").cloned().unwrap_or(value);
    let receipt: Receipt = serde_json::from_value(inner)
        .map_err(|e| anyhow!("{} is not a receipt: {e}", file.display()))?;
    let key = match (public_key, keyserver) {
        (Some(k), _) => k,
        (None, Some(url)) => witness_client(&url)?.audit_public_key()?,
        (None, None) => bail!("give --public-key or --keyserver"),
    };
    let key = parse_public_key(&key)?;
    receipt
        .verify(&key)
        .context("the receipt does not verify")?;
    let e = &receipt.event;
    println!(
        "receipt verified: event {} ({} by {}{}) is in the audit log of {} events signed at {}",
        e.seq,
        e.action,
        e.actor,
        e.key_id
            .as_deref()
            .map(|k| format!(" of {k}"))
            .unwrap_or_default(),
        receipt.checkpoint.size,
        medseal_keyserver::time::rfc3339(receipt.checkpoint.at_ms),
    );
    Ok(())
}

/// What a witness keeps between runs.
struct Witness {
    dir: PathBuf,
    public_key: [u8; 32],
    pinned: bool,
    last: Option<Checkpoint>,
}

const KEY_FILE: &str = "public-key";
const CHECKPOINT_FILE: &str = "checkpoint.json";

impl Witness {
    fn open(dir: &Path, given: Option<String>) -> Result<Self> {
        medseal_files::private_dir(dir).context("cannot create the witness directory")?;
        let stored = match read_small(&dir.join(KEY_FILE)) {
            Ok(b) => Some(String::from_utf8_lossy(&b).trim().to_owned()),
            Err(_) if !dir.join(KEY_FILE).exists() => None,
            Err(e) => return Err(e),
        };
        let (key, pinned) = match (given, stored) {
            (Some(g), Some(s)) if g.trim() != s => bail!(
                "the public key given is not the one this witness has pinned in {}",
                dir.display()
            ),
            (Some(k), _) | (None, Some(k)) => (parse_public_key(&k)?, true),
            (None, None) => ([0; 32], false),
        };
        let last =
            match read_small(&dir.join(CHECKPOINT_FILE)) {
                Ok(b) => Some(serde_json::from_slice(&b).with_context(|| {
                    format!("{} is damaged", dir.join(CHECKPOINT_FILE).display())
                })?),
                Err(_) if !dir.join(CHECKPOINT_FILE).exists() => None,
                Err(e) => return Err(e),
            };
        Ok(Witness {
            dir: dir.to_owned(),
            public_key: key,
            pinned,
            last,
        })
    }

    /// One round: fetch, verify against what was seen, keep. Answers a
    /// line for the log; an error is a broken promise (or an unreachable
    /// server).
    fn check(&mut self, client: &KeyClient) -> Result<String> {
        if !self.pinned {
            let k = client.audit_public_key()?;
            self.public_key = parse_public_key(&k)?;
            write_atomic(&self.dir.join(KEY_FILE), k.as_bytes())?;
            self.pinned = true;
        } else {
            let k = parse_public_key(&client.audit_public_key()?)?;
            if k != self.public_key {
                bail!(
                    "the key server now signs with another key: its audit log cannot be trusted to continue the one seen before"
                );
            }
        }
        let new = client.audit_checkpoint()?;
        new.verify(&self.public_key)
            .context("the key server's checkpoint")?;
        let line = match &self.last {
            None => format!("first checkpoint: {} events, root {}", new.size, new.root),
            Some(old) => {
                let proof = if new.size > old.size && old.size > 0 {
                    client.audit_consistency(old.size, new.size)?
                } else {
                    Vec::new()
                };
                check_extends(old, &new, &proof, &self.public_key).with_context(|| {
                    format!(
                        "the audit log of {} does not extend the one seen before",
                        client.origin()
                    )
                })?;
                format!(
                    "consistent: {} events (was {}), root {}",
                    new.size, old.size, new.root
                )
            }
        };
        let json = serde_json::to_vec_pretty(&new)?;
        write_atomic(&self.dir.join(CHECKPOINT_FILE), &json)?;
        self.last = Some(new);
        Ok(line)
    }
}

/// Replaces `path` with `bytes` (0600, temporary file, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(medseal_files::write_private(
        path,
        bytes,
        medseal_files::WriteOptions::default(),
    )?)
}

/// Reads a checkpoint saved by a witness (or the one inside a receipt).
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bytes = read_small(path)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a checkpoint (not JSON)", path.display()))?;
    // A receipt carries one too.
    let inner = v
        .get("receipt")
        .and_then(|r| r.get("checkpoint"))
        .or_else(|| v.get("checkpoint"))
        .cloned()
        .unwrap_or(v);
    serde_json::from_value::<Checkpoint>(inner)
        .map_err(|e| anyhow!("{} is not a checkpoint: {e}", path.display()))
}
