//! The master keyring: versioned key-encryption keys (KEKs) that wrap every
//! data key, and the key that seals the audit chain.
//!
//! Data keys are stored only wrapped: AES-256-GCM under the current KEK, with
//! the key id and KEK version as associated data, so that a wrapped key
//! copied onto another row (a database insider's swap) fails to unwrap.
//!
//! The keyring lives in the data directory as `master.keyring` (JSON, created
//! 0600 on first start), or in a file named with `--keyring`, or in the
//! `MEDSEAL_KEYRING` environment variable (the same JSON). Rotation adds a new
//! version and makes it current; old versions stay until every row is
//! re-wrapped, so running servers keep answering throughout.
//!
//! Or the key-encryption keys live on a PKCS#11 token ([`crate::hsm`]) and
//! never leave it: the same wrapping is then done by the token, and only
//! object handles are held here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medseal_format::Key;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::hsm::{Token, TokenConfig};
use cryptoki::object::ObjectHandle;

const FORMAT: &str = "medseal-keyring-v1";
const NONCE_LEN: usize = 12;
const WRAP_AAD: &[u8] = b"medseal keyserver data key v1";
/// Largest keyring file read (a keyring of thousands of versions is far
/// smaller).
pub(crate) const MAX_KEYRING_FILE: u64 = 1 << 20;
/// Environment variable that may hold the keyring JSON.
pub const ENV_KEYRING: &str = "MEDSEAL_KEYRING";

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    format: String,
    current: u32,
    keys: BTreeMap<u32, String>,
    audit_key: String,
}

/// Where the keyring came from, so that it can be reloaded or rotated.
#[derive(Debug, Clone)]
pub enum KeyringSource {
    /// A file (rotatable).
    File(PathBuf),
    /// The environment (not rotatable from here).
    Env,
    /// A PKCS#11 token (rotatable; keys never leave it).
    Token(TokenConfig),
}

impl KeyringSource {
    /// A `--keyring` argument: a `pkcs11:` URI names a token, anything else
    /// a file.
    pub fn from_arg(arg: PathBuf) -> Result<Self> {
        match arg.to_str() {
            Some(s) if s.starts_with(crate::hsm::SCHEME) => {
                TokenConfig::parse(s).map(KeyringSource::Token)
            }
            _ => Ok(KeyringSource::File(arg)),
        }
    }
}

/// The loaded keyring. Key bytes are zeroized on drop.
pub struct Keyring {
    current: u32,
    keks: Keks,
    audit_key: Zeroizing<[u8; 32]>,
    derived: Derived,
}

/// Keys derived from the audit key, so that they live wherever the master
/// keys live (the keyring file, or the token that derives the audit key)
/// without a new field in the keyring format.
struct Derived {
    /// MACs over access-control state ([`crate::integrity`]).
    state_key: Zeroizing<[u8; 32]>,
    /// Signs audit checkpoints (Ed25519; zeroized on drop by the crate).
    signer: ed25519_dalek::SigningKey,
}

impl Derived {
    fn from_audit_key(audit_key: &[u8; 32]) -> Result<Self> {
        let hk =
            hkdf::Hkdf::<sha2::Sha256>::new(Some(b"medseal keyserver derived keys v1"), audit_key);
        let mut state_key = Zeroizing::new([0u8; 32]);
        let mut seed = Zeroizing::new([0u8; 32]);
        hk.expand(b"state mac", state_key.as_mut())
            .and_then(|()| hk.expand(b"checkpoint signing ed25519", seed.as_mut()))
            .map_err(|_| Error::Keyring("cannot derive keys".into()))?;
        Ok(Derived {
            state_key,
            signer: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }
}

/// Where the key-encryption keys are.
enum Keks {
    /// Key bytes in this process (from the keyring file or the environment).
    Local(BTreeMap<u32, Zeroizing<[u8; 32]>>),
    /// Handles of keys that stay on a token.
    Token(Arc<Token>, BTreeMap<u32, ObjectHandle>),
}

impl Keks {
    fn versions(&self) -> Vec<u32> {
        match self {
            Keks::Local(m) => m.keys().copied().collect(),
            Keks::Token(_, m) => m.keys().copied().collect(),
        }
    }

    fn has(&self, version: u32) -> bool {
        match self {
            Keks::Local(m) => m.contains_key(&version),
            Keks::Token(_, m) => m.contains_key(&version),
        }
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("versions", &self.keks.versions())
            .finish_non_exhaustive()
    }
}

fn random32() -> Result<Zeroizing<[u8; 32]>> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(k.as_mut()).map_err(|e| Error::Keyring(format!("no randomness: {e}")))?;
    Ok(k)
}

fn decode_key(s: &str) -> Result<Zeroizing<[u8; 32]>> {
    let mut bytes = B64
        .decode(s.trim())
        .map_err(|_| Error::Keyring("a key is not valid base64".into()))?;
    let out = <[u8; 32]>::try_from(bytes.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| Error::Keyring("a key is not 32 bytes".into()));
    bytes.zeroize();
    out
}

impl Keyring {
    fn generate() -> Result<Self> {
        let mut keks = BTreeMap::new();
        keks.insert(1, random32()?);
        Self::assemble(1, Keks::Local(keks), random32()?)
    }

