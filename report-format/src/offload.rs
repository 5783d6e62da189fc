//! Opening and sealing with the bulk cryptography done by another engine —
//! the browser's WebCrypto, whose AES and SHA-256 run natively where this
//! crate compiled to WebAssembly runs in software, ten times slower — while
//! every decision stays here.
//!
//! ## Opening: [`Offload`]
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
//! ## Sealing: [`SealOffload`]
//!
//! The header, its salts and the file keys are made here
//! ([`SealOffload::new`]); the plaintext is cut into chunks here, which
//! decides which frame is the last ([`SealOffload::next_frame`]); each
//! frame's IV is drawn here from the operating system's generator, and the
//! bytes its tag covers before the IV are given with it. The engine computes
//! `AES-256-CBC(enc key, IV, plaintext)` — PKCS#7-padded for the last frame,
//! unpadded for the others (an engine that always pads, as WebCrypto does,
//! drops the final block of a full chunk's ciphertext, which is the padding
//! block alone) — then `HMAC-SHA256(chunk key, prefix ‖ IV ‖ ciphertext)`,
//! and writes `IV ‖ ciphertext ‖ tag` after the header and the frames
//! before it, in order. The lengths it produced are checked here
//! ([`SealFrame::check`]). What the engine writes is the format of
//! `docs/format.md` byte for byte, as [`crate::seal`] writes it.
//!
//! Either way the engine needs the encryption and chunk-MAC keys
//! (`keys()`): it should import them as non-extractable keys and wipe its
//! copy.

use crate::chunk::{
    ChunkCodec, FRAME_OVERHEAD, IV_LEN, TAG_LEN, last_ciphertext_len, max_frame_len,
};
use crate::error::{Error, Result};
use crate::header::{Header, read_full};
use crate::keys::{KEY_LEN, Secret};
use crate::stream::{SealKey, SealOptions, SealSummary, prepare_seal};
use rand_core::TryRng as _;
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
        Ok(tag_prefix(&self.header_mac, index, span.last))
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

/// The bytes a frame's tag covers before its IV: the header MAC, the index
/// and the `last` flag.
fn tag_prefix(header_mac: &[u8; 32], index: u64, last: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(32 + 8 + 1);
    p.extend_from_slice(header_mac);
    p.extend_from_slice(&index.to_be_bytes());
    p.push(u8::from(last));
    p
}

/// A file being sealed by another engine under this module's control,
/// its plaintext read from `R`.
pub struct SealOffload<R> {
    input: R,
    header: Vec<u8>,
    header_mac: [u8; 32],
    codec: ChunkCodec,
    chunk_size: usize,
    next: u64,
    done: bool,
    broken: bool,
    audited: u8,
    plaintext_len: u64,
    sealed_len: u64,
}

/// One frame for the engine to seal.
pub struct SealFrame {
    /// Its index in the file.
    pub index: u64,
    /// Whether it is the last frame (its plaintext is padded).
    pub last: bool,
    /// Its IV, fresh from the operating system's generator.
    pub iv: [u8; IV_LEN],
    /// What its tag covers before the IV.
    pub mac_prefix: Vec<u8>,
    plaintext: Zeroizing<Vec<u8>>,
    ciphertext_len: usize,
}

impl SealFrame {
    /// Whether the sealer opens this frame itself once the engine has
    /// sealed it ([`SealOffload::accept`]): the last one, so that an engine
    /// that uses a wrong key, IV, prefix or padding is caught before the
    /// report leaves the form, at the cost of at most a chunk of software
    /// cryptography. The engine seals every frame the same way; what only
    /// the others have (a ciphertext cut to the plaintext's length) is
    /// checked by its length, and a CBC ciphertext cut at a block boundary
    /// is exactly the unpadded one.
    pub fn audited(&self) -> bool {
        self.last
    }

    /// Its plaintext for the engine: a whole chunk, or for the last frame
    /// what is left (possibly nothing). Handed over once; a frame that is
    /// [`audited`](SealFrame::audited) keeps a copy to check against,
    /// wiped when the frame is dropped.
    pub fn take_plaintext(&mut self) -> Zeroizing<Vec<u8>> {
        if self.audited() {
            self.plaintext.clone()
        } else {
            std::mem::take(&mut self.plaintext)
        }
    }

