//! The sign-in calls that need no password: e-mailed codes and single
//! sign-on. The decisions live in [`crate::signin`]; here they meet HTTP.

use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, HeaderValue, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use zeroize::Zeroizing;

use super::AppState;
use super::caller::client_ip;
use super::handlers::{session_answer, with_conn, within_login_limit};
use super::limiter::LoginLimiter;
use crate::accounts::{self, NewSession};
use crate::audit::{Action, Actor, Outcome};
use crate::error::{Error, Result};
use crate::ops::NewSessionRow;
use crate::signin::codes::{self, Code};
use crate::signin::sso::{self, ReturnTo};
use medseal_keyserver_api::v1::{CodeRequest, ErrorBody, GrantExchange, SessionResponse};

/// Codes mailed per address per hour: enough for a typo or two, too few to
/// flood a mailbox.
const CODES_PER_ADDRESS_PER_HOUR: u32 = 5;

/// Codes mailed per address per day: with [`codes::MAX_TRIES`] this bounds
/// guessing at 100 tries a day per address (a chance of 10^-6 a day).
const CODES_PER_ADDRESS_PER_DAY: u32 = 20;

/// Single sign-ons started per client address per minute.
const SSO_STARTS_PER_CLIENT_PER_MINUTE: u32 = 30;

/// Code requests per client address per hour.
const CODES_PER_CLIENT_PER_HOUR: u32 = 30;

fn actor(req: &HttpRequest, state: &AppState, name: &str, device_id: &str) -> Actor {
    Actor {
        name: name.to_owned(),
        client_ip: client_ip(req, state.proxy_hops),
        device_id: Some(device_id.to_owned()),
    }
}

fn integrity_counted<T>(state: &AppState, r: Result<T>) -> Result<T> {
    if let Err(Error::Integrity(_)) = &r {
        state.metrics.integrity_violation();
    }
    r
}

/// E-mail me a sign-in code. Answered 202 whatever the address: whether a
/// code was sent, and why not, is only in the audit trail.
#[utoipa::path(post, path = "/v1/sessions/code", request_body = CodeRequest,
    responses((status = 202, description = "accepted, whatever the address"),
              (status = 400, body = ErrorBody), (status = 429, body = ErrorBody),
              (status = 502, body = ErrorBody, description = "the server has no mail settings")))]
