//! The one way medseal opens an embedded SQLite database: the file created
//! owner-only before SQLite touches it (SQLite gives its `-wal` and `-shm`
//! files the same mode), then per-connection settings: a busy timeout
//! instead of an immediate `SQLITE_BUSY`, WAL so that readers never block
//! the writer, full fsync on commit so that an acknowledged write survives
//! a power cut, and foreign keys enforced.

use std::path::Path;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;

/// How long a connection waits for another's lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates `path` owner-only if it is not there yet.
pub fn prepare_file(path: &Path) -> Result<(), crate::FileError> {
    if !path.exists() {
        crate::open_private(path, false)?;
    }
    Ok(())
}

/// Applies the settings to a fresh connection. Switching a new database to
/// WAL needs a lock SQLite does not wait for through the busy handler, so
/// that step is retried for as long as the busy timeout.
pub fn configure(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            BUSY_TIMEOUT.as_millis()
        )) {
            Ok(()) => return Ok(()),
            Err(e) if e.to_string().contains("locked") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::{Connection, RunQueryDsl, sql_query};

    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
    }

    #[test]
    fn a_new_database_is_private_and_in_wal_mode() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("x.sqlite3");
        prepare_file(&db).unwrap();
        let mut c = SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        configure(&mut c).unwrap();
        let m: Mode = sql_query("PRAGMA journal_mode").get_result(&mut c).unwrap();
        assert_eq!(m.journal_mode, "wal");
        assert!(crate::not_private(&db).is_none());
    }
}
