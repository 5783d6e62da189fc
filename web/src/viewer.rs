//! Opening a sealed file in the browser, independent of JavaScript.
//!
//! The worker gives a reader over the chosen file and a writer that
//! collects plaintext pieces; [`open`] verifies and decrypts in place, one
//! chunk at a time on the calling thread (a browser's WebAssembly has no
//! threads). The caller shows nothing unless [`open`] returns `Ok`: a
//! damaged or tampered file releases no result, though verified chunks
//! before the damage were written to the collector, which the caller drops.

use std::io::{Read, Write};
use std::num::NonZeroUsize;

use base64::Engine;
use medseal_format::offload::Offload;
use medseal_format::{ErrorKind, Header, Key, OpenOptions, Opener, Secret};
use zeroize::Zeroizing;

/// The secret the user or the key server gave.
pub enum Unlock<'a> {
    /// A data key (from the key server) or an organisation key, base64.
    KeyBase64(&'a str),
    /// A password, as typed (its UTF-8 bytes, as the format specifies).
    Password(&'a str),
}

/// Why a file could not be opened, in the words the viewer shows, with the
/// class the page acts on.
#[derive(Debug)]
pub struct ViewError {
    /// `key` (ask again), `damaged` (show "damaged or tampered", nothing
    /// else), `format` (not a medseal file), `policy`, `environment`.
    pub class: &'static str,
    /// One line for the user.
    pub message: String,
}

impl From<medseal_format::Error> for ViewError {
    fn from(e: medseal_format::Error) -> Self {
        let class = match e.kind() {
            ErrorKind::Key => "key",
            ErrorKind::Integrity => "damaged",
            ErrorKind::Format => "format",
            ErrorKind::Policy => "policy",
            ErrorKind::Environment => "environment",
        };
        ViewError {
            class,
            message: e.to_string(),
        }
    }
}

/// The header of a sealed file as JSON (the description `medseal inspect`
/// prints): which key server and key id, or which organisation key, or a
/// password. `sealed_len` is the file's size. Needs no key.
pub fn describe<R: Read>(mut input: R, sealed_len: u64) -> Result<String, ViewError> {
    let header = Header::read_from(&mut input)?;
    Ok(medseal_format::header::describe(&header, Some(sealed_len)).to_string())
}

/// Plans opening the sealed file read from `input` (`sealed_len` bytes)
/// with the browser's WebCrypto doing the bulk AES and HMAC under the
/// format's control (see `medseal_format::offload`): the header is read and
/// authenticated here.
pub fn plan<R: Read>(input: R, unlock: Unlock<'_>, sealed_len: u64) -> Result<Offload, ViewError> {
    match unlock {
        Unlock::KeyBase64(b64) => {
            let key = key_from_base64(b64)?;
            Ok(Offload::new(input, Secret::Key(&key), sealed_len)?)
        }
        Unlock::Password(pw) => Ok(Offload::new(
            input,
            Secret::Password(pw.as_bytes()),
            sealed_len,
        )?),
    }
}

fn key_from_base64(b64: &str) -> Result<Key, ViewError> {
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| ViewError {
                class: "key",
                message: "the key is not base64".into(),
            })?,
    );
    Ok(Key::from_slice(&raw)?)
}

/// Opens the sealed file `input` into `output`; answers the plaintext
/// length. See the module doc for what a failure leaves in `output`.
pub fn open<R: Read, W: Write>(input: R, unlock: Unlock<'_>, output: W) -> Result<u64, ViewError> {
    let opener = Opener::new(input)?;
    let one = OpenOptions {
        threads: NonZeroUsize::new(1),
    };
    let summary = match unlock {
        Unlock::KeyBase64(b64) => {
            let key = key_from_base64(b64)?;
            opener.open(Secret::Key(&key), output, &one)?
        }
        Unlock::Password(pw) => opener.open(Secret::Password(pw.as_bytes()), output, &one)?,
    };
    Ok(summary.plaintext_len)
}

/// What an opened file turned out to be.
pub enum Contents {
    /// A report bundle, every file checked against its manifest: the
    /// manifest as JSON.
    Report(String),
    /// Not a report: a plain sealed file, to be saved as it is.
    Plain,
}