    fn assemble(current: u32, keks: Keks, audit_key: Zeroizing<[u8; 32]>) -> Result<Self> {
        Ok(Keyring {
            current,
            keks,
            derived: Derived::from_audit_key(&audit_key)?,
            audit_key,
        })
    }

    /// Loads the keyring from `source`, creating it on first use (a 0600
    /// file, or version 1 and the audit key on a token).
    pub fn load(source: &KeyringSource) -> Result<Self> {
        match source {
            KeyringSource::Env => {
                Self::from_env()?.ok_or_else(|| Error::Keyring(format!("{ENV_KEYRING} is empty")))
            }
            KeyringSource::File(p) => Self::load_or_create(p),
            KeyringSource::Token(cfg) => Self::from_token(cfg),
        }
    }

    fn from_token(cfg: &TokenConfig) -> Result<Self> {
        let token = Token::open(cfg)?;
        let mut keks = token.keks()?;
        if keks.is_empty() {
            keks.insert(1, token.generate_kek(1)?);
        }
        let current = keks.keys().max().copied().unwrap_or(1);
        let audit_key = token.audit_key()?;
        Self::assemble(current, Keks::Token(token, keks), audit_key)
    }

    /// Whether the key bytes are held on a token.
    pub fn on_token(&self) -> bool {
        matches!(self.keks, Keks::Token(..))
    }

    pub fn parse(json: &str) -> Result<Self> {
        let file: KeyringFile = serde_json::from_str(json)
            .map_err(|e| Error::Keyring(format!("not a keyring: {e}")))?;
        if file.format != FORMAT {
            return Err(Error::Keyring(format!(
                "unknown keyring format {}",
                file.format
            )));
        }
        let mut keks = BTreeMap::new();
        for (v, k) in &file.keys {
            keks.insert(*v, decode_key(k)?);
        }
        if !keks.contains_key(&file.current) {
            return Err(Error::Keyring("the current version has no key".into()));
        }
        Self::assemble(
            file.current,
            Keks::Local(keks),
            decode_key(&file.audit_key)?,
        )
    }

    fn local_keys(&mut self) -> Result<&mut BTreeMap<u32, Zeroizing<[u8; 32]>>> {
        match &mut self.keks {
            Keks::Local(m) => Ok(m),
            Keks::Token(..) => Err(Error::Keyring(
                "the master keys are on a token and cannot be written to a file".into(),
            )),
        }
    }

    fn to_json(&self) -> Result<Zeroizing<String>> {
        let Keks::Local(keks) = &self.keks else {
            return Err(Error::Keyring(
                "the master keys are on a token and cannot be written to a file".into(),
            ));
        };
        let file = KeyringFile {
            format: FORMAT.into(),
            current: self.current,
            keys: keks
                .iter()
                .map(|(v, k)| (*v, B64.encode(k.as_ref())))
                .collect(),
            audit_key: B64.encode(self.audit_key.as_ref()),
        };
        // Serialising plain strings and integers cannot fail.
        Ok(Zeroizing::new(
            serde_json::to_string_pretty(&file).unwrap_or_default(),
        ))
    }

