//! `POST /v1/drops` and `GET /v1/drops/{id}`: share links (see
//! [`crate::drops`] for what is stored and why a drop grants nothing the
//! key does not).

use actix_multipart::Multipart;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use base64::Engine;
use futures_util::StreamExt;
use medseal_format::{Header, KeyMode};
use medseal_keyserver_api::v1::{CreatedDrop, ErrorBody};
use sha2::{Digest, Sha256};

use super::AppState;
use super::caller::Credentials;
use super::handlers::{authorised_key, with_conn};
use crate::audit::{Action, Outcome};
use crate::drops::{self, CHUNK_LEN, Drop};
use crate::error::{Error, Result};
use crate::keys;
use crate::policy;
use crate::time::rfc3339;

/// Multipart part holding the sealed file.
pub const FIELD_REPORT: &str = "report";
/// Optional multipart part: the lifetime in days.
pub const FIELD_DAYS: &str = "days";

/// Share a sealed report as a link.
#[utoipa::path(post, path = "/v1/drops",
    request_body(content_type = "multipart/form-data",
        description = "part `report`: the sealed file; optional part `days`: its lifetime (default 7, at most the organisation's maximum)"),
    responses((status = 201, body = CreatedDrop), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 410, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 400, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)),
    security(("bearer" = [])))]
pub async fn create_drop(
    state: web::Data<AppState>,
    creds: Credentials,
    form: Multipart,
) -> Result<HttpResponse> {
    let (caller, org_max) = state
        .authorized(creds.clone(), |conn, p| {
            Ok((p.clone(), drops::org_max_days(conn, p.org_id)?))
        })
        .await?;
    let (principal, org_max) = org_max?;
    if !policy::may_create(&principal) {
        return Err(Error::Forbidden(
            "only clinicians and admins share reports".into(),
        ));
    }
    let drop_id = drops::new_id()?;
    let mut upload = Upload {
        state: &state,
        drop_id: drop_id.clone(),
        written: 0,
    };
    let received = receive(&mut upload, form, &creds, org_max).await;
    let Received {
        days,
        stored: Stored { size, sha256, key },
    } = match received {
        Ok(r) => r,
        Err(e) => {
            upload.discard().await;
            return Err(e);
        }
    };
    let now = state.clock.now_ms();
    let expires_at = drops::expiry(now, days);
    let row = Drop {
        drop_id: drop_id.clone(),
        org_id: principal.org_id,
        creator_id: principal.user_id,
        key_id: key.key_id,
        size: size as i64,
        sha256,
        chunks: upload.written,
        created_at: now,
        expires_at,
    };
    let made = state
        .audit
        .apply(drops::create(caller.actor(), key.org, row, key.report_id))
        .await;
    if let Err(e) = made {
        upload.discard().await;
        return Err(e);
    }
    let url = format!(
        "{}/app/#/drop/{drop_id}",
        state.public_url.trim_end_matches('/')
    );
    Ok(HttpResponse::Created().json(CreatedDrop {
        drop_id,
        url,
        expires_at: rfc3339(expires_at),
    }))
}

/// The chunks of one upload, so that a failed upload leaves none behind.
struct Upload<'a> {
    state: &'a AppState,
    drop_id: String,
    written: i32,
}

impl Upload<'_> {
    async fn write(&mut self, bytes: Vec<u8>) -> Result<()> {
        let (id, seq, now) = (
            self.drop_id.clone(),
            self.written,
            self.state.clock.now_ms(),
        );
        with_conn(self.state, move |c| {
            drops::write_chunk(c, &id, seq, &bytes, now)
        })
        .await?;
        self.written += 1;
        Ok(())
    }

    async fn discard(&self) {
        let id = self.drop_id.clone();
        if self.written > 0
            && let Err(e) = with_conn(self.state, move |c| drops::discard_chunks(c, &id)).await
        {
            // The purge removes them within the hour.
            tracing::warn!(error = %e, "cannot remove the chunks of a failed upload yet");
        }
    }
}

