//! `medseal endpoint serve`: run the receiving endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use medseal_endpoint::{
    DEFAULT_LISTEN, DEFAULT_MAX_REPORT_BYTES, DEFAULT_SENDER_QUOTA_BYTES,
    DEFAULT_SENDER_QUOTA_REPORTS, SenderQuota,
};
use medseal_endpoint::{EndpointConfig, serve};

use crate::delivery::load_destinations;

/// Arguments of `medseal endpoint`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Accept sealed reports, open them as the service account and forward
    /// them to the record.
    Serve(Box<Serve>),
}

#[derive(Debug, clap::Args)]
struct Serve {
    /// The key server whose reports this endpoint opens.
    #[arg(long, value_name = "URL")]
    keyserver: String,
    /// The service account's credentials: a 0600 TOML file with `email`
    /// and `password`.
    #[arg(long, value_name = "FILE")]
    credentials: PathBuf,
    /// A destination (in the destinations file) every report is forwarded
    /// to; repeat for several.
    #[arg(long, value_name = "NAME", required = true)]
    forward: Vec<String>,
    /// The destinations file (default: $MEDSEAL_DESTINATIONS, else
    /// destinations.toml in the config directory).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the endpoint keeps its outbox and device id.
    #[arg(long, value_name = "DIR", default_value = "medseal-endpoint-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Serve plain HTTP on a non-loopback address (only behind a
    /// TLS-terminating proxy).
    #[arg(long)]
    allow_plain_http: bool,
    /// Largest report accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REPORT_BYTES)]
    max_report_bytes: u64,
    /// HTTP worker threads (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// An organisation (as the key server names it) whose members may send
    /// reports here; repeat for several. Default: the service account's.
    #[arg(long = "accept-org", value_name = "ORG")]
    accept_orgs: Vec<String>,
    /// Reports one sender may have waiting here at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SENDER_QUOTA_REPORTS)]
    sender_quota_reports: u64,
    /// Bytes one sender's reports may hold here at once.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SENDER_QUOTA_BYTES)]
    sender_quota_bytes: u64,
    /// An origin (https://host[:port]; http:// only on loopback) whose
    /// pages may send reports here from a browser: the key server's web
    /// app. Repeat for several. Without it, no cross-origin request is
    /// answered as one.
    #[arg(long = "allow-origin", value_name = "URL")]
    allow_origins: Vec<String>,
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        Command::Serve(s) => run_serve(*s),
    }
}

fn run_serve(s: Serve) -> Result<()> {
    let destinations = load_destinations(s.config.as_deref())?;
    let keyserver_ca = crate::sessions::extra_ca()?;
    serve(EndpointConfig {
        keyserver: s.keyserver,
        keyserver_ca,
        credentials: s.credentials,
        destinations,
        forward: s.forward,
        data_dir: s.data_dir,
        listen: s.listen,
        allow_plain_http: s.allow_plain_http,
        max_report_bytes: s.max_report_bytes,
        workers: s.workers,
        accept_orgs: s.accept_orgs,
        sender_quota: SenderQuota {
            reports: s.sender_quota_reports,
            bytes: s.sender_quota_bytes,
        },
        allow_origins: s.allow_origins,
    })?;
    Ok(())
}
