//! The HTTP service: routes, shared state, limits, metrics, TLS.

pub mod app;
pub mod browser;
pub mod caller;
pub mod console;
pub mod drops;
pub mod handlers;
pub mod limiter;
pub mod oversight;
pub mod reports;
pub mod signin;
pub mod ticket;
pub mod transparency;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};
use medseal_keyserver_api::v1;
use utoipa::OpenApi;

use crate::accounts::SessionPolicy;
use crate::audit::AuditLog;
use crate::db::DbPool;
use crate::error::{Error, Result};
use crate::keyring::SharedKeyring;
use crate::metrics::Metrics;
use limiter::LoginLimiter;

/// Largest JSON body accepted.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Largest PEM file (certificate chain or key) read.
const MAX_PEM_FILE: u64 = 1 << 20;

/// State shared by every worker.
pub struct AppState {
    /// Database connections.
    pub pool: DbPool,
    /// Master keys.
    pub keyring: Arc<SharedKeyring>,
    /// The audit writer.
    pub audit: AuditLog,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The time, as every decision sees it.
    pub clock: Arc<dyn crate::time::Clock>,
    /// Session timeouts and lockout.
    pub sessions: SessionPolicy,
    /// Per-address login limit.
    pub limiter: LoginLimiter,
    /// Trusted proxies in front of the server (0: none); see
    /// [`caller::client_ip`].
    pub proxy_hops: usize,
    /// Run request-path database reads on the HTTP worker itself. Right for
    /// embedded SQLite, whose reads take microseconds and never wait on the
    /// network: it saves two thread hand-offs per request. PostgreSQL work
    /// goes to the blocking pool so that a slow network never stalls a worker.
    pub inline_db: bool,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    /// The address people reach the server at (`--public-url`), for the
    /// links it hands out.
    pub public_url: String,
    /// Its scheme, host and port: what a report sealed here names.
    pub public_origin: String,
    /// Largest share link, in bytes.
    pub drop_max_bytes: u64,
    /// Sends sign-in codes, when the server has mail settings.
    pub mailer: Option<Arc<crate::signin::mail::Mailer>>,
    /// The audit log's last integrity check, for the console.
    pub audit_status: oversight::StatusCache,
    /// The web app's CSP, with the receiving endpoints it may post to.
    pub csp: app::CspCache,
}

