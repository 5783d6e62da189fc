//! The file header: what it holds, how it is laid out, and how it is checked.
//!
//! Layout (all integers big-endian; see `docs/format.md` for the full spec):
//!
//! ```text
//! offset   size  field
//! 0        8     magic  89 4D 53 45 41 4C 0D 0A  ("\x89MSEAL\r\n")
//! 8        1     version = 1
//! 9        1     key mode: 1 key server, 2 static key, 3 password
//! 10       1     log2 of the chunk size, 12..=20
//! 11       1     reserved, must be 0
//! 12       32    salt (random per file; HKDF salt)
//! 44       2     L = length of key info, <= 1024
//! 46       L     key info (per key mode)
//! 46+L     32    key check  = HKDF-Expand(PRK, "medseal v1 key check")
//! 78+L     32    header MAC = HMAC-SHA256(header mac key, bytes 0 .. 78+L)
//! 110+L    32    checksum   = SHA-256(bytes 0 .. 110+L)
//! ```
//!
//! The header is readable without any key (that is what `inspect` shows). The
//! checksum is not a security measure: it only lets the opener say "damaged"
//! rather than "wrong key" when bits have flipped. Authenticity comes from the
//! header MAC, which is also folded into every chunk tag.

use std::io::Read;

use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::keys::{
    FileKeys, KEY_LEN, MAX_PBKDF2_ITERATIONS, MIN_PBKDF2_ITERATIONS, PBKDF2_SALT_LEN, Secret,
    password_ikm,
};

/// The eight magic bytes that open every medseal file. Like PNG's, the high
/// first byte and the CR LF catch transfers that mangle binary data.
pub const MAGIC: [u8; 8] = *b"\x89MSEAL\r\n";
/// The only format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Smallest chunk size the format allows (4 KiB).
pub const MIN_CHUNK_LOG2: u8 = 12;
/// Largest chunk size the format allows (1 MiB): bounds the opener's memory.
pub const MAX_CHUNK_LOG2: u8 = 20;
/// Chunk size written by default (1 MiB): large enough that per-chunk
/// overhead (48 bytes, one HMAC finalisation) is negligible.
pub const DEFAULT_CHUNK_LOG2: u8 = 20;
/// Length of the random per-file HKDF salt.
pub const SALT_LEN: usize = 32;
/// Upper bound on the key info field.
pub const MAX_KEY_INFO_LEN: usize = 1024;
/// Longest key server origin accepted in a header.
pub const MAX_ORIGIN_LEN: usize = 512;
/// Longest key id accepted in a header.
pub const MAX_KEY_ID_LEN: usize = 128;

const FIXED_LEN: usize = 46;
const TRAILER_LEN: usize = 3 * 32;

const MODE_KEY_SERVER: u8 = 1;
const MODE_STATIC_KEY: u8 = 2;
const MODE_PASSWORD: u8 = 3;

/// How the opener obtains the 256-bit input keying material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMode {
    /// A per-report data key held by a key server.
    KeyServer {
        /// Origin of the key server, e.g. `https://keys.example.org`.
        origin: String,
        /// Key id on that server.
        key_id: String,
    },
    /// An organisation's static key, identified by its public fingerprint.
    StaticKey {
        /// [`Key::fingerprint`] of the organisation key.
        fingerprint: [u8; 32],
        /// Optional human label for the key (may be empty).
        key_id: String,
    },
    /// A password stretched with PBKDF2-HMAC-SHA256.
    Password {
        /// PBKDF2 iteration count.
        iterations: u32,
        /// PBKDF2 salt.
        salt: [u8; PBKDF2_SALT_LEN],
    },
}

