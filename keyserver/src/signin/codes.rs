//! Single-use sign-in codes sent by e-mail.
//!
//! A code is 8 decimal digits drawn uniformly (10^8 values), lives 20
//! minutes, works once, and dies after 5 wrong tries; asking for a new one
//! replaces the old, so an address has at most one live code. Wrong tries
//! also count towards the account's lockout.
//!
//! The store never holds a code. It holds
//!
//! ```text
//! code_mac = HMAC-SHA256(K_code, "medseal login code v1" ‖ f(email) ‖ f(code)
//!                        ‖ i64(org_id) ‖ i64(guest) ‖ i64(created_at) ‖ i64(expires_at))
//! K_code   = HMAC-SHA256(state key, "medseal login code key v1")
//! ```
//!
//! so that a copy of the database does not yield a code (a plain hash of
//! 10^8 values is reversed in a second), and a write to it cannot make one:
//! both take the keyring.
//!
//! Whether a code is sent at all — to a user who may sign in, or to a guest
//! an organisation lets in and that some live report names — is decided in
//! the same transaction as the code row and its `code.sent` event; the
//! caller's answer is the same either way (no enumeration).

use diesel::prelude::*;
use zeroize::Zeroizing;

use super::guests;
use crate::accounts::{self, Role, SessionPolicy};
use crate::audit::{Action, Actor, Outcome, Tx};
use crate::db::schema::{data_keys, key_recipients, login_codes, orgs, sso_configs, users};
use crate::error::{Error, Result};
use crate::integrity::{self, Field};
use crate::ops::{self, NewSessionRow, Refusable};

/// How long a code lives.
pub const CODE_TTL_MS: i64 = 20 * 60 * 1000;

/// Wrong tries after which a code is dead.
pub const MAX_TRIES: i32 = 5;

/// Digits in a code.
pub const DIGITS: usize = 8;

/// A sign-in code, wiped when dropped.
#[derive(Clone)]
pub struct Code(Zeroizing<String>);

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(…)")
    }
}

impl Code {
    /// A fresh code from the OS's CSPRNG, uniform over 10^8 values
    /// (rejection sampling: no value is likelier than another).
    pub fn generate() -> Result<Self> {
        const LIMIT: u32 = 4_200_000_000; // 42 × 10^8 ≤ 2^32
        loop {
            let mut b = [0u8; 4];
            getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
            let n = u32::from_be_bytes(b);
            if n < LIMIT {
                return Ok(Code(Zeroizing::new(format!("{:08}", n % 100_000_000))));
            }
        }
    }

    /// A code as typed: digits, with any spaces or dashes between them.
    pub fn parse(typed: &str) -> Result<Self> {
        let digits: String = typed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Code(Zeroizing::new(digits)))
        } else {
            Err(Error::Invalid(format!("a code is {DIGITS} digits")))
        }
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As printed in a mail: two groups of four.
    pub fn grouped(&self) -> String {
        format!("{} {}", &self.0[..4], &self.0[4..])
    }
}

struct CodeRow<'a> {
    email: &'a str,
    org_id: i64,
    guest: bool,
    created_at: i64,
    expires_at: i64,
}

fn code_mac(state_key: &[u8; 32], row: &CodeRow<'_>, code: &Code) -> [u8; 32] {
    let key = integrity::subkey(state_key, "medseal login code key v1");
    integrity::seal(
        &key,
        "medseal login code v1",
        &[
            Field::Bytes(row.email.as_bytes()),
            Field::Bytes(code.as_str().as_bytes()),
            Field::Int(row.org_id),
            Field::Int(i64::from(row.guest)),
            Field::Int(row.created_at),
            Field::Int(row.expires_at),
        ],
    )
}

