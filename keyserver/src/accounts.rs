//! Organisations, users, passwords and sessions.
//!
//! Passwords are stored as argon2id PHC strings. Session tokens are 256-bit
//! random values given to the client once; the server keeps only their
//! SHA-256 (a token has full entropy, so a fast hash is enough), bound to the
//! device id that logged in. Sessions expire after an idle and an absolute
//! timeout. Repeated login failures lock the account for a while; the count
//! lives in the database so that every server behind a load balancer sees it.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::db::Conn;
use crate::db::schema::{orgs, sessions, users};
use crate::error::{Error, Result};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages the organisation: revokes keys, adds recipients, reads the audit log.
    Admin,
    /// Reads the organisation's audit log.
    Auditor,
    /// Creates keys for reports and opens reports addressed to them.
    Clinician,
    /// A receiving endpoint's service account.
    Service,
    /// Someone of another organisation who signed in with an e-mailed
    /// code to open the reports addressed to them, and may do nothing else
    /// ([`crate::signin::guests`]).
    Guest,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Clinician => "clinician",
            Role::Service => "service",
            Role::Guest => "guest",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "admin" => Ok(Role::Admin),
            "auditor" => Ok(Role::Auditor),
            "clinician" => Ok(Role::Clinician),
            "service" => Ok(Role::Service),
            "guest" => Ok(Role::Guest),
            _ => Err(Error::Invalid(format!(
                "unknown role '{s}': use admin, auditor, clinician or service"
            ))),
        }
    }
}

/// Session and lockout settings.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// A session unused for this long expires (ms).
    pub idle_timeout_ms: i64,
    /// A session expires this long after login, however used (ms).
    pub absolute_timeout_ms: i64,
    /// Consecutive failures that lock an account.
    pub max_failures: i32,
    /// How long a lock lasts (ms).
    pub lockout_ms: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_timeout_ms: 30 * 60 * 1000,
            absolute_timeout_ms: 12 * 60 * 60 * 1000,
            max_failures: 5,
            lockout_ms: 15 * 60 * 1000,
        }
    }
}

/// Only refresh `last_seen` when it is older than this, so that a busy
/// session does not turn every request into a write.
const LAST_SEEN_GRANULARITY_MS: i64 = 30_000;

/// How far apart the clocks of a pool's servers may be.
const CLOCK_SKEW_MS: i64 = 60_000;

/// Lower-cases and checks an e-mail address.
pub fn normalise_email(raw: &str) -> Result<String> {
    let e = raw.trim().to_lowercase();
    // RFC 5322 dot-atom on both sides (letters of any script allowed, as in
    // RFC 6531), so that no quote, bracket, comma or space — nothing that
    // could break out of a CSV cell or a mail header — is ever stored.
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let dot_atom = |s: &str, allowed: &dyn Fn(char) -> bool| {
        !s.is_empty()
            && s.split('.')
                .all(|part| !part.is_empty() && part.chars().all(allowed))
    };
    let ok = e.len() <= 254
        && match e.split_once('@') {
            Some((local, domain)) => {
                local.len() <= 64
                    && dot_atom(local, &atext)
                    && dot_atom(domain, &|c: char| c.is_alphanumeric() || c == '-')
            }
            None => false,
        };
    if ok {
        Ok(e)
    } else {
        Err(Error::Invalid(format!(
            "'{}' is not an e-mail address",
            crate::audit::ledger::clean(raw.trim(), 254)
        )))
    }
}

/// Checks an organisation name.
pub(crate) fn check_org_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "an organisation name is 1 to 200 characters without control characters".into(),
        ));
    }
    Ok(())
}

/// Checks a device id as sent in `X-Device-Id`.
pub fn check_device_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if !ok {
        return Err(Error::Invalid(
            "a device id is 1 to 128 characters of A-Z a-z 0-9 . _ : -".into(),
        ));
    }
    Ok(())
}

pub fn hash_password(password: &[u8]) -> Result<String> {
    if password.is_empty() || password.len() > 1024 {
        return Err(Error::Invalid("a password is 1 to 1024 bytes".into()));
    }
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("cannot hash a password: {e}")))
}

fn verify_password(password: &[u8], stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default().verify_password(password, &h).is_ok(),
        // An account with no password (a guest, a user made by single
        // sign-on) takes as long to refuse as any other.
        Err(_) => {
            if let Ok(h) = PasswordHash::new(dummy_hash()) {
                let _ = Argon2::default().verify_password(password, &h);
            }
            false
        }
    }
}

/// A hash of a random password, verified against when the e-mail is unknown
/// so that a failed login takes as long whether or not the account exists.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut pw = [0u8; 16];
        let _ = getrandom::fill(&mut pw);
        hash_password(&pw).unwrap_or_default()
    })
}