pub async fn request_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CodeRequest>,
) -> Result<HttpResponse> {
    let CodeRequest { email, device_id } = body.into_inner();
    accounts::check_device_id(&device_id)?;
    let email = accounts::normalise_email(&email)?;
    let Some(mailer) = state.mailer.clone() else {
        return Err(Error::Unavailable(
            "this key server does not send sign-in codes (it has no --smtp-url)".into(),
        ));
    };
    let actor = actor(&req, &state, &email, &device_id);
    // Per address and per client, in the store so a pool shares them; the
    // same for every address, known or not.
    let now = state.clock.now_ms();
    let hour = Duration::from_secs(3600);
    let email_key = email.clone();
    let day = Duration::from_secs(24 * 3600);
    let client = actor.client_ip.clone().unwrap_or_else(|| "unknown".into());
    let limited = with_conn(&state, move |c| {
        let windows = [
            (
                CODES_PER_ADDRESS_PER_HOUR,
                hour,
                format!("code-to:{email_key}"),
            ),
            (
                CODES_PER_ADDRESS_PER_DAY,
                day,
                format!("code-to-daily:{email_key}"),
            ),
            (
                CODES_PER_CLIENT_PER_HOUR,
                hour,
                format!("code-from:{client}"),
            ),
        ];
        let mut refused = None;
        // Every window counts the request, even once one has refused it.
        for (n, window, key) in windows {
            if let Err(l) = LoginLimiter::new(n, window).check(c, &key, now)? {
                refused = refused.or(Some(l));
            }
        }
        Ok(refused)
    })
    .await?;
    if let Some(l) = limited {
        state.metrics.denial("code_rate");
        if l.first {
            state
                .audit
                .record(
                    actor
                        .event("", Action::CodeSent, Outcome::Denied)
                        .detail("no code sent: rate limited"),
                )
                .await?;
        }
        return Err(Error::RateLimited {
            message: "too many sign-in codes asked for; try again later".into(),
            retry_after: l.retry_after,
        });
    }
    let code = Code::generate()?;
    let issued = state
        .audit
        .apply(codes::issue(actor.clone(), email.clone(), code.clone()))
        .await?
        .value;
    if let Some(issued) = issued {
        // Mailed after the answer, so that an address with a code and one
        // without are answered alike; a failure is recorded.
        let public_url = state.public_url.clone();
        let audit = state.audit.clone();
        actix_web::rt::spawn(async move {
            let to = email.clone();
            let sent = web::block(move || {
                mailer.send_code(&to, &issued.org, issued.guest, &code, &public_url)
            })
            .await;
            let failure = match sent {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failure {
                tracing::warn!(error = %why, "a sign-in code could not be mailed");
                let _ = audit
                    .record(
                        actor
                            .event("", Action::CodeSent, Outcome::Failure)
                            .detail(format!("the mail was not delivered: {why}")),
                    )
                    .await;
            }
        });
    }
    Ok(HttpResponse::Accepted()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(serde_json::json!({})))
}

/// `POST /v1/sessions` with a code instead of a password.
pub(crate) async fn code_session(
    state: &AppState,
    as_given: Actor,
    email: &str,
    code: &str,
    cookie: bool,
) -> Result<HttpResponse> {
    let email = accounts::normalise_email(email)?;
    let code = Code::parse(code)?;
    let session = NewSession::generate()?;
    let expires_at = state.clock.now_ms() + state.sessions.absolute_timeout_ms;
    let device_id = as_given.device_id.clone().unwrap_or_default();
    let row = NewSessionRow {
        token_hash: session.token_hash.clone(),
        device_id,
        expires_at,
    };
    let actor = Actor {
        name: email.clone(),
        ..as_given
    };
    let applied = state
        .audit
        .apply(codes::redeem(
            actor,
            email,
            code,
            row,
            state.sessions.clone(),
        ))
        .await?;
    match integrity_counted(state, applied.value) {
        Ok(()) => session_answer(state, &session, expires_at, cookie),
        Err(e) => {
            state.metrics.denial("bad_code");
            Err(match e {
                Error::Integrity(_) => Error::Unauthorized(codes::WRONG),
                other => other,
            })
        }
    }
}

/// The query of `GET /v1/sso/{org}/start`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StartQuery {
    /// The device that will hold the session.
    pub device_id: String,
    /// `/app/…` or a loopback URL of the command line.
    pub return_to: String,
    /// base64url SHA-256 of a verifier the client keeps (S256).
    pub challenge: String,
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((LOCATION, to))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .finish()
}

/// Start single sign-on for an organisation (by name, or by the e-mail
/// domain its provider is restricted to): 302 to its OpenID Provider.
#[utoipa::path(get, path = "/v1/sso/{org}/start",
    params(("org" = String, Path), StartQuery),
    responses((status = 302, description = "to the provider"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 502, body = ErrorBody)))]
