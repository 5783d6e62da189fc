//! The command tree. Each subcommand lives in its own module and stays thin.

mod audit;
mod capture;
mod endpoint;
mod inspect;
mod keyref;
mod keyserver;
mod login;
mod open;
mod outbox;
mod recipients;
mod revoke;
mod rncryptor;
mod seal;
mod send;
mod session;
mod share;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Seal, open and deliver consented clinical media.
#[derive(Debug, Parser)]
#[command(name = "medseal", version, about, max_term_width = 100)]
pub struct Cli {
    /// An extra CA certificate (PEM) to trust for key servers, for a
    /// private PKI; `$SSL_CERT_FILE` is trusted too.
    #[arg(long, global = true, value_name = "FILE", env = "MEDSEAL_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Encrypt and authenticate a file into a sealed .mseal file.
    Seal(seal::Args),
    /// Verify and decrypt a sealed file.
    Open(open::Args),
    /// Capture consented media into one sealed report.
    Capture(Box<capture::Args>),
    /// Print a sealed file's header as JSON (needs no key).
    Inspect(inspect::Args),
    /// Open a session with a key server from this device.
    Login(login::Args),
    /// End this device's session with a key server.
    Logout(session::LogoutArgs),
    /// Who this device is logged in as, at each key server.
    Whoami(session::WhoamiArgs),
    /// Revoke a report's key: no copy of it opens again.
    Revoke(revoke::Args),
    /// Let more people open a report already sent.
    Recipients(recipients::Args),
    /// Queue a sealed report for destinations and deliver it.
    Send(send::Args),
    /// Share a sealed report as a link that opens in the web app.
    Share(share::Args),
    /// See and deliver what is queued.
    Outbox(outbox::Args),
    /// Run and administer the key server.
    Keyserver(keyserver::Args),
    /// Run the receiving endpoint beside an EMR.
    Endpoint(endpoint::Args),
    /// A report's audit trail (who opened it, when), or checks of a key
    /// server's log from outside: receipts, and a witness.
    Audit(audit::Args),
}

/// This machine's offset from UTC in seconds, read once at start.
pub static LOCAL_UTC_OFFSET: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    crate::sessions::set_ca_cert(cli.ca_cert);
    match cli.command {
        Command::Seal(a) => seal::run(a),
        Command::Open(a) => open::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Capture(a) => capture::run(*a),
        Command::Keyserver(a) => keyserver::run(a),
        Command::Login(a) => login::run(a),
        Command::Logout(a) => session::logout(a),
        Command::Whoami(a) => session::whoami(a),
        Command::Revoke(a) => revoke::run(a),
        Command::Recipients(a) => recipients::run(a),
        Command::Send(a) => send::run(a),
        Command::Share(a) => share::run(a),
        Command::Outbox(a) => outbox::run_command(a),
        Command::Endpoint(a) => endpoint::run(a),
        Command::Audit(a) => audit::run(a),
    }
}

/// Parses `--threads`: a positive count.
fn parse_threads(s: &str) -> Result<std::num::NonZeroUsize, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a positive number of threads"))
}