/// A stored upload: its lifetime and what the drop's row records.
struct Received {
    days: u32,
    stored: Stored,
}

/// The sealed file as stored, and the key it names.
struct Stored {
    size: u64,
    sha256: Vec<u8>,
    key: SharedKey,
}

/// The key a shared report names, as this server knows it.
struct SharedKey {
    key_id: String,
    report_id: String,
    org: String,
}

/// Reads the form, storing the sealed file in chunks.
async fn receive(
    upload: &mut Upload<'_>,
    mut form: Multipart,
    creds: &Credentials,
    org_max: u32,
) -> Result<Received> {
    let mut days = None;
    let mut found = None;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| Error::Invalid(format!("malformed multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            FIELD_DAYS if days.is_none() && found.is_none() => {
                let mut text = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk
                        .map_err(|e| Error::Invalid(format!("malformed multipart body: {e}")))?;
                    text.extend_from_slice(&chunk);
                    if text.len() > 8 {
                        return Err(Error::Invalid("days: give a number of days".into()));
                    }
                }
                let d = std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok())
                    .ok_or_else(|| Error::Invalid("days: give a number of days".into()))?;
                days = Some(d);
            }
            FIELD_REPORT if found.is_none() => {
                let days = drops::lifetime_days(days, org_max)?;
                let stored = store_report(upload, &mut field, creds).await?;
                found = Some(Received { days, stored });
            }
            other => {
                return Err(Error::Invalid(format!(
                    "unexpected part {other:?}: send {FIELD_DAYS:?} (optional), then {FIELD_REPORT:?}"
                )));
            }
        }
    }
    found.ok_or_else(|| {
        Error::Invalid(format!(
            "no {FIELD_REPORT:?} part: send the sealed file as multipart part {FIELD_REPORT:?}"
        ))
    })
}

async fn store_report(
    upload: &mut Upload<'_>,
    field: &mut actix_multipart::Field,
    creds: &Credentials,
) -> Result<Stored> {
    let state = upload.state;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_LEN);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut key: Option<SharedKey> = None;
    let mut ended = false;
    while !ended {
        match field.next().await {
            Some(chunk) => {
                let chunk =
                    chunk.map_err(|e| Error::Invalid(format!("malformed multipart body: {e}")))?;
                size += chunk.len() as u64;
                if size > state.drop_max_bytes {
                    return Err(Error::PayloadTooLarge(format!(
                        "a share link holds at most {} MiB",
                        state.drop_max_bytes >> 20
                    )));
                }
                hasher.update(&chunk);
                buf.extend_from_slice(&chunk);
            }
            None => ended = true,
        }
        while buf.len() >= CHUNK_LEN || (ended && !buf.is_empty()) {
            if key.is_none() {
                // The header is within the first chunk (it is at most a
                // few kilobytes): checked before anything is stored.
                key = Some(check_key(state, &buf, creds).await?);
            }
            let rest = buf.split_off(buf.len().min(CHUNK_LEN));
            let full = std::mem::replace(&mut buf, rest);
            upload.write(full).await?;
        }
    }
    let key = key.ok_or_else(|| Error::Invalid("the report part is empty".into()))?;
    Ok(Stored {
        size,
        sha256: hasher.finalize().to_vec(),
        key,
    })
}