pub async fn sso_start(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse> {
    let org = path.into_inner();
    let StartQuery {
        device_id,
        return_to,
        challenge,
    } = query.into_inner();
    accounts::check_device_id(&device_id)?;
    let return_to = ReturnTo::parse(&return_to)?;
    sso::check_challenge(&challenge)?;
    // Each start costs a round trip to the provider and a row: limited per
    // client address like sign-ins.
    let client = client_ip(&req, state.proxy_hops).unwrap_or_else(|| "unknown".into());
    let now = state.clock.now_ms();
    let limited = with_conn(&state, move |c| {
        LoginLimiter::new(SSO_STARTS_PER_CLIENT_PER_MINUTE, Duration::from_secs(60)).check(
            c,
            &format!("sso-from:{client}"),
            now,
        )
    })
    .await?;
    if let Err(l) = limited {
        return Err(Error::RateLimited {
            message: "too many sign-ins started from this address; try again later".into(),
            retry_after: l.retry_after,
        });
    }
    let start = sso::StartRequest {
        org,
        device_id,
        return_to: return_to.clone(),
        challenge,
    };
    let begun = begin(&state, start, now).await;
    match (begun, &return_to) {
        (Ok(url), _) => Ok(redirect(&url)),
        // The app shows the reason on its own page rather than a JSON body.
        (Err(e), ReturnTo::App(_)) if !e.is_internal() || matches!(e, Error::Unavailable(_)) => {
            Ok(redirect(&return_to.with(&[("error", &e.to_string())])))
        }
        (Err(e), _) => Err(e),
    }
}

/// Reads the settings, asks the provider (no database connection held
/// meanwhile), stores the flow: the provider's URL.
async fn begin(state: &AppState, start: sso::StartRequest, now: i64) -> Result<String> {
    let ring = state.keyring.get();
    let name = start.org.clone();
    let (org_id, settings) = with_conn(state, move |c| {
        sso::settings_for(c, ring.state_key(), &name)
    })
    .await?;
    let public_url = state.public_url.clone();
    let auth = web::block(move || sso::authorize(&settings, &public_url))
        .await
        .map_err(|e| Error::Internal(format!("worker pool: {e}")))??;
    let ring = state.keyring.get();
    let url = auth.url.clone();
    with_conn(state, move |c| {
        sso::store_flow(c, ring.state_key(), org_id, &auth, &start, now)
    })
    .await?;
    Ok(url)
}

/// The query the provider sends the browser back with.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CallbackQuery {
    /// The flow's state.
    pub state: Option<String>,
    /// The authorization code.
    pub code: Option<String>,
    /// The provider's error, if it refused.
    pub error: Option<String>,
    /// Its description.
    pub error_description: Option<String>,
}

/// The provider's answer: validated, turned into a one-minute grant, and
/// 302 to where the sign-in started, carrying the grant (or the refusal).
#[utoipa::path(get, path = "/v1/sso/callback", params(CallbackQuery),
    responses((status = 302, description = "back to the app or the command line"),
              (status = 400, body = ErrorBody)))]
