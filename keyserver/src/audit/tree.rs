//! The in-memory Merkle tree over the audit log, the *generating* side of
//! RFC 9162: roots (§2.1.1), inclusion proofs (§2.1.3.1, `PATH`) and
//! consistency proofs (§2.1.4.1, `PROOF`). Clients check them with the
//! `verify_*` functions of the shared `merkle` module.
//!
//! Every complete node is kept: level 0 holds the leaf hashes, and node `i`
//! of level `k` is `node_hash(level[k-1][2i], level[k-1][2i+1])`, stored as
//! soon as both children exist. Any aligned power-of-two block of leaves is
//! therefore one stored hash, and every subtree RFC 9162 asks for is either
//! such a block or splits into O(log n) of them. Roots cost O(log n) hashes
//! and proofs O(log² n), for any earlier size as well as the current one,
//! without ever re-hashing the leaves.
//!
//! Memory: about 2n hashes of 32 bytes, i.e. 64 MB for a million events
//! (plus `Vec` growth slack). That buys answers in microseconds; a log that
//! outgrows it would keep the upper levels only and fetch leaves from disk.

use medseal_keyserver_api::merkle::{self, Hash};

/// An append-only Merkle tree that can also be cut back (see
/// [`Tree::truncate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// `levels[0]` are the leaf hashes; `levels[k][i]` covers leaves
    /// `[i·2^k, (i+1)·2^k)`. Only complete nodes are stored and no level is
    /// empty, so two trees over the same leaves are equal.
    levels: Vec<Vec<Hash>>,
}

