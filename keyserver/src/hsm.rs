//! Master keys held on a PKCS#11 token (a hardware security module, or
//! SoftHSM2 for testing), so that the key-encryption keys never exist in the
//! server's memory or on its disks.
//!
//! A token is named with an RFC 7512 URI in place of the keyring file:
//!
//! ```text
//! pkcs11:token=medseal;object=medseal?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/medseal/pin
//! ```
//!
//! `object` is a label prefix (default `medseal`). On the token live:
//!
//! - `PREFIX-kek-N`: AES-256 secret keys, one per master-key version,
//!   generated on the token as sensitive and non-extractable. Data keys are
//!   wrapped by `C_Encrypt` with `CKM_AES_GCM` in exactly the byte layout of
//!   the file keyring (`nonce ‖ ciphertext ‖ tag`, same associated data), so
//!   the stored rows do not depend on where the master key lives.
//! - `PREFIX-audit`: a generic secret (HMAC) key, also non-extractable. The
//!   audit chain key is derived from it once at start, on the token, as
//!   `HMAC-SHA256(PREFIX-audit, "medseal audit key v1")`; the chain's own
//!   arithmetic is unchanged.
//!
//! Missing keys are generated on first use, as the file keyring is created on
//! first use. The PIN comes from `pin-source` (a file, which must be 0600) or
//! from `MEDSEAL_PKCS11_PIN`; a PIN in the URI itself is refused because
//! command lines are visible to every user of the machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use percent_encoding::percent_decode_str;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Environment variable that may hold the token's user PIN.
pub const ENV_PIN: &str = "MEDSEAL_PKCS11_PIN";
/// The scheme that marks a keyring argument as a token.
pub const SCHEME: &str = "pkcs11:";

const AUDIT_DERIVATION: &[u8] = b"medseal audit key v1";

/// Where the token is and how to log in, parsed from a `pkcs11:` URI.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// Label prefix of medseal's objects on the token.
    pub prefix: String,
    /// A file holding the user PIN; `None` means `MEDSEAL_PKCS11_PIN`.
    pub pin_file: Option<PathBuf>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pkcs11:token={};object={}", self.token, self.prefix)
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Keyring(msg.into())
}

fn decode(v: &str) -> Result<String> {
    percent_decode_str(v)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad("the pkcs11: URI has a value that is not UTF-8"))
}

impl TokenConfig {
    /// Parses `pkcs11:token=…[;object=…]?module-path=…[&pin-source=…]`.
    pub fn parse(uri: &str) -> Result<Self> {
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("a token URI starts with pkcs11:"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut token = None;
        let mut prefix = None;
        let mut module = None;
        let mut pin_file = None;
        let pairs = path
            .split(';')
            .chain(query.split('&'))
            .filter(|p| !p.is_empty());
        for pair in pairs {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("pkcs11: URI attribute {pair:?} has no value")))?;
            let v = decode(v)?;
            match k {
                "token" => token = Some(v),
                "object" => prefix = Some(v),
                "module-path" => module = Some(PathBuf::from(v)),
                "pin-source" => {
                    let p = v.strip_prefix("file://").or(v.strip_prefix("file:"));
                    pin_file = Some(PathBuf::from(p.unwrap_or(&v)));
                }
                "pin-value" => {
                    return Err(bad(format!(
                        "a PIN in the pkcs11: URI would be visible to every user; use pin-source=file:PATH or {ENV_PIN}"
                    )));
                }
                // Attributes that narrow the token further are accepted and
                // ignored: the label is what identifies it here.
                "manufacturer"
                | "model"
                | "serial"
                | "slot-id"
                | "type"
                | "library-description"
                | "library-manufacturer"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {}
                other => return Err(bad(format!("unknown pkcs11: URI attribute {other}"))),
            }
        }
        let token = token.ok_or_else(|| bad("the pkcs11: URI names no token (token=LABEL)"))?;
        let module = module.ok_or_else(|| {
            bad("the pkcs11: URI names no module (?module-path=/path/to/module.so)")
        })?;
        let prefix = prefix.unwrap_or_else(|| "medseal".into());
        if prefix.is_empty() || prefix.len() > 48 {
            return Err(bad("the object prefix must be 1 to 48 characters"));
        }
        Ok(TokenConfig {
            module,
            token,
            prefix,
            pin_file,
        })
    }

    fn pin(&self) -> Result<AuthPin> {
        let pin = match &self.pin_file {
            Some(path) => {
                crate::keyring::check_private(path)?;
                Zeroizing::new(
                    std::fs::File::open(path)
                        .and_then(|f| medseal_format::read_bounded_string(f, 4096))
                        .map_err(|e| {
                            bad(format!("cannot read the PIN file {}: {e}", path.display()))
                        })?,
                )
            }
            None => Zeroizing::new(std::env::var(ENV_PIN).map_err(|_| {
                bad(format!(
                    "no PIN for the token: set pin-source=file:PATH in the URI or {ENV_PIN}"
                ))
            })?),
        };
        let pin = pin.trim_end_matches(['\r', '\n']);
        if pin.is_empty() {
            return Err(bad("the token PIN is empty"));
        }
        Ok(AuthPin::from(pin.to_owned()))
    }
}

