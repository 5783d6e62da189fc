//! Merkle tree hashing and proof verification as in RFC 9162 (Certificate
//! Transparency version 2.0), with SHA-256.
//!
//! ```text
//! MTH({})      = SHA-256()                                   RFC 9162 §2.1.1
//! MTH({d0})    = SHA-256(0x00 ‖ d0)
//! MTH(D[n])    = SHA-256(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n]))   k = largest power of two < n
//! ```
//!
//! The 0x00 / 0x01 prefixes keep a leaf from ever hashing like an interior
//! node, so no one can pass off a node as a leaf (second-preimage attack).
//!
//! This module is the *checking* side: a client holding a signed root can
//! confirm that an event is in the log ([`verify_inclusion`], RFC 9162
//! §2.1.3.2) and that a later root extends an earlier one without rewriting
//! it ([`verify_consistency`], RFC 9162 §2.1.4.2). It is pure and std-only so
//! that the same code runs in the server, the CLI and the browser (wasm32).
//! The proofs themselves are built by the key server's audit tree (§2.1.3.1
//! and §2.1.4.1).

use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a proof was rejected.
///
/// Kept coarse on purpose: every variant means "do not trust this root", and
/// the distinctions only help someone debugging the server side.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is not below the tree size (this includes size 0).
    #[error("the leaf index is outside the tree")]
    IndexOutOfRange,
    /// The first tree is larger than the second.
    #[error("the sizes are not in order")]
    SizesOutOfOrder,
    /// The proof has more or fewer hashes than the sizes call for.
    #[error("the proof has the wrong length")]
    WrongLength,
    /// The proof has the right shape but recomputes a different root.
    #[error("the proof does not lead to the root")]
    RootMismatch,
}

/// The hash of a leaf: SHA-256(0x00 ‖ data) (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 ‖ left ‖ right) (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, MTH({}) = SHA-256 of the empty string
/// (RFC 9162 §2.1.1). A log with no events still has a well-defined root, so
/// a signed head can be issued before the first event.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// The largest power of two strictly below `n`, for `n >= 2`: where MTH
/// splits a list of `n` leaves (RFC 9162 §2.1.1). Returns 0 for `n < 2`,
/// which callers never ask for.
fn split(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of `leaves` (already leaf-hashed), computed directly from the
/// definition in RFC 9162 §2.1.1.
///
/// This re-hashes everything, O(n): it is the reference the faster tree is
/// tested against, and is fine for small trees.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            // `split` is < len for len >= 2, and a usize length always fits
            // in u64, so the split point is in bounds.
            let k = split(leaves.len() as u64) as usize;
            let (left, right) = leaves.split_at(k);
            node_hash(&root_of(left), &root_of(right))
        }
    }
}

