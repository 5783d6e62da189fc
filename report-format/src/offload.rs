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
//! before it, in order. What it made of each frame is checked here before
//! the file counts as sealed ([`SealOffload::accept`]): its lengths; its IV;
//! its first and final ciphertext blocks, each decrypted here (one AES
//! block apiece) and compared with the frame's own plaintext, which catches
//! a wrong key, IV or cut, plaintext written in the clear, and frames
//! mixed up; and the last frame — the one whose padding, flag and tag
//! differ — opened whole, tag first, as the opener will. Only the other
//! frames' tags are the engine's word alone (checking them would cost
//! hashing the file again in software). [`SealOffload::finish`] refuses a
//! file a frame of which was not accepted. What the engine writes is the
//! format of `docs/format.md` byte for byte, as [`crate::seal`] writes it.
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
    /// Frames accepted; each once ([`SealFrame::accepted`]).
    accepted: u64,
    /// Whether the last frame was accepted, opened whole.
    last_opened: bool,
    plaintext_len: u64,
    sealed_len: u64,
}

/// The length of a sample [`SealFrame::ends`] names: two AES blocks.
const END: usize = 32;

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
    /// The plaintext's first and final blocks, kept to check the engine's
    /// ciphertext against once the plaintext was handed over.
    plain_ends: Zeroizing<[u8; 32]>,
    ciphertext_len: usize,
    accepted: bool,
}

impl SealFrame {
    /// Whether the sealer opens this frame whole once the engine has
    /// sealed it ([`SealOffload::accept`]): the last one, whose padding,
    /// flag and tag differ from the others', at the cost of at most a chunk
    /// of software cryptography. Of every other frame it reads the samples
    /// [`ends`](SealFrame::ends) names.
    pub fn audited(&self) -> bool {
        self.last
    }

    /// Where, in what the engine made of a frame that is not
    /// [`audited`](SealFrame::audited) (`IV ‖ ciphertext`), the two samples
    /// [`SealOffload::accept`] reads lie: its first 32 bytes (the IV and
    /// the first ciphertext block) and its final 32 (the last two blocks, or
    /// the IV and the only block). Of an audited frame it reads all of
    /// `IV ‖ ciphertext ‖ tag`.
    pub fn ends(&self) -> [std::ops::Range<usize>; 2] {
        let len = IV_LEN + self.ciphertext_len;
        [0..END, len.saturating_sub(END)..len]
    }

    /// What [`SealOffload::accept`] reads of the engine's output for this
    /// frame, gathered from `IV ‖ ciphertext` and the tag.
    pub fn seen(&self, iv_and_ct: &[u8], tag: &[u8]) -> Zeroizing<Vec<u8>> {
        self.gather(iv_and_ct.len(), |r| iv_and_ct[r].to_vec(), tag)
    }

    /// [`seen`](SealFrame::seen) from an `IV ‖ ciphertext` of `len` bytes
    /// that `read` copies a range of (ranges are clipped to `len`), for an
    /// engine whose output lives elsewhere (a browser's memory): only what
    /// is checked is copied.
    pub fn gather(
        &self,
        len: usize,
        mut read: impl FnMut(std::ops::Range<usize>) -> Vec<u8>,
        tag: &[u8],
    ) -> Zeroizing<Vec<u8>> {
        let ranges = if self.audited() {
            [0..len, 0..0]
        } else {
            self.ends()
        };
        let mut v = Zeroizing::new(Vec::new());
        for r in ranges {
            let part = Zeroizing::new(read(r.start.min(len)..r.end.min(len)));
            v.extend_from_slice(&part);
        }
        if self.audited() {
            v.extend_from_slice(tag);
        }
        v
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
        if ciphertext_len == self.ciphertext_len && tag_len == TAG_LEN {
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
            accepted: 0,
            last_opened: false,
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
        let mut plain_ends = Zeroizing::new([0u8; 32]);
        if !last {
            // A full chunk is at least 4096 bytes (MIN_CHUNK_LOG2).
            plain_ends[..16].copy_from_slice(&plaintext[..16]);
            plain_ends[16..].copy_from_slice(&plaintext[n - 16..]);
        }
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
            plain_ends,
            ciphertext_len: if last { last_ciphertext_len(n) } else { n },
            accepted: false,
        };
        self.next += 1;
        self.done = last;
        self.plaintext_len += n as u64;
        self.sealed_len += (FRAME_OVERHEAD + frame.ciphertext_len()) as u64;
        Ok(Some(frame))
    }

