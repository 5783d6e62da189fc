//! Opening a sealed file in the browser, independent of JavaScript.
//!
//! The worker gives a reader over the chosen file and a writer that
//! collects plaintext pieces; [`open`] verifies and decrypts in place, one
//! chunk at a time on the calling thread (a browser's WebAssembly has no
//! threads). The caller shows nothing unless [`open`] returns `Ok`: a
//! damaged or tampered file releases no result, though verified chunks
//! before the damage were written to the collector, which the caller drops.

use std::io::{Read, Write};
use std::num::NonZeroUsize;

use base64::Engine;
use medseal_format::{ErrorKind, Header, Key, OpenOptions, Opener, Secret};
use zeroize::Zeroizing;

/// The secret the user or the key server gave.
pub enum Unlock<'a> {
    /// A data key (from the key server) or an organisation key, base64.
    KeyBase64(&'a str),
    /// A password, as typed (its UTF-8 bytes, as the format specifies).
    Password(&'a str),
}

/// Why a file could not be opened, in the words the viewer shows, with the
/// class the page acts on.
#[derive(Debug)]
pub struct ViewError {
    /// `key` (ask again), `damaged` (show "damaged or tampered", nothing
    /// else), `format` (not a medseal file), `policy`, `environment`.
    pub class: &'static str,
    /// One line for the user.
    pub message: String,
}

impl From<medseal_format::Error> for ViewError {
    fn from(e: medseal_format::Error) -> Self {
        let class = match e.kind() {
            ErrorKind::Key => "key",
            ErrorKind::Integrity => "damaged",
            ErrorKind::Format => "format",
            ErrorKind::Policy => "policy",
            ErrorKind::Environment => "environment",
        };
        ViewError {
            class,
            message: e.to_string(),
        }
    }
}

/// The header of a sealed file as JSON (the description `medseal inspect`
/// prints): which key server and key id, or which organisation key, or a
/// password. `sealed_len` is the file's size. Needs no key.
pub fn describe<R: Read>(mut input: R, sealed_len: u64) -> Result<String, ViewError> {
    let header = Header::read_from(&mut input)?;
    Ok(medseal_format::header::describe(&header, Some(sealed_len)).to_string())
}

/// Opens the sealed file `input` into `output`; answers the plaintext
/// length. See the module doc for what a failure leaves in `output`.
pub fn open<R: Read, W: Write>(input: R, unlock: Unlock<'_>, output: W) -> Result<u64, ViewError> {
    let opener = Opener::new(input)?;
    let one = OpenOptions {
        threads: NonZeroUsize::new(1),
    };
    let summary = match unlock {
        Unlock::KeyBase64(b64) => {
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| ViewError {
                        class: "key",
                        message: "the key is not base64".into(),
                    })?,
            );
            let key = Key::from_slice(&raw)?;
            opener.open(Secret::Key(&key), output, &one)?
        }
        Unlock::Password(pw) => opener.open(Secret::Password(pw.as_bytes()), output, &one)?,
    };
    Ok(summary.plaintext_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use medseal_format::{SealKey, SealOptions, seal};

    fn sealed_with(key: &Key, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(
            SealKey::KeyServer {
                key,
                origin: "https://keys.st-elsewhere.example",
                key_id: "k_1",
            },
            plain,
            &mut out,
            &SealOptions::default(),
        )
        .unwrap();
        out
    }

    #[test]
    fn a_report_opens_with_its_key_and_is_described_without_it() {
        let key = Key::generate().unwrap();
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = sealed_with(&key, &plain);
        let doc: serde_json::Value =
            serde_json::from_str(&describe(&sealed[..], sealed.len() as u64).unwrap()).unwrap();
        assert_eq!(doc["keyserver"], "https://keys.st-elsewhere.example");
        assert_eq!(doc["key_id"], "k_1");
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.expose_secret());
        let mut out = Vec::new();
        let n = open(&sealed[..], Unlock::KeyBase64(&b64), &mut out).unwrap();
        assert_eq!(n, plain.len() as u64);
        assert_eq!(out, plain);
    }

    #[test]
    fn damage_and_wrong_keys_are_classed_for_the_page() {
        let key = Key::generate().unwrap();
        let mut sealed = sealed_with(&key, &[7u8; 100_000]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.expose_secret());
        let other = Key::generate().unwrap();
        let wrong = base64::engine::general_purpose::STANDARD.encode(other.expose_secret());
        let e = open(&sealed[..], Unlock::KeyBase64(&wrong), Vec::new()).unwrap_err();
        assert_eq!(e.class, "key", "{}", e.message);
        let at = sealed.len() - 40;
        sealed[at] ^= 1;
        let e = open(&sealed[..], Unlock::KeyBase64(&b64), Vec::new()).unwrap_err();
        assert_eq!(e.class, "damaged", "{}", e.message);
        let e = open(
            &b"not sealed at all"[..],
            Unlock::Password("pw"),
            Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.class, "format", "{}", e.message);
    }
}
