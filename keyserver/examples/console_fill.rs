//! Fills a key server store with N audit events over R reports of the
//! organisation "Bench", for `bench/console-audit.sh`: each report has a
//! `key.created`, then fetches by its recipients, a few refusals, and
//! sign-ins in between — spread over the whole log, round by round, as a
//! busy service writes them (a report's events are never side by side).
//! Written in batches of 2,048 through the same ledger the server writes
//! with. Not a tool for real stores.
//!
//! Usage: console_fill DATA_DIR [DATABASE_URL|-] N REPORTS

use medseal_keyserver::audit::ledger::{Item, commit_batch};
use medseal_keyserver::audit::{Action, Event, Outcome};
use medseal_keyserver::{Store, db};

fn event(k: u64, reports: u64) -> Event {
    let report = k % reports;
    let round = k / reports;
    let actor = |n: u64| format!("clinician{}@bench.example", n % 200);
    let (action, outcome, who) = match round % 100 {
        0 => (Action::KeyCreated, Outcome::Success, actor(report)),
        1..=89 => (Action::KeyFetched, Outcome::Success, actor(report + round)),
        90..=94 => (
            Action::KeyDenied,
            Outcome::Denied,
            actor(report * 7 + round),
        ),
        95..=97 => (Action::SessionCreated, Outcome::Success, actor(k)),
        _ => (Action::SessionFailed, Outcome::Denied, actor(k)),
    };
    let mut e = Event::new(&who, "Bench", action, outcome);
    if !matches!(action, Action::SessionCreated | Action::SessionFailed) {
        e = e.about(
            Some(format!("k_{report:032x}")),
            Some(format!("report-{report}")),
        );
    }
    e.client_ip = Some(format!("10.0.{}.{}", (k / 250) % 250, k % 250));
    e.device_id = Some(format!("device-{}", k % 1000));
    e
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, url, n, reports] = args.as_slice() else {
        return Err("usage: console_fill DATA_DIR DATABASE_URL|- N REPORTS".into());
    };
    let (n, reports): (u64, u64) = (n.parse()?, reports.parse()?);
    let url = (url != "-").then(|| url.clone());
    let store = Store::resolve(Some(dir.into()), url, None)?;
    let mut conn = db::connect(&store.location)?;
    db::migrate(&mut conn)?;
    let ring = store.open_for_writing(&mut conn)?;
    let mut written = 0u64;
    let mut now = medseal_keyserver::time::now_ms() - 14 * 86_400_000;
    while written < n {
        let batch: Vec<Event> = (0..(n - written).min(2048))
            .map(|i| event(written + i, reports))
            .collect();
        now += 1000;
        commit_batch(&mut conn, &ring, now, &[Item::Events(&batch)])?;
        written += batch.len() as u64;
    }
    println!("{written} events written over {reports} reports");
    Ok(())
}
