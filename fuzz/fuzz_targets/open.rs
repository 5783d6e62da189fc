//! The chunk parser: a valid static-key header followed by arbitrary frames,
//! opened through both the streaming and the positional path. Must never
//! panic, and any plaintext must come only from authentic chunks.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use medseal_format::{Key, OpenOptions, Opener, SealKey, SealOptions, Secret, WriteAt};

const KEY: [u8; 32] = [0x42; 32];

fn header() -> &'static [u8] {
    static H: OnceLock<Vec<u8>> = OnceLock::new();
    H.get_or_init(|| {
        let key = Key::from_bytes(KEY);
        let mut out = Vec::new();
        let opts = SealOptions {
            chunk_log2: 12,
            threads: None,
        };
        let sk = SealKey::StaticKey {
            key: &key,
            key_id: "fuzz",
        };
        if medseal_format::seal(sk, &b""[..], &mut out, &opts).is_err() {
            return Vec::new();
        }
        let len = Opener::new(&out[..])
            .map(|o| o.header().as_bytes().len())
            .unwrap_or(0);
        out.truncate(len);
        out
    })
}

struct Sink;
impl WriteAt for Sink {
    fn write_at(&self, buf: &[u8], _offset: u64) -> std::io::Result<usize> {
        Ok(buf.len())
    }
}

fuzz_target!(|body: &[u8]| {
    let mut file = header().to_vec();
    file.extend_from_slice(body);
    let key = Key::from_bytes(KEY);
    let opts = OpenOptions {
        threads: std::num::NonZeroUsize::new(2),
    };
    let streamed =
        Opener::new(&file[..]).and_then(|o| o.open(Secret::Key(&key), std::io::sink(), &opts));
    let positional =
        Opener::at(&file[..]).and_then(|o| o.open_at(Secret::Key(&key), &Sink, &opts, &|_| {}));
    assert_eq!(format!("{streamed:?}"), format!("{positional:?}"));
});
