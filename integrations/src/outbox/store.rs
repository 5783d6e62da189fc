//! The outbox's storage: `outbox.sqlite3` (WAL, synchronous=FULL) and the
//! queued sealed files under `reports/`, all private to the user.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::destination::Receipt;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

mod schema {
    diesel::table! {
        parcels (sha256) {
            sha256 -> Text,
            file_name -> Text,
            size -> BigInt,
            created_at -> BigInt,
        }
    }
    diesel::table! {
        deliveries (id) {
            id -> BigInt,
            sha256 -> Text,
            destination -> Text,
            idempotency_key -> Text,
            state -> Text,
            attempts -> Integer,
            next_attempt_at -> BigInt,
            last_error -> Nullable<Text>,
            receipt -> Nullable<Text>,
            created_at -> BigInt,
            updated_at -> BigInt,
        }
    }
    diesel::table! {
        receipts (id) {
            id -> Text,
            sha256 -> Text,
            sender -> Text,
            received_at -> BigInt,
        }
    }
    diesel::joinable!(deliveries -> parcels (sha256));
    diesel::joinable!(receipts -> parcels (sha256));
    diesel::allow_tables_to_appear_in_same_query!(parcels, deliveries, receipts);
}

use schema::{deliveries, parcels, receipts};

/// The outbox cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A file or directory operation failed.
    #[error("outbox {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("outbox database: {0}")]
    Db(String),
    /// No such delivery.
    #[error("no delivery {0} in the outbox")]
    NoSuchDelivery(i64),
}

impl From<diesel::result::Error> for OutboxError {
    fn from(e: diesel::result::Error) -> Self {
        OutboxError::Db(e.to_string())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt is (or was, if the process died) under way.
    Sending,
    /// The destination gave a receipt.
    Delivered,
    /// Given up: a permanent refusal or too many attempts. `outbox retry`
    /// puts it back in the queue.
    Failed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sending => "sending",
            State::Delivered => "delivered",
            State::Failed => "failed",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "sending" => State::Sending,
            "delivered" => State::Delivered,
            "failed" => State::Failed,
            _ => State::Pending,
        }
    }
}

/// One delivery, as `outbox list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    /// Its number.
    pub id: i64,
    /// The sealed file's SHA-256.
    pub sha256: String,
    /// The sealed file's name.
    pub file_name: String,
    /// Its size.
    pub size: u64,
    /// The destination's name in the configuration.
    pub destination: String,
    /// The idempotency key sent with every attempt.
    pub idempotency_key: String,
    /// Where it stands.
    pub state: State,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch), if pending.
    pub next_attempt_at: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// The receipt, once delivered.
    pub receipt: Option<Receipt>,
    /// When it was queued (ms since the epoch).
    pub created_at: i64,
    /// When it last changed (ms since the epoch).
    pub updated_at: i64,
}

type RowTuple = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    String,
    i32,
    i64,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

/// The columns of a [`DeliveryRow`], in [`RowTuple`] order.
macro_rules! row_columns {
    () => {
        (
            deliveries::id,
            deliveries::sha256,
            parcels::file_name,
            parcels::size,
            deliveries::destination,
            deliveries::idempotency_key,
            deliveries::state,
            deliveries::attempts,
            deliveries::next_attempt_at,
            deliveries::last_error,
            deliveries::receipt,
            deliveries::created_at,
            deliveries::updated_at,
        )
    };
}

/// Deliveries joined with their parcels, boxed so a filter can be chosen
/// at run time.
type RowQuery = diesel::dsl::IntoBoxed<
    'static,
    diesel::dsl::InnerJoin<deliveries::table, parcels::table>,
    diesel::sqlite::Sqlite,
>;

fn row(
    (
        id,
        sha256,
        file_name,
        size,
        destination,
        idempotency_key,
        state,
        attempts,
        next,
        last_error,
        receipt,
        created_at,
        updated_at,
    ): RowTuple,
) -> DeliveryRow {
    let state = State::parse(&state);
    DeliveryRow {
        id,
        sha256,
        file_name,
        size: size.max(0) as u64,
        destination,
        idempotency_key,
        state,
        attempts: attempts.max(0) as u32,
        next_attempt_at: (state == State::Pending).then_some(next),
        last_error,
        receipt: receipt.and_then(|r| serde_json::from_str(&r).ok()),
        created_at,
        updated_at,
    }
}

/// A sealed file on its way into the outbox (see [`Outbox::stage`]).
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    reports: PathBuf,
}

