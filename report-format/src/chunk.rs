//! One chunk: encrypt-then-MAC on the way in, verify-then-decrypt on the way out.
//!
//! A chunk travels as a *frame*:
//!
//! ```text
//! IV (16) ‖ ciphertext (n) ‖ tag (32)
//! tag = HMAC-SHA256(chunk mac key,
//!                   header MAC (32) ‖ index (u64 BE) ‖ last (u8: 0 or 1) ‖ IV ‖ ciphertext)
//! ```
//!
//! Every chunk but the last carries exactly `chunk_size` bytes of plaintext
//! and no padding. The last chunk carries 0..chunk_size-1 bytes, PKCS#7-padded,
//! so a file always ends with a chunk whose `last` flag is set; the flag and
//! the index in the tag make truncation, extension and reordering detectable.
//! Binding the header MAC makes a chunk useless in any other file.
//!
//! These functions work in place on a frame buffer so that the pipeline copies
//! each byte only on its way in from the reader and out to the writer.

use std::ops::Range;

use aes::Aes256;
use cbc::cipher::block_padding::{NoPadding, Pkcs7};
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::Mac;

use crate::error::{Error, Result};
use crate::keys::{FileKeys, HmacSha256};

/// Length of the per-chunk IV.
pub const IV_LEN: usize = 16;
/// Length of the per-chunk tag.
pub const TAG_LEN: usize = 32;
/// Bytes a frame adds to its ciphertext.
pub const FRAME_OVERHEAD: usize = IV_LEN + TAG_LEN;
const BLOCK: usize = 16;

/// Size of the largest frame for a given chunk size: a full chunk.
pub fn max_frame_len(chunk_size: usize) -> usize {
    chunk_size + FRAME_OVERHEAD
}

/// Ciphertext length of a last chunk holding `n` plaintext bytes.
pub fn last_ciphertext_len(n: usize) -> usize {
    (n / BLOCK + 1) * BLOCK
}

/// Keys and context that every chunk of one file shares. Cheap to share by
/// reference across worker threads.
pub(crate) struct ChunkCodec {
    keys: FileKeys,
    /// HMAC state already keyed and fed the header MAC; cloned per chunk.
    mac_prefix: HmacSha256,
    chunk_size: usize,
}

impl ChunkCodec {
    pub(crate) fn new(keys: FileKeys, header_mac: &[u8; 32], chunk_size: usize) -> Self {
        let mut mac_prefix = keys.chunk_mac();
        mac_prefix.update(header_mac);
        ChunkCodec {
            keys,
            mac_prefix,
            chunk_size,
        }
    }

    /// The encryption and chunk-MAC keys, for an engine that does the bulk
    /// work under [`crate::offload`]'s control.
    pub(crate) fn raw_keys(&self) -> (zeroize::Zeroizing<[u8; 32]>, zeroize::Zeroizing<[u8; 32]>) {
        (
            zeroize::Zeroizing::new(self.keys.enc),
            zeroize::Zeroizing::new(self.keys.chunk_mac),
        )
    }

    /// The plaintext block that the ciphertext block `block` carries after
    /// `prev` (the IV, or the ciphertext block before it): one AES
    /// decryption. For checking another engine's sealing by sample
    /// ([`crate::offload::SealOffload::accept`]); never to open a file,
    /// since it reads no tag.
    pub(crate) fn cbc_block(&self, prev: &[u8; BLOCK], block: &[u8; BLOCK]) -> [u8; BLOCK] {
        let mut out = *block;
        // One whole block without padding cannot fail to decrypt.
        let _ = cbc::Decryptor::<Aes256>::new(&self.keys.enc.into(), &(*prev).into())
            .decrypt_padded::<NoPadding>(&mut out);
        out
    }

    fn tag(&self, index: u64, last: bool, iv_and_ct: &[u8]) -> HmacSha256 {
        let mut mac = self.mac_prefix.clone();
        mac.update(&index.to_be_bytes());
        mac.update(&[u8::from(last)]);
        mac.update(iv_and_ct);
        mac
    }

