//! A logical copy of a store's durable tables, for backing up a PostgreSQL
//! store from inside medseal (SQLite stores are copied whole with
//! `VACUUM INTO`, see [`crate::backup`]).
//!
//! Each table becomes a JSON-lines file of its rows, in an order that
//! restores without breaking a foreign key:
//!
//! ```text
//! orgs.jsonl  users.jsonl  data_keys.jsonl  key_recipients.jsonl  audit_events.jsonl
//! ```
//!
//! Binary columns (wrapped keys, hashes) are hex. The rows are read in one
//! `REPEATABLE READ` read-only transaction, so the copy is one consistent
//! snapshot while servers keep writing. Sessions and login-rate windows are
//! not copied: they are short-lived, and a restored store starts with
//! everyone logged out. Restore writes every row and the audit head in one
//! transaction into an empty store of either backend, checking the audit
//! chain with the keyring as it goes, and commits only if it holds — so a
//! failed restore leaves the target as it was.

use std::io::{BufRead, Write};

use diesel::prelude::*;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::audit::{self, Record};
use crate::db::Conn;
use crate::db::schema::{
    audit_events, audit_head, data_keys, key_recipients, orgs, sso_configs, users,
};
use crate::error::{Error, Result};

/// The tables copied, in restore order.
pub const TABLES: [&str; 5] = [
    "orgs",
    "users",
    "data_keys",
    "key_recipients",
    "audit_events",
];

/// Tables that backups made by earlier versions do not have: written
/// always, read when present.
pub const LATER_TABLES: [&str; 1] = ["sso_configs"];

/// Binary columns as hex strings.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Optional binary columns as hex strings (absent in older backups).
mod opt_hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => hex::decode(s).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[derive(Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = orgs)]
#[serde(deny_unknown_fields)]
struct OrgRow {
    id: i64,
    name: String,
    created_at: i64,
    /// Absent in backups made before share links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop_max_days: Option<i32>,
    /// Absent in backups made before guests.
    #[serde(default = "no_guests")]
    guests: String,
    #[serde(default, with = "opt_hex_bytes")]
    settings_mac: Option<Vec<u8>>,
    /// Absent in backups made before recipient policies.
    #[serde(default = "any_recipients")]
    recipient_domains: String,
    #[serde(default, with = "opt_hex_bytes")]
    recipients_mac: Option<Vec<u8>>,
    /// Absent in backups made before receiving endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint_url: Option<String>,
    #[serde(
        default,
        with = "opt_hex_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    endpoint_mac: Option<Vec<u8>>,
}

fn no_guests() -> String {
    "none".into()
}

fn any_recipients() -> String {
    "any".into()
}

#[derive(Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = sso_configs)]
#[serde(deny_unknown_fields)]
struct SsoRow {
    org_id: i64,
    issuer: String,
    client_id: String,
    #[serde(with = "hex_bytes")]
    client_secret: Vec<u8>,
    email_claim: String,
    allowed_domain: Option<String>,
    provision: String,
    updated_at: i64,
    #[serde(with = "hex_bytes")]
    state_mac: Vec<u8>,
}

#[derive(Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = users)]
#[serde(deny_unknown_fields)]
struct UserRow {
    id: i64,
    org_id: i64,
    email: String,
    role: String,
    password_hash: String,
    disabled: bool,
    failed_logins: i32,
    locked_until: Option<i64>,
    created_at: i64,
    #[serde(default, with = "opt_hex_bytes")]
    state_mac: Option<Vec<u8>>,
}

#[derive(Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = data_keys)]
#[serde(deny_unknown_fields)]
struct KeyRow {
    key_id: String,
    report_id: String,
    org_id: i64,
    creator_id: i64,
    kek_version: i32,
    #[serde(with = "hex_bytes")]
    wrapped: Vec<u8>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    #[serde(default, with = "opt_hex_bytes")]
    state_mac: Option<Vec<u8>>,
}

#[derive(Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = key_recipients)]
#[serde(deny_unknown_fields)]
struct RecipientRow {
    key_id: String,
    email: String,
}

/// Checks dumped audit events as they are read: in order, gapless, each
/// linked to the one before and sealed with the keyring's audit key.
pub struct ChainCheck<'k> {
    key: &'k [u8; 32],
    seq: i64,
    prev: Vec<u8>,
}

