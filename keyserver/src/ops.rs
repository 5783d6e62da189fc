//! The operations layer: every change to access-control state, each as a
//! change for the ledger ([`crate::audit::ledger`]) that writes the rows,
//! re-seals their state MAC ([`crate::integrity`]) and records its audit
//! event — all in one transaction. The HTTP handlers and the admin command
//! line build their changes here and nowhere else, so the rule "a change
//! commits with its event or not at all" has exactly one implementation.
//!
//! A change returns `Result<Result<T>>`: the outer error rolls it back
//! (nothing happened: a bad request, a lost race); the inner one is a
//! refusal that *did* happen and is recorded (a failed login that counts
//! towards lockout, a tampered row that is audited as such).
//!
//! Changes never bless state they did not make: a change to a key or user
//! whose stored MAC does not match first refuses, and records
//! `integrity.violation`, instead of re-sealing what someone else wrote.

use diesel::prelude::*;

use crate::accounts::{self, Role, SessionPolicy};
use crate::audit::{Action, Actor, Event, Outcome, Tx};
use crate::db::schema::{data_keys, key_recipients, orgs, sessions, users};
use crate::error::{Error, Result};
use crate::integrity::{self, SessionState, UserState};
use crate::keys::{self, MAX_RECIPIENTS, NewKey};

/// A change's answer: see the module documentation.
pub type Refusable<T> = Result<T>;

/// Records an integrity violation and returns the refusal to give.
pub(crate) fn violation(tx: &mut Tx<'_>, actor: &Actor, org: &str, what: String) -> Error {
    tx.record(
        actor
            .event(org, Action::IntegrityViolation, Outcome::Denied)
            .detail(what.clone()),
    );
    Error::Integrity(what)
}

/// The owning organisation's name and the report id of a key.
fn key_owner(tx: &mut Tx<'_>, key_id: &str) -> Result<(String, String)> {
    data_keys::table
        .inner_join(orgs::table)
        .filter(data_keys::key_id.eq(key_id))
        .select((orgs::name, data_keys::report_id))
        .first(tx.conn)
        .optional()?
        .ok_or_else(|| Error::NotFound("no such key".into()))
}

/// Loads a key's state and checks its seal before a change builds on it.
fn intact_key(
    tx: &mut Tx<'_>,
    actor: &Actor,
    key_id: &str,
) -> Result<Refusable<(integrity::KeyState, String)>> {
    let (org, _) = key_owner(tx, key_id)?;
    let (state, stored) = integrity::load_key_state(tx.conn, key_id)?
        .ok_or_else(|| Error::NotFound("no such key".into()))?;
    if !integrity::matches(stored.as_deref(), &state.mac(tx.state_key())) {
        let what = format!("key {key_id} was changed outside the key server; not changing it");
        return Ok(Err(violation(tx, actor, &org, what)));
    }
    Ok(Ok((state, org)))
}

/// Refuses recipients outside organisation `org_id`'s recipient policy
/// ([`crate::recipients`]), recording `key.denied` with the reason.
fn outside_policy(
    tx: &mut Tx<'_>,
    actor: &Actor,
    org_id: i64,
    org: &str,
    recipients: &[String],
    about: (Option<String>, Option<String>),
) -> Result<Option<Error>> {
    let state_key = *tx.state_key();
    let Some(why) = crate::recipients::first_refused(tx.conn, org_id, &state_key, recipients)?
    else {
        return Ok(None);
    };
    tx.record(
        actor
            .event(org, Action::KeyDenied, Outcome::Denied)
            .detail(why.clone())
            .about(about.0, about.1),
    );
    Ok(Some(Error::Forbidden(why)))
}

