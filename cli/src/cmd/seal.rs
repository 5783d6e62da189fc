//! `medseal seal`: plaintext in, sealed file out.

use std::num::NonZeroUsize;

use anyhow::{Context, Result, bail};
use medseal_format::SealOptions;

use crate::files::{InputPath, Output, check_one_stdin, output_name};
use medseal_capture::report::new_report_id;

use crate::keysource::KeyArgs;
use crate::progress;

/// Arguments of `medseal seal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    key: KeyArgs,
    /// The report id recorded with a key server's key (default: a new random id).
    #[arg(long, value_name = "ID", requires = "keyserver")]
    report_id: Option<String>,
    /// Plaintext bytes per chunk: a power of two from 4K to 1M.
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_chunk_size)]
    chunk_size: u8,
    /// Worker threads (default: every core).
    #[arg(long, value_name = "N", value_parser = super::parse_threads)]
    threads: Option<NonZeroUsize>,
    /// Where to write (`-` for stdout). Default: IN with `.mseal` added.
    #[arg(short, long, value_name = "OUT")]
    output: Option<String>,
    /// The format to write: medseal (default), or RNCryptor v3 for systems
    /// that only read that (password, or a 64-byte key file).
    #[arg(long, value_enum, default_value_t = Format::Medseal)]
    format: Format,
    /// The file to seal (`-` for stdin).
    #[arg(value_name = "IN")]
    input: String,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The medseal format (docs/format.md).
    Medseal,
    /// RNCryptor v3, for interoperability (docs/format.md §11).
    #[value(name = "rncryptor-v3")]
    RncryptorV3,
}

/// Turns `64K`, `1M` or a byte count into log2 of the chunk size.
fn parse_chunk_size(s: &str) -> Result<u8, String> {
    let (num, mult) = match s.to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 1u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 1u64 << 20),
        t => (t, 1),
    };
    let bytes = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}' is not a size"))?;
    let ok = bytes.is_power_of_two()
        && (medseal_format::MIN_CHUNK_LOG2..=medseal_format::MAX_CHUNK_LOG2)
            .contains(&(bytes.trailing_zeros() as u8));
    if !ok {
        return Err("the chunk size must be a power of two from 4K to 1M".into());
    }
    Ok(bytes.trailing_zeros() as u8)
}

pub fn run(a: Args) -> Result<()> {
    let input = InputPath::from(a.input.as_str());
    let secrets = a.key.inputs();
    check_one_stdin(&[Some(&input), secrets.first(), secrets.get(1)])?;

    if a.format == Format::RncryptorV3 {
        if a.key.keyserver.is_some() {
            bail!("RNCryptor has no key-server mode; give --password-file or --key-file");
        }
        let dest = output_name(a.output.as_deref(), &input, |n| {
            Some(format!("{n}.rncryptor"))
        })?;
        let pw = a.key.password_file.as_deref().map(InputPath::from);
        let key = a.key.key_file.as_deref().map(InputPath::from);
        let material = super::rncryptor::RnMaterial::read(pw.as_ref(), key.as_ref())?;
        return super::rncryptor::seal(&input, &material, &dest);
    }
    let dest = output_name(a.output.as_deref(), &input, |n| Some(format!("{n}.mseal")))?;
    let report_id = match &a.report_id {
        Some(r) => r.clone(),
        None => new_report_id()?,
    };
    let material = a.key.resolve(&report_id)?;
    let seal_key = material.seal_key();

    let opts = SealOptions {
        chunk_log2: a.chunk_size,
        threads: a.threads,
    };
    let mut out = Output::create(&dest, &input)?;
    let bar = progress::bar(input.len(), "sealing");
    let sealed = match (input.open_regular()?, out.file()) {
        // Files on both sides: every worker reads and writes its own chunks.
        (Some(file), Some(dest_file)) => {
            medseal_format::seal_at(seal_key, &file, dest_file, &opts, &|n| bar.inc(n))
        }
        _ => {
            let reader = bar.wrap_read(input.open_raw()?);
            medseal_format::seal(seal_key, reader, &mut out, &opts)
        }
    };
    sealed.with_context(|| format!("cannot seal {input}"))?;
    bar.finish_and_clear();
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::parse_chunk_size;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size("1M"), Ok(20));
        assert_eq!(parse_chunk_size("64k"), Ok(16));
        assert_eq!(parse_chunk_size("4096"), Ok(12));
        assert!(parse_chunk_size("2M").is_err());
        assert!(parse_chunk_size("3000").is_err());
        assert!(parse_chunk_size("x").is_err());
    }
}
