//! The receiving endpoint: the gateway an organisation runs beside its EMR.
//!
//! A sender posts a sealed report with its own key-server session; the
//! endpoint checks that session with the key server, stores the report in a
//! durable outbox and answers 202 with a receipt id. A delivery thread then
//! fetches the report's key as the endpoint's own `service` account (so the
//! key server audits the opening like any other), verifies and opens the
//! report, checks its manifest, and forwards it through the configured
//! [`Destination`](medseal_integrations::Destination)s. The sealed copy is
//! deleted once every destination has it; the plaintext only ever exists in
//! memory and an unnamed temporary file for the length of one delivery pass.
//!
//! Map of the crate (its modules are private; the settings, `serve` and
//! the error type are its interface):
//! - `server`: the settings and `serve`, which wires the parts together.
//! - `intake`: `POST /v1/reports`, streaming the upload to disk.
//! - `status`: `GET /v1/reports/{id}`.
//! - `cors`: those two calls opened to the web app's origin
//!   (`--allow-origin`), and to no other.
//! - `account`: the service account's key-server session, and opening
//!   reports with the keys it fetches.
//! - `worker`: the delivery thread that drives the outbox.
//! - `error`: what goes wrong, as an HTTP status and a JSON body.
//!
//! The wire contract (paths, field names, the 202 body) lives in
//! [`medseal_integrations::endpoint`], beside the destination that speaks it.

#![forbid(unsafe_code)]

mod account;
mod cors;
mod error;
mod intake;
mod server;
mod status;
mod worker;

pub use error::Error;
pub use server::{
    DEFAULT_LISTEN, DEFAULT_MAX_REPORT_BYTES, DEFAULT_SENDER_QUOTA_BYTES,
    DEFAULT_SENDER_QUOTA_REPORTS, EndpointConfig, SENDER_ROLES, SenderQuota, serve,
};
