//! A medseal receiving endpoint (`medseal endpoint serve`), as a
//! destination; and the wire contract both sides share.
//!
//! The sender posts the sealed file as it is, with its own key-server
//! session (token and device id) so the endpoint can check who is sending
//! before it stores anything. The endpoint answers 202 with a receipt id
//! once the report is on its disk; where the report then goes (FHIR,
//! DICOMweb…) is the endpoint's business, readable at the status URL.
//!
//! ```text
//! POST /v1/reports                     multipart/form-data, in this order:
//!   token      the sender's key-server bearer token
//!   device_id  the device that session is bound to
//!   report     the .mseal file (filename report-….mseal)
//! → 202 {"id": "rcpt_…", "state": "received", "status_url": "/v1/reports/rcpt_…"}
//!
//! GET /v1/reports/{id}
//! → 200 {"id", "state", "received_at", "deliveries": [{"destination", "state",
//!        "attempts", "last_error", "next_attempt_at", "receipt"}]}
//! ```

use std::path::Path;

use reqwest::blocking::multipart::Form;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::destination::{Destination, Parcel, ProgressHandle, Receipt};
use crate::error::DeliveryError;
use crate::http::{self, TlsSettings};

/// Where reports are posted, and under which the status of each is read.
pub const REPORTS_PATH: &str = "/v1/reports";
/// The multipart field carrying the sender's bearer token.
pub const FIELD_TOKEN: &str = "token";
/// The multipart field carrying the sender's device id.
pub const FIELD_DEVICE: &str = "device_id";
/// The multipart field carrying the sealed file; it comes last.
pub const FIELD_REPORT: &str = "report";

/// The endpoint's answer to a post.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    /// The receipt id.
    pub id: String,
    /// `received`.
    pub state: String,
    /// Where to read how the report's forwarding goes (a path on the
    /// endpoint).
    pub status_url: String,
}

/// `type = "endpoint"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The endpoint's base URL (`https://medseal.hospital.example`).
    pub url: String,
    /// Trust and client certificate.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Time allowed for one request, in seconds.
    #[serde(default = "crate::http::default_timeout")]
    pub timeout_seconds: u64,
}

impl EndpointConfig {
    pub(crate) fn resolve(&mut self, base: &Path) {
        self.tls.resolve(base);
    }
}

/// The destination.
pub struct Endpoint {
    reports_url: String,
    base: String,
    client: reqwest::blocking::Client,
}

impl Endpoint {
    /// Checks the settings and builds the client.
    pub fn new(config: EndpointConfig) -> Result<Self, ConfigError> {
        let base = config.url.trim_end_matches('/').to_owned();
        let reports_url = format!("{base}{REPORTS_PATH}");
        let client = http::endpoint_client(&[&reports_url], &config.tls, config.timeout_seconds)?;
        Ok(Self {
            reports_url,
            base,
            client,
        })
    }
}

impl Destination for Endpoint {
    fn kind(&self) -> &'static str {
        "endpoint"
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        http::probe(&self.base, 10)
    }

    fn needs_sender_session(&self) -> bool {
        true
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        let sender = parcel.sender.ok_or_else(|| {
            DeliveryError::needs_key("a medseal endpoint needs the sender's key-server session")
        })?;
        progress.begin(parcel.size);
        let file = std::fs::File::open(parcel.sealed)?;
        let report = http::file_part(
            file,
            parcel.size,
            parcel.file_name,
            "application/octet-stream",
            progress,
        )?;
        let form = Form::new()
            .text(FIELD_TOKEN, sender.token.as_str().to_owned())
            .text(FIELD_DEVICE, sender.device_id.clone())
            .part(FIELD_REPORT, report);
        let resp = self
            .client
            .post(&self.reports_url)
            .header("Idempotency-Key", parcel.idempotency_key)
            .multipart(form)
            .send()
            .map_err(|e| http::unreachable("endpoint", &e))?;
        if resp.status().as_u16() == 401 {
            return Err(DeliveryError::needs_key(
                "the endpoint refused the sender's key-server session: log in again",
            ));
        }
        let resp = http::check("endpoint", resp)?;
        let accepted: Accepted = resp.json().map_err(|e| {
            DeliveryError::permanent(format!("the endpoint's answer is not a receipt: {e}"))
        })?;
        Ok(Receipt {
            location: Some(format!("{}{}", self.base, accepted.status_url)),
            id: accepted.id,
            already_present: false,
        })
    }
}