    /// Accepts what the engine made of `frame`, in any order but each
    /// frame once: the lengths of its ciphertext and tag, and `seen` —
    /// what [`SealFrame::seen`] gathers: for an
    /// [`audited`](SealFrame::audited) frame the whole of `IV ‖ ciphertext ‖
    /// tag`, opened here with the file's keys, which must give back the
    /// frame's plaintext; for any other, the samples
    /// [`ends`](SealFrame::ends) names, whose IV must be the frame's and
    /// whose first and final blocks must decrypt to its plaintext's. A frame
    /// refused leaves the file unfinished for good.
    pub fn accept(
        &mut self,
        frame: &mut SealFrame,
        ciphertext_len: usize,
        tag_len: usize,
        seen: &[u8],
    ) -> Result<()> {
        if frame.accepted || frame.mac_prefix.get(..32) != Some(&self.header_mac[..]) {
            return Err(Error::InvalidParameter(format!(
                "chunk {} is not one this file is waiting for",
                frame.index
            )));
        }
        if let Err(e) = self.check_frame(frame, ciphertext_len, tag_len, seen) {
            self.broken = true;
            return Err(e);
        }
        frame.accepted = true;
        self.accepted += 1;
        self.last_opened |= frame.last;
        Ok(())
    }

    fn check_frame(
        &self,
        frame: &SealFrame,
        ciphertext_len: usize,
        tag_len: usize,
        seen: &[u8],
    ) -> Result<()> {
        frame.check(ciphertext_len, tag_len)?;
        let wrong = || {
            Error::InvalidParameter(format!(
                "the engine's seal of chunk {} does not open to its plaintext",
                frame.index
            ))
        };
        if !frame.audited() {
            let (Some(head), Some(tail)) = (
                seen.get(..END).and_then(|h| <&[u8; END]>::try_from(h).ok()),
                seen.get(END..).and_then(|t| <&[u8; END]>::try_from(t).ok()),
            ) else {
                return Err(wrong());
            };
            let block = |b: &[u8; END], at: usize| -> [u8; 16] {
                let mut out = [0u8; 16];
                out.copy_from_slice(&b[at..at + 16]);
                out
            };
            let first = self.codec.cbc_block(&block(head, 0), &block(head, 16));
            let final_ = self.codec.cbc_block(&block(tail, 0), &block(tail, 16));
            let ok = head[..IV_LEN] == frame.iv
                && first[..] == frame.plain_ends[..16]
                && final_[..] == frame.plain_ends[16..];
            return if ok { Ok(()) } else { Err(wrong()) };
        }
        let mut copy = Zeroizing::new(seen.to_vec());
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
        Ok(())
    }

    /// What the file holds, once the last frame was given and every frame
    /// accepted: the plaintext read, the sealed length, the frames.
    pub fn finish(&self) -> Result<SealSummary> {
        if !self.done || self.broken || self.accepted != self.next || !self.last_opened {
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
        let mut plan = plan_for(plain, key, chunk_log2);
        let mut out = plan.header().to_vec();
        assert!(plan.finish().is_err(), "nothing sealed yet");
        while let Some(mut f) = plan.next_frame().unwrap() {
            let (body, tag) = engine_seal(&plan, &mut f, |_| {});
            assert!(f.check(body.len(), tag.len()).is_err());
            assert!(f.check(body.len() - 16, 31).is_err());
            let seen = f.seen(&body, &tag);
            plan.accept(&mut f, body.len() - 16, tag.len(), &seen)
                .unwrap();
            // Each frame once.
            assert!(plan.accept(&mut f, body.len() - 16, 32, &seen).is_err());
            out.extend_from_slice(&body);
            out.extend_from_slice(&tag);
        }
        assert!(
            plan.next_frame().unwrap().is_none(),
            "nothing after the last frame"
        );
        (out, plan.finish().unwrap())
    }

    fn plan_for<'a>(plain: &'a [u8], key: &'a Key, chunk_log2: u8) -> SealOffload<&'a [u8]> {
        let opts = SealOptions {
            chunk_log2,
            ..SealOptions::default()
        };
        SealOffload::new(
            SealKey::KeyServer {
                key,
                origin: "https://keys.example",
                key_id: "k_1",
            },
            plain,
            &opts,
        )
        .unwrap()
    }

    /// Seals `f` as WebCrypto does (always padded, the padding block cut
    /// from a full chunk), with `spoil` applied to `IV ‖ ciphertext` before
    /// the tag is computed over it: `IV ‖ ciphertext` and the tag.
    fn engine_seal(
        plan: &SealOffload<&[u8]>,
        f: &mut SealFrame,
        spoil: impl FnOnce(&mut Vec<u8>),
    ) -> (Vec<u8>, Vec<u8>) {
        use cbc::cipher::BlockModeEncrypt;
        let (enc, mac) = plan.keys();
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
        let mut body = f.iv.to_vec();
        body.extend_from_slice(&ct);
        spoil(&mut body);
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&mac[..]).unwrap();
        m.update(&f.mac_prefix);
        m.update(&body);
        (body, m.finalize().into_bytes().to_vec())
    }

