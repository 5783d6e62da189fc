//! "Every state change has its event, and every event its change": the
//! access-control state that the log's events describe, replayed and
//! compared with the rows in the store.
//!
//! The state MACs ([`crate::integrity`]) stop a row from being edited into a
//! state the keyring never sealed; they cannot stop a row from being put
//! back, whole, as it was earlier (an un-revocation by restoring yesterday's
//! row and MAC). The log can: a key is revoked in the store exactly when a
//! successful `key.revoked` event names it, its recipients are exactly
//! those its `key.created` and `key.recipients_added` events list, and so
//! on. This module states those rules in one place.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;

use super::Record;
use crate::db::Conn;
use crate::db::schema::{data_keys, key_recipients, orgs, users};
use crate::error::Result;

#[derive(Debug, Default)]
struct ExpectedKey {
    recipients: BTreeSet<String>,
    revoked: bool,
    /// The expiry the events give it (RFC 3339 as they write it; `Some(None)`
    /// for none), or `None` when they do not say: a `key.created` without
    /// an expiry says nothing of it (the first releases never wrote one, and
    /// a detail cut at its length limit may have lost it). Such a key's
    /// expiry is checked by its seal alone until a `key.expiry_changed`
    /// says what it is.
    expires: Option<Option<String>>,
}

#[derive(Debug)]
struct ExpectedUser {
    org: String,
    role: String,
    disabled: bool,
}

/// An organisation's sealed settings as its events left them (`None`:
/// never set, so the default).
#[derive(Debug, Default)]
struct ExpectedSettings {
    guests: Option<String>,
    recipient_domains: Option<String>,
    /// The receiving endpoint URL, or `none` (as the event writes it).
    endpoint_url: Option<String>,
}

/// The state the events describe, built one event at a time.
#[derive(Debug, Default)]
pub struct Replay {
    keys: HashMap<String, ExpectedKey>,
    users: HashMap<String, ExpectedUser>,
    orgs: BTreeSet<String>,
    settings: HashMap<String, ExpectedSettings>,
}

/// The list after `prefix` in a detail such as `recipients: a@x, b@y`.
fn list_after<'a>(detail: &'a str, prefix: &str) -> impl Iterator<Item = String> + 'a {
    let rest = detail.strip_prefix(prefix).unwrap_or("");
    // `key.created` may end with "; expires T" (an address cannot contain
    // the space in it, so this never cuts an address).
    let rest = rest
        .rsplit_once("; expires ")
        .map_or(rest, |(list, _)| list);
    // Addresses are stored normalised (trimmed, lower-case); details written
    // by earlier versions listed them as the client sent them.
    rest.split(", ")
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
}

impl Replay {
    /// Applies one event.
    pub fn apply(&mut self, r: &Record) {
        if r.outcome != "success" {
            return;
        }
        match (r.action.as_str(), r.key_id.as_deref()) {
            ("key.created", Some(k)) => {
                let e = self.keys.entry(k.to_owned()).or_default();
                e.recipients.extend(list_after(&r.detail, "recipients: "));
                e.expires = r
                    .detail
                    .rsplit_once("; expires ")
                    .map(|(_, t)| t)
                    .filter(|t| crate::time::parse_rfc3339(t).is_ok())
                    .map(|t| Some(t.to_owned()));
            }
            ("key.expiry_changed", Some(k)) => {
                // "expires T (was U)" or "expires never (was U)"
                let e = self.keys.entry(k.to_owned()).or_default();
                let new = r
                    .detail
                    .strip_prefix("expires ")
                    .and_then(|d| d.split_once(" (was "))
                    .map(|(t, _)| t);
                e.expires = match new {
                    Some("never") => Some(None),
                    Some(t) => Some(Some(t.to_owned())),
                    None => None,
                };
            }
            ("key.recipients_added", Some(k)) => {
                let e = self.keys.entry(k.to_owned()).or_default();
                e.recipients.extend(list_after(&r.detail, "added: "));
            }
            ("key.revoked", Some(k)) => {
                self.keys.entry(k.to_owned()).or_default().revoked = true;
            }
            ("org.created", _) => {
                self.orgs.insert(r.org.clone());
            }
            ("org.updated", _) => {
                let e = self.settings.entry(r.org.clone()).or_default();
                if let Some(g) = r.detail.strip_prefix("guests: ") {
                    e.guests = Some(g.to_owned());
                } else if let Some(d) = r.detail.strip_prefix("allowed recipient domains: ") {
                    e.recipient_domains = Some(d.to_owned());
                } else if let Some(u) = r.detail.strip_prefix(crate::org_endpoint::EVENT_PREFIX) {
                    e.endpoint_url = Some(u.to_owned());
                }
            }
            ("user.created", _) => {
                // "{email} as {role}"
                if let Some((email, role)) = r.detail.split_once(" as ") {
                    self.users.insert(
                        email.to_owned(),
                        ExpectedUser {
                            org: r.org.clone(),
                            role: role.to_owned(),
                            disabled: false,
                        },
                    );
                }
            }
            ("user.disabled", _) => {
                if let Some(u) = self.users.get_mut(r.detail.as_str()) {
                    u.disabled = true;
                }
            }
            ("user.enabled", _) => {
                if let Some(u) = self.users.get_mut(r.detail.as_str()) {
                    u.disabled = false;
                }
            }
            ("user.role_changed", _) => {
                if let Some((email, role)) = r.detail.split_once(" as ")
                    && let Some(u) = self.users.get_mut(email)
                {
                    u.role = role.to_owned();
                }
            }
            _ => {}
        }
    }

