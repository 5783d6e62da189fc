//! An organisation's reports as its console lists them: each data key with
//! its report, creator, recipients, dates, state and how often it was
//! fetched. Read-only; every change to a key is in [`crate::ops`].
//!
//! Each listed key is checked against its seal, so a row edited in the
//! database is shown as such (`intact: false`) rather than believed.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::Conn;
use crate::db::schema::{audit_events, data_keys, key_recipients, users};
use crate::error::Result;
use crate::integrity;

/// Which keys to list.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// Only this key.
    pub key_id: Option<String>,
    /// Only keys of this report.
    pub report_id: Option<String>,
    /// Only keys made by this address (exact, normalised).
    pub creator: Option<String>,
    /// Only keys made at or after this time (UTC ms).
    pub since: Option<i64>,
    /// Skip this many (newest first).
    pub offset: i64,
    /// At most this many.
    pub limit: i64,
}

/// A key as listed.
#[derive(Debug, Clone)]
pub struct KeySummary {
    /// The key's state as stored.
    pub state: integrity::KeyState,
    /// The creator's address (empty if the account is gone).
    pub creator: String,
    /// Whether the state matches its seal.
    pub intact: bool,
    /// Successful `key.fetched` events.
    pub fetches: i64,
}

/// Organisation `org_id`'s keys matching `f`, newest first, and whether
/// more follow.
pub fn list(
    conn: &mut Conn,
    org_id: i64,
    state_key: &[u8; 32],
    f: &KeyFilter,
) -> Result<(Vec<KeySummary>, bool)> {
    let mut q = data_keys::table
        .left_join(users::table.on(users::id.eq(data_keys::creator_id)))
        .filter(data_keys::org_id.eq(org_id))
        .select((
            data_keys::key_id,
            crate::key_state_columns!(),
            users::email.nullable(),
        ))
        .order((data_keys::created_at.desc(), data_keys::key_id.desc()))
        .into_boxed();
    if let Some(k) = &f.key_id {
        q = q.filter(data_keys::key_id.eq(k.clone()));
    }
    if let Some(r) = &f.report_id {
        q = q.filter(data_keys::report_id.eq(r.clone()));
    }
    if let Some(c) = &f.creator {
        q = q.filter(users::email.eq(c.clone()));
    }
    if let Some(t) = f.since {
        q = q.filter(data_keys::created_at.ge(t));
    }
    let mut rows: Vec<(String, integrity::StoredKey, Option<String>)> =
        q.offset(f.offset).limit(f.limit + 1).load(conn)?;
    let more = rows.len() as i64 > f.limit;
    rows.truncate(usize::try_from(f.limit).unwrap_or(0));
    let ids: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    let mut recipients: HashMap<String, Vec<String>> = HashMap::new();
    for (k, e) in key_recipients::table
        .filter(key_recipients::key_id.eq_any(&ids))
        .order((key_recipients::key_id, key_recipients::email))
        .select((key_recipients::key_id, key_recipients::email))
        .load::<(String, String)>(conn)?
    {
        recipients.entry(k).or_default().push(e);
    }
    // A release is recorded under the key's own organisation, and key ids
    // are unique, so the key-id index alone finds them.
    let fetches: HashMap<Option<String>, i64> = audit_events::table
        .filter(audit_events::key_id.eq_any(&ids))
        .filter(audit_events::action.eq("key.fetched"))
        .filter(audit_events::outcome.eq("success"))
        .group_by(audit_events::key_id)
        .select((audit_events::key_id, diesel::dsl::count_star()))
        .load::<(Option<String>, i64)>(conn)?
        .into_iter()
        .collect();
    Ok((
        rows.into_iter()
            .map(|(key_id, stored, creator)| {
                let r = recipients.remove(&key_id).unwrap_or_default();
                let n = fetches.get(&Some(key_id.clone())).copied().unwrap_or(0);
                let (state, mac) = integrity::KeyState::from_stored(key_id, stored, r);
                KeySummary {
                    intact: integrity::matches(mac.as_deref(), &state.mac(state_key)),
                    state,
                    creator: creator.unwrap_or_default(),
                    fetches: n,
                }
            })
            .collect(),
        more,
    ))
}
