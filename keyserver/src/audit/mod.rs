//! The audit log: one append-only, hash-chained event per security-relevant
//! action, durable before the answer it records is sent.
//!
//! - [`chain`]: how each event's hash binds it to the one before.
//! - [`writer`]: group commit — many requests' events in one fsynced
//!   transaction, each request answered only after its event is committed.
//! - this module: the event types, appending, verifying and exporting.

pub mod chain;
pub mod frontier;
pub mod ledger;
pub mod proofs;
pub mod state;
pub mod tree;
pub mod writer;

use diesel::prelude::*;
use serde::Serialize;

use medseal_keyserver_api::transparency::Checkpoint;

use crate::db::Conn;
use crate::db::schema::{audit_checkpoints, audit_events, audit_head};
use crate::error::{Error, Result};
use crate::keyring::Keyring;
use crate::time::{now_ms, rfc3339};

pub use ledger::Tx;
pub use writer::{Applied, AuditLog};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A session was created (login succeeded).
    SessionCreated,
    /// A login failed.
    SessionFailed,
    /// An account was locked after repeated failures.
    SessionLocked,
    /// A session was ended by its holder.
    SessionEnded,
    /// A token was presented from another device and revoked.
    SessionDeviceMismatch,
    /// A data key was created.
    KeyCreated,
    /// A data key was released to a caller.
    KeyFetched,
    /// A key request was refused.
    KeyDenied,
    /// A data key was revoked.
    KeyRevoked,
    /// Recipients were added to a key.
    RecipientsAdded,
    /// A key was given a new expiry (or none).
    KeyExpiryChanged,
    /// Staff asked whether addresses could open a report before sealing
    /// (reveals whether they have accounts here, so it is recorded).
    RecipientsChecked,
    /// An organisation was created.
    OrgCreated,
    /// A user was created.
    UserCreated,
    /// A user was disabled.
    UserDisabled,
    /// A disabled or locked-out user was let in again.
    UserEnabled,
    /// A user's role was changed.
    UserRoleChanged,
    /// A user's password was set by an administrator.
    UserPasswordChanged,
    /// Every session of a user was ended by an administrator.
    UserSessionsEnded,
    /// An administrative call was refused (not an admin, or not of the
    /// user's organisation).
    AdminDenied,
    /// The master key was rotated.
    MasterKeyRotated,
    /// The audit log was read or exported.
    AuditRead,
    /// The database was restored from a backup.
    Restored,
    /// Old master-key versions were retired after a rotation.
    MasterKeyRetired,
    /// A row failed its integrity check and was not acted on.
    IntegrityViolation,
    /// Rows written before state MACs existed were bound to the keyring.
    StateBound,
    /// An organisation's settings were changed.
    OrgUpdated,
    /// A share link was made (sealed bytes stored for download).
    DropCreated,
    /// A share link's sealed bytes were downloaded.
    DropDownloaded,
    /// An expired share link's bytes were deleted.
    DropPurged,
    /// A sign-in code was mailed (success), or not, and why (denied).
    CodeSent,
    /// A sign-in code was used to open a session.
    CodeUsed,
    /// A sign-in code was wrong, dead or missing.
    CodeRefused,
    /// A sign-in code expired unused.
    CodeExpired,
    /// A sign-in through the organisation's OpenID Provider: success, or
    /// refused with the reason.
    SsoLogin,
}