/// Creates a data key: its row, its recipients, its seal and `key.created`;
/// refused (with `key.denied`) for a recipient outside the organisation's
/// recipient policy.
pub fn create_key(
    actor: Actor,
    creator: accounts::Principal,
    new: NewKey,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    move |tx| {
        if let Some(refused) = outside_policy(
            tx,
            &actor,
            creator.org_id,
            &creator.org,
            &new.recipients,
            (None, Some(new.report_id.clone())),
        )? {
            return Ok(Err(refused));
        }
        // Report ids are scoped to the organisation: a second key for one
        // of its reports, or a stranger's key claiming it, would make the
        // report's audit trail someone else's story. Writers serialise on
        // the audit head, so this check cannot race another create.
        let taken: i64 = data_keys::table
            .filter(data_keys::org_id.eq(creator.org_id))
            .filter(data_keys::report_id.eq(&new.report_id))
            .count()
            .get_result(tx.conn)?;
        if taken > 0 {
            return Err(Error::Conflict(format!(
                "report {} already has a key in {}; a new report needs a new report id",
                new.report_id, creator.org
            )));
        }
        let (version, wrapped) = tx.wrap(&new.key_id, &new.key)?;
        diesel::insert_into(data_keys::table)
            .values((
                data_keys::key_id.eq(&new.key_id),
                data_keys::report_id.eq(&new.report_id),
                data_keys::org_id.eq(creator.org_id),
                data_keys::creator_id.eq(creator.user_id),
                data_keys::kek_version.eq(version as i32),
                data_keys::wrapped.eq(&wrapped),
                data_keys::created_at.eq(tx.now),
                data_keys::expires_at.eq(new.expires_at),
            ))
            .execute(tx.conn)?;
        let rows: Vec<_> = new
            .recipients
            .iter()
            .map(|r| {
                (
                    key_recipients::key_id.eq(&new.key_id),
                    key_recipients::email.eq(r),
                )
            })
            .collect();
        crate::on_backend!(&mut *tx.conn, |c| diesel::insert_into(
            key_recipients::table
        )
        .values(&rows)
        .execute(c))?;
        let state_key = *tx.state_key();
        integrity::reseal_key(tx.conn, &state_key, &new.key_id)?;
        let mut detail = format!("recipients: {}", new.recipients.join(", "));
        if let Some(t) = new.expires_at {
            detail.push_str(&format!("; expires {}", crate::time::rfc3339(t)));
        }
        tx.record(
            actor
                .event(&creator.org, Action::KeyCreated, Outcome::Success)
                .detail(detail)
                .about(Some(new.key_id.clone()), Some(new.report_id.clone())),
        );
        Ok(Ok(()))
    }
}

/// Adds recipients to a key; answers those that were new.
pub fn add_recipients(
    actor: Actor,
    key_id: String,
    recipients: Vec<String>,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<Vec<String>>> + Send + Sync + 'static {
    move |tx| {
        let (state, org) = match intact_key(tx, &actor, &key_id)? {
            Ok(s) => s,
            Err(refused) => return Ok(Err(refused)),
        };
        if let Some(reason) = keys::gone_reason(state.revoked_at, state.expires_at, tx.now) {
            return Err(Error::Gone(format!("this report's key has been {reason}")));
        }
        let new: Vec<&String> = recipients
            .iter()
            .filter(|r| !state.recipients.contains(r))
            .collect();
        let added: Vec<String> = new.iter().map(|r| (*r).clone()).collect();
        if let Some(refused) = outside_policy(
            tx,
            &actor,
            state.org_id,
            &org,
            &added,
            (Some(key_id.clone()), Some(state.report_id.clone())),
        )? {
            return Ok(Err(refused));
        }
        if state.recipients.len() + new.len() > MAX_RECIPIENTS {
            return Err(Error::Invalid(format!(
                "a key may have at most {MAX_RECIPIENTS} recipients"
            )));
        }
        let rows: Vec<_> = new
            .iter()
            .map(|r| {
                (
                    key_recipients::key_id.eq(&key_id),
                    key_recipients::email.eq(*r),
                )
            })
            .collect();
        if !rows.is_empty() {
            crate::on_backend!(&mut *tx.conn, |c| diesel::insert_into(
                key_recipients::table
            )
            .values(&rows)
            .execute(c))?;
            let state_key = *tx.state_key();
            integrity::reseal_key(tx.conn, &state_key, &key_id)?;
        }
        tx.record(
            actor
                .event(&org, Action::RecipientsAdded, Outcome::Success)
                .detail(format!("added: {}", added.join(", ")))
                .about(Some(key_id.clone()), Some(state.report_id.clone())),
        );
        Ok(Ok(added))
    }
}