impl Staged {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), OutboxError> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.tmp.write_all(bytes).map_err(io(&self.reports))
    }

    /// Bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Syncs what was written to disk; [`Outbox::queue`] does it too, but
    /// a receiver syncs first, outside any lock it holds around the queue.
    pub fn sync(&self) -> Result<(), OutboxError> {
        self.tmp.as_file().sync_all().map_err(io(&self.reports))
    }

    /// The file written so far, to read back (its header) before queueing.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The SHA-256 of what was written so far, hex: the name the outbox
    /// keeps the file under once queued.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

/// The receipt for a report handed over by a sender.
pub struct NewReceipt<'a> {
    /// The id given to the sender.
    pub id: &'a str,
    /// Who the sender is.
    pub sender: &'a str,
}

/// A receipt and where its report stands.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptRow {
    /// The id given to the sender.
    pub id: String,
    /// The sealed file's SHA-256.
    pub sha256: String,
    /// Who the sender is.
    pub sender: String,
    /// When it was received (ms since the epoch).
    pub received_at: i64,
    /// Its deliveries.
    pub deliveries: Vec<DeliveryRow>,
}

/// How files being received into `reports/` are named until queued.
const INCOMING_PREFIX: &str = ".incoming-";

/// Now, in UTC milliseconds (medseal's one clock).
pub use medseal_format::clock::now_ms;