impl Action {
    /// The stable name stored in the log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::SessionCreated => "session.created",
            Action::SessionFailed => "session.failed",
            Action::SessionLocked => "session.locked",
            Action::SessionEnded => "session.ended",
            Action::SessionDeviceMismatch => "session.device_mismatch",
            Action::KeyCreated => "key.created",
            Action::KeyFetched => "key.fetched",
            Action::KeyDenied => "key.denied",
            Action::KeyRevoked => "key.revoked",
            Action::RecipientsAdded => "key.recipients_added",
            Action::KeyExpiryChanged => "key.expiry_changed",
            Action::RecipientsChecked => "recipients.checked",
            Action::OrgCreated => "org.created",
            Action::UserCreated => "user.created",
            Action::UserDisabled => "user.disabled",
            Action::UserEnabled => "user.enabled",
            Action::UserRoleChanged => "user.role_changed",
            Action::UserPasswordChanged => "user.password_changed",
            Action::UserSessionsEnded => "user.sessions_ended",
            Action::AdminDenied => "admin.denied",
            Action::MasterKeyRotated => "master_key.rotated",
            Action::AuditRead => "audit.read",
            Action::Restored => "keyserver.restored",
            Action::MasterKeyRetired => "master_key.retired",
            Action::IntegrityViolation => "integrity.violation",
            Action::StateBound => "keyserver.state_bound",
            Action::OrgUpdated => "org.updated",
            Action::DropCreated => "drop.created",
            Action::DropDownloaded => "drop.downloaded",
            Action::DropPurged => "drop.purged",
            Action::CodeSent => "code.sent",
            Action::CodeUsed => "code.used",
            Action::CodeRefused => "code.refused",
            Action::CodeExpired => "code.expired",
            Action::SsoLogin => "sso.login",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused by policy or credentials.
    Denied,
    /// Failed for another reason.
    Failure,
}

impl Outcome {
    /// The stable name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// An event before it has a place in the chain.
#[derive(Debug, Clone)]
pub struct Event {
    /// Who acted: an e-mail address, `admin-cli`, or `anonymous`.
    pub actor: String,
    /// The organisation the event belongs to (a key's owner for key events).
    pub org: String,
    /// What happened.
    pub action: Action,
    /// The key concerned, if any.
    pub key_id: Option<String>,
    /// The report concerned, if any.
    pub report_id: Option<String>,
    /// The client's IP address, for HTTP requests.
    pub client_ip: Option<String>,
    /// The client's device id, for HTTP requests.
    pub device_id: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Free text: why it was denied, what changed. Never a secret.
    pub detail: String,
}

impl Event {
    /// An event with only the required fields set.
    pub fn new(actor: &str, org: &str, action: Action, outcome: Outcome) -> Self {
        Event {
            actor: actor.to_owned(),
            org: org.to_owned(),
            action,
            key_id: None,
            report_id: None,
            client_ip: None,
            device_id: None,
            outcome,
            detail: String::new(),
        }
    }

    /// Sets the key and report the event is about.
    pub fn about(mut self, key_id: Option<String>, report_id: Option<String>) -> Self {
        self.key_id = key_id;
        self.report_id = report_id;
        self
    }

    /// Sets the detail text.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = d.into();
        self
    }
}

/// Who is acting, as every event they cause records it.
#[derive(Debug, Clone)]
pub struct Actor {
    /// An e-mail address, `admin-cli:<os user>`, or `anonymous`.
    pub name: String,
    /// The client's IP address, for HTTP requests.
    pub client_ip: Option<String>,
    /// The client's device id, for HTTP requests.
    pub device_id: Option<String>,
}

impl Actor {
    /// An actor without a network address (the admin command line).
    pub fn local(name: impl Into<String>) -> Self {
        Actor {
            name: name.into(),
            client_ip: None,
            device_id: None,
        }
    }

    /// An event by this actor about something owned by `org`.
    pub fn event(&self, org: &str, action: Action, outcome: Outcome) -> Event {
        let mut e = Event::new(&self.name, org, action, outcome);
        e.client_ip.clone_from(&self.client_ip);
        e.device_id.clone_from(&self.device_id);
        e
    }
}

/// A stored event (also a row of a backup's `audit_events.jsonl`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, serde::Deserialize)]
#[diesel(table_name = audit_events)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// UTC milliseconds.
    pub at: i64,
    /// See [`Event::actor`].
    pub actor: String,
    /// See [`Event::org`].
    pub org: String,
    /// See [`Action::as_str`].
    pub action: String,
    /// See [`Event::key_id`].
    pub key_id: Option<String>,
    /// See [`Event::report_id`].
    pub report_id: Option<String>,
    /// See [`Event::client_ip`].
    pub client_ip: Option<String>,
    /// See [`Event::device_id`].
    pub device_id: Option<String>,
    /// See [`Outcome::as_str`].
    pub outcome: String,
    /// See [`Event::detail`].
    pub detail: String,
    /// The previous event's hash.
    #[serde(with = "crate::dump::hex_bytes")]
    pub prev_hash: Vec<u8>,
    /// This event's hash.
    #[serde(with = "crate::dump::hex_bytes")]
    pub hash: Vec<u8>,
}