/// The caller of an authenticated request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User id.
    pub user_id: i64,
    /// Normalised e-mail.
    pub email: String,
    /// Organisation id.
    pub org_id: i64,
    /// Organisation name.
    pub org: String,
    /// Role.
    pub role: Role,
    /// The device the session is bound to.
    pub device_id: String,
    /// SHA-256 of the session token.
    pub token_hash: Vec<u8>,
    /// When the session ends however it is used (UTC ms): nothing derived
    /// from it (a send ticket) may outlive it.
    pub session_expires_at: i64,
}

/// A new session's token, shown to the client once.
pub struct NewSession {
    /// The bearer token.
    pub token: Zeroizing<String>,
    /// SHA-256 of the token, the only form the server keeps.
    pub token_hash: Vec<u8>,
}

/// A fresh 256-bit secret from the OS CSPRNG, as `PREFIX` + base64url, with
/// its SHA-256 (a secret of full entropy needs no slow hash): the one maker
/// of session tokens and single sign-on grants.
pub fn random_secret(prefix: &str) -> Result<(Zeroizing<String>, Vec<u8>)> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let secret = Zeroizing::new(format!("{prefix}{}", B64URL.encode(raw.as_ref())));
    let hash = token_hash(&secret);
    Ok((secret, hash))
}

impl NewSession {
    /// A fresh 256-bit token.
    pub fn generate() -> Result<Self> {
        let (token, token_hash) = random_secret("mst_")?;
        Ok(NewSession { token, token_hash })
    }
}

/// A short, stable label of a session for the audit trail: the first bytes
/// of a hash of its token hash (revealing nothing usable), so that the
/// events of one session can be told apart from another's.
pub fn session_label(token_hash: &[u8]) -> String {
    let d = Sha256::digest(token_hash);
    hex::encode(&d[..6])
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A user's row, with whether it matches its seal.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// User id.
    pub id: i64,
    /// Organisation id.
    pub org_id: i64,
    /// Organisation name.
    pub org: String,
    /// Normalised e-mail.
    pub email: String,
    /// Role name as stored.
    pub role: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// Disabled?
    pub disabled: bool,
    /// Locked until (UTC ms).
    pub locked_until: Option<i64>,
    /// Whether role, status and password hash are what the server sealed.
    pub intact: bool,
}

type UserRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    bool,
    Option<i64>,
    Option<Vec<u8>>,
);

macro_rules! user_columns {
    () => {
        (
            users::id,
            users::org_id,
            orgs::name,
            users::email,
            users::role,
            users::password_hash,
            users::disabled,
            users::locked_until,
            users::state_mac,
        )
    };
}

fn user_record(row: UserRow, state_key: &[u8; 32]) -> UserRecord {
    let (id, org_id, org, email, role, password_hash, disabled, locked_until, stored) = row;
    let mut u = UserRecord {
        intact: false,
        id,
        org_id,
        org,
        email,
        role,
        password_hash,
        disabled,
        locked_until,
    };
    u.intact = crate::integrity::matches(stored.as_deref(), &u.state().mac(state_key));
    u
}

impl UserRecord {
    /// The part of the row its seal covers.
    pub fn state(&self) -> crate::integrity::UserState<'_> {
        crate::integrity::UserState {
            id: self.id,
            org_id: self.org_id,
            email: &self.email,
            role: &self.role,
            disabled: self.disabled,
            password_hash: &self.password_hash,
        }
    }
}

/// Every user, each checked against its seal.
pub fn all_users(conn: &mut Conn, state_key: &[u8; 32]) -> Result<Vec<UserRecord>> {
    let rows: Vec<UserRow> = users::table
        .inner_join(orgs::table)
        .order(users::id)
        .select(user_columns!())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| user_record(r, state_key))
        .collect())
}

/// Loads a user by id.
pub fn load_user(conn: &mut Conn, id: i64, state_key: &[u8; 32]) -> Result<Option<UserRecord>> {
    let row: Option<UserRow> = users::table
        .inner_join(orgs::table)
        .filter(users::id.eq(id))
        .select(user_columns!())
        .first(conn)
        .optional()?;
    Ok(row.map(|r| user_record(r, state_key)))
}

/// Loads a user by e-mail (normalised here).
pub fn find_user(conn: &mut Conn, email: &str, state_key: &[u8; 32]) -> Result<Option<UserRecord>> {
    let email = normalise_email(email)?;
    let row: Option<UserRow> = users::table
        .inner_join(orgs::table)
        .filter(users::email.eq(&email))
        .select(user_columns!())
        .first(conn)
        .optional()?;
    Ok(row.map(|r| user_record(r, state_key)))
}

