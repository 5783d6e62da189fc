//! Who may do what with a data key. Pure functions, so that the rules can be
//! read (and tested) in one place.
//!
//! | action            | allowed                                                  |
//! |-------------------|----------------------------------------------------------|
//! | create a key      | clinicians and admins                                    |
//! | fetch a key       | its creator; its listed recipients; a service account of the key's organisation; a guest, only when listed **and** the key's organisation lets their address in |
//! | add recipients    | its creator; admins of the key's organisation            |
//! | revoke            | its creator; admins of the key's organisation            |
//! | read audit events | admins and auditors, for their organisation; a key's creator, for that key |
//!
//! Everyone else is refused with 403 and the refusal is audited — including
//! users of other organisations, whatever their role there.

use crate::accounts::{Principal, Role};

/// The facts about a key that the rules need.
#[derive(Debug, Clone)]
pub struct KeyFacts {
    /// The organisation that owns the key (the creator's).
    pub org_id: i64,
    /// The user who created it.
    pub creator_id: i64,
    /// Whether the caller's e-mail is on the recipient list.
    pub caller_is_recipient: bool,
    /// For a guest caller: whether the key's organisation lets their
    /// address in now ([`crate::signin::guests`]). False for everyone else.
    pub guest_admitted: bool,
}

/// May `p` create data keys?
pub fn may_create(p: &Principal) -> bool {
    matches!(p.role, Role::Clinician | Role::Admin)
}

/// May `p` fetch the key?
pub fn may_fetch(p: &Principal, k: &KeyFacts) -> bool {
    if p.role == Role::Guest {
        return k.caller_is_recipient && k.guest_admitted;
    }
    p.user_id == k.creator_id
        || k.caller_is_recipient
        || (p.role == Role::Service && p.org_id == k.org_id)
}

/// May `p` add recipients to, or revoke, the key?
pub fn may_manage(p: &Principal, k: &KeyFacts) -> bool {
    p.user_id == k.creator_id || (p.role == Role::Admin && p.org_id == k.org_id)
}

/// May `p` share the sealed report as a link? The link goes out under the
/// key server's name, so only those who answer for the report: its creator,
/// or an admin of its organisation (not any recipient, who could otherwise
/// seal a report of their own under the key and hand it to the others).
pub fn may_share(p: &Principal, k: &KeyFacts) -> bool {
    may_create(p) && may_manage(p, k)
}

/// May `p` read the whole audit log of their organisation?
pub fn may_read_org_audit(p: &Principal) -> bool {
    matches!(p.role, Role::Admin | Role::Auditor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, org: i64, role: Role) -> Principal {
        Principal {
            user_id: id,
            email: format!("u{id}@x"),
            org_id: org,
            org: format!("org{org}"),
            role,
            device_id: "d".into(),
            token_hash: vec![],
            session_expires_at: 0,
        }
    }

    const KEY: KeyFacts = KeyFacts {
        org_id: 1,
        creator_id: 10,
        caller_is_recipient: false,
        guest_admitted: false,
    };

    #[test]
    fn fetch_rules() {
        assert!(may_fetch(&user(10, 1, Role::Clinician), &KEY), "creator");
        let recipient = KeyFacts {
            caller_is_recipient: true,
            ..KEY
        };
        assert!(
            may_fetch(&user(20, 2, Role::Clinician), &recipient),
            "recipient"
        );
        assert!(!may_fetch(&user(11, 1, Role::Clinician), &KEY), "colleague");
        assert!(!may_fetch(&user(12, 1, Role::Admin), &KEY), "own admin");
        assert!(
            !may_fetch(&user(13, 2, Role::Admin), &KEY),
            "other org admin"
        );
        assert!(may_fetch(&user(14, 1, Role::Service), &KEY), "own endpoint");
        assert!(
            !may_fetch(&user(15, 2, Role::Service), &KEY),
            "other endpoint"
        );
    }

    #[test]
    fn guests_fetch_only_what_names_them_and_their_organisation_allows() {
        let guest = user(30, 3, Role::Guest);
        let listed = KeyFacts {
            caller_is_recipient: true,
            ..KEY
        };
        assert!(!may_fetch(&guest, &listed), "guests off");
        let admitted = KeyFacts {
            guest_admitted: true,
            ..listed
        };
        assert!(may_fetch(&guest, &admitted));
        let unlisted = KeyFacts {
            caller_is_recipient: false,
            guest_admitted: true,
            ..KEY
        };
        assert!(!may_fetch(&guest, &unlisted), "not a recipient");
        // Never anything else, even of a key addressed to them.
        assert!(!may_create(&guest));
        assert!(!may_manage(&guest, &admitted));
        assert!(!may_share(&guest, &admitted));
        assert!(!may_read_org_audit(&guest));
        // Same org number, guest role: still only as a recipient.
        assert!(!may_fetch(&user(31, 1, Role::Guest), &KEY));
    }

    #[test]
    fn manage_rules() {
        assert!(may_manage(&user(10, 1, Role::Clinician), &KEY));
        assert!(may_manage(&user(12, 1, Role::Admin), &KEY));
        assert!(!may_manage(&user(13, 2, Role::Admin), &KEY));
        assert!(!may_manage(&user(11, 1, Role::Auditor), &KEY));
        let recipient = KeyFacts {
            caller_is_recipient: true,
            ..KEY
        };
        assert!(!may_manage(&user(20, 2, Role::Clinician), &recipient));
    }
}