    /// Compares the replayed state with the store; the first difference, if
    /// any, in words.
    pub fn compare(&self, conn: &mut Conn) -> Result<Option<String>> {
        let rows: Vec<(String, Option<i64>, Option<i64>)> = data_keys::table
            .order(data_keys::key_id)
            .select((
                data_keys::key_id,
                data_keys::revoked_at,
                data_keys::expires_at,
            ))
            .load(conn)?;
        let mut recipients: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (k, e) in key_recipients::table
            .select((key_recipients::key_id, key_recipients::email))
            .load::<(String, String)>(conn)?
        {
            recipients.entry(k).or_default().insert(e);
        }
        let empty = BTreeSet::new();
        for (key_id, revoked_at, expires_at) in &rows {
            let Some(exp) = self.keys.get(key_id) else {
                return Ok(Some(format!(
                    "key {key_id} is in the store but no event created it"
                )));
            };
            if exp.revoked != revoked_at.is_some() {
                return Ok(Some(if exp.revoked {
                    format!("key {key_id} was revoked, but the store has it unrevoked")
                } else {
                    format!("key {key_id} is revoked in the store, but no event revoked it")
                }));
            }
            if let Some(want) = &exp.expires
                && *want != expires_at.map(crate::time::rfc3339)
            {
                return Ok(Some(format!(
                    "key {key_id} in the store does not expire when its events say"
                )));
            }
            let have = recipients.get(key_id).unwrap_or(&empty);
            if *have != exp.recipients {
                return Ok(Some(format!(
                    "the recipients of key {key_id} in the store are not those its events gave it"
                )));
            }
        }
        if rows.len() != self.keys.len() {
            let stored: BTreeSet<&String> = rows.iter().map(|(k, _, _)| k).collect();
            if let Some(k) = self.keys.keys().find(|k| !stored.contains(k)) {
                return Ok(Some(format!(
                    "key {k} was created, but it is not in the store"
                )));
            }
        }
        let urows: Vec<(String, String, String, bool)> = users::table
            .inner_join(orgs::table)
            .select((users::email, orgs::name, users::role, users::disabled))
            .load(conn)?;
        for (email, org, role, disabled) in &urows {
            let Some(exp) = self.users.get(email) else {
                return Ok(Some(format!(
                    "user {email} is in the store but no event created them"
                )));
            };
            if exp.org != *org || exp.role != *role || exp.disabled != *disabled {
                return Ok(Some(format!(
                    "user {email} in the store is not as the events left them"
                )));
            }
        }
        if urows.len() != self.users.len() {
            let stored: BTreeSet<&String> = urows.iter().map(|u| &u.0).collect();
            if let Some(u) = self.users.keys().find(|u| !stored.contains(u)) {
                return Ok(Some(format!(
                    "user {u} was created, but is not in the store"
                )));
            }
        }
        let orows: Vec<(String, String, String, Option<String>)> = orgs::table
            .select((
                orgs::name,
                orgs::guests,
                orgs::recipient_domains,
                orgs::endpoint_url,
            ))
            .load(conn)?;
        if let Some((o, ..)) = orows.iter().find(|(o, ..)| !self.orgs.contains(o)) {
            return Ok(Some(format!(
                "organisation {o} is in the store but no event created it"
            )));
        }
        // The sealed settings too: a restriction put back or lifted in the
        // database, seal and all, is not what the events say.
        for (o, guests, recipients, endpoint) in &orows {
            let exp = self.settings.get(o);
            let want_guests = exp.and_then(|e| e.guests.as_deref()).unwrap_or("none");
            let want_recipients = exp
                .and_then(|e| e.recipient_domains.as_deref())
                .unwrap_or(crate::recipients::ANY);
            let want_endpoint = exp
                .and_then(|e| e.endpoint_url.as_deref())
                .filter(|u| *u != crate::org_endpoint::NONE);
            if guests != want_guests
                || recipients != want_recipients
                || endpoint.as_deref() != want_endpoint
            {
                return Ok(Some(format!(
                    "the settings of organisation {o} in the store are not as the events left them"
                )));
            }
        }
        Ok(None)
    }
}