    /// Seals one chunk in place.
    ///
    /// On entry `frame[IV_LEN..IV_LEN + pt_len]` holds the plaintext and
    /// `frame[..IV_LEN]` the fresh random IV; `frame` must be at least
    /// `max_frame_len(chunk_size)` long. Returns the range of the finished frame.
    pub(crate) fn seal(
        &self,
        index: u64,
        last: bool,
        frame: &mut [u8],
        pt_len: usize,
    ) -> Result<Range<usize>> {
        let ct_len = if last {
            last_ciphertext_len(pt_len)
        } else {
            pt_len
        };
        let (iv, rest) = frame.split_at_mut(IV_LEN);
        let enc = cbc::Encryptor::<Aes256>::new(&self.keys.enc.into(), &array16(iv).into());
        let body = &mut rest[..ct_len];
        let res = if last {
            enc.encrypt_padded::<Pkcs7>(body, pt_len).map(|_| ())
        } else {
            enc.encrypt_padded::<NoPadding>(body, pt_len).map(|_| ())
        };
        res.map_err(|_| Error::InvalidParameter("chunk does not fit its frame".into()))?;
        let end = IV_LEN + ct_len;
        let tag = self.tag(index, last, &frame[..end]).finalize().into_bytes();
        frame[end..end + TAG_LEN].copy_from_slice(&tag);
        Ok(0..end + TAG_LEN)
    }

    /// Verifies and then decrypts one frame in place; returns the range of
    /// the plaintext inside `frame`.
    ///
    /// No plaintext is produced unless the tag verifies. When it does not,
    /// the opposite `last` flag is tried so that the error can say whether
    /// the file was cut short or extended rather than just "tampered".
    pub(crate) fn open(&self, index: u64, last: bool, frame: &mut [u8]) -> Result<Range<usize>> {
        let len = frame.len();
        let shape_ok = len >= IV_LEN + BLOCK + TAG_LEN
            && (len - FRAME_OVERHEAD).is_multiple_of(BLOCK)
            && len <= max_frame_len(self.chunk_size)
            && (last || len == max_frame_len(self.chunk_size));
        if !shape_ok {
            return Err(if last && self.ends_within(index, frame) {
                Error::TrailingData { last_index: index }
            } else {
                Error::TruncatedChunk { index }
            });
        }
        let body_end = len - TAG_LEN;
        let (authed, tag) = frame.split_at(body_end);
        if self.tag(index, last, authed).verify_slice(tag).is_err() {
            let flipped = self.tag(index, !last, authed).verify_slice(tag).is_ok();
            return Err(match (flipped, last) {
                (true, true) => Error::Truncated { last_index: index },
                (true, false) => Error::TrailingData { last_index: index },
                (false, true) if self.ends_within(index, frame) => {
                    Error::TrailingData { last_index: index }
                }
                (false, _) => Error::ChunkTampered { index },
            });
        }
        let (authed, _) = frame.split_at_mut(body_end);
        let (iv, body) = authed.split_at_mut(IV_LEN);
        let dec = cbc::Decryptor::<Aes256>::new(&self.keys.enc.into(), &array16(iv).into());
        let pt_len = if last {
            dec.decrypt_padded::<Pkcs7>(body).map(<[u8]>::len)
        } else {
            dec.decrypt_padded::<NoPadding>(body).map(<[u8]>::len)
        }
        // Only reachable if an authentic sealer wrote bad padding.
        .map_err(|_| Error::MalformedPadding(format!("chunk {index}")))?;
        Ok(IV_LEN..IV_LEN + pt_len)
    }

    /// Whether a final frame of the wrong shape is a genuine last frame
    /// with a few bytes appended: the longest well-shaped prefix within
    /// [`MAX_APPENDED`] bytes of its end verifies as the last chunk. Names
    /// "data appended" instead of "truncated" for a file that grew; only
    /// reached on the error path, at a cost of a few MACs.
    fn ends_within(&self, index: u64, frame: &[u8]) -> bool {
        let min = IV_LEN + BLOCK + TAG_LEN;
        (1..=MAX_APPENDED)
            .filter_map(|cut| frame.len().checked_sub(cut))
            .filter(|&n| {
                n >= min
                    && (n - FRAME_OVERHEAD).is_multiple_of(BLOCK)
                    && n <= max_frame_len(self.chunk_size)
            })
            .any(|n| {
                let (authed, tag) = frame[..n].split_at(n - TAG_LEN);
                self.tag(index, true, authed).verify_slice(tag).is_ok()
            })
    }
}

