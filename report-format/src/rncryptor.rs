//! The RNCryptor v3 data format, read and written for interoperability.
//!
//! ```text
//! | 3 | options | encryption salt (8) | HMAC salt (8) | IV (16) | ciphertext | HMAC (32) |
//!                 \_______ only when options = 1 (password) _______/
//! ```
//!
//! AES-256-CBC with PKCS#7 padding, then HMAC-SHA256 over everything before
//! the HMAC. Password mode derives both keys with PBKDF2-HMAC-SHA1, 10,000
//! iterations, 8-byte salts; key mode takes an encryption key and an HMAC
//! key of 32 bytes each. Published at
//! <https://github.com/RNCryptor/RNCryptor-Spec> with test vectors, which
//! `tests/rncryptor.rs` checks in both directions.
//!
//! Why medseal's own format is preferred (docs/format.md, "RNCryptor v3"):
//! the message is one piece, so nothing can be released before the whole
//! message is read and authenticated (this module buffers it, up to
//! [`MAX_MESSAGE_LEN`]); PBKDF2-SHA1 at 10,000 iterations is cheap to brute
//! force; there is no key check, so a wrong password and altered data give
//! the same error; and the header carries no key identification.

use aes::Aes256;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use hmac::Mac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The only version this module reads and writes.
pub const VERSION: u8 = 3;
/// PBKDF2-HMAC-SHA1 iterations fixed by the format.
pub const PBKDF2_ITERATIONS: u32 = 10_000;
/// Largest message accepted: the format must be held whole to be checked.
pub const MAX_MESSAGE_LEN: usize = 1 << 30;
const SALT_LEN: usize = 8;
const IV_LEN: usize = 16;
const HMAC_LEN: usize = 32;

/// The secret for an RNCryptor message.
#[derive(Clone, Copy)]
pub enum RnSecret<'a> {
    /// Password mode (options = 1). UTF-8 bytes, as the format expects.
    Password(&'a [u8]),
    /// Key mode (options = 0): the encryption key and the HMAC key.
    Keys {
        /// AES-256 key.
        encryption: &'a [u8; 32],
        /// HMAC-SHA256 key.
        hmac: &'a [u8; 32],
    },
}

/// Salts and IV for one message: random in use, fixed for test vectors.
pub struct Nonces {
    /// Salt of the encryption key (password mode).
    pub encryption_salt: [u8; SALT_LEN],
    /// Salt of the HMAC key (password mode).
    pub hmac_salt: [u8; SALT_LEN],
    /// The CBC IV.
    pub iv: [u8; IV_LEN],
}

impl Nonces {
    /// Fresh random salts and IV.
    pub fn random() -> Result<Self> {
        let mut b = [0u8; SALT_LEN * 2 + IV_LEN];
        getrandom::fill(&mut b).map_err(|_| Error::Random)?;
        let mut n = Nonces {
            encryption_salt: [0; SALT_LEN],
            hmac_salt: [0; SALT_LEN],
            iv: [0; IV_LEN],
        };
        n.encryption_salt.copy_from_slice(&b[..SALT_LEN]);
        n.hmac_salt.copy_from_slice(&b[SALT_LEN..SALT_LEN * 2]);
        n.iv.copy_from_slice(&b[SALT_LEN * 2..]);
        Ok(n)
    }
}

/// Whether `prefix` looks like an RNCryptor v3 message (not proof).
pub fn looks_like(prefix: &[u8]) -> bool {
    matches!(prefix, [VERSION, 0 | 1, ..])
}

fn pbkdf2_sha1(password: &[u8], salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, PBKDF2_ITERATIONS, out.as_mut());
    out
}

fn keys(
    secret: RnSecret<'_>,
    enc_salt: &[u8],
    hmac_salt: &[u8],
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    match secret {
        RnSecret::Password(pw) => (pbkdf2_sha1(pw, enc_salt), pbkdf2_sha1(pw, hmac_salt)),
        RnSecret::Keys { encryption, hmac } => (Zeroizing::new(*encryption), Zeroizing::new(*hmac)),
    }
}