/// Short, secret-free text for a PKCS#11 failure.
fn p11(what: &str) -> impl FnOnce(cryptoki::error::Error) -> Error + '_ {
    move |e| match e {
        cryptoki::error::Error::Pkcs11(rv, f) => bad(format!("{what}: {f} returned {rv:?}")),
        other => bad(format!("{what}: {other}")),
    }
}

/// An open, logged-in token. Sessions are pooled: PKCS#11 sessions may not be
/// shared between threads, and one per concurrent request is cheap.
pub struct Token {
    ctx: Pkcs11,
    slot: Slot,
    prefix: String,
    /// Holds the login for the process's lifetime (the login belongs to the
    /// application and ends when its last session closes).
    _anchor: Mutex<Session>,
    idle: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Tokens opened by this process: a module may be initialised only once.
type OpenTokens = Mutex<Vec<(TokenConfig, Arc<Token>)>>;
static OPEN: OnceLock<OpenTokens> = OnceLock::new();

impl Token {
    /// Opens (or returns the already open) token named by `cfg`.
    pub fn open(cfg: &TokenConfig) -> Result<Arc<Token>> {
        let open = OPEN.get_or_init(|| Mutex::new(Vec::new()));
        let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, t)) = open.iter().find(|(c, _)| c == cfg) {
            return Ok(t.clone());
        }
        let token = Arc::new(Self::connect(cfg)?);
        open.push((cfg.clone(), token.clone()));
        Ok(token)
    }

    fn connect(cfg: &TokenConfig) -> Result<Token> {
        let ctx = load_module(&cfg.module)?;
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(p11("listing the token slots"))?;
        let mut found = None;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(p11("reading the token info"))?;
            if info.label().trim_end() == cfg.token {
                found = Some(slot);
                break;
            }
        }
        let slot = found.ok_or_else(|| {
            bad(format!(
                "no initialised token labelled {:?} in {}",
                cfg.token,
                cfg.module.display()
            ))
        })?;
        let anchor = ctx
            .open_rw_session(slot)
            .map_err(p11("opening a session"))?;
        match anchor.login(UserType::User, Some(&cfg.pin()?)) {
            Ok(()) => {}
            Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(p11("logging in to the token")(e)),
        }
        Ok(Token {
            ctx,
            slot,
            prefix: cfg.prefix.clone(),
            _anchor: Mutex::new(anchor),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a pooled session.
    fn with_session<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Session) -> cryptoki::error::Result<T>,
    ) -> Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let session = match pooled {
            Some(s) => s,
            None => self
                .ctx
                .open_rw_session(self.slot)
                .map_err(p11("opening a session"))?,
        };
        let out = f(&session).map_err(p11(what));
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
        out
    }

    fn kek_label(&self, version: u32) -> String {
        format!("{}-kek-{version}", self.prefix)
    }

    /// The master-key versions on the token, by object handle.
    pub fn keks(&self) -> Result<BTreeMap<u32, ObjectHandle>> {
        let stem = format!("{}-kek-", self.prefix);
        self.with_session("listing the master keys", |s| {
            let mut out = BTreeMap::new();
            let handles = s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
            ])?;
            for h in handles {
                for attr in s.get_attributes(h, &[AttributeType::Label])? {
                    if let Attribute::Label(label) = attr
                        && let Some(v) = std::str::from_utf8(&label)
                            .ok()
                            .and_then(|l| l.strip_prefix(&stem))
                            .and_then(|v| v.parse::<u32>().ok())
                    {
                        out.insert(v, h);
                    }
                }
            }
            Ok(out)
        })
    }

    fn find_one(&self, class_key: KeyType, label: &str) -> Result<Option<ObjectHandle>> {
        self.with_session("finding a key", |s| {
            s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(class_key),
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map(|v| v.into_iter().next())
        })
    }

    /// Generates master-key version `version` on the token: AES-256,
    /// sensitive, never extractable, usable only to encrypt and decrypt.
    pub fn generate_kek(&self, version: u32) -> Result<ObjectHandle> {
        let label = self.kek_label(version);
        if let Some(h) = self.find_one(KeyType::AES, &label)? {
            return Ok(h);
        }
        self.with_session("generating a master key", |s| {
            s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Derive(false),
                    Attribute::Label(label.as_bytes().to_vec()),
                ],
            )
        })
    }

    /// Destroys a retired master-key version.
    pub fn destroy(&self, handle: ObjectHandle) -> Result<()> {
        self.with_session("destroying a retired master key", |s| {
            s.destroy_object(handle)
        })
    }

    /// The audit chain key, derived on the token from `PREFIX-audit`
    /// (generated there on first use).
    pub fn audit_key(&self) -> Result<Zeroizing<[u8; 32]>> {
        let label = format!("{}-audit", self.prefix);
        let handle = match self.find_one(KeyType::GENERIC_SECRET, &label)? {
            Some(h) => h,
            None => self.with_session("generating the audit key", |s| {
                s.generate_key(
                    &Mechanism::GenericSecretKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::GENERIC_SECRET),
                        Attribute::ValueLen(32.into()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Sign(true),
                        Attribute::Verify(true),
                        Attribute::Encrypt(false),
                        Attribute::Decrypt(false),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Derive(false),
                        Attribute::Label(label.as_bytes().to_vec()),
                    ],
                )
            })?,
        };
        let mac = Zeroizing::new(self.with_session("deriving the audit key", |s| {
            s.sign(&Mechanism::Sha256Hmac, handle, AUDIT_DERIVATION)
        })?);
        <[u8; 32]>::try_from(mac.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| bad("the token's HMAC-SHA256 is not 32 bytes"))
    }

    /// AES-256-GCM encryption on the token: `ciphertext ‖ tag`.
    pub fn encrypt(
        &self,
        kek: ObjectHandle,
        nonce: &[u8],
        aad: &[u8],
        msg: &[u8],
    ) -> Result<Vec<u8>> {
        let mut iv = nonce.to_vec();
        self.with_session("wrapping a data key", |s| {
            let params = GcmParams::new(&mut iv, aad, 128.into())?;
            s.encrypt(&Mechanism::AesGcm(params), kek, msg)
        })
    }

    /// AES-256-GCM decryption on the token; fails if the tag does not verify.
    pub fn decrypt(
        &self,
        kek: ObjectHandle,
        nonce: &[u8],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let mut iv = nonce.to_vec();
        self.with_session("unwrapping a data key", |s| {
            let params = GcmParams::new(&mut iv, aad, 128.into())?;
            s.decrypt(&Mechanism::AesGcm(params), kek, sealed)
        })
        .map(Zeroizing::new)
    }
}