/// How a password check came out (the database is not touched: the
/// counting and the session are changes of [`crate::ops`]).
pub enum PasswordCheck {
    /// Right password for an intact account that may sign in.
    Ok(UserRecord),
    /// No such account (a dummy hash was checked, for equal timing).
    Unknown,
    /// Wrong password for this account.
    Wrong(UserRecord),
    /// Right password, but the account is disabled.
    Disabled(UserRecord),
    /// The account's row fails its seal: never signed in.
    Tampered(UserRecord),
}

/// Checks `password` for `user` (`None`: unknown e-mail). The caller has
/// reserved the attempt first ([`crate::ops::reserve_attempt`]), which is
/// where a locked account is refused.
pub fn check_password(user: Option<UserRecord>, password: &[u8]) -> PasswordCheck {
    let Some(user) = user else {
        verify_password(password, dummy_hash());
        return PasswordCheck::Unknown;
    };
    if !user.intact {
        verify_password(password, dummy_hash());
        return PasswordCheck::Tampered(user);
    }
    if !verify_password(password, &user.password_hash) {
        return PasswordCheck::Wrong(user);
    }
    if user.disabled {
        return PasswordCheck::Disabled(user);
    }
    PasswordCheck::Ok(user)
}

/// How a presented token checked out.
pub enum Authenticated {
    /// A live session on the right device.
    Ok(Principal),
    /// The token is valid but was presented from another device: the
    /// caller ends the session (with its event).
    DeviceMismatch(Principal),
    /// The session or its user was changed outside the server: refused.
    Tampered {
        /// The user's e-mail, as stored.
        email: String,
        /// Their organisation.
        org: String,
        /// What failed.
        what: &'static str,
    },
}

type SessionRow = (
    Vec<u8>,
    i64,
    String,
    i64,
    i64,
    i64,
    Option<Vec<u8>>,
    UserRow,
);

/// Resolves a bearer token to its principal, enforcing device binding,
/// expiry, that the user is still enabled, and that neither the session nor
/// the user was changed outside the server.
pub fn authenticate(
    conn: &mut Conn,
    token: &str,
    device_id: &str,
    policy: &SessionPolicy,
    state_key: &[u8; 32],
    now: i64,
) -> Result<Authenticated> {
    if token.len() > 256 {
        return Err(Error::Unauthorized(INVALID_SESSION));
    }
    authenticate_hash(conn, &token_hash(token), device_id, policy, state_key, now)
}

const INVALID_SESSION: &str = "invalid or expired session";

/// [`authenticate`] for the session whose token hashes to `hash`: what a
/// send ticket ([`crate::http::ticket`]) names, since it carries the hash
/// and never the token.
pub fn authenticate_hash(
    conn: &mut Conn,
    hash: &[u8],
    device_id: &str,
    policy: &SessionPolicy,
    state_key: &[u8; 32],
    now: i64,
) -> Result<Authenticated> {
    let row: Option<SessionRow> = sessions::table
        .inner_join(users::table.inner_join(orgs::table))
        .filter(sessions::token_hash.eq(hash))
        .select((
            sessions::token_hash,
            sessions::user_id,
            sessions::device_id,
            sessions::created_at,
            sessions::last_seen,
            sessions::expires_at,
            sessions::state_mac,
            user_columns!(),
        ))
        .first(conn)
        .optional()?;
    let Some((stored_hash, user_id, bound_device, created_at, last_seen, expires_at, mac, urow)) =
        row
    else {
        return Err(Error::Unauthorized(INVALID_SESSION));
    };
    let user = user_record(urow, state_key);
    let session_mac = crate::integrity::SessionState {
        token_hash: &stored_hash,
        user_id,
        device_id: &bound_device,
        created_at,
        expires_at,
    }
    .mac(state_key);
    if !crate::integrity::matches(mac.as_deref(), &session_mac) {
        return Ok(Authenticated::Tampered {
            email: user.email,
            org: user.org,
            what: "a session that the key server did not make was presented",
        });
    }
    if !user.intact {
        return Ok(Authenticated::Tampered {
            email: user.email,
            org: user.org,
            what: "the account was changed outside the key server; its sessions are refused",
        });
    }
    // `last_seen` is bookkeeping, not sealed: a value from the future (an
    // insider's, or beyond any clock skew between servers) ends the session
    // rather than keeping it alive for ever.
    let idle = now.saturating_sub(last_seen);
    let from_the_future = last_seen > now.saturating_add(CLOCK_SKEW_MS);
    if user.disabled || now >= expires_at || idle >= policy.idle_timeout_ms || from_the_future {
        return Err(Error::Unauthorized(INVALID_SESSION));
    }
    let principal = Principal {
        user_id,
        email: user.email,
        org_id: user.org_id,
        org: user.org,
        role: user.role.parse()?,
        device_id: bound_device.clone(),
        token_hash: hash.to_vec(),
        session_expires_at: expires_at,
    };
    let same_device: bool =
        subtle::ConstantTimeEq::ct_eq(bound_device.as_bytes(), device_id.as_bytes()).into();
    if !same_device {
        return Ok(Authenticated::DeviceMismatch(principal));
    }
    if idle >= LAST_SEEN_GRANULARITY_MS {
        // Bookkeeping for the idle timeout, not access-control state.
        diesel::update(sessions::table.find(hash))
            .set(sessions::last_seen.eq(now))
            .execute(conn)?;
    }
    Ok(Authenticated::Ok(principal))
}

