//! `medseal send --to NAME REPORT.mseal`: queue a sealed report for one or
//! more destinations and deliver it now if the network allows.

use anyhow::{Context, Result, bail};

use medseal_integrations::outbox::State;

use crate::delivery::{Console, DeliveryArgs, KeyUnsealer, conclude, open_outbox};
use crate::files::{InputPath, check_one_stdin};

/// Arguments of `medseal send`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A destination named in the destinations file (repeat for several).
    #[arg(long = "to", value_name = "NAME", required = true)]
    to: Vec<String>,
    #[command(flatten)]
    delivery: DeliveryArgs,
    /// The sealed report.
    #[arg(value_name = "REPORT.mseal")]
    report: std::path::PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let inputs = a.delivery.inputs();
    check_one_stdin(&inputs.iter().map(Some).collect::<Vec<_>>())?;
    let config = a.delivery.load()?;
    let mut to = Vec::new();
    for name in &a.to {
        // Built now, so that a mistake (a secret file others can read, a
        // bad URL) is refused before the report is queued, not at delivery.
        config.build(name)?;
        if !to.contains(name) {
            to.push(name.clone());
        }
    }
    let input = InputPath::from(a.report.as_os_str().to_str().unwrap_or_default());
    if a.report.as_os_str() == "-" || !a.report.is_file() {
        bail!(
            "{}: give a sealed report file (the outbox keeps its own copy)",
            a.report.display()
        );
    }
    // Refuse anything that is not a medseal file before queueing it.
    {
        let mut f =
            std::fs::File::open(&a.report).with_context(|| format!("cannot read {input}"))?;
        medseal_format::Header::read_from(&mut f)
            .with_context(|| format!("cannot send {input}"))?;
    }
    let file_name = a
        .report
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.ends_with(".mseal") && !n.starts_with('.'))
        .map(str::to_owned)
        .unwrap_or_else(|| "report.mseal".to_owned());
    let keys = a.delivery.keys()?;
    let (mut outbox, lock) = open_outbox(&config)?;
    let queued = outbox.enqueue(&lock, &a.report, &file_name, &to)?;
    let ids: Vec<i64> = queued.iter().map(|d| d.id).collect();
    let mut failed = Vec::new();
    for d in &queued {
        match d.state {
            State::Delivered => eprintln!("{} → {}: already delivered", d.file_name, d.destination),
            // Sending again is asking to try again.
            State::Failed => failed.push(d.id),
            State::Pending | State::Sending => {}
        }
    }
    if !failed.is_empty() {
        outbox.rearm(&lock, &failed)?;
    }
    let summary = medseal_integrations::outbox::run(
        &mut outbox,
        &lock,
        &config,
        &KeyUnsealer(keys),
        &Console::new(),
        Some(&ids),
    )?;
    conclude(&summary)
}
