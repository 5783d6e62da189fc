//! The one way state changes reach the store: **a change and its audit
//! events commit in one transaction, or neither does.**
//!
//! A [`Change`] is a closure that reads and writes through a [`Tx`] and
//! records the events that describe what it did. [`commit_batch`] runs a
//! batch of changes in a single write transaction:
//!
//! 1. lock the head row (SQLite's write lock, PostgreSQL's row lock), read
//!    the chain head, the Merkle frontier and the store's current master-key
//!    version;
//! 2. run each change inside its own savepoint — a change that fails is
//!    rolled back alone, with its events, and its caller is told it failed;
//! 3. chain, hash and insert every recorded event, advance the frontier,
//!    sign a checkpoint of the new tree, store it and the new head;
//! 4. commit (fsync). Only then does any caller learn that its change
//!    happened.
//!
//! A failure in step 4 means that nothing of the batch happened, which is
//! what every caller is told. Changes are `Fn` so that a batch whose commit
//! failed for a transient reason (a lost connection) can be run again from
//! the start; a change therefore takes every random value (key material,
//! ids) from outside, so a re-run cannot create a second object.
//!
//! The HTTP server runs batches on its writer thread ([`super::writer`]),
//! many requests to one fsync; admin commands run a batch of one.

use std::any::Any;

use diesel::prelude::*;
use medseal_format::Key;
use medseal_keyserver_api::merkle::Hash;
use medseal_keyserver_api::transparency::{Checkpoint, ReceiptEvent};

use super::frontier::Frontier;
use super::{Event, Record, chain};
use crate::db::Conn;
use crate::db::schema::{audit_checkpoints, audit_events, audit_head};
use crate::error::{Error, Result};
use crate::keyring::Keyring;

/// What a change sees: the transaction's connection, the keyring, the
/// batch's clock, and where its events go.
pub struct Tx<'a> {
    /// The connection, inside the batch's transaction (and the change's
    /// savepoint).
    pub conn: &'a mut Conn,
    /// The master keyring (it knows [`Tx::kek_version`]).
    pub ring: &'a Keyring,
    /// The batch's time, UTC ms: every change and event of a batch share it.
    pub now: i64,
    kek_version: u32,
    events: Vec<Event>,
}

impl Tx<'_> {
    /// Records an event; it commits with the change or not at all.
    pub fn record(&mut self, event: Event) {
        self.events.push(event);
    }

    /// The master-key version new data keys are wrapped under, as the
    /// store says inside this transaction — so a rotation that committed
    /// before this batch is always honoured.
    pub fn kek_version(&self) -> u32 {
        self.kek_version
    }

    /// Wraps a new data key under [`Tx::kek_version`].
    pub fn wrap(&self, key_id: &str, key: &Key) -> Result<(u32, Vec<u8>)> {
        self.ring.wrap_as(self.kek_version, key_id, key)
    }

    /// The key of the state MACs.
    pub fn state_key(&self) -> &[u8; 32] {
        self.ring.state_key()
    }
}