    /// What the engine made of one frame: `IV ‖ ciphertext`, and the tag.
    type Made = (Vec<u8>, Vec<u8>);

    /// A plan whose frames were all given out and sealed by the engine,
    /// none accepted yet.
    fn all_sealed<'a>(
        plain: &'a [u8],
        key: &'a Key,
    ) -> (SealOffload<&'a [u8]>, Vec<SealFrame>, Vec<Made>) {
        let mut plan = plan_for(plain, key, 12);
        let mut frames = Vec::new();
        while let Some(f) = plan.next_frame().unwrap() {
            frames.push(f);
        }
        let sealed = frames
            .iter_mut()
            .map(|f| engine_seal(&plan, f, |_| {}))
            .collect();
        (plan, frames, sealed)
    }

    #[test]
    fn an_engine_that_seals_a_frame_wrongly_is_caught_and_the_file_unfinished() {
        let key = Key::generate().unwrap();
        let plain: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 253) as u8).collect();
        type Spoil = fn(&mut Vec<u8>, &[u8]);
        let spoils: [(&str, Spoil); 6] = [
            ("first block cut instead of the padding", |b, _| {
                b.drain(16..32);
                b.extend_from_slice(&[0u8; 16]);
            }),
            ("plaintext in the clear", |b, p| b[16..].copy_from_slice(p)),
            ("another IV written", |b, _| b[3] ^= 1),
            ("a bit of the first block", |b, _| b[17] ^= 1),
            ("a bit of the final block", |b, _| {
                let n = b.len();
                b[n - 1] ^= 0x80
            }),
            ("a middle block only", |b, _| b[2000] ^= 1),
        ];
        for (what, spoil) in spoils {
            let mut plan = plan_for(&plain, &key, 12);
            let mut first = plan.next_frame().unwrap().unwrap();
            let copy = first.plaintext.to_vec();
            let (body, tag) = engine_seal(&plan, &mut first, |b| spoil(b, &copy));
            let seen = first.seen(&body, &tag);
            let caught = plan.accept(&mut first, body.len() - 16, tag.len(), &seen);
            if what == "a middle block only" {
                // Not sampled: its tag covers it, and the opener refuses
                // the file (what a sample cannot see costs a software
                // pass over the file).
                assert!(caught.is_ok(), "{what}");
                continue;
            }
            assert!(caught.is_err(), "{what}");
            assert!(plan.next_frame().is_err(), "{what}: unfinished for good");
            assert!(plan.finish().is_err(), "{what}");
        }

        // Frames swapped between two files, or not all accepted: refused.
        let mut plan = plan_for(&plain, &key, 12);
        let mut other = plan_for(&plain, &key, 12);
        let mut theirs = other.next_frame().unwrap().unwrap();
        let (body, tag) = engine_seal(&other, &mut theirs, |_| {});
        let seen = theirs.seen(&body, &tag);
        assert!(
            plan.accept(&mut theirs, body.len() - 16, 32, &seen)
                .is_err()
        );
        let (mut plan, mut frames, mut sealed) = all_sealed(&plain, &key);
        // Frames 1 and 2 swapped: each is checked against its own plaintext.
        sealed.swap(1, 2);
        for (i, (f, (body, tag))) in frames.iter_mut().zip(&sealed).enumerate() {
            let seen = f.seen(body, tag);
            let r = plan.accept(f, body.len() - 16, tag.len(), &seen);
            if i == 1 {
                assert!(r.is_err(), "a frame in another's place");
                break;
            }
            r.unwrap();
        }
        assert!(plan.finish().is_err());
        // In any order, but every one: the last alone is not enough.
        let (mut plan, mut frames, mut sealed) = all_sealed(&plain, &key);
        for i in [3usize, 1, 0] {
            let seen = frames[i].seen(&sealed[i].0, &sealed[i].1);
            let n = sealed[i].0.len() - 16;
            plan.accept(&mut frames[i], n, 32, &seen).unwrap();
        }
        assert!(plan.finish().is_err(), "frame 2 not accepted");
        let (body, tag) = std::mem::take(&mut sealed[2]);
        let seen = frames[2].seen(&body, &tag);
        plan.accept(&mut frames[2], body.len() - 16, 32, &seen)
            .unwrap();
        assert_eq!(plan.finish().unwrap().chunks, 4);
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