/// Ends a change to a key's row the one way every such change ends: the
/// write, the key's new seal, and its event, in the same transaction.
fn change_key(
    tx: &mut Tx<'_>,
    key_id: &str,
    event: Event,
    write: impl FnOnce(&mut crate::db::Conn) -> diesel::QueryResult<usize>,
) -> Result<()> {
    write(tx.conn)?;
    let state_key = *tx.state_key();
    integrity::reseal_key(tx.conn, &state_key, key_id)?;
    tx.record(event);
    Ok(())
}

/// Revokes a key (idempotent: revoking a revoked key changes nothing and
/// records nothing new).
pub fn revoke_key(
    actor: Actor,
    key_id: String,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    move |tx| {
        let (state, org) = match intact_key(tx, &actor, &key_id)? {
            Ok(s) => s,
            Err(refused) => return Ok(Err(refused)),
        };
        if state.revoked_at.is_some() {
            return Ok(Ok(()));
        }
        let now = tx.now;
        let event = actor
            .event(&org, Action::KeyRevoked, Outcome::Success)
            .about(Some(key_id.clone()), Some(state.report_id.clone()));
        change_key(tx, &key_id, event, |c| {
            diesel::update(data_keys::table.filter(data_keys::key_id.eq(&key_id)))
                .set(data_keys::revoked_at.eq(Some(now)))
                .execute(c)
        })?;
        Ok(Ok(()))
    }
}

/// Gives a key a new expiry, or none (`None`): `key.expiry_changed` with
/// "expires T" or "expires never", and the old value. A revoked key stays
/// revoked; an expired one may be given more time by those who manage it.
pub fn set_expiry(
    actor: Actor,
    key_id: String,
    expires_at: Option<i64>,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    move |tx| {
        let (state, org) = match intact_key(tx, &actor, &key_id)? {
            Ok(s) => s,
            Err(refused) => return Ok(Err(refused)),
        };
        if state.revoked_at.is_some() {
            return Err(Error::Gone("this report's key has been revoked".into()));
        }
        keys::check_expiry(expires_at, tx.now)?;
        if state.expires_at == expires_at {
            return Ok(Ok(()));
        }
        let when = |t: Option<i64>| t.map_or_else(|| "never".to_owned(), crate::time::rfc3339);
        let event = actor
            .event(&org, Action::KeyExpiryChanged, Outcome::Success)
            .detail(format!(
                "expires {} (was {})",
                when(expires_at),
                when(state.expires_at)
            ))
            .about(Some(key_id.clone()), Some(state.report_id.clone()));
        change_key(tx, &key_id, event, |c| {
            diesel::update(data_keys::table.filter(data_keys::key_id.eq(&key_id)))
                .set(data_keys::expires_at.eq(expires_at))
                .execute(c)
        })?;
        Ok(Ok(()))
    }
}

/// Records events alone, as a change (for callers that hold a change slot).
pub fn record(events: Vec<Event>) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        for e in &events {
            tx.record(e.clone());
        }
        Ok(())
    }
}

/// A session about to be opened: the token is made outside the change so
/// that a re-run batch cannot make a second one.
#[derive(Clone)]
pub struct NewSessionRow {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// The device it is bound to.
    pub device_id: String,
    /// Absolute expiry, UTC ms.
    pub expires_at: i64,
}

/// Opens a session for a user whose password was just verified: re-checks,
/// inside the transaction, that the account is still as it was (sealed,
/// enabled, not locked), clears its failure count, stores the session with
/// its seal and records `session.created`.
pub fn open_session(
    actor: Actor,
    user_id: i64,
    org: String,
    row: NewSessionRow,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    move |tx| start_session(tx, &actor, user_id, &org, &row)
}

