//! What the console shows an organisation's admins and auditors at a
//! glance: whether the audit log is intact (and up to which event), and how
//! the service is used day by day.

use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpResponse, web};
use medseal_keyserver_api::v1::{AuditStatus, CheckpointView, DayCounts, ErrorBody, Overview};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::caller::Credentials;
use super::console::{as_role, reads_org};
use super::handlers::with_conn;
use crate::accounts;
use crate::audit::{self, Action};
use crate::error::{Error, Result};
use crate::time::rfc3339;

const DAY_MS: i64 = 86_400_000;

/// A check is run again when the last one is this old (or when asked for
/// with `fresh`): a full verification reads every event.
const RECHECK_AFTER_MS: i64 = 60_000;

/// The last integrity check, shared by every request.
#[derive(Debug, Default)]
pub struct StatusCache(tokio::sync::Mutex<Option<(i64, AuditStatus)>>);

fn head_seq(c: &mut crate::db::Conn) -> Result<i64> {
    use crate::db::schema::audit_head;
    use diesel::prelude::*;
    Ok(audit_head::table
        .select(audit_head::seq)
        .first::<i64>(c)
        .optional()?
        .unwrap_or(0))
}

/// `GET /v1/audit/status` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Check now rather than answer the last check (if under a minute old).
    fresh: Option<bool>,
}

/// The log's integrity as last checked (admins and auditors): the whole
/// chain, the Merkle tree and its signed checkpoints, and the state replay,
/// as `medseal keyserver audit verify` checks them.
#[utoipa::path(get, path = "/v1/audit/status", params(StatusQuery, ("X-Device-Id" = String, Header)),
    responses((status = 200, body = AuditStatus), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_status(
    state: web::Data<AppState>,
    creds: Credentials,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse> {
    as_role(&state, creds, reads_org, "read the audit log's status").await?;
    let asked_at = state.clock.now_ms();
    // One check at a time; those who waited get its answer.
    let mut cached = state.audit_status.0.lock().await;
    let now = state.clock.now_ms();
    let recent = cached.as_ref().is_some_and(|(at, _)| {
        *at >= asked_at || (query.fresh != Some(true) && now - at < RECHECK_AFTER_MS)
    });
    if !recent {
        let head = with_conn(&state, head_seq).await?;
        let ring = state.keyring.get();
        let v = with_conn(&state, move |c| audit::verify(c, &ring, None, true)).await?;
        let status = AuditStatus {
            events: u64::try_from(head.max(v.verified)).unwrap_or(0),
            verified_up_to: u64::try_from(v.verified).unwrap_or(0),
            status: if v.broken.is_some() {
                "broken"
            } else {
                "intact"
            }
            .to_owned(),
            problem: v
                .broken
                .as_ref()
                .map(|b| format!("at event {}: {}", b.seq, b.reason)),
            checkpoint: v.checkpoint.map(|c| CheckpointView {
                size: c.size,
                root: c.root,
                at: rfc3339(c.at_ms),
            }),
            checked_at: rfc3339(now),
        };
        if v.broken.is_some() {
            state.metrics.integrity_violation();
        }
        *cached = Some((now, status));
    }
    let status = cached
        .as_ref()
        .map(|(_, s)| s.clone())
        .ok_or_else(|| Error::Internal("no audit status".into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(status))
}

/// `GET /v1/overview` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    /// How many days, ending today (1–366, default 14).
    days: Option<u32>,
}

/// The sign-in refusals the overview counts.
const SIGN_IN_ACTIONS: [&str; 3] = [
    Action::SessionFailed.as_str(),
    Action::CodeRefused.as_str(),
    Action::SsoLogin.as_str(),
];

/// Reports sealed, opened and revoked per UTC day, refused sign-ins, and
/// accounts locked out or disabled (admins and auditors).
#[utoipa::path(get, path = "/v1/overview", params(OverviewQuery, ("X-Device-Id" = String, Header)),
    responses((status = 200, body = Overview), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn overview(
    state: web::Data<AppState>,
    creds: Credentials,
    query: web::Query<OverviewQuery>,
) -> Result<HttpResponse> {
    let caller = as_role(&state, creds, reads_org, "read the overview").await?;
    let days = query.days.unwrap_or(14);
    if !(1..=366).contains(&days) {
        return Err(Error::Invalid("days must be 1 to 366".into()));
    }
    let now = state.clock.now_ms();
    let today = now.div_euclid(DAY_MS);
    let first = today - i64::from(days) + 1;
    let since = first * DAY_MS;
    let org = caller.principal.org.clone();
    let ring = state.keyring.get();
    let (counts, failed, users) = with_conn(&state, move |c| {
        let counts = audit::daily_counts(
            c,
            &org,
            &[
                Action::KeyCreated.as_str(),
                Action::KeyFetched.as_str(),
                Action::KeyRevoked.as_str(),
            ],
            since,
        )?;
        let failed = audit::refusals_since(c, &org, &SIGN_IN_ACTIONS, since)?;
        let users = accounts::list_users(c, ring.state_key(), Some(&org), now)?;
        Ok((counts, failed, users))
    })
    .await?;
    let mut out: Vec<DayCounts> = (first..=today)
        .map(|d| DayCounts {
            date: rfc3339(d * DAY_MS).get(..10).unwrap_or_default().to_owned(),
            sealed: 0,
            opened: 0,
            revoked: 0,
        })
        .collect();
    for (day, action, n) in counts {
        let Some(slot) = usize::try_from(day - first)
            .ok()
            .and_then(|i| out.get_mut(i))
        else {
            continue;
        };
        let n = u64::try_from(n).unwrap_or(0);
        match action.as_str() {
            "key.created" => slot.sealed += n,
            "key.fetched" => slot.opened += n,
            "key.revoked" => slot.revoked += n,
            _ => {}
        }
    }
    let count = |s: &str| users.iter().filter(|u| u.status == s).count() as u64;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(Overview {
            org: caller.principal.org.clone(),
            days: out,
            failed_sign_ins: u64::try_from(failed).unwrap_or(0),
            locked_accounts: count("locked"),
            disabled_accounts: count("disabled"),
            users: users.len() as u64,
        }))
}
