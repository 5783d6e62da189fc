//! The delivery thread: drives the outbox whenever a report arrives or a
//! retry comes due, one report at a time.
//!
//! It holds the outbox's delivery lock for the life of the process, so a
//! second endpoint on the same data directory waits instead of delivering
//! the same reports. A delivery interrupted by a crash is found `sending`
//! at the next start and tried again with the same idempotency key.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use medseal_integrations::outbox::{self, DeliveryRow, Observer, Outbox, OutboxLock};
use medseal_integrations::{Config, DeliveryError, NoProgress, ProgressHandle, Receipt};

use crate::server::Shared;

/// Longest sleep between looks at the queue.
const IDLE: Duration = Duration::from_secs(30);

/// Writes one line per attempt to the log: the report's hash, the
/// destination, the outcome. Never the patient, never a key.
struct Log;

impl Observer for Log {
    fn progress(&self, _: &DeliveryRow) -> ProgressHandle {
        NoProgress::handle()
    }

    fn outcome(
        &self,
        d: &DeliveryRow,
        result: &Result<Receipt, DeliveryError>,
        retry_at: Option<i64>,
    ) {
        // The report by its hash only: the file name came from the sender
        // and could name the patient.
        let what = format!(
            "medseal endpoint: report {} → {}",
            d.sha256.get(..16).unwrap_or(&d.sha256),
            d.destination
        );
        match (result, retry_at) {
            (Ok(r), _) => eprintln!("{what}: delivered ({})", r.id),
            (Err(e), Some(_)) => eprintln!(
                "{what}: attempt {} failed: {}; will retry",
                d.attempts, e.message
            ),
            (Err(e), None) => eprintln!("{what}: failed: {}", e.message),
        }
    }
}

/// Runs deliveries until `wake`'s sender is gone.
pub fn run(
    mut outbox: Outbox,
    lock: OutboxLock,
    config: Config,
    shared: Arc<Shared>,
    wake: Receiver<()>,
) {
    loop {
        if let Err(e) = outbox::run(&mut outbox, &lock, &config, &shared.account, &Log, None) {
            eprintln!("medseal endpoint: the outbox failed: {e}; trying again shortly");
            std::thread::sleep(Duration::from_secs(1));
        }
        let wait = match outbox.next_due(None) {
            Ok(Some(at)) => {
                let ms = at - outbox::store::now_ms();
                Duration::from_millis(ms.clamp(0, IDLE.as_millis() as i64) as u64)
            }
            _ => IDLE,
        };
        match wake.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {
                // Several arrivals wake the loop once.
                while wake.try_recv().is_ok() {}
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
