//! A report opened for a destination that needs its contents.
//!
//! FHIR wants the PDF, DICOMweb the photos, a plain HTTPS endpoint the whole
//! bundle. The plaintext bundle goes into an unnamed temporary file (mode
//! 0600, already unlinked, so it vanishes with the process even on a crash)
//! and is checked against the manifest before anything is used; the PDF and
//! photos are then held in memory for the delivery.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use medseal_format::bundle::{REPORT_PDF_PATH, read_verified};
use medseal_format::manifest::{Identifier, Manifest, MediaEntry, MediaKind};
use medseal_format::{OpenOptions, Opener, Secret};

use crate::error::DeliveryError;

/// One photo of the report.
pub struct Photo {
    /// Its manifest entry (MIME type, size, dimensions, capture time).
    pub entry: MediaEntry,
    /// Its bytes, as stored in the report.
    pub data: Vec<u8>,
}

/// The verified contents of a sealed report. Its PDF and photos are wiped
/// from memory when it is dropped, and its bundle file never had a name.
pub struct OpenedReport {
    /// The manifest.
    pub manifest: Manifest,
    /// The PDF summary.
    pub pdf: Vec<u8>,
    /// The photos, in manifest order.
    pub photos: Vec<Photo>,
    bundle: File,
    bundle_len: u64,
}

impl OpenedReport {
    /// Opens `sealed` with `secret` and checks it.
    pub fn open(sealed: &Path, secret: Secret<'_>) -> Result<Self, DeliveryError> {
        let fail = |e: medseal_format::Error| {
            DeliveryError::permanent(format!("cannot open {}: {e}", sealed.display()))
        };
        let file = File::open(sealed)?;
        let opener = Opener::at(&file).map_err(fail)?;
        let mut bundle = tempfile::tempfile()?;
        opener
            .open_at(secret, &bundle, &OpenOptions::default(), &|_| {})
            .map_err(fail)?;
        let bundle_len = bundle.seek(SeekFrom::End(0))?;
        bundle.seek(SeekFrom::Start(0))?;
        let mut pdf = Vec::new();
        let mut photos = Vec::new();
        let manifest = read_verified(std::io::BufReader::new(&bundle), |m, path, data| {
            if path == REPORT_PDF_PATH {
                data.read_to_end(&mut pdf)?;
            } else if let Some(entry) = m
                .media
                .iter()
                .find(|e| e.path == path && e.kind == MediaKind::Photo)
            {
                let mut bytes = Vec::with_capacity(entry.size.min(64 << 20) as usize);
                data.read_to_end(&mut bytes)?;
                photos.push(Photo {
                    entry: entry.clone(),
                    data: bytes,
                });
            }
            Ok(())
        })
        .map_err(|e| DeliveryError::permanent(format!("cannot open {}: {e}", sealed.display())))?;
        let order = |p: &Photo| manifest.media.iter().position(|e| e.path == p.entry.path);
        photos.sort_by_key(order);
        Ok(OpenedReport {
            manifest,
            pdf,
            photos,
            bundle,
            bundle_len,
        })
    }

    /// The patient identifier a record store files the report under: the
    /// one of `system` when given, else the first.
    pub fn patient_identifier(&self, system: Option<&str>) -> Result<&Identifier, DeliveryError> {
        let ids = &self.manifest.patient.identifiers;
        match system {
            Some(sys) => ids.iter().find(|i| i.system == sys).ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "the report has no patient identifier of system {sys}"
                ))
            }),
            None => ids
                .first()
                .ok_or_else(|| DeliveryError::permanent("the report has no patient identifier")),
        }
    }

    /// The manifest as JSON, as it is inside the report.
    pub fn manifest_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.manifest).unwrap_or_default()
    }

    /// A fresh reader over the plaintext bundle (tar) and its length.
    pub fn bundle(&self) -> Result<(File, u64), DeliveryError> {
        let mut f = self.bundle.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        Ok((f, self.bundle_len))
    }
}

impl Drop for OpenedReport {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.pdf.zeroize();
        for p in &mut self.photos {
            p.data.zeroize();
        }
    }
}