fn mac(key: &[u8; 32], data: &[u8]) -> [u8; HMAC_LEN] {
    let mut m = crate::keys::hmac_with(key);
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Encrypts `plaintext` with the given salts and IV.
pub fn encrypt_with(secret: RnSecret<'_>, plaintext: &[u8], n: &Nonces) -> Result<Vec<u8>> {
    if plaintext.len() > MAX_MESSAGE_LEN - 100 {
        return Err(Error::InvalidParameter(
            "too large for an RNCryptor message".into(),
        ));
    }
    let mut out = vec![VERSION];
    let (enc_key, hmac_key) = match secret {
        RnSecret::Password(_) => {
            out.push(1);
            out.extend_from_slice(&n.encryption_salt);
            out.extend_from_slice(&n.hmac_salt);
            keys(secret, &n.encryption_salt, &n.hmac_salt)
        }
        RnSecret::Keys { .. } => {
            out.push(0);
            keys(secret, &[], &[])
        }
    };
    out.extend_from_slice(&n.iv);
    let start = out.len();
    let padded = (plaintext.len() / 16 + 1) * 16;
    out.extend_from_slice(plaintext);
    out.resize(start + padded, 0);
    let enc = cbc::Encryptor::<Aes256>::new(&(*enc_key).into(), &n.iv.into());
    enc.encrypt_padded::<Pkcs7>(&mut out[start..], plaintext.len())
        .map_err(|_| Error::InvalidParameter("padding".into()))?;
    let tag = mac(&hmac_key, &out);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Encrypts `plaintext` with fresh random salts and IV.
pub fn encrypt(secret: RnSecret<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
    encrypt_with(secret, plaintext, &Nonces::random()?)
}

/// Checks and decrypts a whole message. Nothing is decrypted unless the
/// HMAC verifies (compared in constant time).
pub fn decrypt(secret: RnSecret<'_>, message: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(Error::InvalidParameter(format!(
            "RNCryptor messages over {MAX_MESSAGE_LEN} bytes are not read"
        )));
    }
    let (version, options) = match message {
        [v, o, ..] => (*v, *o),
        _ => return Err(Error::NotRncryptor("too short")),
    };
    if version != VERSION {
        return Err(Error::NotRncryptor("only version 3 is read"));
    }
    let header_len = match (options, secret) {
        (1, RnSecret::Password(_)) => 2 + 2 * SALT_LEN + IV_LEN,
        (0, RnSecret::Keys { .. }) => 2 + IV_LEN,
        (1, _) => {
            return Err(Error::SecretKindMismatch {
                mode: "an RNCryptor password",
                needs: "--password-file",
            });
        }
        (0, _) => {
            return Err(Error::SecretKindMismatch {
                mode: "RNCryptor keys",
                needs: "the encryption and HMAC keys",
            });
        }
        _ => return Err(Error::NotRncryptor("unknown options byte")),
    };
    if message.len() < header_len + 16 + HMAC_LEN {
        return Err(Error::NotRncryptor("too short"));
    }
    let (body, tag) = message.split_at(message.len() - HMAC_LEN);
    let (enc_salt, hmac_salt) = if options == 1 {
        (&body[2..10], &body[10..18])
    } else {
        (&[][..], &[][..])
    };
    let (enc_key, hmac_key) = keys(secret, enc_salt, hmac_salt);
    if !bool::from(mac(&hmac_key, body).ct_eq(tag)) {
        return Err(Error::RncryptorAuthFailed);
    }
    let iv = &body[header_len - IV_LEN..header_len];
    let ciphertext = &body[header_len..];
    if ciphertext.len() % 16 != 0 {
        return Err(Error::NotRncryptor("the ciphertext is not whole blocks"));
    }
    let mut iv16 = [0u8; IV_LEN];
    iv16.copy_from_slice(iv);
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    let dec = cbc::Decryptor::<Aes256>::new(&(*enc_key).into(), &iv16.into());
    let len = dec
        .decrypt_padded::<Pkcs7>(&mut plain)
        .map(<[u8]>::len)
        .map_err(|_| Error::MalformedPadding("the RNCryptor message".into()))?;
    plain.truncate(len);
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_padding_under_a_valid_hmac_is_damage_not_format() {
        let (enc_key, hmac_key) = ([1u8; 32], [2u8; 32]);
        let iv = [3u8; IV_LEN];
        // One block ending in 0x00: not PKCS#7.
        let mut block = [0u8; 16];
        cbc::Encryptor::<Aes256>::new(&enc_key.into(), &iv.into())
            .encrypt_padded::<cbc::cipher::block_padding::NoPadding>(&mut block, 16)
            .unwrap();
        let mut msg = vec![3u8, 0];
        msg.extend_from_slice(&iv);
        msg.extend_from_slice(&block);
        let tag = mac(&hmac_key, &msg);
        msg.extend_from_slice(&tag);
        let err = decrypt(
            RnSecret::Keys {
                encryption: &enc_key,
                hmac: &hmac_key,
            },
            &msg,
        )
        .unwrap_err();
        assert!(matches!(err, Error::MalformedPadding(_)), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Integrity);
    }
}
