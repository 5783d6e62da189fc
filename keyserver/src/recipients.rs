//! Whom an organisation's reports may be addressed to: any address (the
//! default), or only addresses in the e-mail domains it lists — a hospital
//! that sends only to its own staff and its partner trusts, say.
//!
//! Enforced where keys are made and recipients added ([`crate::ops`]), in
//! the same transaction as the event: an address outside the policy gets
//! 403, recorded as `key.denied` with the address. The setting is sealed
//! under the keyring like the guest setting; a restriction whose seal fails
//! lets no key be made (fail closed), and `audit verify` compares the
//! stored value with the last `org.updated` event that set it.

use diesel::prelude::*;

use crate::audit::{Action, Actor, Outcome, Tx};
use crate::db::Conn;
use crate::db::schema::orgs;
use crate::error::{Error, Result};
use crate::integrity::{self, Field};
use crate::signin::guests::check_domain;

/// The stored value meaning "no restriction".
pub const ANY: &str = "any";

/// An organisation's recipient policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientPolicy {
    /// Any address.
    Any,
    /// Only addresses in these domains (lower-case, sorted, exact match).
    Domains(Vec<String>),
}

impl RecipientPolicy {
    /// From `org set --allowed-recipient-domains any|DOMAIN…` or the API's
    /// list (an empty list, or `any`, means any).
    pub fn from_words(words: &[String]) -> Result<Self> {
        let words: Vec<String> = words
            .iter()
            .flat_map(|w| w.split([',', ' ']))
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() || words == [ANY] {
            return Ok(RecipientPolicy::Any);
        }
        let mut domains = Vec::with_capacity(words.len());
        for d in words {
            if d == ANY {
                return Err(Error::Invalid(
                    "give any, or one or more e-mail domains, not both".into(),
                ));
            }
            check_domain(&d)?;
            domains.push(d);
        }
        domains.sort();
        domains.dedup();
        Ok(RecipientPolicy::Domains(domains))
    }

    /// As stored: `any`, or the domains comma-separated.
    pub fn stored(&self) -> String {
        match self {
            RecipientPolicy::Any => ANY.to_owned(),
            RecipientPolicy::Domains(d) => d.join(","),
        }
    }

    fn parse_stored(s: &str) -> Self {
        if s == ANY {
            RecipientPolicy::Any
        } else {
            RecipientPolicy::Domains(s.split(',').map(str::to_owned).collect())
        }
    }

    /// Whether a report may be addressed to `email` (normalised).
    pub fn admits(&self, email: &str) -> bool {
        match self {
            RecipientPolicy::Any => true,
            RecipientPolicy::Domains(d) => email
                .rsplit_once('@')
                .is_some_and(|(_, domain)| d.iter().any(|x| x == domain)),
        }
    }

    /// The listed domains (empty for any).
    pub fn domains(&self) -> Vec<String> {
        match self {
            RecipientPolicy::Any => Vec::new(),
            RecipientPolicy::Domains(d) => d.clone(),
        }
    }
}

fn seal(key: &[u8; 32], id: i64, name: &str, stored: &str) -> [u8; 32] {
    integrity::seal(
        key,
        "medseal org recipients v1",
        &[
            Field::Int(id),
            Field::Bytes(name.as_bytes()),
            Field::Bytes(stored.as_bytes()),
        ],
    )
}

/// The policy as the keyring sealed it. `None` when the stored value fails
/// its seal: then nothing may be addressed at all.
pub fn policy_of(
    conn: &mut Conn,
    org_id: i64,
    state_key: &[u8; 32],
) -> Result<Option<RecipientPolicy>> {
    let (name, stored, mac): (String, String, Option<Vec<u8>>) = orgs::table
        .find(org_id)
        .select((orgs::name, orgs::recipient_domains, orgs::recipients_mac))
        .first(conn)?;
    let sealed = integrity::matches(mac.as_deref(), &seal(state_key, org_id, &name, &stored));
    Ok(match (stored.as_str(), sealed, mac.is_none()) {
        // Never set: the default.
        (ANY, _, true) => Some(RecipientPolicy::Any),
        (_, true, _) => Some(RecipientPolicy::parse_stored(&stored)),
        _ => None,
    })
}

/// The first of `recipients` (normalised) that organisation `org_id` may not
/// address a report to, with why; `None` when all may.
pub fn first_refused(
    conn: &mut Conn,
    org_id: i64,
    state_key: &[u8; 32],
    recipients: &[String],
) -> Result<Option<String>> {
    Ok(match policy_of(conn, org_id, state_key)? {
        None => Some(
            "the organisation's recipient policy was changed outside the key server; no report can be addressed until an admin sets it again".into(),
        ),
        Some(p) => recipients.iter().find(|r| !p.admits(r)).map(|r| {
            format!(
                "{r} is outside the domains your organisation allows reports to be sent to ({})",
                p.stored()
            )
        }),
    })
}

/// Sets an organisation's recipient policy, sealed, with `org.updated`
/// ("allowed recipient domains: …", which `audit verify` replays).
pub fn set_policy(
    actor: Actor,
    org: String,
    policy: RecipientPolicy,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        let id: i64 = crate::accounts::org_id(tx.conn, &org)?;
        let stored = policy.stored();
        let mac = seal(tx.state_key(), id, &org, &stored);
        diesel::update(orgs::table.find(id))
            .set((
                orgs::recipient_domains.eq(&stored),
                orgs::recipients_mac.eq(Some(mac.to_vec())),
            ))
            .execute(tx.conn)?;
        tx.record(
            actor
                .event(&org, Action::OrgUpdated, Outcome::Success)
                .detail(format!("allowed recipient domains: {stored}")),
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
        assert_eq!(
            RecipientPolicy::from_words(&[]).unwrap(),
            RecipientPolicy::Any
        );
        assert_eq!(
            RecipientPolicy::from_words(&words(&["ANY"])).unwrap(),
            RecipientPolicy::Any
        );
        let p = RecipientPolicy::from_words(&words(&["St.Example", "partner.example,st.example"]))
            .unwrap();
        assert_eq!(p.stored(), "partner.example,st.example");
        assert!(p.admits("bob@partner.example"));
        assert!(!p.admits("bob@evil-partner.example"));
        assert!(!p.admits("bob@partner.example.evil"));
        assert!(!p.admits("no-at-sign"));
        assert!(RecipientPolicy::from_words(&words(&["any", "st.example"])).is_err());
        assert!(RecipientPolicy::from_words(&words(&["not a domain"])).is_err());
        assert_eq!(RecipientPolicy::parse_stored(&p.stored()), p);
    }
}