/// Looks up a user's organisation by e-mail (for audit records).
pub fn org_of(conn: &mut Conn, email: &str) -> Result<Option<String>> {
    Ok(users::table
        .inner_join(orgs::table)
        .filter(users::email.eq(email))
        .select(orgs::name)
        .first(conn)
        .optional()?)
}

/// A user as an administrator lists them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserSummary {
    /// The user's id (what the console API names them by).
    pub id: i64,
    /// Normalised e-mail.
    pub email: String,
    /// Organisation.
    pub org: String,
    /// Role.
    pub role: String,
    /// `enabled`, `disabled` or `locked` (locked out after failed sign-ins).
    pub status: &'static str,
    /// Whether the row is as the key server sealed it.
    pub intact: bool,
    /// Live sessions.
    pub sessions: usize,
    /// Distinct devices among them.
    pub devices: usize,
    /// The newest live session's start (UTC ms), if any.
    pub last_sign_in: Option<i64>,
}

/// Every user (of `org` when given), in e-mail order, with their live
/// sessions counted.
pub fn list_users(
    conn: &mut Conn,
    state_key: &[u8; 32],
    org: Option<&str>,
    now: i64,
) -> Result<Vec<UserSummary>> {
    let mut live: std::collections::HashMap<i64, Vec<(String, i64)>> = Default::default();
    for (user, device, created) in sessions::table
        .filter(sessions::revoked.eq(false))
        .filter(sessions::expires_at.gt(now))
        .select((sessions::user_id, sessions::device_id, sessions::created_at))
        .load::<(i64, String, i64)>(conn)?
    {
        live.entry(user).or_default().push((device, created));
    }
    let mut out: Vec<UserSummary> = all_users(conn, state_key)?
        .into_iter()
        .filter(|u| org.is_none_or(|o| u.org == o))
        .map(|u| {
            let s = live.get(&u.id).map(Vec::as_slice).unwrap_or(&[]);
            let mut devices: Vec<&str> = s.iter().map(|(d, _)| d.as_str()).collect();
            devices.sort_unstable();
            devices.dedup();
            UserSummary {
                status: if u.disabled {
                    "disabled"
                } else if u.locked_until.is_some_and(|t| t > now) {
                    "locked"
                } else {
                    "enabled"
                },
                intact: u.intact,
                sessions: s.len(),
                devices: devices.len(),
                last_sign_in: s.iter().map(|(_, c)| *c).max(),
                id: u.id,
                email: u.email,
                org: u.org,
                role: u.role,
            }
        })
        .collect();
    out.sort_by(|a, b| a.email.cmp(&b.email));
    Ok(out)
}

/// An organisation as an administrator lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrgSummary {
    /// Its name.
    pub name: String,
    /// How many users it has.
    pub users: usize,
    /// Who may sign in as a guest (`none`, `any`, or domains).
    pub guests: String,
    /// Whether it signs its staff in through an OpenID Provider.
    pub single_sign_on: bool,
    /// Its receiving endpoint (where the web app's capture page sends
    /// reports), if one is set and intact.
    pub endpoint_url: Option<String>,
}

/// Every organisation, by name.
pub fn list_orgs(conn: &mut Conn, state_key: &[u8; 32]) -> Result<Vec<OrgSummary>> {
    use crate::db::schema::sso_configs;
    let rows: Vec<(i64, String)> = orgs::table
        .order(orgs::name)
        .select((orgs::id, orgs::name))
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, name) in rows {
        let users: i64 = users::table
            .filter(users::org_id.eq(id))
            .count()
            .get_result(conn)?;
        let sso: i64 = sso_configs::table
            .filter(sso_configs::org_id.eq(id))
            .count()
            .get_result(conn)?;
        let guests = crate::signin::guests::policy_of(conn, id, state_key)?;
        let endpoint_url = crate::org_endpoint::endpoint_of(conn, id, state_key)?;
        out.push(OrgSummary {
            name,
            users: usize::try_from(users).unwrap_or(0),
            guests: guests.policy.stored(),
            single_sign_on: sso > 0,
            endpoint_url,
        });
    }
    Ok(out)
}

/// The id of the organisation called `name`; 404 if there is none.
pub fn org_id(conn: &mut Conn, name: &str) -> Result<i64> {
    orgs::table
        .filter(orgs::name.eq(name))
        .select(orgs::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no organisation '{name}'")))
}