/// The idempotency key of a delivery: derived from the sealed file and the
/// destination's name, so the same report to the same destination always
/// presents the same key — even from a rebuilt outbox.
pub fn idempotency_key(sha256: &str, destination: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"medseal idempotency v1\0");
    h.update(sha256.as_bytes());
    h.update([0]);
    h.update(destination.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The outbox in one directory.
pub struct Outbox {
    dir: PathBuf,
    conn: SqliteConnection,
}

/// Held while delivering: only one process sends from an outbox at a time.
pub struct OutboxLock {
    _file: File,
}

impl From<medseal_files::FileError> for OutboxError {
    fn from(e: medseal_files::FileError) -> Self {
        OutboxError::Io {
            path: e.path.display().to_string(),
            source: e.source,
        }
    }
}

fn private_dir(path: &Path) -> Result<(), OutboxError> {
    Ok(medseal_files::private_dir(path)?)
}

fn sync_dir(path: &Path) -> Result<(), OutboxError> {
    Ok(medseal_files::sync_dir(path)?)
}

impl Outbox {
    /// Opens (creating if needed) the outbox in `dir`.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        private_dir(&dir.join("reports"))?;
        private_dir(&dir.join("uploads"))?;
        let db = dir.join("outbox.sqlite3");
        medseal_files::sqlite::prepare_file(&db)?;
        let url = db
            .to_str()
            .ok_or_else(|| OutboxError::Db("the outbox path is not UTF-8".into()))?;
        let mut conn =
            SqliteConnection::establish(url).map_err(|e| OutboxError::Db(e.to_string()))?;
        medseal_files::sqlite::configure(&mut conn)?;
        // Migrating needs a lock that SQLite does not wait for through the
        // busy handler; two processes opening a new outbox at once retry
        // here instead of failing.
        let deadline = std::time::Instant::now() + medseal_files::sqlite::BUSY_TIMEOUT;
        loop {
            let setup = (|| -> Result<(), OutboxError> {
                // Under the write lock: two processes opening a new outbox
                // must not both see the migration pending and both run it.
                conn.immediate_transaction(|c| {
                    c.run_pending_migrations(MIGRATIONS)
                        .map(|_| ())
                        .map_err(|e| OutboxError::Db(e.to_string()))
                })?;
                Ok(())
            })();
            match setup {
                Err(OutboxError::Db(m))
                    if m.contains("locked") && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        }
        Ok(Outbox {
            dir: dir.to_path_buf(),
            conn,
        })
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits for the delivery lock (`waiting` is called first if another
    /// process holds it), then puts deliveries left `sending` by a process
    /// that died back in the queue.
    pub fn lock(&mut self, waiting: impl FnOnce()) -> Result<OutboxLock, OutboxError> {
        let path = self.dir.join("deliver.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting();
                file.lock().map_err(io(&path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        let now = now_ms();
        diesel::update(deliveries::table.filter(deliveries::state.eq(State::Sending.as_str())))
            .set((
                deliveries::state.eq(State::Pending.as_str()),
                deliveries::next_attempt_at.eq(now),
                deliveries::last_error
                    .eq("interrupted: the sending process stopped before it finished"),
                deliveries::updated_at.eq(now),
            ))
            .execute(&mut self.conn)?;
        // Files half-received by a process that died: whoever stages does
        // so while holding this lock (or, in an endpoint, after taking it),
        // so none of these is still being written.
        let reports = self.dir.join("reports");
        for entry in std::fs::read_dir(&reports).map_err(io(&reports))?.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(INCOMING_PREFIX)
            {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(OutboxLock { _file: file })
    }

    /// Where the queued copy of a sealed file lives.
    pub fn blob(&self, sha256: &str) -> PathBuf {
        self.dir.join("reports").join(format!("{sha256}.mseal"))
    }

    /// Where destinations keep what resumes an interrupted upload
    /// ([`Parcel::scratch`](crate::Parcel::scratch)).
    pub fn scratch(&self) -> PathBuf {
        self.dir.join("uploads")
    }

    /// Starts receiving a sealed file into the outbox: bytes written to the
    /// returned [`Staged`] land in a private temporary file beside the
    /// queued reports, hashed on the way. Nothing is queued until
    /// [`Outbox::queue`]; a `Staged` dropped before that leaves nothing.
    pub fn stage(&self) -> Result<Staged, OutboxError> {
        let reports = self.dir.join("reports");
        let tmp = tempfile::Builder::new()
            .prefix(INCOMING_PREFIX)
            .tempfile_in(&reports)
            .map_err(io(&reports))?;
        Ok(Staged {
            tmp,
            hasher: Sha256::new(),
            size: 0,
            reports,
        })
    }

    /// Copies `sealed` into the outbox (synced to disk) and queues one
    /// delivery per destination. Returns every delivery of the file to those
    /// destinations, new or already queued (a second `send` of the same file
    /// to the same destination does not queue it twice).
    pub fn enqueue(
        &mut self,
        _lock: &OutboxLock,
        sealed: &Path,
        file_name: &str,
        destinations: &[String],
    ) -> Result<Vec<DeliveryRow>, OutboxError> {
        let mut staged = self.stage()?;
        let mut src = File::open(sealed).map_err(io(sealed))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = std::io::Read::read(&mut src, &mut buf).map_err(io(sealed))?;
            if n == 0 {
                break;
            }
            staged.write(&buf[..n])?;
        }
        Ok(self.queue(staged, file_name, destinations, None)?.1)
    }

    /// Makes a staged file durable (synced, renamed under its hash, the
    /// directory synced) and queues one delivery per destination, with the
    /// receipt handed to whoever gave it, if any, in the same transaction.
    /// Queueing needs no delivery lock: only delivering does. Returns the
    /// file's SHA-256 and its deliveries to `destinations`.
    pub fn queue(
        &mut self,
        staged: Staged,
        file_name: &str,
        destinations: &[String],
        receipt: Option<NewReceipt<'_>>,
    ) -> Result<(String, Vec<DeliveryRow>), OutboxError> {
        let Staged {
            tmp,
            hasher,
            size,
            reports,
        } = staged;
        let sha256 = hex::encode(hasher.finalize());
        let blob = self.blob(&sha256);
        if !blob.exists() {
            tmp.as_file().sync_all().map_err(io(&reports))?;
            tmp.persist(&blob).map_err(|e| io(&blob)(e.error))?;
            sync_dir(&reports)?;
        }
        let now = now_ms();
        self.conn.immediate_transaction(|c| {
            diesel::insert_or_ignore_into(parcels::table)
                .values((
                    parcels::sha256.eq(&sha256),
                    parcels::file_name.eq(file_name),
                    parcels::size.eq(size as i64),
                    parcels::created_at.eq(now),
                ))
                .execute(c)?;
            let existing: Vec<String> = deliveries::table
                .filter(deliveries::sha256.eq(&sha256))
                .select(deliveries::destination)
                .load(c)?;
            for d in destinations.iter().filter(|d| !existing.contains(d)) {
                diesel::insert_into(deliveries::table)
                    .values((
                        deliveries::sha256.eq(&sha256),
                        deliveries::destination.eq(d),
                        deliveries::idempotency_key.eq(idempotency_key(&sha256, d)),
                        deliveries::state.eq(State::Pending.as_str()),
                        deliveries::attempts.eq(0),
                        deliveries::next_attempt_at.eq(now),
                        deliveries::created_at.eq(now),
                        deliveries::updated_at.eq(now),
                    ))
                    .execute(c)?;
            }
            if let Some(r) = &receipt {
                diesel::insert_into(receipts::table)
                    .values((
                        receipts::id.eq(r.id),
                        receipts::sha256.eq(&sha256),
                        receipts::sender.eq(r.sender),
                        receipts::received_at.eq(now),
                    ))
                    .execute(c)?;
            }
            Ok::<_, diesel::result::Error>(())
        })?;
        let rows = self.of_parcel(&sha256)?;
        let rows = rows
            .into_iter()
            .filter(|r| destinations.contains(&r.destination))
            .collect();
        Ok((sha256, rows))
    }

    /// The deliveries `filter` keeps, oldest first, in one query.
    fn select(
        &mut self,
        filter: impl FnOnce(RowQuery) -> RowQuery,
    ) -> Result<Vec<DeliveryRow>, OutboxError> {
        let rows: Vec<RowTuple> = filter(deliveries::table.inner_join(parcels::table).into_boxed())
            .select(row_columns!())
            .order(deliveries::id.asc())
            .load(&mut self.conn)?;
        Ok(rows.into_iter().map(row).collect())
    }

    /// Every delivery, oldest first.
    pub fn list(&mut self) -> Result<Vec<DeliveryRow>, OutboxError> {
        self.select(|q| q)
    }

    /// Deliveries waiting for an attempt due by `now` (of `only`, if
    /// given), oldest first. A query, not a scan: a gateway's outbox keeps
    /// every delivered row.
    pub fn due(&mut self, now: i64, only: Option<&[i64]>) -> Result<Vec<DeliveryRow>, OutboxError> {
        let only = only.map(<[i64]>::to_vec);
        self.select(move |q| {
            let q = q
                .filter(deliveries::state.eq(State::Pending.as_str()))
                .filter(deliveries::next_attempt_at.le(now));
            match only {
                Some(ids) => q.filter(deliveries::id.eq_any(ids)),
                None => q,
            }
        })
    }

    /// When the next pending delivery (of `only`, if given) is due.
    pub fn next_due(&mut self, only: Option<&[i64]>) -> Result<Option<i64>, OutboxError> {
        let mut q = deliveries::table
            .filter(deliveries::state.eq(State::Pending.as_str()))
            .select(diesel::dsl::min(deliveries::next_attempt_at))
            .into_boxed();
        if let Some(ids) = only {
            q = q.filter(deliveries::id.eq_any(ids.to_vec()));
        }
        Ok(q.first(&mut self.conn)?)
    }

    /// How many deliveries (of `only`, if given) are in each state.
    pub fn counts(&mut self, only: Option<&[i64]>) -> Result<Vec<(State, usize)>, OutboxError> {
        let mut q = deliveries::table
            .group_by(deliveries::state)
            .select((deliveries::state, diesel::dsl::count_star()))
            .into_boxed();
        if let Some(ids) = only {
            q = q.filter(deliveries::id.eq_any(ids.to_vec()));
        }
        let rows: Vec<(String, i64)> = q.load(&mut self.conn)?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (State::parse(&s), n.max(0) as usize))
            .collect())
    }

    /// The deliveries of one sealed file.
    pub fn of_parcel(&mut self, sha256: &str) -> Result<Vec<DeliveryRow>, OutboxError> {
        let sha = sha256.to_owned();
        self.select(move |q| q.filter(deliveries::sha256.eq(sha)))
    }

    /// One delivery.
    pub fn get(&mut self, id: i64) -> Result<DeliveryRow, OutboxError> {
        self.select(move |q| q.filter(deliveries::id.eq(id)))?
            .pop()
            .ok_or(OutboxError::NoSuchDelivery(id))
    }

    /// A receipt handed out by [`Outbox::queue`], with where its report's
    /// deliveries stand; `None` if there is no such receipt.
    pub fn receipt(&mut self, id: &str) -> Result<Option<ReceiptRow>, OutboxError> {
        let found: Option<(String, String, String, i64)> = receipts::table
            .filter(receipts::id.eq(id))
            .select((
                receipts::id,
                receipts::sha256,
                receipts::sender,
                receipts::received_at,
            ))
            .first(&mut self.conn)
            .optional()?;
        let Some((id, sha256, sender, received_at)) = found else {
            return Ok(None);
        };
        let deliveries = self.of_parcel(&sha256)?;
        Ok(Some(ReceiptRow {
            id,
            sha256,
            sender,
            received_at,
            deliveries,
        }))
    }

    /// Marks an attempt as begun (committed before any network I/O).
    pub fn begin_attempt(&mut self, _lock: &OutboxLock, id: i64) -> Result<(), OutboxError> {
        let now = now_ms();
        diesel::update(deliveries::table.find(id))
            .set((
                deliveries::state.eq(State::Sending.as_str()),
                deliveries::attempts.eq(deliveries::attempts + 1),
                deliveries::updated_at.eq(now),
            ))
            .execute(&mut self.conn)?;
        Ok(())
    }

    /// Records a receipt. When every delivery of the file has one, the
    /// queued copy is deleted.
    pub fn delivered(
        &mut self,
        _lock: &OutboxLock,
        id: i64,
        receipt: &Receipt,
    ) -> Result<(), OutboxError> {
        let now = now_ms();
        let json = serde_json::to_string(receipt).map_err(|e| OutboxError::Db(e.to_string()))?;
        diesel::update(deliveries::table.find(id))
            .set((
                deliveries::state.eq(State::Delivered.as_str()),
                deliveries::receipt.eq(json),
                deliveries::last_error.eq(None::<String>),
                deliveries::updated_at.eq(now),
            ))
            .execute(&mut self.conn)?;
        let sha: String = deliveries::table
            .find(id)
            .select(deliveries::sha256)
            .first(&mut self.conn)?;
        let open: i64 = deliveries::table
            .filter(deliveries::sha256.eq(&sha))
            .filter(deliveries::state.ne(State::Delivered.as_str()))
            .count()
            .get_result(&mut self.conn)?;
        if open == 0 {
            let blob = self.blob(&sha);
            match std::fs::remove_file(&blob) {
                Ok(()) => sync_dir(&self.dir.join("reports"))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&blob)(e)),
            }
        }
        Ok(())
    }

    /// Gives up every delivery of one sealed file not yet made, with
    /// `error`, and deletes the queued copy: the file itself was refused
    /// (it does not open, or may not be opened), so no destination will
    /// ever take it and keeping it would only fill the disk. Handed over
    /// again, it is queued afresh.
    pub fn discard(
        &mut self,
        _lock: &OutboxLock,
        sha256: &str,
        error: &str,
    ) -> Result<(), OutboxError> {
        let now = now_ms();
        diesel::update(
            deliveries::table
                .filter(deliveries::sha256.eq(sha256))
                .filter(deliveries::state.ne(State::Delivered.as_str())),
        )
        .set((
            deliveries::state.eq(State::Failed.as_str()),
            deliveries::next_attempt_at.eq(now),
            deliveries::last_error.eq(error),
            deliveries::updated_at.eq(now),
        ))
        .execute(&mut self.conn)?;
        let blob = self.blob(sha256);
        match std::fs::remove_file(&blob) {
            Ok(()) => sync_dir(&self.dir.join("reports")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&blob)(e)),
        }
    }

    /// What `sender` has handed over that is still held here: `(reports,
    /// bytes)` of the distinct sealed files with a delivery not yet made —
    /// waiting, being sent, or given up (a given-up file keeps its copy
    /// for `retry`; one refused for itself is deleted and not counted). A
    /// receiving endpoint bounds it per sender so that no one sender can
    /// fill its disk.
    pub fn held_for(&mut self, sender: &str) -> Result<(u64, u64), OutboxError> {
        let held = deliveries::table
            .filter(deliveries::state.ne(State::Delivered.as_str()))
            .select(deliveries::sha256);
        let files: Vec<(String, i64)> = receipts::table
            .inner_join(parcels::table)
            .filter(receipts::sender.eq(sender))
            .filter(receipts::sha256.eq_any(held))
            .select((parcels::sha256, parcels::size))
            .distinct()
            .load(&mut self.conn)?;
        let files: Vec<(String, i64)> = files
            .into_iter()
            .filter(|(sha, _)| self.blob(sha).exists())
            .collect();
        Ok((
            files.len() as u64,
            files.iter().map(|(_, s)| (*s).max(0) as u64).sum(),
        ))
    }

    /// Records a failure: back in the queue at `retry_at`, or given up.
    pub fn failed(
        &mut self,
        _lock: &OutboxLock,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), OutboxError> {
        let now = now_ms();
        let (state, next) = match retry_at {
            Some(t) => (State::Pending, t),
            None => (State::Failed, now),
        };
        diesel::update(deliveries::table.find(id))
            .set((
                deliveries::state.eq(state.as_str()),
                deliveries::next_attempt_at.eq(next),
                deliveries::last_error.eq(error),
                deliveries::updated_at.eq(now),
            ))
            .execute(&mut self.conn)?;
        Ok(())
    }

    /// Puts the failed deliveries of one sealed file back in the queue, due
    /// now, with a fresh attempt budget: the file was handed over again.
    /// Only `failed` rows change, in one statement, so a delivery under way
    /// is never disturbed and no lock is needed.
    pub fn rearm_failed(&mut self, sha256: &str) -> Result<usize, OutboxError> {
        let now = now_ms();
        Ok(diesel::update(
            deliveries::table
                .filter(deliveries::sha256.eq(sha256))
                .filter(deliveries::state.eq(State::Failed.as_str())),
        )
        .set((
            deliveries::state.eq(State::Pending.as_str()),
            deliveries::attempts.eq(0),
            deliveries::next_attempt_at.eq(now),
            deliveries::updated_at.eq(now),
        ))
        .execute(&mut self.conn)?)
    }

    /// Puts failed (and pending) deliveries back in the queue, due now,
    /// with a fresh attempt budget. `ids` empty means every one not yet
    /// delivered. Returns the ids re-armed.
    pub fn rearm(&mut self, _lock: &OutboxLock, ids: &[i64]) -> Result<Vec<i64>, OutboxError> {
        let all = self.list()?;
        if let Some(missing) = ids.iter().find(|id| !all.iter().any(|r| r.id == **id)) {
            return Err(OutboxError::NoSuchDelivery(*missing));
        }
        let targets: Vec<i64> = all
            .iter()
            .filter(|r| r.state != State::Delivered && (ids.is_empty() || ids.contains(&r.id)))
            .map(|r| r.id)
            .collect();
        let now = now_ms();
        diesel::update(deliveries::table.filter(deliveries::id.eq_any(&targets)))
            .set((
                deliveries::state.eq(State::Pending.as_str()),
                deliveries::attempts.eq(0),
                deliveries::next_attempt_at.eq(now),
                deliveries::updated_at.eq(now),
            ))
            .execute(&mut self.conn)?;
        Ok(targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a sender holds counts every distinct file still here, however
    /// alike their sizes, given up or not.
    #[test]
    fn a_senders_held_reports_are_counted_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let lock = outbox.lock(|| {}).unwrap();
        let dests = ["d".to_owned()];
        let mut shas = Vec::new();
        for (i, id) in ["rcpt_a", "rcpt_b", "rcpt_c"].iter().enumerate() {
            let mut staged = outbox.stage().unwrap();
            staged.write(&[i as u8; 1000]).unwrap();
            let (sha, _) = outbox
                .queue(
                    staged,
                    "r.mseal",
                    &dests,
                    Some(NewReceipt { id, sender: "s@x" }),
                )
                .unwrap();
            shas.push(sha);
        }
        assert_eq!(outbox.held_for("s@x").unwrap(), (3, 3000));
        assert_eq!(outbox.held_for("t@x").unwrap(), (0, 0));
        // Given up, the file is still here: still counted.
        let rows = outbox.of_parcel(&shas[0]).unwrap();
        outbox.failed(&lock, rows[0].id, "no", None).unwrap();
        assert_eq!(outbox.held_for("s@x").unwrap(), (3, 3000));
        // Refused for itself, deleted: no longer counted.
        outbox.discard(&lock, &shas[1], "tampered").unwrap();
        assert_eq!(outbox.held_for("s@x").unwrap(), (2, 2000));
    }

    /// A file half-received when its process died is removed by the next
    /// process to take the delivery lock; a file being received now is not
    /// disturbed by readers.
    #[test]
    fn half_received_files_are_cleared_at_the_next_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let mut staged = outbox.stage().unwrap();
        staged.write(b"half a report").unwrap();
        let stray = staged.path().to_path_buf();
        std::mem::forget(staged);
        assert!(stray.exists());
        let _reader = Outbox::open(dir.path()).unwrap();
        assert!(stray.exists(), "opening to read leaves it");
        let _lock = outbox.lock(|| {}).unwrap();
        assert!(!stray.exists(), "the next lock holder clears it");
    }

    /// A phone's sender and its `outbox list` start at the same moment on a
    /// new outbox: both open it, neither sees a half-applied migration.
    #[test]
    fn opening_a_new_outbox_at_once_from_many_connections() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Outbox::open(&dir).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap();
            }
        }
    }
}
