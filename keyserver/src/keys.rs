//! Per-report data keys: creation, release, recipients, revocation.
//!
//! The functions here decide and change state; the HTTP layer records the
//! audit event for every outcome before it answers.

use diesel::prelude::*;
use medseal_format::Key;

use crate::accounts::{Principal, normalise_email};
use crate::db::Conn;
use crate::db::schema::{data_keys, key_recipients, orgs};
use crate::error::{Error, Result};
use crate::keyring::{Keyring, SharedKeyring};
use crate::policy::{self, KeyFacts};
use crate::time::now_ms;

/// Most recipients one key may have.
pub const MAX_RECIPIENTS: usize = 100;
/// Longest lifetime a key may be given (ten years, in ms).
const MAX_LIFETIME_MS: i64 = 10 * 366 * 24 * 60 * 60 * 1000;

/// Checks a report id: 1 to 128 of `A–Z a–z 0–9 . _ : -`.
pub fn check_report_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "a report id is 1 to 128 characters of A-Z a-z 0-9 . _ : -".into(),
        ))
    }
}

/// Checks a key id as it appears in a URL.
pub fn check_key_id(id: &str) -> Result<()> {
    let ok =
        id.len() == 34 && id.starts_with("k_") && id[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(Error::NotFound("no such key".into()))
    }
}

fn normalise_recipients(raw: &[String]) -> Result<Vec<String>> {
    if raw.is_empty() || raw.len() > MAX_RECIPIENTS {
        return Err(Error::Invalid(format!(
            "give 1 to {MAX_RECIPIENTS} recipients"
        )));
    }
    let mut out: Vec<String> = raw
        .iter()
        .map(|r| normalise_email(r))
        .collect::<Result<_>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// A freshly created key.
pub struct Created {
    /// The new key id.
    pub key_id: String,
    /// The data key itself (returned to the creator once per request).
    pub key: Key,
    /// Expiry, if any (UTC ms).
    pub expires_at: Option<i64>,
}

/// Creates a data key for `report_id` addressed to `recipients`.
pub fn create(
    conn: &mut Conn,
    ring: &Keyring,
    p: &Principal,
    report_id: &str,
    recipients: &[String],
    expires_at: Option<i64>,
) -> Result<Created> {
    if !policy::may_create(p) {
        return Err(Error::Forbidden(
            "only clinicians and admins create keys".into(),
        ));
    }
    check_report_id(report_id)?;
    let recipients = normalise_recipients(recipients)?;
    let now = now_ms();
    if let Some(t) = expires_at
        && (t <= now || t - now > MAX_LIFETIME_MS)
    {
        return Err(Error::Invalid(
            "expires_at must be in the future and within ten years".into(),
        ));
    }
    let key = Key::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let key_id = format!("k_{}", hex::encode(id));
    let (version, wrapped) = ring.wrap(&key_id, &key)?;
    crate::write_tx!(conn, |c| {
        diesel::insert_into(data_keys::table)
            .values((
                data_keys::key_id.eq(&key_id),
                data_keys::report_id.eq(report_id),
                data_keys::org_id.eq(p.org_id),
                data_keys::creator_id.eq(p.user_id),
                data_keys::kek_version.eq(version as i32),
                data_keys::wrapped.eq(&wrapped),
                data_keys::created_at.eq(now),
                data_keys::expires_at.eq(expires_at),
            ))
            .execute(c)?;
        let rows: Vec<_> = recipients
            .iter()
            .map(|r| {
                (
                    key_recipients::key_id.eq(&key_id),
                    key_recipients::email.eq(r),
                )
            })
            .collect();
        diesel::insert_into(key_recipients::table)
            .values(&rows)
            .execute(c)?;
        Ok::<_, Error>(())
    })?;
    Ok(Created {
        key_id,
        key,
        expires_at,
    })
}

/// What the audit record of a key operation needs to know about the key.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// The report the key seals.
    pub report_id: String,
    /// The owning organisation's name.
    pub org: String,
    /// The facts the policy needs.
    pub facts: KeyFacts,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// Expiry, if any.
    pub expires_at: Option<i64>,
    kek_version: i32,
    wrapped: Vec<u8>,
}

type KeyRow = (
    String,
    i64,
    String,
    i64,
    i32,
    Vec<u8>,
    Option<i64>,
    Option<i64>,
);