/// Reads an opened file (the plaintext [`open`] produced) again: when it is
/// a report bundle, hands each file's bytes to `piece(path, bytes)` in
/// order and checks every one against the manifest (size, SHA-256, nothing
/// missing or extra). As with [`open`], the caller shows nothing unless
/// this returns `Ok`: a bundle that breaks its manifest is "damaged".
pub fn read_report<R: Read>(
    mut plain: R,
    mut piece: impl FnMut(&str, &[u8]) -> Result<(), ViewError>,
) -> Result<Contents, ViewError> {
    let mut first = Vec::with_capacity(512);
    (&mut plain)
        .take(512)
        .read_to_end(&mut first)
        .map_err(io_error)?;
    if !medseal_format::bundle::looks_like_report(&first) {
        return Ok(Contents::Plain);
    }
    let mut failed = None;
    let mut buf = vec![0u8; 256 * 1024];
    let whole = std::io::Cursor::new(first).chain(plain);
    let checked = medseal_format::bundle::read_verified(whole, |_, path, data| {
        loop {
            let n = data.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if let Err(e) = piece(path, &buf[..n]) {
                failed = Some(e);
                return Err(std::io::Error::other("stopped").into());
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let manifest = checked.map_err(|e| ViewError {
        class: "damaged",
        message: e.to_string(),
    })?;
    serde_json::to_string(&manifest)
        .map(Contents::Report)
        .map_err(|e| ViewError {
            class: "environment",
            message: e.to_string(),
        })
}

fn io_error(e: std::io::Error) -> ViewError {
    ViewError {
        class: "environment",
        message: format!("reading the opened file failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medseal_format::bundle::BundleWriter;
    use medseal_format::manifest::Manifest;
    use medseal_format::{SealKey, SealOptions, seal};

    fn report(photo: &[u8]) -> (Manifest, Vec<u8>) {
        use sha2::Digest;
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "manifest_version": 1,
            "report_id": "r_1",
            "created_at": "2026-12-02T08:00:00Z",
            "capturer": {"name": "Alice", "email": "alice@st.example"},
            "organisation": "St Elsewhere",
            "patient": {"identifiers": [{"system": "mrn", "value": "MRN-1"}], "minimised": false},
            "consent": {"method": "verbal-witnessed", "given_by": "patient", "scope": ["care"], "witness": "Nurse Jones",
                        "recorded_at": "2026-12-02T08:00:00Z"},
            "media": [{"path": "media/photo-1.jpg", "kind": "photo", "mime_type": "image/jpeg",
                       "size": photo.len(), "sha256": hex(&sha2::Sha256::digest(photo))}]
        }))
        .unwrap();
        let mut w = BundleWriter::new(Vec::new(), &m).unwrap();
        w.add("report.pdf", 8, &b"%PDF-1.7"[..]).unwrap();
        w.add("media/photo-1.jpg", photo.len() as u64, photo)
            .unwrap();
        (m, w.finish().unwrap())
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn a_report_is_read_file_by_file_and_plain_files_are_left_alone() {
        let photo: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        let (m, bundle) = report(&photo);
        let mut files: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        let got = read_report(&bundle[..], |p, b| {
            files.entry(p.to_owned()).or_default().extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        let Contents::Report(json) = got else {
            panic!("not read as a report")
        };
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        assert_eq!(files["media/photo-1.jpg"], photo);
        assert_eq!(files["report.pdf"], b"%PDF-1.7");
        assert!(matches!(
            read_report(&b"just some notes"[..], |_, _| Ok(())).unwrap(),
            Contents::Plain
        ));
    }

    #[test]
    fn a_bundle_that_breaks_its_manifest_is_damaged() {
        let (_, mut bundle) = report(&[9u8; 5000]);
        // A byte of the photo (after the manifest's and the PDF's blocks).
        let at = bundle.len() - 1024 - 5000 + 17;
        bundle[at] ^= 0x40;
        let e = read_report(&bundle[..], |_, _| Ok(())).err().unwrap();
        assert_eq!(e.class, "damaged", "{}", e.message);
    }

    fn sealed_with(key: &Key, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(
            SealKey::KeyServer {
                key,
                origin: "https://keys.st-elsewhere.example",
                key_id: "k_1",
            },
            plain,
            &mut out,
            &SealOptions::default(),
        )
        .unwrap();
        out
    }

    #[test]
    fn a_report_opens_with_its_key_and_is_described_without_it() {
        let key = Key::generate().unwrap();
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = sealed_with(&key, &plain);
        let doc: serde_json::Value =
            serde_json::from_str(&describe(&sealed[..], sealed.len() as u64).unwrap()).unwrap();
        assert_eq!(doc["keyserver"], "https://keys.st-elsewhere.example");
        assert_eq!(doc["key_id"], "k_1");
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.expose_secret());
        let mut out = Vec::new();
        let n = open(&sealed[..], Unlock::KeyBase64(&b64), &mut out).unwrap();
        assert_eq!(n, plain.len() as u64);
        assert_eq!(out, plain);
    }

    #[test]
    fn damage_and_wrong_keys_are_classed_for_the_page() {
        let key = Key::generate().unwrap();
        let mut sealed = sealed_with(&key, &[7u8; 100_000]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.expose_secret());
        let other = Key::generate().unwrap();
        let wrong = base64::engine::general_purpose::STANDARD.encode(other.expose_secret());
        let e = open(&sealed[..], Unlock::KeyBase64(&wrong), Vec::new()).unwrap_err();
        assert_eq!(e.class, "key", "{}", e.message);
        let at = sealed.len() - 40;
        sealed[at] ^= 1;
        let e = open(&sealed[..], Unlock::KeyBase64(&b64), Vec::new()).unwrap_err();
        assert_eq!(e.class, "damaged", "{}", e.message);
        let e = open(
            &b"not sealed at all"[..],
            Unlock::Password("pw"),
            Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.class, "format", "{}", e.message);
    }
}