/// Appends `events` as a batch of their own (admin commands, restore) and
/// returns their sequence numbers.
pub fn append(conn: &mut Conn, ring: &Keyring, events: &[Event]) -> Result<Vec<i64>> {
    let out = ledger::commit_batch(conn, ring, now_ms(), &[ledger::Item::Events(events)])?;
    Ok(out.items.into_iter().flat_map(|d| d.seqs).collect())
}

/// The latest signed checkpoint in the store (a malformed row comes out as
/// a checkpoint that does not verify).
pub fn latest_checkpoint(conn: &mut Conn) -> Result<Option<Checkpoint>> {
    let row: Option<(i64, Vec<u8>, i64, Vec<u8>)> = audit_checkpoints::table
        .order(audit_checkpoints::size.desc())
        .select((
            audit_checkpoints::size,
            audit_checkpoints::root,
            audit_checkpoints::at,
            audit_checkpoints::signature,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(size, root, at, sig)| {
        let root = <[u8; 32]>::try_from(root.as_slice()).unwrap_or([0; 32]);
        let sig = <[u8; 64]>::try_from(sig.as_slice()).unwrap_or([0; 64]);
        Checkpoint::new(size as u64, &root, at, &sig)
    }))
}

/// Makes a store ready for this version once its keyring is known: fills
/// the Merkle frontier of a log written before there was one (from the
/// events themselves), and binds rows written before state MACs.
pub fn prepare_store(conn: &mut Conn, ring: &Keyring) -> Result<()> {
    conn.transaction::<_, Error, _>(|c| {
        let head = ledger::lock_head(c)?;
        if head.seq > 0 && head.frontier.is_empty() {
            let mut f = frontier::Frontier::empty();
            let mut last = 0i64;
            loop {
                let page: Vec<Record> = audit_events::table
                    .filter(audit_events::seq.gt(last))
                    .filter(audit_events::seq.le(head.seq))
                    .order(audit_events::seq.asc())
                    .limit(10_000)
                    .select(Record::as_select())
                    .load(c)?;
                let Some(tail) = page.last() else { break };
                last = tail.seq;
                for r in &page {
                    f.push(ledger::leaf_event(r).leaf_hash());
                }
            }
            if f.size() != head.seq as u64 {
                return Err(Error::Integrity(format!(
                    "the log ends at event {} but {} events were recorded",
                    f.size(),
                    head.seq
                )));
            }
            diesel::update(audit_head::table)
                .set(audit_head::frontier.eq(f.encode()))
                .execute(c)?;
        }
        Ok(())
    })?;
    ledger::commit_one(
        conn,
        ring,
        now_ms(),
        crate::ops::bind_store(Actor::local("keyserver")),
    )?;
    Ok(())
}

/// Whether the newest event was sealed with `audit_key`: `None` for a store
/// without events, so that a keyring can be matched to its store before
/// anything is written with the wrong one. (A missing newest row is the
/// business of [`verify`], and answers `Some(true)` here.)
pub fn sealed_with(conn: &mut Conn, audit_key: &[u8; 32]) -> Result<Option<bool>> {
    let (seq, _): (i64, Vec<u8>) = audit_head::table
        .select((audit_head::seq, audit_head::hash))
        .first(conn)?;
    if seq == 0 {
        return Ok(None);
    }
    let newest: Option<Record> = audit_events::table
        .filter(audit_events::seq.eq(seq))
        .select(Record::as_select())
        .first(conn)
        .optional()?;
    Ok(Some(newest.is_none_or(|r| {
        chain::link(audit_key, &r.prev_hash, &r).as_slice() == r.hash.as_slice()
    })))
}

