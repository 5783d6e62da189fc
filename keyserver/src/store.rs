//! Where a key server keeps its state: the data directory, the database
//! (SQLite inside the data directory, or PostgreSQL), and the master keyring.
//! Resolved the same way by `serve` and by every admin command, so that they
//! always work on the same data.

use std::path::{Path, PathBuf};

use crate::db::{self, Location};
use crate::error::{Error, Result};
use crate::keyring::{Keyring, KeyringSource};

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "medseal-data";

/// A resolved store.
#[derive(Debug, Clone)]
pub struct Store {
    /// The data directory (holds the keyring, and the SQLite file by default).
    pub data_dir: PathBuf,
    /// The database.
    pub location: Location,
    /// Where the keyring comes from.
    pub keyring: KeyringSource,
}

impl Store {
    /// Resolves flags to a store, creating the data directory (0700) if needed.
    pub fn resolve(
        data_dir: Option<PathBuf>,
        database_url: Option<String>,
        keyring_file: Option<PathBuf>,
    ) -> Result<Store> {
        let store = Self::locate(data_dir, database_url, keyring_file)?;
        store.create_dir()?;
        Ok(store)
    }

    /// Creates the data directory (0700) if it is not there, and warns if
    /// it is open to other users.
    pub fn create_dir(&self) -> Result<()> {
        ensure_private_dir(&self.data_dir)
    }

    /// Whether this names a store that does not exist yet: no SQLite file,
    /// or a PostgreSQL database the key server never set up. Asked before
    /// anything is created, so that a command started in the wrong folder,
    /// or with a mistyped `--data-dir` or database name, does not quietly
    /// begin an empty store (and a new master key) beside the real one.
    pub fn is_new(&self) -> Result<bool> {
        match &self.location {
            Location::Sqlite(path) => match std::fs::metadata(path) {
                Ok(m) => Ok(m.len() == 0),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
                // Unreadable is not new: say why instead of offering --init.
                Err(e) => Err(Error::Invalid(format!(
                    "cannot read {}: {e}",
                    path.display()
                ))),
            },
            Location::Postgres(_) => {
                use diesel::RunQueryDsl;
                let mut conn = db::connect(&self.location)?;
                // In the connection's search path, as the server will use it.
                let n: Vec<db::Count> = diesel::sql_query(
                    "SELECT COUNT(*) AS n FROM (SELECT to_regclass('audit_events') AS t) x WHERE t IS NOT NULL",
                )
                .load(&mut conn)?;
                Ok(n.first().is_none_or(|c| c.n == 0))
            }
        }
    }

    /// Resolves flags to a store without creating anything.
    pub fn locate(
        data_dir: Option<PathBuf>,
        database_url: Option<String>,
        keyring_file: Option<PathBuf>,
    ) -> Result<Store> {
        let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let location = match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Location::Postgres(url)
            }
            Some(url) => {
                let path = url.strip_prefix("sqlite://").unwrap_or(&url);
                if url.contains("://") && !url.starts_with("sqlite://") {
                    return Err(Error::Invalid(format!(
                        "unsupported database URL {}: use postgres://… or sqlite://PATH",
                        db::redact_url(&url)
                    )));
                }
                Location::Sqlite(PathBuf::from(path))
            }
            None => Location::Sqlite(db::sqlite_path(&data_dir)),
        };
        let keyring = match keyring_file {
            Some(arg) => KeyringSource::from_arg(arg)?,
            None if std::env::var_os(crate::keyring::ENV_KEYRING).is_some() => KeyringSource::Env,
            None => KeyringSource::File(data_dir.join("master.keyring")),
        };
        Ok(Store {
            data_dir,
            location,
            keyring,
        })
    }

    /// Loads (or on first use creates) the keyring, without looking at the
    /// database. Prefer [`Store::open_keyring`].
    pub fn load_keyring(&self) -> Result<Keyring> {
        Keyring::load(&self.keyring)
    }

    /// [`Store::open_keyring`], then makes the store ready to be written by
    /// this version ([`crate::audit::prepare_store`]): what the server and
    /// every changing admin command use.
    pub fn open_for_writing(&self, conn: &mut db::Conn) -> Result<Keyring> {
        let ring = self.open_keyring(conn)?;
        crate::audit::prepare_store(conn, &ring)?;
        Ok(ring)
    }

    /// Loads the keyring and checks that it belongs to this database: the
    /// newest audit event must verify with it. A keyring is created only for
    /// a store without history, so a mistyped `--keyring` never starts a
    /// second master key beside the real one.
    pub fn open_keyring(&self, conn: &mut db::Conn) -> Result<Keyring> {
        let (ring, new) = match &self.keyring {
            KeyringSource::File(p) => Keyring::load_or_generate(p)?,
            other => (Keyring::load(other)?, false),
        };
        let describe = || match &self.keyring {
            KeyringSource::File(p) => p.display().to_string(),
            KeyringSource::Env => crate::keyring::ENV_KEYRING.to_owned(),
            KeyringSource::Token(cfg) => format!("{cfg:?}"),
        };
        match (crate::audit::sealed_with(conn, ring.audit_key())?, new) {
            (Some(_), true) => {
                return Err(Error::Keyring(format!(
                    "{} does not exist, but this store already has a history: give its --keyring, or restore the keyring from a backup",
                    describe()
                )));
            }
            (Some(false), _) => {
                return Err(Error::Keyring(format!(
                    "{} does not belong to this store (its audit log was sealed with another keyring)",
                    describe()
                )));
            }
            _ => {}
        }
        if new && let KeyringSource::File(p) = &self.keyring {
            ring.save_new(p)?;
        }
        Ok(ring)
    }
}

fn ensure_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        medseal_files::private_dir(dir)
            .map_err(|e| Error::Invalid(format!("cannot create the data directory {e}")))?;
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(dir)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                dir = %dir.display(),
                "the data directory is accessible to other users; chmod 700 it"
            );
        }
    }
    Ok(())
}
