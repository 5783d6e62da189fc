//! Unpacking an opened report into a directory, checking every file
//! against the manifest on the way.
//!
//! Everything is written into a private temporary directory beside the
//! destination and renamed into place only when every file's size and
//! SHA-256 match the manifest and nothing unlisted was found, so a damaged
//! or doctored bundle never leaves partial output behind.

use std::io::{self, Read};
use std::path::Path;

use medseal_format::bundle::{BundleError, MANIFEST_PATH, read_verified};
use medseal_format::manifest::Manifest;

/// What can go wrong extracting a report.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The bundle breaks the layout or the manifest's rules.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The destination already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Extracts the bundle read from `input` into the new directory `dest`.
pub fn extract<R: Read>(input: R, dest: &Path) -> Result<Manifest, ExtractError> {
    if dest.exists() {
        return Err(ExtractError::Exists(dest.display().to_string()));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".medseal-extract-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let tmp = builder.tempdir_in(parent).map_err(io_err(parent))?;
    let media_dir = tmp.path().join("media");
    // Owner-only like every file in it (and like the temporary directory
    // that becomes `dest`): a report's folders list patient media.
    medseal_files::private_dir(&media_dir).map_err(|e| io_err(&media_dir)(e.source))?;
    let manifest = read_verified(input, |_, path, data| {
        let target = tmp.path().join(path);
        let mut file = medseal_files::open_private(&target, true).map_err(|e| e.source)?;
        io::copy(data, &mut file)?;
        file.sync_all()?;
        Ok(())
    })?;
    let manifest_path = tmp.path().join(MANIFEST_PATH);
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| io_err(&manifest_path)(io::Error::other(e)))?;
    medseal_files::open_private(&manifest_path, true)
        .map_err(|e| e.source)
        .and_then(|mut f| io::Write::write_all(&mut f, &json).and_then(|()| f.sync_all()))
        .map_err(io_err(&manifest_path))?;
    let kept = tmp.keep();
    std::fs::rename(&kept, dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        io_err(dest)(e)
    })?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use medseal_format::bundle::BundleWriter;
    use medseal_format::manifest::Manifest;

    use super::*;

    use crate::fixtures::sample_manifest as manifest;

    fn bundle(m: &Manifest, files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = BundleWriter::new(Vec::new(), m).unwrap();
        for (p, d) in files {
            w.add(p, d.len() as u64, *d).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn extracts_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let photo = b"jpeg bytes".as_slice();
        let m = manifest(photo);
        let b = bundle(
            &m,
            &[("report.pdf", b"%PDF-1.7"), ("media/photo-1.jpg", photo)],
        );
        let dest = dir.path().join("out");
        assert_eq!(extract(&b[..], &dest).unwrap(), m);
        assert_eq!(
            std::fs::read(dest.join("media/photo-1.jpg")).unwrap(),
            photo
        );
        assert!(dest.join("report.pdf").exists() && dest.join("manifest.json").exists());
        use std::os::unix::fs::PermissionsExt;
        // Every file holds patient data: owner-only, the manifest too.
        for f in ["media/photo-1.jpg", "manifest.json", "report.pdf"] {
            let mode = std::fs::metadata(dest.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert!(matches!(
            extract(&b[..], &dest),
            Err(ExtractError::Exists(_))
        ));
    }

    #[test]
    fn mismatches_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(b"the real photo");
        for files in [
            vec![("media/photo-1.jpg", b"a doctored one".as_slice())],
            vec![],
            vec![
                ("media/photo-1.jpg", b"the real photo".as_slice()),
                ("media/extra.bin", b"x".as_slice()),
            ],
        ] {
            let b = bundle(&m, &files);
            let dest = dir.path().join("out");
            assert!(matches!(
                extract(&b[..], &dest),
                Err(ExtractError::Bundle(BundleError::Mismatch(_)))
            ));
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "no leftovers"
            );
        }
    }
}
