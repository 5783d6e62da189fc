//! The organisation console's calls on reports and their keys: list them
//! (admins and auditors of the organisation), and change a key's expiry
//! (its creator or an admin of its organisation, like revoking it).

use actix_web::{HttpResponse, web};
use medseal_keyserver_api::v1::{ErrorBody, KeyPatch, KeyView, KeysList};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::caller::Credentials;
use super::console::{as_role, reads_org};
use super::handlers::{authorised_key, with_conn};
use crate::error::{Error, Result};
use crate::reports::{self, KeyFilter, KeySummary};
use crate::time::{parse_rfc3339, rfc3339};
use crate::{keys, ops, policy};

/// The most keys one page may hold.
const MAX_PAGE: u32 = 500;

/// `GET /v1/keys` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// Only this key.
    key_id: Option<String>,
    /// Only keys of this report.
    report_id: Option<String>,
    /// Only keys made by this address.
    creator: Option<String>,
    /// Only keys made at or after this time (RFC 3339).
    since: Option<String>,
    /// Skip this many (the `next_offset` of the page before).
    offset: Option<u32>,
    /// At most this many (1–500, default 50).
    limit: Option<u32>,
}

fn view(k: KeySummary, now: i64) -> KeyView {
    let s = k.state;
    KeyView {
        status: keys::gone_reason(s.revoked_at, s.expires_at, now)
            .unwrap_or("live")
            .to_owned(),
        key_id: s.key_id,
        report_id: s.report_id,
        creator: k.creator,
        recipients: s.recipients,
        created_at: rfc3339(s.created_at),
        expires_at: s.expires_at.map(rfc3339),
        revoked_at: s.revoked_at.map(rfc3339),
        fetches: u64::try_from(k.fetches).unwrap_or(0),
        intact: k.intact,
    }
}

/// The caller's organisation's report keys, newest first (admins and
/// auditors), with how often each was fetched.
#[utoipa::path(get, path = "/v1/keys", params(KeysQuery, ("X-Device-Id" = String, Header)),
    responses((status = 200, body = KeysList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_keys(
    state: web::Data<AppState>,
    creds: Credentials,
    query: web::Query<KeysQuery>,
) -> Result<HttpResponse> {
    let caller = as_role(&state, creds, reads_org, "list reports").await?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::Invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let offset = q.offset.unwrap_or(0);
    let filter = KeyFilter {
        key_id: q.key_id,
        report_id: q.report_id,
        creator: q.creator.map(|c| c.trim().to_lowercase()),
        since: q.since.as_deref().map(parse_rfc3339).transpose()?,
        offset: i64::from(offset),
        limit: i64::from(limit),
    };
    let ring = state.keyring.get();
    let org_id = caller.principal.org_id;
    let (found, more) = with_conn(&state, move |c| {
        reports::list(c, org_id, ring.state_key(), &filter)
    })
    .await?;
    let now = state.clock.now_ms();
    let keys = found.into_iter().map(|k| view(k, now)).collect();
    Ok(HttpResponse::Ok().json(KeysList {
        keys,
        next_offset: more.then(|| offset.saturating_add(limit)),
    }))
}

/// Give a key a new expiry, or none (its creator or an admin of its
/// organisation). A revoked key answers 410.
#[utoipa::path(patch, path = "/v1/keys/{key_id}", request_body = KeyPatch,
    responses((status = 200, body = KeyView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 410, body = ErrorBody)),
    params(("key_id" = String, Path), ("X-Device-Id" = String, Header)),
    security(("bearer" = [])))]
pub async fn patch_key(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<String>,
    body: web::Json<KeyPatch>,
) -> Result<HttpResponse> {
    let key_id = path.into_inner();
    let Some(expires_at) = body.into_inner().expires_at else {
        return Err(Error::Invalid(
            "give expires_at: an RFC 3339 time, or null for none".into(),
        ));
    };
    let expires_at = expires_at.as_deref().map(parse_rfc3339).transpose()?;
    let (caller, info) = authorised_key(
        &state,
        creds,
        &key_id,
        policy::may_manage,
        "only the key's creator or an admin of its organisation may change its expiry",
    )
    .await?;
    let applied = state
        .audit
        .apply(ops::set_expiry(caller.actor(), key_id.clone(), expires_at))
        .await?;
    if let Err(e) = applied.value {
        if let Error::Integrity(_) = e {
            state.metrics.integrity_violation();
        }
        return Err(e);
    }
    let ring = state.keyring.get();
    let org_id = info.facts.org_id;
    let filter = KeyFilter {
        key_id: Some(key_id),
        limit: 1,
        ..KeyFilter::default()
    };
    let (found, _) = with_conn(&state, move |c| {
        reports::list(c, org_id, ring.state_key(), &filter)
    })
    .await?;
    let now = state.clock.now_ms();
    let key = found
        .into_iter()
        .next()
        .ok_or_else(|| Error::NotFound("no such key".into()))?;
    Ok(HttpResponse::Ok().json(view(key, now)))
}
