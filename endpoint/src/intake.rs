//! `POST /v1/reports`: a sender hands over a sealed report.
//!
//! The order of checks is the order of cost: the sender's session is
//! checked with the key server before a byte of the report is read; the
//! report streams to a private file in the outbox (never held whole in
//! memory) with a size bound; its header must name this endpoint's key
//! server; only then is it synced, queued and answered with 202. A refused
//! or interrupted upload leaves nothing behind.
//!
//! Only senders of the organisations the endpoint accepts (its own by
//! default), in a sending role, get past the first check, and each has a
//! quota of reports and bytes waiting here.

use std::sync::Arc;

use actix_multipart::{Field, Multipart};
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use medseal_format::{Header, KeyMode};
use medseal_integrations::endpoint::{
    Accepted, FIELD_DEVICE, FIELD_REPORT, FIELD_TOKEN, REPORTS_PATH,
};
use medseal_integrations::outbox::Staged;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::server::{SENDER_ROLES, Shared, UploadSlot};

/// Largest token or device-id field.
const MAX_FIELD: usize = 1024;

/// Reads a small text field whole.
async fn small_field(field: &mut Field, name: &str) -> Result<Zeroizing<String>, Error> {
    let mut buf = Zeroizing::new(Vec::new());
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| Error::Invalid(format!("the upload broke off: {e}")))?;
        if buf.len() + chunk.len() > MAX_FIELD {
            return Err(Error::Invalid(format!("the {name} field is too long")));
        }
        buf.extend_from_slice(&chunk);
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| Error::Invalid(format!("the {name} field is not UTF-8")))?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// The name the report is kept and forwarded under: `report-` and the
/// first 20 hex digits of its SHA-256. The endpoint names it, not the
/// sender: two senders' `wound.mseal` must not collide at a drop folder,
/// the same bytes sent twice must land on the same name (so a retry finds
/// its earlier copy), and a sender's file name may name the patient.
fn file_name(sha256: &str) -> String {
    format!("report-{}.mseal", sha256.get(..20).unwrap_or(sha256))
}

/// A fresh receipt id: `rcpt_` and 32 hex digits. It is the only handle on
/// the report's status, so it is random, not derived from the report.
fn receipt_id() -> Result<String, Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(format!("rcpt_{}", hex::encode(b)))
}

/// Streams the report field into the outbox's staging area, counting it
/// against the sender's quota as it comes.
async fn stage(shared: &Shared, slot: &mut UploadSlot, field: &mut Field) -> Result<Staged, Error> {
    let mut staged = shared.staging()?;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| Error::Invalid(format!("the upload broke off: {e}")))?;
        if staged.size() + chunk.len() as u64 > shared.max_report_bytes {
            return Err(Error::TooLarge(format!(
                "the report is larger than this endpoint accepts ({} bytes)",
                shared.max_report_bytes
            )));
        }
        slot.grow(chunk.len() as u64)?;
        staged.write(&chunk)?;
    }
    if staged.size() == 0 {
        return Err(Error::Invalid("the report field is empty".into()));
    }
    Ok(staged)
}

/// Checks the staged file's header: a medseal report whose key is at this
/// endpoint's key server.
fn check_header(staged: &Staged, origin: &str) -> Result<(), Error> {
    let mut f = std::fs::File::open(staged.path())
        .map_err(|e| Error::Internal(format!("reading back the upload: {e}")))?;
    let header = Header::read_from(&mut f).map_err(|e| {
        Error::Unprocessable(format!(
            "not a medseal report this endpoint can open ({e}); RNCryptor files and password-sealed reports carry no key-server reference"
        ))
    })?;
    match header.key_mode() {
        KeyMode::KeyServer { origin: o, .. } if o == origin => Ok(()),
        KeyMode::KeyServer { origin: o, .. } => Err(Error::Unprocessable(format!(
            "the report's key is at {o}; this endpoint opens reports whose key is at {origin}"
        ))),
        _ => Err(Error::Unprocessable(format!(
            "the report is not sealed with a key from a key server; this endpoint opens reports whose key is at {origin}"
        ))),
    }
}

/// How much of a refused upload is read and thrown away so the sender's
/// HTTP client sees the answer rather than a reset connection; beyond it,
/// the connection is closed.
const DRAIN_LIMIT: u64 = 16 << 20;