/// Whom a code for an address would sign in.
enum Eligible {
    /// A user of this organisation.
    User { id: i64, org_id: i64, org: String },
    /// A guest, let in by this organisation (which has a live report for
    /// them); `user` is their guest account if they have signed in before.
    Guest {
        user: Option<i64>,
        org_id: i64,
        org: String,
    },
    /// Nobody: why not (for the audit trail only).
    No { org: String, why: &'static str },
}

/// The organisation of a live key that names `email` and lets it in as a
/// guest, if any.
fn guest_org(tx: &mut Tx<'_>, email: &str) -> Result<Option<(i64, String)>> {
    let now = tx.now;
    let mut candidates: Vec<(i64, String)> = data_keys::table
        .inner_join(orgs::table)
        .inner_join(key_recipients::table.on(key_recipients::key_id.eq(data_keys::key_id)))
        .filter(key_recipients::email.eq(email))
        .filter(data_keys::revoked_at.is_null())
        .filter(
            data_keys::expires_at
                .is_null()
                .or(data_keys::expires_at.gt(now)),
        )
        .select((orgs::id, orgs::name))
        .distinct()
        .load(tx.conn)?;
    candidates.sort();
    let state_key = *tx.state_key();
    for (id, name) in candidates {
        if guests::policy_of(tx.conn, id, &state_key)?
            .policy
            .admits(email)
        {
            return Ok(Some((id, name)));
        }
    }
    Ok(None)
}

fn has_sso(tx: &mut Tx<'_>, org_id: i64) -> Result<bool> {
    let n: i64 = sso_configs::table
        .filter(sso_configs::org_id.eq(org_id))
        .count()
        .get_result(tx.conn)?;
    Ok(n > 0)
}

fn eligibility(tx: &mut Tx<'_>, email: &str) -> Result<Eligible> {
    let state_key = *tx.state_key();
    let Some(u) = accounts::find_user(tx.conn, email, &state_key)? else {
        return Ok(match guest_org(tx, email)? {
            Some((org_id, org)) => Eligible::Guest {
                user: None,
                org_id,
                org,
            },
            None => Eligible::No {
                org: String::new(),
                why: "no account, and no report for this address from an organisation that lets guests in",
            },
        });
    };
    let no = |why| {
        Ok(Eligible::No {
            org: u.org.clone(),
            why,
        })
    };
    if !u.intact {
        return no("the account was changed outside the key server");
    }
    if u.disabled {
        return no("account disabled");
    }
    match u.role.parse::<Role>()? {
        Role::Service => no("service accounts sign in with a password"),
        Role::Guest => Ok(match guest_org(tx, email)? {
            Some((org_id, org)) => Eligible::Guest {
                user: Some(u.id),
                org_id,
                org,
            },
            None => Eligible::No {
                org: u.org.clone(),
                why: "guest with no live report from an organisation that lets guests in",
            },
        }),
        // Staff of an organisation with single sign-on sign in through it:
        // a mailbox must not get round the provider's own checks (its
        // second factor, its leavers list). Codes remain for guests.
        _ if has_sso(tx, u.org_id)? => {
            no("the organisation signs its staff in through single sign-on")
        }
        _ => Ok(Eligible::User {
            id: u.id,
            org_id: u.org_id,
            org: u.org,
        }),
    }
}

/// A code that was stored and is to be mailed.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The organisation the mail names.
    pub org: String,
    /// Whether it signs in a guest.
    pub guest: bool,
}