    /// The ciphertext length this frame must have: its plaintext's for a
    /// full chunk, rounded up past the padding for the last.
    pub fn ciphertext_len(&self) -> usize {
        self.ciphertext_len
    }

    /// Checks the lengths of the ciphertext and tag the engine made.
    pub fn check(&self, ciphertext_len: usize, tag_len: usize) -> Result<()> {
        if ciphertext_len == self.ciphertext_len() && tag_len == TAG_LEN {
            Ok(())
        } else {
            Err(Error::InvalidParameter(format!(
                "the engine sealed chunk {} as {ciphertext_len} + {tag_len} bytes, not {} + {TAG_LEN}",
                self.index,
                self.ciphertext_len()
            )))
        }
    }
}

impl<R: Read> SealOffload<R> {
    /// Makes the header and keys of a new file whose plaintext `input`
    /// holds; salts come from the operating system.
    pub fn new(key: SealKey<'_>, input: R, opts: &SealOptions) -> Result<Self> {
        let (header, codec) = prepare_seal(key, opts, &mut getrandom::SysRng)?;
        let bytes = header.as_bytes().to_vec();
        Ok(SealOffload {
            input,
            sealed_len: bytes.len() as u64,
            header: bytes,
            header_mac: *header.mac(),
            codec,
            chunk_size: header.chunk_size(),
            next: 0,
            done: false,
            broken: false,
            audited: 0,
            plaintext_len: 0,
        })
    }

    /// The header: the file's first bytes.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The chunk size: the plaintext of every frame but the last.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The next frame to seal, or `None` once the last one was given. A
    /// full chunk is never the last: an input that fills its last chunk
    /// exactly ends with an empty final frame, as [`crate::seal`] ends it.
    pub fn next_frame(&mut self) -> Result<Option<SealFrame>> {
        if self.broken {
            return Err(Error::InvalidParameter(
                "the sealed file was left unfinished".into(),
            ));
        }
        if self.done {
            return Ok(None);
        }
        // A failure ends the file here, unfinished: the plaintext read so
        // far is gone, and a file sealed on without it would be short.
        let mut plaintext = Zeroizing::new(vec![0u8; self.chunk_size]);
        let n = match read_full(&mut self.input, &mut plaintext) {
            Ok(n) => n,
            Err(e) => {
                self.broken = true;
                return Err(e.into());
            }
        };
        plaintext.truncate(n);
        let last = n < self.chunk_size;
        let mut iv = [0u8; IV_LEN];
        if getrandom::SysRng.try_fill_bytes(&mut iv).is_err() {
            self.broken = true;
            return Err(Error::Random);
        }
        let frame = SealFrame {
            index: self.next,
            last,
            iv,
            mac_prefix: tag_prefix(&self.header_mac, self.next, last),
            plaintext,
            ciphertext_len: if last { last_ciphertext_len(n) } else { n },
        };
        self.next += 1;
        self.done = last;
        self.plaintext_len += n as u64;
        self.sealed_len += (FRAME_OVERHEAD + frame.ciphertext_len()) as u64;
        Ok(Some(frame))
    }

    /// Accepts what the engine made of `frame`: the lengths of its
    /// ciphertext and tag, and for an [`audited`](SealFrame::audited) frame
    /// the frame itself (`IV ‖ ciphertext ‖ tag`, `whole`), which is opened
    /// here with the file's keys and must give back the frame's plaintext.
    pub fn accept(
        &mut self,
        frame: &SealFrame,
        ciphertext_len: usize,
        tag_len: usize,
        whole: Option<&[u8]>,
    ) -> Result<()> {
        frame.check(ciphertext_len, tag_len)?;
        if !frame.audited() {
            return Ok(());
        }
        let wrong = || {
            Error::InvalidParameter(format!(
                "the engine's seal of chunk {} does not open to its plaintext",
                frame.index
            ))
        };
        let mut copy = Zeroizing::new(whole.ok_or_else(wrong)?.to_vec());
        if copy.len() != FRAME_OVERHEAD + frame.ciphertext_len || copy[..IV_LEN] != frame.iv {
            return Err(wrong());
        }
        let plain = self
            .codec
            .open(frame.index, frame.last, &mut copy)
            .map_err(|_| wrong())?;
        if copy[plain] != frame.plaintext[..] {
            return Err(wrong());
        }
        self.audited += 1;
        Ok(())
    }

