//! The delivery loop: every due delivery is attempted; transient failures
//! come back after a backoff, and the loop keeps going in the foreground
//! while the next attempt falls within `wait_in_process_seconds` of the
//! run's start, so a destination that fails a few times and then recovers
//! is delivered in one `medseal send`. Anything due later waits for the
//! next `outbox flush`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use medseal_format::{Header, KeyMode};

use crate::config::Config;
use crate::destination::{Destination, Parcel, ProgressHandle, Receipt, SenderSession};
use crate::error::{DeliveryError, Failure};
use crate::opened::OpenedReport;
use crate::outbox::backoff;
use crate::outbox::store::{DeliveryRow, Outbox, OutboxError, OutboxLock, State, now_ms};

/// Opens a queued report for destinations that need its contents. The
/// command line implements it with the user's key, password or key-server
/// session; the outbox itself never stores a key.
pub trait Unsealer {
    /// Opens `sealed`, whose header is `header`.
    fn open(&self, sealed: &Path, header: &Header) -> Result<OpenedReport, DeliveryError>;

    /// Whether every report is opened and verified before any delivery,
    /// even to destinations that take the sealed file as it is. A receiving
    /// endpoint says yes: it forwards nothing it has not verified.
    fn verify_every_report(&self) -> bool {
        false
    }

    /// Whether a report this unsealer refuses for good (it does not open,
    /// or may not be opened) is deleted from the queue at once, its
    /// deliveries given up. A receiving endpoint says yes: what strangers
    /// send must not stay on its disk. A sender's own outbox keeps it, for
    /// `outbox retry` once the cause is fixed.
    fn discard_refused(&self) -> bool {
        false
    }

    /// The sender's key-server session, for destinations that vouch for
    /// the sender to the next hop (a medseal receiving endpoint): the
    /// session with the key server a report sealed under `mode` names.
    fn session(&self, mode: &KeyMode) -> Result<SenderSession, DeliveryError> {
        let _ = mode;
        Err(DeliveryError::needs_key(
            "this destination needs the sender's key-server session",
        ))
    }
}

/// Told what happens, to show it to the user.
pub trait Observer {
    /// A progress sink for this delivery's upload.
    fn progress(&self, delivery: &DeliveryRow) -> ProgressHandle;
    /// An attempt ended: delivered, or failed with the time of the next
    /// attempt (`None`: given up).
    fn outcome(
        &self,
        delivery: &DeliveryRow,
        result: &Result<Receipt, DeliveryError>,
        retry_at: Option<i64>,
    );
}

/// Where the deliveries a run looked at stand afterwards.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// With a receipt.
    pub delivered: usize,
    /// Still queued, with a later attempt due.
    pub pending: usize,
    /// Given up; `outbox retry` re-arms them.
    pub failed: usize,
}

fn read_header(path: &Path) -> Result<Header, DeliveryError> {
    let mut f = std::fs::File::open(path)?;
    Header::read_from(&mut f)
        .map_err(|e| DeliveryError::permanent(format!("{}: {e}", path.display())))
}

