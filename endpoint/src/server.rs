//! Starting the endpoint: check everything that can be checked before
//! listening (destinations, credentials, the key server, the data
//! directory), then serve.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use medseal_capture::keyclient::KeyClient;
use medseal_integrations::Config;
use medseal_integrations::endpoint::REPORTS_PATH;
use medseal_integrations::outbox::{NewReceipt, Outbox, ReceiptRow, Staged};

use crate::account::ServiceAccount;
use crate::error::Error;
use crate::{intake, status, worker};

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8700";

/// The default largest report accepted: 1 GiB.
pub const DEFAULT_MAX_REPORT_BYTES: u64 = 1 << 30;

/// By default a sender may have this many reports waiting here at once…
pub const DEFAULT_SENDER_QUOTA_REPORTS: u64 = 100;

/// …holding at most this many bytes: 4 GiB.
pub const DEFAULT_SENDER_QUOTA_BYTES: u64 = 4 << 30;

/// Roles whose sessions may hand reports over. Auditors read the log and
/// send nothing; a service account is another endpoint forwarding.
pub const SENDER_ROLES: &[&str] = &["clinician", "admin", "service"];

/// What one sender may have waiting at the endpoint at once: reports
/// received and not yet delivered everywhere (refused ones are deleted at
/// once and do not count). Bounds how much of the disk any one sender's
/// session can fill.
#[derive(Debug, Clone, Copy)]
pub struct SenderQuota {
    /// Reports.
    pub reports: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Default for SenderQuota {
    fn default() -> Self {
        SenderQuota {
            reports: DEFAULT_SENDER_QUOTA_REPORTS,
            bytes: DEFAULT_SENDER_QUOTA_BYTES,
        }
    }
}

/// Everything `serve` needs.
pub struct EndpointConfig {
    /// The key server whose reports this endpoint opens.
    pub keyserver: String,
    /// An extra CA certificate (PEM) to trust for the key server.
    pub keyserver_ca: Option<Vec<u8>>,
    /// The service account's credentials file.
    pub credentials: PathBuf,
    /// The destinations file.
    pub destinations: Config,
    /// The destinations every report is forwarded to.
    pub forward: Vec<String>,
    /// Where the outbox and the endpoint's device id live.
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Allow plain HTTP on a non-loopback address (behind a TLS proxy).
    pub allow_plain_http: bool,
    /// Largest report accepted, in bytes.
    pub max_report_bytes: u64,
    /// HTTP workers (0: one per core).
    pub workers: usize,
    /// Organisations whose members may send here (empty: the service
    /// account's own).
    pub accept_orgs: Vec<String>,
    /// What each sender may have waiting here.
    pub sender_quota: SenderQuota,
    /// Origins whose pages (the key server's web app) may send reports
    /// here from a browser, as given to `--allow-origin`; empty: no
    /// cross-origin request is answered as one.
    pub allow_origins: Vec<String>,
}

/// Uploads under way, per sender: `(reports, bytes so far)`.
type Uploading = std::collections::HashMap<String, (u64, u64)>;

/// What the request handlers share.
pub struct Shared {
    /// The service account (also checks senders).
    pub account: ServiceAccount,
    /// Largest report accepted.
    pub max_report_bytes: u64,
    /// Organisations whose members may send here.
    pub accept_orgs: Vec<String>,
    /// What each sender may have waiting here.
    pub sender_quota: SenderQuota,
    /// Uploads under way, per sender: `(reports, bytes so far)`.
    uploading: Mutex<Uploading>,
    forward: Vec<String>,
    intake: Mutex<Outbox>,
    wake: SyncSender<()>,
}

impl Shared {
    fn outbox(&self) -> Result<std::sync::MutexGuard<'_, Outbox>, Error> {
        self.intake
            .lock()
            .map_err(|_| Error::Internal("the intake lock is poisoned".into()))
    }

    /// A new staging file for an upload.
    pub(crate) fn staging(&self) -> Result<Staged, Error> {
        Ok(self.outbox()?.stage()?)
    }