    /// What the file holds, once the last frame was given and the frames
    /// audited accepted: the plaintext read, the sealed length, the frames.
    pub fn finish(&self) -> Result<SealSummary> {
        if !self.done || self.broken || self.audited != 1 {
            return Err(Error::InvalidParameter(
                "the sealed file is not complete: a frame was not sealed or not checked".into(),
            ));
        }
        Ok(SealSummary {
            plaintext_len: self.plaintext_len,
            sealed_len: self.sealed_len,
            chunks: self.next,
        })
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

    /// A stand-in sealing engine as WebCrypto is one: AES-CBC that always
    /// pads (the padding block dropped for a full chunk), HMAC over
    /// prefix ‖ IV ‖ ciphertext, frames written in order after the header.
    fn seal_as_engine(plain: &[u8], key: &Key, chunk_log2: u8) -> (Vec<u8>, SealSummary) {
        use cbc::cipher::BlockModeEncrypt;
        let opts = SealOptions {
            chunk_log2,
            ..SealOptions::default()
        };
        let mut plan = SealOffload::new(
            SealKey::KeyServer {
                key,
                origin: "https://keys.example",
                key_id: "k_1",
            },
            plain,
            &opts,
        )
        .unwrap();
        let (enc, mac) = plan.keys();
        let mut out = plan.header().to_vec();
        assert!(plan.finish().is_err(), "nothing sealed yet");
        while let Some(mut f) = plan.next_frame().unwrap() {
            let plain = f.take_plaintext();
            let n = plain.len();
            let mut ct = plain.to_vec();
            ct.resize(n / 16 * 16 + 16, 0);
            cbc::Encryptor::<Aes256>::new(&(*enc).into(), &f.iv.into())
                .encrypt_padded::<Pkcs7>(&mut ct, n)
                .unwrap();
            if !f.last {
                ct.truncate(ct.len() - 16);
            }
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&mac[..]).unwrap();
            m.update(&f.mac_prefix);
            m.update(&f.iv);
            m.update(&ct);
            let tag = m.finalize().into_bytes();
            assert!(f.check(ct.len() + 16, tag.len()).is_err());
            assert!(f.check(ct.len(), 31).is_err());
            let mut whole = f.iv.to_vec();
            whole.extend_from_slice(&ct);
            whole.extend_from_slice(&tag);
            if f.audited() {
                // A frame whose bytes are wrong, or that is not given, is
                // not accepted.
                assert!(plan.accept(&f, ct.len(), tag.len(), None).is_err());
                let mut bad = whole.clone();
                bad[20] ^= 1;
                assert!(plan.accept(&f, ct.len(), tag.len(), Some(&bad)).is_err());
            }
            plan.accept(&f, ct.len(), tag.len(), Some(&whole)).unwrap();
            out.extend_from_slice(&whole);
        }
        assert!(
            plan.next_frame().unwrap().is_none(),
            "nothing after the last frame"
        );
        (out, plan.finish().unwrap())
    }

    #[test]
    fn what_an_engine_seals_under_the_plan_is_the_native_format() {
        let key = Key::generate().unwrap();
        for n in [0usize, 1, 4095, 4096, 4097, 3 * 4096 - 1, 3 * 4096, 50_000] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let (s, summary) = seal_as_engine(&plain, &key, 12);
            // The native opener reads it, and the native sealer makes a file
            // of the same length from the same plaintext.
            let mut back = Vec::new();
            let opened = crate::Opener::new(&s[..])
                .unwrap()
                .open(Secret::Key(&key), &mut back, &crate::OpenOptions::default())
                .unwrap();
            assert_eq!(back, plain, "{n} bytes");
            let native = sealed(&key, &plain, 12);
            assert_eq!(s.len(), native.len(), "{n} bytes");
            assert_eq!(summary.sealed_len, s.len() as u64);
            assert_eq!(summary.plaintext_len, n as u64);
            assert_eq!(summary.chunks, opened.chunks);
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
