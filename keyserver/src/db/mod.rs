//! Storage: one connection type over SQLite (embedded default) and
//! PostgreSQL (for several servers sharing one database).
//!
//! Everything above this module is written once against [`Conn`]; the few
//! places where the dialects differ (pragmas, row locks) match on the variant.

pub mod schema;

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::Error;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum Conn {
    /// PostgreSQL.
    Postgresql(PgConnection),
    /// Embedded SQLite.
    Sqlite(SqliteConnection),
}

/// A pool of connections.
pub type DbPool = Pool<ConnectionManager<Conn>>;
/// A connection borrowed from the pool.
pub type PooledConn = PooledConnection<ConnectionManager<Conn>>;

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL (`postgres://…`).
    Postgres(String),
}

impl Location {
    /// The URL diesel expects.
    fn url(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(u) => u.clone(),
        }
    }

    /// For messages: never includes a password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => format!("SQLite {}", p.display()),
            Location::Postgres(u) => format!("PostgreSQL {}", redact_url(u)),
        }
    }
}

/// Removes the password from a database URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Per-connection settings for SQLite, the same as every embedded database
/// of medseal's ([`medseal_files::sqlite::configure`]): WAL, full fsync on
/// commit so that an acknowledged audit event survives power loss, a busy
/// timeout instead of immediate `SQLITE_BUSY`.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        if let Conn::Sqlite(c) = conn {
            medseal_files::sqlite::configure(c).map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Opens a single connection with the same settings as the pool's.
pub fn connect(loc: &Location) -> Result<Conn, Error> {
    // Created owner-only before SQLite opens it, so that it never exists
    // with a wider mode; SQLite gives its -wal and -shm files the same.
    if let Location::Sqlite(path) = loc {
        medseal_files::sqlite::prepare_file(path).map_err(|e| Error::Connect(e.to_string()))?;
    }
    let mut conn = Conn::establish(&loc.url()).map_err(|e| Error::Connect(e.to_string()))?;
    if let Location::Sqlite(path) = loc {
        make_private(path);
    }
    SqlitePragmas
        .on_acquire(&mut conn)
        .map_err(|e| Error::Connect(e.to_string()))?;
    Ok(conn)
}

/// Opens a pool of `size` connections, after applying pending migrations.
pub fn open_pool(loc: &Location, size: u32) -> Result<DbPool, Error> {
    let mut conn = connect(loc)?;
    migrate(&mut conn)?;
    drop(conn);
    if let Location::Sqlite(path) = loc {
        make_private(path);
    }
    Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(10))
        // A broken connection fails its query and is replaced; testing every
        // checkout with an extra round trip would halve the request rate.
        .test_on_check_out(false)
        .connection_customizer(Box::new(SqlitePragmas))
        .build(ConnectionManager::new(loc.url()))
        .map_err(|e| Error::Connect(e.to_string()))
}

/// The database holds wrapped keys and audit records: owner-only, like its
/// directory. Stores made before the database was created private are
/// narrowed here.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// Applies the migrations for the connection's backend. Several processes
/// may start at once on one store: an advisory lock (PostgreSQL) or the
/// write lock (SQLite) serialises them.
pub fn migrate(conn: &mut Conn) -> Result<(), Error> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| Error::Migration(e.to_string());
    match conn {
        // Under SQLite's write lock, so that a server and an admin command
        // starting on a new store at once do not both run a migration.
        // Foreign keys are checked after the migrations rather than during
        // them: SQLite cannot change a constraint in place, so a migration
        // rebuilds the table (users, for the guest role), dropping the old
        // one while rows still point at it. The pragma is ignored inside a
        // transaction, so it is set around it; the check runs inside, and a
        // dangling reference rolls everything back.
        Conn::Sqlite(c) => {
            c.batch_execute("PRAGMA foreign_keys = OFF")?;
            let r = c.immediate_transaction(|c| {
                c.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|_| ())
                    .map_err(failed)?;
                use diesel::RunQueryDsl;
                let dangling: Vec<Count> =
                    diesel::sql_query("SELECT COUNT(*) AS n FROM pragma_foreign_key_check")
                        .load(c)?;
                match dangling.first().map(|d| d.n) {
                    Some(0) | None => Ok(()),
                    Some(n) => Err(Error::Migration(format!(
                        "{n} rows would point at rows that do not exist; nothing was changed"
                    ))),
                }
            });
            c.batch_execute("PRAGMA foreign_keys = ON")?;
            r
        }
        Conn::Postgresql(c) => {
            c.batch_execute("SELECT pg_advisory_lock(7213400001)")?;
            let r = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            c.batch_execute("SELECT pg_advisory_unlock(7213400001)")?;
            r.map_err(failed)
        }
    }
}

