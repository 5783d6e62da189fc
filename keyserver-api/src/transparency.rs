//! What the key server signs about its audit log, and how anyone checks it
//! offline with the server's Ed25519 public key.
//!
//! The log is a Merkle tree (RFC 9162 hashing, [`crate::merkle`]) whose
//! leaves are the audit events in sequence order:
//!
//! ```text
//! leaf data = "medseal audit leaf v1" ‖ u64(seq) ‖ i64(at_ms)
//!             ‖ field(actor) ‖ field(org) ‖ field(action) ‖ field(key_id)
//!             ‖ field(report_id) ‖ field(client_ip) ‖ field(device_id)
//!             ‖ field(outcome) ‖ field(detail)
//! field(s) = u32(len(s)) ‖ s        field(none) = FF FF FF FF      (big-endian)
//! ```
//!
//! Event `seq` is leaf index `seq − 1`. After every committed batch the
//! server signs a **checkpoint**, the UTF-8 text
//!
//! ```text
//! medseal audit checkpoint v1\n{size}\n{root, lower-case hex}\n{at_ms}\n
//! ```
//!
//! A **receipt** is an event, a checkpoint that covers it and the inclusion
//! proof between them: it shows, to anyone holding the public key, that the
//! server committed to having recorded that event — so the server cannot
//! later drop it without the receipt (or a witness holding a later
//! checkpoint) proving the log was rewritten.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::merkle::{self, Hash, ProofError};

const LEAF_DOMAIN: &[u8] = b"medseal audit leaf v1";
const CHECKPOINT_HEADER: &str = "medseal audit checkpoint v1";

/// Why a checkpoint, proof or receipt does not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A field is not in its expected encoding.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The signature is not the server's.
    #[error("the checkpoint's signature does not verify with this public key")]
    BadSignature,
    /// The event is not covered by the checkpoint.
    #[error("event {seq} is not in a log of {size} events")]
    OutOfRange {
        /// The event's sequence number.
        seq: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// A Merkle proof does not hold.
    #[error("{0}")]
    Proof(#[from] ProofError),
    /// A newer checkpoint is smaller than one already seen.
    #[error("rollback: the log has {new} events, but {old} were seen before")]
    Rollback {
        /// The size seen before.
        old: u64,
        /// The size now.
        new: u64,
    },
    /// Two checkpoints of one size disagree, or a newer one does not extend
    /// the older.
    #[error("fork: the log of {new} events does not extend the {old} events seen before")]
    Fork {
        /// The size seen before.
        old: u64,
        /// The size now.
        new: u64,
    },
}

/// An audit event as it is hashed into the tree and carried in a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptEvent {
    /// Position in the log, from 1.
    pub seq: u64,
    /// UTC milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who acted.
    pub actor: String,
    /// The organisation the event belongs to.
    pub org: String,
    /// What happened, e.g. `key.fetched`.
    pub action: String,
    /// The key concerned.
    pub key_id: Option<String>,
    /// The report concerned.
    pub report_id: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// The client's device id.
    pub device_id: Option<String>,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    /// Why, or what changed.
    pub detail: String,
}

fn field(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => {
            // Fields are bounded far below 4 GiB by the server; a longer one
            // is cut to a length that cannot collide with "none".
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX - 1);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

impl ReceiptEvent {
    /// The leaf data: every field length-prefixed, so no two events encode
    /// the same.
    pub fn leaf_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.detail.len());
        out.extend_from_slice(LEAF_DOMAIN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        field(&mut out, Some(&self.actor));
        field(&mut out, Some(&self.org));
        field(&mut out, Some(&self.action));
        field(&mut out, self.key_id.as_deref());
        field(&mut out, self.report_id.as_deref());
        field(&mut out, self.client_ip.as_deref());
        field(&mut out, self.device_id.as_deref());
        field(&mut out, Some(&self.outcome));
        field(&mut out, Some(&self.detail));
        out
    }

    /// The event's leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.leaf_data())
    }
}

/// A signed statement of the log's size and root at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Number of events in the log.
    pub size: u64,
    /// The Merkle tree root over them, lower-case hex.
    pub root: String,
    /// When it was signed, UTC milliseconds.
    pub at_ms: i64,
    /// Ed25519 signature over [`Checkpoint::message`], base64.
    pub signature: String,
}

/// Decodes a 32-byte hash from hex.
pub fn parse_hash(s: &str, what: &'static str) -> Result<Hash, VerifyError> {
    let bytes = hex::decode(s).map_err(|_| VerifyError::Malformed(what))?;
    Hash::try_from(bytes.as_slice()).map_err(|_| VerifyError::Malformed(what))
}

