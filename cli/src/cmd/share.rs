//! `medseal share`: hand a sealed report to its recipients as a link
//! instead of an attachment. The key server keeps the sealed bytes (never a
//! key); the link opens in the web app for those who may fetch the key.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use medseal_format::{Header, KeyMode};

use crate::sessions;

/// Arguments of `medseal share`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The key server that holds the report's key (default: the one the
    /// report names).
    #[arg(long, value_name = "URL")]
    keyserver: Option<String>,
    /// How many days the link works (default 7; at most the
    /// organisation's maximum).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=30))]
    days: Option<u32>,
    /// The sealed report.
    #[arg(value_name = "REPORT.mseal")]
    report: PathBuf,
}

/// Runs `medseal share`: prints the link on stdout.
pub fn run(a: Args) -> Result<()> {
    let mut file = std::fs::File::open(&a.report)
        .with_context(|| format!("cannot read {}", a.report.display()))?;
    let header = Header::read_from(&mut file)
        .with_context(|| format!("{} is not a medseal sealed report", a.report.display()))?;
    let KeyMode::KeyServer { origin, .. } = header.key_mode() else {
        bail!(
            "{} is not sealed with a key-server key; only those can be shared as a link",
            a.report.display()
        );
    };
    let url = a.keyserver.as_deref().unwrap_or(origin);
    let client = sessions::client(url)?;
    if client.origin() != origin {
        bail!(
            "the report's key is held by {origin}, not {}; share it there",
            client.origin()
        );
    }
    let session = sessions::load(client.origin())?;
    let drop = client
        .share(&session, &a.report, a.days)
        .with_context(|| format!("cannot share {}", a.report.display()))?;
    println!("{}", drop.url);
    eprintln!(
        "shared until {}: the link opens only for the report's recipients, signed in",
        drop.expires_at
    );
    Ok(())
}
