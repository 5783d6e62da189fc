//! Who is calling: the bearer token and device id of an authenticated
//! request, resolved to a [`Principal`], plus the client address for audit.

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::AppState;
use crate::accounts::{self, Authenticated, Principal};
use crate::audit::{Action, Actor, Event, Outcome};
use crate::error::Error;
use crate::ops;

/// The header carrying the device id a session is bound to.
pub const DEVICE_HEADER: &str = "X-Device-Id";

/// The caller's network address as recorded in audit events.
pub fn client_ip(req: &HttpRequest, trust_forwarded: bool) -> Option<String> {
    if trust_forwarded && let Some(addr) = req.connection_info().realip_remote_addr() {
        // Without a forwarding header this is the peer as `ip:port`: the
        // port would make every connection a new "address".
        return Some(
            addr.parse::<std::net::SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| addr.to_owned()),
        );
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
    /// The caller as the audit trail names them.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.principal.email.clone(),
            client_ip: self.ip.clone(),
            device_id: Some(self.principal.device_id.clone()),
        }
    }

    /// An audit event by this caller, about something owned by `org`.
    pub fn event(&self, org: &str, action: Action, outcome: Outcome) -> Event {
        self.actor().event(org, action, outcome)
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

/// The credentials of a request, parsed from its headers. Checking them
/// needs the database; [`AppState::authorized`] does that together with the
/// handler's own reads, in one trip to the blocking pool.
pub struct Credentials {
    token: String,
    device_id: String,
    ip: Option<String>,
}

impl FromRequest for Credentials {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.trust_forwarded);
        std::future::ready((|| {
            Ok(Credentials {
                token: bearer(req)?,
                device_id: device(req)?,
                ip: client_ip(req, trust),
            })
        })())
    }
}

impl AppState {
    /// Authenticates `creds` and, in the same blocking call, runs `f` with
    /// the principal. Errors of authentication come out as the outer error;
    /// `f`'s own result is returned for the handler to audit.
    pub async fn authorized<T: Send + 'static>(
        &self,
        creds: Credentials,
        f: impl FnOnce(&mut crate::db::Conn, &Principal) -> Result<T, Error> + Send + 'static,
    ) -> Result<(Caller, Result<T, Error>), Error> {
        let Credentials {
            token,
            device_id,
            ip,
        } = creds;
        let pool = self.pool.clone();
        let policy = self.sessions.clone();
        let dev = device_id.clone();
        let ring = self.keyring.get();
        let now = self.clock.now_ms();
        let work = move || -> Result<_, Error> {
            let mut conn = pool.get()?;
            let authed =
                accounts::authenticate(&mut conn, &token, &dev, &policy, ring.state_key(), now)?;
            let out = match &authed {
                Authenticated::Ok(p) => Some(f(&mut conn, p)),
                _ => None,
            };
            Ok((authed, out))
        };
        let (authed, out) = if self.inline_db {
            work()?
        } else {
            web::block(work)
                .await
                .map_err(|e| Error::Internal(e.to_string()))??
        };
        match (authed, out) {
            (Authenticated::Ok(principal), Some(out)) => Ok((Caller { principal, ip }, out)),
            (Authenticated::Ok(_), None) => {
                Err(Error::Internal("authorisation lost its result".into()))
            }
            (Authenticated::Tampered { email, org, what }, _) => {
                self.metrics.integrity_violation();
                let actor = Actor {
                    name: email,
                    client_ip: ip,
                    device_id: Some(device_id),
                };
                self.audit
                    .record(
                        actor
                            .event(&org, Action::IntegrityViolation, Outcome::Denied)
                            .detail(what),
                    )
                    .await?;
                Err(Error::Unauthorized("invalid or expired session"))
            }
            (Authenticated::DeviceMismatch(principal), _) => {
                self.metrics.denial("device_mismatch");
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
                self.audit
                    .apply(ops::burn_session(e, principal.token_hash.clone()))
                    .await?;
                Err(Error::Unauthorized(
                    "this session belongs to another device; log in again",
                ))
            }
        }
    }
}
