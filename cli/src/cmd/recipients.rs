//! `medseal recipients add`: more people may open a report already sent.

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::keyref;

/// Arguments of `medseal recipients`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Let more people open a report: `recipients add REPORT.mseal EMAIL…`,
    /// or `recipients add --key-id K --keyserver URL EMAIL…`.
    Add {
        /// The sealed report, then the addresses (just the addresses with
        /// --key-id).
        #[arg(value_name = "REPORT.mseal EMAIL", required = true, num_args = 1..)]
        args: Vec<String>,
        /// The key id instead of the file (with --keyserver).
        #[arg(long, value_name = "K", requires = "keyserver")]
        key_id: Option<String>,
        /// The key server of --key-id.
        #[arg(long, value_name = "URL", requires = "key_id")]
        keyserver: Option<String>,
        /// Add even an address with no account that is not admitted as a
        /// guest (recipients cannot be removed once added).
        #[arg(long)]
        allow_unknown_recipients: bool,
    },
}

pub fn run(a: Args) -> Result<()> {
    let Command::Add {
        args,
        key_id,
        keyserver,
        allow_unknown_recipients,
    } = a.command;
    let (file, emails) = match &key_id {
        Some(_) => (None, &args[..]),
        None => match args.split_first() {
            Some((f, rest)) if !rest.is_empty() => (Some(f.as_str()), rest),
            _ => bail!("name the sealed report, then the addresses to add"),
        },
    };
    let k = keyref::resolve(file, key_id.as_deref(), keyserver.as_deref())?;
    let what = file.unwrap_or(&k.key_id);
    let emails: Vec<String> = emails.to_vec();
    // Checked first: a recipient, once added, cannot be taken off.
    crate::keysource::check_recipients(&k.client, &k.session, &emails, allow_unknown_recipients)?;
    k.client
        .add_recipients(&k.session, &k.key_id, &emails)
        .with_context(|| format!("cannot add recipients to {what}"))?;
    eprintln!(
        "{} may now open {what} (recorded in the audit log)",
        emails.join(", ")
    );
    Ok(())
}