/// Reads the sealed header at the start of the upload and checks that the
/// sharer may share it: a key of this server that they may fetch or
/// manage, still live.
async fn check_key(state: &AppState, start: &[u8], creds: &Credentials) -> Result<SharedKey> {
    let header = Header::read_from(&mut &start[..])
        .map_err(|_| Error::Invalid("this is not a medseal sealed report".into()))?;
    let KeyMode::KeyServer { key_id, origin } = header.key_mode() else {
        return Err(Error::Invalid(
            "only reports sealed with a key from this key server can be shared as a link".into(),
        ));
    };
    // The viewer fetches the key from the origin the header names: a link
    // from this server must name this server.
    if origin.trim_end_matches('/') != state.public_origin {
        return Err(Error::Invalid(format!(
            "the report's key is held by {origin}, not this key server ({}); share it there",
            state.public_origin
        )));
    }
    let key_id = key_id.to_owned();
    if keys::check_key_id(&key_id).is_err() {
        return Err(Error::Invalid(
            "the report's key id is not one this key server makes".into(),
        ));
    }
    let (_, info) = authorised_key(
        state,
        creds.clone(),
        &key_id,
        policy::may_share,
        "only the report's creator or an admin of its organisation may share it",
    )
    .await?;
    if let Some(reason) = keys::gone_reason(info.revoked_at, info.expires_at, state.clock.now_ms())
    {
        return Err(Error::Gone(format!("this report's key has been {reason}")));
    }
    Ok(SharedKey {
        key_id,
        report_id: info.report_id,
        org: info.org,
    })
}

/// The scheme, host and port of a URL (what a sealed header names).
pub fn origin_of(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    match url.find("://") {
        Some(i) => url[i + 3..].find('/').map_or(url, |j| &url[..i + 3 + j]),
        None => url,
    }
}

/// Download a shared report's sealed bytes.
#[utoipa::path(get, path = "/v1/drops/{drop_id}",
    responses((status = 200, content_type = "application/octet-stream",
               description = "the sealed file; `Repr-Digest` carries its SHA-256"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    params(("drop_id" = String, Path), ("X-Device-Id" = String, Header)),
    security(("bearer" = [])))]
pub async fn download_drop(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let drop_id = path.into_inner();
    drops::check_id(&drop_id)?;
    let id = drop_id.clone();
    let (_, found) = state
        .authorized(creds.clone(), move |c, _| drops::lookup(c, &id))
        .await?;
    let Some(drop) = found? else {
        return Err(Error::NotFound("no such share link".into()));
    };
    let (caller, info) = authorised_key(
        &state,
        creds,
        &drop.key_id,
        policy::may_fetch,
        "you are not a recipient of this report",
    )
    .await?;
    let about = (Some(drop.key_id.clone()), Some(info.report_id.clone()));
    let now = state.clock.now_ms();
    let refused = if drop.expires_at <= now {
        Some("this share link has expired".to_owned())
    } else {
        keys::gone_reason(info.revoked_at, info.expires_at, now)
            .map(|r| format!("this report's key has been {r}"))
    };
    if let Some(why) = refused {
        state
            .audit
            .record(
                caller
                    .event(&info.org, Action::KeyDenied, Outcome::Denied)
                    .detail(format!("share link {drop_id}: {why}"))
                    .about(about.0, about.1),
            )
            .await?;
        return Err(Error::Gone(why));
    }
    state
        .audit
        .record(
            caller
                .event(&info.org, Action::DropDownloaded, Outcome::Success)
                .detail(format!("share link {drop_id}, {} bytes", drop.size))
                .about(about.0, about.1),
        )
        .await?;
    let id = drop.drop_id.clone();
    let body = futures_util::stream::iter(0..drop.chunks).then(move |seq| {
        let (state, id) = (state.clone(), id.clone());
        async move {
            let bytes = with_conn(&state, move |c| drops::read_chunk(c, &id, seq)).await?;
            Ok::<_, Error>(web::Bytes::from(bytes))
        }
    });
    let digest = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(&drop.sha256)
    );
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"report-{drop_id}.mseal\""),
        ))
        .insert_header(("Repr-Digest", digest))
        .no_chunking(drop.size as u64)
        .streaming(body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_public_origin_is_scheme_host_and_port() {
        use super::origin_of as public_origin;
        assert_eq!(
            public_origin("https://keys.example.org/"),
            "https://keys.example.org"
        );
        assert_eq!(
            public_origin("https://keys.example.org:8443/medseal/"),
            "https://keys.example.org:8443"
        );
        assert_eq!(
            public_origin("http://127.0.0.1:8600"),
            "http://127.0.0.1:8600"
        );
    }
}