/// The body of [`open_session`], for the changes that sign someone in by
/// other means (a code, a provider's grant) in their own transaction.
pub(crate) fn start_session(
    tx: &mut Tx<'_>,
    actor: &Actor,
    user_id: i64,
    org: &str,
    row: &NewSessionRow,
) -> Result<Refusable<()>> {
    let state_key = *tx.state_key();
    let u = accounts::load_user(tx.conn, user_id, &state_key)?
        .ok_or(Error::Unauthorized("wrong e-mail or password"))?;
    if !u.intact {
        let what = format!(
            "user {} was changed outside the key server; not signing in",
            u.email
        );
        return Ok(Err(violation(tx, actor, org, what)));
    }
    if u.disabled || u.locked_until.is_some_and(|t| t > tx.now) {
        // Disabled or locked between the credential check and now.
        tx.record(
            actor
                .event(org, Action::SessionFailed, Outcome::Denied)
                .detail(if u.disabled {
                    "account disabled"
                } else {
                    "account locked"
                }),
        );
        return Ok(Err(Error::Unauthorized("wrong e-mail or password")));
    }
    diesel::update(users::table.find(user_id))
        .set((
            users::failed_logins.eq(0),
            users::locked_until.eq(None::<i64>),
        ))
        .execute(tx.conn)?;
    let mac = SessionState {
        token_hash: &row.token_hash,
        user_id,
        device_id: &row.device_id,
        created_at: tx.now,
        expires_at: row.expires_at,
    }
    .mac(&state_key);
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(&row.token_hash),
            sessions::user_id.eq(user_id),
            sessions::device_id.eq(&row.device_id),
            sessions::created_at.eq(tx.now),
            sessions::last_seen.eq(tx.now),
            sessions::expires_at.eq(row.expires_at),
            sessions::revoked.eq(false),
            sessions::state_mac.eq(Some(mac.to_vec())),
        ))
        .execute(tx.conn)?;
    tx.record(
        actor
            .event(org, Action::SessionCreated, Outcome::Success)
            .detail(format!(
                "session {}",
                accounts::session_label(&row.token_hash)
            )),
    );
    Ok(Ok(()))
}

/// Whether a login attempt may check its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go on: the attempt is counted already.
    Go,
    /// The account is locked until this time (UTC ms).
    Locked(i64),
}

/// Reserves a password check for a known account **before** it is made:
/// the attempt is counted first, atomically (every server of a pool
/// serialises on the store), and an attempt beyond the limit locks the
/// account without being checked. So however many guesses arrive at once,
/// at most `max_failures` passwords are verified per lock period. A right
/// password then clears the count ([`open_session`]); a wrong one is
/// recorded by [`login_failed`].
pub fn reserve_attempt(
    actor: Actor,
    user_id: i64,
    org: String,
    policy: SessionPolicy,
) -> impl Fn(&mut Tx<'_>) -> Result<Attempt> + Send + Sync + 'static {
    move |tx| {
        let locked_until: Option<i64> = users::table
            .find(user_id)
            .select(users::locked_until)
            .first(tx.conn)?;
        let refused = |tx: &mut Tx<'_>, until: i64| {
            tx.record(
                actor
                    .event(&org, Action::SessionFailed, Outcome::Denied)
                    .detail("account locked"),
            );
            Ok(Attempt::Locked(until))
        };
        if let Some(until) = locked_until.filter(|t| *t > tx.now) {
            return refused(tx, until);
        }
        let attempts: i32 = diesel::update(users::table.find(user_id))
            .set(users::failed_logins.eq(users::failed_logins + 1))
            .returning(users::failed_logins)
            .get_result(tx.conn)?;
        if attempts > policy.max_failures {
            let until = tx.now + policy.lockout_ms;
            lock(tx, &actor, user_id, &org, until)?;
            return refused(tx, until);
        }
        Ok(Attempt::Go)
    }
}

pub(crate) fn lock(
    tx: &mut Tx<'_>,
    actor: &Actor,
    user_id: i64,
    org: &str,
    until: i64,
) -> Result<()> {
    diesel::update(users::table.find(user_id))
        .set((
            users::failed_logins.eq(0),
            users::locked_until.eq(Some(until)),
        ))
        .execute(tx.conn)?;
    tx.record(
        actor
            .event(org, Action::SessionLocked, Outcome::Denied)
            .detail("locked after repeated failures"),
    );
    Ok(())
}

