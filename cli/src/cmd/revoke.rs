//! `medseal revoke`: a report's key is revoked at its key server, so that
//! no copy of the report opens again, anywhere.

use anyhow::{Context, Result};

use super::keyref;

/// Arguments of `medseal revoke`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    key: keyref::KeyTarget,
    /// Do not ask (needed when not on a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

pub fn run(a: Args) -> Result<()> {
    let k = a.key.resolve()?;
    let what = a.key.name(&k);
    // The key and server as the file's header names them: what is revoked.
    keyref::confirm(
        &format!(
            "Revoke key {} at {} (the key of {what})? Nobody will be able to open any copy of it.",
            k.key_id,
            k.client.origin()
        ),
        a.yes,
    )?;
    k.client
        .revoke(&k.session, &k.key_id)
        .with_context(|| format!("cannot revoke {what}"))?;
    eprintln!(
        "key {} revoked at {}: no copy of {what} opens any more; the revocation is in the audit log",
        k.key_id,
        k.client.origin()
    );
    Ok(())
}
