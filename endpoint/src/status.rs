//! `GET /v1/reports/{id}`: where a received report stands.
//!
//! Only the sender sees a receipt: the request carries the sender's
//! key-server session (`Authorization: Bearer` and `X-Device-Id`, as for
//! the key server), checked there, and a receipt of anyone else is answered
//! as unknown. The receipt id is random (128 bits) as well. The answer
//! names destinations, states, attempts and the last error of each (one
//! line, never patient data), not the sender, the patient, or where on the
//! endpoint's disks anything is: local paths are cut to their last part.

use std::sync::Arc;

use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use medseal_integrations::Receipt;
use medseal_integrations::outbox::{DeliveryRow, ReceiptRow, State};
use serde::Serialize;
use zeroize::Zeroizing;

use medseal_format::clock::rfc3339;

use crate::error::Error;
use crate::server::Shared;

/// One destination's part.
#[derive(Serialize)]
struct Forwarding {
    destination: String,
    state: State,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<Receipt>,
}

/// The whole answer.
#[derive(Serialize)]
struct Status {
    id: String,
    /// `received` (nothing tried yet), `forwarding`, `delivered` (every
    /// destination has it) or `failed` (one gave up; the others may have
    /// it).
    state: &'static str,
    received_at: String,
    deliveries: Vec<Forwarding>,
}

/// The report's overall state from its deliveries'.
fn overall(rows: &[DeliveryRow]) -> &'static str {
    if rows.iter().any(|r| r.state == State::Failed) {
        "failed"
    } else if rows.iter().all(|r| r.state == State::Delivered) {
        "delivered"
    } else if rows.iter().all(|r| r.attempts == 0) {
        "received"
    } else {
        "forwarding"
    }
}

/// `text` with every absolute local path cut to its last component: a
/// receipt or error from a drop-folder destination names where the file
/// went on the endpoint's side, which is none of the sender's business.
fn without_paths(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.starts_with('/') && !word.starts_with("//") {
                let trimmed = word.trim_end_matches([',', ';', ':', ')', '.']);
                let tail = &word[trimmed.len()..];
                let last = trimmed.rsplit('/').find(|p| !p.is_empty()).unwrap_or("");
                format!("{last}{tail}")
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn status(r: ReceiptRow) -> Status {
    Status {
        state: overall(&r.deliveries),
        id: r.id,
        received_at: rfc3339(r.received_at),
        deliveries: r
            .deliveries
            .into_iter()
            .map(|d| Forwarding {
                destination: d.destination,
                state: d.state,
                attempts: d.attempts,
                last_error: d.last_error.as_deref().map(without_paths),
                next_attempt_at: d.next_attempt_at.map(rfc3339),
                receipt: d.receipt.map(|r| Receipt {
                    id: without_paths(&r.id),
                    location: r
                        .location
                        .filter(|l| l.starts_with("https://") || l.starts_with("http://")),
                    already_present: r.already_present,
                }),
            })
            .collect(),
    }
}

/// Whether `id` looks like a receipt id (anything else is not looked up).
fn well_formed(id: &str) -> bool {
    id.strip_prefix("rcpt_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The sender's session from the request's headers.
fn session(req: &HttpRequest) -> Result<(Zeroizing<String>, String), Error> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let token = header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            Error::Unauthorized(
                "send the sender's key-server session: Authorization: Bearer and X-Device-Id"
                    .into(),
            )
        })?;
    let device = header("x-device-id")
        .ok_or_else(|| Error::Unauthorized("missing X-Device-Id header".into()))?;
    Ok((Zeroizing::new(token.trim().to_owned()), device.to_owned()))
}

/// `GET /v1/reports/{id}`.
pub async fn get_report(
    shared: web::Data<Arc<Shared>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let (token, device) = session(&req)?;
    if !well_formed(&id) {
        return Err(Error::NotFound);
    }
    let found = web::block(move || -> Result<_, Error> {
        let asker = shared.account.sender(&token, &device)?;
        // Someone else's receipt is answered as no receipt at all.
        Ok(shared.receipt(&id)?.filter(|r| r.sender == asker.email))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let row = found.ok_or(Error::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(status(row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: State, attempts: u32) -> DeliveryRow {
        DeliveryRow {
            id: 1,
            sha256: String::new(),
            file_name: String::new(),
            size: 0,
            destination: "d".into(),
            idempotency_key: String::new(),
            state,
            attempts,
            next_attempt_at: None,
            last_error: None,
            receipt: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_report_is_delivered_only_when_every_destination_has_it() {
        use State::*;
        assert_eq!(overall(&[row(Pending, 0), row(Pending, 0)]), "received");
        assert_eq!(overall(&[row(Delivered, 1), row(Pending, 0)]), "forwarding");
        assert_eq!(overall(&[row(Delivered, 1), row(Sending, 2)]), "forwarding");
        assert_eq!(
            overall(&[row(Delivered, 1), row(Delivered, 3)]),
            "delivered"
        );
        assert_eq!(overall(&[row(Delivered, 1), row(Failed, 12)]), "failed");
    }

    #[test]
    fn local_paths_are_cut_to_their_last_part() {
        assert_eq!(
            without_paths("a different file already exists at /srv/drop/in/report-1.mseal"),
            "a different file already exists at report-1.mseal"
        );
        assert_eq!(
            without_paths("/var/x/report-2.mseal: permission denied"),
            "report-2.mseal: permission denied"
        );
        assert_eq!(
            without_paths("HTTP 503 from https://emr.example/fhir"),
            "HTTP 503 from https://emr.example/fhir"
        );
    }

    #[test]
    fn only_receipt_shaped_ids_are_looked_up() {
        assert!(well_formed("rcpt_0123456789abcdef0123456789abcdef"));
        for id in [
            "rcpt_0123456789abcdef0123456789abcde",
            "rcpt_0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcdef",
            "rcpt_../../etc/passwd",
            "",
        ] {
            assert!(!well_formed(id), "{id}");
        }
    }
}
