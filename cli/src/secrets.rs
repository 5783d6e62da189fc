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

/// `len` bytes, given raw or as hex or base64.
fn parse_key_bytes(raw: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>> {
    if raw.len() == len {
        return Ok(Zeroizing::new(raw.to_vec()));
    }
    let expected = || anyhow::anyhow!("expected {len} raw bytes, {} hex digits or base64", 2 * len);
    let text = std::str::from_utf8(raw)
        .map(str::trim)
        .map_err(|_| expected())?;
    let bytes = Zeroizing::new(
        if text.len() == 2 * len && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| expected())?
        },
    );
    if bytes.len() != len {
        bail!("the key must be {len} bytes, this one is {}", bytes.len());
    }
    Ok(bytes)
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
    }
}
