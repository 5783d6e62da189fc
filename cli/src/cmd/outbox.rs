//! `medseal outbox list | retry | flush`: where every queued report stands,
//! and delivering what is due.

use anyhow::Result;
use medseal_integrations::outbox::{DeliveryRow, State, run};

use crate::delivery::{Console, DeliveryArgs, KeyUnsealer, conclude, open_outbox};
use crate::files::check_one_stdin;

/// Arguments of `medseal outbox`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Show every delivery and its state.
    List {
        #[command(flatten)]
        delivery: DeliveryArgs,
        /// One JSON object per delivery, in an array.
        #[arg(long)]
        json: bool,
    },
    /// Put failed deliveries back in the queue and attempt them now.
    Retry {
        #[command(flatten)]
        delivery: DeliveryArgs,
        /// Delivery numbers (as in `outbox list`); default: every one not
        /// yet delivered.
        #[arg(value_name = "ID")]
        ids: Vec<i64>,
    },
    /// Attempt every delivery that is due, including any interrupted one.
    Flush {
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
}

pub fn run_command(a: Args) -> Result<()> {
    match a.command {
        Command::List { delivery, json } => list(&delivery, json),
        Command::Retry { delivery, ids } => deliver(&delivery, Some(ids)),
        Command::Flush { delivery } => deliver(&delivery, None),
    }
}

fn list(d: &DeliveryArgs, json: bool) -> Result<()> {
    let config = d.load()?;
    // Reading needs no lock: a delivery under way shows as `sending`.
    let dir = crate::delivery::outbox_dir(&config)?;
    let mut outbox = medseal_integrations::outbox::Outbox::open(&dir)?;
    let rows = outbox.list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("the outbox is empty");
        return Ok(());
    }
    println!(
        "{:>4}  {:<28} {:<16} {:<9} {:>3}  DETAIL",
        "ID", "REPORT", "DESTINATION", "STATE", "TRY"
    );
    for r in &rows {
        println!(
            "{:>4}  {:<28} {:<16} {:<9} {:>3}  {}",
            r.id,
            r.file_name,
            r.destination,
            state_name(r.state),
            r.attempts,
            detail(r)
        );
    }
    Ok(())
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Pending => "pending",
        State::Sending => "sending",
        State::Delivered => "delivered",
        State::Failed => "failed",
    }
}

fn detail(r: &DeliveryRow) -> String {
    match (r.state, &r.receipt, &r.last_error) {
        (State::Delivered, Some(receipt), _) => format!("receipt {}", receipt.id),
        (State::Pending, _, Some(e)) => format!("{e} (next attempt due)"),
        (_, _, Some(e)) => e.clone(),
        _ => String::new(),
    }
}

fn deliver(d: &DeliveryArgs, ids: Option<Vec<i64>>) -> Result<()> {
    let inputs = d.inputs();
    check_one_stdin(&inputs.iter().map(Some).collect::<Vec<_>>())?;
    let config = d.load()?;
    let keys = d.keys()?;
    let (mut outbox, lock) = open_outbox(&config)?;
    let only = match ids {
        Some(ids) => Some(outbox.rearm(&lock, &ids)?),
        None => None,
    };
    let summary = run(
        &mut outbox,
        &lock,
        &config,
        &KeyUnsealer(keys),
        &Console::new(),
        only.as_deref(),
    )?;
    conclude(&summary)
}