/// Decodes the server's public key (base64 of 32 bytes, as served at
/// `GET /v1/audit/public-key`).
pub fn parse_public_key(s: &str) -> Result<[u8; 32], VerifyError> {
    let bytes = B64
        .decode(s.trim())
        .map_err(|_| VerifyError::Malformed("public key"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| VerifyError::Malformed("public key"))
}

/// Encodes a public key for `GET /v1/audit/public-key`.
pub fn encode_public_key(key: &[u8; 32]) -> String {
    B64.encode(key)
}

impl Checkpoint {
    /// The text that is signed.
    pub fn message(size: u64, root: &Hash, at_ms: i64) -> Vec<u8> {
        format!(
            "{CHECKPOINT_HEADER}\n{size}\n{}\n{at_ms}\n",
            hex::encode(root)
        )
        .into_bytes()
    }

    /// A checkpoint from its parts and a signature made by the server.
    pub fn new(size: u64, root: &Hash, at_ms: i64, signature: &[u8; 64]) -> Self {
        Checkpoint {
            size,
            root: hex::encode(root),
            at_ms,
            signature: B64.encode(signature),
        }
    }

    /// Checks the signature and returns the root.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<Hash, VerifyError> {
        let root = parse_hash(&self.root, "checkpoint root")?;
        let sig = B64
            .decode(&self.signature)
            .map_err(|_| VerifyError::Malformed("checkpoint signature"))?;
        let sig = ed25519_dalek::Signature::from_slice(&sig)
            .map_err(|_| VerifyError::Malformed("checkpoint signature"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| VerifyError::Malformed("public key"))?;
        key.verify_strict(&Self::message(self.size, &root, self.at_ms), &sig)
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(root)
    }
}

/// Decodes a proof's hex hashes.
pub fn parse_proof(proof: &[String]) -> Result<Vec<Hash>, VerifyError> {
    proof.iter().map(|h| parse_hash(h, "proof hash")).collect()
}

/// Proof that an event is in the log a checkpoint describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The event recorded.
    pub event: ReceiptEvent,
    /// A signed checkpoint whose tree includes it.
    pub checkpoint: Checkpoint,
    /// The RFC 9162 inclusion proof, hex hashes.
    pub proof: Vec<String>,
}

impl Receipt {
    /// Checks, offline, that the server holding `public_key` signed a log
    /// that contains exactly this event at its sequence number.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), VerifyError> {
        let root = self.checkpoint.verify(public_key)?;
        let (seq, size) = (self.event.seq, self.checkpoint.size);
        if seq == 0 || seq > size {
            return Err(VerifyError::OutOfRange { seq, size });
        }
        let proof = parse_proof(&self.proof)?;
        merkle::verify_inclusion(&self.event.leaf_hash(), seq - 1, size, &proof, &root)?;
        Ok(())
    }
}

/// Checks that `new` extends `old` (both already signature-checked by the
/// caller through this function): the witness's rule. `proof` is the
/// consistency proof from `old.size` to `new.size`.
pub fn check_extends(
    old: &Checkpoint,
    new: &Checkpoint,
    proof: &[String],
    public_key: &[u8; 32],
) -> Result<(), VerifyError> {
    let old_root = old.verify(public_key)?;
    let new_root = new.verify(public_key)?;
    if new.size < old.size {
        return Err(VerifyError::Rollback {
            old: old.size,
            new: new.size,
        });
    }
    let fork = VerifyError::Fork {
        old: old.size,
        new: new.size,
    };
    if new.size == old.size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(fork)
        };
    }
    if old.size == 0 {
        return Ok(());
    }
    let proof = parse_proof(proof)?;
    merkle::verify_consistency(old.size, new.size, &old_root, &new_root, &proof).map_err(|_| fork)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_data_separates_fields_and_none() {
        let e = ReceiptEvent {
            seq: 1,
            at_ms: 5,
            actor: "a@x".into(),
            org: "o".into(),
            action: "key.fetched".into(),
            key_id: None,
            report_id: Some(String::new()),
            client_ip: None,
            device_id: None,
            outcome: "success".into(),
            detail: String::new(),
        };
        let mut f = e.clone();
        f.key_id = Some(String::new());
        f.report_id = None;
        assert_ne!(e.leaf_hash(), f.leaf_hash());
        let mut g = e.clone();
        g.actor = "a@".into();
        g.org = "xo".into();
        assert_ne!(e.leaf_hash(), g.leaf_hash());
    }

    #[test]
    fn checkpoint_signatures() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let pk = sk.verifying_key().to_bytes();
        let root = [3u8; 32];
        let sign = |size, at| {
            use ed25519_dalek::Signer;
            let sig = sk.sign(&Checkpoint::message(size, &root, at)).to_bytes();
            Checkpoint::new(size, &root, at, &sig)
        };
        let c = sign(4, 10);
        assert_eq!(c.verify(&pk), Ok(root));
        let mut bad = c.clone();
        bad.size = 5;
        assert_eq!(bad.verify(&pk), Err(VerifyError::BadSignature));
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32])
            .verifying_key()
            .to_bytes();
        assert_eq!(c.verify(&other), Err(VerifyError::BadSignature));
        assert!(matches!(
            check_extends(&sign(5, 1), &c, &[], &pk),
            Err(VerifyError::Rollback { old: 5, new: 4 })
        ));
    }
}