impl<'k> ChainCheck<'k> {
    /// A check from the start of the chain.
    pub fn new(key: &'k [u8; 32]) -> Self {
        ChainCheck {
            key,
            seq: 0,
            prev: audit::chain::GENESIS.to_vec(),
        }
    }

    /// Parses and checks the next line of `audit_events.jsonl`.
    pub fn next(&mut self, line: &str) -> Result<Record> {
        let record: Record = serde_json::from_str(line).map_err(|e| {
            Error::Invalid(format!(
                "not a key server backup: audit_events, row {}: {e}",
                self.seq + 1
            ))
        })?;
        let linked = record.seq == self.seq + 1
            && record.prev_hash == self.prev
            && audit::chain::link(self.key, &self.prev, &record).as_slice()
                == record.hash.as_slice();
        if !linked {
            return Err(Error::Invalid(format!(
                "the audit log does not verify at event {}",
                self.seq + 1
            )));
        }
        self.seq = record.seq;
        self.prev.clone_from(&record.hash);
        Ok(record)
    }

    /// The last event checked: (sequence number, hash).
    pub fn head(&self) -> (i64, Vec<u8>) {
        (self.seq, self.prev.clone())
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Invalid(format!("{what}: {e}"))
}

fn lines<T: Serialize, W: Write>(rows: &[T], out: &mut W) -> Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *out, r).map_err(|e| Error::Internal(e.to_string()))?;
        out.write_all(b"\n").map_err(io("cannot write the dump"))?;
    }
    out.flush().map_err(io("cannot write the dump"))
}

const PAGE: i64 = 5000;

/// Writes every table of a PostgreSQL store, from one snapshot, through
/// `open(table)`; returns the number of audit events copied.
pub fn dump<W: Write>(conn: &mut Conn, mut open: impl FnMut(&str) -> Result<W>) -> Result<i64> {
    let Conn::Postgresql(pg) = conn else {
        return Err(Error::Invalid(
            "a logical dump is for PostgreSQL stores; SQLite stores are copied whole".into(),
        ));
    };
    pg.build_transaction()
        .repeatable_read()
        .read_only()
        .run(|c| {
            let orgs: Vec<OrgRow> = orgs::table
                .order(orgs::id)
                .select(OrgRow::as_select())
                .load(c)?;
            lines(&orgs, &mut open("orgs")?)?;
            let users: Vec<UserRow> = users::table
                .order(users::id)
                .select(UserRow::as_select())
                .load(c)?;
            lines(&users, &mut open("users")?)?;
            let keys: Vec<KeyRow> = data_keys::table
                .order(data_keys::key_id)
                .select(KeyRow::as_select())
                .load(c)?;
            lines(&keys, &mut open("data_keys")?)?;
            let recipients: Vec<RecipientRow> = key_recipients::table
                .order((key_recipients::key_id, key_recipients::email))
                .select(RecipientRow::as_select())
                .load(c)?;
            lines(&recipients, &mut open("key_recipients")?)?;
            let sso: Vec<SsoRow> = sso_configs::table
                .order(sso_configs::org_id)
                .select(SsoRow::as_select())
                .load(c)?;
            lines(&sso, &mut open("sso_configs")?)?;
            let mut out = open("audit_events")?;
            let (mut last, mut n) = (0i64, 0i64);
            loop {
                let page: Vec<Record> = audit_events::table
                    .filter(audit_events::seq.gt(last))
                    .order(audit_events::seq)
                    .limit(PAGE)
                    .select(Record::as_select())
                    .load(c)?;
                let Some(tail) = page.last() else { break };
                last = tail.seq;
                n += page.len() as i64;
                lines(&page, &mut out)?;
            }
            Ok::<_, Error>(n)
        })
}

fn read_rows<T: DeserializeOwned, R: BufRead>(table: &str, input: R) -> Result<Vec<T>> {
    let mut rows = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(io("cannot read the dump"))?;
        rows.push(serde_json::from_str(&line).map_err(|e| {
            Error::Invalid(format!(
                "not a key server backup: {table}, row {}: {e}",
                i + 1
            ))
        })?);
    }
    Ok(rows)
}

