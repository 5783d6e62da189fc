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
use crate::time::now_ms;

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
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Clinician => "clinician",
            Role::Service => "service",
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

/// Lower-cases and checks an e-mail address.
pub fn normalise_email(raw: &str) -> Result<String> {
    let e = raw.trim().to_lowercase();
    let ok = e.len() <= 254
        && e.split('@').count() == 2
        && !e.starts_with('@')
        && !e.ends_with('@')
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',');
    if ok {
        Ok(e)
    } else {
        Err(Error::Invalid(format!(
            "'{}' is not an e-mail address",
            raw.trim()
        )))
    }
}

/// Checks an organisation name.
fn check_org_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "an organisation name is 1 to 200 characters without control characters".into(),
        ));
    }
    Ok(())
}

/// Checks a device id as sent in `X-Device-Id`.
pub fn check_device_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::Invalid(
            "a device id is 1 to 128 printable ASCII characters".into(),
        ));
    }
    Ok(())
}

fn hash_password(password: &[u8]) -> Result<String> {
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
        Err(_) => false,
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

/// Creates an organisation.
pub fn add_org(conn: &mut Conn, name: &str) -> Result<i64> {
    check_org_name(name)?;
    let exists: i64 = orgs::table
        .filter(orgs::name.eq(name))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Err(Error::Conflict(format!(
            "organisation '{name}' already exists"
        )));
    }
    Ok(diesel::insert_into(orgs::table)
        .values((orgs::name.eq(name), orgs::created_at.eq(now_ms())))
        .returning(orgs::id)
        .get_result(conn)?)
}

/// Creates a user in `org`.
pub fn add_user(
    conn: &mut Conn,
    org: &str,
    email: &str,
    role: Role,
    password: &[u8],
) -> Result<i64> {
    let email = normalise_email(email)?;
    let org_id: i64 = orgs::table
        .filter(orgs::name.eq(org))
        .select(orgs::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no organisation '{org}'")))?;
    let exists: i64 = users::table
        .filter(users::email.eq(&email))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Err(Error::Conflict(format!("user {email} already exists")));
    }
    let hash = hash_password(password)?;
    Ok(diesel::insert_into(users::table)
        .values((
            users::org_id.eq(org_id),
            users::email.eq(&email),
            users::role.eq(role.as_str()),
            users::password_hash.eq(hash),
            users::disabled.eq(false),
            users::failed_logins.eq(0),
            users::created_at.eq(now_ms()),
        ))
        .returning(users::id)
        .get_result(conn)?)
}

/// Disables a user and ends every session they hold, at once.
pub fn disable_user(conn: &mut Conn, email: &str) -> Result<String> {
    let email = normalise_email(email)?;
    crate::write_tx!(conn, |c| {
        let found: Option<(i64, String)> = users::table
            .inner_join(orgs::table)
            .filter(users::email.eq(&email))
            .select((users::id, orgs::name))
            .first(c)
            .optional()?;
        let (id, org) = found.ok_or_else(|| Error::NotFound(format!("no user {email}")))?;
        diesel::update(users::table.find(id))
            .set(users::disabled.eq(true))
            .execute(c)?;
        diesel::update(sessions::table.filter(sessions::user_id.eq(id)))
            .set(sessions::revoked.eq(true))
            .execute(c)?;
        Ok::<_, Error>(org)
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
}

/// A new session's token, shown to the client once.
pub struct NewSession {
    /// The bearer token.
    pub token: Zeroizing<String>,
    /// Absolute expiry, UTC ms.
    pub expires_at: i64,
}

/// How a login attempt ended.
pub enum Login {
    /// Logged in.
    Ok(Principal, NewSession),
    /// Wrong e-mail or password. `org` is empty for unknown e-mails;
    /// `locked_now` is set when this failure locked the account.
    Failed {
        /// The account's organisation, if the account exists.
        org: String,
        /// Whether this failure locked the account.
        locked_now: bool,
    },
    /// The account is locked until this time (UTC ms).
    Locked {
        /// The account's organisation.
        org: String,
        /// When the lock ends.
        until: i64,
    },
    /// Right password, but the account is disabled.
    Disabled {
        /// The account's organisation.
        org: String,
    },
}

type UserRow = (i64, i64, String, String, String, bool, Option<i64>, String);

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Checks a password and, if right, opens a session bound to `device_id`.
pub fn login(
    conn: &mut Conn,
    email: &str,
    password: &[u8],
    device_id: &str,
    policy: &SessionPolicy,
) -> Result<Login> {
    check_device_id(device_id)?;
    let email = normalise_email(email)?;
    let row: Option<UserRow> = users::table
        .inner_join(orgs::table)
        .filter(users::email.eq(&email))
        .select((
            users::id,
            users::org_id,
            users::role,
            users::password_hash,
            orgs::name,
            users::disabled,
            users::locked_until,
            users::email,
        ))
        .first(conn)
        .optional()?;
    let Some((user_id, org_id, role, stored, org, disabled, locked_until, email)) = row else {
        verify_password(password, dummy_hash());
        return Ok(Login::Failed {
            org: String::new(),
            locked_now: false,
        });
    };
    let now = now_ms();
    if let Some(until) = locked_until.filter(|u| *u > now) {
        return Ok(Login::Locked { org, until });
    }
    if !verify_password(password, &stored) {
        // Atomic increment: concurrent failures on several servers all count.
        let failures: i32 = diesel::update(users::table.find(user_id))
            .set(users::failed_logins.eq(users::failed_logins + 1))
            .returning(users::failed_logins)
            .get_result(conn)?;
        let locked_now = failures >= policy.max_failures;
        if locked_now {
            diesel::update(users::table.find(user_id))
                .set((
                    users::failed_logins.eq(0),
                    users::locked_until.eq(Some(now + policy.lockout_ms)),
                ))
                .execute(conn)?;
        }
        return Ok(Login::Failed { org, locked_now });
    }
    if disabled {
        return Ok(Login::Disabled { org });
    }
    let role: Role = role.parse()?;
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let token = Zeroizing::new(format!("mst_{}", B64URL.encode(raw.as_ref())));
    let hash = token_hash(&token);
    let expires_at = now + policy.absolute_timeout_ms;
    diesel::update(users::table.find(user_id))
        .set((
            users::failed_logins.eq(0),
            users::locked_until.eq(None::<i64>),
        ))
        .execute(conn)?;
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(&hash),
            sessions::user_id.eq(user_id),
            sessions::device_id.eq(device_id),
            sessions::created_at.eq(now),
            sessions::last_seen.eq(now),
            sessions::expires_at.eq(expires_at),
            sessions::revoked.eq(false),
        ))
        .execute(conn)?;
    Ok(Login::Ok(
        Principal {
            user_id,
            email,
            org_id,
            org,
            role,
            device_id: device_id.to_owned(),
            token_hash: hash,
        },
        NewSession { token, expires_at },
    ))
}