/// The largest power of two strictly below `n`, for `n >= 2`: where RFC 9162
/// splits `n` leaves. Callers only ask for `n >= 2`; 0 otherwise.
fn split(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    1 << (63 - (n - 1).leading_zeros())
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether there are no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash (already `leaf_hash`ed), completing every node
    /// it closes: one hash on average, at most log₂ n.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(node);
            // An odd count means the new node is a left child still waiting
            // for its sibling.
            if row.len() % 2 == 1 {
                return;
            }
            let [.., left, right] = row.as_slice() else {
                return;
            };
            node = merkle::node_hash(left, right);
            level += 1;
        }
    }

    /// Keeps only the first `size` leaves, dropping every node that covered
    /// a dropped leaf; does nothing if `size >= len()`.
    ///
    /// Leaves are appended here optimistically, before the database
    /// transaction that records the event commits; if it rolls back, the
    /// tree must forget them so that it matches the log again.
    pub fn truncate(&mut self, size: u64) {
        if size >= self.len() {
            return;
        }
        for (k, row) in self.levels.iter_mut().enumerate() {
            // Level k keeps the nodes wholly inside the first `size` leaves.
            let keep = u32::try_from(k)
                .ok()
                .and_then(|k| size.checked_shr(k))
                .unwrap_or(0);
            row.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// The root of the tree made of the first `size` leaves: the
    /// [`merkle::empty_root`] for 0, `None` if `size > len()`.
    pub fn root(&self, size: u64) -> Option<Hash> {
        if size > self.len() {
            return None;
        }
        if size == 0 {
            return Some(merkle::empty_root());
        }
        self.subtree(0, size)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size`
    /// leaves, RFC 9162 §2.1.3.1 `PATH(index, D[size])`, leaf end first;
    /// `None` unless `index < size <= len()`.
    ///
    /// Walks down from the root towards the leaf, collecting the sibling
    /// subtree at each split, then reverses: the RFC lists them bottom-up.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.len() {
            return None;
        }
        let (mut lo, mut hi) = (0, size);
        let mut path = Vec::new();
        while hi - lo > 1 {
            let mid = lo + split(hi - lo);
            if index < mid {
                path.push(self.subtree(mid, hi)?);
                hi = mid;
            } else {
                path.push(self.subtree(lo, mid)?);
                lo = mid;
            }
        }
        path.reverse();
        Some(path)
    }

    /// The consistency proof from the tree of the first `size1` leaves to
    /// that of the first `size2`, RFC 9162 §2.1.4.1 `PROOF(size1, D[size2])`;
    /// empty if the sizes are equal, `None` unless `0 < size1 <= size2 <=
    /// len()`.
    ///
    /// Size 0 is refused because RFC 9162 does not define the proof: the
    /// caller answers it itself (every tree extends the empty one, and the
    /// verifier accepts an empty proof).
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Option<Vec<Hash>> {
        if size1 == 0 || size1 > size2 || size2 > self.len() {
            return None;
        }
        // SUBPROOF(m, D[lo:hi], whole) with m = size1 - lo, unrolled.
        let (mut lo, mut hi, mut whole) = (0, size2, true);
        let mut proof = Vec::new();
        while size1 < hi {
            let mid = lo + split(hi - lo);
            if size1 <= mid {
                proof.push(self.subtree(mid, hi)?);
                hi = mid;
            } else {
                proof.push(self.subtree(lo, mid)?);
                lo = mid;
                whole = false;
            }
        }
        // The old tree's root is only sent when it is not the whole tree on
        // the left, since the verifier already has it.
        if !whole {
            proof.push(self.subtree(lo, hi)?);
        }
        proof.reverse();
        Some(proof)
    }

    /// The stored node at `level` covering leaves `[index·2^level, …)`.
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(index).ok()?).copied()
    }

    /// MTH of leaves `[lo, hi)`, `None` if the range is empty or not all
    /// stored.
    ///
    /// An aligned power-of-two block is one stored node; anything else is
    /// split as RFC 9162 §2.1.1 does. For the ranges the RFC's recursion
    /// produces (`lo` a multiple of a power of two at least `hi - lo`), every
    /// left half is a stored node, so this is O(log n) hashes.
    fn subtree(&self, lo: u64, hi: u64) -> Option<Hash> {
        let n = hi.checked_sub(lo).filter(|&n| n > 0)?;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let level = n.trailing_zeros();
            return self.node(level, lo >> level);
        }
        let mid = lo + split(n);
        Some(merkle::node_hash(
            &self.subtree(lo, mid)?,
            &self.subtree(mid, hi)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::merkle::{leaf_hash, root_of, verify_consistency, verify_inclusion};
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hash(s: &str) -> Hash {
        unhex(s).try_into().unwrap()
    }

    /// Distinct leaves for the exhaustive tests.
    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn tree_of(leaves: &[Hash]) -> Tree {
        let mut t = Tree::new();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    /// Which side each inclusion-proof hash sits on, leaf end first: two
    /// (index, size) pairs with the same shape are checked by the very same
    /// sequence of hash operations.
    fn inclusion_shape(index: u64, size: u64) -> Vec<bool> {
        let (mut lo, mut hi) = (0, size);
        let mut shape = Vec::new();
        while hi - lo > 1 {
            let mid = lo + split(hi - lo);
            shape.push(index < mid);
            if index < mid {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        shape.reverse();
        shape
    }

    /// As [`inclusion_shape`], for consistency proofs: the side of each
    /// hash, and whether the old root is implicit.
    fn consistency_shape(size1: u64, size2: u64) -> (Vec<bool>, bool) {
        let (mut lo, mut hi, mut whole) = (0, size2, true);
        let mut shape = Vec::new();
        while size1 < hi {
            let mid = lo + split(hi - lo);
            shape.push(size1 <= mid);
            if size1 <= mid {
                hi = mid;
            } else {
                lo = mid;
                whole = false;
            }
        }
        shape.reverse();
        (shape, whole)
    }

    /// Every single-bit change of every hash in `proof`.
    fn flipped(proof: &[Hash]) -> impl Iterator<Item = Vec<Hash>> + '_ {
        (0..proof.len()).flat_map(move |i| {
            [0usize, 13, 31].into_iter().map(move |byte| {
                let mut p = proof.to_vec();
                p[i][byte] ^= 1;
                p
            })
        })
    }

    /// The proof with one hash missing at either end, or one extra.
    fn resized(proof: &[Hash]) -> Vec<Vec<Hash>> {
        let mut out = Vec::new();
        if let Some((_, rest)) = proof.split_first() {
            out.push(rest.to_vec());
        }
        if let Some((_, rest)) = proof.split_last() {
            out.push(rest.to_vec());
        }
        for extra in [[0u8; 32], leaf_hash(b"extra")] {
            let mut p = proof.to_vec();
            p.push(extra);
            out.push(p.clone());
            p.rotate_right(1);
            out.push(p);
        }
        out
    }

    #[test]
    fn known_answers() {
        // The RFC 6962 / certificate-transparency test tree.
        let inputs = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let hashes: Vec<Hash> = inputs.iter().map(|s| leaf_hash(&unhex(s))).collect();
        let tree = tree_of(&hashes);
        assert_eq!(tree.root(0), Some(merkle::empty_root()));
        for (i, want) in roots.iter().enumerate() {
            let size = i + 1;
            assert_eq!(root_of(&hashes[..size]), hash(want), "root_of, size {size}");
            assert_eq!(
                tree.root(size as u64),
                Some(hash(want)),
                "Tree, size {size}"
            );
        }
        assert_eq!(tree.root(9), None);
    }

    #[test]
    fn known_proofs() {
        // Proofs from the certificate-transparency test suite over the same
        // tree (index, size, path) and (size1, size2, proof).
        let hashes: Vec<Hash> = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| leaf_hash(&unhex(s)))
        .collect();
        let tree = tree_of(&hashes);
        let path = tree.inclusion_proof(0, 8).unwrap();
        assert_eq!(
            path,
            [
                hash("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                hash("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                hash("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        let proof = tree.consistency_proof(1, 8).unwrap();
        assert_eq!(
            proof,
            [
                hash("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                hash("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                hash("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        let proof = tree.consistency_proof(6, 8).unwrap();
        assert_eq!(
            proof,
            [
                hash("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                hash("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                hash("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
    }

    #[test]
    fn bounds() {
        let t = tree_of(&leaves(5));
        assert_eq!(Tree::new().root(0), Some(merkle::empty_root()));
        assert_eq!(Tree::new().root(1), None);
        assert!(Tree::new().is_empty());
        assert_eq!(Tree::new().inclusion_proof(0, 0), None);
        assert_eq!(t.inclusion_proof(5, 5), None);
        assert_eq!(t.inclusion_proof(0, 6), None);
        assert_eq!(t.inclusion_proof(u64::MAX, u64::MAX), None);
        assert_eq!(t.consistency_proof(0, 3), None);
        assert_eq!(t.consistency_proof(4, 3), None);
        assert_eq!(t.consistency_proof(3, 6), None);
        assert_eq!(t.consistency_proof(5, 5), Some(Vec::new()));
        assert_eq!(t.root(u64::MAX), None);
        assert_eq!(t.subtree(3, 3), None);
        assert_eq!(t.subtree(3, 2), None);
        assert_eq!(t.subtree(0, 6), None);
    }

    #[test]
    fn proofs_verify_exhaustively() {
        let all = leaves(72);
        let tree = tree_of(&all);
        let roots: Vec<Hash> = (0..=all.len()).map(|n| root_of(&all[..n])).collect();
        for size in 1..=70u64 {
            let root = &roots[size as usize];
            assert_eq!(tree.root(size).as_ref(), Some(root), "root {size}");
            for index in 0..size {
                let leaf = &all[index as usize];
                let proof = tree.inclusion_proof(index, size).unwrap();
                assert_eq!(verify_inclusion(leaf, index, size, &proof, root), Ok(()));
                for bad in flipped(&proof) {
                    assert!(verify_inclusion(leaf, index, size, &bad, root).is_err());
                }
                for bad in resized(&proof) {
                    assert!(verify_inclusion(leaf, index, size, &bad, root).is_err());
                }
                let mut bad_leaf = *leaf;
                bad_leaf[0] ^= 1;
                assert!(verify_inclusion(&bad_leaf, index, size, &proof, root).is_err());
                let mut bad_root = *root;
                bad_root[31] ^= 1;
                assert!(verify_inclusion(leaf, index, size, &proof, &bad_root).is_err());
                // Any other index of the same size is a different path.
                for other in [index ^ 1, index + 1, index.wrapping_sub(1), size, u64::MAX] {
                    if other != index {
                        assert!(verify_inclusion(leaf, other, size, &proof, root).is_err());
                    }
                }
                for other in [size - 1, size + 1, size * 2, size / 2, u64::MAX] {
                    if other == size {
                        continue;
                    }
                    // Against that size's own root it always fails ...
                    if let Some(other_root) = roots.get(other as usize) {
                        assert!(verify_inclusion(leaf, index, other, &proof, other_root).is_err());
                    }
                    // ... and against this root exactly when the path's shape
                    // changes: the proof does not carry the size (RFC 9162
                    // binds it through the signed tree head).
                    let same = other > index
                        && inclusion_shape(index, other) == inclusion_shape(index, size);
                    let res = verify_inclusion(leaf, index, other, &proof, root);
                    assert_eq!(res.is_ok(), same, "index {index} size {size} as {other}");
                }
            }
            for size1 in 1..=size {
                let root1 = &roots[size1 as usize];
                let proof = tree.consistency_proof(size1, size).unwrap();
                assert_eq!(
                    verify_consistency(size1, size, root1, root, &proof),
                    Ok(()),
                    "{size1} -> {size}"
                );
                for bad in flipped(&proof) {
                    assert!(verify_consistency(size1, size, root1, root, &bad).is_err());
                }
                for bad in resized(&proof) {
                    assert!(verify_consistency(size1, size, root1, root, &bad).is_err());
                }
                let mut bad_root = *root1;
                bad_root[0] ^= 1;
                assert!(verify_consistency(size1, size, &bad_root, root, &proof).is_err());
                let mut bad_root = *root;
                bad_root[0] ^= 1;
                assert!(verify_consistency(size1, size, root1, &bad_root, &proof).is_err());
                let others = [
                    (size1 - 1, size),
                    (size1 + 1, size),
                    (size1, size - 1),
                    (size1, size + 1),
                    (size1, size * 2),
                    (size, size1),
                ];
                for (o1, o2) in others {
                    if (o1, o2) == (size1, size) || o1 == 0 {
                        continue;
                    }
                    if let (Some(r1), Some(r2)) = (roots.get(o1 as usize), roots.get(o2 as usize)) {
                        assert!(verify_consistency(o1, o2, r1, r2, &proof).is_err());
                    }
                    let same = o1 < o2
                        && size1 < size
                        && consistency_shape(o1, o2) == consistency_shape(size1, size);
                    let res = verify_consistency(o1, o2, root1, root, &proof);
                    assert_eq!(res.is_ok(), same, "{size1} -> {size} as {o1} -> {o2}");
                }
            }
            assert_eq!(
                verify_consistency(0, size, &merkle::empty_root(), root, &[]),
                Ok(())
            );
        }
    }

    #[test]
    fn truncate_then_repush_matches_fresh() {
        let first = leaves(70);
        let second: Vec<Hash> = (0..70u64)
            .map(|i| leaf_hash(&(i + 1000).to_le_bytes()))
            .collect();
        let full = tree_of(&first);
        for keep in 0..=70usize {
            let mut t = full.clone();
            t.truncate(keep as u64);
            assert_eq!(t, tree_of(&first[..keep]), "truncate to {keep}");
            assert_eq!(t.root(keep as u64), Some(root_of(&first[..keep])));
            assert_eq!(t.root(keep as u64 + 1), None);
            let extra = 30;
            for l in &second[..extra] {
                t.push(*l);
            }
            let mut leaves = first[..keep].to_vec();
            leaves.extend_from_slice(&second[..extra]);
            let fresh = tree_of(&leaves);
            assert_eq!(t, fresh, "truncate to {keep} and push {extra}");
            for size in 0..=t.len() {
                assert_eq!(t.root(size), Some(root_of(&leaves[..size as usize])));
            }
        }
        let mut t = full.clone();
        t.truncate(70);
        t.truncate(u64::MAX);
        assert_eq!(t, full);
        t.truncate(0);
        assert_eq!(t, Tree::new());
    }

    /// Run with `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing() {
        use std::time::Instant;
        const N: u64 = 1_000_000;
        let start = Instant::now();
        let mut t = Tree::new();
        for i in 0..N {
            t.push(leaf_hash(&i.to_be_bytes()));
        }
        let pushed = start.elapsed();
        let root = t.root(N).unwrap();
        let start = Instant::now();
        let mut proofs = Vec::new();
        for i in 0..1000u64 {
            let index = i * 997 % N;
            proofs.push((index, t.inclusion_proof(index, N).unwrap()));
        }
        let proved = start.elapsed();
        let start = Instant::now();
        for (index, proof) in &proofs {
            let leaf = leaf_hash(&index.to_be_bytes());
            assert_eq!(verify_inclusion(&leaf, *index, N, proof, &root), Ok(()));
        }
        let verified = start.elapsed();
        let start = Instant::now();
        for i in 0..1000u64 {
            let size1 = 1 + i * 991 % N;
            let proof = t.consistency_proof(size1, N).unwrap();
            assert!(!proof.is_empty() || size1 == N);
        }
        let consistent = start.elapsed();
        println!(
            "{N} pushes (incl. leaf hashing): {pushed:?}; 1000 inclusion proofs: {proved:?}; \
             1000 verifications: {verified:?}; 1000 consistency proofs: {consistent:?}"
        );
    }
}
