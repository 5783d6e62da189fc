//! Delivering sealed reports.
//!
//! A report leaves the clinician's device through one path: it is put in the
//! [`outbox`] (a local SQLite store that survives crashes and reboots), and
//! the outbox hands it to one or more [`Destination`]s until each returns a
//! [`Receipt`]. Every destination is idempotent on the delivery's
//! idempotency key, so a retry after a crash never files a report twice.
//!
//! Map of the crate:
//! - [`destination`]: the [`Destination`] trait, the [`Parcel`] it is given
//!   and the [`Receipt`] it returns; [`error`]: why a delivery failed and
//!   whether to try again.
//! - [`config`]: the TOML file that names destinations; [`secret`]: how
//!   credentials are referenced (files or environment, never inline).
//! - [`opened`]: a report opened in memory for destinations that need its
//!   contents (FHIR, DICOMweb, a plain HTTPS payload).
//! - Destinations: [`email`] (SMTP via lettre), [`boxcom`] (Box),
//!   [`dropbox`] (Dropbox), [`https`] (a generic EMR endpoint), [`fhir`]
//!   (FHIR R4 transaction), [`dicomweb`] (STOW-RS, with [`dicom`] building
//!   the VL Photographic images), [`folder`] (a drop folder), [`endpoint`]
//!   (a medseal receiving endpoint, and the wire contract it serves).
//! - Shared plumbing: [`digest`] (file hashes each service checks), [`http`] (clients, status classification, upload
//!   progress), [`oauth`] (refresh-token flow for Box and Dropbox).
//! - [`outbox`]: the durable queue, backoff and the delivery loop.

#![forbid(unsafe_code)]

pub mod boxcom;
pub mod config;
pub mod destination;
pub mod dicom;
pub mod dicomweb;
pub mod digest;
pub mod dropbox;
pub mod email;
pub mod endpoint;
pub mod error;
pub mod fhir;
pub mod folder;
pub mod http;
pub mod https;
pub mod oauth;
pub mod opened;
pub mod outbox;
pub mod secret;
mod uid;

pub use config::{Config, ConfigError};
pub use destination::{
    Destination, NoProgress, Parcel, Progress, ProgressHandle, Receipt, SenderSession,
};
pub use error::{DeliveryError, Failure};
pub use opened::OpenedReport;
