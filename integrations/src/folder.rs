//! A drop folder: a local or mounted directory another system watches.
//!
//! The report appears under its final name only when complete (written to
//! a temporary name in the same directory, synced, then linked into place
//! without replacing anything), so a watcher never picks up half a file.
//!
//! With `payload = "plain"` the folder receives the opened report as a tar
//! (`manifest.json`, `report.pdf`, `media/`), verified before it is
//! written: what a receiving endpoint drops into an EMR's import folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{ConfigError, resolve_path};
use crate::destination::{Destination, Parcel, Payload, ProgressHandle, Receipt};
use crate::error::DeliveryError;

/// `type = "folder"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The directory (must exist).
    pub path: PathBuf,
    /// The sealed file (default) or the opened report as a tar.
    #[serde(default)]
    pub payload: Payload,
}

impl FolderConfig {
    pub(crate) fn resolve(&mut self, base: &Path) {
        resolve_path(&mut self.path, base);
    }
}

/// The folder destination.
pub struct Folder {
    config: FolderConfig,
}

impl Folder {
    /// Checks the settings.
    pub fn new(config: FolderConfig) -> Result<Self, ConfigError> {
        Ok(Self { config })
    }
}

impl Destination for Folder {
    fn kind(&self) -> &'static str {
        "folder"
    }

    fn needs_opened_report(&self) -> bool {
        self.config.payload == Payload::Plain
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        if self.config.path.is_dir() {
            Ok(())
        } else {
            Err(DeliveryError::transient(format!(
                "{} is not a reachable directory",
                self.config.path.display()
            )))
        }
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        let dir = &self.config.path;
        self.reachable()?;
        let (mut src, len, name) = match self.config.payload {
            Payload::Sealed => (
                std::fs::File::open(parcel.sealed)?,
                parcel.size,
                parcel.file_name.to_owned(),
            ),
            Payload::Plain => {
                let (f, len) = parcel.require_opened("a plain folder drop")?.bundle()?;
                let stem = parcel
                    .file_name
                    .strip_suffix(".mseal")
                    .unwrap_or(parcel.file_name);
                (f, len, format!("{stem}.tar"))
            }
        };
        let expected = match self.config.payload {
            Payload::Sealed => parcel.sha256.to_owned(),
            Payload::Plain => {
                let sha = crate::digest::digests(&mut src)?.sha256;
                std::io::Seek::rewind(&mut src)?;
                sha
            }
        };
        let target = dir.join(name);
        let present = |target: &Path| -> Result<Receipt, DeliveryError> {
            if crate::digest::file_digests(target)?.sha256 == expected {
                Ok(Receipt {
                    id: target.display().to_string(),
                    location: None,
                    already_present: true,
                })
            } else {
                Err(DeliveryError::permanent(format!(
                    "a different file already exists at {}",
                    target.display()
                )))
            }
        };
        if target.exists() {
            return present(&target);
        }
        let mut tmp = medseal_files::PrivateFile::create_beside(&target)
            .map_err(|e| DeliveryError::from(e.source))?;
        progress.begin(len);
        let mut src = crate::http::ProgressReader::new(src, progress.clone());
        std::io::copy(&mut src, &mut tmp)?;
        tmp.flush()?;
        match tmp.commit_new() {
            Ok(()) => {}
            Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {
                return present(&target);
            }
            Err(e) => return Err(e.source.into()),
        }
        Ok(Receipt {
            id: target.display().to_string(),
            location: None,
            already_present: false,
        })
    }
}
