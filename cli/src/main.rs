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
    // The local UTC offset, for times a person reads (the report PDF): read
    // now, while this process has one thread; once a second exists the
    // system's time-zone functions are not safe to call, and `time` refuses.
    let offset = time::UtcOffset::current_local_offset().map_or(0, |o| o.whole_seconds());
    let _ = cmd::LOCAL_UTC_OFFSET.set(offset);
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("medseal: {}", exit::one_line(&err));
            exit::code_for(&err)
        }
    }
}