pub async fn sso_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse> {
    let q = query.into_inner();
    let Some(state_param) = q.state.filter(|s| !s.is_empty() && s.len() <= 256) else {
        return Err(Error::Invalid("the provider's answer has no state".into()));
    };
    let ring = state.keyring.get();
    let now = state.clock.now_ms();
    let taken = with_conn(&state, move |c| {
        sso::take_flow(c, ring.state_key(), &state_param, now)
    })
    .await?;
    let anonymous = actor(&req, &state, "anonymous", "");
    let refused = |org: &str, why: &str, a: &Actor| {
        a.event(org, Action::SsoLogin, Outcome::Denied)
            .detail(format!("refused: {why}"))
    };
    let flow = match taken {
        Ok(f) => f,
        Err(r) => {
            state
                .audit
                .record(refused(&r.org, &r.why, &anonymous))
                .await?;
            return match r.return_to {
                Some(rt) => Ok(redirect(&rt.with(&[("error", &r.why)]))),
                None => Err(Error::Invalid(format!("single sign-on: {}", r.why))),
            };
        }
    };
    let flow_actor = actor(&req, &state, "anonymous", &flow.device_id);
    let give_up = |why: String| {
        let event = refused(&flow.org, &why, &flow_actor);
        let to = flow.return_to.with(&[("error", &why)]);
        (event, to)
    };
    if let Some(err) = q.error {
        let desc = q.error_description.unwrap_or_default();
        let why = crate::audit::ledger::clean(&format!("the provider answered {err}: {desc}"), 300);
        let (event, to) = give_up(why);
        state.audit.record(event).await?;
        return Ok(redirect(&to));
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        let (event, to) = give_up("the provider's answer has no code".into());
        state.audit.record(event).await?;
        return Ok(redirect(&to));
    };
    let ring = state.keyring.get();
    let org_id = flow.org_id;
    let settings = with_conn(&state, move |c| {
        sso::settings_of(c, ring.state_key(), org_id)
    })
    .await;
    let vouched = match settings {
        Ok(Ok(settings)) => {
            let public_url = state.public_url.clone();
            let f2 = flow.clone();
            web::block(move || sso::vouch(&settings, &public_url, &f2, &code))
                .await
                .map_err(|e| Error::Internal(format!("worker pool: {e}")))
                .and_then(|r| r)
        }
        Ok(Err(why)) => Ok(Err(why)),
        Err(e) => Err(e),
    };
    let who = match vouched {
        Ok(Ok(who)) => who,
        Ok(Err(why)) => {
            let (event, to) = give_up(why);
            state.audit.record(event).await?;
            return Ok(redirect(&to));
        }
        Err(Error::Integrity(what)) => {
            state.metrics.integrity_violation();
            state
                .audit
                .record(
                    flow_actor
                        .event(&flow.org, Action::IntegrityViolation, Outcome::Denied)
                        .detail(what.clone()),
                )
                .await?;
            return Ok(redirect(&flow.return_to.with(&[("error", &what)])));
        }
        Err(e) => {
            // What the browser sees names the failing service, never the
            // server's internals (those go to its log).
            let why = match &e {
                Error::Unavailable(m) => m.clone(),
                other => {
                    tracing::error!(error = %other, "single sign-on callback failed");
                    "the key server could not complete the sign-in; try again".into()
                }
            };
            let (event, to) = give_up(why);
            state.audit.record(event).await?;
            return Ok(redirect(&to));
        }
    };
    let grant = sso::NewGrant::generate()?;
    let a = Actor {
        name: who.email.clone(),
        ..flow_actor.clone()
    };
    let applied = state
        .audit
        .apply(sso::grant(a, flow.clone(), who, grant.hash.clone()))
        .await?;
    match integrity_counted(&state, applied.value) {
        Ok(()) => Ok(redirect(
            &flow.return_to.with(&[("grant", grant.secret.as_str())]),
        )),
        Err(e) => Ok(redirect(&flow.return_to.with(&[("error", &e.to_string())]))),
    }
}

/// Exchange the grant that single sign-on handed back for a session: only
/// from the device that started it, with the verifier of its challenge.
#[utoipa::path(post, path = "/v1/sso/session", request_body = GrantExchange,
    responses((status = 201, body = SessionResponse), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn sso_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<GrantExchange>,
) -> Result<HttpResponse> {
    let GrantExchange {
        grant,
        verifier,
        device_id,
        cookie,
    } = body.into_inner();
    accounts::check_device_id(&device_id)?;
    if grant.len() > 256 || verifier.len() > 256 {
        return Err(Error::Unauthorized(sso::BAD_GRANT));
    }
    let a = actor(&req, &state, "anonymous", &device_id);
    within_login_limit(&state, &a).await?;
    let session = NewSession::generate()?;
    let expires_at = state.clock.now_ms() + state.sessions.absolute_timeout_ms;
    let row = NewSessionRow {
        token_hash: session.token_hash.clone(),
        device_id,
        expires_at,
    };
    let hash = Sha256::digest(grant.as_bytes()).to_vec();
    let applied = state
        .audit
        .apply(sso::redeem_grant(
            a,
            hash,
            Zeroizing::new(verifier.to_string()),
            row,
        ))
        .await?;
    match integrity_counted(&state, applied.value) {
        Ok(()) => session_answer(&state, &session, expires_at, cookie),
        Err(Error::Integrity(_)) => Err(Error::Unauthorized(sso::BAD_GRANT)),
        Err(e) => Err(e),
    }
}
