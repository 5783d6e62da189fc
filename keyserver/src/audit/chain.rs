//! The keyed hash chain over audit events.
//!
//! ```text
//! hash_n = HMAC-SHA256(audit_key, "medseal audit v1" ‖ hash_{n-1} ‖ u64(seq) ‖ i64(at)
//!                      ‖ field(actor) ‖ field(org) ‖ field(action) ‖ field(key_id)
//!                      ‖ field(report_id) ‖ field(client_ip) ‖ field(device_id)
//!                      ‖ field(outcome) ‖ field(detail))
//! field(s) = u32(len(s)) ‖ s        field(none) = FF FF FF FF
//! hash_0   = 32 zero bytes
//! ```
//!
//! Every field is length-prefixed so that no two different events encode the
//! same. The chain is keyed: someone who can edit the database but cannot
//! read the keyring cannot recompute the hashes after an edit, a deletion or
//! a reordering, so `audit verify` finds the first broken link.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::Record;

const DOMAIN: &[u8] = b"medseal audit v1";

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0; 32];

fn field(mac: &mut Hmac<Sha256>, v: Option<&str>) {
    match v {
        Some(s) => {
            mac.update(&(s.len() as u32).to_be_bytes());
            mac.update(s.as_bytes());
        }
        None => mac.update(&u32::MAX.to_be_bytes()),
    }
}

/// Computes the hash of `r` given the previous hash.
pub fn link(audit_key: &[u8; 32], prev: &[u8], r: &Record) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(audit_key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(DOMAIN);
    mac.update(prev);
    mac.update(&r.seq.to_be_bytes());
    mac.update(&r.at.to_be_bytes());
    field(&mut mac, Some(&r.actor));
    field(&mut mac, Some(&r.org));
    field(&mut mac, Some(&r.action));
    field(&mut mac, r.key_id.as_deref());
    field(&mut mac, r.report_id.as_deref());
    field(&mut mac, r.client_ip.as_deref());
    field(&mut mac, r.device_id.as_deref());
    field(&mut mac, Some(&r.outcome));
    field(&mut mac, Some(&r.detail));
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            seq: 1,
            at: 1_700_000_000_000,
            actor: "a@x".into(),
            org: "o".into(),
            action: "key.fetched".into(),
            key_id: Some("k".into()),
            report_id: None,
            client_ip: None,
            device_id: None,
            outcome: "success".into(),
            detail: String::new(),
            prev_hash: GENESIS.to_vec(),
            hash: Vec::new(),
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let k = [1u8; 32];
        let base = link(&k, &GENESIS, &rec());
        let mut r = rec();
        r.key_id = None;
        assert_ne!(link(&k, &GENESIS, &r), base);
        let mut r = rec();
        r.report_id = Some(String::new());
        assert_ne!(link(&k, &GENESIS, &r), base, "none differs from empty");
        let mut r = rec();
        r.actor = "a@".into();
        r.org = "xo".into();
        assert_ne!(link(&k, &GENESIS, &r), base, "no ambiguity across fields");
        assert_ne!(link(&[2; 32], &GENESIS, &rec()), base, "keyed");
    }
}
