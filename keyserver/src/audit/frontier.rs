//! The Merkle tree's frontier: the roots of its perfect subtrees, largest
//! (leftmost) first — one per set bit of the tree size, so at most 64
//! hashes. It is all a writer needs to append leaves and compute the new
//! root (RFC 9162 §2.1.1), so it is kept in the store's head row and every
//! writer — a server of a pool or an admin command — signs the same roots
//! without holding the whole tree.

use medseal_keyserver_api::merkle::{Hash, empty_root, node_hash};

use crate::error::{Error, Result};

/// A frontier for a tree of `size` leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree's.
    pub fn empty() -> Self {
        Frontier {
            size: 0,
            nodes: Vec::new(),
        }
    }

    /// Parses the stored form (concatenated hashes) for a tree of `size`.
    pub fn decode(size: u64, bytes: &[u8]) -> Result<Self> {
        let expected = size.count_ones() as usize;
        if bytes.len() != expected * 32 {
            return Err(Error::Integrity(format!(
                "the stored Merkle frontier does not fit a log of {size} events"
            )));
        }
        let nodes = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Frontier { size, nodes })
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        self.nodes.concat()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        // Each trailing 1 bit of the old size is a perfect subtree of the
        // same height as the one being carried: merge them.
        while s & 1 == 1 {
            match self.nodes.pop() {
                Some(left) => h = node_hash(&left, &h),
                None => break,
            }
            s >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The tree's root: the perfect subtrees folded from the right.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medseal_keyserver_api::merkle::{leaf_hash, root_of};

    #[test]
    fn roots_match_the_definition() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::empty();
        assert_eq!(f.root(), empty_root());
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root_of(&leaves[..=i]), "size {}", i + 1);
            let again = Frontier::decode(f.size(), &f.encode()).unwrap();
            assert_eq!(again, f);
        }
        assert!(Frontier::decode(3, &[0; 32]).is_err());
    }
}
