//! FHIR R4: one transaction Bundle holding a DocumentReference with the PDF
//! (and the manifest) as attachments, each with its size and SHA-1 hash as
//! FHIR defines `Attachment.hash`.
//!
//! Idempotency is FHIR's own: the DocumentReference carries a
//! `masterIdentifier` derived from the delivery's idempotency key and is
//! created with `ifNoneExist` on it, so a repeated transaction finds the
//! first document instead of filing a second. The patient is referenced
//! conditionally (`Patient?identifier=system|value`) and must already exist
//! in the record, unless `create_patient = true` (for test servers and
//! registries that accept new patients).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medseal_format::manifest::{Identifier, Manifest};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ConfigError;
use crate::destination::{Destination, Parcel, ProgressHandle, Receipt};
use crate::digest::sha1;
use crate::error::DeliveryError;
use crate::http::{self, Auth, TlsSettings};
use crate::uid;

/// `type = "fhir"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirConfig {
    /// The server's base URL (the transaction endpoint).
    pub base_url: String,
    /// Which of the report's patient identifiers to use, by system URI
    /// (default: the first).
    #[serde(default)]
    pub patient_identifier_system: Option<String>,
    /// Create the Patient if no patient has the identifier.
    #[serde(default)]
    pub create_patient: bool,
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

impl FhirConfig {
    pub(crate) fn resolve(&mut self, base: &Path) {
        http::resolve_endpoint(&mut self.tls, &mut self.auth, base);
    }
}

/// The FHIR destination.
pub struct Fhir {
    config: FhirConfig,
    client: reqwest::blocking::Client,
}

impl Fhir {
    /// Checks the settings.
    pub fn new(config: FhirConfig) -> Result<Self, ConfigError> {
        let client = http::endpoint_client(
            &[config.base_url.as_str()],
            &config.tls,
            config.timeout_seconds,
        )?;
        Ok(Self { config, client })
    }
}

/// A FHIR search token `system|value`, each side escaped for a URL query.
fn token(id: &Identifier) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("{}|{}", enc(&id.system), enc(&id.value))
}

fn attachment(content_type: &str, data: &[u8], title: &str, created: &str) -> Value {
    json!({
        "contentType": content_type,
        "data": B64.encode(data),
        "size": data.len(),
        "hash": B64.encode(sha1(data)),
        "title": title,
        "creation": created,
    })
}

/// The transaction Bundle for one report.
pub fn transaction(
    m: &Manifest,
    pdf: &[u8],
    manifest_json: &[u8],
    patient: &Identifier,
    create_patient: bool,
    key: &str,
) -> Value {
    let doc_uuid = uid::uuid("fhir-document", key);
    let patient_uuid = uid::uuid("fhir-patient", key);
    let subject = if create_patient {
        format!("urn:uuid:{patient_uuid}")
    } else {
        format!("Patient?identifier={}", token(patient))
    };
    let mut description = String::from("Clinical photography report");
    if let Some(site) = &m.body_site {
        description.push_str(": ");
        description.push_str(site);
    }
    let document = json!({
        "resourceType": "DocumentReference",
        "masterIdentifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{doc_uuid}") },
        "identifier": [{ "system": "urn:medseal:report-id", "value": m.report_id }],
        "status": "current",
        "type": {
            "coding": [{ "system": "http://loinc.org", "code": "72170-4", "display": "Photographic image" }],
            "text": "Clinical photography report"
        },
        "subject": { "reference": subject },
        "date": m.created_at,
        "author": [{ "display": m.capturer.name }],
        "custodian": { "display": m.organisation },
        "description": description,
        "content": [
            { "attachment": attachment("application/pdf", pdf, "Clinical report", &m.created_at) },
            { "attachment": attachment("application/json", manifest_json, "medseal manifest", &m.created_at) }
        ]
    });
    let mut entries = Vec::new();
    if create_patient {
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{patient_uuid}"),
            "resource": { "resourceType": "Patient", "identifier": [{ "system": patient.system, "value": patient.value }] },
            "request": { "method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={}", token(patient)) }
        }));
    }
    entries.push(json!({
        "fullUrl": format!("urn:uuid:{doc_uuid}"),
        "resource": document,
        "request": {
            "method": "POST",
            "url": "DocumentReference",
            "ifNoneExist": format!("identifier=urn:ietf:rfc:3986|urn:uuid:{doc_uuid}")
        }
    }));
    let mut bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
    without_empty(&mut bundle);
    bundle
}

/// Removes every empty string from `v`, and every object or array left
/// empty by that. FHIR forbids empty strings and empty elements (a value
/// is there or the element is absent), and a report may lack an
/// organisation or a capturer's name.
fn without_empty(v: &mut Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Object(map) => {
            map.retain(|_, x| !without_empty(x));
            map.is_empty()
        }
        Value::Array(items) => {
            items.retain_mut(|x| !without_empty(x));
            items.is_empty()
        }
        _ => false,
    }
}

impl Destination for Fhir {
    fn kind(&self) -> &'static str {
        "fhir"
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        http::probe(&self.config.base_url, self.config.timeout_seconds)
    }

    fn needs_opened_report(&self) -> bool {
        true
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        let opened = parcel.require_opened("the FHIR server")?;
        let m = &opened.manifest;
        let patient =
            opened.patient_identifier(self.config.patient_identifier_system.as_deref())?;
        let bundle = transaction(
            m,
            &opened.pdf,
            &opened.manifest_json(),
            patient,
            self.config.create_patient,
            parcel.idempotency_key,
        );
        let body =
            serde_json::to_vec(&bundle).map_err(|e| DeliveryError::permanent(e.to_string()))?;
        progress.begin(body.len() as u64);
        let len = body.len() as u64;
        let req = self
            .client
            .post(self.config.base_url.trim_end_matches('/'))
            .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
            .header(reqwest::header::ACCEPT, "application/fhir+json")
            .body(body);
        let resp = Auth::apply(&self.config.auth, req)?
            .send()
            .map_err(|e| http::unreachable("FHIR server", &e))?;
        let resp = http::check("FHIR server", resp)?;
        progress.advance(len);
        let answer: Value = resp.json().map_err(|e| {
            DeliveryError::transient(format!("FHIR server: unreadable answer: {e}"))
        })?;
        let entries = answer
            .get("entry")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let doc = entries
            .last()
            .and_then(|e| e.get("response"))
            .ok_or_else(|| {
                DeliveryError::transient(
                    "FHIR server: the transaction response has no entry for the document",
                )
            })?;
        let location = doc
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let status = doc
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // "DocumentReference/123/_history/1" → "DocumentReference/123".
        let id = location
            .split("/_history")
            .next()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() {
            return Err(DeliveryError::transient(
                "FHIR server: no location for the document",
            ));
        }
        Ok(Receipt {
            id,
            location: Some(location),
            already_present: status.starts_with("200"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_strings_and_the_elements_they_leave_are_dropped() {
        let mut v = json!({
            "custodian": { "display": "" },
            "author": [{ "display": "" }, { "display": "Dr A" }],
            "description": "x",
            "size": 0,
            "nested": { "a": { "b": [""] } }
        });
        without_empty(&mut v);
        assert_eq!(
            v,
            json!({ "author": [{ "display": "Dr A" }], "description": "x", "size": 0 })
        );
    }
}