/// How a presented token checked out.
pub enum Authenticated {
    /// A live session on the right device.
    Ok(Principal),
    /// The token is valid but was presented from another device; the session
    /// has been revoked.
    DeviceMismatch(Principal),
}

type SessionRow = (
    i64,
    String,
    i64,
    i64,
    bool,
    i64,
    String,
    String,
    String,
    bool,
);

/// Resolves a bearer token to its principal, enforcing device binding,
/// expiry, and that the user is still enabled.
pub fn authenticate(
    conn: &mut Conn,
    token: &str,
    device_id: &str,
    policy: &SessionPolicy,
) -> Result<Authenticated> {
    const INVALID: &str = "invalid or expired session";
    if token.len() > 256 {
        return Err(Error::Unauthorized(INVALID));
    }
    let hash = token_hash(token);
    let row: Option<SessionRow> = sessions::table
        .inner_join(users::table.inner_join(orgs::table))
        .filter(sessions::token_hash.eq(&hash))
        .select((
            users::id,
            users::email,
            users::org_id,
            sessions::last_seen,
            sessions::revoked,
            sessions::expires_at,
            sessions::device_id,
            orgs::name,
            users::role,
            users::disabled,
        ))
        .first(conn)
        .optional()?;
    let Some((
        user_id,
        email,
        org_id,
        last_seen,
        revoked,
        expires_at,
        bound_device,
        org,
        role,
        disabled,
    )) = row
    else {
        return Err(Error::Unauthorized(INVALID));
    };
    let now = now_ms();
    if revoked || disabled || now >= expires_at || now - last_seen >= policy.idle_timeout_ms {
        return Err(Error::Unauthorized(INVALID));
    }
    let principal = Principal {
        user_id,
        email,
        org_id,
        org,
        role: role.parse()?,
        device_id: bound_device.clone(),
        token_hash: hash.clone(),
    };
    let same_device: bool =
        subtle::ConstantTimeEq::ct_eq(bound_device.as_bytes(), device_id.as_bytes()).into();
    if !same_device {
        diesel::update(sessions::table.find(&hash))
            .set(sessions::revoked.eq(true))
            .execute(conn)?;
        return Ok(Authenticated::DeviceMismatch(principal));
    }
    if now - last_seen >= LAST_SEEN_GRANULARITY_MS {
        diesel::update(sessions::table.find(&hash))
            .set(sessions::last_seen.eq(now))
            .execute(conn)?;
    }
    Ok(Authenticated::Ok(principal))
}

/// Ends a session.
pub fn end_session(conn: &mut Conn, token_hash: &[u8]) -> Result<()> {
    diesel::update(sessions::table.find(token_hash))
        .set(sessions::revoked.eq(true))
        .execute(conn)?;
    Ok(())
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
