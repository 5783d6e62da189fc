//! What the console shows an organisation's admins and auditors at a
//! glance: whether the audit log is intact (and up to which event), and how
//! the service is used day by day.

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

/// A check is reused for this long; a full verification reads every event.
const RECHECK_AFTER_MS: i64 = 60_000;

/// `fresh` asks for a new check, but gets the last one if it is younger
/// than this: asking again and again does not keep the server verifying.
const FRESH_AFTER_MS: i64 = 5_000;

/// The last integrity check, shared by every request, and the one running.
#[derive(Debug, Default)]
pub struct StatusCache {
    last: std::sync::Mutex<Option<(i64, AuditStatus)>>,
    running: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl StatusCache {
    /// The last check if it began under `younger_than` ms before `now`.
    fn last(&self, younger_than: i64, now: i64) -> Option<AuditStatus> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(at, _)| now.saturating_sub(*at) < younger_than)
            .map(|(_, s)| s.clone())
    }

    /// The last check, however old.
    fn any(&self) -> Option<AuditStatus> {
        self.last(i64::MAX, i64::MIN)
    }
}

fn head_seq(c: &mut crate::db::Conn) -> Result<i64> {
    use crate::db::schema::audit_head;
    use diesel::prelude::*;
    Ok(audit_head::table
        .select(audit_head::seq)
        .first::<i64>(c)
        .optional()?
        .unwrap_or(0))
}

/// Verifies the whole log and keeps the answer. What is wrong is said only
/// by where: the reason names keys, users and organisations of the whole
/// server, and an organisation's auditor sees their own organisation only
/// (the operator reads it with `medseal keyserver audit verify`).
async fn check(state: web::Data<AppState>) -> Result<AuditStatus> {
    let started = state.clock.now_ms();
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
        problem: v.broken.as_ref().map(|b| {
            let what = if b.seq > 0 {
                format!("from event {} on, the log does not verify", b.seq)
            } else {
                "the stored keys, users or settings are not what the events say".to_owned()
            };
            format!("{what}; the server's operator sees why with medseal keyserver audit verify")
        }),
        checkpoint: v.checkpoint.map(|c| CheckpointView {
            size: c.size,
            root: c.root,
            at: rfc3339(c.at_ms),
        }),
        checked_at: rfc3339(started),
    };
    if v.broken.is_some() {
        state.metrics.integrity_violation();
    }
    *state
        .audit_status
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some((started, status.clone()));
    Ok(status)
}

/// `GET /v1/audit/status` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Check now rather than answer the last check (unless that is under
    /// five seconds old).
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
    let now = state.clock.now_ms();
    let reuse = if query.fresh == Some(true) {
        FRESH_AFTER_MS
    } else {
        RECHECK_AFTER_MS
    };
    let answer = |s: AuditStatus| Ok(HttpResponse::Ok().json(s));
    if let Some(s) = state.audit_status.last(reuse, now) {
        return answer(s);
    }
    // One check at a time. It runs in its own task, holding the turn to the
    // end even if the caller goes away; while it runs, others are answered
    // with the last check (saying when it was made), or wait for this one.
    match state.audit_status.running.clone().try_lock_owned() {
        Ok(turn) => {
            let st = state.clone();
            let task = actix_web::rt::spawn(async move {
                let _turn = turn;
                check(st).await
            });
            let status = task
                .await
                .map_err(|e| Error::Internal(format!("the integrity check stopped: {e}")))??;
            answer(status)
        }
        Err(_) => {
            if let Some(s) = state.audit_status.any() {
                return answer(s);
            }
            drop(state.audit_status.running.lock().await);
            let s = state
                .audit_status
                .any()
                .ok_or_else(|| Error::Internal("the integrity check did not finish".into()))?;
            answer(s)
        }
    }
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
    Ok(HttpResponse::Ok().json(Overview {
        org: caller.principal.org.clone(),
        days: out,
        failed_sign_ins: u64::try_from(failed).unwrap_or(0),
        locked_accounts: count("locked"),
        disabled_accounts: count("disabled"),
        users: users.len() as u64,
    }))
}