/// The result of checking the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Events that verified before the first break (all of them if intact).
    pub verified: i64,
    /// The first problem found, if any.
    pub broken: Option<Broken>,
    /// The store's latest signed checkpoint, if it verified.
    pub checkpoint: Option<Checkpoint>,
}

/// Where and how the log breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first sequence number at which the log is not intact (0 when the
    /// problem is in the current state rather than in an event).
    pub seq: i64,
    /// What is wrong there.
    pub reason: String,
}

/// Checks everything the keyring can check, and stops at the first problem:
///
/// - the hash chain: an edited row (its hash does not match), a deleted row
///   (a gap, or a head that points past the last row), reordered rows;
/// - the Merkle tree: every stored checkpoint's root is the root of the
///   events up to its size, the latest checkpoint's signature verifies, and
///   the stored frontier is the tree's;
/// - against `external`, a checkpoint saved elsewhere (by a witness, or
///   from a receipt): the store must still hold a log of at least that size
///   whose tree at that size has that root — so a cut tail or a rollback
///   shows even when the head and checkpoints were rewritten to match;
/// - the state: every key, user and session row carries a valid state MAC,
///   and keys, recipients, revocations, users, roles and organisations are
///   exactly what the events say ([`state`]).
///
/// Everything is read in one read transaction (REPEATABLE READ on
/// PostgreSQL; one read snapshot on SQLite), so a server writing meanwhile
/// never makes a consistent store look broken. `with_state` off checks the
/// log alone (a backup must not be refused for what the log says about the
/// rows).
pub fn verify(
    conn: &mut Conn,
    ring: &Keyring,
    external: Option<&Checkpoint>,
    with_state: bool,
) -> Result<Verification> {
    conn.transaction::<_, Error, _>(|c| {
        if let Conn::Postgresql(_) = c {
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(c)?;
        }
        verify_snapshot(c, ring, external, with_state)
    })
}