/// How many appended bytes [`ChunkCodec::open`] looks through to tell a
/// grown file from a cut one.
const MAX_APPENDED: usize = 64;

fn array16(s: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&s[..16]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> ChunkCodec {
        ChunkCodec::new(FileKeys::derive(&[1; 32], &[2; 32]), &[3; 32], 4096)
    }

    #[test]
    fn round_trip_full_and_last() {
        let c = codec();
        for (last, n) in [
            (false, 4096),
            (true, 0),
            (true, 15),
            (true, 16),
            (true, 4095),
        ] {
            let mut frame = vec![0u8; max_frame_len(4096)];
            frame[..16].copy_from_slice(&[9; 16]);
            for (i, b) in frame[16..16 + n].iter_mut().enumerate() {
                *b = i as u8;
            }
            let r = c.seal(5, last, &mut frame, n).unwrap();
            let mut sealed = frame[r].to_vec();
            let pt = c.open(5, last, &mut sealed).unwrap();
            let expect: Vec<u8> = (0..n).map(|i| i as u8).collect();
            assert_eq!(&sealed[pt], &expect[..]);
        }
    }

    #[test]
    fn bad_padding_under_a_valid_tag_is_named_as_such() {
        let c = codec();
        // A last frame whose ciphertext decrypts to a block ending in 0x00
        // (not PKCS#7), tagged as the sealer would.
        let mut frame = vec![0u8; IV_LEN + BLOCK + TAG_LEN];
        let (iv, rest) = frame.split_at_mut(IV_LEN);
        let enc = cbc::Encryptor::<Aes256>::new(&c.keys.enc.into(), &array16(iv).into());
        enc.encrypt_padded::<NoPadding>(&mut rest[..BLOCK], BLOCK)
            .unwrap();
        let tag = c
            .tag(3, true, &frame[..IV_LEN + BLOCK])
            .finalize()
            .into_bytes();
        frame[IV_LEN + BLOCK..].copy_from_slice(&tag);
        let err = c.open(3, true, &mut frame).unwrap_err();
        assert!(
            matches!(&err, Error::MalformedPadding(w) if w == "chunk 3"),
            "{err}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Integrity);
        assert!(!err.to_string().contains("authentication"), "{err}");
    }

    #[test]
    fn a_last_frame_with_bytes_appended_is_named_as_grown() {
        let c = codec();
        let mut frame = vec![0u8; max_frame_len(4096)];
        let r = c.seal(2, true, &mut frame, 100).unwrap();
        for extra in [1usize, 15, 16, 17, 64] {
            let mut grown = frame[r.clone()].to_vec();
            grown.extend(std::iter::repeat_n(0xA5, extra));
            let err = c.open(2, true, &mut grown).unwrap_err();
            assert!(
                matches!(err, Error::TrailingData { last_index: 2 }),
                "{extra}: {err}"
            );
        }
        // Cut short, it is still "truncated".
        let mut cut = frame[r.start..r.end - 1].to_vec();
        assert!(matches!(
            c.open(2, true, &mut cut),
            Err(Error::TruncatedChunk { index: 2 })
        ));
    }

    #[test]
    fn wrong_index_or_flag_is_detected() {
        let c = codec();
        let mut frame = vec![0u8; max_frame_len(4096)];
        let r = c.seal(1, true, &mut frame, 100).unwrap();
        let sealed = frame[r].to_vec();
        assert!(matches!(
            c.open(2, true, &mut sealed.clone()),
            Err(Error::ChunkTampered { index: 2 })
        ));
        // Padded-length frame presented as a non-last chunk: wrong shape.
        assert!(matches!(
            c.open(1, false, &mut sealed.clone()),
            Err(Error::TruncatedChunk { .. })
        ));
    }
}