/// Stores a new code for `email` if it may sign in with one (replacing any
/// live code), with `code.sent`; otherwise records why not. `None`: nothing
/// to send. The address is normalised by the caller.
pub fn issue(
    actor: Actor,
    email: String,
    code: Code,
) -> impl Fn(&mut Tx<'_>) -> Result<Option<Issued>> + Send + Sync + 'static {
    move |tx| {
        let (org_id, org, guest) = match eligibility(tx, &email)? {
            Eligible::User { org_id, org, .. } => (org_id, org, false),
            Eligible::Guest { org_id, org, .. } => (org_id, org, true),
            Eligible::No { org, why } => {
                tx.record(
                    actor
                        .event(&org, Action::CodeSent, Outcome::Denied)
                        .detail(format!("no code sent: {why}")),
                );
                return Ok(None);
            }
        };
        let row = CodeRow {
            email: &email,
            org_id,
            guest,
            created_at: tx.now,
            expires_at: tx.now + CODE_TTL_MS,
        };
        let mac = code_mac(tx.state_key(), &row, &code);
        diesel::delete(login_codes::table.find(&email)).execute(tx.conn)?;
        diesel::insert_into(login_codes::table)
            .values((
                login_codes::email.eq(&email),
                login_codes::code_mac.eq(mac.to_vec()),
                login_codes::org_id.eq(org_id),
                login_codes::guest.eq(guest),
                login_codes::created_at.eq(row.created_at),
                login_codes::expires_at.eq(row.expires_at),
                login_codes::tries.eq(0),
            ))
            .execute(tx.conn)?;
        tx.record(
            actor
                .event(&org, Action::CodeSent, Outcome::Success)
                .detail(if guest {
                    "sign-in code, as a guest"
                } else {
                    "sign-in code"
                }),
        );
        Ok(Some(Issued { org, guest }))
    }
}

/// The one refusal a caller sees, whatever went wrong.
pub const WRONG: &str = "wrong or expired code";

type StoredCode = (Vec<u8>, i64, bool, i64, i64, i32);

/// Signs in with a code: checks it against the address's live code (in
/// constant time), counts a wrong try (killing the code at the fifth, and
/// counting towards the account's lockout), and on a match uses the code
/// up, makes the guest account if this is a guest's first sign-in, and
/// opens the session — one transaction, with `code.used`, `code.refused` or
/// `code.expired`.
pub fn redeem(
    actor: Actor,
    email: String,
    code: Code,
    row: NewSessionRow,
    policy: SessionPolicy,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    move |tx| {
        let wrong = || Error::Unauthorized(WRONG);
        let stored: Option<StoredCode> = login_codes::table
            .find(&email)
            .select((
                login_codes::code_mac,
                login_codes::org_id,
                login_codes::guest,
                login_codes::created_at,
                login_codes::expires_at,
                login_codes::tries,
            ))
            .first(tx.conn)
            .optional()?;
        let Some((mac, org_id, guest, created_at, expires_at, tries)) = stored else {
            let org = accounts::org_of(tx.conn, &email)?.unwrap_or_default();
            tx.record(
                actor
                    .event(&org, Action::CodeRefused, Outcome::Denied)
                    .detail("no live code for this address"),
            );
            return Ok(Err(wrong()));
        };
        let org: String = orgs::table.find(org_id).select(orgs::name).first(tx.conn)?;
        if expires_at <= tx.now {
            diesel::delete(login_codes::table.find(&email)).execute(tx.conn)?;
            tx.record(
                actor
                    .event(&org, Action::CodeExpired, Outcome::Denied)
                    .detail("the code had expired"),
            );
            return Ok(Err(wrong()));
        }
        let expected = code_mac(
            tx.state_key(),
            &CodeRow {
                email: &email,
                org_id,
                guest,
                created_at,
                expires_at,
            },
            &code,
        );
        if !integrity::matches(Some(&mac), &expected) {
            let tries = tries.saturating_add(1);
            if tries >= MAX_TRIES {
                diesel::delete(login_codes::table.find(&email)).execute(tx.conn)?;
            } else {
                diesel::update(login_codes::table.find(&email))
                    .set(login_codes::tries.eq(tries))
                    .execute(tx.conn)?;
            }
            tx.record(
                actor
                    .event(&org, Action::CodeRefused, Outcome::Denied)
                    .detail(if tries >= MAX_TRIES {
                        format!("wrong code; {MAX_TRIES} wrong tries, the code is dead")
                    } else {
                        format!("wrong code (try {tries} of {MAX_TRIES})")
                    }),
            );
            count_failure(tx, &actor, &email, &policy)?;
            return Ok(Err(wrong()));
        }
        diesel::delete(login_codes::table.find(&email)).execute(tx.conn)?;
        // Decided again now: the account may have been disabled, or the
        // organisation may have stopped letting guests in, since the mail.
        let (user_id, org) = match eligibility(tx, &email)? {
            Eligible::User { id, org, .. } if !guest => (id, org),
            Eligible::Guest {
                user: Some(id),
                org,
                ..
            } if guest => (id, org),
            Eligible::Guest {
                user: None,
                org_id,
                org,
            } if guest => {
                let id = ops::insert_user(tx, &actor, org_id, &org, &email, Role::Guest, "")?;
                (id, org)
            }
            Eligible::No { org, why } => {
                tx.record(
                    actor
                        .event(&org, Action::CodeRefused, Outcome::Denied)
                        .detail(format!("right code, but {why}")),
                );
                return Ok(Err(wrong()));
            }
            _ => {
                tx.record(
                    actor
                        .event(&org, Action::CodeRefused, Outcome::Denied)
                        .detail("right code, but the account changed since it was sent"),
                );
                return Ok(Err(wrong()));
            }
        };
        tx.record(
            actor
                .event(&org, Action::CodeUsed, Outcome::Success)
                .detail(if guest {
                    "signed in with a code, as a guest"
                } else {
                    "signed in with a code"
                }),
        );
        ops::start_session(tx, &actor, user_id, &org, &row)
    }
}

/// A wrong code counts towards the account's lockout, as a wrong password
/// does.
fn count_failure(
    tx: &mut Tx<'_>,
    actor: &Actor,
    email: &str,
    policy: &SessionPolicy,
) -> Result<()> {
    let found: Option<(i64, String)> = users::table
        .inner_join(orgs::table)
        .filter(users::email.eq(email))
        .select((users::id, orgs::name))
        .first(tx.conn)
        .optional()?;
    let Some((id, org)) = found else {
        return Ok(());
    };
    let failures: i32 = diesel::update(users::table.find(id))
        .set(users::failed_logins.eq(users::failed_logins + 1))
        .returning(users::failed_logins)
        .get_result(tx.conn)?;
    if failures >= policy.max_failures {
        ops::lock(tx, actor, id, &org, tx.now + policy.lockout_ms)?;
    }
    Ok(())
}

/// Deletes codes that expired unused, each with `code.expired`.
pub fn purge(actor: Actor) -> impl Fn(&mut Tx<'_>) -> Result<u64> + Send + Sync + 'static {
    move |tx| {
        let dead: Vec<(String, String)> = login_codes::table
            .inner_join(orgs::table)
            .filter(login_codes::expires_at.le(tx.now))
            .select((login_codes::email, orgs::name))
            .load(tx.conn)?;
        for (email, org) in &dead {
            diesel::delete(login_codes::table.find(email)).execute(tx.conn)?;
            tx.record(
                actor
                    .event(org, Action::CodeExpired, Outcome::Success)
                    .detail(format!("unused code for {email} deleted")),
            );
        }
        Ok(dead.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_digits_and_parse_as_typed() {
        for _ in 0..200 {
            let c = Code::generate().unwrap();
            assert_eq!(c.as_str().len(), 8);
            assert!(c.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(Code::parse(" 1234 5678 ").unwrap().as_str(), "12345678");
        assert_eq!(Code::parse("1234-5678").unwrap().as_str(), "12345678");
        assert!(Code::parse("1234567").is_err());
        assert!(Code::parse("1234567a").is_err());
        assert!(Code::parse("١٢٣٤٥٦٧٨").is_err(), "only ASCII digits");
        assert_eq!(Code::parse("12345678").unwrap().grouped(), "1234 5678");
    }

    #[test]
    fn the_mac_binds_address_code_and_lifetime() {
        let k = [9u8; 32];
        let row = |email, expires_at| CodeRow {
            email,
            org_id: 1,
            guest: false,
            created_at: 10,
            expires_at,
        };
        let c = Code::parse("12345678").unwrap();
        let m = code_mac(&k, &row("a@x.org", 20), &c);
        assert_ne!(m, code_mac(&k, &row("b@x.org", 20), &c));
        assert_ne!(m, code_mac(&k, &row("a@x.org", 99), &c));
        assert_ne!(
            m,
            code_mac(&k, &row("a@x.org", 20), &Code::parse("12345679").unwrap())
        );
        assert_ne!(m, code_mac(&[8u8; 32], &row("a@x.org", 20), &c));
    }
}
