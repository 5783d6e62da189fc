//! Key material and key derivation.
//!
//! Every file, whatever its key mode, reduces to one 256-bit *input keying
//! material* (IKM): the key server's data key, the organisation's static key,
//! or the PBKDF2 output of a password. From that IKM and the random per-file
//! salt in the header, HKDF-SHA256 derives four independent values, each under
//! its own label, so that no key is ever used for two purposes:
//!
//! | label                          | use                                   |
//! |--------------------------------|---------------------------------------|
//! | `medseal v1 encryption key`    | AES-256-CBC key for every chunk        |
//! | `medseal v1 chunk mac key`     | HMAC-SHA256 key for chunk tags         |
//! | `medseal v1 header mac key`    | HMAC-SHA256 key for the header MAC     |
//! | `medseal v1 key check`         | public value that tells a wrong secret |
//!
//! All secret types zeroize themselves on drop.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Length of every symmetric key in the format.
pub const KEY_LEN: usize = 32;

/// PBKDF2-HMAC-SHA256 iterations written by default (OWASP 2023 guidance).
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;
/// Files asking for fewer iterations are refused: they were not written by a
/// conforming sealer and would make a brute-force search cheap.
pub const MIN_PBKDF2_ITERATIONS: u32 = 600_000;
/// Files asking for more are refused: opening one would be a denial of service.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Length of the PBKDF2 salt in a password-mode header.
pub const PBKDF2_SALT_LEN: usize = 16;

pub(crate) const LABEL_ENC: &[u8] = b"medseal v1 encryption key";
pub(crate) const LABEL_CHUNK_MAC: &[u8] = b"medseal v1 chunk mac key";
pub(crate) const LABEL_HEADER_MAC: &[u8] = b"medseal v1 header mac key";
pub(crate) const LABEL_KEY_CHECK: &[u8] = b"medseal v1 key check";
pub(crate) const LABEL_FINGERPRINT: &[u8] = b"medseal v1 static key fingerprint";

/// A 256-bit secret key: a key server data key or an organisation static key.
///
/// Zeroized on drop; `Debug` never prints the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// Wraps 32 raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }

    /// Wraps a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::InvalidParameter(format!(
                "a key must be {KEY_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(Key(arr))
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; KEY_LEN];
        getrandom::fill(&mut k).map_err(|_| Error::Random)?;
        Ok(Key(k))
    }

    /// The raw bytes. Handle with care: do not log or persist unwrapped.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The public fingerprint of a static organisation key, recorded in
    /// static-key headers so that the right key can be found and a wrong one
    /// named. HKDF-SHA256 with no salt and its own label: it reveals nothing
    /// about the key and cannot collide with any derived file key.
    pub fn fingerprint(&self) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut out = [0u8; 32];
        expand(&hk, LABEL_FINGERPRINT, &mut out);
        out
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The secret a caller offers to open a file.
#[derive(Clone, Copy)]
pub enum Secret<'a> {
    /// A 256-bit key (key server data key or static organisation key).
    Key(&'a Key),
    /// A password, as raw bytes (UTF-8 is recommended but not required).
    Password(&'a [u8]),
}

impl std::fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Key(_) => f.write_str("Secret::Key(<redacted>)"),
            Secret::Password(_) => f.write_str("Secret::Password(<redacted>)"),
        }
    }
}

/// Runs PBKDF2-HMAC-SHA256 and returns the 32-byte IKM for password mode.
pub(crate) fn password_ikm(
    password: &[u8],
    salt: &[u8; PBKDF2_SALT_LEN],
    iterations: u32,
) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out.as_mut());
    out
}

/// The per-file keys derived from the IKM and the header salt.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct FileKeys {
    pub(crate) enc: [u8; KEY_LEN],
    pub(crate) chunk_mac: [u8; KEY_LEN],
    pub(crate) header_mac: [u8; KEY_LEN],
    pub(crate) key_check: [u8; KEY_LEN],
}

impl FileKeys {
    /// HKDF-Extract(salt, ikm) then one HKDF-Expand per label.
    pub(crate) fn derive(ikm: &[u8; KEY_LEN], salt: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
        let mut keys = FileKeys {
            enc: [0; KEY_LEN],
            chunk_mac: [0; KEY_LEN],
            header_mac: [0; KEY_LEN],
            key_check: [0; KEY_LEN],
        };
        expand(&hk, LABEL_ENC, &mut keys.enc);
        expand(&hk, LABEL_CHUNK_MAC, &mut keys.chunk_mac);
        expand(&hk, LABEL_HEADER_MAC, &mut keys.header_mac);
        expand(&hk, LABEL_KEY_CHECK, &mut keys.key_check);
        keys
    }

    /// Constant-time comparison of the header's key check value.
    pub(crate) fn key_check_matches(&self, stored: &[u8; KEY_LEN]) -> bool {
        self.key_check.ct_eq(stored).into()
    }

    /// A fresh HMAC instance keyed for chunk tags.
    pub(crate) fn chunk_mac(&self) -> HmacSha256 {
        hmac_with(&self.chunk_mac)
    }

    /// A fresh HMAC instance keyed for the header MAC.
    pub(crate) fn header_mac(&self) -> HmacSha256 {
        hmac_with(&self.header_mac)
    }
}

pub(crate) fn hmac_with(key: &[u8; KEY_LEN]) -> HmacSha256 {
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn expand(hk: &Hkdf<Sha256>, label: &[u8], out: &mut [u8; 32]) {
    // 32 bytes is far below HKDF-SHA256's 255 * 32 output limit, so this
    // cannot fail; the match keeps the invariant visible without a panic path.
    if hk.expand(label, out).is_err() {
        unreachable!("HKDF-SHA256 can always expand 32 bytes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_give_independent_keys() {
        let k = FileKeys::derive(&[7; 32], &[9; 32]);
        let all = [k.enc, k.chunk_mac, k.header_mac, k.key_check];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
    }

    #[test]
    fn salt_changes_every_key() {
        let a = FileKeys::derive(&[7; 32], &[1; 32]);
        let b = FileKeys::derive(&[7; 32], &[2; 32]);
        assert_ne!(a.enc, b.enc);
        assert_ne!(a.chunk_mac, b.chunk_mac);
    }

    #[test]
    fn debug_redacts() {
        let k = Key::from_bytes([0xAB; 32]);
        assert!(!format!("{k:?}").contains("ab"));
        assert!(!format!("{:?}", Secret::Key(&k)).contains("171"));
    }

    #[test]
    fn fingerprint_is_not_the_key() {
        let k = Key::from_bytes([3; 32]);
        assert_ne!(&k.fingerprint(), k.expose_secret());
        assert_eq!(k.fingerprint(), Key::from_bytes([3; 32]).fingerprint());
    }
}