/// Checks that `leaf` (a leaf hash) is the leaf at `index` of the tree of
/// `size` leaves whose root is `root`, following RFC 9162 §2.1.3.2 step by
/// step.
///
/// `fn` walks the leaf's position and `sn` the last leaf's position up the
/// tree; when the leaf is on the right edge with no right sibling (`fn ==
/// sn`, even) the levels where it is simply promoted are skipped. The proof
/// must be used up exactly when `sn` reaches 0, so extra or missing hashes
/// are rejected. At most 64 hashes are ever looked at, whatever the input.
///
/// The size is not authenticated by the proof itself (a proof can also
/// verify for another size whose path has the same shape); it is bound to
/// the root by whoever signed the root.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1.
    if index >= size {
        return Err(ProofError::IndexOutOfRange);
    }
    // Steps 2 and 3.
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `size2` leaves with root `root2` starts with the
/// tree of `size1` leaves with root `root1`, i.e. that the log only grew,
/// following RFC 9162 §2.1.4.2 step by step.
///
/// Cases the RFC leaves to the caller:
/// - `size1 > size2` is rejected: a log never shrinks.
/// - `size1 == size2` needs an empty proof and equal roots: the same tree.
/// - `size1 == 0` needs an empty proof and accepts any later tree, because
///   every tree extends the empty one; `root1` must still be [`empty_root`],
///   so a client never records a bogus root for its starting point.
///
/// At most 65 hashes are ever looked at, whatever the input.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder);
    }
    if size1 == 0 || size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        if size1 == 0 && *root1 != empty_root() {
            return Err(ProofError::RootMismatch);
        }
        if size1 == size2 && root1 != root2 {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    // Step 1.
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // Step 2: when the old tree is a complete subtree of the new one, its
    // root is not sent, so put it back in front (without copying the proof).
    let first = size1.is_power_of_two().then_some(root1);
    let mut path = first.into_iter().chain(proof);
    // Step 3.
    let mut f = size1 - 1;
    let mut s = size2 - 1;
    // Step 4.
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let Some(start) = path.next() else {
        return Err(ProofError::WrongLength);
    };
    let mut fr = *start;
    let mut sr = *start;
    // Step 6.
    for c in path {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *root1 || sr != *root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Hash {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn known_hashes() {
        assert_eq!(
            empty_root(),
            hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        // RFC 6962 test tree: the first leaf is the empty string.
        assert_eq!(
            leaf_hash(b""),
            hex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        let (a, b) = (leaf_hash(b""), leaf_hash(&[0x00]));
        assert_eq!(
            node_hash(&a, &b),
            hex("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")
        );
        assert_eq!(root_of(&[]), empty_root());
        assert_eq!(root_of(&[a]), a);
        assert_eq!(root_of(&[a, b]), node_hash(&a, &b));
    }

    #[test]
    fn split_points() {
        let cases = [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
        ];
        for (n, k) in cases {
            assert_eq!(split(n), k, "n = {n}");
        }
        assert_eq!(split(u64::MAX), 1 << 63);
    }

    #[test]
    fn inclusion_edge_cases() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        assert_eq!(verify_inclusion(&a, 0, 1, &[], &a), Ok(()));
        assert_eq!(
            verify_inclusion(&a, 0, 0, &[], &empty_root()),
            Err(ProofError::IndexOutOfRange)
        );
        assert_eq!(
            verify_inclusion(&a, 1, 1, &[], &a),
            Err(ProofError::IndexOutOfRange)
        );
        assert_eq!(
            verify_inclusion(&a, u64::MAX, u64::MAX, &[], &a),
            Err(ProofError::IndexOutOfRange)
        );
        assert_eq!(
            verify_inclusion(&a, 0, 1, &[b], &a),
            Err(ProofError::WrongLength)
        );
        let root = node_hash(&a, &b);
        assert_eq!(verify_inclusion(&a, 0, 2, &[b], &root), Ok(()));
        assert_eq!(verify_inclusion(&b, 1, 2, &[a], &root), Ok(()));
        assert_eq!(
            verify_inclusion(&a, 0, 2, &[], &root),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            verify_inclusion(&b, 0, 2, &[a], &root),
            Err(ProofError::RootMismatch)
        );
        // A huge claimed size with a huge junk proof stops after 64 hashes.
        let junk = vec![a; 1000];
        assert_eq!(
            verify_inclusion(&a, 0, u64::MAX, &junk, &root),
            Err(ProofError::WrongLength)
        );
    }

    #[test]
    fn consistency_edge_cases() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let root2 = node_hash(&a, &b);
        let e = empty_root();
        assert_eq!(verify_consistency(0, 0, &e, &e, &[]), Ok(()));
        assert_eq!(verify_consistency(0, 2, &e, &root2, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 2, &a, &root2, &[]),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(0, 2, &e, &root2, &[a]),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            verify_consistency(2, 1, &root2, &a, &[]),
            Err(ProofError::SizesOutOfOrder)
        );
        assert_eq!(verify_consistency(2, 2, &root2, &root2, &[]), Ok(()));
        assert_eq!(
            verify_consistency(2, 2, &root2, &a, &[]),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(2, 2, &root2, &root2, &[a]),
            Err(ProofError::WrongLength)
        );
        assert_eq!(verify_consistency(1, 2, &a, &root2, &[b]), Ok(()));
        assert_eq!(
            verify_consistency(1, 2, &a, &root2, &[]),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            verify_consistency(1, 2, &b, &root2, &[b]),
            Err(ProofError::RootMismatch)
        );
        let junk = vec![a; 1000];
        assert_eq!(
            verify_consistency(3, u64::MAX, &a, &root2, &junk),
            Err(ProofError::WrongLength)
        );
    }
}
