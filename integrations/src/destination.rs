//! The one interface every delivery target implements.

use std::path::Path;

use medseal_format::Header;
use serde::{Deserialize, Serialize};

use crate::error::DeliveryError;
use crate::opened::OpenedReport;

/// A sealed report on its way to one destination.
pub struct Parcel<'a> {
    /// The sealed file, as kept by the outbox.
    pub sealed: &'a Path,
    /// The name to give it at the destination (`report-….mseal`).
    pub file_name: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: &'a str,
    /// Its authenticated header (key mode, key server origin).
    pub header: &'a Header,
    /// Stable for this report and destination across every retry: the
    /// destination uses it to recognise a report it already has.
    pub idempotency_key: &'a str,
    /// The opened report, when [`Destination::needs_opened_report`] says so.
    pub opened: Option<&'a OpenedReport>,
    /// The sender's key-server session, when
    /// [`Destination::needs_sender_session`] says so.
    pub sender: Option<&'a SenderSession>,
    /// A private directory (0700) where a destination may keep what it needs
    /// to resume an interrupted upload after a crash (an upload session's
    /// id), in a file named after the idempotency key, removed once the
    /// delivery is done.
    pub scratch: Option<&'a Path>,
}

/// A sender's session with the key server a report names: what a medseal
/// receiving endpoint checks before it accepts the report.
pub struct SenderSession {
    /// The bearer token.
    pub token: zeroize::Zeroizing<String>,
    /// The device the session is bound to.
    pub device_id: String,
    /// An extra CA certificate (PEM file) to trust for the key server, as
    /// given to the command line (`--ca-cert`, `$MEDSEAL_CA_CERT`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Parcel<'_> {
    /// The opened report, or the error that says a key is needed.
    pub fn require_opened(&self, destination: &str) -> Result<&OpenedReport, DeliveryError> {
        self.opened.ok_or_else(|| {
            DeliveryError::needs_key(format!(
                "{destination} needs the report's contents: give the key (--key-file, --password-file) or log in to its key server"
            ))
        })
    }
}

/// What a destination receives: the sealed file as it is, or the opened
/// report (only over TLS to a system that is itself a record store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// The `.mseal` file.
    #[default]
    Sealed,
    /// The opened bundle (tar: manifest.json, report.pdf, media/).
    Plain,
}

/// Proof that a destination has the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The destination's own identifier for what it stored (file id,
    /// resource id, Message-ID, SOP instance UIDs…).
    pub id: String,
    /// Where it can be found, when the destination says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// True when the destination already had this report (a retry after an
    /// interrupted delivery): nothing new was stored.
    #[serde(default)]
    pub already_present: bool,
}

/// Progress of an upload, shown as a bar on a terminal by the command line.
pub trait Progress: Sync {
    /// A transfer of `total` bytes begins.
    fn begin(&self, total: u64);
    /// `n` more bytes went out.
    fn advance(&self, n: u64);
}

/// A shared progress sink: upload bodies run on the HTTP client's own
/// reader, so the sink must outlive the call.
pub type ProgressHandle = std::sync::Arc<dyn Progress + Send>;

/// Progress that goes nowhere.
pub struct NoProgress;

impl NoProgress {
    /// A handle to it.
    pub fn handle() -> ProgressHandle {
        std::sync::Arc::new(NoProgress)
    }
}

impl Progress for NoProgress {
    fn begin(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// A place reports can be delivered to.
///
/// Implementations must be idempotent on [`Parcel::idempotency_key`]: the
/// outbox calls `deliver` again after a crash or a timeout without knowing
/// whether the first call reached the destination. See
/// `docs/integrations.md` for a worked example.
pub trait Destination: Send + Sync {
    /// What kind of destination this is (`email`, `box`, …), for listings.
    fn kind(&self) -> &'static str;

    /// Whether [`Parcel::opened`] must be filled in (the destination
    /// receives the report's contents rather than the sealed file).
    fn needs_opened_report(&self) -> bool {
        false
    }

    /// Whether [`Parcel::sender`] must be filled in (the destination passes
    /// the sender's key-server session on, as a medseal endpoint needs).
    fn needs_sender_session(&self) -> bool {
        false
    }

    /// A cheap look at whether the destination can be reached now (a TCP
    /// connection to its host, a directory that exists), made before a
    /// report is opened for it. Opening fetches the report's key, which the
    /// key server audits; a destination that is down must not cost a key
    /// fetch per retry. `Err` is a transient failure.
    fn reachable(&self) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// Delivers, or says why not and whether to try again.
    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError>;
}