fn load_module(module: &Path) -> Result<Pkcs11> {
    let ctx = Pkcs11::new(module).map_err(|e| {
        bad(format!(
            "cannot load the PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(p11("initialising the PKCS#11 module")(e)),
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parses_and_refuses_inline_pins() {
        let c = TokenConfig::parse(
            "pkcs11:token=med%20seal;object=prod?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin",
        )
        .unwrap();
        assert_eq!(c.token, "med seal");
        assert_eq!(c.prefix, "prod");
        assert_eq!(c.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(c.pin_file, Some(PathBuf::from("/etc/pin")));
        let d = TokenConfig::parse("pkcs11:token=t?module-path=/m.so").unwrap();
        assert_eq!(d.prefix, "medseal");
        assert_eq!(d.pin_file, None);

        let e = TokenConfig::parse("pkcs11:token=t?module-path=/m.so&pin-value=1234")
            .unwrap_err()
            .to_string();
        assert!(e.contains("visible") && !e.contains("1234"), "{e}");
        assert!(TokenConfig::parse("pkcs11:object=x?module-path=/m.so").is_err());
        assert!(TokenConfig::parse("pkcs11:token=t").is_err());
        assert!(TokenConfig::parse("pkcs11:token=t;colour=red?module-path=/m.so").is_err());
        assert!(TokenConfig::parse("pkcs11:token=%FF?module-path=/m.so").is_err());
    }
}
