//! The server's copy of the whole Merkle tree, for inclusion and
//! consistency proofs. Built from the stored events on first use (a million
//! events take about a second and 64 MB), then kept current by the writer
//! thread with the leaves it commits; leaves appended by another server of
//! a pool are read back from the store when a proof needs them.
//!
//! The tree is rebuilt from the events themselves, never from stored
//! hashes: if someone edits an event in the database, the proofs the server
//! hands out stop matching the checkpoints it signed, and every receipt
//! check or witness sees it.

use std::sync::Mutex;

use diesel::prelude::*;
use medseal_keyserver_api::merkle::Hash;

use super::Record;
use super::ledger::leaf_event;
use super::tree::Tree;
use crate::db::Conn;
use crate::db::schema::{audit_events, audit_head};
use crate::error::{Error, Result};

/// A lazily built, shared tree.
#[derive(Default)]
pub struct TreeCache {
    tree: Mutex<Tree>,
}

impl TreeCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.tree
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the leaves of a batch that made the tree `new_size` long, if the
    /// cache is exactly where that batch started (otherwise it catches up
    /// from the store when next asked).
    ///
    /// The writer calls this after every commit and must never wait behind
    /// a proof or a rebuild: if the tree is busy, the leaves are left for
    /// the next catch-up to read from the store.
    pub fn extend(&self, new_size: u64, leaves: &[Hash]) {
        let Ok(mut t) = self.tree.try_lock() else {
            return;
        };
        if t.len() + leaves.len() as u64 == new_size {
            for l in leaves {
                t.push(*l);
            }
        }
    }

    /// Runs `f` on a tree of at least `size` leaves, reading missing leaves
    /// from the store first (through a connection from `conn`, asked for
    /// only then).
    pub fn with_size<T, C: std::ops::DerefMut<Target = Conn>>(
        &self,
        conn: impl FnOnce() -> Result<C>,
        size: u64,
        f: impl FnOnce(&Tree) -> T,
    ) -> Result<T> {
        let mut t = self.lock();
        if t.len() < size {
            let mut c = conn()?;
            // Never past what the store holds: a request for a larger tree
            // (anyone may ask) reads nothing.
            let head: i64 = audit_head::table.select(audit_head::seq).first(&mut *c)?;
            if size > head.max(0) as u64 {
                return Err(Error::NotFound(format!(
                    "the log has fewer than {size} events"
                )));
            }
            catch_up(&mut c, &mut t, size)?;
        }
        Ok(f(&t))
    }

    /// The inclusion proof of event `seq` in the tree of `size` events.
    pub fn inclusion<C: std::ops::DerefMut<Target = Conn>>(
        &self,
        conn: impl FnOnce() -> Result<C>,
        seq: u64,
        size: u64,
    ) -> Result<Vec<Hash>> {
        if seq == 0 || seq > size {
            return Err(Error::Invalid(format!(
                "event {seq} is not in a log of {size} events"
            )));
        }
        self.with_size(conn, size, |t| t.inclusion_proof(seq - 1, size))?
            .ok_or_else(|| Error::NotFound(format!("the log has fewer than {size} events")))
    }

    /// The consistency proof between the trees of `from` and `to` events.
    pub fn consistency<C: std::ops::DerefMut<Target = Conn>>(
        &self,
        conn: impl FnOnce() -> Result<C>,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>> {
        if from == 0 || from > to {
            return Err(Error::Invalid(
                "give 0 < from ≤ to for a consistency proof".into(),
            ));
        }
        self.with_size(conn, to, |t| t.consistency_proof(from, to))?
            .ok_or_else(|| Error::NotFound(format!("the log has fewer than {to} events")))
    }
}

/// Reads events after the tree's end from the store until it holds `size`
/// leaves (or the store has no more).
pub fn catch_up(conn: &mut Conn, t: &mut Tree, size: u64) -> Result<()> {
    const PAGE: i64 = 5000;
    while t.len() < size {
        let from = t.len() as i64;
        let page: Vec<Record> = audit_events::table
            .filter(audit_events::seq.gt(from))
            .order(audit_events::seq.asc())
            .limit(PAGE)
            .select(Record::as_select())
            .load(conn)?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            if r.seq as u64 != t.len() + 1 {
                return Err(Error::Integrity(format!(
                    "audit event {} is missing",
                    t.len() + 1
                )));
            }
            t.push(leaf_event(r).leaf_hash());
        }
    }
    Ok(())
}
