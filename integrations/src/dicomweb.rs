//! DICOMweb STOW-RS (PS3.18 §10.5): the report's photos as VL Photographic
//! images, in one `multipart/related; type="application/dicom"` request to
//! `{url}/studies`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::config::ConfigError;
use crate::destination::{Destination, Parcel, ProgressHandle, Receipt};
use crate::dicom::{Study, photo_instance};
use crate::error::DeliveryError;
use crate::http::{self, Auth, TlsSettings};

/// `type = "dicomweb"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomwebConfig {
    /// The DICOMweb base URL, e.g. `https://pacs.example.org/dicom-web`.
    pub url: String,
    /// Which of the report's patient identifiers becomes the Patient ID, by
    /// system URI (default: the first).
    #[serde(default)]
    pub patient_identifier_system: Option<String>,
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

impl DicomwebConfig {
    pub(crate) fn resolve(&mut self, base: &Path) {
        http::resolve_endpoint(&mut self.tls, &mut self.auth, base);
    }
}

/// The DICOMweb destination.
pub struct DicomWeb {
    config: DicomwebConfig,
    client: reqwest::blocking::Client,
}

impl DicomWeb {
    /// Checks the settings.
    pub fn new(config: DicomwebConfig) -> Result<Self, ConfigError> {
        let client =
            http::endpoint_client(&[config.url.as_str()], &config.tls, config.timeout_seconds)?;
        Ok(Self { config, client })
    }
}

/// The `multipart/related` body and its boundary.
fn multipart(instances: &[Vec<u8>], boundary: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(instances.iter().map(Vec::len).sum::<usize>() + 256);
    for i in instances {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(i);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

impl Destination for DicomWeb {
    fn kind(&self) -> &'static str {
        "dicomweb"
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        http::probe(&self.config.url, self.config.timeout_seconds)
    }

    fn needs_opened_report(&self) -> bool {
        true
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        let opened = parcel.require_opened("the DICOMweb server")?;
        let m = &opened.manifest;
        if opened.photos.is_empty() {
            return Err(DeliveryError::permanent(
                "the report has no photos to send to a DICOM archive",
            ));
        }
        let patient =
            opened.patient_identifier(self.config.patient_identifier_system.as_deref())?;
        let study = Study {
            manifest: m,
            patient,
            key: parcel.idempotency_key,
        };
        let instances = opened
            .photos
            .iter()
            .enumerate()
            .map(|(i, p)| photo_instance(&study, i, p))
            .collect::<Result<Vec<_>, _>>()?;
        let boundary = format!(
            "medseal-{}",
            &parcel.idempotency_key[..parcel.idempotency_key.len().min(24)]
        );
        let body = multipart(&instances, &boundary);
        let len = body.len() as u64;
        progress.begin(len);
        let url = format!("{}/studies", self.config.url.trim_end_matches('/'));
        let req = self
            .client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
            )
            .header(reqwest::header::ACCEPT, "application/dicom+json")
            .body(body);
        let resp = Auth::apply(&self.config.auth, req)?
            .send()
            .map_err(|e| http::unreachable("DICOMweb server", &e))?;
        let resp = http::check("DICOMweb server", resp)?;
        progress.advance(len);
        let answer: Value = resp.json().unwrap_or(Value::Null);
        // PS3.18: Failed SOP Sequence (0008,1198) lists instances not stored.
        if let Some(failed) = answer
            .get("00081198")
            .and_then(|v| v.get("Value"))
            .and_then(Value::as_array)
            && !failed.is_empty()
        {
            let reasons: Vec<String> = failed
                .iter()
                .filter_map(|f| f.get("00081197")?.get("Value")?.get(0)?.as_u64())
                .map(|r| format!("0x{r:04X}"))
                .collect();
            return Err(DeliveryError::permanent(format!(
                "DICOMweb server refused {} of {} images (reasons {})",
                failed.len(),
                instances.len(),
                reasons.join(", ")
            )));
        }
        let location = answer
            .get("00081190")
            .and_then(|v| v.get("Value"))
            .and_then(|v| v.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Receipt {
            id: study.study_uid(),
            location,
            already_present: false,
        })
    }
}
