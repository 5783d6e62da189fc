//! Every way of damaging or tampering with a sealed file is refused with the
//! error that names it, and round trips hold for every size around chunk
//! boundaries.

use std::num::NonZeroUsize;

use std::sync::Mutex;

use medseal_format::{
    Error, ErrorKind, Key, OpenOptions, Opener, SealKey, SealOptions, Secret, WriteAt, seal,
    seal_at,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const LOG2: u8 = 12;
const CHUNK: usize = 1 << LOG2;
const FRAME: usize = CHUNK + 48;

fn key() -> Key {
    Key::from_bytes([0x11; 32])
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 253) as u8).collect()
}

fn seal_static(plain: &[u8], key: &Key) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = SealOptions {
        chunk_log2: LOG2,
        threads: None,
    };
    seal(
        SealKey::StaticKey { key, key_id: "org" },
        plain,
        &mut out,
        &opts,
    )
    .unwrap();
    out
}

/// An in-memory `WriteAt`, for the positional path.
#[derive(Default)]
struct MemAt(Mutex<Vec<u8>>);

impl WriteAt for MemAt {
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        let mut v = self.0.lock().unwrap();
        let end = offset as usize + buf.len();
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset as usize..end].copy_from_slice(buf);
        Ok(buf.len())
    }
}

/// Opens through both the streaming and the positional path and checks that
/// they agree exactly, in plaintext or in the error.
fn open_with(sealed: &[u8], secret: Secret<'_>, threads: usize) -> Result<Vec<u8>, Error> {
    let opts = OpenOptions {
        threads: NonZeroUsize::new(threads),
    };
    let mut out = Vec::new();
    let streamed = Opener::new(sealed).and_then(|o| o.open(secret, &mut out, &opts));
    let mem = MemAt::default();
    let positional = Opener::at(sealed).and_then(|o| o.open_at(secret, &mem, &opts, &|_| {}));
    match (streamed, positional) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(out, mem.0.into_inner().unwrap());
            Ok(out)
        }
        (Err(a), Err(b)) => {
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "paths disagree");
            Err(a)
        }
        (a, b) => panic!("paths disagree: streamed {a:?}, positional {b:?}"),
    }
}

fn open(sealed: &[u8]) -> Result<Vec<u8>, Error> {
    open_with(sealed, Secret::Key(&key()), 2)
}

fn header_len(sealed: &[u8]) -> usize {
    Opener::new(sealed).unwrap().header().as_bytes().len()
}

/// A file of 4 full chunks and a short last one; returns (file, header length).
fn five_chunks() -> (Vec<u8>, Vec<u8>, usize) {
    let plain = data(4 * CHUNK + 500);
    let sealed = seal_static(&plain, &key());
    let h = header_len(&sealed);
    assert_eq!(sealed.len(), h + 4 * FRAME + 16 + 512 + 32);
    (plain, sealed, h)
}

fn frame(sealed: &[u8], h: usize, i: usize) -> &[u8] {
    &sealed[h + i * FRAME..(h + (i + 1) * FRAME).min(sealed.len())]
}

#[test]
fn intact_file_opens() {
    let (plain, sealed, _) = five_chunks();
    assert_eq!(open(&sealed).unwrap(), plain);
}

#[test]
fn every_header_bit_flip_is_refused() {
    let (_, sealed, h) = five_chunks();
    for byte in 0..h {
        for bit in 0..8 {
            let mut t = sealed.clone();
            t[byte] ^= 1 << bit;
            let err = open(&t).unwrap_err();
            let want = match byte {
                0..=7 => ErrorKind::Format, // magic
                8 => ErrorKind::Format,     // version
                _ => ErrorKind::Integrity,
            };
            assert_eq!(err.kind(), want, "byte {byte} bit {bit}: {err}");
        }
    }
}