/// A reserved attempt whose password was wrong: records `session.failed`,
/// and locks the account when this was the last attempt the limit allows
/// (`session.locked`). Answers whether it locked the account.
pub fn login_failed(
    actor: Actor,
    user_id: i64,
    org: String,
    detail: &'static str,
    policy: SessionPolicy,
) -> impl Fn(&mut Tx<'_>) -> Result<bool> + Send + Sync + 'static {
    move |tx| {
        let attempts: i32 = users::table
            .find(user_id)
            .select(users::failed_logins)
            .first(tx.conn)?;
        tx.record(
            actor
                .event(&org, Action::SessionFailed, Outcome::Denied)
                .detail(detail),
        );
        let locked_now = attempts >= policy.max_failures;
        if locked_now {
            lock(tx, &actor, user_id, &org, tx.now + policy.lockout_ms)?;
        }
        Ok(locked_now)
    }
}

/// Ends a session (its holder logged out): the row is deleted, so that no
/// flag can be turned back.
pub fn end_session(
    actor: Actor,
    org: String,
    token_hash: Vec<u8>,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        let n = diesel::delete(sessions::table.find(&token_hash)).execute(tx.conn)?;
        if n == 0 {
            return Err(Error::Unauthorized("invalid or expired session"));
        }
        tx.record(
            actor
                .event(&org, Action::SessionEnded, Outcome::Success)
                .detail(format!("session {}", accounts::session_label(&token_hash))),
        );
        Ok(())
    }
}

/// Ends a session whose token was presented from another device, with the
/// event that says so.
pub fn burn_session(
    event: Event,
    token_hash: Vec<u8>,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        diesel::delete(sessions::table.find(&token_hash)).execute(tx.conn)?;
        tx.record(event.clone());
        Ok(())
    }
}

