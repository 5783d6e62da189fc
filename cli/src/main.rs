//! `medseal`: the one command line for clinicians, recipients and operators.
//!
//! Thin by design: each subcommand parses its flags, calls a library crate and
//! prints. Every failure ends as one line on stderr and a non-zero exit code
//! (see [`exit`] for the codes scripts can rely on).

#![forbid(unsafe_code)]

mod cmd;
mod delivery;
mod exit;
mod files;
mod keysource;
mod progress;
mod secrets;
mod sessions;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("medseal: {}", exit::one_line(&err));
            exit::code_for(&err)
        }
    }
}