    /// Loads the keyring from `path`, creating it (0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let (ring, new) = Self::load_or_generate(path)?;
        if new {
            ring.save_new(path)?;
        }
        Ok(ring)
    }

    /// Loads the keyring from `path`, or generates one (not yet saved: see
    /// [`Keyring::save_new`]) if there is no file; says which.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool)> {
        let read = std::fs::File::open(path)
            .and_then(|f| medseal_format::read_bounded_string(f, MAX_KEYRING_FILE));
        match read {
            Ok(s) => {
                check_private(path)?;
                Ok((Self::parse(&s)?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Self::generate()?, true)),
            Err(e) => Err(Error::Keyring(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Saves a newly generated keyring (0600), refusing to replace a file.
    pub fn save_new(&self, path: &Path) -> Result<()> {
        write_private(path, self.to_json()?.as_bytes(), true)
    }

    /// Loads from the environment variable, if set.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(ENV_KEYRING) {
            Ok(s) => Self::parse(&s).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The version new data keys are wrapped under.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// All versions present.
    pub fn versions(&self) -> Vec<u32> {
        self.keks.versions()
    }

    /// The key that seals the audit chain.
    pub fn audit_key(&self) -> &[u8; 32] {
        &self.audit_key
    }

    /// The key of the MACs that bind access-control state to this keyring.
    pub fn state_key(&self) -> &[u8; 32] {
        &self.derived.state_key
    }

    /// Signs an audit checkpoint's canonical text.
    pub fn sign_checkpoint(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.derived.signer.sign(message).to_bytes()
    }

    /// The public key that checkpoints and receipts verify with.
    pub fn checkpoint_public_key(&self) -> [u8; 32] {
        self.derived.signer.verifying_key().to_bytes()
    }

    /// Whether this keyring knows master-key `version`.
    pub fn has_version(&self, version: u32) -> bool {
        self.keks.has(version)
    }

    fn missing(version: u32) -> Error {
        Error::Keyring(format!("no master key version {version}"))
    }

    /// AES-256-GCM under master-key `version`: `ciphertext ‖ tag`.
    fn seal(
        &self,
        version: u32,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        msg: &[u8],
    ) -> Result<Vec<u8>> {
        match &self.keks {
            Keks::Local(m) => {
                let kek = m.get(&version).ok_or_else(|| Self::missing(version))?;
                Aes256Gcm::new_from_slice(kek.as_ref())
                    .map_err(|_| Error::Keyring("bad key length".into()))?
                    .encrypt(&Nonce::from(*nonce), Payload { msg, aad })
                    .map_err(|_| Error::Keyring("wrapping failed".into()))
            }
            Keks::Token(token, m) => {
                let kek = m.get(&version).ok_or_else(|| Self::missing(version))?;
                token.encrypt(*kek, nonce, aad, msg)
            }
        }
    }

    /// The inverse of [`Keyring::seal`]; `None` if authentication fails.
    fn open(
        &self,
        version: u32,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        match &self.keks {
            Keks::Local(m) => {
                let kek = m.get(&version).ok_or_else(|| Self::missing(version))?;
                Ok(Aes256Gcm::new_from_slice(kek.as_ref())
                    .map_err(|_| Error::Keyring("bad key length".into()))?
                    .decrypt(&Nonce::from(*nonce), Payload { msg: sealed, aad })
                    .ok()
                    .map(Zeroizing::new))
            }
            Keks::Token(token, m) => {
                let kek = m.get(&version).ok_or_else(|| Self::missing(version))?;
                // A token reports a bad tag as an error of its own; any
                // failure here means the row does not open.
                Ok(token.decrypt(*kek, nonce, aad, sealed).ok())
            }
        }
    }

    fn aad(key_id: &str, version: u32) -> Vec<u8> {
        let mut aad = WRAP_AAD.to_vec();
        aad.extend_from_slice(&version.to_be_bytes());
        aad.extend_from_slice(key_id.as_bytes());
        aad
    }

    /// Wraps `key` for storage under the current version: `nonce ‖ ciphertext ‖ tag`.
    pub fn wrap(&self, key_id: &str, key: &Key) -> Result<(u32, Vec<u8>)> {
        self.wrap_as(self.current, key_id, key)
    }

    /// Wraps `key` under master-key `version` (the one the store names as
    /// current, which may be newer than this keyring's idea of it).
    pub fn wrap_as(&self, version: u32, key_id: &str, key: &Key) -> Result<(u32, Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Keyring(format!("no randomness: {e}")))?;
        let aad = Self::aad(key_id, version);
        let ct = self.seal(version, &nonce, &aad, key.expose_secret())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok((version, out))
    }

    /// Unwraps a stored data key; fails if the row was tampered with or moved.
    pub fn unwrap(&self, key_id: &str, version: u32, wrapped: &[u8]) -> Result<Key> {
        if wrapped.len() != NONCE_LEN + 32 + 16 {
            return Err(Error::Keyring(format!(
                "wrapped key {key_id} has the wrong length"
            )));
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let nonce =
            <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| Error::Keyring("bad nonce".into()))?;
        let aad = Self::aad(key_id, version);
        let pt = self
            .open(version, &nonce, &aad, ct)?
            .ok_or_else(|| Error::Keyring(format!("wrapped key {key_id} failed authentication")))?;
        Key::from_slice(&pt).map_err(|e| Error::Keyring(e.to_string()))
    }

    /// Re-wraps a stored key under version `to`.
    pub fn rewrap(
        &self,
        key_id: &str,
        version: u32,
        wrapped: &[u8],
        to: u32,
    ) -> Result<(u32, Vec<u8>)> {
        let key = self.unwrap(key_id, version, wrapped)?;
        self.wrap_as(to, key_id, &key)
    }

    /// Adds a new version and makes it current: saved atomically to the
    /// file, or generated on the token.
    pub fn rotate(source: &KeyringSource) -> Result<Self> {
        match source {
            KeyringSource::Env => Err(Error::Keyring(
                "the keyring comes from the environment; rotate it there".into(),
            )),
            KeyringSource::File(path) => {
                let mut ring = Self::load_or_create(path)?;
                let next = ring.versions().into_iter().max().unwrap_or(0) + 1;
                ring.local_keys()?.insert(next, random32()?);
                ring.current = next;
                write_private(path, ring.to_json()?.as_bytes(), false)?;
                Ok(ring)
            }
            KeyringSource::Token(cfg) => {
                let ring = Self::from_token(cfg)?;
                let next = ring.versions().into_iter().max().unwrap_or(0) + 1;
                if let Keks::Token(token, _) = &ring.keks {
                    token.generate_kek(next)?;
                }
                Self::from_token(cfg)
            }
        }
    }

    /// Removes versions that are neither current nor used by any row: from
    /// the file, or destroyed on the token.
    pub fn retire(source: &KeyringSource, in_use: &[u32]) -> Result<Vec<u32>> {
        let mut ring = Self::load(source)?;
        let retired: Vec<u32> = ring
            .versions()
            .into_iter()
            .filter(|v| *v != ring.current && !in_use.contains(v))
            .collect();
        match (source, &mut ring.keks) {
            (KeyringSource::File(path), Keks::Local(m)) => {
                for v in &retired {
                    m.remove(v);
                }
                write_private(path, ring.to_json()?.as_bytes(), false)?;
            }
            (KeyringSource::Token(_), Keks::Token(token, m)) => {
                for v in &retired {
                    if let Some(h) = m.remove(v) {
                        token.destroy(h)?;
                    }
                }
            }
            _ => {
                return Err(Error::Keyring(
                    "the keyring comes from the environment; retire versions there".into(),
                ));
            }
        }
        Ok(retired)
    }
}

/// Refuses a keyring file that other users can read.
pub(crate) fn check_private(path: &Path) -> Result<()> {
    match medseal_files::not_private(path) {
        Some(why) => Err(Error::Keyring(why)),
        None => Ok(()),
    }
}

/// Writes a secret file with mode 0600, atomically (temporary file + rename).
/// With `create_new`, refuses to replace an existing file.
pub fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> Result<()> {
    medseal_files::write_private(path, bytes, medseal_files::WriteOptions { create_new })
        .map_err(|e| Error::Keyring(format!("cannot write {e}")))
}

/// A shared keyring that picks up rotations made by `rotate-master-key` while
/// the server runs: it re-reads its file when asked for an unknown version,
/// and at most every few seconds when the file has changed.
pub struct SharedKeyring {
    inner: RwLock<(Arc<Keyring>, Option<SystemTime>, Instant)>,
    source: KeyringSource,
}

const RECHECK: Duration = Duration::from_secs(2);

impl SharedKeyring {
    /// Wraps a loaded keyring.
    pub fn new(ring: Keyring, source: KeyringSource) -> Self {
        let mtime = mtime(&source);
        SharedKeyring {
            inner: RwLock::new((Arc::new(ring), mtime, Instant::now())),
            source,
        }
    }

    /// The current keyring, reloaded if the file changed (a token is asked
    /// again for its versions at the same interval).
    pub fn get(&self) -> Arc<Keyring> {
        let (ring, seen, checked) = match self.inner.read() {
            Ok(g) => (g.0.clone(), g.1, g.2),
            Err(p) => return p.into_inner().0.clone(),
        };
        if checked.elapsed() < RECHECK {
            return ring;
        }
        let now = mtime(&self.source);
        let on_token = matches!(self.source, KeyringSource::Token(_));
        if now == seen && !on_token {
            if let Ok(mut g) = self.inner.write() {
                g.2 = Instant::now();
            }
            return ring;
        }
        self.reload().unwrap_or(ring)
    }

    /// A keyring that knows `version`, reloading once if needed.
    pub fn for_version(&self, version: u32) -> Result<Arc<Keyring>> {
        let ring = self.get();
        if ring.keks.has(version) {
            return Ok(ring);
        }
        self.reload()
            .filter(|r| r.keks.has(version))
            .ok_or_else(|| Error::Keyring(format!("no master key version {version}")))
    }

    fn reload(&self) -> Option<Arc<Keyring>> {
        if matches!(self.source, KeyringSource::Env) {
            return None;
        }
        match Keyring::load(&self.source) {
            Ok(ring) => {
                let ring = Arc::new(ring);
                if let Ok(mut g) = self.inner.write() {
                    *g = (ring.clone(), mtime(&self.source), Instant::now());
                }
                Some(ring)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the master keyring");
                None
            }
        }
    }
}

fn mtime(source: &KeyringSource) -> Option<SystemTime> {
    match source {
        KeyringSource::File(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok(),
        KeyringSource::Env | KeyringSource::Token(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_binds_key_id_and_version() {
        let ring = Keyring::generate().unwrap();
        let key = Key::from_bytes([9; 32]);
        let (v, w) = ring.wrap("k_a", &key).unwrap();
        assert_eq!(ring.unwrap("k_a", v, &w).unwrap().expose_secret(), &[9; 32]);
        assert!(ring.unwrap("k_b", v, &w).is_err(), "moved to another row");
        let mut bad = w.clone();
        bad[20] ^= 1;
        assert!(ring.unwrap("k_a", v, &bad).is_err());
    }

    #[test]
    fn file_is_private_and_rotation_keeps_old_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.keyring");
        let ring = Keyring::load_or_create(&path).unwrap();
        let (v1, w) = ring.wrap("k", &Key::from_bytes([1; 32])).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let source = KeyringSource::File(path.clone());
        let rotated = Keyring::rotate(&source).unwrap();
        assert_eq!(rotated.current_version(), v1 + 1);
        assert_eq!(rotated.audit_key(), ring.audit_key());
        let (v2, w2) = rotated.rewrap("k", v1, &w, 2).unwrap();
        assert_eq!(v2, 2);
        assert_eq!(
            rotated.unwrap("k", v2, &w2).unwrap().expose_secret(),
            &[1; 32]
        );
        assert_eq!(Keyring::retire(&source, &[2]).unwrap(), vec![1]);
        assert!(
            Keyring::load_or_create(&path)
                .unwrap()
                .unwrap("k", 1, &w)
                .is_err()
        );
    }
}
