//! Backup and restore of a key server's store.
//!
//! A backup is a tar stream, which the command line seals (medseal format,
//! password or organisation key) as it is written:
//!
//! ```text
//! backup.json         what it is: format, backend, time, audit events
//! master.keyring      the keyring (JSON), so the backup restores alone;
//!                     absent when the master keys are on a PKCS#11 token,
//!                     which is then needed to restore (they never leave it)
//! keyserver.sqlite3   SQLite stores: a consistent snapshot of the database
//! TABLE.jsonl         PostgreSQL stores: a consistent logical copy of each
//!                     table (see [`crate::dump`])
//! ```
//!
//! The SQLite snapshot is `VACUUM INTO`, which reads one transaction's
//! view while the server keeps serving; the PostgreSQL copy is read in one
//! `REPEATABLE READ` transaction. Before anything is written the copy's
//! audit chain is verified with the keyring, so a backup that would not
//! restore is never produced. Restore refuses to overwrite an existing
//! store, verifies the chain again and places the keyring (0600); the
//! restored server continues the same chain. A PostgreSQL backup restores
//! into an empty PostgreSQL database or a new SQLite store, in one
//! transaction.
//!
//! For point-in-time recovery of a large PostgreSQL store, PostgreSQL's own
//! base backups with WAL archiving remain the tool: see `docs/keyserver.md`.

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audit;
use crate::db::{self, Location};
use crate::error::{Error, Result};
use crate::keyring::{self, Keyring, KeyringSource};
use crate::store::Store;

/// The version of this layout.
pub const BACKUP_FORMAT: u32 = 1;
const INFO: &str = "backup.json";
const KEYRING: &str = "master.keyring";
const DATABASE: &str = "keyserver.sqlite3";
/// Largest keyring or info file accepted from a backup.
const MAX_SMALL_FILE: u64 = 1 << 20;

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupInfo {
    /// [`BACKUP_FORMAT`].
    pub format: u32,
    /// `sqlite` (a database file) or `postgres` (a logical copy).
    pub backend: String,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// Audit events in the snapshot, all verified.
    pub audit_events: i64,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Invalid(format!("{what}: {e}"))
}

/// The keyring file's text, or `None` when the keys are on a token.
fn keyring_text(store: &Store) -> Result<Option<zeroize::Zeroizing<String>>> {
    match &store.keyring {
        KeyringSource::Env => std::env::var(keyring::ENV_KEYRING)
            .map(|s| Some(zeroize::Zeroizing::new(s)))
            .map_err(|_| Error::Keyring(format!("{} is not set", keyring::ENV_KEYRING))),
        KeyringSource::File(p) => std::fs::File::open(p)
            .and_then(|f| medseal_format::read_bounded_string(f, keyring::MAX_KEYRING_FILE))
            .map(|s| Some(zeroize::Zeroizing::new(s)))
            .map_err(|e| Error::Keyring(format!("cannot read {}: {e}", p.display()))),
        KeyringSource::Token(_) => Ok(None),
    }
}

/// The keyring a backup's chain is checked with: the one it carries, or
/// the token's.
fn ring_for(text: Option<&str>, store: &Store) -> Result<Keyring> {
    match text {
        Some(t) => Keyring::parse(t),
        None => store.load_keyring(),
    }
}

/// Appends one regular file (0600) to the backup.
fn add_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    len: u64,
    data: &mut dyn Read,
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, name, data)
        .map_err(io("cannot write the backup"))
}

fn jsonl(table: &str) -> String {
    format!("{table}.jsonl")
}

/// Writes a backup of `store` (a tar stream) to `out`.
pub fn write_backup<W: Write>(store: &Store, out: W) -> Result<BackupInfo> {
    match &store.location {
        Location::Sqlite(live) => write_sqlite(store, live, out),
        Location::Postgres(_) => write_logical(store, out),
    }
}