    fn uploading(&self) -> Result<std::sync::MutexGuard<'_, Uploading>, Error> {
        self.uploading
            .lock()
            .map_err(|_| Error::Internal("the upload table lock is poisoned".into()))
    }

    /// Counts an upload by `sender` against its quota, refusing it if the
    /// sender already has as many reports waiting, or uploading, as the
    /// quota allows. The returned guard gives the place back when dropped.
    pub(crate) fn begin_upload(self: &Arc<Self>, sender: &str) -> Result<UploadSlot, Error> {
        // The outbox first, then the table, each lock held alone: the
        // count can miss an upload queued in between, at most one report.
        let (held, held_bytes) = self.outbox()?.held_for(sender)?;
        let mut uploading = self.uploading()?;
        let (n, _) = uploading.get(sender).copied().unwrap_or_default();
        if held + n >= self.sender_quota.reports {
            return Err(Error::QuotaExceeded(format!(
                "{} reports from this sender are already waiting here (the limit); try again once they are delivered",
                held + n
            )));
        }
        uploading.entry(sender.to_owned()).or_default().0 += 1;
        Ok(UploadSlot {
            shared: self.clone(),
            sender: sender.to_owned(),
            held_bytes,
            bytes: 0,
        })
    }

    /// Makes an upload durable, queues it for every forward destination
    /// with its receipt, and wakes the delivery thread. A report sent again
    /// after its forwarding failed is tried again.
    pub(crate) fn queue(
        &self,
        staged: Staged,
        file_name: &str,
        receipt: &str,
        sender: &str,
    ) -> Result<(), Error> {
        // The slow part, outside the lock: other uploads queue meanwhile.
        staged.sync()?;
        {
            let mut outbox = self.outbox()?;
            let (sha256, _) = outbox.queue(
                staged,
                file_name,
                &self.forward,
                Some(NewReceipt {
                    id: receipt,
                    sender,
                }),
            )?;
            outbox.rearm_failed(&sha256)?;
        }
        // A full channel already holds a wake-up.
        let _ = self.wake.try_send(());
        Ok(())
    }

    /// A receipt and its deliveries.
    pub(crate) fn receipt(&self, id: &str) -> Result<Option<ReceiptRow>, Error> {
        Ok(self.outbox()?.receipt(id)?)
    }
}

/// One upload's place in its sender's quota; see [`Shared::begin_upload`].
pub(crate) struct UploadSlot {
    shared: Arc<Shared>,
    sender: String,
    /// What the sender had waiting here (queued) when this upload began.
    held_bytes: u64,
    bytes: u64,
}

impl UploadSlot {
    /// Counts `n` more bytes, refusing them past the sender's byte quota:
    /// what was held when this upload began plus every upload of this
    /// sender under way now, this one included.
    pub(crate) fn grow(&mut self, n: u64) -> Result<(), Error> {
        let quota = self.shared.sender_quota.bytes;
        let mut up = self.shared.uploading()?;
        let entry = up.entry(self.sender.clone()).or_default();
        if self.held_bytes + entry.1 + n > quota {
            return Err(Error::QuotaExceeded(format!(
                "this sender's reports waiting here would pass {quota} bytes (the limit); try again once they are delivered"
            )));
        }
        entry.1 += n;
        self.bytes += n;
        Ok(())
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if let Ok(mut up) = self.shared.uploading()
            && let Some(e) = up.get_mut(&self.sender)
        {
            e.0 = e.0.saturating_sub(1);
            e.1 = e.1.saturating_sub(self.bytes);
            if e.0 == 0 {
                up.remove(&self.sender);
            }
        }
    }
}

fn private_dir(path: &Path) -> Result<(), Error> {
    medseal_files::private_dir(path).map_err(|e| Error::Startup(format!("cannot create {e}")))
}

