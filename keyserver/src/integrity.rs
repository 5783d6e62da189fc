//! Access-control state bound to the keyring.
//!
//! Someone who can write to the database but cannot read the keyring must
//! not be able to grant access: un-revoke a key, add themselves as a
//! recipient, raise a role, re-enable a user, swap a password hash, or plant
//! a session for a token they chose. Each such row therefore carries
//! `state_mac`, an HMAC-SHA256 under a key derived from the audit key
//! ([`crate::keyring::Keyring::state_key`]) over exactly the fields that
//! decide access:
//!
//! ```text
//! key:     "medseal key state v1"  ‖ f(key_id) ‖ f(report_id) ‖ i64(org_id) ‖ i64(creator_id)
//!          ‖ i64(created_at) ‖ o(expires_at) ‖ o(revoked_at) ‖ u32(n) ‖ f(recipient)…  (sorted)
//! user:    "medseal user state v1" ‖ i64(id) ‖ i64(org_id) ‖ f(email) ‖ f(role) ‖ u8(disabled)
//!          ‖ f(password_hash)
//! session: "medseal session v1"    ‖ f(token_hash) ‖ i64(user_id) ‖ f(device_id)
//!          ‖ i64(created_at) ‖ i64(expires_at)
//! org:     "medseal org settings v1" ‖ i64(id) ‖ f(name) ‖ f(guests)
//! endpoint: "medseal org endpoint v1" ‖ i64(id) ‖ f(name) ‖ f(endpoint_url)   (NULL: no seal)
//! sso:     "medseal sso config v1" ‖ i64(org_id) ‖ f(issuer) ‖ f(client_id)
//!          ‖ f(sealed client secret) ‖ f(email_claim) ‖ f(allowed_domain or "") ‖ f(provision)
//! flow:    "medseal sso flow v1"   ‖ f(state_hash) ‖ i64(org_id) ‖ f(nonce) ‖ f(pkce_verifier)
//!          ‖ f(device_id) ‖ f(return_to) ‖ f(client_challenge) ‖ i64(expires_at)
//! grant:   "medseal sso grant v1"  ‖ f(grant_hash) ‖ i64(user_id) ‖ f(device_id)
//!          ‖ f(client_challenge) ‖ i64(expires_at)
//! f(s) = u32(len) ‖ s      o(none) = 0x00      o(t) = 0x01 ‖ i64(t)          (big-endian)
//! ```
//!
//! Sign-in codes are not sealed rows but MACs themselves, under a key of
//! their own ([`subkey`]): see [`crate::signin::codes`].
//!
//! The MAC is recomputed in the transaction that changes the row, together
//! with its audit event ([`crate::audit::ledger`]). A row whose MAC does not
//! match is never acted on: the key is not released, the session is not
//! accepted, the login is refused — and the refusal is audited as
//! `integrity.violation`. Ended sessions are deleted rather than flagged, so
//! that no flag can be flipped back.
//!
//! What a MAC cannot catch is a whole row put back as it was earlier (with
//! its earlier MAC); `audit verify` replays the log against the current
//! state for that ([`crate::audit::state`]).

use diesel::prelude::*;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::db::Conn;
use crate::db::schema::{data_keys, key_recipients, sessions, users};
use crate::error::Result;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 keyed with `key` (the key server's one constructor of it).
pub(crate) fn mac(key: &[u8; 32]) -> HmacSha256 {
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn f(m: &mut HmacSha256, s: &[u8]) {
    m.update(&(s.len() as u32).to_be_bytes());
    m.update(s);
}

fn opt(m: &mut HmacSha256, t: Option<i64>) {
    match t {
        None => m.update(&[0]),
        Some(t) => {
            m.update(&[1]);
            m.update(&t.to_be_bytes());
        }
    }
}

/// The access-control state of a data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The key id.
    pub key_id: String,
    /// The report it seals.
    pub report_id: String,
    /// The owning organisation.
    pub org_id: i64,
    /// Its creator.
    pub creator_id: i64,
    /// Creation time (ms).
    pub created_at: i64,
    /// Expiry (ms).
    pub expires_at: Option<i64>,
    /// Revocation time (ms).
    pub revoked_at: Option<i64>,
    /// Recipients, normalised and sorted.
    pub recipients: Vec<String>,
}

impl KeyState {
    /// Its MAC.
    pub fn mac(&self, key: &[u8; 32]) -> [u8; 32] {
        let mut m = mac(key);
        m.update(b"medseal key state v1");
        f(&mut m, self.key_id.as_bytes());
        f(&mut m, self.report_id.as_bytes());
        m.update(&self.org_id.to_be_bytes());
        m.update(&self.creator_id.to_be_bytes());
        m.update(&self.created_at.to_be_bytes());
        opt(&mut m, self.expires_at);
        opt(&mut m, self.revoked_at);
        let mut r = self.recipients.clone();
        r.sort();
        m.update(&(r.len() as u32).to_be_bytes());
        for e in &r {
            f(&mut m, e.as_bytes());
        }
        m.finalize().into_bytes().into()
    }
}

/// The access-control state of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState<'a> {
    /// User id.
    pub id: i64,
    /// Organisation.
    pub org_id: i64,
    /// Normalised e-mail.
    pub email: &'a str,
    /// Role name.
    pub role: &'a str,
    /// Disabled?
    pub disabled: bool,
    /// The argon2id PHC string.
    pub password_hash: &'a str,
}

