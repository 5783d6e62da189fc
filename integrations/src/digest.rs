//! The hashes destinations check a file by: SHA-256 (the outbox's and our
//! own), SHA-1 (Box's part and file digests) and Dropbox's content hash.

use std::io::Read;
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Dropbox hashes a file in blocks of this size.
pub const DROPBOX_BLOCK: usize = 4 * 1024 * 1024;

/// The three hashes of one file, read once.
pub struct FileDigests {
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// SHA-1, raw.
    pub sha1: [u8; 20],
    /// Dropbox's content hash, lower-case hex.
    pub dropbox: String,
}

/// Reads `path` once and computes every digest.
pub fn file_digests(path: &Path) -> std::io::Result<FileDigests> {
    digests(std::fs::File::open(path)?)
}

/// Reads `f` to its end once and computes every digest.
pub fn digests(mut f: impl Read) -> std::io::Result<FileDigests> {
    let mut sha256 = Sha256::new();
    let mut sha1 = Sha1::new();
    let mut dropbox = DropboxHasher::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        sha1.update(&buf[..n]);
        dropbox.update(&buf[..n]);
    }
    Ok(FileDigests {
        sha256: hex::encode(sha256.finalize()),
        sha1: sha1.finalize().into(),
        dropbox: dropbox.finish(),
    })
}

/// SHA-1 of a byte slice.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// Dropbox's content hash: SHA-256 over the concatenated SHA-256 digests of
/// each 4 MiB block (the last block may be shorter).
#[derive(Default)]
pub struct DropboxHasher {
    overall: Sha256,
    block: Sha256,
    in_block: usize,
}

impl DropboxHasher {
    /// Adds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (DROPBOX_BLOCK - self.in_block).min(data.len());
            self.block.update(&data[..take]);
            self.in_block += take;
            data = &data[take..];
            if self.in_block == DROPBOX_BLOCK {
                let d = std::mem::take(&mut self.block).finalize();
                self.overall.update(d);
                self.in_block = 0;
            }
        }
    }

    /// The hash, lower-case hex.
    pub fn finish(mut self) -> String {
        if self.in_block > 0 {
            let d = self.block.finalize();
            self.overall.update(d);
        }
        hex::encode(self.overall.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropbox_hash_matches_its_definition() {
        // Computed the way Dropbox's reference documentation describes it.
        let data: Vec<u8> = (0..(DROPBOX_BLOCK * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut concat = Vec::new();
        for block in data.chunks(DROPBOX_BLOCK) {
            concat.extend_from_slice(&Sha256::digest(block));
        }
        let expected = hex::encode(Sha256::digest(&concat));
        for split in [1usize, 1000, DROPBOX_BLOCK, DROPBOX_BLOCK + 1] {
            let mut h = DropboxHasher::default();
            for piece in data.chunks(split) {
                h.update(piece);
            }
            assert_eq!(h.finish(), expected, "split {split}");
        }
        // The empty file hashes to SHA-256 of nothing.
        assert_eq!(
            DropboxHasher::default().finish(),
            hex::encode(Sha256::digest(b""))
        );
    }
}
