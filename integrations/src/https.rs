//! A generic HTTPS endpoint: the simplest way into an EMR's integration
//! engine (Mirth, Rhapsody, a hospital's own service).
//!
//! One `multipart/form-data` POST: a `manifest` part (the report's manifest
//! JSON, when enabled) and a `report` part (the sealed file, or the opened
//! bundle when `payload = "plain"`). The `Idempotency-Key` header is the
//! same on every retry; an endpoint that keeps the keys it has seen can
//! answer a repeat with its first answer (and `Idempotent-Replayed: true`).

use std::path::Path;

use reqwest::blocking::multipart::{Form, Part};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::destination::{Destination, Parcel, Payload, ProgressHandle, Receipt};
use crate::error::DeliveryError;
use crate::http::{self, Auth, TlsSettings};

/// `type = "https"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    /// Where to POST.
    pub url: String,
    /// The sealed file (default) or the opened report.
    #[serde(default)]
    pub payload: Payload,
    /// Send the manifest as its own part (needs the report's key).
    #[serde(default)]
    pub manifest: bool,
    /// Header carrying the idempotency key.
    #[serde(default = "default_idempotency_header")]
    pub idempotency_header: String,
    /// Credentials.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Trust and client certificate.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Time allowed for one request, in seconds.
    #[serde(default = "crate::http::default_timeout")]
    pub timeout_seconds: u64,
}

fn default_idempotency_header() -> String {
    "Idempotency-Key".into()
}

impl HttpsConfig {
    pub(crate) fn resolve(&mut self, base: &Path) {
        http::resolve_endpoint(&mut self.tls, &mut self.auth, base);
    }
}

/// The endpoint.
pub struct Https {
    config: HttpsConfig,
    client: reqwest::blocking::Client,
}

impl Https {
    /// Checks the settings and builds the client.
    pub fn new(config: HttpsConfig) -> Result<Self, ConfigError> {
        reqwest::header::HeaderName::from_bytes(config.idempotency_header.as_bytes()).map_err(
            |_| {
                ConfigError::Invalid(format!(
                    "idempotency_header {:?} is not a header name",
                    config.idempotency_header
                ))
            },
        )?;
        let client =
            http::endpoint_client(&[config.url.as_str()], &config.tls, config.timeout_seconds)?;
        Ok(Self { config, client })
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    receipt: Option<serde_json::Value>,
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Destination for Https {
    fn kind(&self) -> &'static str {
        "https"
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        http::probe(&self.config.url, self.config.timeout_seconds)
    }

    fn needs_opened_report(&self) -> bool {
        self.config.payload == Payload::Plain || self.config.manifest
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        let mut form = Form::new();
        if self.config.manifest {
            let opened = parcel.require_opened("this endpoint")?;
            let part = Part::bytes(opened.manifest_json())
                .file_name("manifest.json")
                .mime_str("application/json")
                .map_err(|e| DeliveryError::permanent(e.to_string()))?;
            form = form.part("manifest", part);
        }
        let (reader, len, name, mime) = match self.config.payload {
            Payload::Sealed => (
                std::fs::File::open(parcel.sealed)?,
                parcel.size,
                parcel.file_name.to_owned(),
                "application/octet-stream",
            ),
            Payload::Plain => {
                let (f, len) = parcel.require_opened("this endpoint")?.bundle()?;
                let stem = parcel
                    .file_name
                    .strip_suffix(".mseal")
                    .unwrap_or(parcel.file_name);
                (f, len, format!("{stem}.tar"), "application/x-tar")
            }
        };
        progress.begin(len);
        form = form.part(
            "report",
            http::file_part(reader, len, &name, mime, progress)?,
        );
        let req = self
            .client
            .post(&self.config.url)
            .header(
                self.config.idempotency_header.as_str(),
                parcel.idempotency_key,
            )
            .header("X-Medseal-Sha256", parcel.sha256)
            .multipart(form);
        let resp = Auth::apply(&self.config.auth, req)?
            .send()
            .map_err(|e| http::unreachable("https", &e))?;
        let resp = http::check("https", resp)?;
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer: Option<Answer> = resp.json().ok();
        let id = answer
            .and_then(|a| a.receipt.or(a.id))
            .map(|v| as_text(&v))
            .or_else(|| location.clone())
            .unwrap_or_else(|| parcel.idempotency_key.to_owned());
        Ok(Receipt {
            id,
            location,
            already_present: replayed,
        })
    }
}