impl KeyMode {
    /// Stable short name, as shown by `inspect`.
    pub fn name(&self) -> &'static str {
        match self {
            KeyMode::KeyServer { .. } => "keyserver",
            KeyMode::StaticKey { .. } => "static-key",
            KeyMode::Password { .. } => "password",
        }
    }

    fn code(&self) -> u8 {
        match self {
            KeyMode::KeyServer { .. } => MODE_KEY_SERVER,
            KeyMode::StaticKey { .. } => MODE_STATIC_KEY,
            KeyMode::Password { .. } => MODE_PASSWORD,
        }
    }

    fn encode_info(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            KeyMode::KeyServer { origin, key_id } => {
                out.extend_from_slice(&(origin.len() as u16).to_be_bytes());
                out.extend_from_slice(origin.as_bytes());
                out.push(key_id.len() as u8);
                out.extend_from_slice(key_id.as_bytes());
            }
            KeyMode::StaticKey {
                fingerprint,
                key_id,
            } => {
                out.extend_from_slice(fingerprint);
                out.push(key_id.len() as u8);
                out.extend_from_slice(key_id.as_bytes());
            }
            KeyMode::Password { iterations, salt } => {
                out.extend_from_slice(&iterations.to_be_bytes());
                out.extend_from_slice(salt);
            }
        }
        out
    }

    fn decode_info(code: u8, info: &[u8]) -> Result<Self> {
        let mut cur = Cursor(info);
        let mode = match code {
            MODE_KEY_SERVER => {
                let n = u16::from_be_bytes(cur.take_array()?) as usize;
                let origin = ascii_field(cur.take(n)?)?;
                let n = cur.take_array::<1>()?[0] as usize;
                let key_id = ascii_field(cur.take(n)?)?;
                KeyMode::KeyServer { origin, key_id }
            }
            MODE_STATIC_KEY => {
                let fingerprint = cur.take_array()?;
                let n = cur.take_array::<1>()?[0] as usize;
                let key_id = ascii_field(cur.take(n)?)?;
                KeyMode::StaticKey {
                    fingerprint,
                    key_id,
                }
            }
            MODE_PASSWORD => KeyMode::Password {
                iterations: u32::from_be_bytes(cur.take_array()?),
                salt: cur.take_array()?,
            },
            _ => return Err(Error::HeaderDamaged("has an unknown key mode")),
        };
        if !cur.0.is_empty() {
            return Err(Error::HeaderDamaged("key info has trailing bytes"));
        }
        mode.validate()
            .map_err(|_| Error::HeaderDamaged("key info is invalid"))?;
        Ok(mode)
    }

    /// Checks the field limits that the sealer must respect.
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            KeyMode::KeyServer { origin, key_id } => {
                check_text(origin, 1, MAX_ORIGIN_LEN, "key server origin")?;
                check_key_id(key_id, 1)?;
            }
            KeyMode::StaticKey { key_id, .. } => check_key_id(key_id, 0)?,
            KeyMode::Password { .. } => {}
        }
        Ok(())
    }
}

fn check_text(s: &str, min: usize, max: usize, what: &str) -> Result<()> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::InvalidParameter(format!(
            "{what} must be {min} to {max} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

fn check_key_id(id: &str, min: usize) -> Result<()> {
    check_text(id, min, MAX_KEY_ID_LEN, "key id")?;
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(Error::InvalidParameter(
            "key id may hold only letters, digits and . _ : -".into(),
        ));
    }
    Ok(())
}

fn ascii_field(bytes: &[u8]) -> Result<String> {
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Error::HeaderDamaged("key info is not printable ASCII"));
    }
    // All bytes are ASCII, so this conversion cannot fail.
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::HeaderDamaged("key info is not ASCII"))
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::HeaderDamaged("key info is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

/// A parsed, checksum-verified header. Not yet authenticated: that needs the
/// key, see [`Header::unlock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    mode: KeyMode,
    chunk_log2: u8,
    salt: [u8; SALT_LEN],
    key_check: [u8; KEY_LEN],
    mac: [u8; 32],
    /// The exact bytes, from the magic up to and including the checksum.
    raw: Vec<u8>,
}

impl Header {
    /// Builds and authenticates a new header. `ikm` must be the input keying
    /// material for `mode`.
    pub(crate) fn seal(
        mode: KeyMode,
        chunk_log2: u8,
        salt: [u8; SALT_LEN],
        keys: &FileKeys,
    ) -> Result<Self> {
        check_chunk_log2(chunk_log2).map_err(Error::InvalidParameter)?;
        mode.validate()?;
        let info = mode.encode_info();
        let mut raw = Vec::with_capacity(FIXED_LEN + info.len() + TRAILER_LEN);
        raw.extend_from_slice(&MAGIC);
        raw.extend_from_slice(&[VERSION, mode.code(), chunk_log2, 0]);
        raw.extend_from_slice(&salt);
        raw.extend_from_slice(&(info.len() as u16).to_be_bytes());
        raw.extend_from_slice(&info);
        raw.extend_from_slice(&keys.key_check);
        let mut mac = keys.header_mac();
        mac.update(&raw);
        let mac: [u8; 32] = mac.finalize().into_bytes().into();
        raw.extend_from_slice(&mac);
        let checksum: [u8; 32] = Sha256::digest(&raw).into();
        raw.extend_from_slice(&checksum);
        Ok(Header {
            mode,
            chunk_log2,
            salt,
            key_check: keys.key_check,
            mac,
            raw,
        })
    }

