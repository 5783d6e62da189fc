//! Credentials in the configuration: always a reference, never the value.
//!
//! A secret is `{ file = "path" }` (read at use, must not be readable by
//! other users) or `{ env = "NAME" }`. A literal string is refused with a
//! message that says how to write it, so a password never sits in a
//! configuration file that gets copied, versioned or pasted into a ticket.

use std::fmt;
use std::path::{Path, PathBuf};

/// Largest secret file read: a password or token, never more.
const MAX_SECRET_FILE: u64 = 64 * 1024;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// Where a secret lives.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A file holding the secret (trailing newline ignored).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(p) => write!(f, "file {}", p.display()),
            SecretRef::Env(n) => write!(f, "environment variable {n}"),
        }
    }
}

/// A secret could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file or variable is missing or unreadable.
    #[error("cannot read the secret in {what}: {why}")]
    Unreadable {
        /// Which reference.
        what: String,
        /// Why.
        why: String,
    },
    /// Other users could read the file.
    #[error("{0} is readable by other users; run chmod 600 on it")]
    TooOpen(String),
    /// The secret is empty.
    #[error("the secret in {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Makes a relative file path relative to `base` (the configuration's
    /// directory), so a configuration works from any working directory.
    pub fn resolve(&mut self, base: &Path) {
        if let SecretRef::File(p) = self
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// Reads the secret.
    pub fn read(&self) -> Result<Zeroizing<String>, SecretError> {
        let what = format!("{self:?}");
        let value = match self {
            SecretRef::File(path) => {
                check_private(path)?;
                let bytes = Zeroizing::new(
                    std::fs::File::open(path)
                        .and_then(|f| medseal_format::read_bounded(f, MAX_SECRET_FILE))
                        .map_err(|e| SecretError::Unreadable {
                            what: what.clone(),
                            why: e.to_string(),
                        })?,
                );
                let text = std::str::from_utf8(&bytes).map_err(|_| SecretError::Unreadable {
                    what: what.clone(),
                    why: "not UTF-8 text".into(),
                })?;
                Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            SecretRef::Env(name) => {
                Zeroizing::new(std::env::var(name).map_err(|e| SecretError::Unreadable {
                    what: what.clone(),
                    why: e.to_string(),
                })?)
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(what));
        }
        Ok(value)
    }

    /// Replaces the secret (a rotated OAuth refresh token). Files are
    /// rewritten atomically with mode 0600; a variable cannot be rewritten,
    /// so the new value is only kept for this process and the caller is told.
    pub fn store(&self, value: &str) -> Result<bool, SecretError> {
        let SecretRef::File(path) = self else {
            return Ok(false);
        };
        medseal_files::write_private(
            path,
            value.as_bytes(),
            medseal_files::WriteOptions::default(),
        )
        .map_err(|e| SecretError::Unreadable {
            what: format!("{self:?}"),
            why: e.source.to_string(),
        })?;
        Ok(true)
    }
}

/// A secret file must be the owner's alone; a missing one is unreadable.
fn check_private(path: &Path) -> Result<(), SecretError> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(SecretError::Unreadable {
            what: format!("file {}", path.display()),
            why: e.to_string(),
        });
    }
    match medseal_files::not_private(path) {
        Some(_) => Err(SecretError::TooOpen(path.display().to_string())),
        None => Ok(()),
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"{ file = "path" } or { env = "VARIABLE" }"#)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(
                    r#"secrets are never written in the configuration: use { file = "path" } or { env = "VARIABLE" }"#,
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut found = None;
                while let Some(k) = map.next_key::<String>()? {
                    if found.is_some() {
                        return Err(de::Error::custom("give only one of file or env"));
                    }
                    found = Some(match k.as_str() {
                        "file" => SecretRef::File(map.next_value()?),
                        "env" => SecretRef::Env(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, &["file", "env"])),
                    });
                }
                found.ok_or_else(|| {
                    de::Error::custom(r#"expected { file = "path" } or { env = "VARIABLE" }"#)
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        s: SecretRef,
    }

    #[test]
    fn inline_secrets_are_refused() {
        // Only the message: the parser's full rendering quotes the line,
        // which is why the configuration loader never shows it.
        let e = toml::from_str::<T>(r#"s = "hunter2""#).err().unwrap();
        let m = e.message();
        assert!(m.contains("never written in the configuration"), "{m}");
        assert!(
            !m.contains("hunter2"),
            "the refused value is not echoed: {m}"
        );
        let t: T = toml::from_str(r#"s = { env = "X" }"#).unwrap();
        assert_eq!(t.s, SecretRef::Env("X".into()));
        assert!(toml::from_str::<T>(r#"s = { file = "a", env = "b" }"#).is_err());
        assert!(toml::from_str::<T>(r#"s = { path = "a" }"#).is_err());
    }

    #[test]
    fn files_must_be_private_and_can_be_rotated() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "abc\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = SecretRef::File(p.clone());
        assert!(matches!(s.read(), Err(SecretError::TooOpen(_))));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&*s.read().unwrap(), "abc");
        assert!(s.store("new").unwrap());
        assert_eq!(&*s.read().unwrap(), "new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