fn verify_snapshot(
    conn: &mut Conn,
    ring: &Keyring,
    external: Option<&Checkpoint>,
    with_state: bool,
) -> Result<Verification> {
    const PAGE: i64 = 10_000;
    let public_key = ring.checkpoint_public_key();
    let external = match external {
        Some(c) => Some((
            c.size,
            c.verify(&public_key).map_err(|e| {
                Error::Invalid(format!(
                    "the checkpoint given was not signed by this store's keyring ({e})"
                ))
            })?,
        )),
        None => None,
    };
    let stored_checkpoints: Vec<(i64, Vec<u8>)> = audit_checkpoints::table
        .order(audit_checkpoints::size.asc())
        .select((audit_checkpoints::size, audit_checkpoints::root))
        .load(conn)?;
    let latest = latest_checkpoint(conn)?;
    let mut next_checkpoint = stored_checkpoints.iter().peekable();
    let mut expected_seq = 1i64;
    let mut prev = chain::GENESIS.to_vec();
    let mut last = 0i64;
    let mut frontier = frontier::Frontier::empty();
    let mut replay = state::Replay::default();
    let mut binds = 0u32;
    let at = |verified: i64, seq: i64, reason: String| Verification {
        verified,
        broken: Some(Broken { seq, reason }),
        checkpoint: None,
    };
    loop {
        let page: Vec<Record> = audit_events::table
            .filter(audit_events::seq.gt(last))
            .order(audit_events::seq.asc())
            .limit(PAGE)
            .select(Record::as_select())
            .load(conn)?;
        for r in &page {
            let v = expected_seq - 1;
            if r.seq != expected_seq {
                return Ok(at(
                    v,
                    expected_seq.min(r.seq),
                    format!("event {expected_seq} is missing (next is {})", r.seq),
                ));
            }
            if r.prev_hash != prev {
                return Ok(at(
                    v,
                    r.seq,
                    format!("event {} does not follow event {}", r.seq, r.seq - 1),
                ));
            }
            if chain::link(ring.audit_key(), &prev, r).as_slice() != r.hash.as_slice() {
                return Ok(at(v, r.seq, format!("event {} was altered", r.seq)));
            }
            prev.clone_from(&r.hash);
            frontier.push(ledger::leaf_event(r).leaf_hash());
            replay.apply(r);
            if r.action == Action::StateBound.as_str() {
                binds += 1;
            }
            let size = r.seq;
            while let Some((cs, root)) = next_checkpoint.peek() {
                if *cs > size {
                    break;
                }
                if *cs == size && root.as_slice() != frontier.root().as_slice() {
                    return Ok(at(
                        size,
                        size,
                        format!("the checkpoint of {size} events does not match them"),
                    ));
                }
                next_checkpoint.next();
            }
            if let Some((es, root)) = external
                && es == size as u64
                && root != frontier.root()
            {
                return Ok(at(
                    size,
                    size,
                    format!(
                        "the log of {size} events is not the one the given checkpoint describes (rewritten history)"
                    ),
                ));
            }
            expected_seq += 1;
        }
        match page.last() {
            Some(r) if page.len() as i64 == PAGE => last = r.seq,
            _ => break,
        }
    }
    let verified = expected_seq - 1;
    let (head_seq, head_hash, head_frontier, bound): (i64, Vec<u8>, Vec<u8>, bool) =
        audit_head::table
            .select((
                audit_head::seq,
                audit_head::hash,
                audit_head::frontier,
                audit_head::state_bound,
            ))
            .first(conn)?;
    if head_seq != verified || head_hash != prev {
        return Ok(at(
            verified,
            verified + 1,
            format!("the log ends at event {verified} but {head_seq} events were recorded"),
        ));
    }
    if let Some((es, _)) = external
        && es > verified as u64
    {
        return Ok(at(
            verified,
            verified + 1,
            format!(
                "the log has {verified} events, but the given checkpoint shows {es}: events were removed (truncation or rollback)"
            ),
        ));
    }
    if let Some((cs, _)) = next_checkpoint.next() {
        return Ok(at(
            verified,
            verified + 1,
            format!("a checkpoint of {cs} events is stored, but the log has {verified}"),
        ));
    }
    if verified > 0 && frontier.encode() != head_frontier && !head_frontier.is_empty() {
        return Ok(at(
            verified,
            0,
            "the stored Merkle frontier is not the tree's".into(),
        ));
    }
    if let Some(c) = &latest
        && c.verify(&public_key).is_err()
    {
        return Ok(at(
            verified,
            c.size as i64,
            format!(
                "the checkpoint of {} events is not signed by this keyring",
                c.size
            ),
        ));
    }
    if with_state {
        if binds > 1 || (binds == 1 && !bound) {
            return Ok(at(
                verified,
                0,
                "the store's binding to its keyring was reset outside the key server".into(),
            ));
        }
        if binds == 0 && !bound {
            return Ok(at(
                verified,
                0,
                "this store was written by an earlier version and is not yet bound to its keyring: start the server or run any admin change once".into(),
            ));
        }
        if let Some(why) = crate::integrity::check_all(conn, ring.state_key())? {
            return Ok(at(verified, 0, why));
        }
        if let Some(why) = replay.compare(conn)? {
            return Ok(at(verified, 0, why));
        }
    }
    Ok(Verification {
        verified,
        broken: None,
        checkpoint: latest,
    })
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events about this key.
    pub key_id: Option<String>,
    /// Only events about this report.
    pub report_id: Option<String>,
    /// Only events of this organisation.
    pub org: Option<String>,
    /// Only events by this actor (exact).
    pub actor: Option<String>,
    /// Only events with this action, e.g. `key.fetched`.
    pub action: Option<String>,
    /// Only events with this outcome.
    pub outcome: Option<String>,
    /// Only events at or after this time (UTC ms).
    pub since: Option<i64>,
    /// Only events before this time (UTC ms).
    pub until: Option<i64>,
    /// Only events before this sequence number (the next page of a
    /// newest-first search).
    pub before: Option<i64>,
    /// Only events after this sequence number (the next page of an
    /// oldest-first search).
    pub after: Option<i64>,
    /// Newest first (a console's page) rather than oldest first (a trail).
    pub newest_first: bool,
    /// At most this many.
    pub limit: Option<i64>,
}