#[test]
fn bit_flips_in_iv_ciphertext_and_tag_are_refused() {
    let (_, sealed, h) = five_chunks();
    let last_frame_len = sealed.len() - h - 4 * FRAME;
    for chunk in [0usize, 2, 4] {
        let start = h + chunk * FRAME;
        let len = if chunk == 4 { last_frame_len } else { FRAME };
        // IV, first ciphertext byte, a middle byte, last ciphertext byte, tag.
        for off in [0, 15, 16, 17, len / 2, len - 33, len - 32, len - 1] {
            let mut t = sealed.clone();
            t[start + off] ^= 0x04;
            match open(&t) {
                Err(Error::ChunkTampered { index }) => assert_eq!(index, chunk as u64),
                other => panic!("chunk {chunk} offset {off}: {other:?}"),
            }
        }
    }
}

#[test]
fn dropped_chunk_is_refused() {
    let (_, sealed, h) = five_chunks();
    for drop in 0..4 {
        let mut t = sealed[..h].to_vec();
        for i in 0..5 {
            if i != drop {
                t.extend_from_slice(frame(&sealed, h, i));
            }
        }
        assert!(
            matches!(open(&t), Err(Error::ChunkTampered { index }) if index == drop as u64),
            "dropping chunk {drop}"
        );
    }
}

#[test]
fn swapped_chunks_are_refused() {
    let (_, sealed, h) = five_chunks();
    let mut t = sealed[..h].to_vec();
    for i in [0, 2, 1, 3, 4] {
        t.extend_from_slice(frame(&sealed, h, i));
    }
    assert!(matches!(open(&t), Err(Error::ChunkTampered { index: 1 })));
}

#[test]
fn truncation_at_every_chunk_boundary_is_refused() {
    let (_, sealed, h) = five_chunks();
    assert!(matches!(
        open(&sealed[..h]),
        Err(Error::TruncatedChunk { index: 0 })
    ));
    for kept in 1..5 {
        let t = &sealed[..h + kept * FRAME];
        match open(t) {
            Err(Error::Truncated { last_index }) => assert_eq!(last_index, kept as u64 - 1),
            other => panic!("truncated to {kept} chunks: {other:?}"),
        }
    }
}

#[test]
fn truncation_inside_a_chunk_is_refused() {
    let (_, sealed, h) = five_chunks();
    for cut in [
        h + 1,
        h + FRAME / 2,
        h + 3 * FRAME + 100,
        sealed.len() - 1,
        sealed.len() - 16,
    ] {
        let err = open(&sealed[..cut]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "cut at {cut}: {err}");
    }
}

#[test]
fn appended_data_is_refused() {
    let (_, sealed, h) = five_chunks();
    for extra in [&[0u8][..], &[0u8; 16], &[0xAA; 5000], frame(&sealed, h, 1)] {
        let mut t = sealed.clone();
        t.extend_from_slice(extra);
        assert_eq!(open(&t).unwrap_err().kind(), ErrorKind::Integrity);
    }
    // A few bytes after a short last frame are named as appended, not as a
    // truncation of the last chunk.
    for n in [1usize, 7, 16, 33] {
        let mut t = sealed.clone();
        t.extend(std::iter::repeat_n(0x5Au8, n));
        assert!(
            matches!(open(&t), Err(Error::TrailingData { last_index: 4 })),
            "{n}: {:?}",
            open(&t)
        );
    }
    // When the real last frame is full-length, the extension is named as such.
    let plain = data(CHUNK + CHUNK - 1);
    let sealed = seal_static(&plain, &key());
    let h = header_len(&sealed);
    assert_eq!(sealed.len(), h + 2 * FRAME);
    let mut t = sealed.clone();
    t.extend_from_slice(&[7u8; 64]);
    assert!(matches!(
        open(&t),
        Err(Error::TrailingData { last_index: 1 })
    ));
}

#[test]
fn chunk_spliced_from_another_file_with_the_same_key_is_refused() {
    let (_, a, h) = five_chunks();
    let b = seal_static(&data(4 * CHUNK + 500), &key());
    assert_ne!(a, b, "fresh salt and IVs per file");
    let mut t = a.clone();
    t[h + FRAME..h + 2 * FRAME].copy_from_slice(frame(&b, h, 1));
    assert!(matches!(open(&t), Err(Error::ChunkTampered { index: 1 })));
}

