//! Published test vectors, checked in both directions:
//!
//! 1. opening `sealed` with the given secret yields `plaintext`;
//! 2. sealing `plaintext` with the same secret, replaying the recorded
//!    randomness (`randomness`: PBKDF2 salt if any, header salt, then one IV
//!    per chunk, in that order) yields `sealed` byte for byte;
//! 3. every `invalid` vector is refused with the stated error class.
//!
//! Regenerate with `MEDSEAL_REGENERATE_VECTORS=1 cargo test -p medseal-format --test vectors`.

use std::convert::Infallible;
use std::path::PathBuf;

use medseal_format::{
    ErrorKind, Key, OpenOptions, Opener, SealKey, SealOptions, Secret, seal_with_rng,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{SeedableRng, TryCryptoRng, TryRng};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Vector {
    description: String,
    /// `keyserver`, `static-key` or `password`.
    mode: String,
    /// Hex key (keyserver and static-key modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// UTF-8 password (password mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iterations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyserver_origin: Option<String>,
    #[serde(default)]
    key_id: String,
    chunk_size_log2: u8,
    /// Hex of every random byte the sealer drew, in order.
    randomness: String,
    plaintext: String,
    sealed: String,
    /// Files derived from `sealed` that must be refused.
    #[serde(default)]
    invalid: Vec<Invalid>,
}

#[derive(Serialize, Deserialize)]
struct Invalid {
    description: String,
    sealed: String,
    /// `integrity`, `key`, `format` or `policy`.
    error: String,
}

/// Replays recorded bytes; an RNG only for reproducing vectors.
struct Replay(Vec<u8>, usize);

impl TryRng for Replay {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("the sealer draws bytes only")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("the sealer draws bytes only")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        dst.copy_from_slice(&self.0[self.1..self.1 + dst.len()]);
        self.1 += dst.len();
        Ok(())
    }
}
impl TryCryptoRng for Replay {}

/// Records what a seeded generator hands out.
struct Recording(ChaCha20Rng, Vec<u8>);

impl TryRng for Recording {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("the sealer draws bytes only")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("the sealer draws bytes only")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.try_fill_bytes(dst)?;
        self.1.extend_from_slice(dst);
        Ok(())
    }
}
impl TryCryptoRng for Recording {}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn with_seal_key<T>(v: &Vector, f: impl FnOnce(SealKey<'_>) -> T) -> T {
    let key = v
        .key
        .as_ref()
        .map(|k| Key::from_slice(&hex::decode(k).unwrap()).unwrap());
    let sk = match v.mode.as_str() {
        "keyserver" => SealKey::KeyServer {
            origin: v.keyserver_origin.as_deref().unwrap(),
            key_id: &v.key_id,
            key: key.as_ref().unwrap(),
        },
        "static-key" => SealKey::StaticKey {
            key: key.as_ref().unwrap(),
            key_id: &v.key_id,
        },
        "password" => SealKey::Password {
            password: v.password.as_deref().unwrap().as_bytes(),
            iterations: v.iterations.unwrap(),
        },
        m => panic!("unknown mode {m}"),
    };
    f(sk)
}

fn open(v: &Vector, sealed: &[u8]) -> medseal_format::Result<Vec<u8>> {
    let key = v
        .key
        .as_ref()
        .map(|k| Key::from_slice(&hex::decode(k).unwrap()).unwrap());
    let secret = match &key {
        Some(k) => Secret::Key(k),
        None => Secret::Password(v.password.as_deref().unwrap().as_bytes()),
    };
    let mut out = Vec::new();
    Opener::new(sealed)?.open(secret, &mut out, &OpenOptions::default())?;
    Ok(out)
}

fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Format => "format",
        ErrorKind::Key => "key",
        ErrorKind::Integrity => "integrity",
        ErrorKind::Policy => "policy",
        ErrorKind::Environment => "environment",
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

struct Spec {
    name: &'static str,
    description: &'static str,
    mode: &'static str,
    len: usize,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "password-empty",
        description: "password mode, empty plaintext: one padding-only last chunk",
        mode: "password",
        len: 0,
    },
    Spec {
        name: "static-key-short",
        description: "static organisation key, 100 bytes: one short last chunk",
        mode: "static-key",
        len: 100,
    },
    Spec {
        name: "static-key-exactly-one-chunk",
        description: "static key, exactly one chunk (4096 bytes): a full chunk then an empty last chunk",
        mode: "static-key",
        len: 4096,
    },
    Spec {
        name: "keyserver-many-chunks",
        description: "key server data key, three full chunks and a short last chunk",
        mode: "keyserver",
        len: 3 * 4096 + 1000,
    },
    Spec {
        name: "password-last-chunk-one-block-short",
        description: "password mode, last chunk of chunk_size-1 bytes: ciphertext fills the frame",
        mode: "password",
        len: 4096 + 4095,
    },
];