impl Filter {
    /// What was searched for, as the `audit.read` event records it (no
    /// filter is left out: a search is itself part of the trail).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{name}={v}"));
            }
        };
        add("key_id", self.key_id.clone());
        add("report_id", self.report_id.clone());
        add("actor", self.actor.clone());
        add("action", self.action.clone());
        add("outcome", self.outcome.clone());
        add("since", self.since.map(rfc3339));
        add("until", self.until.map(rfc3339));
        add("before", self.before.map(|s| s.to_string()));
        add("after", self.after.map(|s| s.to_string()));
        if parts.is_empty() {
            "everything".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Where the next page of a search starts.
#[derive(Debug, Clone, Copy)]
pub enum Next {
    /// Newest first: the events before this one.
    Before(i64),
    /// Oldest first: the events after this one.
    After(i64),
}

/// Reads events matching `f`, oldest first unless `f.newest_first`.
///
/// Every filter is a column the indexes of migration 000008 lead with
/// (after the organisation), so a page is a short index walk even in a log
/// of millions of events.
pub fn query(conn: &mut Conn, f: &Filter) -> Result<Vec<Record>> {
    let mut q = audit_events::table.select(Record::as_select()).into_boxed();
    q = if f.newest_first {
        q.order(audit_events::seq.desc())
    } else {
        q.order(audit_events::seq.asc())
    };
    if let Some(k) = &f.key_id {
        q = q.filter(audit_events::key_id.eq(k.clone()));
    }
    if let Some(r) = &f.report_id {
        q = q.filter(audit_events::report_id.eq(r.clone()));
    }
    if let Some(o) = &f.org {
        q = q.filter(audit_events::org.eq(o.clone()));
    }
    if let Some(a) = &f.actor {
        q = q.filter(audit_events::actor.eq(a.clone()));
    }
    if let Some(a) = &f.action {
        q = q.filter(audit_events::action.eq(a.clone()));
    }
    if let Some(o) = &f.outcome {
        q = q.filter(audit_events::outcome.eq(o.clone()));
    }
    if let Some(t) = f.since {
        q = q.filter(audit_events::at.ge(t));
    }
    if let Some(t) = f.until {
        q = q.filter(audit_events::at.lt(t));
    }
    if let Some(s) = f.before {
        q = q.filter(audit_events::seq.lt(s));
    }
    if let Some(s) = f.after {
        q = q.filter(audit_events::seq.gt(s));
    }
    if let Some(n) = f.limit {
        q = q.limit(n);
    }
    Ok(q.load(conn)?)
}

/// How many events of each of `actions` organisation `org` has per UTC day
/// from `since` (ms): `(day number since the epoch, action, count)`.
pub fn daily_counts(
    conn: &mut Conn,
    org: &str,
    actions: &[&str],
    since: i64,
) -> Result<Vec<(i64, String, i64)>> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Text};
    // Integer division is the same on both backends; the grouping happens
    // in the database, so a busy month is not loaded row by row. (The
    // grouping is written as SQL because the day is an expression.)
    let rows = audit_events::table
        .filter(audit_events::org.eq(org))
        .filter(audit_events::action.eq_any(actions))
        .filter(audit_events::outcome.eq("success"))
        .filter(audit_events::at.ge(since))
        .group_by(sql::<(BigInt, Text)>("at / 86400000, action"))
        .select((
            sql::<BigInt>("at / 86400000"),
            sql::<Text>("action"),
            diesel::dsl::count_star(),
        ))
        .load::<(i64, String, i64)>(conn)?;
    Ok(rows)
}

/// How many events of organisation `org` with one of `actions` and an
/// outcome other than success there are from `since` (ms).
pub fn refusals_since(conn: &mut Conn, org: &str, actions: &[&str], since: i64) -> Result<i64> {
    Ok(audit_events::table
        .filter(audit_events::org.eq(org))
        .filter(audit_events::action.eq_any(actions))
        .filter(audit_events::outcome.ne("success"))
        .filter(audit_events::at.ge(since))
        .count()
        .get_result(conn)?)
}