/// Loads a dump into `conn`'s store, which must be empty (migrated, no
/// organisation and no audit event), in one transaction that commits only
/// if the audit chain verifies with `audit_key` and holds `expect_events`.
/// `open` answers `None` for a table of [`LATER_TABLES`] the dump lacks.
pub fn load<R: BufRead>(
    conn: &mut Conn,
    mut open: impl FnMut(&str) -> Result<Option<R>>,
    audit_key: &[u8; 32],
    expect_events: i64,
) -> Result<()> {
    let mut need = |table: &str| {
        open(table)?
            .ok_or_else(|| Error::Invalid(format!("not a key server backup: {table} is missing")))
    };
    let orgs_rows: Vec<OrgRow> = read_rows("orgs", need("orgs")?)?;
    let user_rows: Vec<UserRow> = read_rows("users", need("users")?)?;
    let key_rows: Vec<KeyRow> = read_rows("data_keys", need("data_keys")?)?;
    let recipient_rows: Vec<RecipientRow> = read_rows("key_recipients", need("key_recipients")?)?;
    let events = need("audit_events")?;
    let sso_rows: Vec<SsoRow> = match open("sso_configs")? {
        Some(r) => read_rows("sso_configs", r)?,
        None => Vec::new(),
    };
    crate::write_tx!(conn, |c| {
        let existing: i64 = orgs::table.count().get_result(c)?;
        let head: i64 = audit_head::table.select(audit_head::seq).first(c)?;
        if existing > 0 || head > 0 {
            return Err(Error::Conflict(
                "the target database already holds a store: restore into an empty one".into(),
            ));
        }
        for part in orgs_rows.chunks(500) {
            diesel::insert_into(orgs::table).values(part).execute(c)?;
        }
        for part in user_rows.chunks(500) {
            diesel::insert_into(users::table).values(part).execute(c)?;
        }
        for part in key_rows.chunks(500) {
            diesel::insert_into(data_keys::table)
                .values(part)
                .execute(c)?;
        }
        for part in recipient_rows.chunks(500) {
            diesel::insert_into(key_recipients::table)
                .values(part)
                .execute(c)?;
        }
        for part in sso_rows.chunks(500) {
            diesel::insert_into(sso_configs::table)
                .values(part)
                .execute(c)?;
        }
        let mut batch: Vec<Record> = Vec::with_capacity(256);
        let mut chain = ChainCheck::new(audit_key);
        let mut bound = false;
        for line in events.lines() {
            let line = line.map_err(io("cannot read the dump"))?;
            let record = chain.next(&line)?;
            bound |= record.action == crate::audit::Action::StateBound.as_str();
            batch.push(record);
            if batch.len() == 256 {
                diesel::insert_into(audit_events::table)
                    .values(&batch)
                    .execute(c)?;
                batch.clear();
            }
        }
        let head = chain.head();
        if head.0 != expect_events {
            return Err(Error::Invalid(format!(
                "not a key server backup: {} audit events where it promises {expect_events}",
                head.0
            )));
        }
        if !batch.is_empty() {
            diesel::insert_into(audit_events::table)
                .values(&batch)
                .execute(c)?;
        }
        // A store bound to its keyring before the backup stays bound; one
        // from an earlier version is bound when it is first opened.
        diesel::update(audit_head::table)
            .set((
                audit_head::seq.eq(head.0),
                audit_head::hash.eq(&head.1),
                audit_head::state_bound.eq(bound),
            ))
            .execute(c)?;
        Ok::<_, Error>(())
    })?;
    // Identity columns continue after the restored ids (PostgreSQL keeps
    // them in sequences; SQLite takes the largest rowid).
    if let Conn::Postgresql(pg) = conn {
        diesel::sql_query(
            "SELECT setval(pg_get_serial_sequence('orgs', 'id'), COALESCE((SELECT MAX(id) FROM orgs), 0) + 1, false)",
        )
        .execute(pg)?;
        diesel::sql_query(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), COALESCE((SELECT MAX(id) FROM users), 0) + 1, false)",
        )
        .execute(pg)?;
    }
    Ok(())
}