/// The endpoint's device id, made on first start and kept in the data
/// directory: the key server binds the service account's sessions to it.
fn device_id(data_dir: &Path) -> Result<String, Error> {
    let path = data_dir.join("device-id");
    medseal_capture::keyclient::device_id_at(&path, "endpoint")
        .map_err(|e| Error::Startup(format!("{}: {e}", path.display())))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> Result<HttpResponse, Error> {
    Err(Error::NotFound)
}

/// Runs the endpoint until it is stopped. Blocks.
pub fn serve(mut cfg: EndpointConfig) -> Result<(), Error> {
    if !cfg.listen.ip().is_loopback() && !cfg.allow_plain_http {
        return Err(Error::Startup(format!(
            "refusing plain HTTP on {}: serve behind a TLS-terminating proxy and give --allow-plain-http",
            cfg.listen
        )));
    }
    if cfg.forward.is_empty() {
        return Err(Error::Startup(
            "give at least one --forward destination".into(),
        ));
    }
    let allow_origins = crate::cors::AllowedOrigins::parse(&cfg.allow_origins)?;
    for name in &cfg.forward {
        cfg.destinations
            .build(name)
            .map_err(|e| Error::Startup(format!("destination {name}: {e}")))?;
    }
    private_dir(&cfg.data_dir)?;
    let outbox_dir = cfg.data_dir.join("outbox");
    let open = || {
        Outbox::open(&outbox_dir)
            .map_err(|e| Error::Startup(format!("cannot open the outbox: {e}")))
    };
    let mut delivering = open()?;
    let lock = delivering
        .lock(|| {
            eprintln!(
                "medseal endpoint: another endpoint is delivering from {}; waiting for it to stop…",
                outbox_dir.display()
            )
        })
        .map_err(|e| Error::Startup(e.to_string()))?;
    let client = KeyClient::new(
        &cfg.keyserver,
        &device_id(&cfg.data_dir)?,
        cfg.keyserver_ca.as_deref(),
    )
    .map_err(|e| Error::Startup(e.to_string()))?;
    let account = ServiceAccount::login(client, &cfg.credentials)?;
    // The endpoint's own loop waits for arrivals and retries; the outbox's
    // in-process linger is for a command that wants to finish.
    cfg.destinations.outbox.wait_in_process_seconds = 0.0;
    let (wake, woken) = sync_channel(1);
    let accept_orgs = if cfg.accept_orgs.is_empty() {
        vec![account.org().to_owned()]
    } else {
        cfg.accept_orgs.clone()
    };
    let shared = Arc::new(Shared {
        account,
        max_report_bytes: cfg.max_report_bytes,
        accept_orgs,
        sender_quota: cfg.sender_quota,
        uploading: Mutex::new(Default::default()),
        forward: cfg.forward.clone(),
        intake: Mutex::new(open()?),
        wake,
    });
    let for_worker = shared.clone();
    let destinations = cfg.destinations.clone();
    std::thread::Builder::new()
        .name("deliveries".into())
        .spawn(move || worker::run(delivering, lock, destinations, for_worker, woken))
        .map_err(|e| Error::Startup(format!("cannot start the delivery thread: {e}")))?;
    let cors_note = match allow_origins.list() {
        [] => String::new(),
        list => format!("; answering browsers of {}", list.join(", ")),
    };
    let banner = format!(
        "medseal endpoint listening on http://{}{}; opening reports of {} as {}; accepting senders of {}{cors_note}; forwarding to {}; data in {}",
        cfg.listen,
        if cfg.listen.ip().is_loopback() {
            " (loopback)"
        } else {
            " (plain HTTP: only behind a TLS-terminating proxy)"
        },
        shared.account.origin(),
        shared.account.email(),
        shared.accept_orgs.join(", "),
        cfg.forward.join(", "),
        cfg.data_dir.display()
    );
    let workers = match cfg.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let data = web::Data::new(shared);
    let origins = web::Data::new(allow_origins);
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(origins.clone())
                .wrap(actix_web::middleware::from_fn(crate::cors::cors))
                .app_data(web::PathConfig::default().error_handler(|_, _| Error::NotFound.into()))
                .route(REPORTS_PATH, web::post().to(intake::post_report))
                .route(
                    &format!("{REPORTS_PATH}/{{id}}"),
                    web::get().to(status::get_report),
                )
                .route("/healthz", web::get().to(healthz))
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(5))
        .shutdown_timeout(10)
        .bind(cfg.listen)
        .map_err(|e| Error::Startup(format!("cannot listen on {}: {e}", cfg.listen)))?;
        eprintln!("{banner}");
        server
            .run()
            .await
            .map_err(|e| Error::Startup(format!("server stopped: {e}")))
    })
}
