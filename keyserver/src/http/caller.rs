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

/// The items of a comma-separated list header (RFC 9110 5.6.1), over every
/// line of it that is text, trimmed.
pub fn header_list(
    req: &HttpRequest,
    name: impl actix_web::http::header::AsHeaderName,
) -> impl Iterator<Item = &str> {
    req.headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The caller's network address as recorded in audit events and used by the
/// login limiter.
///
/// With `proxy_hops == 0` this is the TCP peer. Behind `proxy_hops` trusted
/// proxies, each of which appends the address it received the request from
/// to `X-Forwarded-For`, the client is the `proxy_hops`-th entry counted from
/// the right: everything further left was written by the client itself and
/// proves nothing. `Forwarded:` is ignored for the same reason (a proxy that
/// only appends `X-Forwarded-For` passes a client's `Forwarded:` through
/// untouched). An entry that is not an IP address, or a header with fewer
/// entries than hops, falls back to the peer: never to client-chosen text.
pub fn client_ip(req: &HttpRequest, proxy_hops: usize) -> Option<String> {
    let peer = || req.peer_addr().map(|a| a.ip().to_string());
    if proxy_hops == 0 {
        return peer();
    }
    let values: Vec<&str> = header_list(req, "x-forwarded-for").collect();
    let Some(entry) = values.len().checked_sub(proxy_hops).map(|i| values[i]) else {
        return peer();
    };
    match parse_forwarded_ip(entry) {
        Some(ip) => Some(ip.to_string()),
        None => peer(),
    }
}

/// An `X-Forwarded-For` entry as an address: `192.0.2.1`, `2001:db8::1`,
/// `[2001:db8::1]` or either with a port.
fn parse_forwarded_ip(entry: &str) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, SocketAddr};
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<IpAddr>().ok())
        })
}

/// An authenticated caller.
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// From where.
    pub ip: Option<String>,
    /// The browser, for the web app's (cookie) sessions: its `User-Agent`,
    /// at most 200 characters.
    pub user_agent: Option<String>,
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
#[derive(Clone)]
pub struct Credentials {
    token: String,
    device_id: String,
    ip: Option<String>,
    user_agent: Option<String>,
    /// The token came in the web app's cookie (tickets never do).
    from_cookie: bool,
}

/// What a route takes as proof of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// The session's own token (bearer or cookie): every route but one.
    Session,
    /// The token, or a send ticket for it ([`super::ticket`]): only
    /// `GET /v1/sessions/current`.
    SessionOrTicket,
}

impl FromRequest for Credentials {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>();
        let hops = state.map_or(0, |s| s.proxy_hops);
        std::future::ready((|| {
            // A bearer token (the command line, the endpoint), else the web
            // app's session cookie with its CSRF header.
            let mut user_agent = None;
            let mut from_cookie = false;
            let token = match bearer(req) {
                Ok(t) => t,
                Err(no_bearer) => {
                    let ring = state.map(|s| s.keyring.get());
                    match ring
                        .as_ref()
                        .and_then(|r| super::browser::cookie_token(req, r.state_key()))
                    {
                        Some(Ok(t)) => {
                            from_cookie = true;
                            user_agent = req
                                .headers()
                                .get(actix_web::http::header::USER_AGENT)
                                .and_then(|v| v.to_str().ok())
                                .map(|v| v.chars().take(200).collect());
                            t
                        }
                        Some(Err(why)) => return Err(Error::Unauthorized(why)),
                        None => return Err(no_bearer),
                    }
                }
            };
            Ok(Credentials {
                token,
                device_id: device(req)?,
                ip: client_ip(req, hops),
                user_agent,
                from_cookie,
            })
        })())
    }
}

