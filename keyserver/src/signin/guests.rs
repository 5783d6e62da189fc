//! Guests: people from other organisations who open reports addressed to
//! them, signing in with an e-mailed code instead of an account.
//!
//! Each organisation says whose addresses it lets in — every address, a
//! list of e-mail domains, or nobody (the default). A guest session may
//! fetch only keys of an organisation that lets its address in and that
//! name that exact address as a recipient; nothing else.
//!
//! The setting is access-control state: a value other than `none` counts
//! only when the row carries its seal ([`crate::integrity`], label
//! `medseal org settings v1`), so that a write to the database cannot open
//! an organisation to guests. A broken seal reads as `none`.

use diesel::prelude::*;

use crate::audit::{Action, Actor, Outcome, Tx};
use crate::db::Conn;
use crate::db::schema::orgs;
use crate::error::{Error, Result};
use crate::integrity::{self, Field};

/// Whose addresses an organisation lets in as guests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestPolicy {
    /// Nobody (the default).
    None,
    /// Every address.
    Any,
    /// Addresses in these domains (lower-case, exact match).
    Domains(Vec<String>),
}

impl GuestPolicy {
    /// Parses the command line's words: `any`, `none`, or domains.
    pub fn from_words(words: &[String]) -> Result<Self> {
        let words: Vec<String> = words
            .iter()
            .flat_map(|w| w.split(','))
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        match words.as_slice() {
            [] => Err(Error::Invalid(
                "--guests takes any, none, or one or more e-mail domains".into(),
            )),
            [w] if w == "none" => Ok(GuestPolicy::None),
            [w] if w == "any" => Ok(GuestPolicy::Any),
            _ => {
                let mut domains = Vec::new();
                for d in words {
                    check_domain(&d)?;
                    if !domains.contains(&d) {
                        domains.push(d);
                    }
                }
                domains.sort();
                Ok(GuestPolicy::Domains(domains))
            }
        }
    }

    /// The stored form.
    pub fn stored(&self) -> String {
        match self {
            GuestPolicy::None => "none".into(),
            GuestPolicy::Any => "any".into(),
            GuestPolicy::Domains(d) => d.join(","),
        }
    }

    fn from_stored(s: &str) -> Self {
        match s {
            "none" | "" => GuestPolicy::None,
            "any" => GuestPolicy::Any,
            list => GuestPolicy::Domains(list.split(',').map(str::to_owned).collect()),
        }
    }

    /// Whether the (normalised) address `email` may sign in as a guest.
    pub fn admits(&self, email: &str) -> bool {
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        match self {
            GuestPolicy::None => false,
            GuestPolicy::Any => true,
            GuestPolicy::Domains(list) => list.iter().any(|d| d == domain),
        }
    }
}

/// Checks an e-mail domain as given to `--guests` or `--allowed-domain`.
pub fn check_domain(d: &str) -> Result<()> {
    let ok = d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "'{}' is not an e-mail domain",
            crate::audit::ledger::clean(d, 253)
        )))
    }
}

fn settings_mac(key: &[u8; 32], id: i64, name: &str, guests: &str) -> [u8; 32] {
    integrity::seal(
        key,
        "medseal org settings v1",
        &[
            Field::Int(id),
            Field::Bytes(name.as_bytes()),
            Field::Bytes(guests.as_bytes()),
        ],
    )
}

/// An organisation's guest policy as the keyring sealed it; `intact` is
/// false when a permissive value lacks its seal (the policy then reads
/// as [`GuestPolicy::None`]).
#[derive(Debug, Clone)]
pub struct SealedPolicy {
    /// The policy in force.
    pub policy: GuestPolicy,
    /// Whether the stored value matched its seal.
    pub intact: bool,
}

/// The guest policy of organisation `org_id`.
pub fn policy_of(conn: &mut Conn, org_id: i64, state_key: &[u8; 32]) -> Result<SealedPolicy> {
    let (name, guests, mac): (String, String, Option<Vec<u8>>) = orgs::table
        .find(org_id)
        .select((orgs::name, orgs::guests, orgs::settings_mac))
        .first(conn)?;
    Ok(read_policy(
        org_id,
        &name,
        &guests,
        mac.as_deref(),
        state_key,
    ))
}

fn read_policy(
    id: i64,
    name: &str,
    guests: &str,
    mac: Option<&[u8]>,
    state_key: &[u8; 32],
) -> SealedPolicy {
    let policy = GuestPolicy::from_stored(guests);
    if policy == GuestPolicy::None {
        return SealedPolicy {
            policy,
            intact: true,
        };
    }
    if integrity::matches(mac, &settings_mac(state_key, id, name, guests)) {
        SealedPolicy {
            policy,
            intact: true,
        }
    } else {
        SealedPolicy {
            policy: GuestPolicy::None,
            intact: false,
        }
    }
}

/// Sets an organisation's guest policy, sealed, with `org.updated`.
pub fn set_policy(
    actor: Actor,
    org: String,
    policy: GuestPolicy,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        let id: i64 = crate::accounts::org_id(tx.conn, &org)?;
        let stored = policy.stored();
        let mac = settings_mac(tx.state_key(), id, &org, &stored);
        diesel::update(orgs::table.find(id))
            .set((
                orgs::guests.eq(&stored),
                orgs::settings_mac.eq(Some(mac.to_vec())),
            ))
            .execute(tx.conn)?;
        tx.record(
            actor
                .event(&org, Action::OrgUpdated, Outcome::Success)
                .detail(format!("guests: {stored}")),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn policies_parse_and_admit_exact_domains() {
        let p = GuestPolicy::from_words(&words(&["Partner.Example", "gp.example"])).unwrap();
        assert_eq!(p.stored(), "gp.example,partner.example");
        assert!(p.admits("bob@partner.example"));
        assert!(!p.admits("bob@evil-partner.example"));
        assert!(!p.admits("bob@sub.partner.example"));
        assert!(
            GuestPolicy::from_words(&words(&["any"]))
                .unwrap()
                .admits("x@y.z")
        );
        assert!(
            !GuestPolicy::from_words(&words(&["none"]))
                .unwrap()
                .admits("x@y.z")
        );
        assert!(GuestPolicy::from_words(&words(&["not a domain"])).is_err());
        assert!(GuestPolicy::from_words(&[]).is_err());
    }

    #[test]
    fn a_permissive_policy_counts_only_with_its_seal() {
        let k = [3u8; 32];
        let mac = settings_mac(&k, 1, "St Elsewhere", "any");
        assert_eq!(
            read_policy(1, "St Elsewhere", "any", Some(&mac), &k).policy,
            GuestPolicy::Any
        );
        // Written by someone without the keyring: read as none, flagged.
        let forged = read_policy(1, "St Elsewhere", "any", None, &k);
        assert_eq!(forged.policy, GuestPolicy::None);
        assert!(!forged.intact);
        // Moved to another organisation: the seal names the row.
        assert!(!read_policy(2, "St Elsewhere", "any", Some(&mac), &k).intact);
        // "none" needs no seal.
        assert!(read_policy(1, "x", "none", None, &k).intact);
    }
}
