//! Which report key a command acts on: the one a sealed file's header names
//! (its key server and key id, readable without any key), or one given as
//! `--key-id` with `--keyserver`. Shared by `revoke`, `recipients` and
//! `audit`.

use anyhow::{Context, Result, bail};
use medseal_capture::keyclient::{KeyClient, Session};
use medseal_format::{Header, KeyMode};

use crate::exit::UsageError;
use crate::files::InputPath;
use crate::sessions;

/// A report key on its key server, with this device's session there.
pub struct KeyOnServer {
    /// The client for the key's server.
    pub client: KeyClient,
    /// This device's session with it.
    pub session: Session,
    /// The key id.
    pub key_id: String,
}

/// The flags that name a report key: its sealed file, or `--key-id` with
/// `--keyserver`.
#[derive(Debug, clap::Args)]
pub struct KeyTarget {
    /// The sealed report (its header names the key server and the key).
    #[arg(value_name = "REPORT.mseal")]
    pub report: Option<String>,
    /// The key id instead of the file (with --keyserver).
    #[arg(
        long,
        value_name = "K",
        conflicts_with = "report",
        requires = "keyserver"
    )]
    pub key_id: Option<String>,
    /// The key server (not needed with a file: its header names it).
    #[arg(long, value_name = "URL")]
    pub keyserver: Option<String>,
}

impl KeyTarget {
    /// The key, and this device's session with its server.
    pub fn resolve(&self) -> Result<KeyOnServer> {
        resolve(
            self.report.as_deref(),
            self.key_id.as_deref(),
            self.keyserver.as_deref(),
        )
    }

    /// How to name it to a person: the file, else the key id.
    pub fn name<'a>(&'a self, k: &'a KeyOnServer) -> &'a str {
        self.report.as_deref().unwrap_or(&k.key_id)
    }
}

/// The key server and key id that the sealed file at `path` names.
pub fn key_of_file(path: &str) -> Result<(String, String)> {
    let input = InputPath::from(path);
    let mut reader = input.open_raw()?;
    let header = Header::read_from(&mut reader).with_context(|| format!("cannot read {input}"))?;
    match header.key_mode() {
        KeyMode::KeyServer { origin, key_id } => Ok((origin.clone(), key_id.clone())),
        _ => bail!(
            "{input} is sealed with a password or an organisation key: it has no key on a key server"
        ),
    }
}

/// Resolves a file or `--key-id`/`--keyserver` to the key and a session.
pub fn resolve(
    file: Option<&str>,
    key_id: Option<&str>,
    keyserver: Option<&str>,
) -> Result<KeyOnServer> {
    let (origin, key_id) = match (file, key_id, keyserver) {
        (Some(f), None, _) => key_of_file(f)?,
        (None, Some(k), Some(url)) => (url.to_owned(), k.to_owned()),
        (None, Some(_), None) => {
            return Err(UsageError("--key-id needs --keyserver URL".into()).into());
        }
        _ => {
            return Err(UsageError(
                "name the sealed report, or give --key-id K --keyserver URL".into(),
            )
            .into());
        }
    };
    let client = sessions::client(&origin)?;
    let session = sessions::load(client.origin())?;
    Ok(KeyOnServer {
        client,
        session,
        key_id,
    })
}

/// Asks on a terminal before something that cannot be undone; elsewhere
/// the command line must say `--yes`.
pub fn confirm(question: &str, yes: bool) -> Result<()> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        bail!("{question} — this cannot be undone; give --yes to confirm");
    }
    eprint!("{question} This cannot be undone. [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}
