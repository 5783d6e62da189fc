//! In-memory throughput of seal and open, without file I/O:
//! `cargo run --release -p medseal-format --example throughput [MiB] [threads]`.
use std::num::NonZeroUsize;
use std::time::Instant;

use medseal_format::{Key, OpenOptions, Opener, SealKey, SealOptions, Secret, seal};

fn main() -> Result<(), medseal_format::Error> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let threads = args
        .next()
        .and_then(|a| a.parse().ok())
        .and_then(NonZeroUsize::new);
    let data = vec![0x5au8; mib << 20];
    let key = Key::generate()?;
    // Pre-fault the output buffers so that page faults are not measured.
    let mut sealed = vec![0u8; data.len() + data.len() / 1000 + 4096];
    sealed.clear();
    let t = Instant::now();
    seal(
        SealKey::StaticKey {
            key: &key,
            key_id: "",
        },
        &data[..],
        &mut sealed,
        &SealOptions {
            threads,
            ..Default::default()
        },
    )?;
    let s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    Opener::new(&sealed[..])?.open(Secret::Key(&key), std::io::sink(), &OpenOptions { threads })?;
    let o = t.elapsed().as_secs_f64();
    let gb = data.len() as f64 / 1e9;
    println!("seal {:.2} GB/s, open {:.2} GB/s", gb / s, gb / o);
    Ok(())
}
