//! Per-report data keys: what a new key is, looking one up as a caller sees
//! it (with its state seal checked), and releasing it. The changes
//! themselves — create, add recipients, revoke, re-wrap — are in
//! [`crate::ops`], each committed with its audit event.

use diesel::prelude::*;
use medseal_format::Key;

use crate::accounts::{Principal, normalise_email};
use crate::db::Conn;
use crate::db::schema::{data_keys, orgs};
use crate::error::{Error, Result};
use crate::integrity;
use crate::keyring::SharedKeyring;
use crate::policy::{self, KeyFacts};

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

pub fn normalise_recipients(raw: &[String]) -> Result<Vec<String>> {
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

/// A key about to be created: validated, with its id and material made
/// outside the transaction (so a re-run batch cannot make two).
pub struct NewKey {
    /// The new key id.
    pub key_id: String,
    /// The data key itself (returned to the creator once).
    pub key: Key,
    /// The report it seals.
    pub report_id: String,
    /// Normalised, sorted, unique recipients.
    pub recipients: Vec<String>,
    /// Expiry, if any (UTC ms).
    pub expires_at: Option<i64>,
}

/// An expiry a key may be given: none, or a time in the future within ten
/// years (a key is never made, or changed, to be dead already).
pub fn check_expiry(expires_at: Option<i64>, now: i64) -> Result<()> {
    match expires_at {
        Some(t) if t <= now || t - now > MAX_LIFETIME_MS => Err(Error::Invalid(
            "expires_at must be in the future and within ten years".into(),
        )),
        _ => Ok(()),
    }
}

/// Checks a key request and makes the key.
pub fn prepare(
    p: &Principal,
    report_id: &str,
    recipients: &[String],
    expires_at: Option<i64>,
    now: i64,
) -> Result<NewKey> {
    if !policy::may_create(p) {
        return Err(Error::Forbidden(
            "only clinicians and admins create keys".into(),
        ));
    }
    check_report_id(report_id)?;
    let recipients = normalise_recipients(recipients)?;
    check_expiry(expires_at, now)?;
    let key = Key::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(NewKey {
        key_id: format!("k_{}", hex::encode(id)),
        key,
        report_id: report_id.to_owned(),
        recipients,
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
    /// Whether its state matches its seal; a key that does not is never
    /// released.
    pub intact: bool,
    kek_version: i32,
    wrapped: Vec<u8>,
}

/// Loads a key's metadata as seen by `p` (`None` if there is no such key),
/// checking its state against its seal.
pub fn lookup(
    conn: &mut Conn,
    p: &Principal,
    key_id: &str,
    state_key: &[u8; 32],
) -> Result<Option<KeyInfo>> {
    // The row and its recipients are read by two statements; a change
    // committed between them would look like tampering. A key that fails
    // its seal is read again in one transaction before it is called
    // tampered (the common path pays nothing for it).
    match read_key(conn, p, key_id, state_key)? {
        Some(info) if !info.intact => {
            conn.transaction::<_, Error, _>(|c| read_key(c, p, key_id, state_key))
        }
        other => Ok(other),
    }
}

fn read_key(
    conn: &mut Conn,
    p: &Principal,
    key_id: &str,
    state_key: &[u8; 32],
) -> Result<Option<KeyInfo>> {
    // One query for the row, one for its recipients: this is every fetch's
    // path.
    let row: Option<(String, i32, Vec<u8>, integrity::StoredKey)> = data_keys::table
        .inner_join(orgs::table)
        .filter(data_keys::key_id.eq(key_id))
        .select((
            orgs::name,
            data_keys::kek_version,
            data_keys::wrapped,
            crate::key_state_columns!(),
        ))
        .first(conn)
        .optional()?;
    let Some((org, kek_version, wrapped, stored_row)) = row else {
        return Ok(None);
    };
    let recipients = integrity::recipients_of(conn, key_id)?;
    let (state, stored) =
        integrity::KeyState::from_stored(key_id.to_owned(), stored_row, recipients);
    let intact = integrity::matches(stored.as_deref(), &state.mac(state_key));
    let caller_is_recipient = state.recipients.contains(&p.email);
    // Only a guest's fetch pays for reading the organisation's policy.
    let guest_admitted = p.role == crate::accounts::Role::Guest
        && caller_is_recipient
        && crate::signin::guests::policy_of(conn, state.org_id, state_key)?
            .policy
            .admits(&p.email);
    Ok(Some(KeyInfo {
        facts: KeyFacts {
            org_id: state.org_id,
            creator_id: state.creator_id,
            caller_is_recipient,
            guest_admitted,
        },
        report_id: state.report_id,
        org,
        revoked_at: state.revoked_at,
        expires_at: state.expires_at,
        intact,
        kek_version,
        wrapped,
    }))
}

/// Why a key that exists is no longer available.
pub fn gone_reason(
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
    now: i64,
) -> Option<&'static str> {
    if revoked_at.is_some() {
        Some("revoked")
    } else if expires_at.is_some_and(|t| t <= now) {
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

/// The one organisation holding keys for `report_id`, for an export that
/// names a report without naming its organisation. Report ids are unique
/// only within an organisation, so when several hold it the caller must
/// choose; none is not an error (the trail may hold only refusals).
pub fn report_org(conn: &mut Conn, report_id: &str) -> Result<Option<String>> {
    let mut owners: Vec<String> = data_keys::table
        .inner_join(orgs::table)
        .filter(data_keys::report_id.eq(report_id))
        .select(orgs::name)
        .distinct()
        .load(conn)?;
    owners.sort();
    match owners.len() {
        0 | 1 => Ok(owners.pop()),
        _ => Err(Error::Invalid(format!(
            "report {report_id} exists in {} organisations ({}); choose one with --org",
            owners.len(),
            owners.join(", ")
        ))),
    }
}

/// Could `email` open a report that `p` seals now? `refused` (outside the
/// organisation's recipient policy: no key would be made), `user` (an enabled
/// account, not a guest, of any organisation on this server), `guest`
/// (the caller's organisation admits the address as a guest: whether or
/// not a guest account exists, so as not to tell one apart), `unknown`, or
/// `invalid`.
pub fn recipient_status(
    conn: &mut Conn,
    p: &Principal,
    raw: &str,
    state_key: &[u8; 32],
) -> Result<(String, &'static str)> {
    use crate::db::schema::users;
    let Ok(email) = normalise_email(raw) else {
        return Ok((raw.trim().to_lowercase(), "invalid"));
    };
    if crate::recipients::first_refused(conn, p.org_id, state_key, std::slice::from_ref(&email))?
        .is_some()
    {
        return Ok((email, "refused"));
    }
    let account: Option<(String, bool)> = users::table
        .filter(users::email.eq(&email))
        .select((users::role, users::disabled))
        .first(conn)
        .optional()?;
    if let Some((role, false)) = &account
        && role != crate::accounts::Role::Guest.as_str()
    {
        return Ok((email, "user"));
    }
    let guests = crate::signin::guests::policy_of(conn, p.org_id, state_key)?;
    let admitted = guests.intact && guests.policy.admits(&email);
    Ok((email, if admitted { "guest" } else { "unknown" }))
}
