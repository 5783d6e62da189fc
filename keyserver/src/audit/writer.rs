//! Group commit for audit events.
//!
//! A durable write per request would cap the server at the disk's fsync rate
//! (about 1,500 commits a second here). Instead one writer thread owns a
//! connection; request handlers queue their events and wait. The writer takes
//! everything queued, appends it in a single transaction, commits (which
//! fsyncs), and only then wakes each waiter with its sequence number. Each
//! answer is still sent only after its own event is durable — the batch just
//! shares one fsync among many requests.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Event, append};
use crate::db::{Conn, Location, connect};
use crate::error::{Error, Result};
use crate::keyring::SharedKeyring;
use crate::metrics::Metrics;

/// Largest batch committed at once.
const MAX_BATCH: usize = 2048;
/// Events that may wait for the writer before callers are turned away.
const QUEUE: usize = 16 * 1024;

struct Pending {
    event: Event,
    done: oneshot::Sender<Result<i64>>,
}

/// Handle to the audit writer thread. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Pending>,
}

impl AuditLog {
    /// Opens a dedicated connection and starts the writer thread.
    pub fn start(
        loc: &Location,
        keyring: Arc<SharedKeyring>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let conn = connect(loc)?;
        let (tx, rx) = sync_channel(QUEUE);
        let loc = loc.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(conn, loc, rx, keyring, metrics))
            .map_err(|e| Error::Internal(format!("cannot start the audit writer: {e}")))?;
        Ok(AuditLog { tx })
    }

    /// Records `event` and returns once it is committed to disk.
    pub async fn record(&self, event: Event) -> Result<i64> {
        let (done, wait) = oneshot::channel();
        match self.tx.try_send(Pending { event, done }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::Audit(
                    "too many events waiting to be recorded".into(),
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::Audit("the audit writer has stopped".into()));
            }
        }
        wait.await
            .map_err(|_| Error::Audit("the audit writer has stopped".into()))?
    }
}

fn run(
    mut conn: Conn,
    loc: Location,
    rx: Receiver<Pending>,
    keyring: Arc<SharedKeyring>,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let events: Vec<Event> = batch.iter().map(|p| p.event.clone()).collect();
        let started = Instant::now();
        let result = commit_with_retry(&mut conn, &loc, &keyring, &events);
        metrics.audit_commit(batch.len(), started.elapsed());
        match result {
            Ok(seqs) => {
                for (p, seq) in batch.drain(..).zip(seqs) {
                    let _ = p.done.send(Ok(seq));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "audit commit failed");
                for p in batch.drain(..) {
                    let _ = p
                        .done
                        .send(Err(Error::Audit("could not record the event".into())));
                }
            }
        }
    }
}

/// Commits, retrying transient failures (a lost connection is re-opened).
fn commit_with_retry(
    conn: &mut Conn,
    loc: &Location,
    keyring: &SharedKeyring,
    events: &[Event],
) -> Result<Vec<i64>> {
    let mut delay = Duration::from_millis(10);
    let mut last = None;
    for _ in 0..5 {
        let ring = keyring.get();
        match append(conn, ring.audit_key(), events) {
            Ok(seqs) => return Ok(seqs),
            Err(e) => {
                tracing::warn!(error = %e, "audit commit failed; retrying");
                last = Some(e);
                std::thread::sleep(delay);
                delay *= 2;
                if let Ok(c) = connect(loc) {
                    *conn = c;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Audit("no attempt made".into())))
}