/// The multipart body, remembering whether it has ended: actix-multipart
/// must not be polled again after it reported an error or its end.
struct Upload {
    form: Multipart,
    ended: bool,
}

impl Upload {
    async fn next_field(&mut self) -> Option<Result<Field, actix_multipart::MultipartError>> {
        if self.ended {
            return None;
        }
        let next = self.form.next().await;
        if !matches!(next, Some(Ok(_))) {
            self.ended = true;
        }
        next
    }

    /// Reads what is left of a refused upload, up to [`DRAIN_LIMIT`].
    async fn drain(&mut self) {
        let mut left = DRAIN_LIMIT;
        while let Some(Ok(mut field)) = self.next_field().await {
            while let Some(Ok(chunk)) = field.next().await {
                left = left.saturating_sub(chunk.len() as u64);
                if left == 0 {
                    return;
                }
            }
        }
    }
}

/// `POST /v1/reports`.
pub async fn post_report(
    shared: web::Data<Arc<Shared>>,
    form: Multipart,
) -> Result<HttpResponse, Error> {
    let mut upload = Upload { form, ended: false };
    let result = receive(&shared, &mut upload).await;
    if result.is_err() {
        upload.drain().await;
    }
    result
}

async fn receive(shared: &Arc<Shared>, upload: &mut Upload) -> Result<HttpResponse, Error> {
    let mut token: Option<Zeroizing<String>> = None;
    let mut device: Option<Zeroizing<String>> = None;
    let mut received: Option<(Staged, String, UploadSlot)> = None;
    while let Some(field) = upload.next_field().await {
        let mut field =
            field.map_err(|e| Error::Invalid(format!("malformed multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            _ if received.is_some() => {
                return Err(Error::Invalid(format!(
                    "unexpected field {name:?} after the report"
                )));
            }
            FIELD_TOKEN if token.is_none() => {
                token = Some(small_field(&mut field, FIELD_TOKEN).await?)
            }
            FIELD_DEVICE if device.is_none() => {
                device = Some(small_field(&mut field, FIELD_DEVICE).await?)
            }
            FIELD_REPORT => {
                let (Some(t), Some(d)) = (&token, &device) else {
                    return Err(Error::Unauthorized(format!(
                        "send the {FIELD_TOKEN} and {FIELD_DEVICE} fields (the sender's key-server session) before the {FIELD_REPORT}"
                    )));
                };
                let (t, d) = (t.clone(), d.clone());
                let checker = shared.clone();
                let owner = web::block(move || checker.account.sender(&t, &d))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))??;
                if !shared.accept_orgs.contains(&owner.org) {
                    return Err(Error::Forbidden(
                        "this endpoint does not accept reports from your organisation".into(),
                    ));
                }
                if !SENDER_ROLES.contains(&owner.role.as_str()) {
                    return Err(Error::Forbidden(format!(
                        "a {} account may not send reports",
                        owner.role
                    )));
                }
                let mut slot = shared.begin_upload(&owner.email)?;
                let staged = stage(shared, &mut slot, &mut field).await?;
                received = Some((staged, owner.email, slot));
            }
            other => {
                return Err(Error::Invalid(format!(
                    "unexpected field {other:?}: send {FIELD_TOKEN}, {FIELD_DEVICE}, then {FIELD_REPORT}"
                )));
            }
        }
    }
    let Some((staged, sender, slot)) = received else {
        return Err(Error::Invalid(format!(
            "no {FIELD_REPORT} field: send the sealed file as multipart field {FIELD_REPORT:?}"
        )));
    };
    let id = receipt_id()?;
    let queuing = shared.clone();
    let receipt = id.clone();
    web::block(move || -> Result<(), Error> {
        check_header(&staged, queuing.account.origin())?;
        let name = file_name(&staged.sha256());
        queuing.queue(staged, &name, &receipt, &sender)?;
        // Queued: the report now counts as held, not as uploading.
        drop(slot);
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let status_url = format!("{REPORTS_PATH}/{id}");
    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, status_url.clone()))
        .json(Accepted {
            id,
            state: "received".into(),
            status_url,
        }))
}