/// A change: reads and writes through the [`Tx`], returns what its caller
/// should be told. An `Err` rolls the change back, events and all.
pub type Change = dyn Fn(&mut Tx<'_>) -> Result<Box<dyn Any + Send>> + Send + Sync;

/// One item of a batch: a change (with the events it records), or events
/// alone (a key released, a request refused).
pub enum Item<'a> {
    /// Run this change.
    Change(&'a Change),
    /// Record these events.
    Events(&'a [Event]),
}

/// What one item came to.
pub struct Done {
    /// The change's value (`()` for events alone), or why it was rolled back.
    pub value: Result<Box<dyn Any + Send>>,
    /// Its events' sequence numbers (none if rolled back).
    pub seqs: Vec<i64>,
}

/// What a committed batch came to.
pub struct Committed {
    /// Per item, in order.
    pub items: Vec<Done>,
    /// The events appended, in order, as the tree's leaves (what receipts
    /// carry).
    pub events: Vec<ReceiptEvent>,
    /// Their leaf hashes.
    pub leaves: Vec<Hash>,
    /// The checkpoint signed for the new tree.
    pub checkpoint: Checkpoint,
}

/// Longest text kept in an event field; longer values (which only a
/// refused request can carry) are cut.
const FIELD_MAX: usize = 256;
/// Longest detail kept.
const DETAIL_MAX: usize = 8192;

/// An event field as stored: control characters (a NUL, which PostgreSQL
/// refuses in text and which would fail the whole batch, a line break that
/// would forge a line in an export) become U+FFFD, and the text is cut at
/// `max` bytes on a character boundary. Events record what a client sent,
/// so this is the one place hostile text is made safe to store.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() { '\u{fffd}' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// The head row.
pub(crate) struct Head {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub kek_current: i32,
    pub frontier: Vec<u8>,
}

/// Locks and reads the head row (must be the transaction's first statement,
/// so that SQLite takes its write lock before reading anything).
pub(crate) fn lock_head(c: &mut Conn) -> Result<Head> {
    diesel::update(audit_head::table)
        .set(audit_head::seq.eq(audit_head::seq))
        .execute(c)?;
    let (seq, hash, kek_current, frontier) = audit_head::table
        .select((
            audit_head::seq,
            audit_head::hash,
            audit_head::kek_current,
            audit_head::frontier,
        ))
        .first(c)?;
    Ok(Head {
        seq,
        hash,
        kek_current,
        frontier,
    })
}

/// The event of a record, as a leaf of the tree.
pub fn leaf_event(r: &Record) -> ReceiptEvent {
    ReceiptEvent {
        seq: r.seq as u64,
        at_ms: r.at,
        actor: r.actor.clone(),
        org: r.org.clone(),
        action: r.action.clone(),
        key_id: r.key_id.clone(),
        report_id: r.report_id.clone(),
        client_ip: r.client_ip.clone(),
        device_id: r.device_id.clone(),
        outcome: r.outcome.clone(),
        detail: r.detail.clone(),
    }
}

/// Runs `items` and appends their events in one transaction; see the
/// module documentation.
pub fn commit_batch(
    conn: &mut Conn,
    ring: &Keyring,
    now: i64,
    items: &[Item<'_>],
) -> Result<Committed> {
    conn.transaction::<_, Error, _>(|c| {
        let head = lock_head(c)?;
        let mut kek_version = match u32::try_from(head.kek_current) {
            Ok(0) | Err(_) => ring.current_version(),
            Ok(v) => v,
        };
        if !ring.has_version(kek_version) {
            return Err(Error::StaleKeyring(kek_version));
        }
        let mut done = Vec::with_capacity(items.len());
        let mut events: Vec<Event> = Vec::new();
        let mut counts = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Events(evs) => {
                    events.extend_from_slice(evs);
                    counts.push(evs.len());
                    done.push(Ok(Box::new(()) as Box<dyn Any + Send>));
                }
                Item::Change(change) => {
                    let r = c.transaction::<_, Error, _>(|c| {
                        let mut tx = Tx {
                            conn: c,
                            ring,
                            now,
                            kek_version,
                            events: Vec::new(),
                        };
                        let v = change(&mut tx)?;
                        Ok((v, tx.events, tx.kek_version))
                    });
                    match r {
                        Ok((v, evs, kek)) => {
                            kek_version = kek;
                            counts.push(evs.len());
                            events.extend(evs);
                            done.push(Ok(v));
                        }
                        Err(e) => {
                            counts.push(0);
                            done.push(Err(e));
                        }
                    }
                }
            }
        }
        let mut frontier = Frontier::decode(head.seq as u64, &head.frontier)?;
        let (mut seq, mut prev) = (head.seq, head.hash);
        let mut records = Vec::with_capacity(events.len());
        let mut leaves = Vec::with_capacity(events.len());
        let mut appended = Vec::with_capacity(events.len());
        for e in &events {
            seq += 1;
            let mut r = Record {
                seq,
                at: now,
                actor: clean(&e.actor, FIELD_MAX),
                org: clean(&e.org, FIELD_MAX),
                action: e.action.as_str().to_owned(),
                key_id: e.key_id.as_deref().map(|v| clean(v, FIELD_MAX)),
                report_id: e.report_id.as_deref().map(|v| clean(v, FIELD_MAX)),
                client_ip: e.client_ip.as_deref().map(|v| clean(v, FIELD_MAX)),
                device_id: e.device_id.as_deref().map(|v| clean(v, FIELD_MAX)),
                outcome: e.outcome.as_str().to_owned(),
                detail: clean(&e.detail, DETAIL_MAX),
                prev_hash: prev.clone(),
                hash: Vec::new(),
            };
            r.hash = chain::link(ring.audit_key(), &prev, &r).to_vec();
            prev.clone_from(&r.hash);
            let event = leaf_event(&r);
            let leaf = event.leaf_hash();
            frontier.push(leaf);
            leaves.push(leaf);
            appended.push(event);
            records.push(r);
        }
        // Bounded statements stay under the backends' parameter limits.
        for part in records.chunks(256) {
            crate::on_backend!(&mut *c, |c| diesel::insert_into(audit_events::table)
                .values(part)
                .execute(c))?;
        }
        let size = frontier.size();
        let root = frontier.root();
        let signature = ring.sign_checkpoint(&Checkpoint::message(size, &root, now));
        let checkpoint = Checkpoint::new(size, &root, now, &signature);
        if !records.is_empty() {
            diesel::insert_into(audit_checkpoints::table)
                .values((
                    audit_checkpoints::size.eq(size as i64),
                    audit_checkpoints::root.eq(root.to_vec()),
                    audit_checkpoints::at.eq(now),
                    audit_checkpoints::signature.eq(signature.to_vec()),
                ))
                .execute(c)?;
        }
        diesel::update(audit_head::table)
            .set((
                audit_head::seq.eq(seq),
                audit_head::hash.eq(&prev),
                audit_head::frontier.eq(frontier.encode()),
                audit_head::kek_current.eq(kek_version as i32),
            ))
            .execute(c)?;
        // Sequence numbers per item, in the order their events were added.
        let mut next = head.seq;
        let items = done
            .into_iter()
            .zip(counts)
            .map(|(value, n)| {
                let seqs = (next + 1..=next + n as i64).collect();
                next += n as i64;
                Done { value, seqs }
            })
            .collect();
        Ok(Committed {
            items,
            events: appended,
            leaves,
            checkpoint,
        })
    })
}

/// Sets the master-key version that new data keys are wrapped under, in
/// the same transaction as its event (a change for [`commit_batch`]).
pub fn set_kek_version(tx: &mut Tx<'_>, version: u32) -> Result<()> {
    if !tx.ring.has_version(version) {
        return Err(Error::StaleKeyring(version));
    }
    diesel::update(audit_head::table)
        .set(audit_head::kek_current.eq(version as i32))
        .execute(tx.conn)?;
    tx.kek_version = version;
    Ok(())
}

/// Runs one change as its own batch (admin commands) and returns its value.
pub fn commit_one<T: Send + 'static>(
    conn: &mut Conn,
    ring: &Keyring,
    now: i64,
    change: impl Fn(&mut Tx<'_>) -> Result<T> + Send + Sync + 'static,
) -> Result<T> {
    let boxed: Box<Change> =
        Box::new(move |tx| change(tx).map(|v| Box::new(v) as Box<dyn Any + Send>));
    let mut out = commit_batch(conn, ring, now, &[Item::Change(&*boxed)])?;
    let done = out
        .items
        .pop()
        .ok_or_else(|| Error::Internal("a batch lost its item".into()))?;
    downcast(done.value?)
}

/// Recovers a change's typed value.
pub fn downcast<T: 'static>(v: Box<dyn Any + Send>) -> Result<T> {
    v.downcast::<T>()
        .map(|b| *b)
        .map_err(|_| Error::Internal("a change answered with the wrong type".into()))
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn clean_replaces_control_characters_and_bounds_length() {
        assert_eq!(clean("k_\0\n=1", 64), "k_\u{fffd}\u{fffd}=1");
        assert_eq!(clean("ééé", 5), "éé", "cut on a character boundary");
        assert_eq!(clean("plain text", 64), "plain text");
    }
}
