//! `medseal inspect`: the header as JSON, without any key.

use anyhow::{Context, Result};
use medseal_format::chunk::{FRAME_OVERHEAD, max_frame_len};
use medseal_format::header::hex_lower;
use medseal_format::{Header, KeyMode};
use serde_json::{Value, json};

use crate::files::InputPath;

/// Arguments of `medseal inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sealed file (`-` for stdin).
    #[arg(value_name = "IN")]
    input: String,
}

pub fn run(a: Args) -> Result<()> {
    let input = InputPath::from(a.input.as_str());
    let mut reader = input.open_raw()?;
    let header =
        Header::read_from(&mut reader).with_context(|| format!("cannot inspect {input}"))?;
    let doc = describe(&header, input.len());
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// The JSON description of a header. `sealed_len` (the file size, when known)
/// adds the chunk count and plaintext size, which follow from the layout.
fn describe(h: &Header, sealed_len: Option<u64>) -> Value {
    let mut doc = json!({
        "format": "medseal",
        "version": h.version(),
        "key_mode": h.key_mode().name(),
        "cipher": "AES-256-CBC, HMAC-SHA256 encrypt-then-MAC, HKDF-SHA256",
        "chunk_size": h.chunk_size(),
        "header_size": h.as_bytes().len(),
        "salt": hex_lower(h.salt()),
    });
    let extra = match h.key_mode() {
        KeyMode::KeyServer { origin, key_id } => json!({"keyserver": origin, "key_id": key_id}),
        KeyMode::StaticKey {
            fingerprint,
            key_id,
        } => json!({"key_fingerprint": hex_lower(fingerprint), "key_id": key_id}),
        KeyMode::Password { iterations, salt } => json!({"kdf": {
            "algorithm": "PBKDF2-HMAC-SHA256",
            "iterations": iterations,
            "salt": hex_lower(salt),
        }}),
    };
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    if let Some(total) = sealed_len {
        let body = total.saturating_sub(h.as_bytes().len() as u64);
        let frame = max_frame_len(h.chunk_size()) as u64;
        let chunks = body.div_ceil(frame);
        // The last frame holds 1..=16 bytes of padding: give the exact range.
        let last_frame = body - chunks.saturating_sub(1) * frame;
        let full = chunks.saturating_sub(1) * h.chunk_size() as u64;
        let last_ct = last_frame.saturating_sub(FRAME_OVERHEAD as u64);
        doc["sealed_size"] = json!(total);
        doc["chunks"] = json!(chunks);
        doc["plaintext_size_max"] = json!(full + last_ct.saturating_sub(1));
    }
    doc
}