#[test]
fn wrong_key_and_wrong_password_are_named() {
    let (_, sealed, _) = five_chunks();
    let other = Key::from_bytes([0x22; 32]);
    assert!(matches!(
        open_with(&sealed, Secret::Key(&other), 1),
        Err(Error::WrongStaticKey { .. })
    ));
    assert!(matches!(
        open_with(&sealed, Secret::Password(b"x"), 1),
        Err(Error::SecretKindMismatch { .. })
    ));

    let mut pw_file = Vec::new();
    seal(
        SealKey::password(b"right"),
        &b"x"[..],
        &mut pw_file,
        &SealOptions::default(),
    )
    .unwrap();
    assert!(matches!(
        open_with(&pw_file, Secret::Password(b"wrong"), 1),
        Err(Error::WrongKey)
    ));
    assert_eq!(
        open_with(&pw_file, Secret::Password(b"right"), 1).unwrap(),
        b"x"
    );

    let ks_key = Key::from_bytes([5; 32]);
    let mut ks = Vec::new();
    let sk = SealKey::KeyServer {
        origin: "https://keys.example.org",
        key_id: "abc",
        key: &ks_key,
    };
    seal(sk, &b"y"[..], &mut ks, &SealOptions::default()).unwrap();
    assert!(matches!(
        open_with(&ks, Secret::Key(&other), 1),
        Err(Error::WrongKey)
    ));
}

/// Rewrites the header checksum after an edit, as a deliberate attacker would.
fn fix_checksum(t: &mut [u8], h: usize) {
    let sum = Sha256::digest(&t[..h - 32]);
    t[h - 32..h].copy_from_slice(&sum);
}

#[test]
fn password_file_below_minimum_iterations_is_refused_before_any_work() {
    let mut sealed = Vec::new();
    seal(
        SealKey::password(b"pw"),
        &b"z"[..],
        &mut sealed,
        &SealOptions::default(),
    )
    .unwrap();
    let h = header_len(&sealed);
    // Key info starts at 46: iterations (u32 BE) then the PBKDF2 salt.
    let mut t = sealed.clone();
    t[46..50].copy_from_slice(&1000u32.to_be_bytes());
    fix_checksum(&mut t, h);
    assert!(matches!(
        open_with(&t, Secret::Password(b"pw"), 1),
        Err(Error::WeakKdf {
            iterations: 1000,
            ..
        })
    ));
    let mut t = sealed.clone();
    t[46..50].copy_from_slice(&u32::MAX.to_be_bytes());
    fix_checksum(&mut t, h);
    assert!(matches!(
        open_with(&t, Secret::Password(b"pw"), 1),
        Err(Error::KdfTooCostly { .. })
    ));
    // And the sealer will not write one.
    let weak = SealKey::Password {
        password: b"pw",
        iterations: 1000,
    };
    let err = seal(weak, &b"z"[..], &mut Vec::new(), &SealOptions::default()).unwrap_err();
    assert!(matches!(err, Error::WeakKdf { doing: "seal", .. }), "{err}");
    assert!(err.to_string().starts_with("refusing to seal:"), "{err}");
}

#[test]
fn header_edit_with_recomputed_checksum_fails_authentication() {
    let (_, sealed, h) = five_chunks();
    // The static key id label sits at the end of the key info; change a letter.
    let mut t = sealed.clone();
    let pos = h - 96 - 1;
    assert_eq!(t[pos], b'g');
    t[pos] = b'x';
    fix_checksum(&mut t, h);
    assert!(matches!(open(&t), Err(Error::HeaderTampered)));
}