/// A PostgreSQL store: a logical copy from one snapshot, checked before it
/// is written.
fn write_logical<W: Write>(store: &Store, out: W) -> Result<BackupInfo> {
    let mut conn = db::connect(&store.location)?;
    let ring = store.open_keyring(&mut conn)?;
    let ring_text = keyring_text(store)?;
    let tmp = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(&store.data_dir)
        .map_err(io("cannot make a temporary directory"))?;
    let events = crate::dump::dump(&mut conn, |table| {
        std::fs::File::create(tmp.path().join(jsonl(table)))
            .map(std::io::BufWriter::new)
            .map_err(io("cannot write the dump"))
    })?;
    drop(conn);
    // BufWriters were flushed on drop; check the copied chain now.
    let mut check = crate::dump::ChainCheck::new(ring.audit_key());
    let file = std::fs::File::open(tmp.path().join(jsonl("audit_events")))
        .map_err(io("cannot read the dump"))?;
    for line in std::io::BufRead::lines(std::io::BufReader::new(file)) {
        check.next(&line.map_err(io("cannot read the dump"))?)?;
    }
    if check.head().0 != events {
        return Err(Error::Internal("the dump lost audit events".into()));
    }
    let info = BackupInfo {
        format: BACKUP_FORMAT,
        backend: "postgres".into(),
        created_at: crate::time::rfc3339(crate::time::now_ms()),
        audit_events: events,
    };
    let info_json = serde_json::to_vec_pretty(&info).map_err(|e| Error::Internal(e.to_string()))?;
    let mut tar = tar::Builder::new(out);
    add_entry(&mut tar, INFO, info_json.len() as u64, &mut &info_json[..])?;
    if let Some(text) = &ring_text {
        add_entry(&mut tar, KEYRING, text.len() as u64, &mut text.as_bytes())?;
    }
    for table in crate::dump::TABLES.iter().chain(&crate::dump::LATER_TABLES) {
        let path = tmp.path().join(jsonl(table));
        let mut f = std::fs::File::open(&path).map_err(io("cannot read the dump"))?;
        let len = f.metadata().map_err(io("cannot read the dump"))?.len();
        add_entry(&mut tar, &jsonl(table), len, &mut f)?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io("cannot write the backup"))?;
    Ok(info)
}

/// A SQLite store: `VACUUM INTO` a snapshot, verify it, write it.
fn write_sqlite<W: Write>(store: &Store, live: &Path, out: W) -> Result<BackupInfo> {
    if !live.exists() {
        return Err(Error::Invalid(format!("no store at {}", live.display())));
    }
    let ring_text = keyring_text(store)?;
    let ring = ring_for(ring_text.as_deref().map(|s| s.as_str()), store)?;
    let dir = live
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(dir)
        .map_err(io("cannot make a temporary directory"))?;
    let snapshot = tmp.path().join(DATABASE);
    let snapshot_str = snapshot
        .to_str()
        .ok_or_else(|| Error::Invalid("the data directory path is not UTF-8".into()))?;
    {
        let mut conn = db::connect(&store.location)?;
        use diesel::RunQueryDsl;
        diesel::sql_query(format!(
            "VACUUM INTO '{}'",
            snapshot_str.replace('\'', "''")
        ))
        .execute(&mut conn)
        .map_err(|e| Error::Internal(format!("snapshot failed: {e}")))?;
    }
    let mut conn = db::connect(&Location::Sqlite(snapshot.clone()))?;
    let v = audit::verify(&mut conn, &ring, None, false)?;
    drop(conn);
    if let Some(b) = v.broken {
        return Err(Error::Invalid(format!(
            "the audit log is broken at event {} ({}); not backing up a store that would not verify",
            b.seq, b.reason
        )));
    }
    let info = BackupInfo {
        format: BACKUP_FORMAT,
        backend: "sqlite".into(),
        created_at: crate::time::rfc3339(crate::time::now_ms()),
        audit_events: v.verified,
    };
    let info_json = serde_json::to_vec_pretty(&info).map_err(|e| Error::Internal(e.to_string()))?;
    let mut tar = tar::Builder::new(out);
    add_entry(&mut tar, INFO, info_json.len() as u64, &mut &info_json[..])?;
    if let Some(text) = &ring_text {
        add_entry(&mut tar, KEYRING, text.len() as u64, &mut text.as_bytes())?;
    }
    let mut db_file = std::fs::File::open(&snapshot).map_err(io("cannot read the snapshot"))?;
    let len = db_file
        .metadata()
        .map_err(io("cannot read the snapshot"))?
        .len();
    add_entry(&mut tar, DATABASE, len, &mut db_file)?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io("cannot write the backup"))?;
    Ok(info)
}

