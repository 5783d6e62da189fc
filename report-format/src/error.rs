//! Typed errors for sealing and opening.
//!
//! The variants are grouped so that a caller (and a user reading the one-line
//! message) can tell the four situations apart that call for different action:
//!
//! * the input is not a medseal file, or a version this build cannot read;
//! * the key or password is wrong (try another secret);
//! * the file is damaged or was tampered with (get a fresh copy; do not trust it);
//! * the environment failed (I/O, randomness).
//!
//! Messages never contain key material, passwords or plaintext.

use std::io;

/// Everything that can go wrong while sealing or opening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first bytes are not the medseal magic.
    #[error("not a medseal file")]
    NotMedseal,

    /// The magic matched but the version byte is one this build does not know.
    #[error("unsupported medseal format version {0} (this build reads version 1)")]
    UnsupportedVersion(u8),

    /// The header is structurally invalid or fails its integrity checksum.
    #[error("file damaged or tampered: header {0}")]
    HeaderDamaged(&'static str),

    /// The header checksum is intact but the header MAC is not: the header was
    /// edited by someone who recomputed the checksum.
    #[error("file damaged or tampered: header authentication failed")]
    HeaderTampered,

    /// The secret does not match the file (key check value mismatch).
    #[error("wrong key or password")]
    WrongKey,

    /// A static-key file was given a key whose fingerprint differs from the one
    /// recorded in the header. More specific than [`Error::WrongKey`] because the
    /// fingerprint is public.
    #[error("wrong key: this file was sealed with the organisation key {expected}")]
    WrongStaticKey {
        /// Hex fingerprint recorded in the header.
        expected: String,
    },

    /// The caller supplied a secret of the wrong kind for the file's key mode.
    #[error("this file is sealed with {mode}; it needs {needs}")]
    SecretKindMismatch {
        /// Human name of the file's key mode.
        mode: &'static str,
        /// What kind of secret would open it.
        needs: &'static str,
    },

    /// A password-mode header asks for fewer PBKDF2 iterations than the
    /// minimum, which would make brute force cheap. Refused before any work.
    #[error(
        "refusing to {doing}: password protection too weak ({iterations} PBKDF2 iterations, minimum {minimum})"
    )]
    WeakKdf {
        /// `open` or `seal`.
        doing: &'static str,
        /// Iterations in the header.
        iterations: u32,
        /// The minimum this build accepts.
        minimum: u32,
    },

    /// A password-mode header asks for so many iterations that opening would
    /// be a denial of service.
    #[error("refusing to {doing}: {iterations} PBKDF2 iterations exceeds the maximum {maximum}")]
    KdfTooCostly {
        /// `open` or `seal`.
        doing: &'static str,
        /// Iterations in the header.
        iterations: u32,
        /// The maximum this build accepts.
        maximum: u32,
    },

    /// A chunk's MAC did not verify: bits flipped, chunks reordered, dropped
    /// or spliced in from another file.
    #[error("file damaged or tampered: chunk {index} failed authentication")]
    ChunkTampered {
        /// Zero-based position of the chunk in the file.
        index: u64,
    },

    /// The file ends on a chunk boundary without the end-of-file marker: it was
    /// cut short.
    #[error("file damaged or tampered: truncated after chunk {last_index}")]
    Truncated {
        /// Index of the last complete chunk present.
        last_index: u64,
    },

    /// The file ends in the middle of a chunk, or has no chunk at all.
    #[error("file damaged or tampered: truncated inside chunk {index}")]
    TruncatedChunk {
        /// Index of the incomplete chunk.
        index: u64,
    },

    /// Authentic data ended but more bytes follow it.
    #[error("file damaged or tampered: unexpected data after the end (after chunk {last_index})")]
    TrailingData {
        /// Index of the real final chunk.
        last_index: u64,
    },

    /// The MAC verified but the padding under it is malformed: whoever held
    /// the key wrote a faulty file. Not tampering (the tag proves the bytes
    /// are the writer's), but nothing can be recovered from it either.
    #[error("file damaged: {0} has malformed padding under a valid MAC (a faulty writer)")]
    MalformedPadding(String),

    /// Not an RNCryptor v3 message (too short, another version, or options
    /// that do not match the secret given).
    #[error("not an RNCryptor v3 message: {0}")]
    NotRncryptor(&'static str),

    /// An RNCryptor message's HMAC did not verify. The format has no key
    /// check, so a wrong secret and altered data look the same.
    #[error("wrong password or key, or the data was altered (RNCryptor cannot tell which)")]
    RncryptorAuthFailed,

    /// A parameter given to the sealer is outside the format's limits.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),

    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,

    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// The class of an [`Error`], for callers that map errors to exit codes or
/// HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not a medseal file, or an unknown version.
    Format,
    /// Wrong key, wrong password, or the wrong kind of secret.
    Key,
    /// Damaged or tampered data.
    Integrity,
    /// Refused by policy (weak or excessive KDF parameters, bad parameters).
    Policy,
    /// I/O or randomness failure.
    Environment,
}

impl Error {
    /// Which class of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotMedseal | Error::UnsupportedVersion(_) | Error::NotRncryptor(_) => {
                ErrorKind::Format
            }
            Error::WrongKey
            | Error::WrongStaticKey { .. }
            | Error::SecretKindMismatch { .. }
            | Error::RncryptorAuthFailed => ErrorKind::Key,
            Error::HeaderDamaged(_)
            | Error::HeaderTampered
            | Error::ChunkTampered { .. }
            | Error::Truncated { .. }
            | Error::TruncatedChunk { .. }
            | Error::TrailingData { .. }
            | Error::MalformedPadding(_) => ErrorKind::Integrity,
            Error::WeakKdf { .. } | Error::KdfTooCostly { .. } | Error::InvalidParameter(_) => {
                ErrorKind::Policy
            }
            Error::Random | Error::Io(_) => ErrorKind::Environment,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
