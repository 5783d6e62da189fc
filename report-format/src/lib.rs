//! # medseal-format
//!
//! The sealed-file format of medseal (`.mseal`): a streaming, chunked
//! AES-256-CBC + HMAC-SHA256 (encrypt-then-MAC) container whose header says
//! how to obtain the key — from a key server, an organisation's static key,
//! or a password. The byte-exact specification is `docs/format.md`; the test
//! vectors in `tests/vectors/` let another implementation prove it agrees.
//!
//! ## Map of the crate
//!
//! | module     | owns                                                              |
//! |------------|-------------------------------------------------------------------|
//! | [`keys`]   | key types (zeroized), PBKDF2, HKDF labels, static-key fingerprints |
//! | [`header`] | header layout, parsing without a key, authentication with one      |
//! | [`chunk`]  | one frame: encrypt-then-MAC, verify-then-decrypt                   |
//! | [`stream`] | the parallel pipeline over `Read`/`Write`: [`seal`], [`Opener`]    |
//! | [`positional`] | the same over files: each worker reads and writes its own chunks |
//! | [`offload`] | opening and sealing with another engine (WebCrypto) doing the bulk work, every decision here |
//! | [`error`]  | typed errors, grouped by what the user should do about them       |
//! | [`manifest`] | the report manifest, its consent rules and its JSON Schema      |
//! | [`bundle`] | the plaintext layout: a tar of manifest, PDF and media, read safely |
//! | [`bounded`] | reading a small input whole, with an upper bound                |
//! | [`clock`]  | the one clock: UTC milliseconds, RFC 3339, a settable clock for tests |
//!
//! ## Example
//!
//! ```
//! use medseal_format::{seal, Key, Opener, OpenOptions, SealKey, SealOptions, Secret};
//!
//! let key = Key::generate()?;
//! let mut sealed = Vec::new();
//! seal(SealKey::StaticKey { key: &key, key_id: "org-2026" }, &b"hello"[..], &mut sealed,
//!      &SealOptions::default())?;
//!
//! let opener = Opener::new(&sealed[..])?;           // header only, no key needed
//! assert_eq!(opener.header().key_mode().name(), "static-key");
//! let mut plain = Vec::new();
//! opener.open(Secret::Key(&key), &mut plain, &OpenOptions::default())?;
//! assert_eq!(plain, b"hello");
//! # Ok::<(), medseal_format::Error>(())
//! ```
//!
//! This crate does no networking and touches no filesystem: it works on
//! `Read` and `Write`, so the caller decides where bytes come from and where
//! they go (and is responsible for discarding output if opening fails).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bounded;
pub mod bundle;
pub mod chunk;
pub mod clock;
pub mod error;
pub mod header;
pub mod keys;
pub mod manifest;
pub mod offload;
pub mod positional;
pub mod rncryptor;
pub mod stream;

pub use bounded::{read_bounded, read_bounded_string};
pub use error::{Error, ErrorKind, Result};
pub use header::{
    DEFAULT_CHUNK_LOG2, Header, KeyMode, MAGIC, MAX_CHUNK_LOG2, MIN_CHUNK_LOG2, VERSION,
};
pub use keys::{
    DEFAULT_PBKDF2_ITERATIONS, KEY_LEN, Key, MAX_PBKDF2_ITERATIONS, MIN_PBKDF2_ITERATIONS, Secret,
};
pub use positional::{At, ReadAt, WriteAt, seal_at};
pub use stream::{
    OpenOptions, OpenSummary, Opener, SealKey, SealOptions, SealSummary, SealWriter, seal,
    seal_with_rng,
};