/// An event as exported for the patient record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedEvent {
    /// Position in the chain.
    pub seq: i64,
    /// UTC time, RFC 3339.
    pub at: String,
    /// Who acted.
    pub actor: String,
    /// The organisation the event belongs to.
    pub org: String,
    /// What happened, e.g. `key.fetched`.
    pub action: String,
    /// The key concerned.
    pub key_id: Option<String>,
    /// The report concerned.
    pub report_id: Option<String>,
    /// Where the request came from.
    pub client_ip: Option<String>,
    /// The device that made the request.
    pub device_id: Option<String>,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    /// Why, or what changed.
    pub detail: String,
    /// The event's chain hash, hex.
    pub hash: String,
}

impl From<&Record> for ExportedEvent {
    fn from(r: &Record) -> Self {
        ExportedEvent {
            seq: r.seq,
            at: rfc3339(r.at),
            actor: r.actor.clone(),
            org: r.org.clone(),
            action: r.action.clone(),
            key_id: r.key_id.clone(),
            report_id: r.report_id.clone(),
            client_ip: r.client_ip.clone(),
            device_id: r.device_id.clone(),
            outcome: r.outcome.clone(),
            detail: r.detail.clone(),
            hash: hex::encode(&r.hash),
        }
    }
}

/// A CSV cell that a spreadsheet would run as a formula (OWASP "CSV
/// injection": a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) is prefixed with `'`, which spreadsheets show as text.
fn csv_safe(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

impl ExportedEvent {
    /// The event with every text cell safe to open in a spreadsheet.
    fn for_spreadsheet(&self) -> ExportedEvent {
        let opt = |v: &Option<String>| v.as_deref().map(csv_safe);
        ExportedEvent {
            seq: self.seq,
            at: csv_safe(&self.at),
            actor: csv_safe(&self.actor),
            org: csv_safe(&self.org),
            action: csv_safe(&self.action),
            key_id: opt(&self.key_id),
            report_id: opt(&self.report_id),
            client_ip: opt(&self.client_ip),
            device_id: opt(&self.device_id),
            outcome: csv_safe(&self.outcome),
            detail: csv_safe(&self.detail),
            hash: self.hash.clone(),
        }
    }
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"events": [...]}`.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            _ => Err(Error::Invalid(format!(
                "unknown format '{s}': use json or csv"
            ))),
        }
    }
}

/// Renders events in `format`.
///
/// `org` names the organisation whose trail this is, when the export is
/// one organisation's: JSON carries it at the top, and every CSV row has its
/// own `org` cell either way, so no export can pass one organisation's
/// events off as another's.
pub fn render(
    records: &[Record],
    format: Format,
    org: Option<&str>,
    next: Option<Next>,
) -> Result<Vec<u8>> {
    let events: Vec<ExportedEvent> = records.iter().map(ExportedEvent::from).collect();
    match format {
        Format::Json => {
            let mut body = serde_json::json!({ "events": events });
            if let Some(org) = org {
                body["org"] = org.into();
            }
            match next {
                Some(Next::Before(seq)) => body["next_before"] = seq.into(),
                Some(Next::After(seq)) => body["next_after"] = seq.into(),
                None => {}
            }
            serde_json::to_vec_pretty(&body).map_err(|e| Error::Internal(e.to_string()))
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for e in &events {
                w.serialize(e.for_spreadsheet())
                    .map_err(|e| Error::Internal(e.to_string()))?;
            }
            if events.is_empty() {
                w.write_record([
                    "seq",
                    "at",
                    "actor",
                    "org",
                    "action",
                    "key_id",
                    "report_id",
                    "client_ip",
                    "device_id",
                    "outcome",
                    "detail",
                    "hash",
                ])
                .map_err(|e| Error::Internal(e.to_string()))?;
            }
            w.into_inner().map_err(|e| Error::Internal(e.to_string()))
        }
    }
}
