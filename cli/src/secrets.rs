//! Reading secrets from files (or stdin): key files and password files.
//!
//! Secrets never come from the command line itself, where other users of the
//! machine could read them from the process list.

use std::io::Read;

use anyhow::{Context, Result, bail};
use base64::Engine;
use medseal_format::{KEY_LEN, Key};
use zeroize::Zeroizing;

use crate::files::InputPath;

/// Upper bound on a secret file: anything larger is not a key or password.
const MAX_SECRET_FILE: u64 = 64 * 1024;

fn read_secret_file(path: &InputPath) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    path.open_raw()?
        .take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {path}"))?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        bail!("{path} is too large to be a key or password file");
    }
    Ok(buf)
}

/// A password file holds the password; one trailing newline is not part of it.
pub fn read_password(path: &InputPath) -> Result<Zeroizing<Vec<u8>>> {
    let mut pw = read_secret_file(path)?;
    if pw.ends_with(b"\n") {
        pw.pop();
        if pw.ends_with(b"\r") {
            pw.pop();
        }
    }
    if pw.is_empty() {
        bail!("the password in {path} is empty");
    }
    Ok(pw)
}

/// A key file holds 32 raw bytes, or their hex or base64 encoding.
pub fn read_key(path: &InputPath) -> Result<Key> {
    let raw = read_secret_file(path)?;
    parse_key(&raw).with_context(|| format!("{path} is not a key file"))
}

fn parse_key(raw: &[u8]) -> Result<Key> {
    Ok(Key::from_slice(&parse_key_bytes(raw, KEY_LEN)?)?)
}

/// A 32-byte key held in zeroized memory.
pub type RawKey = Zeroizing<[u8; 32]>;

/// An RNCryptor key-mode key file: 64 bytes (the encryption key, then the
/// HMAC key), raw or as hex or base64.
pub fn read_key_pair(path: &InputPath) -> Result<(RawKey, RawKey)> {
    let raw = read_secret_file(path)?;
    let bytes = parse_key_bytes(&raw, 2 * KEY_LEN).with_context(|| {
        format!("{path} is not an RNCryptor key file (64 bytes: encryption key, then HMAC key)")
    })?;
    let mut enc = Zeroizing::new([0u8; 32]);
    let mut mac = Zeroizing::new([0u8; 32]);
    enc.copy_from_slice(&bytes[..KEY_LEN]);
    mac.copy_from_slice(&bytes[KEY_LEN..]);
    Ok((enc, mac))
}

/// `len` bytes, given as hex, base64 (standard or URL-safe, padded or
/// not) or raw; surrounding whitespace (a final newline) is ignored in the
/// text forms.
///
/// Text is tried first; exactly `len` bytes that are not a text key of
/// that length are raw, except all hex digits: a 64-hex-digit key (32
/// bytes) offered where 64 bytes are needed is an error naming its length,
/// not 64 "raw" bytes of ASCII.
fn parse_key_bytes(raw: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = std::str::from_utf8(raw).ok().map(str::trim).filter(|t| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b))
    });
    let Some(text) = text else {
        if raw.len() == len {
            return Ok(Zeroizing::new(raw.to_vec()));
        }
        bail!(
            "expected {len} raw bytes, {} hex digits or base64 ({} bytes here)",
            2 * len,
            raw.len()
        );
    };
    let is_hex = text.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && text.len() == 2 * len {
        return Ok(Zeroizing::new(hex::decode(text)?));
    }
    let b64 = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(text).ok())
        .map(Zeroizing::new);
    match b64 {
        Some(bytes) if bytes.len() == len => Ok(bytes),
        // Text in the base64 alphabet that is no key of this length, but
        // exactly `len` bytes long: raw after all (a key of letters).
        _ if !is_hex && raw.len() == len => Ok(Zeroizing::new(raw.to_vec())),
        _ if is_hex => bail!(
            "{} hex digits make a key of {} bytes; this needs {len} bytes ({} hex digits)",
            text.len(),
            text.len() / 2,
            2 * len
        ),
        Some(bytes) => bail!(
            "the key must be {len} bytes, this base64 holds {}",
            bytes.len()
        ),
        None => bail!("expected {len} raw bytes, {} hex digits or base64", 2 * len),
    }
}

/// Asks for a password on the terminal (twice when `confirm`).
pub fn prompt_password(prompt: &str, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("give the password with --password-file (use - for stdin)");
    }
    let first = Zeroizing::new(rpassword::prompt_password(prompt)?);
    if confirm {
        let second = Zeroizing::new(rpassword::prompt_password("Again: ")?);
        if first != second {
            bail!("the passwords differ");
        }
    }
    if first.is_empty() {
        bail!("the password is empty");
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encodings() {
        let k = [7u8; 32];
        let want = Key::from_bytes(k).fingerprint();
        let hex = hex::encode(k);
        let b64 = base64::engine::general_purpose::STANDARD.encode(k);
        for raw in [
            k.to_vec(),
            hex.into_bytes(),
            format!("{b64}\n").into_bytes(),
        ] {
            assert_eq!(parse_key(&raw).unwrap().fingerprint(), want);
        }
        assert!(parse_key(b"short").is_err());
        assert!(parse_key(&[0xff; 31]).is_err());
        // URL-safe base64, with or without padding.
        let k = [0xfbu8; 32];
        for e in [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let text = format!("{}\r\n", e.encode(k));
            assert_eq!(*parse_key_bytes(text.as_bytes(), 32).unwrap(), k);
        }
    }

    #[test]
    fn a_password_file_loses_one_trailing_newline_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let read = |bytes: &[u8]| {
            let p = d.path().join("pw");
            std::fs::write(&p, bytes).unwrap();
            read_password(&InputPath::File(p)).map(|pw| pw.to_vec())
        };
        assert_eq!(read(b"pw\n").unwrap(), b"pw");
        assert_eq!(read(b"pw\r\n").unwrap(), b"pw");
        assert_eq!(read(b"pw\n\n").unwrap(), b"pw\n");
        assert_eq!(read(b" pw ").unwrap(), b" pw ");
        // No normalisation: composed and decomposed "é" are two passwords.
        assert_ne!(
            read("caf\u{e9}".as_bytes()).unwrap(),
            read("cafe\u{301}".as_bytes()).unwrap()
        );
        assert!(read(b"").is_err());
        assert!(read(b"\n").is_err());
    }

    #[test]
    fn rncryptor_key_pairs_in_every_form() {
        let pair: Vec<u8> = (0..64u8).collect();
        let hex = hex::encode(&pair);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pair);
        for raw in [
            pair.clone(),
            hex.clone().into_bytes(),
            format!("{hex}\n").into_bytes(),
            format!("{b64}\n").into_bytes(),
        ] {
            assert_eq!(*parse_key_bytes(&raw, 64).unwrap(), pair);
        }
        // 64 hex digits are 32 bytes, not 64 raw bytes of ASCII, with or
        // without a newline, and the error says so.
        let short = hex::encode(&pair[..32]);
        for raw in [short.clone(), format!("{short}\n")] {
            let err = parse_key_bytes(raw.as_bytes(), 64).unwrap_err().to_string();
            assert!(
                err.contains("64 hex digits make a key of 32 bytes"),
                "{err}"
            );
        }
    }
}