    /// Reads exactly one header from `r`, checking magic, version, checksum
    /// and structure. Leaves `r` positioned at the first chunk.
    pub fn read_from<R: Read + ?Sized>(r: &mut R) -> Result<Self> {
        let mut raw = vec![0u8; FIXED_LEN];
        let got = read_full(r, &mut raw[..MAGIC.len()])?;
        if got < MAGIC.len() || raw[..MAGIC.len()] != MAGIC {
            return Err(Error::NotMedseal);
        }
        if read_full(r, &mut raw[MAGIC.len()..MAGIC.len() + 1])? < 1 {
            return Err(Error::HeaderDamaged("is truncated"));
        }
        if raw[8] != VERSION {
            return Err(Error::UnsupportedVersion(raw[8]));
        }
        if read_full(r, &mut raw[9..FIXED_LEN])? < FIXED_LEN - 9 {
            return Err(Error::HeaderDamaged("is truncated"));
        }
        let info_len = u16::from_be_bytes([raw[44], raw[45]]) as usize;
        if info_len > MAX_KEY_INFO_LEN {
            return Err(Error::HeaderDamaged("key info is too long"));
        }
        let total = FIXED_LEN + info_len + TRAILER_LEN;
        raw.resize(total, 0);
        if read_full(r, &mut raw[FIXED_LEN..])? < total - FIXED_LEN {
            return Err(Error::HeaderDamaged("is truncated"));
        }
        Self::parse_exact(raw)
    }

    /// Parses a complete header held in memory (exactly the header bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = bytes;
        let h = Self::read_from(&mut r)?;
        if !r.is_empty() {
            return Err(Error::HeaderDamaged("is followed by unexpected bytes"));
        }
        Ok(h)
    }

    fn parse_exact(raw: Vec<u8>) -> Result<Self> {
        let n = raw.len();
        let checksum = &raw[n - 32..];
        if Sha256::digest(&raw[..n - 32]).as_slice() != checksum {
            return Err(Error::HeaderDamaged("checksum mismatch"));
        }
        let chunk_log2 = raw[10];
        check_chunk_log2(chunk_log2)
            .map_err(|_| Error::HeaderDamaged("has an invalid chunk size"))?;
        if raw[11] != 0 {
            return Err(Error::HeaderDamaged("has non-zero reserved bits"));
        }
        let mode = KeyMode::decode_info(raw[9], &raw[FIXED_LEN..n - TRAILER_LEN])?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&raw[12..44]);
        let mut key_check = [0u8; KEY_LEN];
        key_check.copy_from_slice(&raw[n - 96..n - 64]);
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&raw[n - 64..n - 32]);
        Ok(Header {
            mode,
            chunk_log2,
            salt,
            key_check,
            mac,
            raw,
        })
    }

    /// How the key for this file is obtained.
    pub fn key_mode(&self) -> &KeyMode {
        &self.mode
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        1 << self.chunk_log2
    }

    /// log2 of [`Header::chunk_size`].
    pub fn chunk_log2(&self) -> u8 {
        self.chunk_log2
    }

    /// Format version.
    pub fn version(&self) -> u8 {
        VERSION
    }

    /// The random per-file salt.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// The header MAC (also bound into every chunk tag).
    pub fn mac(&self) -> &[u8; 32] {
        &self.mac
    }

    /// The exact serialised header.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Derives the file keys from `secret` and authenticates the header.
    ///
    /// Order matters: KDF limits are checked before any expensive work, the
    /// key check tells a wrong secret from a tampered header, and the header
    /// MAC is verified last (in constant time).
    pub(crate) fn unlock(&self, secret: Secret<'_>) -> Result<FileKeys> {
        let ikm = match (&self.mode, secret) {
            (KeyMode::Password { iterations, salt }, Secret::Password(pw)) => {
                check_iterations(*iterations, "open")?;
                password_ikm(pw, salt, *iterations)
            }
            (KeyMode::Password { .. }, Secret::Key(_)) => {
                return Err(Error::SecretKindMismatch {
                    mode: "a password",
                    needs: "the password",
                });
            }
            (KeyMode::StaticKey { fingerprint, .. }, Secret::Key(k)) => {
                if &k.fingerprint() != fingerprint {
                    return Err(Error::WrongStaticKey {
                        expected: hex_lower(fingerprint),
                    });
                }
                zeroize::Zeroizing::new(*k.expose_secret())
            }
            (KeyMode::KeyServer { .. }, Secret::Key(k)) => {
                zeroize::Zeroizing::new(*k.expose_secret())
            }
            (KeyMode::StaticKey { .. }, Secret::Password(_)) => {
                return Err(Error::SecretKindMismatch {
                    mode: "an organisation key",
                    needs: "the key file",
                });
            }
            (KeyMode::KeyServer { .. }, Secret::Password(_)) => {
                return Err(Error::SecretKindMismatch {
                    mode: "a key from a key server",
                    needs: "the key server's data key",
                });
            }
        };
        let keys = FileKeys::derive(&ikm, &self.salt);
        if !keys.key_check_matches(&self.key_check) {
            return Err(Error::WrongKey);
        }
        let authed_len = self.raw.len() - 64;
        let mut mac = keys.header_mac();
        mac.update(&self.raw[..authed_len]);
        mac.verify_slice(&self.mac)
            .map_err(|_| Error::HeaderTampered)?;
        Ok(keys)
    }
}

