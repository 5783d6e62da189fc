//! The audit log: one append-only, hash-chained event per security-relevant
//! action, durable before the answer it records is sent.
//!
//! - [`chain`]: how each event's hash binds it to the one before.
//! - [`writer`]: group commit — many requests' events in one fsynced
//!   transaction, each request answered only after its event is committed.
//! - this module: the event types, appending, verifying and exporting.

pub mod chain;
pub mod writer;

use diesel::prelude::*;
use serde::Serialize;

use crate::db::Conn;
use crate::db::schema::{audit_events, audit_head};
use crate::error::{Error, Result};
use crate::time::{now_ms, rfc3339};

pub use writer::AuditLog;

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
    /// An organisation was created.
    OrgCreated,
    /// A user was created.
    UserCreated,
    /// A user was disabled.
    UserDisabled,
    /// The master key was rotated.
    MasterKeyRotated,
    /// The audit log was read or exported.
    AuditRead,
    /// The database was restored from a backup.
    Restored,
}

impl Action {
    /// The stable name stored in the log.
    pub fn as_str(self) -> &'static str {
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
            Action::OrgCreated => "org.created",
            Action::UserCreated => "user.created",
            Action::UserDisabled => "user.disabled",
            Action::MasterKeyRotated => "master_key.rotated",
            Action::AuditRead => "audit.read",
            Action::Restored => "keyserver.restored",
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

/// Appends `events` in one transaction and returns their sequence numbers.
///
/// The chain head is locked for the whole transaction — SQLite's write lock
/// (`BEGIN IMMEDIATE`), PostgreSQL's row lock on `audit_head` — so concurrent
/// writers (other servers, the admin CLI) serialise and the chain never forks
/// or skips a number.
pub fn append(conn: &mut Conn, audit_key: &[u8; 32], events: &[Event]) -> Result<Vec<i64>> {
    crate::write_tx!(conn, |c| {
        // A no-op update takes the row lock before the head is read.
        diesel::update(audit_head::table)
            .set(audit_head::seq.eq(audit_head::seq))
            .execute(c)?;
        let (mut seq, mut prev): (i64, Vec<u8>) = audit_head::table
            .select((audit_head::seq, audit_head::hash))
            .first(c)?;
        let rows = build_records(audit_key, &mut seq, &mut prev, events);
        // Bounded statements stay under the backends' parameter limits.
        for part in rows.chunks(256) {
            diesel::insert_into(audit_events::table)
                .values(part)
                .execute(c)?;
        }
        diesel::update(audit_head::table)
            .set((audit_head::seq.eq(seq), audit_head::hash.eq(&prev)))
            .execute(c)?;
        Ok::<_, Error>(rows.iter().map(|r| r.seq).collect())
    })
}

fn build_records(
    key: &[u8; 32],
    seq: &mut i64,
    prev: &mut Vec<u8>,
    events: &[Event],
) -> Vec<Record> {
    let at = now_ms();
    events
        .iter()
        .map(|e| {
            *seq += 1;
            let mut r = Record {
                seq: *seq,
                at,
                actor: e.actor.clone(),
                org: e.org.clone(),
                action: e.action.as_str().to_owned(),
                key_id: e.key_id.clone(),
                report_id: e.report_id.clone(),
                client_ip: e.client_ip.clone(),
                device_id: e.device_id.clone(),
                outcome: e.outcome.as_str().to_owned(),
                detail: e.detail.clone(),
                prev_hash: prev.clone(),
                hash: Vec::new(),
            };
            r.hash = chain::link(key, prev, &r).to_vec();
            prev.clone_from(&r.hash);
            r
        })
        .collect()
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

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Events that verified before the first break (all of them if intact).
    pub verified: i64,
    /// The first broken link, if any.
    pub broken: Option<Broken>,
}

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first sequence number at which the chain is not intact.
    pub seq: i64,
    /// What is wrong there.
    pub reason: String,
}

/// Walks the whole chain in order and reports the first broken link: an
/// edited row (its hash does not match), a deleted row (a gap in sequence
/// numbers, or a head that points past the last row), or reordered rows
/// (a previous-hash that does not match its predecessor).
pub fn verify(conn: &mut Conn, audit_key: &[u8; 32]) -> Result<Verification> {
    const PAGE: i64 = 5000;
    let mut expected_seq = 1i64;
    let mut prev = chain::GENESIS.to_vec();
    let mut last = 0i64;
    loop {
        let page: Vec<Record> = audit_events::table
            .filter(audit_events::seq.gt(last))
            .order(audit_events::seq.asc())
            .limit(PAGE)
            .select(Record::as_select())
            .load(conn)?;
        for r in &page {
            let broken = |reason: String| {
                Ok(Verification {
                    verified: expected_seq - 1,
                    broken: Some(Broken {
                        seq: expected_seq.min(r.seq),
                        reason,
                    }),
                })
            };
            if r.seq != expected_seq {
                return broken(format!(
                    "event {expected_seq} is missing (next is {})",
                    r.seq
                ));
            }
            if r.prev_hash != prev {
                return broken(format!(
                    "event {} does not follow event {}",
                    r.seq,
                    r.seq - 1
                ));
            }
            if chain::link(audit_key, &prev, r).as_slice() != r.hash.as_slice() {
                return broken(format!("event {} was altered", r.seq));
            }
            prev.clone_from(&r.hash);
            expected_seq += 1;
        }
        match page.last() {
            Some(r) if page.len() as i64 == PAGE => last = r.seq,
            _ => break,
        }
    }
    let (head_seq, head_hash): (i64, Vec<u8>) = audit_head::table
        .select((audit_head::seq, audit_head::hash))
        .first(conn)?;
    let verified = expected_seq - 1;
    if head_seq != verified || head_hash != prev {
        return Ok(Verification {
            verified,
            broken: Some(Broken {
                seq: verified + 1,
                reason: format!(
                    "the log ends at event {verified} but {head_seq} events were recorded"
                ),
            }),
        });
    }
    Ok(Verification {
        verified,
        broken: None,
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
    /// Only events at or after this time (UTC ms).
    pub since: Option<i64>,
    /// At most this many (oldest first).
    pub limit: Option<i64>,
}

/// Reads events matching `f`, oldest first.
pub fn query(conn: &mut Conn, f: &Filter) -> Result<Vec<Record>> {
    let mut q = audit_events::table
        .order(audit_events::seq.asc())
        .select(Record::as_select())
        .into_boxed();
    if let Some(k) = &f.key_id {
        q = q.filter(audit_events::key_id.eq(k.clone()));
    }
    if let Some(r) = &f.report_id {
        q = q.filter(audit_events::report_id.eq(r.clone()));
    }
    if let Some(o) = &f.org {
        q = q.filter(audit_events::org.eq(o.clone()));
    }
    if let Some(t) = f.since {
        q = q.filter(audit_events::at.ge(t));
    }
    if let Some(n) = f.limit {
        q = q.limit(n);
    }
    Ok(q.load(conn)?)
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
pub fn render(records: &[Record], format: Format) -> Result<Vec<u8>> {
    let events: Vec<ExportedEvent> = records.iter().map(ExportedEvent::from).collect();
    match format {
        Format::Json => serde_json::to_vec_pretty(&serde_json::json!({ "events": events }))
            .map_err(|e| Error::Internal(e.to_string())),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for e in &events {
                w.serialize(e).map_err(|e| Error::Internal(e.to_string()))?;
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