fn generate(spec: &Spec, seed: u64) -> Vector {
    let mut v = Vector {
        description: spec.description.into(),
        mode: spec.mode.into(),
        key: None,
        password: None,
        iterations: None,
        keyserver_origin: None,
        key_id: String::new(),
        chunk_size_log2: 12,
        randomness: String::new(),
        plaintext: hex::encode(pattern(spec.len)),
        sealed: String::new(),
        invalid: Vec::new(),
    };
    match spec.mode {
        "password" => {
            v.password = Some("correct horse battery staple".into());
            v.iterations = Some(600_000);
        }
        "static-key" => {
            v.key = Some(hex::encode([0x42u8; 32]));
            v.key_id = "org-2026".into();
        }
        _ => {
            v.key = Some(hex::encode((0u8..32).collect::<Vec<_>>()));
            v.keyserver_origin = Some("https://keys.example.org".into());
            v.key_id = "k_0123456789abcdef".into();
        }
    }
    let mut rng = Recording(ChaCha20Rng::seed_from_u64(seed), Vec::new());
    let mut sealed = Vec::new();
    let plaintext = pattern(spec.len);
    let opts = SealOptions {
        chunk_log2: 12,
        threads: None,
    };
    with_seal_key(&v, |sk| {
        seal_with_rng(sk, &plaintext[..], &mut sealed, &opts, &mut rng)
    })
    .unwrap();
    v.randomness = hex::encode(&rng.1);
    v.sealed = hex::encode(&sealed);

    // Invalid variants, described so that another implementation can check it
    // refuses them too.
    let header_len = Opener::new(&sealed[..]).unwrap().header().as_bytes().len();
    let mut flipped = sealed.clone();
    flipped[header_len + 20] ^= 0x01;
    v.invalid.push(Invalid {
        description: "one bit flipped in the first chunk's ciphertext".into(),
        sealed: hex::encode(&flipped),
        error: "integrity".into(),
    });
    let mut flipped = sealed.clone();
    flipped[20] ^= 0x80;
    v.invalid.push(Invalid {
        description: "one bit flipped in the header salt".into(),
        sealed: hex::encode(&flipped),
        error: "integrity".into(),
    });
    v.invalid.push(Invalid {
        description: "last byte removed".into(),
        sealed: hex::encode(&sealed[..sealed.len() - 1]),
        error: "integrity".into(),
    });
    v
}

#[test]
fn vectors_both_directions() {
    let regenerate = std::env::var_os("MEDSEAL_REGENERATE_VECTORS").is_some();
    for (i, spec) in SPECS.iter().enumerate() {
        let path = dir().join(format!("{}.json", spec.name));
        if regenerate {
            let v = generate(spec, i as u64 + 1);
            std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
        }
        let v: Vector = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let sealed = hex::decode(&v.sealed).unwrap();
        let plaintext = hex::decode(&v.plaintext).unwrap();

        assert_eq!(open(&v, &sealed).unwrap(), plaintext, "{}: open", spec.name);

        let mut again = Vec::new();
        let mut rng = Replay(hex::decode(&v.randomness).unwrap(), 0);
        let opts = SealOptions {
            chunk_log2: v.chunk_size_log2,
            threads: None,
        };
        with_seal_key(&v, |sk| {
            seal_with_rng(sk, &plaintext[..], &mut again, &opts, &mut rng)
        })
        .unwrap();
        assert_eq!(hex::encode(&again), v.sealed, "{}: seal", spec.name);
        assert_eq!(rng.1, rng.0.len(), "{}: all randomness used", spec.name);

        for bad in &v.invalid {
            let err = open(&v, &hex::decode(&bad.sealed).unwrap()).unwrap_err();
            assert_eq!(
                kind_name(err.kind()),
                bad.error,
                "{}: {}",
                spec.name,
                bad.description
            );
        }
    }
}