/// Checks a PBKDF2 iteration count against the format's bounds, before
/// `doing` (`"open"` or `"seal"`) anything with it.
pub fn check_iterations(iterations: u32, doing: &'static str) -> Result<()> {
    if iterations < MIN_PBKDF2_ITERATIONS {
        return Err(Error::WeakKdf {
            doing,
            iterations,
            minimum: MIN_PBKDF2_ITERATIONS,
        });
    }
    if iterations > MAX_PBKDF2_ITERATIONS {
        return Err(Error::KdfTooCostly {
            doing,
            iterations,
            maximum: MAX_PBKDF2_ITERATIONS,
        });
    }
    Ok(())
}

fn check_chunk_log2(log2: u8) -> std::result::Result<(), String> {
    if (MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&log2) {
        Ok(())
    } else {
        Err(format!(
            "chunk size must be 2^{MIN_CHUNK_LOG2} to 2^{MAX_CHUNK_LOG2} bytes, got 2^{log2}"
        ))
    }
}

/// Lower-case hex, for fingerprints in messages and `inspect`.
pub fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Reads until `buf` is full or EOF; returns how many bytes were read.
pub(crate) fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Derives keys for a new file. Shared by the sealer and the test vectors.
pub(crate) fn ikm_for_sealing(
    mode: &KeyMode,
    secret: Secret<'_>,
) -> Result<zeroize::Zeroizing<[u8; KEY_LEN]>> {
    match (mode, secret) {
        (KeyMode::Password { iterations, salt }, Secret::Password(pw)) => {
            check_iterations(*iterations, "seal")?;
            Ok(password_ikm(pw, salt, *iterations))
        }
        (KeyMode::KeyServer { .. } | KeyMode::StaticKey { .. }, Secret::Key(k)) => {
            Ok(zeroize::Zeroizing::new(*k.expose_secret()))
        }
        _ => Err(Error::InvalidParameter(
            "the secret does not match the key mode".into(),
        )),
    }
}

/// The public description of a header, as `medseal inspect` prints it and
/// the web viewer shows it: format, key mode and what it names, layout.
/// `sealed_len` (the file size, when known) adds the chunk count and the
/// largest plaintext size, which follow from the layout. Never needs a key.
pub fn describe(h: &Header, sealed_len: Option<u64>) -> serde_json::Value {
    use crate::chunk::{FRAME_OVERHEAD, max_frame_len};
    use serde_json::{Value, json};
    let mut doc = json!({
        "format": "medseal",
        "version": h.version(),
        "key_mode": h.key_mode().name(),
        "cipher": "AES-256-CBC, HMAC-SHA256 encrypt-then-MAC, HKDF-SHA256",
        "chunk_size": h.chunk_size(),
        "header_size": h.as_bytes().len(),
        "salt": hex_lower(h.salt()),
    });
    let extra = match h.key_mode() {
        KeyMode::KeyServer { origin, key_id } => json!({"keyserver": origin, "key_id": key_id}),
        KeyMode::StaticKey {
            fingerprint,
            key_id,
        } => json!({"key_fingerprint": hex_lower(fingerprint), "key_id": key_id}),
        KeyMode::Password { iterations, salt } => json!({"kdf": {
            "algorithm": "PBKDF2-HMAC-SHA256",
            "iterations": iterations,
            "salt": hex_lower(salt),
        }}),
    };
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    if let Some(total) = sealed_len {
        let body = total.saturating_sub(h.as_bytes().len() as u64);
        let frame = max_frame_len(h.chunk_size()) as u64;
        let chunks = body.div_ceil(frame);
        // The last frame holds 1..=16 bytes of padding: give the exact range.
        let last_frame = body - chunks.saturating_sub(1) * frame;
        let full = chunks.saturating_sub(1) * h.chunk_size() as u64;
        let last_ct = last_frame.saturating_sub(FRAME_OVERHEAD as u64);
        doc["sealed_size"] = json!(total);
        doc["chunks"] = json!(chunks);
        doc["plaintext_size_max"] = json!(full + last_ct.saturating_sub(1));
    }
    doc
}
