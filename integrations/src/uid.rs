//! Identifiers derived from a delivery's idempotency key.
//!
//! Deterministic on purpose: a retried delivery must present the same
//! identifiers (DICOM UIDs, FHIR identifiers, Message-ID) so that the
//! receiving system recognises it as the same report rather than a new one.

use sha2::{Digest, Sha256};

fn digest(label: &str, key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"medseal delivery id v1\0");
    h.update(label.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// 16 bytes of the digest, marked as a version-4-style UUID so it reads as one.
fn uuid_bytes(label: &str, key: &str) -> [u8; 16] {
    let d = digest(label, key);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// A DICOM UID under the `2.25` root (ISO/IEC 9834-8: a UUID as an integer).
pub fn dicom_uid(label: &str, key: &str) -> String {
    format!("2.25.{}", u128::from_be_bytes(uuid_bytes(label, key)))
}

/// A UUID (RFC 4122 text form) for FHIR `urn:uuid:` identifiers.
pub fn uuid(label: &str, key: &str) -> String {
    let h = hex::encode(uuid_bytes(label, key));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_distinct() {
        assert_eq!(dicom_uid("study", "k"), dicom_uid("study", "k"));
        assert_ne!(dicom_uid("study", "k"), dicom_uid("series", "k"));
        assert_ne!(uuid("a", "k1"), uuid("a", "k2"));
        let u = dicom_uid("x", "y");
        assert!(u.len() <= 64 && u.starts_with("2.25.") && !u[5..].starts_with('0'));
        assert!(u[5..].bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(uuid("a", "b").len(), 36);
    }
}