/// A `COUNT(*) AS n` row, for raw queries.
#[derive(diesel::QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) n: i64,
}

/// Runs `$body` in a write transaction on either backend, with `$c` bound to
/// the backend's own connection type. On SQLite this is `BEGIN IMMEDIATE`,
/// which takes the write lock up front (waiting up to the busy timeout), so a
/// transaction that reads and then writes can never fail half-way with
/// `SQLITE_BUSY`. The body is compiled once per backend.
#[macro_export]
macro_rules! write_tx {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::Conn::Sqlite($c) => $c.immediate_transaction(|$c| $body),
            $crate::db::Conn::Postgresql($c) => diesel::Connection::transaction($c, |$c| $body),
        }
    };
}

/// Runs `$body` with `$c` bound to the backend's own connection type, for
/// the statements the multi-backend connection cannot express (multi-row
/// inserts). Inside a transaction it joins that transaction.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::Conn::Sqlite($c) => $body,
            $crate::db::Conn::Postgresql($c) => $body,
        }
    };
}

/// The SQLite file inside a data directory.
pub fn sqlite_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("keyserver.sqlite3")
}

#[cfg(test)]
mod tests {
    /// A server and admin commands starting at once on a new SQLite store.
    #[test]
    fn migrating_a_new_store_at_once_from_many_connections() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let loc = super::Location::Sqlite(dir.path().join("ks.sqlite3"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (loc, barrier) = (loc.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let mut c = super::connect(&loc)?;
                        super::migrate(&mut c)
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap();
            }
        }
    }

    /// A store in use before the guest role (users rebuilt by 000006), with
    /// sessions, keys and recipients pointing at its users, upgrades with
    /// every row and reference intact.
    #[test]
    fn a_populated_store_upgrades_through_the_users_rebuild() {
        use diesel::RunQueryDsl;
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;
        let dir = tempfile::tempdir().unwrap();
        let loc = super::Location::Sqlite(dir.path().join("ks.sqlite3"));
        let mut conn = super::connect(&loc).unwrap();
        super::migrate(&mut conn).unwrap();
        let super::Conn::Sqlite(c) = &mut conn else {
            unreachable!()
        };
        c.batch_execute("PRAGMA foreign_keys = OFF").unwrap();
        c.revert_last_migration(super::SQLITE_MIGRATIONS).unwrap();
        c.batch_execute(
            "PRAGMA foreign_keys = ON;
             INSERT INTO orgs (id, name, created_at) VALUES (1, 'St Elsewhere', 0);
             INSERT INTO users (id, org_id, email, role, password_hash, created_at)
                 VALUES (7, 1, 'alice@st.example', 'clinician', 'h', 0);
             INSERT INTO sessions (token_hash, user_id, device_id, created_at, last_seen, expires_at, revoked)
                 VALUES (x'01', 7, 'd', 0, 0, 1, 0);
             INSERT INTO data_keys (key_id, report_id, org_id, creator_id, kek_version, wrapped, created_at)
                 VALUES ('k_1', 'r1', 1, 7, 1, x'00', 0);",
        )
        .unwrap();
        super::migrate(&mut conn).unwrap();
        let super::Conn::Sqlite(c) = &mut conn else {
            unreachable!()
        };
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            email: String,
        }
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT u.email AS email FROM sessions s JOIN users u ON u.id = s.user_id
             JOIN data_keys k ON k.creator_id = u.id",
        )
        .load(c)
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].email, "alice@st.example");
        // The new role is accepted, and foreign keys are enforced again.
        c.batch_execute(
            "INSERT INTO users (org_id, email, role, password_hash, created_at)
                 VALUES (1, 'bob@partner.example', 'guest', '', 0)",
        )
        .unwrap();
        assert!(
            c.batch_execute(
                "INSERT INTO sessions (token_hash, user_id, device_id, created_at, last_seen, expires_at, revoked)
                     VALUES (x'02', 999, 'd', 0, 0, 1, 0)"
            )
            .is_err()
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://medseal:s3cret@db:5432/ks"),
            "postgres://medseal:***@db:5432/ks"
        );
        assert_eq!(super::redact_url("postgres://db/ks"), "postgres://db/ks");
    }
}