/// Who may read `/metrics`. The counters say how busy the server is, how
/// many logins fail and whether its integrity checks fire: not secrets, but
/// not for the whole network either.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// Serve `/metrics` only on this (second, plain-HTTP) listen address,
    /// and nothing else there; the main address answers it 404.
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer` with this token.
    pub token: Option<zeroize::Zeroizing<String>>,
}

impl MetricsAccess {
    /// Whether a request that arrived on `local` may read the metrics with
    /// the `Authorization` header `auth`. `Err` says why not, as an answer.
    pub fn check(&self, local: SocketAddr, auth: Option<&str>) -> Result<()> {
        if self.listen.is_some_and(|m| m != local) {
            return Err(Error::NotFound("no such endpoint".into()));
        }
        if let Some(token) = &self.token {
            let given = auth
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .trim();
            let same: bool =
                subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into();
            if !same {
                return Err(Error::Unauthorized(
                    "the metrics need Authorization: Bearer with the metrics token",
                ));
            }
        }
        Ok(())
    }
}

/// The OpenAPI document, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(title = "medseal key server", description = "Per-report data keys, policy and audit."),
    paths(
        handlers::create_session, signin::request_code, signin::sso_start, signin::sso_callback,
        signin::sso_session, handlers::current_session, handlers::create_ticket, handlers::delete_session,
        handlers::create_key,
        handlers::fetch_key, handlers::add_recipients, handlers::revoke_key, handlers::check_recipients,
        console::list_users, console::create_user, console::patch_user, console::disable_user,
        console::enable_user, console::end_sessions, console::get_org, console::get_policy, console::put_policy,
        reports::list_keys, reports::patch_key, oversight::audit_status, oversight::overview,
        handlers::read_audit, drops::create_drop, drops::download_drop, handlers::healthz, handlers::readyz, handlers::metrics,
        transparency::checkpoint, transparency::proof, transparency::consistency,
        transparency::public_key,
    ),
    components(schemas(
        v1::LoginRequest, v1::CodeRequest, v1::GrantExchange, v1::SessionResponse, v1::CurrentSession,
        v1::SendTicket, v1::OrgInfo, v1::CreateKeyRequest,
        v1::CreatedKey, v1::FetchedKey, v1::RecipientsRequest, v1::RecipientsCheck, v1::RecipientsChecked, v1::RecipientStatus,
        v1::UserView, v1::UsersList, v1::NewUser, v1::UserPatch, v1::CreatedUser, v1::OrgPolicy,
        v1::KeyView, v1::KeysList, v1::KeyPatch, v1::AuditStatus, v1::CheckpointView, v1::DayCounts,
        v1::Overview,
        v1::ErrorBody, v1::CreatedDrop, crate::audit::ExportedEvent, v1::Proof, v1::PublicKey,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

async fn not_found() -> Result<HttpResponse> {
    Err(Error::NotFound("no such endpoint".into()))
}

/// Records latency and status by route pattern (never by raw path, which
/// would put key ids into metric labels).
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> std::result::Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let state = req.app_data::<web::Data<AppState>>();
    // The metrics listener serves the metrics and nothing else.
    if state.and_then(|s| s.metrics_access.listen) == Some(req.app_config().local_addr())
        && req.path() != "/metrics"
    {
        let (req, _) = req.into_parts();
        let res = Error::NotFound("no such endpoint".into()).error_response();
        return Ok(ServiceResponse::new(req, res).map_into_right_body());
    }
    let metrics = state.map(|s| s.metrics.clone());
    let res = next.call(req).await?.map_into_left_body();
    if let Some(m) = metrics {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        m.request(&method, &route, res.status().as_u16(), started.elapsed());
    }
    Ok(res)
}

fn json_error(err: actix_web::error::JsonPayloadError) -> Error {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => {
            Error::PayloadTooLarge(format!("the body is larger than {MAX_JSON_BODY} bytes"))
        }
        E::ContentType => Error::UnsupportedMediaType("the body must be application/json".into()),
        other => Error::Invalid(format!("invalid JSON body: {other}")),
    }
}

/// Registers the routes, limits and error handlers on an app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default()
        .limit(MAX_JSON_BODY)
        .error_handler(|err, _| json_error(err).into());
    let query = web::QueryConfig::default()
        .error_handler(|err, _| Error::Invalid(format!("invalid query: {err}")).into());
    let path = web::PathConfig::default()
        .error_handler(|err, _| Error::Invalid(format!("invalid path: {err}")).into());
    cfg.app_data(json)
        .app_data(query)
        .app_data(path)
        .route("/v1/sessions", web::post().to(handlers::create_session))
        .route("/v1/sessions/code", web::post().to(signin::request_code))
        .route("/v1/sso/callback", web::get().to(signin::sso_callback))
        .route("/v1/sso/session", web::post().to(signin::sso_session))
        .route("/v1/sso/{org}/start", web::get().to(signin::sso_start))
        .route(
            "/v1/sessions/current",
            web::delete().to(handlers::delete_session),
        )
        .route(
            "/v1/sessions/current",
            web::get().to(handlers::current_session),
        )
        .route(
            "/v1/sessions/ticket",
            web::post().to(handlers::create_ticket),
        )
        .route("/v1/keys", web::post().to(handlers::create_key))
        .route("/v1/keys", web::get().to(reports::list_keys))
        .route("/v1/overview", web::get().to(oversight::overview))
        .route(
            "/v1/recipients/check",
            web::post().to(handlers::check_recipients),
        )
        .route("/v1/org", web::get().to(console::get_org))
        .route("/v1/org/policy", web::get().to(console::get_policy))
        .route("/v1/org/policy", web::put().to(console::put_policy))
        .route("/v1/users", web::get().to(console::list_users))
        .route("/v1/users", web::post().to(console::create_user))
        .route("/v1/users/{id}", web::patch().to(console::patch_user))
        .route(
            "/v1/users/{id}/disable",
            web::post().to(console::disable_user),
        )
        .route(
            "/v1/users/{id}/enable",
            web::post().to(console::enable_user),
        )
        .route(
            "/v1/users/{id}/sessions/revoke",
            web::post().to(console::end_sessions),
        )
        .route("/v1/keys/{key_id}", web::get().to(handlers::fetch_key))
        .route("/v1/keys/{key_id}", web::patch().to(reports::patch_key))
        .route(
            "/v1/keys/{key_id}/recipients",
            web::post().to(handlers::add_recipients),
        )
        .route(
            "/v1/keys/{key_id}/revoke",
            web::post().to(handlers::revoke_key),
        )
        .route("/v1/drops", web::post().to(drops::create_drop))
        .route("/v1/drops/{drop_id}", web::get().to(drops::download_drop))
        .route("/v1/audit", web::get().to(handlers::read_audit))
        .route(
            "/v1/audit/checkpoint",
            web::get().to(transparency::checkpoint),
        )
        .route("/v1/audit/proof", web::get().to(transparency::proof))
        .route("/v1/audit/status", web::get().to(oversight::audit_status))
        .route(
            "/v1/audit/consistency",
            web::get().to(transparency::consistency),
        )
        .route(
            "/v1/audit/public-key",
            web::get().to(transparency::public_key),
        )
        .route("/healthz", web::get().to(handlers::healthz))
        .route("/readyz", web::get().to(handlers::readyz))
        .route("/metrics", web::get().to(handlers::metrics))
        .route("/openapi.json", web::get().to(openapi))
        .route("/app", web::get().to(app::root))
        .route("/app/", web::get().to(app::index))
        .route("/app/{file}", web::get().to(app::file))
        .default_service(web::to(not_found));
}

/// How often expired share links are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(10 * 60);

/// Deletes expired share links (each with its `drop.purged` event),
/// sign-in codes that expired unused (`code.expired`), unfinished single
/// sign-ons, and
/// abandoned uploads: at start, then every [`PURGE_EVERY`]. Several servers
/// on one store may all run it; the writers serialise on the audit head, so
/// a drop is purged, and audited, once.
async fn purge_drops(state: web::Data<AppState>) {
    loop {
        let actor = crate::audit::Actor::local("keyserver");
        match state.audit.apply(crate::drops::purge(actor)).await {
            Ok(done) if done.value > 0 => {
                tracing::info!(drops = done.value, "expired share links deleted");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot delete expired share links yet"),
        }
        let codes = crate::signin::codes::purge(crate::audit::Actor::local("keyserver"));
        if let Err(e) = state.audit.apply(codes).await {
            tracing::warn!(error = %e, "cannot delete expired sign-in codes yet");
        }
        let now = state.clock.now_ms();
        if let Err(e) =
            handlers::with_conn(&state, move |c| crate::signin::sso::purge(c, now)).await
        {
            tracing::warn!(error = %e, "cannot delete unfinished sign-ins yet");
        }
        actix_web::rt::time::sleep(PURGE_EVERY).await;
    }
}

/// TLS certificate and key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Invalid(format!("{what}: {e}"));
    let read = |p: &std::path::Path| {
        std::fs::File::open(p)
            .and_then(|f| medseal_format::read_bounded(f, MAX_PEM_FILE))
            .map_err(|e| bad(&format!("cannot read {}", p.display()), &e))
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = zeroize::Zeroizing::new(read(&files.key)?);
    // The TLS private key is a secret like the keyring: owner-only.
    if let Some(why) = medseal_files::not_private(&files.key) {
        return Err(Error::Invalid(format!("the TLS key {why}")));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            bad(
                &format!("{} is not a PEM certificate", files.cert.display()),
                &e,
            )
        })?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!(
            "{} holds no certificate",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            &format!("{} is not a PEM private key", files.key.display()),
            &e,
        )
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("the certificate and key do not match", &e))
}

/// How to listen.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Address and port.
    pub addr: SocketAddr,
    /// HTTPS, if given.
    pub tls: Option<TlsFiles>,
    /// HTTP worker threads.
    pub workers: usize,
    /// Blocking threads per worker for database work.
    pub blocking_threads: usize,
    /// Slow-client timeout for reading a request's headers.
    pub client_request_timeout: Duration,
    /// A second, plain-HTTP address serving only `/metrics`.
    pub metrics: Option<SocketAddr>,
    /// Printed on stderr once the address is bound and TLS is loaded, so
    /// that "listening" is never said by a server about to fail.
    pub banner: String,
}

/// Runs the HTTP server until it is stopped (Ctrl-C / SIGTERM).
pub async fn run(state: web::Data<AppState>, listen: Listen) -> Result<()> {
    actix_web::rt::spawn(purge_drops(state.clone()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(observe))
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer"))
                    // API answers are never cached (the app's files say
                    // otherwise for themselves).
                    .add(("Cache-Control", "no-store")),
            )
            .configure(configure)
    })
    .workers(listen.workers)
    // Database work runs on each worker's blocking pool; more threads than
    // pooled connections only queue on the pool's lock and thrash the
    // scheduler, so the two are sized together.
    .worker_max_blocking_threads(listen.blocking_threads)
    .client_request_timeout(listen.client_request_timeout)
    .client_disconnect_timeout(Duration::from_secs(5))
    .max_connection_rate(256)
    .shutdown_timeout(10);
    let bind_err =
        |e: std::io::Error| Error::Invalid(format!("cannot listen on {}: {e}", listen.addr));
    let server = match &listen.tls {
        Some(files) => server
            .bind_rustls_0_23(listen.addr, tls_config(files)?)
            .map_err(bind_err)?,
        None => server.bind(listen.addr).map_err(bind_err)?,
    };
    let server = match listen.metrics {
        Some(addr) => server
            .bind(addr)
            .map_err(|e| Error::Invalid(format!("cannot listen on {addr}: {e}")))?,
        None => server,
    };
    eprintln!("{}", listen.banner);
    server
        .run()
        .await
        .map_err(|e| Error::Internal(format!("server stopped: {e}")))
}
