//! Fills a key server store with N realistic audit events (key fetches) in
//! batches of 2,048, through the same ledger the server writes with, for
//! `bench/audit-verify.sh`. Not a tool for real stores.
//!
//! Usage: audit_fill DATA_DIR N

use medseal_keyserver::audit::ledger::{Item, commit_batch};
use medseal_keyserver::audit::{Action, Event, Outcome};
use medseal_keyserver::{Store, db};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next()) else {
        return Err("usage: audit_fill DATA_DIR N".into());
    };
    let n: u64 = n.parse()?;
    let store = Store::resolve(Some(dir.into()), None, None)?;
    let mut conn = db::connect(&store.location)?;
    db::migrate(&mut conn)?;
    let ring = store.open_for_writing(&mut conn)?;
    let mut written = 0u64;
    let mut now = medseal_keyserver::time::now_ms();
    while written < n {
        let batch: Vec<Event> = (0..(n - written).min(2048))
            .map(|i| {
                let k = written + i;
                let mut e = Event::new(
                    &format!("clinician{}@bench.example", k % 97),
                    "Bench",
                    Action::KeyFetched,
                    Outcome::Success,
                )
                .about(
                    Some(format!("k_{:032x}", k / 3)),
                    Some(format!("report-{}", k / 3)),
                );
                e.client_ip = Some(format!("10.0.{}.{}", (k / 250) % 250, k % 250));
                e.device_id = Some(format!("device-{}", k % 1000));
                e
            })
            .collect();
        now += 1;
        commit_batch(&mut conn, &ring, now, &[Item::Events(&batch)])?;
        written += batch.len() as u64;
    }
    println!("{written} events written");
    Ok(())
}