/// Loads a key's metadata as seen by `p` (`None` if there is no such key).
pub fn lookup(conn: &mut Conn, p: &Principal, key_id: &str) -> Result<Option<KeyInfo>> {
    let row: Option<KeyRow> = data_keys::table
        .inner_join(orgs::table)
        .filter(data_keys::key_id.eq(key_id))
        .select((
            data_keys::report_id,
            data_keys::org_id,
            orgs::name,
            data_keys::creator_id,
            data_keys::kek_version,
            data_keys::wrapped,
            data_keys::revoked_at,
            data_keys::expires_at,
        ))
        .first(conn)
        .optional()?;
    let Some((report_id, org_id, org, creator_id, kek_version, wrapped, revoked_at, expires_at)) =
        row
    else {
        return Ok(None);
    };
    let recipient: i64 = key_recipients::table
        .filter(key_recipients::key_id.eq(key_id))
        .filter(key_recipients::email.eq(&p.email))
        .count()
        .get_result(conn)?;
    Ok(Some(KeyInfo {
        report_id,
        org,
        facts: KeyFacts {
            org_id,
            creator_id,
            caller_is_recipient: recipient > 0,
        },
        revoked_at,
        expires_at,
        kek_version,
        wrapped,
    }))
}

/// Why a key that exists is no longer available.
pub fn gone_reason(info: &KeyInfo, now: i64) -> Option<&'static str> {
    if info.revoked_at.is_some() {
        Some("revoked")
    } else if info.expires_at.is_some_and(|t| t <= now) {
        Some("expired")
    } else {
        None
    }
}

/// Unwraps the data key of a key the caller was allowed to fetch.
pub fn unwrap(ring: &SharedKeyring, key_id: &str, info: &KeyInfo) -> Result<Key> {
    let version = u32::try_from(info.kek_version)
        .map_err(|_| Error::Keyring(format!("bad version for {key_id}")))?;
    ring.for_version(version)?
        .unwrap(key_id, version, &info.wrapped)
}

/// Adds recipients (already-listed ones are ignored).
pub fn add_recipients(conn: &mut Conn, key_id: &str, recipients: &[String]) -> Result<Vec<String>> {
    let recipients = normalise_recipients(recipients)?;
    crate::write_tx!(conn, |c| {
        let have: Vec<String> = key_recipients::table
            .filter(key_recipients::key_id.eq(key_id))
            .select(key_recipients::email)
            .load(c)?;
        let new: Vec<&String> = recipients.iter().filter(|r| !have.contains(r)).collect();
        if have.len() + new.len() > MAX_RECIPIENTS {
            return Err(Error::Invalid(format!(
                "a key may have at most {MAX_RECIPIENTS} recipients"
            )));
        }
        let rows: Vec<_> = new
            .iter()
            .map(|r| {
                (
                    key_recipients::key_id.eq(key_id),
                    key_recipients::email.eq(*r),
                )
            })
            .collect();
        if !rows.is_empty() {
            diesel::insert_into(key_recipients::table)
                .values(&rows)
                .execute(c)?;
        }
        Ok(new.into_iter().cloned().collect())
    })
}

/// Revokes a key (idempotent).
pub fn revoke(conn: &mut Conn, key_id: &str) -> Result<()> {
    diesel::update(
        data_keys::table
            .filter(data_keys::key_id.eq(key_id))
            .filter(data_keys::revoked_at.is_null()),
    )
    .set(data_keys::revoked_at.eq(Some(now_ms())))
    .execute(conn)?;
    Ok(())
}

/// Re-wraps every key stored under an older master-key version; returns how
/// many rows changed. Runs in small batches so that a serving key server is
/// never blocked for long.
pub fn rewrap_all(conn: &mut Conn, ring: &Keyring) -> Result<u64> {
    let current = ring.current_version() as i32;
    let mut changed = 0u64;
    loop {
        let batch: Vec<(String, i32, Vec<u8>)> = data_keys::table
            .filter(data_keys::kek_version.ne(current))
            .select((
                data_keys::key_id,
                data_keys::kek_version,
                data_keys::wrapped,
            ))
            .limit(500)
            .load(conn)?;
        if batch.is_empty() {
            return Ok(changed);
        }
        for (key_id, version, wrapped) in batch {
            let (v, w) = ring.rewrap(&key_id, version as u32, &wrapped)?;
            // Only if nobody changed it meanwhile.
            changed += diesel::update(
                data_keys::table
                    .filter(data_keys::key_id.eq(&key_id))
                    .filter(data_keys::kek_version.eq(version)),
            )
            .set((
                data_keys::kek_version.eq(v as i32),
                data_keys::wrapped.eq(w),
            ))
            .execute(conn)? as u64;
        }
    }
}

/// Master-key versions still referenced by stored keys.
pub fn versions_in_use(conn: &mut Conn) -> Result<Vec<u32>> {
    let v: Vec<i32> = data_keys::table
        .select(data_keys::kek_version)
        .distinct()
        .load(conn)?;
    Ok(v.into_iter()
        .filter_map(|x| u32::try_from(x).ok())
        .collect())
}