/// Creates an organisation.
pub fn add_org(
    actor: Actor,
    name: String,
) -> impl Fn(&mut Tx<'_>) -> Result<i64> + Send + Sync + 'static {
    move |tx| {
        accounts::check_org_name(&name)?;
        let exists: i64 = orgs::table
            .filter(orgs::name.eq(&name))
            .count()
            .get_result(tx.conn)?;
        if exists > 0 {
            return Err(Error::Conflict(format!(
                "organisation '{name}' already exists"
            )));
        }
        let id = diesel::insert_into(orgs::table)
            .values((orgs::name.eq(&name), orgs::created_at.eq(tx.now)))
            .returning(orgs::id)
            .get_result(tx.conn)?;
        tx.record(
            actor
                .event(&name, Action::OrgCreated, Outcome::Success)
                .detail(format!("organisation {name}")),
        );
        Ok(id)
    }
}

/// Creates a user. The password is hashed by the caller (argon2id takes
/// tens of milliseconds, which must not hold the write lock).
pub fn add_user(
    actor: Actor,
    org: String,
    email: String,
    role: Role,
    password_hash: String,
) -> impl Fn(&mut Tx<'_>) -> Result<i64> + Send + Sync + 'static {
    move |tx| {
        let email = accounts::normalise_email(&email)?;
        let org_id: i64 = crate::accounts::org_id(tx.conn, &org)?;
        insert_user(tx, &actor, org_id, &org, &email, role, &password_hash)
    }
}

/// Adds a user row, sealed, with `user.created` ("{email} as {role}").
/// Also how a guest or a user provisioned by single sign-on comes to be,
/// with an empty password hash that no password ever matches.
pub(crate) fn insert_user(
    tx: &mut Tx<'_>,
    actor: &Actor,
    org_id: i64,
    org: &str,
    email: &str,
    role: Role,
    password_hash: &str,
) -> Result<i64> {
    let exists: i64 = users::table
        .filter(users::email.eq(email))
        .count()
        .get_result(tx.conn)?;
    if exists > 0 {
        return Err(Error::Conflict(format!("user {email} already exists")));
    }
    let id: i64 = diesel::insert_into(users::table)
        .values((
            users::org_id.eq(org_id),
            users::email.eq(email),
            users::role.eq(role.as_str()),
            users::password_hash.eq(password_hash),
            users::disabled.eq(false),
            users::failed_logins.eq(0),
            users::created_at.eq(tx.now),
        ))
        .returning(users::id)
        .get_result(tx.conn)?;
    let mac = UserState {
        id,
        org_id,
        email,
        role: role.as_str(),
        disabled: false,
        password_hash,
    }
    .mac(tx.state_key());
    diesel::update(users::table.find(id))
        .set(users::state_mac.eq(Some(mac.to_vec())))
        .execute(tx.conn)?;
    tx.record(
        actor
            .event(org, Action::UserCreated, Outcome::Success)
            .detail(format!("{email} as {}", role.as_str())),
    );
    Ok(id)
}

/// Which user a change is about.
#[derive(Debug, Clone)]
pub enum UserRef {
    /// By e-mail, in any organisation: the server's own command line.
    Email(String),
    /// By id, only within organisation `org_id`: the console, where an
    /// admin manages their own organisation and no other (another's user
    /// is "no such user", as if it did not exist).
    InOrg {
        /// The user's id.
        id: i64,
        /// The caller's organisation.
        org_id: i64,
    },
}

/// What an administrator changes about a user.
#[derive(Debug, Clone)]
pub enum UserChange {
    /// Disable: every session ends, sign-ins are refused.
    Disable,
    /// Enable again, and lift a lockout.
    Enable,
    /// A new role; their sessions end, so the next sign-in has it.
    Role(Role),
    /// A new password hash (checked and hashed by the caller); their
    /// sessions end and a lockout is lifted.
    Password(String),
    /// End every session they hold, changing nothing else.
    EndSessions,
}

/// Changes a user, with the event the audit replay expects: `user.disabled`
/// / `user.enabled` ("{email}"), `user.role_changed` ("{email} as {role}"),
/// `user.password_changed` ("{email}"). A user row that fails its seal is
/// not changed (and the attempt is recorded).
pub fn change_user(
    actor: Actor,
    who: UserRef,
    change: UserChange,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    move |tx| {
        let found: Option<(i64, String)> = match &who {
            UserRef::Email(email) => users::table
                .inner_join(orgs::table)
                .filter(users::email.eq(accounts::normalise_email(email)?))
                .select((users::id, orgs::name))
                .first(tx.conn)
                .optional()?,
            UserRef::InOrg { id, org_id } => users::table
                .inner_join(orgs::table)
                .filter(users::id.eq(id).and(users::org_id.eq(org_id)))
                .select((users::id, orgs::name))
                .first(tx.conn)
                .optional()?,
        };
        let missing = || {
            Error::NotFound(match &who {
                UserRef::Email(e) => format!("no user {e}"),
                UserRef::InOrg { .. } => "no such user".into(),
            })
        };
        let (id, org) = found.ok_or_else(missing)?;
        let state_key = *tx.state_key();
        let u = accounts::load_user(tx.conn, id, &state_key)?.ok_or_else(missing)?;
        let email = u.email.clone();
        if !u.intact {
            let what = format!("user {email} was changed outside the key server; not changing it");
            return Ok(Err(violation(tx, &actor, &org, what)));
        }
        let unlock = (
            users::failed_logins.eq(0),
            users::locked_until.eq(None::<i64>),
        );
        let (action, detail, end_sessions) = match &change {
            UserChange::Disable => {
                diesel::update(users::table.find(id))
                    .set(users::disabled.eq(true))
                    .execute(tx.conn)?;
                (Action::UserDisabled, email.clone(), true)
            }
            UserChange::Enable => {
                diesel::update(users::table.find(id))
                    .set((users::disabled.eq(false), unlock))
                    .execute(tx.conn)?;
                (Action::UserEnabled, email.clone(), false)
            }
            UserChange::Role(role) => {
                if matches!(role, Role::Guest) || u.role == Role::Guest.as_str() {
                    return Err(Error::Invalid(
                        "guests come and go with their organisation's guest setting; their role cannot be changed".into(),
                    ));
                }
                diesel::update(users::table.find(id))
                    .set(users::role.eq(role.as_str()))
                    .execute(tx.conn)?;
                (
                    Action::UserRoleChanged,
                    format!("{email} as {}", role.as_str()),
                    true,
                )
            }
            UserChange::Password(hash) => {
                // A guest, or staff of an organisation that signs in through
                // its identity provider, has no password on purpose: one set
                // here would get round the guest setting, or the provider's
                // second factor and its leavers list.
                if u.role == Role::Guest.as_str() {
                    return Err(Error::Invalid(
                        "guests sign in with e-mailed codes; they have no password".into(),
                    ));
                }
                let sso: i64 = crate::db::schema::sso_configs::table
                    .filter(crate::db::schema::sso_configs::org_id.eq(u.org_id))
                    .count()
                    .get_result(tx.conn)?;
                if sso > 0 {
                    return Err(Error::Invalid(format!(
                        "{org} signs its staff in through its identity provider; remove its single sign-on first to give {email} a password"
                    )));
                }
                diesel::update(users::table.find(id))
                    .set((users::password_hash.eq(hash), unlock))
                    .execute(tx.conn)?;
                (Action::UserPasswordChanged, email.clone(), true)
            }
            UserChange::EndSessions => (Action::UserSessionsEnded, email.clone(), true),
        };
        integrity::reseal_user(tx.conn, &state_key, id)?;
        if end_sessions {
            diesel::delete(sessions::table.filter(sessions::user_id.eq(id))).execute(tx.conn)?;
        }
        tx.record(
            actor
                .event(&org, action, Outcome::Success)
                .detail(detail.clone()),
        );
        Ok(Ok(()))
    }
}

/// Disables a user and ends every session they hold, at once.
pub fn disable_user(
    actor: Actor,
    email: String,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    change_user(actor, UserRef::Email(email), UserChange::Disable)
}

/// Makes `version` the master-key version that every data key created from
/// now on is wrapped under, with `master_key.rotated`.
pub fn use_master_key(
    actor: Actor,
    version: u32,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        crate::audit::ledger::set_kek_version(tx, version)?;
        tx.record(
            actor
                .event("", Action::MasterKeyRotated, Outcome::Success)
                .detail(format!("now version {version}")),
        );
        Ok(())
    }
}

/// Re-wraps up to `limit` keys stored under versions other than the
/// store's current one; answers how many. Re-wrapping changes no access,
/// so the rotation's events summarise it rather than one per key.
pub fn rewrap_some(limit: i64) -> impl Fn(&mut Tx<'_>) -> Result<u64> + Send + Sync + 'static {
    move |tx| {
        let current = tx.kek_version();
        let batch: Vec<(String, i32, Vec<u8>)> = data_keys::table
            .filter(data_keys::kek_version.ne(current as i32))
            .select((
                data_keys::key_id,
                data_keys::kek_version,
                data_keys::wrapped,
            ))
            .limit(limit)
            .load(tx.conn)?;
        let mut changed = 0;
        for (key_id, version, wrapped) in batch {
            let old = u32::try_from(version)
                .map_err(|_| Error::Keyring(format!("bad version for {key_id}")))?;
            let (v, w) = tx.ring.rewrap(&key_id, old, &wrapped, current)?;
            changed += diesel::update(data_keys::table.filter(data_keys::key_id.eq(&key_id)))
                .set((
                    data_keys::kek_version.eq(v as i32),
                    data_keys::wrapped.eq(w),
                ))
                .execute(tx.conn)? as u64;
        }
        Ok(changed)
    }
}

/// Binds rows from before state MACs, once per store, with the
/// `keyserver.state_bound` marker event (a new store is bound, with nothing
/// to bind, the first time it is opened).
pub fn bind_store(actor: Actor) -> impl Fn(&mut Tx<'_>) -> Result<u64> + Send + Sync + 'static {
    move |tx| {
        use crate::db::schema::{audit_events, audit_head};
        let bound: bool = audit_head::table
            .select(audit_head::state_bound)
            .first(tx.conn)?;
        if bound {
            return Ok(0);
        }
        // A store is bound once, and the keyed log says so: if it already
        // holds the marker, the flag was reset outside the server to have
        // planted rows sealed. (Deleting the marker breaks the chain, which
        // `audit verify` reports.)
        let marked: i64 = audit_events::table
            .filter(audit_events::action.eq(Action::StateBound.as_str()))
            .count()
            .get_result(tx.conn)?;
        if marked > 0 {
            return Err(Error::Integrity(
                "the store's binding flag was reset outside the key server; refusing to bind rows to the keyring".into(),
            ));
        }
        let state_key = *tx.state_key();
        let n = integrity::bind_unbound_rows(tx.conn, &state_key)?;
        diesel::update(audit_head::table)
            .set(audit_head::state_bound.eq(true))
            .execute(tx.conn)?;
        tx.record(
            actor
                .event("", Action::StateBound, Outcome::Success)
                .detail(format!("{n} rows bound to the keyring")),
        );
        Ok(n)
    }
}
