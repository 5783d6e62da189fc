//! `medseal inspect`: the header as JSON, without any key.

use anyhow::{Context, Result};
use medseal_format::Header;
use medseal_format::header::describe;

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
