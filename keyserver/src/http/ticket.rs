//! Send tickets: how the web app proves its session to a receiving
//! endpoint.
//!
//! The app's session token lives in an HttpOnly cookie ([`super::browser`])
//! that no script can read, but an endpoint checks a sender by calling
//! `GET /v1/sessions/current` with the sender's token and device id. The
//! app therefore asks for a ticket (`POST /v1/sessions/ticket`) and hands
//! that over instead. A ticket:
//!
//! - is accepted by `GET /v1/sessions/current` only, which then answers
//!   exactly as for the session itself; every other call answers it 401, so
//!   an endpoint (or whoever reads its traffic) holding one can learn who
//!   sent a report, and nothing else;
//! - names the session, not the token (it carries the token's SHA-256,
//!   which is what the store keeps), so the session must still be live,
//!   unrevoked and its user enabled every time it is shown;
//! - is bound to the session's device (the MAC covers the device id, so it
//!   works only with the same `X-Device-Id`);
//! - lives 10 minutes at most, and never past the session's own expiry.
//!
//! It is stateless: nothing is stored, and every server of a pool that
//! shares the keyring verifies it. Wire format (base64url without padding):
//!
//! ```text
//! "mstk_" ‖ b64url( token_hash[32] ‖ expires_at_ms: i64 BE [8] ‖ tag[32] )
//! tag = HMAC-SHA256(K, "medseal send ticket v1\0" ‖ token_hash ‖ expires_at_ms BE ‖ device_id)
//! K   = HMAC-SHA256(state key, "medseal send ticket key v1")   (crate::integrity::subkey)
//! ```
//!
//! The prefix differs from a session token's (`mst_`) so that a ticket is
//! told apart without a database read, and so that a log scrubber or a
//! person can tell which is which. Tickets are secrets for their ten
//! minutes: they are never logged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::Mac;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// What every ticket starts with.
pub const PREFIX: &str = "mstk_";

/// How long a ticket lives at most: long enough to upload a large video
/// and poll its delivery, short enough that a copy left in an endpoint's
/// memory or a proxy's log is soon worthless.
pub const LIFETIME_MS: i64 = 10 * 60 * 1000;

const HASH_LEN: usize = 32;
const TAG_LEN: usize = 32;
const PAYLOAD_LEN: usize = HASH_LEN + 8 + TAG_LEN;

/// The one answer to a ticket that does not check out, whatever the reason
/// (forged, altered, expired, shown from another device): a prober learns
/// nothing from the difference.
const REFUSED: &str = "invalid or expired send ticket";

/// Whether `token` is a ticket rather than a session token.
pub fn is_ticket(token: &str) -> bool {
    token.starts_with(PREFIX)
}

fn tag(state_key: &[u8; 32], token_hash: &[u8], expires_at: i64, device_id: &str) -> [u8; 32] {
    let key = crate::integrity::subkey(state_key, "medseal send ticket key v1");
    let mut mac = crate::integrity::mac(&key);
    mac.update(b"medseal send ticket v1\0");
    mac.update(token_hash);
    mac.update(&expires_at.to_be_bytes());
    mac.update(device_id.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A ticket for the session whose token hashes to `token_hash`, bound to
/// `device_id`, expiring at `expires_at` (UTC ms).
pub fn issue(
    state_key: &[u8; 32],
    token_hash: &[u8],
    device_id: &str,
    expires_at: i64,
) -> Result<Zeroizing<String>> {
    if token_hash.len() != HASH_LEN {
        return Err(Error::Internal("a session hash is 32 bytes".into()));
    }
    let mut payload = Zeroizing::new(Vec::with_capacity(PAYLOAD_LEN));
    payload.extend_from_slice(token_hash);
    payload.extend_from_slice(&expires_at.to_be_bytes());
    payload.extend_from_slice(&tag(state_key, token_hash, expires_at, device_id));
    Ok(Zeroizing::new(format!(
        "{PREFIX}{}",
        B64URL.encode(payload.as_slice())
    )))
}

/// When a ticket made at `now` for a session ending at `session_ends`
/// expires: [`LIFETIME_MS`] later, or with the session if that is sooner.
pub fn expiry(now: i64, session_ends: i64) -> i64 {
    now.saturating_add(LIFETIME_MS).min(session_ends)
}

/// The session token hash a ticket names, if the ticket is one this
/// keyring made for `device_id` and it has not expired at `now`. The
/// session itself is checked by the caller, as for a token.
pub fn verify(state_key: &[u8; 32], ticket: &str, device_id: &str, now: i64) -> Result<Vec<u8>> {
    let refused = || Error::Unauthorized(REFUSED);
    let body = ticket.strip_prefix(PREFIX).ok_or_else(refused)?;
    // The exact length of an encoded payload: nothing longer is decoded.
    if body.len() != (PAYLOAD_LEN * 4).div_ceil(3) {
        return Err(refused());
    }
    let payload = Zeroizing::new(B64URL.decode(body).map_err(|_| refused())?);
    if payload.len() != PAYLOAD_LEN {
        return Err(refused());
    }
    let (hash, rest) = payload.split_at(HASH_LEN);
    let (expires, given) = rest.split_at(8);
    let mut be = [0u8; 8];
    be.copy_from_slice(expires);
    let expires_at = i64::from_be_bytes(be);
    let want = tag(state_key, hash, expires_at, device_id);
    let same: bool = subtle::ConstantTimeEq::ct_eq(given, &want[..]).into();
    if !same || now >= expires_at {
        return Err(refused());
    }
    Ok(hash.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [5u8; 32];
    const HASH: [u8; 32] = [0xab; 32];

    #[test]
    fn a_ticket_names_its_session_for_its_device_until_it_expires() {
        let t = issue(&KEY, &HASH, "phone-1", 1_000_000).unwrap();
        assert!(t.starts_with(PREFIX) && is_ticket(&t));
        assert_eq!(t.len(), PREFIX.len() + 96);
        assert!(
            t[PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(verify(&KEY, &t, "phone-1", 999_999).unwrap(), HASH);
        // Expired, other device, other keyring: the same refusal.
        for (key, device, now) in [
            (KEY, "phone-1", 1_000_000),
            (KEY, "phone-2", 0),
            ([6u8; 32], "phone-1", 0),
        ] {
            match verify(&key, &t, device, now) {
                Err(Error::Unauthorized(m)) => assert_eq!(m, REFUSED),
                other => panic!("{other:?}"),
            }
        }
        assert!(!is_ticket("mst_abc"));
    }

    #[test]
    fn every_bit_of_a_ticket_counts() {
        let t = issue(&KEY, &HASH, "phone-1", 1_000_000).unwrap();
        let raw = B64URL.decode(&t[PREFIX.len()..]).unwrap();
        for i in 0..raw.len() * 8 {
            let mut flipped = raw.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            let forged = format!("{PREFIX}{}", B64URL.encode(&flipped));
            assert!(verify(&KEY, &forged, "phone-1", 0).is_err(), "bit {i}");
        }
        for junk in ["", PREFIX, "mstk_!!!!", &format!("{}A", t.as_str())] {
            assert!(verify(&KEY, junk, "phone-1", 0).is_err(), "{junk}");
        }
    }

    #[test]
    fn a_ticket_never_outlives_its_session() {
        assert_eq!(expiry(0, i64::MAX), LIFETIME_MS);
        assert_eq!(expiry(0, 5_000), 5_000);
    }
}