impl AppState {
    /// Authenticates `creds` and, in the same blocking call, runs `f` with
    /// the principal. Errors of authentication come out as the outer error;
    /// `f`'s own result is returned for the handler to audit.
    ///
    /// A send ticket is refused here (401): it proves a session to one
    /// call only ([`AppState::authorized_or_ticket`]).
    pub async fn authorized<T: Send + 'static>(
        &self,
        creds: Credentials,
        f: impl FnOnce(&mut crate::db::Conn, &Principal) -> Result<T, Error> + Send + 'static,
    ) -> Result<(Caller, Result<T, Error>), Error> {
        self.authorize(creds, Accept::Session, f).await
    }

    /// Like [`AppState::authorized`], but also taking a send ticket
    /// ([`super::ticket`]) in place of the token: for `GET
    /// /v1/sessions/current` alone, which is how a receiving endpoint
    /// checks a sender of the web app.
    pub async fn authorized_or_ticket<T: Send + 'static>(
        &self,
        creds: Credentials,
        f: impl FnOnce(&mut crate::db::Conn, &Principal) -> Result<T, Error> + Send + 'static,
    ) -> Result<(Caller, Result<T, Error>), Error> {
        self.authorize(creds, Accept::SessionOrTicket, f).await
    }

    async fn authorize<T: Send + 'static>(
        &self,
        creds: Credentials,
        accept: Accept,
        f: impl FnOnce(&mut crate::db::Conn, &Principal) -> Result<T, Error> + Send + 'static,
    ) -> Result<(Caller, Result<T, Error>), Error> {
        let Credentials {
            token,
            device_id,
            ip,
            user_agent,
            from_cookie,
        } = creds;
        let ring = self.keyring.get();
        let now = self.clock.now_ms();
        // A ticket proves a session to one call, and comes only as a
        // bearer token: checked (and refused) before the database is asked.
        let ticket_for = if super::ticket::is_ticket(&token) {
            if accept != Accept::SessionOrTicket || from_cookie {
                return Err(Error::Unauthorized(
                    "a send ticket is accepted only by GET /v1/sessions/current",
                ));
            }
            Some(super::ticket::verify(
                ring.state_key(),
                &token,
                &device_id,
                now,
            )?)
        } else {
            None
        };
        let pool = self.pool.clone();
        let policy = self.sessions.clone();
        let dev = device_id.clone();
        let work = move || -> Result<_, Error> {
            let mut conn = pool.get()?;
            let key = ring.state_key();
            let authed = match &ticket_for {
                Some(hash) => {
                    accounts::authenticate_hash(&mut conn, hash, &dev, &policy, key, now)?
                }
                None => accounts::authenticate(&mut conn, &token, &dev, &policy, key, now)?,
            };
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
            (Authenticated::Ok(principal), Some(out)) => Ok((
                Caller {
                    principal,
                    ip,
                    user_agent,
                },
                out,
            )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ip(hops: usize, headers: &[(&str, &str)]) -> Option<String> {
        let mut r = TestRequest::default().peer_addr("127.0.0.1:5000".parse().unwrap());
        for (k, v) in headers {
            r = r.append_header((*k, *v));
        }
        client_ip(&r.to_http_request(), hops)
    }

    #[test]
    fn the_proxy_entry_counts_from_the_right() {
        let xff = [("X-Forwarded-For", "6.6.6.6, 192.0.2.1, 198.51.100.2")];
        assert_eq!(ip(0, &xff).as_deref(), Some("127.0.0.1"));
        assert_eq!(ip(1, &xff).as_deref(), Some("198.51.100.2"));
        assert_eq!(ip(2, &xff).as_deref(), Some("192.0.2.1"));
        assert_eq!(ip(4, &xff).as_deref(), Some("127.0.0.1"), "too few");
        // Two header lines are one list.
        let two = [
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-For", "[2001:db8::1]:443"),
        ];
        assert_eq!(ip(1, &two).as_deref(), Some("2001:db8::1"));
        // Forwarded is the client's to write: ignored.
        let fwd = [("Forwarded", "for=6.6.6.6")];
        assert_eq!(ip(1, &fwd).as_deref(), Some("127.0.0.1"));
        let junk = [("X-Forwarded-For", "=SUM(1+44)*cmd|x!A0")];
        assert_eq!(ip(1, &junk).as_deref(), Some("127.0.0.1"));
    }
}
