//! Group commit for changes and their audit events.
//!
//! A durable write per request would cap the server at the disk's fsync rate
//! (about 1,500 commits a second here). Instead one writer thread owns a
//! connection; request handlers queue their changes and events and wait. The
//! writer takes everything queued, runs it as one batch
//! ([`super::ledger::commit_batch`]: each change and its events in one
//! transaction with the others, each change in its own savepoint), commits
//! (which fsyncs), and only then wakes each waiter with what its change
//! returned and its events' sequence numbers. Each answer is still sent only
//! after its own change and event are durable — the batch just shares one
//! fsync among many requests.

use std::any::Any;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use medseal_keyserver_api::transparency::{Checkpoint, ReceiptEvent};
use tokio::sync::oneshot;

use super::Event;
use super::ledger::{self, Change, Item, Tx};
use super::proofs::TreeCache;
use crate::db::{Conn, Location, connect};
use crate::error::{Error, Result};
use crate::keyring::SharedKeyring;
use crate::metrics::Metrics;
use crate::time::Clock;

/// Largest batch committed at once.
const MAX_BATCH: usize = 2048;
/// Items that may wait for the writer before callers are turned away.
const QUEUE: usize = 16 * 1024;

enum Work {
    Events(Vec<Event>),
    Change(Box<Change>),
}

struct Pending {
    work: Work,
    done: oneshot::Sender<Result<Applied<Box<dyn Any + Send>>>>,
}

/// A committed change (or events alone).
pub struct Applied<T> {
    /// What the change returned.
    pub value: T,
    /// The sequence numbers of its events.
    pub seqs: Vec<i64>,
    /// Its events as committed (the leaves of the tree).
    pub events: Vec<ReceiptEvent>,
    /// The checkpoint signed for the batch it was committed in.
    pub checkpoint: Arc<Checkpoint>,
}

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Pending>,
    /// The Merkle tree, for inclusion and consistency proofs.
    pub tree: Arc<TreeCache>,
}

impl AuditLog {
    /// Opens a dedicated connection and starts the writer thread.
    pub fn start(
        loc: &Location,
        keyring: Arc<SharedKeyring>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let conn = connect(loc)?;
        let (tx, rx) = sync_channel(QUEUE);
        let writer = Writer {
            loc: loc.clone(),
            keyring,
            metrics,
            clock,
            tree: Arc::new(TreeCache::default()),
        };
        let tree = writer.tree.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(conn, rx))
            .map_err(|e| Error::Internal(format!("cannot start the audit writer: {e}")))?;
        Ok(AuditLog { tx, tree })
    }

    async fn submit(&self, work: Work) -> Result<Applied<Box<dyn Any + Send>>> {
        let (done, wait) = oneshot::channel();
        match self.tx.try_send(Pending { work, done }) {
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

    /// Records `event` and returns once it is committed to disk.
    pub async fn record(&self, event: Event) -> Result<Applied<()>> {
        let a = self.submit(Work::Events(vec![event])).await?;
        Ok(Applied {
            value: (),
            seqs: a.seqs,
            events: a.events,
            checkpoint: a.checkpoint,
        })
    }

    /// Applies `change` and its events in one transaction; returns once both
    /// are committed to disk. An `Err` from the change means it was rolled
    /// back: nothing of it happened.
    pub async fn apply<T: Send + 'static>(
        &self,
        change: impl Fn(&mut Tx<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Result<Applied<T>> {
        let boxed: Box<Change> =
            Box::new(move |tx| change(tx).map(|v| Box::new(v) as Box<dyn Any + Send>));
        let a = self.submit(Work::Change(boxed)).await?;
        Ok(Applied {
            value: ledger::downcast(a.value)?,
            seqs: a.seqs,
            events: a.events,
            checkpoint: a.checkpoint,
        })
    }
}

struct Writer {
    loc: Location,
    keyring: Arc<SharedKeyring>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    tree: Arc<TreeCache>,
}

impl Writer {
    fn run(self, mut conn: Conn, rx: Receiver<Pending>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let result = self.commit_with_retry(&mut conn, &batch);
            self.metrics.audit_commit(batch.len(), started.elapsed());
            match result {
                Ok(committed) => {
                    self.tree
                        .extend(committed.checkpoint.size, &committed.leaves);
                    let checkpoint = Arc::new(committed.checkpoint);
                    // Each item's events are the next ones of the batch, in
                    // order: handed over, not copied.
                    let mut appended = committed.events.into_iter();
                    for (p, done) in batch.drain(..).zip(committed.items) {
                        let events = appended.by_ref().take(done.seqs.len()).collect();
                        let answer = done.value.map(|value| Applied {
                            value,
                            seqs: done.seqs,
                            events,
                            checkpoint: checkpoint.clone(),
                        });
                        if let Err(Error::Integrity(_)) = &answer {
                            self.metrics.integrity_violation();
                        }
                        let _ = p.done.send(answer);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, items = batch.len(), "audit commit failed");
                    for p in batch.drain(..) {
                        let _ = p
                            .done
                            .send(Err(Error::Audit("could not record the event".into())));
                    }
                }
            }
        }
    }

    /// Commits, retrying transient failures (a lost connection is re-opened,
    /// a rotation made by another process is picked up).
    fn commit_with_retry(&self, conn: &mut Conn, batch: &[Pending]) -> Result<ledger::Committed> {
        let items: Vec<Item<'_>> = batch
            .iter()
            .map(|p| match &p.work {
                Work::Events(e) => Item::Events(e),
                Work::Change(c) => Item::Change(&**c),
            })
            .collect();
        let mut delay = Duration::from_millis(10);
        let mut last = None;
        for _ in 0..5 {
            let ring = self.keyring.get();
            match ledger::commit_batch(conn, &ring, self.clock.now_ms(), &items) {
                Ok(c) => return Ok(c),
                Err(Error::StaleKeyring(v)) => {
                    if let Err(e) = self.keyring.for_version(v) {
                        last = Some(e);
                        std::thread::sleep(delay);
                        delay *= 2;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit commit failed; retrying");
                    last = Some(e);
                    std::thread::sleep(delay);
                    delay *= 2;
                    if let Ok(c) = connect(&self.loc) {
                        *conn = c;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Audit("no attempt made".into())))
    }
}