impl UserState<'_> {
    /// Its MAC.
    pub fn mac(&self, key: &[u8; 32]) -> [u8; 32] {
        let mut m = mac(key);
        m.update(b"medseal user state v1");
        m.update(&self.id.to_be_bytes());
        m.update(&self.org_id.to_be_bytes());
        f(&mut m, self.email.as_bytes());
        f(&mut m, self.role.as_bytes());
        m.update(&[u8::from(self.disabled)]);
        f(&mut m, self.password_hash.as_bytes());
        m.finalize().into_bytes().into()
    }
}

/// The binding fields of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState<'a> {
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// Whose.
    pub user_id: i64,
    /// The device it is bound to.
    pub device_id: &'a str,
    /// Created (ms).
    pub created_at: i64,
    /// Absolute expiry (ms).
    pub expires_at: i64,
}

impl SessionState<'_> {
    /// Its MAC.
    pub fn mac(&self, key: &[u8; 32]) -> [u8; 32] {
        let mut m = mac(key);
        m.update(b"medseal session v1");
        f(&mut m, self.token_hash);
        m.update(&self.user_id.to_be_bytes());
        f(&mut m, self.device_id.as_bytes());
        m.update(&self.created_at.to_be_bytes());
        m.update(&self.expires_at.to_be_bytes());
        m.finalize().into_bytes().into()
    }
}

/// A key for one purpose, derived from the state key: HMAC(state key, label).
pub fn subkey(state_key: &[u8; 32], label: &str) -> zeroize::Zeroizing<[u8; 32]> {
    let mut m = mac(state_key);
    m.update(label.as_bytes());
    zeroize::Zeroizing::new(m.finalize().into_bytes().into())
}

/// MAC over length-prefixed fields and numbers, after a domain label: the
/// one shape of every seal below.
pub enum Field<'a> {
    /// A byte string, length-prefixed.
    Bytes(&'a [u8]),
    /// A number, big-endian.
    Int(i64),
}

