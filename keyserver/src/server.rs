//! Starting the key server: store, keyring, audit writer, HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use crate::accounts::SessionPolicy;
use crate::audit::AuditLog;
use crate::db;
use crate::error::{Error, Result};
use crate::http::limiter::LoginLimiter;
use crate::http::{AppState, Listen, TlsFiles};
use crate::keyring::SharedKeyring;
use crate::metrics::Metrics;
use crate::store::Store;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8600";

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the state lives.
    pub store: Store,
    /// Whether this start creates the store (said in the start-up line).
    pub new_store: bool,
    /// Listen address.
    pub listen: SocketAddr,
    /// HTTPS certificate and key.
    pub tls: Option<TlsFiles>,
    /// Allow plain HTTP on a non-loopback address (e.g. behind a TLS proxy).
    pub allow_plain_http: bool,
    /// Trusted proxies in front of the server, each appending to
    /// `X-Forwarded-For` (0: take the TCP peer).
    pub proxy_hops: usize,
    /// HTTP workers (0: one per core).
    pub workers: usize,
    /// Database connections in the pool (0: by backend and cores).
    pub pool_size: u32,
    /// Session and lockout settings.
    pub sessions: SessionPolicy,
    /// Login attempts per client address per minute.
    pub logins_per_minute: u32,
    /// Where every decision reads the time (tests move a manual one).
    pub clock: Arc<dyn crate::time::Clock>,
    /// Who may read `/metrics`.
    pub metrics_access: crate::http::MetricsAccess,
    /// The address people reach the server at, for the links it hands out
    /// (share links, mail); default: the listen address.
    pub public_url: Option<String>,
    /// Largest share link, in bytes.
    pub drop_max_bytes: u64,
    /// How sign-in codes are mailed (`None`: codes are not offered).
    pub mail: Option<crate::signin::mail::MailSettings>,
}

impl ServeConfig {
    /// Defaults for a store.
    pub fn new(store: Store) -> Result<Self> {
        Ok(ServeConfig {
            store,
            listen: DEFAULT_LISTEN
                .parse()
                .map_err(|_| Error::Internal("bad default address".into()))?,
            tls: None,
            allow_plain_http: false,
            proxy_hops: 0,
            workers: 0,
            pool_size: 6,
            sessions: SessionPolicy::default(),
            logins_per_minute: 30,
            clock: Arc::new(crate::time::SystemClock),
            metrics_access: Default::default(),
            public_url: None,
            drop_max_bytes: crate::drops::DEFAULT_MAX_BYTES,
            mail: None,
            new_store: false,
        })
    }
}

/// Opens everything a server answers from: keyring, database pool, audit
/// writer, metrics and login limiter. Returns the state and the pool size.
/// `serve` runs it behind a listener; the HTTP fuzz target runs it
/// in-process.
pub fn app_state(cfg: &ServeConfig) -> Result<(web::Data<AppState>, u32)> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    // SQLite reads are local and fast: a few connections per core keep the
    // cores busy without queueing on locks. PostgreSQL requests wait on the
    // network, so more of them are in flight at once.
    let pool_size = match (cfg.pool_size, &cfg.store.location) {
        (0, db::Location::Sqlite(_)) => 2 * cores,
        (0, db::Location::Postgres(_)) => 8 * cores,
        (n, _) => n,
    };
    let pool = db::open_pool(&cfg.store.location, pool_size)?;
    let ring = cfg.store.open_for_writing(&mut *pool.get()?)?;
    let keyring = Arc::new(SharedKeyring::new(ring, cfg.store.keyring.clone()));
    let metrics = Arc::new(Metrics::new().map_err(|e| Error::Internal(e.to_string()))?);
    let clock = cfg.clock.clone();
    let audit = AuditLog::start(
        &cfg.store.location,
        keyring.clone(),
        metrics.clone(),
        clock.clone(),
    )?;
    // Build the Merkle tree for receipts and proofs now, in the background,
    // rather than on the first request that needs it.
    let (tree, loc) = (audit.tree.clone(), cfg.store.location.clone());
    let _ = std::thread::Builder::new()
        .name("audit-tree".into())
        .spawn(move || {
            let warm = db::connect(&loc).and_then(|mut c| {
                let head = crate::audit::latest_checkpoint(&mut c)?.map_or(0, |cp| cp.size);
                tree.with_size(|| Ok(&mut c), head, |_| ())
            });
            if let Err(e) = warm {
                tracing::warn!(error = %e, "cannot build the audit tree yet; it is built on first use");
            }
        });
    let public_url = cfg.public_url.clone().unwrap_or_else(|| {
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", cfg.listen)
    });
    let state = web::Data::new(AppState {
        pool,
        keyring,
        audit,
        metrics,
        clock,
        sessions: cfg.sessions.clone(),
        limiter: LoginLimiter::new(cfg.logins_per_minute, Duration::from_secs(60)),
        proxy_hops: cfg.proxy_hops,
        inline_db: matches!(cfg.store.location, db::Location::Sqlite(_)),
        metrics_access: cfg.metrics_access.clone(),
        public_origin: crate::http::drops::origin_of(&public_url).to_owned(),
        public_url,
        drop_max_bytes: cfg.drop_max_bytes,
        mailer: match &cfg.mail {
            Some(m) => Some(Arc::new(crate::signin::mail::Mailer::new(m)?)),
            None => None,
        },
        audit_status: Default::default(),
        csp: Default::default(),
    });
    Ok((state, pool_size))
}

/// Runs the key server until it is stopped. Blocks.
pub fn serve(cfg: ServeConfig) -> Result<()> {
    if cfg.tls.is_none() && !cfg.listen.ip().is_loopback() && !cfg.allow_plain_http {
        return Err(Error::Invalid(format!(
            "refusing plain HTTP on {}: give --tls-cert and --tls-key, or --allow-plain-http behind a TLS proxy",
            cfg.listen
        )));
    }
    if let Some(m) = cfg.metrics_access.listen {
        // The metrics listener is told apart by its address: it must be a
        // fixed one, and not the main one.
        if m.port() == 0 || m == cfg.listen {
            return Err(Error::Invalid(format!(
                "--metrics-listen {m}: give a fixed port other than --listen's"
            )));
        }
    }
    if cfg.public_url.is_none() && cfg.listen.ip().is_unspecified() {
        eprintln!(
            "warning: share links will name {}, which nobody can reach; give --public-url",
            cfg.listen
        );
    }
    let (state, pool_size) = app_state(&cfg)?;
    let workers = if cfg.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        cfg.workers
    };
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let note = match (&cfg.tls, cfg.listen.ip().is_loopback()) {
        (Some(_), _) => String::new(),
        (None, true) => {
            " (plain HTTP on loopback only; use --tls-cert/--tls-key to serve HTTPS)".into()
        }
        (None, false) => " (plain HTTP: only behind a TLS-terminating proxy)".into(),
    };
    let created = if cfg.new_store {
        " (a new, empty store was created: add an organisation with `medseal keyserver org add`)"
    } else {
        ""
    };
    let banner = format!(
        "medseal key server listening on {scheme}://{}{note}; data in {}{created}",
        cfg.listen,
        cfg.store.location.describe()
    );
    let listen = Listen {
        addr: cfg.listen,
        tls: cfg.tls.clone(),
        workers,
        blocking_threads: (pool_size as usize / workers).max(2),
        client_request_timeout: Duration::from_secs(10),
        metrics: cfg.metrics_access.listen,
        banner,
    };
    actix_web::rt::System::new().block_on(crate::http::run(state, listen))
}