#[test]
fn junk_and_foreign_files_are_not_medseal() {
    for junk in [
        &b""[..],
        b"hello",
        b"%PDF-1.7 whatever",
        &[0x89, b'M', b'S'],
    ] {
        assert!(matches!(Opener::new(junk), Err(Error::NotMedseal)));
    }
    let mut v2 = medseal_format::MAGIC.to_vec();
    v2.push(2);
    assert!(matches!(
        Opener::new(&v2[..]),
        Err(Error::UnsupportedVersion(2))
    ));
}

#[test]
fn failed_open_releases_no_plaintext_of_the_bad_chunk() {
    let (plain, sealed, h) = five_chunks();
    let mut t = sealed.clone();
    t[h + 2 * FRAME + 100] ^= 1;
    let mut out = Vec::new();
    let err = Opener::new(&t[..])
        .unwrap()
        .open(Secret::Key(&key()), &mut out, &OpenOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::ChunkTampered { index: 2 }));
    // Only the chunks before the bad one were released, and they are genuine.
    assert!(out.len() <= 2 * CHUNK);
    assert_eq!(out[..], plain[..out.len()]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_around_chunk_boundaries(
        chunks in 0usize..4,
        delta in -20i64..20,
        threads in 1usize..4,
        seed in any::<u8>(),
    ) {
        let n = (chunks as i64 * CHUNK as i64 + delta).max(0) as usize;
        let plain: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed | 1)).collect();
        let sealed = seal_static(&plain, &key());
        // The positional sealer writes the same layout (fresh randomness aside).
        let mem = MemAt::default();
        let opts = SealOptions { chunk_log2: LOG2, threads: NonZeroUsize::new(threads) };
        let k = key();
        let summary = seal_at(SealKey::StaticKey { key: &k, key_id: "org" }, &plain[..], &mem, &opts, &|_| {}).unwrap();
        let positional = mem.0.into_inner().unwrap();
        prop_assert_eq!(positional.len() as u64, summary.sealed_len);
        prop_assert_eq!(positional.len(), sealed.len());
        prop_assert_eq!(open_with(&positional, Secret::Key(&k), threads).unwrap(), plain.clone());
        // Overhead: header, 48 per frame, 1..=16 bytes of padding.
        let frames = n / CHUNK + 1;
        let h = header_len(&sealed);
        prop_assert_eq!(sealed.len(), h + frames * 48 + (n / 16 + 1) * 16);
        prop_assert_eq!(open_with(&sealed, Secret::Key(&key()), threads).unwrap(), plain);
    }
}

/// The pushing sealer (the browser's) makes files of the same shape as the
/// pulling one, for every size around chunk boundaries and however the
/// producer splits its writes, and they open to the same plaintext.
#[test]
fn the_pushing_sealer_agrees_with_the_pulling_one() {
    use std::io::Write;
    let opts = SealOptions {
        chunk_log2: LOG2,
        threads: None,
    };
    let k = key();
    for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
        let plain = data(n);
        for piece in [1, 7, CHUNK, 3 * CHUNK + 5] {
            let mut w = medseal_format::SealWriter::new(
                SealKey::StaticKey {
                    key: &k,
                    key_id: "org",
                },
                Vec::new(),
                &opts,
            )
            .unwrap();
            for part in plain.chunks(piece) {
                w.write_all(part).unwrap();
            }
            let (pushed, summary) = w.finish().unwrap();
            let pulled = seal_static(&plain, &k);
            assert_eq!(pushed.len(), pulled.len(), "size {n}, writes of {piece}");
            assert_eq!(summary.sealed_len, pushed.len() as u64);
            assert_eq!(summary.plaintext_len, n as u64);
            assert_eq!(open(&pushed).unwrap(), plain, "size {n}, writes of {piece}");
        }
    }
    // Dropped before `finish`: no final chunk, refused as truncated.
    let mut w = medseal_format::SealWriter::new(
        SealKey::StaticKey {
            key: &k,
            key_id: "org",
        },
        Vec::new(),
        &opts,
    )
    .unwrap();
    w.write_all(&data(2 * CHUNK + 3)).unwrap();
    assert!(open(&w.into_unfinished()).is_err());
}
