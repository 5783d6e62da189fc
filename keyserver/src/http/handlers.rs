//! The v1 API handlers. Each one: validate, decide (in the library modules),
//! record the audit event durably, then answer.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use utoipa::IntoParams;
use zeroize::Zeroizing;

use super::AppState;
use super::caller::{Caller, Credentials, client_ip};
use super::transparency::receipt_for;
use crate::accounts::{self, PasswordCheck};
use crate::audit::{self, Action, Actor, Outcome};
use crate::error::{Error, Result};
use crate::keys::{self, KeyInfo};
use crate::ops;
use crate::policy;
use crate::time::{parse_rfc3339, rfc3339};
use medseal_keyserver_api::v1::{
    CreateKeyRequest, CreatedKey, CurrentSession, ErrorBody, FetchedKey, LoginRequest,
    RecipientStatus, RecipientsCheck, RecipientsChecked, RecipientsRequest, SendTicket,
    SessionResponse,
};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    web::block(f)
        .await
        .map_err(|e| Error::Internal(format!("worker pool: {e}")))?
}

/// Runs `f` on a pooled connection in the blocking thread pool.
pub(crate) async fn with_conn<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut crate::db::Conn) -> Result<T> + Send + 'static,
) -> Result<T> {
    let pool = state.pool.clone();
    blocking(move || f(&mut *pool.get()?)).await
}

/// A change's refusal, counted in `/metrics` when it was an integrity
/// violation (the event is already recorded by the change).
fn counted<T>(state: &AppState, value: Result<T>) -> Result<T> {
    if let Err(Error::Integrity(_)) = &value {
        state.metrics.integrity_violation();
    }
    value
}