/// Delivers everything due (only `only`, if given) until nothing is due
/// within the in-process wait.
pub fn run(
    outbox: &mut Outbox,
    lock: &OutboxLock,
    config: &Config,
    unsealer: &dyn Unsealer,
    observer: &dyn Observer,
    only: Option<&[i64]>,
) -> Result<RunSummary, OutboxError> {
    let settings = &config.outbox;
    let initial = Duration::from_secs_f64(settings.backoff_initial_seconds);
    let max = Duration::from_secs_f64(settings.backoff_max_seconds);
    // The foreground wait bounds the whole run, not each wait in it: a
    // `send` to a destination that is down returns after about this long,
    // its delivery still queued, however many attempts fit in.
    let deadline = now_ms() + (settings.wait_in_process_seconds * 1000.0) as i64;
    let mut built: HashMap<String, Result<Box<dyn Destination>, String>> = HashMap::new();
    let mut opened: HashMap<String, Result<OpenedReport, (Failure, String)>> = HashMap::new();
    let mut discarded: HashSet<String> = HashSet::new();
    loop {
        let due = outbox.due(now_ms(), only)?;
        // Where each report is last needed in this pass: its plaintext is
        // dropped right after, not kept for the rest of the pass.
        let last_use: HashMap<&str, usize> = due
            .iter()
            .enumerate()
            .map(|(i, d)| (d.sha256.as_str(), i))
            .collect();
        for (i, d) in due.iter().enumerate() {
            if discarded.contains(&d.sha256) {
                continue;
            }
            let done_with_report = last_use.get(d.sha256.as_str()) == Some(&i);
            let forget = |opened: &mut HashMap<String, _>| {
                if done_with_report {
                    opened.remove(&d.sha256);
                }
            };
            let dest = built
                .entry(d.destination.clone())
                .or_insert_with(|| config.build(&d.destination).map_err(|e| e.to_string()));
            let dest = match dest {
                Ok(dest) => dest,
                Err(why) => {
                    let e =
                        DeliveryError::permanent(format!("destination {}: {why}", d.destination));
                    outbox.failed(lock, d.id, &e.message, None)?;
                    observer.outcome(d, &Err(e), None);
                    forget(&mut opened);
                    continue;
                }
            };
            outbox.begin_attempt(lock, d.id)?;
            let attempts = d.attempts + 1;
            let blob = outbox.blob(&d.sha256);
            let scratch = outbox.scratch();
            // Set when the unsealer refused the report itself for good, as
            // opposed to this destination refusing it.
            let mut refused_report = false;
            let result = (|| {
                let header = read_header(&blob)?;
                let report = if dest.needs_opened_report() || unsealer.verify_every_report() {
                    // Opening fetches the key (an audited event): not for a
                    // destination that cannot be reached anyway.
                    if !opened.contains_key(&d.sha256) {
                        dest.reachable()?;
                    }
                    let entry = opened.entry(d.sha256.clone()).or_insert_with(|| {
                        unsealer
                            .open(&blob, &header)
                            .map_err(|e| (e.failure, e.message))
                    });
                    match entry {
                        Ok(r) => Some(&*r),
                        Err((f, m)) => {
                            let err = DeliveryError {
                                failure: *f,
                                message: m.clone(),
                                retry_after: None,
                            };
                            // A transient failure to open (key server down)
                            // is tried again on the next pass.
                            refused_report = *f == Failure::Permanent;
                            if *f == Failure::Transient {
                                opened.remove(&d.sha256);
                            }
                            return Err(err);
                        }
                    }
                } else {
                    None
                };
                let sender = if dest.needs_sender_session() {
                    Some(unsealer.session(header.key_mode())?)
                } else {
                    None
                };
                let parcel = Parcel {
                    sealed: &blob,
                    file_name: &d.file_name,
                    size: d.size,
                    sha256: &d.sha256,
                    header: &header,
                    idempotency_key: &d.idempotency_key,
                    opened: report,
                    sender: sender.as_ref(),
                    scratch: Some(&scratch),
                };
                dest.deliver(&parcel, &observer.progress(d))
            })();
            // A report whose delivery will be tried again stays open for
            // the rest of this run: the retry does not fetch its key again.
            if !matches!(&result, Err(e) if e.is_transient()) {
                forget(&mut opened);
            }
            let mut shown = d.clone();
            shown.attempts = attempts;
            match &result {
                Ok(receipt) => {
                    outbox.delivered(lock, d.id, receipt)?;
                    observer.outcome(&shown, &result, None);
                }
                Err(e) if e.is_transient() && attempts < settings.max_attempts => {
                    let wait = backoff::delay(
                        attempts,
                        initial,
                        max,
                        e.retry_after,
                        backoff::unit_random(),
                    );
                    let at = now_ms() + wait.as_millis() as i64;
                    outbox.failed(lock, d.id, &e.message, Some(at))?;
                    observer.outcome(&shown, &result, Some(at));
                }
                Err(e) if refused_report && unsealer.discard_refused() => {
                    outbox.discard(lock, &d.sha256, &e.message)?;
                    discarded.insert(d.sha256.clone());
                    observer.outcome(&shown, &result, None);
                }
                Err(e) => {
                    let message = if e.is_transient() {
                        format!("{} (gave up after {attempts} attempts)", e.message)
                    } else {
                        e.message.clone()
                    };
                    outbox.failed(lock, d.id, &message, None)?;
                    observer.outcome(&shown, &result, None);
                }
            }
        }
        let now = now_ms();
        match outbox.next_due(only)? {
            Some(t) if t <= deadline => {
                if t > now {
                    std::thread::sleep(Duration::from_millis((t - now) as u64));
                }
            }
            _ => break,
        }
    }
    let mut summary = RunSummary::default();
    for (state, n) in outbox.counts(only)? {
        match state {
            State::Delivered => summary.delivered += n,
            State::Pending | State::Sending => summary.pending += n,
            State::Failed => summary.failed += n,
        }
    }
    Ok(summary)
}