/// Restores the backup read from `input` into `store`, which must not
/// exist yet: a SQLite store without its database or keyring file, or an
/// empty PostgreSQL database. A backup taken with the keys on a token
/// restores only onto a store on that token.
pub fn restore_backup<R: Read>(input: R, store: &Store) -> Result<BackupInfo> {
    let target_ring = match &store.keyring {
        KeyringSource::File(p) => Some(p.clone()),
        KeyringSource::Token(_) => None,
        KeyringSource::Env => {
            return Err(Error::Invalid(format!(
                "unset {} to restore: the keyring is restored to a file in the data directory",
                keyring::ENV_KEYRING
            )));
        }
    };
    let target_db = match &store.location {
        Location::Sqlite(p) => Some(p.clone()),
        Location::Postgres(_) => None,
    };
    for p in target_db.iter().chain(target_ring.as_ref()) {
        if p.exists() {
            return Err(Error::Conflict(format!(
                "{} already exists: restore into a new data directory",
                p.display()
            )));
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(&store.data_dir)
        .map_err(io("cannot make a temporary directory"))?;
    let mut info: Option<BackupInfo> = None;
    let mut ring_text: Option<zeroize::Zeroizing<String>> = None;
    let mut files: Vec<String> = Vec::new();
    let tables: Vec<String> = crate::dump::TABLES.iter().map(|t| jsonl(t)).collect();
    let later: Vec<String> = crate::dump::LATER_TABLES.iter().map(|t| jsonl(t)).collect();
    let mut archive = tar::Archive::new(input);
    let malformed = |why: String| Error::Invalid(format!("not a key server backup: {why}"));
    for entry in archive.entries().map_err(|e| malformed(e.to_string()))? {
        let mut entry = entry.map_err(|e| malformed(e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(malformed("an entry is not a plain file".into()));
        }
        let name = entry
            .path()
            .map_err(|e| malformed(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let size = entry.size();
        let repeated = files.contains(&name);
        match name.as_str() {
            _ if repeated => return Err(malformed(format!("repeated entry {name:?}"))),
            INFO | KEYRING if size > MAX_SMALL_FILE => {
                return Err(malformed(format!("{name} is too large")));
            }
            INFO => {
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(io("cannot read the backup"))?;
                let i: BackupInfo =
                    serde_json::from_slice(&buf).map_err(|e| malformed(format!("{INFO}: {e}")))?;
                if i.format != BACKUP_FORMAT
                    || !["sqlite", "postgres"].contains(&i.backend.as_str())
                {
                    return Err(malformed(format!(
                        "format {} of backend {} is not supported",
                        i.format, i.backend
                    )));
                }
                info = Some(i);
            }
            KEYRING => {
                let mut s = zeroize::Zeroizing::new(String::new());
                entry
                    .read_to_string(&mut s)
                    .map_err(io("cannot read the backup"))?;
                Keyring::parse(&s)?;
                ring_text = Some(s);
            }
            n if n == DATABASE || tables.iter().chain(&later).any(|t| t == n) => {
                let p = tmp.path().join(n);
                let mut f = medseal_files::open_private(&p, true)
                    .map_err(|e| io("cannot write the database")(e.source))?;
                std::io::copy(&mut entry, &mut f).map_err(io("cannot write the database"))?;
                f.sync_all().map_err(io("cannot write the database"))?;
            }
            other => return Err(malformed(format!("unexpected entry {other:?}"))),
        }
        files.push(name);
    }
    let Some(info) = info else {
        return Err(malformed(format!("{INFO} is missing")));
    };
    let needed: Vec<String> = match info.backend.as_str() {
        "sqlite" => vec![DATABASE.to_owned()],
        _ => tables,
    };
    if let Some(missing) = needed.iter().find(|n| !files.contains(n)) {
        return Err(malformed(format!("{missing} is missing")));
    }
    match (&ring_text, &target_ring) {
        (Some(_), None) => {
            return Err(Error::Invalid(
                "this backup carries a keyring file: restore it without a pkcs11: --keyring".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(Error::Invalid(
                "this backup was taken with the master keys on a PKCS#11 token: restore with --keyring pkcs11:… naming that token".into(),
            ));
        }
        _ => {}
    }
    let ring = ring_for(ring_text.as_deref().map(|s| s.as_str()), store)?;
    match (info.backend.as_str(), &target_db) {
        ("sqlite", Some(target)) => {
            place_sqlite(&tmp.path().join(DATABASE), target, &info, &ring)?;
        }
        ("sqlite", None) => {
            return Err(Error::Invalid(
                "this is a backup of a SQLite store: restore it into a SQLite data directory (without --database-url)".into(),
            ));
        }
        _ => load_logical(tmp.path(), store, &info, &ring)?,
    }
    if let (Some(text), Some(target)) = (&ring_text, &target_ring)
        && let Err(e) = keyring::write_private(target, text.as_bytes(), true)
    {
        if let Some(db) = &target_db {
            let _ = std::fs::remove_file(db);
        }
        return Err(e);
    }
    if let Some(dir) = target_db
        .as_deref()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
    {
        medseal_files::sync_dir(dir).map_err(|e| io("cannot sync the data directory")(e.source))?;
    }
    Ok(info)
}

/// Checks a restored SQLite snapshot with the keyring, then links it into
/// place (0600).
fn place_sqlite(db: &Path, target: &Path, info: &BackupInfo, ring: &Keyring) -> Result<()> {
    {
        let mut conn = db::connect(&Location::Sqlite(db.to_path_buf()))?;
        // A backup of an earlier version is brought to this schema first.
        db::migrate(&mut conn)?;
        // What lets someone in is not carried over: everyone signs in again
        // on the restored server, and a session, code or sign-on taken from
        // a backup file opens nothing (a PostgreSQL backup never copies
        // these tables).
        use diesel::connection::SimpleConnection;
        crate::on_backend!(&mut conn, |c| {
            c.batch_execute(
            "DELETE FROM sessions; DELETE FROM login_codes; DELETE FROM sso_grants; DELETE FROM sso_flows;"
        )
        })?;
        let v = audit::verify(&mut conn, ring, None, false)?;
        if v.broken.is_some() || v.verified != info.audit_events {
            return Err(Error::Invalid(
                "not a key server backup: its audit log does not verify".into(),
            ));
        }
    }
    // Written owner-only (medseal_files::open_private) from its first byte.
    std::fs::hard_link(db, target).map_err(io("cannot place the database"))
}

/// Loads a logical copy into the store's (new or empty) database, in one
/// transaction that commits only if the chain checks.
fn load_logical(dir: &Path, store: &Store, info: &BackupInfo, ring: &Keyring) -> Result<()> {
    let mut conn = db::connect(&store.location)?;
    let result = db::migrate(&mut conn).and_then(|()| {
        crate::dump::load(
            &mut conn,
            |table| {
                let path = dir.join(jsonl(table));
                if !path.exists() {
                    return Ok(None);
                }
                std::fs::File::open(path)
                    .map(|f| Some(std::io::BufReader::new(f)))
                    .map_err(io("cannot read the backup"))
            },
            ring.audit_key(),
            info.audit_events,
        )
    });
    drop(conn);
    if result.is_err()
        && let Location::Sqlite(p) = &store.location
    {
        // A new SQLite file was made for this restore: leave nothing.
        for suffix in ["", "-wal", "-shm"] {
            let mut f = p.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
    }
    result
}
