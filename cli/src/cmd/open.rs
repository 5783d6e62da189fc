//! `medseal open`: sealed file in, verified plaintext out.

use std::num::NonZeroUsize;

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use medseal_format::{At, OpenOptions, Opener};

use crate::files::{InputPath, Output, check_one_stdin, output_name};
use crate::keysource::OpenKeys;
use crate::progress;

/// Arguments of `medseal open`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The password, read from this file (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "key_file")]
    password_file: Option<String>,
    /// The organisation key: 32 raw bytes, or hex, or base64.
    #[arg(long, value_name = "FILE")]
    key_file: Option<String>,
    /// Worker threads (default: every core).
    #[arg(long, value_name = "N", value_parser = super::parse_threads)]
    threads: Option<NonZeroUsize>,
    /// Where to write (`-` for stdout). Default: IN without `.mseal`.
    #[arg(short, long, value_name = "OUT", conflicts_with = "extract")]
    output: Option<String>,
    /// Unpack a report into this new directory: manifest.json, report.pdf,
    /// media/ — each file checked against the manifest.
    #[arg(long, value_name = "DIR")]
    extract: Option<PathBuf>,
    /// The sealed file (`-` for stdin).
    #[arg(value_name = "IN")]
    input: String,
}

pub fn run(a: Args) -> Result<()> {
    let input = InputPath::from(a.input.as_str());
    let pw_path = a.password_file.as_deref().map(InputPath::from);
    let key_path = a.key_file.as_deref().map(InputPath::from);
    check_one_stdin(&[Some(&input), pw_path.as_ref(), key_path.as_ref()])?;

    if let Some(dir) = &a.extract
        && dir.exists()
    {
        bail!("{} already exists", dir.display());
    }
    // RNCryptor v3 messages start with 0x03, medseal files with 0x89. The
    // peeked bytes stay in `raw`, which a stream (stdin) is read through.
    let mut raw = std::io::BufReader::new(input.open_raw()?);
    let first = std::io::BufRead::fill_buf(&mut raw)
        .with_context(|| format!("cannot read {input}"))?
        .to_vec();
    if medseal_format::rncryptor::looks_like(&first) {
        if a.extract.is_some() {
            bail!("{input} is an RNCryptor message, not a medseal report: open it with -o");
        }
        let dest = output_name(a.output.as_deref(), &input, |n| {
            n.strip_suffix(".rncryptor").map(str::to_owned)
        })?;
        let material = super::rncryptor::RnMaterial::read(pw_path.as_ref(), key_path.as_ref())?;
        return super::rncryptor::open(&input, &mut raw, &material, &dest);
    }
    let dest = match a.extract {
        Some(_) => String::new(),
        None => output_name(a.output.as_deref(), &input, |n| {
            n.strip_suffix(".mseal").map(str::to_owned)
        })?,
    };

    let bar = progress::bar(input.len(), "opening");
    let regular = input.open_regular()?;
    let context = || format!("cannot open {input}");
    let source = match &regular {
        Some(file) => Source::File(Opener::at(file).with_context(context)?),
        None => {
            let reader: Box<dyn Read> = Box::new(bar.wrap_read(raw));
            Source::Stream(Opener::new(reader).with_context(context)?)
        }
    };

    let keys = OpenKeys::read(pw_path.as_ref(), key_path.as_ref())?;
    let material = keys.material(source.header().key_mode(), &input)?;
    let secret = material.secret();

    let opts = OpenOptions { threads: a.threads };
    if let Some(dir) = &a.extract {
        // The bundle goes through an unnamed 0600 temporary file beside the
        // destination, gone when this process ends, then into the directory.
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        let mut plain = tempfile::tempfile_in(parent)
            .with_context(|| format!("cannot write in {}", parent.display()))?;
        match source {
            Source::File(opener) => opener.open_at(secret, &plain, &opts, &|n| bar.inc(n)),
            Source::Stream(opener) => opener.open(secret, &mut plain, &opts),
        }
        .with_context(context)?;
        bar.finish_and_clear();
        plain.seek(SeekFrom::Start(0))?;
        let manifest =
            medseal_capture::extract::extract(BufReader::new(plain), dir).with_context(context)?;
        eprintln!(
            "report {} extracted to {}: {} media files",
            manifest.report_id,
            dir.display(),
            manifest.media.len()
        );
        return Ok(());
    }
    let mut out = Output::create(&dest, &input)?;
    let opened = match source {
        // Files on both sides: every worker reads and writes its own chunks.
        Source::File(opener) => match out.file() {
            Some(dest_file) => opener.open_at(secret, dest_file, &opts, &|n| bar.inc(n)),
            None => opener.open(secret, &mut out, &opts),
        },
        Source::Stream(opener) => opener.open(secret, &mut out, &opts),
    };
    opened.with_context(context)?;
    bar.finish_and_clear();
    out.commit()
}

/// The sealed input: a regular file (positional reads) or a stream.
enum Source<'a> {
    File(Opener<At<'a, File>>),
    Stream(Opener<Box<dyn Read>>),
}

impl Source<'_> {
    fn header(&self) -> &medseal_format::Header {
        match self {
            Source::File(o) => o.header(),
            Source::Stream(o) => o.header(),
        }
    }
}
