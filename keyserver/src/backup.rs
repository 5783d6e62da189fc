//! Backup and restore of a key server's store.
//!
//! A backup is a tar stream of three files, which the command line seals
//! (medseal format, password or organisation key) as it is written:
//!
//! ```text
//! backup.json         what it is: format, backend, time, audit events
//! master.keyring      the keyring (JSON), so the backup restores alone;
//!                     absent when the master keys are on a PKCS#11 token,
//!                     which is then needed to restore (they never leave it)
//! keyserver.sqlite3   a consistent snapshot of the database
//! ```
//!
//! The snapshot is SQLite's `VACUUM INTO`, which reads one transaction's
//! view while the server keeps serving. Before anything is written the
//! snapshot's audit chain is verified with the keyring, so a backup that
//! would not restore is never produced. Restore refuses to overwrite an
//! existing store, places both files (0600) and verifies the chain again;
//! the restored server continues the same chain.
//!
//! PostgreSQL stores are backed up with PostgreSQL's own tools (pg_dump,
//! base backups with WAL archiving) plus a copy of the keyring kept apart:
//! see `docs/keyserver.md`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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
    /// Always `sqlite` for now.
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

fn sqlite_path(store: &Store) -> Result<&Path> {
    match &store.location {
        Location::Sqlite(p) => Ok(p),
        Location::Postgres(_) => Err(Error::Invalid(
            "this store is on PostgreSQL: back it up with pg_dump or a base backup, and keep a copy of the keyring apart (docs/keyserver.md)".into(),
        )),
    }
}

/// Writes a backup of `store` (a tar stream) to `out`.
pub fn write_backup<W: Write>(store: &Store, out: W) -> Result<BackupInfo> {
    let live = sqlite_path(store)?;
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
    let v = audit::verify(&mut conn, ring.audit_key())?;
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
    let mut add = |name: &str, len: u64, data: &mut dyn Read| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(len);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data)
            .map_err(io("cannot write the backup"))
    };
    add(INFO, info_json.len() as u64, &mut &info_json[..])?;
    if let Some(text) = &ring_text {
        add(KEYRING, text.len() as u64, &mut text.as_bytes())?;
    }
    let mut db_file = std::fs::File::open(&snapshot).map_err(io("cannot read the snapshot"))?;
    let len = db_file
        .metadata()
        .map_err(io("cannot read the snapshot"))?
        .len();
    add(DATABASE, len, &mut db_file)?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io("cannot write the backup"))?;
    Ok(info)
}

/// Restores the backup read from `input` into `store`, which must not
/// exist yet (neither its database nor its keyring file). A backup taken
/// with the keys on a token restores only onto a store on that token.
pub fn restore_backup<R: Read>(input: R, store: &Store) -> Result<BackupInfo> {
    let target_db = sqlite_path(store)?.to_path_buf();
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
    for p in std::iter::once(&target_db).chain(target_ring.as_ref()) {
        if p.exists() {
            return Err(Error::Conflict(format!(
                "{} already exists: restore into a new data directory",
                p.display()
            )));
        }
    }
    let dir = target_db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let tmp = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(&dir)
        .map_err(io("cannot make a temporary directory"))?;
    let mut info: Option<BackupInfo> = None;
    let mut ring_text: Option<zeroize::Zeroizing<String>> = None;
    let mut db: Option<PathBuf> = None;
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
        match name.as_str() {
            INFO | KEYRING if size > MAX_SMALL_FILE => {
                return Err(malformed(format!("{name} is too large")));
            }
            INFO if info.is_none() => {
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(io("cannot read the backup"))?;
                let i: BackupInfo =
                    serde_json::from_slice(&buf).map_err(|e| malformed(format!("{INFO}: {e}")))?;
                if i.format != BACKUP_FORMAT || i.backend != "sqlite" {
                    return Err(malformed(format!(
                        "format {} of backend {} is not supported",
                        i.format, i.backend
                    )));
                }
                info = Some(i);
            }
            KEYRING if ring_text.is_none() => {
                let mut s = zeroize::Zeroizing::new(String::new());
                entry
                    .read_to_string(&mut s)
                    .map_err(io("cannot read the backup"))?;
                Keyring::parse(&s)?;
                ring_text = Some(s);
            }
            DATABASE if db.is_none() => {
                let p = tmp.path().join(DATABASE);
                let mut f = std::fs::File::create(&p).map_err(io("cannot write the database"))?;
                std::io::copy(&mut entry, &mut f).map_err(io("cannot write the database"))?;
                f.sync_all().map_err(io("cannot write the database"))?;
                db = Some(p);
            }
            other => return Err(malformed(format!("unexpected or repeated entry {other:?}"))),
        }
    }
    let (Some(info), Some(db)) = (info, db) else {
        return Err(malformed("an entry is missing".into()));
    };
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
    // Check before placing anything: the chain verifies with this keyring.
    let ring = ring_for(ring_text.as_deref().map(|s| s.as_str()), store)?;
    {
        let mut conn = db::connect(&Location::Sqlite(db.clone()))?;
        let v = audit::verify(&mut conn, ring.audit_key())?;
        if v.broken.is_some() || v.verified != info.audit_events {
            return Err(malformed("its audit log does not verify".into()));
        }
    }
    if let (Some(text), Some(target)) = (&ring_text, &target_ring) {
        keyring::write_private(target, text.as_bytes(), true)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot protect the database"))?;
    }
    std::fs::hard_link(&db, &target_db).map_err(|e| {
        if let Some(target) = &target_ring {
            let _ = std::fs::remove_file(target);
        }
        io("cannot place the database")(e)
    })?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync the data directory"))?;
    Ok(info)
}
