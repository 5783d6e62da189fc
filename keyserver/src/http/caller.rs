//! Who is calling: the bearer token and device id of an authenticated
//! request, resolved to a [`Principal`], plus the client address for audit.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::AppState;
use crate::accounts::{self, Authenticated, Principal};
use crate::audit::{Action, Event, Outcome};
use crate::error::Error;

/// The header carrying the device id a session is bound to.
pub const DEVICE_HEADER: &str = "X-Device-Id";

/// The caller's network address as recorded in audit events.
pub fn client_ip(req: &HttpRequest, trust_forwarded: bool) -> Option<String> {
    if trust_forwarded && let Some(ip) = req.connection_info().realip_remote_addr() {
        return Some(ip.to_owned());
    }
    req.peer_addr().map(|a| a.ip().to_string())
}

/// An authenticated caller.
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// From where.
    pub ip: Option<String>,
}

impl Caller {
    /// An audit event by this caller, about something owned by `org`.
    pub fn event(&self, org: &str, action: Action, outcome: Outcome) -> Event {
        let mut e = Event::new(&self.principal.email, org, action, outcome);
        e.client_ip.clone_from(&self.ip);
        e.device_id = Some(self.principal.device_id.clone());
        e
    }
}

fn bearer(req: &HttpRequest) -> Result<String, Error> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(Error::Unauthorized("missing Authorization: Bearer token"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(Error::Unauthorized(
            "the Authorization header must be a Bearer token",
        ))?;
    Ok(token.trim().to_owned())
}

fn device(req: &HttpRequest) -> Result<String, Error> {
    let d = req
        .headers()
        .get(DEVICE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(Error::Unauthorized("missing X-Device-Id header"))?;
    accounts::check_device_id(d).map_err(|_| Error::Unauthorized("invalid X-Device-Id header"))?;
    Ok(d.to_owned())
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| Error::Internal("application state missing".into()))?;
            let token = bearer(&req)?;
            let device_id = device(&req)?;
            let ip = client_ip(&req, state.trust_forwarded);
            let pool = state.pool.clone();
            let policy = state.sessions.clone();
            let dev = device_id.clone();
            let authed = web::block(move || {
                accounts::authenticate(&mut *pool.get()?, &token, &dev, &policy)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
            match authed {
                Authenticated::Ok(principal) => Ok(Caller { principal, ip }),
                Authenticated::DeviceMismatch(principal) => {
                    state.metrics.denial("device_mismatch");
                    let mut e = Event::new(
                        &principal.email,
                        &principal.org,
                        Action::SessionDeviceMismatch,
                        Outcome::Denied,
                    )
                    .detail(format!(
                        "token bound to device {} presented from another device; session revoked",
                        principal.device_id
                    ));
                    e.client_ip = ip;
                    e.device_id = Some(device_id);
                    state.audit.record(e).await?;
                    Err(Error::Unauthorized(
                        "this session belongs to another device; log in again",
                    ))
                }
            }
        })
    }
}
