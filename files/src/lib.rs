//! # medseal-files
//!
//! One home for the files medseal keeps that other users of the machine
//! must not read or see half-written: keyrings, sessions, device ids,
//! secrets, outbox entries, witness checkpoints, backups.
//!
//! The rules, in one place:
//! - directories are created owner-only (0700), parents included;
//! - files are created owner-only (0600) from their first byte, never
//!   created wider and narrowed later;
//! - a file is replaced whole or not at all: written to a temporary file in
//!   the same directory, synced, renamed over the old one, and the
//!   directory synced so the rename itself survives a power cut;
//! - a file that holds a secret and is readable by others is refused, not
//!   silently used ([`not_private`]).
//!
//! On systems without Unix permissions the modes are not applied; the
//! atomicity is.
//!
//! With the `sqlite` feature, [`sqlite`] opens the embedded databases (the
//! key server's store, the outbox) the same way: private file, WAL, full
//! fsync, a busy timeout.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What went wrong, with the path it went wrong on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    /// The file or directory.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl FileError {
    fn at(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
        move |source| FileError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Creates `dir` and any missing parents, owner-only (0700). An existing
/// directory is left as it is.
pub fn private_dir(dir: &Path) -> Result<(), FileError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(FileError::at(dir))
}

/// The directory a file lives in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Syncs a directory, so that a rename or removal in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FileError::at(dir))
}

/// Opens `path` for writing, creating it owner-only (0600) if it is not
/// there; with `create_new`, refuses an existing file (`AlreadyExists`).
/// An existing file keeps its content and mode.
pub fn open_private(path: &Path, create_new: bool) -> Result<File, FileError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).map_err(FileError::at(path))
}

/// Options of [`write_private`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Refuse to replace an existing file (`AlreadyExists`).
    pub create_new: bool,
}

/// Replaces `path` with `bytes`, owner-only (0600), whole or not at all:
/// temporary file in the same directory, fsync, rename, fsync of the
/// directory.
pub fn write_private(path: &Path, bytes: &[u8], options: WriteOptions) -> Result<(), FileError> {
    let mut tmp = PrivateFile::create_beside(path)?;
    tmp.write_all(bytes).map_err(FileError::at(path))?;
    tmp.commit_with(path, options)
}

/// A private file being written beside its destination; [`commit`] puts it
/// in place, dropping it removes it. What a crash leaves behind is a
/// hidden temporary file, never a half-written destination.
///
/// [`commit`]: PrivateFile::commit
pub struct PrivateFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl PrivateFile {
    /// Starts a file that will replace `dest`. (`tempfile` creates it 0600.)
    pub fn create_beside(dest: &Path) -> Result<PrivateFile, FileError> {
        let dir = parent_of(dest);
        let tmp = tempfile::Builder::new()
            .prefix(".medseal-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(FileError::at(dir))?;
        Ok(PrivateFile {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The file being written (to read back before committing).
    pub fn as_file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Where it will go.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Syncs and renames the file over its destination, then syncs the
    /// directory.
    pub fn commit(self) -> Result<(), FileError> {
        let dest = self.dest.clone();
        self.commit_with(&dest, WriteOptions::default())
    }

    /// Like [`commit`](PrivateFile::commit), but never replaces an existing
    /// file: that is `AlreadyExists`, and this file is discarded.
    pub fn commit_new(self) -> Result<(), FileError> {
        let dest = self.dest.clone();
        self.commit_with(&dest, WriteOptions { create_new: true })
    }

    fn commit_with(self, dest: &Path, options: WriteOptions) -> Result<(), FileError> {
        self.tmp.as_file().sync_all().map_err(FileError::at(dest))?;
        if options.create_new {
            self.tmp
                .persist_noclobber(dest)
                .map_err(|e| FileError::at(dest)(e.error))?;
        } else {
            self.tmp
                .persist(dest)
                .map_err(|e| FileError::at(dest)(e.error))?;
        }
        sync_dir(parent_of(dest))
    }
}

impl Write for PrivateFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Why `path` is not fit to hold a secret — it cannot be looked at, or it
/// is readable or writable by others (mode & 0o077 ≠ 0) — or `None` if it
/// is.
pub fn not_private(path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} is readable by other users (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_private_and_replaced_whole() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b");
        private_dir(&dir).unwrap();
        let f = dir.join("secret");
        write_private(&f, b"one", WriteOptions::default()).unwrap();
        write_private(&f, b"two", WriteOptions::default()).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let again = write_private(&f, b"three", WriteOptions { create_new: true });
        assert_eq!(
            again.unwrap_err().source.kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&f), 0o600);
        }
        assert!(not_private(&f).is_none());
        // Nothing but the file itself is left in the directory.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn an_abandoned_file_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("out");
        let mut p = PrivateFile::create_beside(&f).unwrap();
        p.write_all(b"half").unwrap();
        drop(p);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_others_can_read_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("key");
        std::fs::write(&f, b"k").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let why = not_private(&f).unwrap();
        assert!(why.contains("chmod 600") && why.contains("644"), "{why}");
    }
}
