//! Opening with the bulk cryptography done by another engine — the
//! browser's WebCrypto, whose AES and SHA-256 run natively where this
//! crate compiled to WebAssembly runs in software, ten times slower — while
//! every decision stays here.
//!
//! This module owns what makes opening safe: the header is read and
//! authenticated and the file keys derived here ([`Offload::new`]); frame
//! `i`'s place, length and `last` flag come from here ([`Offload::frame`]),
//! as do the bytes its tag covers before the frame itself
//! ([`Offload::mac_prefix`]); the tag the engine computed is compared with
//! the stored one here, in constant time ([`Offload::verify`]); and the
//! plaintext length the engine's decryption produced is checked here
//! ([`Offload::check_plaintext`]). The engine only computes
//! `HMAC-SHA256(chunk key, prefix ‖ IV ‖ ciphertext)` and AES-256-CBC
//! decryption, and must release no plaintext of a frame before
//! [`Offload::verify`] accepted it. A failed tag is diagnosed here, in
//! software, by the same code the native opener runs ([`Offload::diagnose`]),
//! so that the error says "truncated" or "tampered" exactly as it would
//! there.
//!
//! The engine needs the encryption and chunk-MAC keys ([`Offload::keys`]):
//! it should import them as non-extractable keys and wipe its copy.

use crate::chunk::{ChunkCodec, FRAME_OVERHEAD, TAG_LEN, max_frame_len};
use crate::error::{Error, Result};
use crate::header::Header;
use crate::keys::{KEY_LEN, Secret};
use std::io::Read;
use zeroize::Zeroizing;

/// One frame's place in the sealed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// Byte offset in the sealed file.
    pub offset: u64,
    /// Length in bytes (IV, ciphertext, tag).
    pub len: usize,
    /// Whether this is the last frame (its tag says so; its plaintext is
    /// padded).
    pub last: bool,
}

/// A sealed file being opened by another engine under this module's
/// control.
pub struct Offload {
    codec: ChunkCodec,
    header_mac: [u8; 32],
    chunk_size: usize,
    body_start: u64,
    body_len: u64,
    frames: u64,
}

impl Offload {
    /// Reads the header from `input`, authenticates it with `secret`, and
    /// plans the frames of a sealed file `sealed_len` bytes long.
    pub fn new<R: Read>(mut input: R, secret: Secret<'_>, sealed_len: u64) -> Result<Self> {
        let header = Header::read_from(&mut input)?;
        let keys = header.unlock(secret)?;
        let chunk_size = header.chunk_size();
        let body_start = header.as_bytes().len() as u64;
        let body_len = sealed_len
            .checked_sub(body_start)
            .filter(|&n| n > 0)
            .ok_or(Error::TruncatedChunk { index: 0 })?;
        let frames = body_len.div_ceil(max_frame_len(chunk_size) as u64);
        Ok(Offload {
            header_mac: *header.mac(),
            codec: ChunkCodec::new(keys, header.mac(), chunk_size),
            chunk_size,
            body_start,
            body_len,
            frames,
        })
    }

    /// How many frames the file holds.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The chunk size: the plaintext of every frame but the last.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Where frame `index` is, and whether it is the last one.
    pub fn frame(&self, index: u64) -> Result<FrameSpan> {
        if index >= self.frames {
            return Err(Error::InvalidParameter(format!(
                "frame {index} of {}",
                self.frames
            )));
        }
        let full = max_frame_len(self.chunk_size) as u64;
        let offset = index * full;
        let last = index + 1 == self.frames;
        let len = (self.body_len - offset).min(full) as usize;
        // The shape rules of the native opener: whole blocks, room for an
        // IV, one block and a tag.
        if len < FRAME_OVERHEAD + 16 || !(len - FRAME_OVERHEAD).is_multiple_of(16) {
            return Err(Error::TruncatedChunk { index });
        }
        Ok(FrameSpan {
            offset: self.body_start + offset,
            len,
            last,
        })
    }

    /// What frame `index`'s tag covers before the frame's IV and
    /// ciphertext: the header MAC, the index and the `last` flag.
    pub fn mac_prefix(&self, index: u64) -> Result<Vec<u8>> {
        let span = self.frame(index)?;
        let mut p = Vec::with_capacity(32 + 8 + 1);
        p.extend_from_slice(&self.header_mac);
        p.extend_from_slice(&index.to_be_bytes());
        p.push(u8::from(span.last));
        Ok(p)
    }

    /// Compares the tag the engine computed for frame `index` with the one
    /// the frame carries, in constant time.
    pub fn verify(&self, index: u64, computed: &[u8], stored: &[u8]) -> Result<()> {
        use subtle::ConstantTimeEq;
        let same: bool = (computed.len() == TAG_LEN && stored.len() == TAG_LEN)
            && bool::from(computed.ct_eq(stored));
        if same {
            Ok(())
        } else {
            Err(Error::ChunkTampered { index })
        }
    }