/// The seal of a row made of `fields`, under `label`.
pub fn seal(key: &[u8; 32], label: &str, fields: &[Field<'_>]) -> [u8; 32] {
    let mut m = mac(key);
    m.update(label.as_bytes());
    for field in fields {
        match field {
            Field::Bytes(b) => f(&mut m, b),
            Field::Int(i) => m.update(&i.to_be_bytes()),
        }
    }
    m.finalize().into_bytes().into()
}

/// Whether a stored MAC matches the expected one, in constant time. A
/// missing MAC never matches.
pub fn matches(stored: Option<&[u8]>, expected: &[u8; 32]) -> bool {
    stored.is_some_and(|s| subtle::ConstantTimeEq::ct_eq(s, &expected[..]).into())
}

/// A key's recipients as stored, sorted.
pub fn recipients_of(conn: &mut Conn, key_id: &str) -> Result<Vec<String>> {
    Ok(key_recipients::table
        .filter(key_recipients::key_id.eq(key_id))
        .order(key_recipients::email.asc())
        .select(key_recipients::email)
        .load(conn)?)
}

/// The columns of `data_keys` that a key's state (and its stored MAC) is
/// made of, in [`StoredKey`] order: every reader of key state selects them
/// with this, so the three places that check a seal read the same thing.
#[macro_export]
macro_rules! key_state_columns {
    () => {
        (
            $crate::db::schema::data_keys::report_id,
            $crate::db::schema::data_keys::org_id,
            $crate::db::schema::data_keys::creator_id,
            $crate::db::schema::data_keys::created_at,
            $crate::db::schema::data_keys::expires_at,
            $crate::db::schema::data_keys::revoked_at,
            $crate::db::schema::data_keys::state_mac,
        )
    };
}

/// A row read with [`key_state_columns!`].
pub type StoredKey = (
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
);

impl KeyState {
    /// A key's state from its stored row and recipients, with the stored MAC.
    pub fn from_stored(
        key_id: String,
        row: StoredKey,
        recipients: Vec<String>,
    ) -> (KeyState, Option<Vec<u8>>) {
        let (report_id, org_id, creator_id, created_at, expires_at, revoked_at, stored) = row;
        let state = KeyState {
            key_id,
            report_id,
            org_id,
            creator_id,
            created_at,
            expires_at,
            revoked_at,
            recipients,
        };
        (state, stored)
    }
}

/// Loads a key's state as stored (recipients sorted), with its MAC.
pub fn load_key_state(
    conn: &mut Conn,
    key_id: &str,
) -> Result<Option<(KeyState, Option<Vec<u8>>)>> {
    let row: Option<StoredKey> = data_keys::table
        .filter(data_keys::key_id.eq(key_id))
        .select(crate::key_state_columns!())
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let recipients = recipients_of(conn, key_id)?;
    Ok(Some(KeyState::from_stored(
        key_id.to_owned(),
        row,
        recipients,
    )))
}

/// Re-computes and stores a key's MAC from its rows as they now are in this
/// transaction. Called by every change to a key, after the change.
pub fn reseal_key(conn: &mut Conn, state_key: &[u8; 32], key_id: &str) -> Result<KeyState> {
    let (state, _) = load_key_state(conn, key_id)?
        .ok_or_else(|| crate::error::Error::NotFound("no such key".into()))?;
    diesel::update(data_keys::table.filter(data_keys::key_id.eq(key_id)))
        .set(data_keys::state_mac.eq(Some(state.mac(state_key).to_vec())))
        .execute(conn)?;
    Ok(state)
}

/// Re-computes and stores a user's MAC from the row as it now is.
pub fn reseal_user(conn: &mut Conn, state_key: &[u8; 32], id: i64) -> Result<()> {
    let u = crate::accounts::load_user(conn, id, state_key)?
        .ok_or_else(|| crate::error::Error::NotFound(format!("no user {id}")))?;
    let mac = u.state().mac(state_key);
    diesel::update(users::table.find(id))
        .set(users::state_mac.eq(Some(mac.to_vec())))
        .execute(conn)?;
    Ok(())
}

/// Binds rows written before state MACs existed, once per store (the first
/// time a store is opened with its keyring after the upgrade). Returns how
/// many rows were bound. After this, a row without a MAC is a tampered row.
pub(crate) fn bind_unbound_rows(conn: &mut Conn, state_key: &[u8; 32]) -> Result<u64> {
    let mut n = 0u64;
    let keys: Vec<String> = data_keys::table
        .filter(data_keys::state_mac.is_null())
        .select(data_keys::key_id)
        .load(conn)?;
    for k in &keys {
        reseal_key(conn, state_key, k)?;
        n += 1;
    }
    let ids: Vec<i64> = users::table
        .filter(users::state_mac.is_null())
        .select(users::id)
        .load(conn)?;
    for id in ids {
        reseal_user(conn, state_key, id)?;
        n += 1;
    }
    // Sessions from before the upgrade cannot be told from planted ones:
    // their holders log in again.
    n +=
        diesel::delete(sessions::table.filter(sessions::state_mac.is_null())).execute(conn)? as u64;
    Ok(n)
}

/// Checks the MAC of every key, user and session row; the first row that
/// fails, in words.
pub fn check_all(conn: &mut Conn, state_key: &[u8; 32]) -> Result<Option<String>> {
    let mut recipients: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (k, e) in key_recipients::table
        .order((key_recipients::key_id, key_recipients::email))
        .select((key_recipients::key_id, key_recipients::email))
        .load::<(String, String)>(conn)?
    {
        recipients.entry(k).or_default().push(e);
    }
    let keys: Vec<(String, StoredKey)> = data_keys::table
        .order(data_keys::key_id)
        .select((data_keys::key_id, crate::key_state_columns!()))
        .load(conn)?;
    for (key_id, row) in keys {
        let r = recipients.remove(&key_id).unwrap_or_default();
        let (state, stored) = KeyState::from_stored(key_id, row, r);
        if !matches(stored.as_deref(), &state.mac(state_key)) {
            return Ok(Some(format!(
                "key {} was changed outside the key server (its state does not match its seal)",
                state.key_id
            )));
        }
    }
    if let Some(k) = recipients.keys().next() {
        return Ok(Some(format!(
            "recipients are listed for a key {k} that does not exist"
        )));
    }
    for u in crate::accounts::all_users(conn, state_key)? {
        if !u.intact {
            return Ok(Some(format!(
                "user {} was changed outside the key server (role, status or password does not match its seal)",
                u.email
            )));
        }
    }
    type SessionRow = (Vec<u8>, i64, String, i64, i64, Option<Vec<u8>>);
    let sessions: Vec<SessionRow> = sessions::table
        .select((
            sessions::token_hash,
            sessions::user_id,
            sessions::device_id,
            sessions::created_at,
            sessions::expires_at,
            sessions::state_mac,
        ))
        .load(conn)?;
    for (token_hash, user_id, device_id, created_at, expires_at, stored) in &sessions {
        let expected = SessionState {
            token_hash,
            user_id: *user_id,
            device_id,
            created_at: *created_at,
            expires_at: *expires_at,
        }
        .mac(state_key);
        if !matches(stored.as_deref(), &expected) {
            return Ok(Some(format!(
                "a session of user {user_id} was not made by the key server"
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyState {
        KeyState {
            key_id: "k_1".into(),
            report_id: "r".into(),
            org_id: 1,
            creator_id: 2,
            created_at: 3,
            expires_at: None,
            revoked_at: Some(4),
            recipients: vec!["a@x".into(), "b@x".into()],
        }
    }

    #[test]
    fn every_access_field_changes_the_key_mac() {
        let k = [5u8; 32];
        let base = key().mac(&k);
        let edits: [fn(&mut KeyState); 6] = [
            |s| s.revoked_at = None,
            |s| s.expires_at = Some(0),
            |s| s.recipients.push("m@evil".into()),
            |s| s.creator_id = 9,
            |s| s.org_id = 9,
            |s| s.report_id = "other".into(),
        ];
        for edit in edits {
            let mut s = key();
            edit(&mut s);
            assert_ne!(s.mac(&k), base);
        }
        let mut reordered = key();
        reordered.recipients.reverse();
        assert_eq!(reordered.mac(&k), base, "the recipient order is not state");
        assert_ne!(key().mac(&[6; 32]), base, "keyed");
        assert!(matches(Some(&base[..]), &base));
        assert!(!matches(None, &base));
    }

    #[test]
    fn user_and_session_macs_cover_their_fields() {
        let k = [1u8; 32];
        let u = UserState {
            id: 1,
            org_id: 1,
            email: "a@x",
            role: "clinician",
            disabled: true,
            password_hash: "h",
        };
        let base = u.mac(&k);
        assert_ne!(
            UserState {
                role: "admin",
                ..u.clone()
            }
            .mac(&k),
            base
        );
        assert_ne!(
            UserState {
                disabled: false,
                ..u.clone()
            }
            .mac(&k),
            base
        );
        assert_ne!(
            UserState {
                password_hash: "g",
                ..u.clone()
            }
            .mac(&k),
            base
        );
        let s = SessionState {
            token_hash: &[1, 2],
            user_id: 1,
            device_id: "d",
            created_at: 0,
            expires_at: 9,
        };
        let sbase = s.mac(&k);
        assert_ne!(
            SessionState {
                user_id: 2,
                ..s.clone()
            }
            .mac(&k),
            sbase
        );
        assert_ne!(
            SessionState {
                expires_at: 10,
                ..s.clone()
            }
            .mac(&k),
            sbase
        );
    }
}