fn no_store(mut resp: HttpResponse) -> HttpResponse {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The answer that hands a new session over: the token in the body, or —
/// for the web app — an HttpOnly cookie and the CSRF token to echo.
pub(crate) fn session_answer(
    state: &AppState,
    session: &accounts::NewSession,
    expires_at: i64,
    cookie: bool,
) -> Result<HttpResponse> {
    if cookie {
        let ring = state.keyring.get();
        let csrf = super::browser::csrf_token(ring.state_key(), &session.token);
        let lifetime = (expires_at - state.clock.now_ms()) / 1000;
        let mut answer = HttpResponse::Created();
        answer.cookie(super::browser::session_cookie(&session.token, lifetime));
        return secret_json(
            answer,
            &SessionResponse {
                token: Zeroizing::new(String::new()),
                expires_at: rfc3339(expires_at),
                csrf_token: Some(csrf),
            },
        );
    }
    secret_json(
        HttpResponse::Created(),
        &SessionResponse {
            token: session.token.clone(),
            expires_at: rfc3339(expires_at),
            csrf_token: None,
        },
    )
}

/// Refuses a sign-in attempt from a client address over its limit (shared
/// by every way of signing in), auditing the first refusal of a window.
pub(crate) async fn within_login_limit(state: &AppState, as_given: &Actor) -> Result<()> {
    let (limiter, addr) = (
        state.limiter,
        as_given
            .client_ip
            .clone()
            .unwrap_or_else(|| "unknown".into()),
    );
    let now = state.clock.now_ms();
    let allowed = with_conn(state, move |c| limiter.check(c, &addr, now)).await?;
    if let Err(limited) = allowed {
        state.metrics.denial("login_rate");
        if limited.first {
            state
                .audit
                .record(
                    as_given
                        .event("", Action::SessionFailed, Outcome::Denied)
                        .detail("rate limited"),
                )
                .await?;
        }
        return Err(Error::RateLimited {
            message: "too many login attempts from this address".into(),
            retry_after: limited.retry_after,
        });
    }
    Ok(())
}

/// Log in: exchange e-mail and password (or an e-mailed code) for a
/// session token bound to a device.
#[utoipa::path(post, path = "/v1/sessions", request_body = LoginRequest,
    responses((status = 201, body = SessionResponse),
              (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse> {
    let LoginRequest {
        email,
        password,
        code,
        device_id,
        cookie,
    } = body.into_inner();
    let ip = client_ip(&req, state.proxy_hops);
    // Refused before anything is counted or recorded: what is not an
    // address or a device id never reaches the audit trail.
    accounts::check_device_id(&device_id)?;
    accounts::normalise_email(&email)?;
    let as_given = Actor {
        name: email.trim().to_owned(),
        client_ip: ip.clone(),
        device_id: Some(device_id.clone()),
    };
    within_login_limit(&state, &as_given).await?;
    if let Some(code) = code {
        if !password.is_empty() {
            return Err(Error::Invalid("give a password or a code, not both".into()));
        }
        return super::signin::code_session(&state, as_given, &email, &code, cookie).await;
    }
    let now = state.clock.now_ms();
    let ring = state.keyring.get();
    let pool = state.pool.clone();
    let e2 = email.clone();
    let user =
        blocking(move || accounts::find_user(&mut *pool.get()?, &e2, ring.state_key())).await?;
    let actor = |org: &str| as_given.event(org, Action::SessionFailed, Outcome::Denied);
    let wrong = Error::Unauthorized("wrong e-mail or password");
    // A known, intact account: the attempt is counted before the password
    // is checked, so concurrent guesses cannot outrun the lockout.
    if let Some(u) = user.as_ref().filter(|u| u.intact) {
        let a = Actor {
            name: u.email.clone(),
            client_ip: ip.clone(),
            device_id: Some(device_id.clone()),
        };
        let reserved = state
            .audit
            .apply(ops::reserve_attempt(
                a,
                u.id,
                u.org.clone(),
                state.sessions.clone(),
            ))
            .await?;
        if let ops::Attempt::Locked(until) = reserved.value {
            state.metrics.denial("locked");
            return Err(Error::RateLimited {
                message: "account locked after repeated failed logins; try again later".into(),
                retry_after: ((until - now) / 1000).max(1) as u64,
            });
        }
    }
    let check = blocking(move || Ok(accounts::check_password(user, password.as_bytes()))).await?;
    match check {
        PasswordCheck::Ok(user) => {
            let session = accounts::NewSession::generate()?;
            let expires_at = now + state.sessions.absolute_timeout_ms;
            let actor = Actor {
                name: user.email.clone(),
                client_ip: ip.clone(),
                device_id: Some(device_id.clone()),
            };
            let row = ops::NewSessionRow {
                token_hash: session.token_hash.clone(),
                device_id: device_id.clone(),
                expires_at,
            };
            let applied = state
                .audit
                .apply(ops::open_session(actor, user.id, user.org.clone(), row))
                .await?;
            if let Err(e) = applied.value {
                if matches!(e, Error::Integrity(_)) {
                    state.metrics.integrity_violation();
                }
                return Err(wrong);
            }
            session_answer(&state, &session, expires_at, cookie)
        }
        PasswordCheck::Unknown => {
            state.metrics.denial("bad_credentials");
            state
                .audit
                .record(actor("").detail("wrong e-mail or password"))
                .await?;
            Err(wrong)
        }
        PasswordCheck::Wrong(user) => {
            state.metrics.denial("bad_credentials");
            let a = Actor {
                name: user.email.clone(),
                client_ip: ip.clone(),
                device_id: Some(device_id.clone()),
            };
            state
                .audit
                .apply(ops::login_failed(
                    a,
                    user.id,
                    user.org.clone(),
                    "wrong e-mail or password",
                    state.sessions.clone(),
                ))
                .await?;
            Err(wrong)
        }
        PasswordCheck::Disabled(user) => {
            state.metrics.denial("disabled");
            state
                .audit
                .record(actor(&user.org).detail("account disabled"))
                .await?;
            // The same answer as a wrong password: the right password must
            // not be confirmed to whoever typed it. The trail says why.
            Err(wrong)
        }
        PasswordCheck::Tampered(user) => {
            state.metrics.integrity_violation();
            state
                .audit
                .record(
                    Actor {
                        name: user.email.clone(),
                        client_ip: ip.clone(),
                        device_id: Some(device_id.clone()),
                    }
                    .event(&user.org, Action::IntegrityViolation, Outcome::Denied)
                    .detail("the account was changed outside the key server; sign-in refused"),
                )
                .await?;
            Err(wrong)
        }
    }
}

/// Who is calling: lets a receiving endpoint check that a report's sender
/// holds a live session here, without being able to do more than ask. Not
/// audited: it reads nothing but the caller's own session. The one call
/// that also takes a send ticket (`POST /v1/sessions/ticket`) as the
/// bearer token, answering as for its session.
#[utoipa::path(get, path = "/v1/sessions/current",
    responses((status = 200, body = CurrentSession), (status = 401, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn current_session(
    state: web::Data<AppState>,
    creds: Credentials,
) -> Result<HttpResponse> {
    let (caller, _) = state.authorized_or_ticket(creds, |_, _| Ok(())).await?;
    let p = caller.principal;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(CurrentSession {
            email: p.email,
            org: p.org,
            role: p.role.as_str().to_owned(),
            device_id: p.device_id,
        }))
}

/// A send ticket for the calling session: the web app hands it to the
/// organisation's receiving endpoint, which cannot be given the session
/// token (an HttpOnly cookie). Stateless (see [`super::ticket`]) and not
/// audited: it grants nothing the session does not have — it only lets
/// `GET /v1/sessions/current`, itself unaudited, say whose session it is —
/// and an event per report sent would put a durable write on every send.
#[utoipa::path(post, path = "/v1/sessions/ticket",
    responses((status = 201, body = SendTicket), (status = 401, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn create_ticket(state: web::Data<AppState>, creds: Credentials) -> Result<HttpResponse> {
    let (caller, authorised) = state.authorized(creds, |_, _| Ok(())).await?;
    authorised?;
    let p = &caller.principal;
    let expires_at = super::ticket::expiry(state.clock.now_ms(), p.session_expires_at);
    let ring = state.keyring.get();
    let ticket = super::ticket::issue(ring.state_key(), &p.token_hash, &p.device_id, expires_at)?;
    secret_json(
        HttpResponse::Created(),
        &SendTicket {
            ticket,
            expires_at: rfc3339(expires_at),
        },
    )
}

/// Log out: end the calling session.
#[utoipa::path(delete, path = "/v1/sessions/current",
    responses((status = 204), (status = 401, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn delete_session(
    state: web::Data<AppState>,
    creds: Credentials,
) -> Result<HttpResponse> {
    let (caller, authorised) = state.authorized(creds, |_, _| Ok(())).await?;
    authorised?;
    let org = caller.principal.org.clone();
    state
        .audit
        .apply(ops::end_session(
            caller.actor(),
            org,
            caller.principal.token_hash.clone(),
        ))
        .await?;
    // A web app's cookie goes with its session.
    Ok(HttpResponse::NoContent()
        .cookie(super::browser::cleared_cookie())
        .finish())
}

/// Create a per-report data key addressed to recipients.
#[utoipa::path(post, path = "/v1/keys", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn create_key(
    state: web::Data<AppState>,
    creds: Credentials,
    body: web::Json<CreateKeyRequest>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let expires_at = body.expires_at.as_deref().map(parse_rfc3339).transpose()?;
    let now = state.clock.now_ms();
    let (report_id, recipients) = (body.report_id.clone(), body.recipients.clone());
    let (caller, new) = state
        .authorized(creds, move |_, p| {
            keys::prepare(p, &report_id, &recipients, expires_at, now)
        })
        .await?;
    let new = match new {
        Ok(n) => n,
        Err(e @ Error::Forbidden(_)) => {
            state.metrics.denial("create_forbidden");
            let ev = caller
                .event(&caller.principal.org, Action::KeyDenied, Outcome::Denied)
                .detail("not allowed to create keys")
                .about(
                    None,
                    keys::check_report_id(&body.report_id)
                        .ok()
                        .map(|()| body.report_id.clone()),
                );
            state.audit.record(ev).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let answer = CreatedKey {
        key_id: new.key_id.clone(),
        key: Zeroizing::new(B64.encode(new.key.expose_secret())),
        expires_at: new.expires_at.map(rfc3339),
    };
    let applied = state
        .audit
        .apply(ops::create_key(
            caller.actor(),
            caller.principal.clone(),
            new,
        ))
        .await?;
    if let Err(e) = applied.value {
        state.metrics.denial("recipient_policy");
        return Err(e);
    }
    secret_json(HttpResponse::Created(), &answer)
}

/// Could these addresses open a report the caller seals now? Asked by
/// `medseal seal` and `capture` before sealing, so that a mistyped address
/// is caught while the clinician is there. It tells staff who may seal
/// whether an address has an account on this server: each check is
/// audited with the addresses asked, and limited to 20 a minute per user.
#[utoipa::path(post, path = "/v1/recipients/check", request_body = RecipientsCheck,
    responses((status = 200, body = RecipientsChecked), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn check_recipients(
    state: web::Data<AppState>,
    creds: Credentials,
    body: web::Json<RecipientsCheck>,
) -> Result<HttpResponse> {
    /// Checks per user per minute.
    const PER_MINUTE: u32 = 20;
    let asked = body.into_inner().recipients;
    if asked.is_empty() || asked.len() > keys::MAX_RECIPIENTS {
        return Err(Error::Invalid(format!(
            "give 1 to {} recipients",
            keys::MAX_RECIPIENTS
        )));
    }
    let ring = state.keyring.get();
    let now = state.clock.now_ms();
    let limiter = super::limiter::LoginLimiter::new(PER_MINUTE, std::time::Duration::from_secs(60));
    let (caller, answer) = state
        .authorized(creds, move |c, p| {
            if !policy::may_create(p) {
                return Err(Error::Forbidden(
                    "only those who seal reports may check recipients".into(),
                ));
            }
            if let Err(limited) =
                limiter.check(c, &format!("recipients-check:{}", p.user_id), now)?
            {
                return Err(Error::RateLimited {
                    message: "too many recipient checks; try again in a minute".into(),
                    retry_after: limited.retry_after,
                });
            }
            asked
                .iter()
                .map(|e| {
                    keys::recipient_status(c, p, e, ring.state_key()).map(|(email, status)| {
                        RecipientStatus {
                            email,
                            status: status.to_owned(),
                        }
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
    let org = caller.principal.org.clone();
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let why = match &e {
                Error::Forbidden(_) => "not allowed to check recipients",
                Error::RateLimited { .. } => "rate limited",
                _ => return Err(e),
            };
            state.metrics.denial("recipients_check");
            state
                .audit
                .record(
                    caller
                        .event(&org, Action::RecipientsChecked, Outcome::Denied)
                        .detail(why),
                )
                .await?;
            return Err(e);
        }
    };
    let detail = answer
        .iter()
        .map(|r| format!("{} ({})", r.email, r.status))
        .collect::<Vec<_>>()
        .join(", ");
    state
        .audit
        .record(
            caller
                .event(&org, Action::RecipientsChecked, Outcome::Success)
                .detail(format!("checked: {detail}")),
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(RecipientsChecked { recipients: answer }))
}

/// Authenticates, looks the key up (one trip to the database pool), and
/// applies the policy, auditing every refusal.
pub(crate) async fn authorised_key(
    state: &AppState,
    creds: Credentials,
    key_id: &str,
    allowed: fn(&crate::accounts::Principal, &policy::KeyFacts) -> bool,
    refusal: &'static str,
) -> Result<(Caller, KeyInfo)> {
    let id = key_id.to_owned();
    let ring = state.keyring.get();
    let (caller, info) = state
        .authorized(creds, move |c, p| match keys::check_key_id(&id) {
            Ok(()) => keys::lookup(c, p, &id, ring.state_key()),
            Err(_) => Ok(None),
        })
        .await?;
    let info = info?;
    let deny = |org: &str, report: Option<String>, detail: &str| {
        caller
            .event(org, Action::KeyDenied, Outcome::Denied)
            .detail(detail)
            .about(Some(key_id.to_owned()), report)
    };
    let Some(info) = info else {
        state.metrics.key_fetch("unknown");
        // Only a well-formed id is recorded: anything else is text a client
        // chose, and the trail keeps none of it.
        let mut e = deny(&caller.principal.org, None, "unknown key");
        if keys::check_key_id(key_id).is_err() {
            e = e.detail("malformed key id").about(None, None);
        }
        state.audit.record(e).await?;
        return Err(Error::NotFound("no such key".into()));
    };
    if !allowed(&caller.principal, &info.facts) {
        state.metrics.denial("not_allowed");
        state
            .audit
            .record(deny(&info.org, Some(info.report_id.clone()), refusal))
            .await?;
        return Err(Error::Forbidden(refusal.to_owned()));
    }
    // After the policy, so that a stranger learns nothing of a key's state;
    // a caller the (tampered) row would let in is refused here.
    if !info.intact {
        state.metrics.integrity_violation();
        state.metrics.key_fetch("tampered");
        let what = format!("key {key_id} was changed outside the key server; not released");
        state
            .audit
            .record(
                caller
                    .event(&info.org, Action::IntegrityViolation, Outcome::Denied)
                    .detail(what.clone())
                    .about(Some(key_id.to_owned()), Some(info.report_id.clone())),
            )
            .await?;
        return Err(Error::Integrity(what));
    }
    Ok((caller, info))
}

/// Fetch a data key: the creator, listed recipients, and the owning
/// organisation's endpoint service accounts may; each fetch is audited.
#[utoipa::path(get, path = "/v1/keys/{key_id}",
    responses((status = 200, body = FetchedKey), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    params(("key_id" = String, Path), ("X-Device-Id" = String, Header)),
    security(("bearer" = [])))]
pub async fn fetch_key(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let key_id = path.into_inner();
    let (caller, info) = authorised_key(
        &state,
        creds,
        &key_id,
        policy::may_fetch,
        "you are not a recipient of this report",
    )
    .await
    .inspect_err(|e| {
        if matches!(e, Error::Forbidden(_)) {
            state.metrics.key_fetch("denied");
        }
    })?;
    let about = (Some(key_id.clone()), Some(info.report_id.clone()));
    if let Some(reason) = keys::gone_reason(info.revoked_at, info.expires_at, state.clock.now_ms())
    {
        state.metrics.key_fetch("gone");
        let ev = caller
            .event(&info.org, Action::KeyDenied, Outcome::Denied)
            .detail(format!("key {reason}"))
            .about(about.0, about.1);
        state.audit.record(ev).await?;
        return Err(Error::Gone(format!("this report's key has been {reason}")));
    }
    let key = keys::unwrap(&state.keyring, &key_id, &info)?;
    let mut ev = caller
        .event(&info.org, Action::KeyFetched, Outcome::Success)
        .about(about.0, about.1);
    if caller.principal.role == accounts::Role::Service {
        // Released by the organisation's rule for its receiving endpoint,
        // not because the account is a recipient: the trail says so.
        ev = ev.detail("service account: the organisation's receiving endpoint");
    } else if let Some(ua) = &caller.user_agent {
        // Opened in the web app: which browser, beside its device id.
        ev = ev.detail(format!("web app, browser: {ua}"));
    }
    let applied = state.audit.record(ev).await?;
    let receipt = receipt_for(&state, &applied).await?;
    state.metrics.key_fetch("released");
    secret_json(
        HttpResponse::Ok(),
        &FetchedKey {
            key_id,
            key: Zeroizing::new(B64.encode(key.expose_secret())),
            report_id: info.report_id,
            receipt,
        },
    )
}

/// Add recipients to a key (its creator or an admin of its organisation).
#[utoipa::path(post, path = "/v1/keys/{key_id}/recipients", request_body = RecipientsRequest,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 410, body = ErrorBody)),
    params(("key_id" = String, Path), ("X-Device-Id" = String, Header)),
    security(("bearer" = [])))]
pub async fn add_recipients(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<String>,
    body: web::Json<RecipientsRequest>,
) -> Result<HttpResponse> {
    let key_id = path.into_inner();
    let (caller, _) = authorised_key(
        &state,
        creds,
        &key_id,
        policy::may_manage,
        "only the key's creator or an admin of its organisation may add recipients",
    )
    .await?;
    let recipients = keys::normalise_recipients(&body.into_inner().recipients)?;
    let applied = state
        .audit
        .apply(ops::add_recipients(caller.actor(), key_id, recipients))
        .await?;
    counted(&state, applied.value)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revoke a key: every later fetch answers 410.
#[utoipa::path(post, path = "/v1/keys/{key_id}/revoke",
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    params(("key_id" = String, Path), ("X-Device-Id" = String, Header)),
    security(("bearer" = [])))]
pub async fn revoke_key(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let key_id = path.into_inner();
    let (caller, _) = authorised_key(
        &state,
        creds,
        &key_id,
        policy::may_manage,
        "only the key's creator or an admin of its organisation may revoke it",
    )
    .await?;
    let applied = state
        .audit
        .apply(ops::revoke_key(caller.actor(), key_id))
        .await?;
    counted(&state, applied.value)?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/audit` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events about this key.
    key_id: Option<String>,
    /// Only events about this report.
    report_id: Option<String>,
    /// Only events by this actor (their address, exactly).
    actor: Option<String>,
    /// Only this action, e.g. `key.fetched`.
    action: Option<String>,
    /// Only `success`, `denied` or `failure`.
    outcome: Option<String>,
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    until: Option<String>,
    /// `oldest` first (default: a trail) or `newest` first (a console's
    /// pages).
    order: Option<String>,
    /// Only events before this sequence number: the `next_before` of the
    /// page before (newest first).
    before: Option<i64>,
    /// Only events after this sequence number: the `next_after` of the
    /// page before (oldest first).
    after: Option<i64>,
    /// At most this many (1–1000); the JSON then says `next_before` (newest
    /// first) or `next_after` (oldest first) when more match.
    limit: Option<i64>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The most events one page of `GET /v1/audit` may hold.
const MAX_AUDIT_PAGE: i64 = 1000;

impl AuditQuery {
    /// The filter asked for, checked.
    fn filter(&self) -> Result<audit::Filter> {
        let newest_first = match self.order.as_deref() {
            None | Some("oldest") => false,
            Some("newest") => true,
            Some(_) => return Err(Error::Invalid("order must be oldest or newest".into())),
        };
        if let Some(o) = &self.outcome
            && !matches!(o.as_str(), "success" | "denied" | "failure")
        {
            return Err(Error::Invalid(
                "outcome must be success, denied or failure".into(),
            ));
        }
        if let Some(a) = &self.action
            && (a.is_empty()
                || a.len() > 64
                || !a
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'))
        {
            return Err(Error::Invalid(
                "action is a name such as key.fetched".into(),
            ));
        }
        if let Some(n) = self.limit
            && !(1..=MAX_AUDIT_PAGE).contains(&n)
        {
            return Err(Error::Invalid(format!(
                "limit must be 1 to {MAX_AUDIT_PAGE}"
            )));
        }
        let time = |t: &Option<String>| t.as_deref().map(parse_rfc3339).transpose();
        Ok(audit::Filter {
            key_id: self.key_id.clone(),
            report_id: self.report_id.clone(),
            actor: self.actor.as_deref().map(|a| a.trim().to_lowercase()),
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            since: time(&self.since)?,
            until: time(&self.until)?,
            before: self.before,
            after: self.after,
            newest_first,
            // One more than asked, to know whether another page follows.
            limit: self.limit.map(|n| n + 1),
            org: None,
        })
    }
}

/// Audit events for the patient record: sent, fetched by whom, when, from where.
#[utoipa::path(get, path = "/v1/audit", params(AuditQuery, ("X-Device-Id" = String, Header)),
    responses((status = 200, description = "`{\"events\": [...]}` or CSV"),
              (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn read_audit(
    state: web::Data<AppState>,
    creds: Credentials,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse> {
    let q = query.into_inner();
    let format: audit::Format = q.format.as_deref().unwrap_or("json").parse()?;
    let mut filter = q.filter()?;
    let asked_key = q.key_id.clone();
    let ring = state.keyring.get();
    let (caller, key) = state
        .authorized(creds, move |c, p| match asked_key {
            Some(k) if keys::check_key_id(&k).is_ok() => keys::lookup(c, p, &k, ring.state_key()),
            _ => Ok(None),
        })
        .await?;
    let key = key?;
    let p = &caller.principal;
    if policy::may_read_org_audit(p) {
        filter.org = Some(p.org.clone());
    } else {
        // A key's creator may read that key's trail, and nothing else.
        // Only a key whose state matches its seal names its creator.
        if key.is_none_or(|i| !i.intact || i.facts.creator_id != p.user_id) {
            state.metrics.denial("audit_forbidden");
            state
                .audit
                .record(caller.event(&p.org, Action::AuditRead, Outcome::Denied))
                .await?;
            return Err(Error::Forbidden(
                "only admins, auditors, or a key's creator (with key_id) may read the audit log"
                    .into(),
            ));
        }
    }
    let f = filter.clone();
    let mut records = with_conn(&state, move |c| audit::query(c, &f)).await?;
    let next = match q.limit {
        Some(n) if records.len() as i64 > n => {
            records.truncate(usize::try_from(n).unwrap_or(0));
            records.last().map(|r| {
                if filter.newest_first {
                    audit::Next::Before(r.seq)
                } else {
                    audit::Next::After(r.seq)
                }
            })
        }
        _ => None,
    };
    let body = audit::render(&records, format, filter.org.as_deref(), next)?;
    // The filter goes in the detail, not the key/report columns, so that a
    // report's exported trail is the report's story, not who read it.
    let ev = caller
        .event(&p.org, Action::AuditRead, Outcome::Success)
        .detail(format!("{} events ({})", records.len(), filter.describe()));
    state.audit.record(ev).await?;
    let ctype = match format {
        audit::Format::Json => "application/json",
        audit::Format::Csv => "text/csv; charset=utf-8",
    };
    Ok(no_store(
        HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, ctype))
            .body(body),
    ))
}

/// Liveness: answers while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", responses((status = 200)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", responses((status = 200), (status = 503, body = ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse> {
    with_conn(&state, |c| {
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT 1").execute(c)?;
        Ok(())
    })
    .await
    .map_err(|_| Error::Audit("the database is not answering".into()))?;
    Ok(healthz().await)
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let auth = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state
        .metrics_access
        .check(req.app_config().local_addr(), auth)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render()))
}

/// A JSON body holding a secret (a session token, a data key in base64),
/// never cached. The serialised bytes live in a buffer that is wiped when
/// the HTTP layer drops it after writing, not left in freed memory; the
/// value itself is `Zeroizing` in its type. (The HTTP and TLS layers copy
/// what they write into their own reused write buffers, which this cannot
/// reach.)
fn secret_json(
    mut builder: actix_web::HttpResponseBuilder,
    value: &impl serde::Serialize,
) -> Result<HttpResponse> {
    /// Bytes wiped on drop, lent to the HTTP layer without a copy.
    struct Wiped(Zeroizing<Vec<u8>>);
    impl AsRef<[u8]> for Wiped {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    /// Counts what would be written: the buffer is allocated once at its
    /// final size, so no grown-out-of copy is freed unwiped.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let fail = |e: serde_json::Error| Error::Internal(e.to_string());
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(fail)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *buf, value).map_err(fail)?;
    Ok(no_store(
        builder
            .content_type("application/json")
            .body(actix_web::web::Bytes::from_owner(Wiped(buf))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn secret_answers_are_exact_json_and_never_cached() {
        let value = serde_json::json!({"token": "tok_x".repeat(500), "n": [1, 2, 3]});
        let resp = secret_json(HttpResponse::Created(), &value).unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers().get(CACHE_CONTROL).unwrap(), "no-store");
        assert_eq!(
            resp.headers()
                .get(actix_web::http::header::CONTENT_TYPE)
                .unwrap(),
            "application/json"
        );
        let body = actix_web::body::to_bytes(resp.into_body()).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            value
        );
    }
}