    /// Why frame `index` (its bytes as read) did not verify, in the native
    /// opener's words: truncated, extended or tampered.
    pub fn diagnose(&self, index: u64, frame: &[u8]) -> Error {
        let last = index + 1 == self.frames;
        let mut copy = frame.to_vec();
        match self.codec.open(index, last, &mut copy) {
            Err(e) => e,
            // The engine's tag was wrong where ours is right: the engine
            // failed, not the file. Still nothing is released.
            Ok(_) => Error::ChunkTampered { index },
        }
    }

    /// Checks the length of frame `index`'s plaintext as the engine
    /// decrypted it (padding removed for the last frame).
    pub fn check_plaintext(&self, index: u64, len: usize) -> Result<()> {
        let span = self.frame(index)?;
        let ct = span.len - FRAME_OVERHEAD;
        let ok = if span.last {
            len < ct && ct - len <= 16
        } else {
            len == self.chunk_size && ct == self.chunk_size
        };
        if ok {
            Ok(())
        } else {
            Err(Error::MalformedPadding(format!("chunk {index}")))
        }
    }

    /// The encryption key and the chunk-MAC key, for the engine to import.
    pub fn keys(&self) -> (Zeroizing<[u8; KEY_LEN]>, Zeroizing<[u8; KEY_LEN]>) {
        self.codec.raw_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Key;
    use crate::stream::{SealKey, SealOptions, seal};
    use aes::Aes256;
    use cbc::cipher::block_padding::{NoPadding, Pkcs7};
    use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
    use hmac::{KeyInit, Mac};

    /// A stand-in engine: the same primitives, driven only through the
    /// plan, as the browser's would be.
    fn open_as_engine(sealed: &[u8], key: &Key) -> Result<Vec<u8>> {
        let plan = Offload::new(sealed, Secret::Key(key), sealed.len() as u64)?;
        let (enc, mac) = plan.keys();
        let mut out = Vec::new();
        for i in 0..plan.frames() {
            let s = plan.frame(i)?;
            let frame = &sealed[s.offset as usize..s.offset as usize + s.len];
            let (authed, tag) = frame.split_at(s.len - TAG_LEN);
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&mac[..]).unwrap();
            m.update(&plan.mac_prefix(i)?);
            m.update(authed);
            if plan.verify(i, &m.finalize().into_bytes(), tag).is_err() {
                return Err(plan.diagnose(i, frame));
            }
            let mut body = authed[16..].to_vec();
            let dec =
                cbc::Decryptor::<Aes256>::new(&(*enc).into(), authed[..16].try_into().unwrap());
            let pt = if s.last {
                dec.decrypt_padded::<Pkcs7>(&mut body).unwrap().to_vec()
            } else {
                dec.decrypt_padded::<NoPadding>(&mut body).unwrap().to_vec()
            };
            plan.check_plaintext(i, pt.len())?;
            out.extend_from_slice(&pt);
        }
        Ok(out)
    }

    fn sealed(key: &Key, plain: &[u8], chunk_log2: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let opts = SealOptions {
            chunk_log2,
            ..SealOptions::default()
        };
        seal(
            SealKey::KeyServer {
                key,
                origin: "https://keys.example",
                key_id: "k_1",
            },
            plain,
            &mut out,
            &opts,
        )
        .unwrap();
        out
    }

    #[test]
    fn an_engine_driven_by_the_plan_opens_what_was_sealed() {
        let key = Key::generate().unwrap();
        // Exact multiples of the chunk size, one byte short, one over.
        for n in [0usize, 1, 4095, 4096, 4097, 3 * 4096 - 1, 3 * 4096, 50_000] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let s = sealed(&key, &plain, 12);
            assert_eq!(open_as_engine(&s, &key).unwrap(), plain, "{n} bytes");
        }
    }

    #[test]
    fn damage_is_named_as_the_native_opener_names_it() {
        let key = Key::generate().unwrap();
        let plain = vec![5u8; 20_000];
        let s = sealed(&key, &plain, 12);
        let mut flipped = s.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 1;
        assert!(matches!(
            open_as_engine(&flipped, &key),
            Err(Error::ChunkTampered { .. })
        ));
        // Cut at a frame boundary: the new last frame's flag is wrong.
        let plan = Offload::new(&s[..], Secret::Key(&key), s.len() as u64).unwrap();
        let cut = plan.frame(3).unwrap().offset as usize;
        assert!(matches!(
            open_as_engine(&s[..cut], &key),
            Err(Error::Truncated { .. })
        ));
        let other = Key::generate().unwrap();
        assert!(open_as_engine(&s, &other).is_err());
        assert!(matches!(
            plan.verify(0, &[0u8; 31], &[0u8; 31]),
            Err(Error::ChunkTampered { index: 0 })
        ));
    }
}
