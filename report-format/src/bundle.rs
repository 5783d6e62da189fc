//! The plaintext inside a sealed report: a tar stream.
//!
//! ```text
//! manifest.json        first, so a reader can check every file as it streams
//! report.pdf           the human-readable summary
//! media/NAME …         the media, in manifest order
//! ```
//!
//! Tar, because it streams: a 2 GB video never has to fit in memory on
//! either side. Entries are plain files only, mode 0600, owner 0, time 0
//! (no capture time or user name leaks through the container). Readers
//! accept nothing else: no links, no directories, no device files, no path
//! outside this layout, no duplicates — so extracting a report can never
//! write anywhere but its own directory.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use crate::manifest::{Manifest, ManifestError, is_safe_media_path};

/// Path of the manifest in a bundle.
pub const MANIFEST_PATH: &str = "manifest.json";
/// Path of the PDF summary in a bundle.
pub const REPORT_PDF_PATH: &str = "report.pdf";
/// Largest manifest accepted.
pub const MAX_MANIFEST_LEN: u64 = 1 << 20;

/// What can be wrong with a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a tar stream, or a damaged one.
    #[error("the report bundle is malformed: {0}")]
    Malformed(String),
    /// An entry that the layout does not allow.
    #[error("the report bundle holds a forbidden entry: {0}")]
    Forbidden(String),
    /// The manifest is missing, unreadable or breaks a rule.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A file differs from what the manifest records, is missing or is not
    /// listed.
    #[error("the report does not match its manifest: {0}")]
    Mismatch(String),
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

fn allowed_path(p: &str) -> bool {
    p == MANIFEST_PATH || p == REPORT_PDF_PATH || is_safe_media_path(p)
}

/// Whether `first` (at least the first 512 bytes of an opened file, or all
/// of a shorter one) starts a report bundle: a ustar header for
/// `manifest.json`, which every writer puts first. A viewer uses it to tell
/// a report from a plain sealed file; a report is then read with
/// [`read_verified`], which decides.
pub fn looks_like_report(first: &[u8]) -> bool {
    let Some(block) = first.get(..512) else {
        return false;
    };
    let name = &block[..100];
    let named = name.starts_with(MANIFEST_PATH.as_bytes())
        && name[MANIFEST_PATH.len()..].iter().all(|&b| b == 0);
    named && &block[257..262] == b"ustar"
}

/// A file entry's tar header: a plain file, mode 0600, owner 0, time 0.
fn entry_header(path: &str, size: u64) -> Result<tar::Header, BundleError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .map_err(|e| BundleError::Malformed(e.to_string()))?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// The manifest as a bundle holds it, checked first.
fn manifest_json(manifest: &Manifest) -> Result<Vec<u8>, BundleError> {
    manifest.validate()?;
    serde_json::to_vec_pretty(manifest).map_err(|e| BundleError::Malformed(e.to_string()))
}

/// The layout's rules for a new entry: an allowed path, not seen before.
fn admit(seen: &mut HashSet<String>, path: &str) -> Result<(), BundleError> {
    if !allowed_path(path) || !seen.insert(path.to_owned()) {
        return Err(BundleError::Forbidden(path.to_owned()));
    }
    Ok(())
}

/// Tar's block, and its end: two zero blocks.
const BLOCK: u64 = 512;
const TRAILER: [u8; 1024] = [0; 1024];

fn padding(size: u64) -> usize {
    ((BLOCK - size % BLOCK) % BLOCK) as usize
}

/// Writes a bundle, pushed by the caller. The manifest goes first.
pub struct BundleWriter<W: Write> {
    tar: tar::Builder<W>,
    seen: HashSet<String>,
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle with its manifest (which must validate).
    pub fn new(out: W, manifest: &Manifest) -> Result<Self, BundleError> {
        let json = manifest_json(manifest)?;
        let mut w = BundleWriter {
            tar: tar::Builder::new(out),
            seen: HashSet::new(),
        };
        w.add(MANIFEST_PATH, json.len() as u64, &json[..])?;
        Ok(w)
    }

    /// Adds one file of `size` bytes read from `data`.
    pub fn add(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), BundleError> {
        admit(&mut self.seen, path)?;
        let h = entry_header(path, size)?;
        self.tar.append(&h, Exact::new(data, size))?;
        Ok(())
    }

    /// Ends the stream and returns the writer.
    pub fn finish(self) -> Result<W, BundleError> {
        Ok(self.tar.into_inner()?)
    }
}

/// The same bundle as [`BundleWriter`] writes, byte for byte, pulled by the
/// reader instead: for a sealer that asks for its plaintext a chunk at a
/// time (one that waits for another engine between chunks, as a browser's
/// does), and whose length is known before the first byte is read.
pub struct BundleReader<'a> {
    parts: std::collections::VecDeque<Box<dyn Read + 'a>>,
    seen: HashSet<String>,
    len: u64,
}

impl<'a> BundleReader<'a> {
    /// Starts a bundle with its manifest (which must validate).
    pub fn new(manifest: &Manifest) -> Result<Self, BundleError> {
        let json = manifest_json(manifest)?;
        let mut r = BundleReader {
            parts: Default::default(),
            seen: HashSet::new(),
            len: 0,
        };
        let n = json.len() as u64;
        r.add(MANIFEST_PATH, n, io::Cursor::new(json))?;
        Ok(r)
    }

    /// Adds one file of `size` bytes, to be read from `data` when its turn
    /// comes; `data` holding fewer bytes is an error then.
    pub fn add(&mut self, path: &str, size: u64, data: impl Read + 'a) -> Result<(), BundleError> {
        admit(&mut self.seen, path)?;
        let h = entry_header(path, size)?;
        let pad = padding(size);
        self.parts
            .push_back(Box::new(io::Cursor::new(*h.as_bytes())));
        self.parts.push_back(Box::new(Exact::new(data, size)));
        self.parts.push_back(Box::new(&TRAILER[..pad]));
        self.len += BLOCK + size + pad as u64;
        Ok(())
    }

    /// Ends the bundle: what is read after the last file.
    pub fn finish(mut self) -> Self {
        self.parts.push_back(Box::new(&TRAILER[..]));
        self.len += TRAILER.len() as u64;
        self
    }

    /// The bundle's length in bytes (once finished, the whole of it).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been added, not even a manifest (never, once
    /// made by [`BundleReader::new`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for BundleReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(part) = self.parts.front_mut() {
            let n = part.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.parts.pop_front();
        }
        Ok(0)
    }
}

/// A file's contents, exactly `size` bytes of them: fewer is an error
/// (the entry's header already promised `size`), more are not read.
struct Exact<R> {
    inner: io::Take<R>,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, size: u64) -> Self {
        Exact {
            inner: inner.take(size),
        }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.inner.limit() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a file of the report ended before its recorded size",
            ));
        }
        Ok(n)
    }
}

/// Reads a bundle, checking its layout, and hands each file after the
/// manifest to `visit(path, size, contents)`. Returns the manifest.
pub fn read_bundle<R: Read>(
    input: R,
    mut visit: impl FnMut(&str, u64, &mut dyn Read) -> Result<(), BundleError>,
) -> Result<Manifest, BundleError> {
    let mut manifest = None;
    read_bundle_with_manifest(input, &mut manifest, |_, p, n, r| visit(p, n, r))
}

/// A damaged tar stream. The tar reader's own message can quote bytes of
/// the damaged header (a file name, say), which come from inside the
/// report: only the kind of failure is kept, so that errors can be logged.
fn damaged(e: io::Error) -> BundleError {
    BundleError::Malformed(match e.kind() {
        io::ErrorKind::UnexpectedEof => "it ends inside an entry".into(),
        _ => "a tar header is damaged".into(),
    })
}

fn read_bundle_with_manifest<R: Read>(
    input: R,
    manifest: &mut Option<Manifest>,
    mut visit: impl FnMut(&Manifest, &str, u64, &mut dyn Read) -> Result<(), BundleError>,
) -> Result<Manifest, BundleError> {
    let mut archive = tar::Archive::new(input);
    let mut seen = HashSet::new();
    let entries = archive.entries().map_err(damaged)?;
    for entry in entries {
        let mut entry = entry.map_err(damaged)?;
        let path = entry
            .path()
            .map_err(damaged)?
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| BundleError::Forbidden("a non-UTF-8 path".into()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BundleError::Forbidden(format!(
                "{path} is not a plain file"
            )));
        }
        if !allowed_path(&path) {
            // Named only by kind: the path came from inside the report.
            return Err(BundleError::Forbidden(
                "an entry outside manifest.json, report.pdf and media/".into(),
            ));
        }
        if !seen.insert(path.clone()) {
            return Err(BundleError::Forbidden(format!("{path} twice")));
        }
        let size = entry.size();
        match (&*manifest, path.as_str()) {
            (None, MANIFEST_PATH) => {
                if size > MAX_MANIFEST_LEN {
                    return Err(BundleError::Malformed("the manifest is too large".into()));
                }
                let mut buf = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut buf)?;
                // serde's message can quote a value of the manifest (a
                // patient's name); say where, not what.
                let m: Manifest = serde_json::from_slice(&buf).map_err(|e| {
                    ManifestError(format!(
                        "manifest.json: {} at line {} column {}",
                        match e.classify() {
                            serde_json::error::Category::Syntax
                            | serde_json::error::Category::Eof => "not valid JSON",
                            _ => "not a medseal manifest",
                        },
                        e.line(),
                        e.column()
                    ))
                })?;
                m.validate()?;
                *manifest = Some(m);
            }
            (None, _) => {
                return Err(BundleError::Malformed(
                    "manifest.json must come first".into(),
                ));
            }
            (Some(m), _) => visit(m, &path, size, &mut entry)?,
        }
    }
    manifest
        .take()
        .ok_or_else(|| BundleError::Malformed("no manifest.json".into()))
}

/// Reads a bundle and checks every file against the manifest: each media
/// file listed, present once, with the recorded size and SHA-256; the PDF
/// present; nothing else. `visit(manifest, path, contents)` sees each file
/// as it streams (it need not read all of it); the verdict comes at the end,
/// so a caller must not act on what it saw until this returns `Ok`.
pub fn read_verified<R: Read>(
    input: R,
    mut visit: impl FnMut(&Manifest, &str, &mut dyn Read) -> Result<(), BundleError>,
) -> Result<Manifest, BundleError> {
    use sha2::{Digest, Sha256};
    let mut found: std::collections::BTreeMap<String, (u64, String)> = Default::default();
    let mut current: Option<Manifest> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let manifest = read_bundle_with_manifest(input, &mut current, |m, path, _size, data| {
        if path != REPORT_PDF_PATH && !m.media.iter().any(|e| e.path == path) {
            return Err(BundleError::Mismatch(format!(
                "{path} is not listed in the manifest"
            )));
        }
        let mut hashing = HashingReader {
            inner: data,
            hasher: Sha256::new(),
            n: 0,
        };
        visit(m, path, &mut hashing)?;
        // Whatever the visitor left unread still counts towards the hash.
        while hashing.read(&mut buf)? != 0 {}
        let hash = crate::header::hex_lower(&hashing.hasher.finalize());
        found.insert(path.to_owned(), (hashing.n, hash));
        Ok(())
    })?;
    for m in &manifest.media {
        match found.remove(&m.path) {
            Some((size, hash)) if size == m.size && hash == m.sha256 => {}
            Some(_) => {
                return Err(BundleError::Mismatch(format!(
                    "{} differs from its recorded size or SHA-256",
                    m.path
                )));
            }
            None => return Err(BundleError::Mismatch(format!("{} is missing", m.path))),
        }
    }
    if found.remove(REPORT_PDF_PATH).is_none() {
        return Err(BundleError::Mismatch(format!(
            "{REPORT_PDF_PATH} is missing"
        )));
    }
    Ok(manifest)
}

struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: sha2::Sha256,
    n: u64,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let k = self.inner.read(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;

    #[test]
    fn a_report_is_told_from_other_plaintext() {
        let w = BundleWriter::new(Vec::new(), &sample()).unwrap();
        let b = w.finish().unwrap();
        assert!(looks_like_report(&b));
        assert!(!looks_like_report(&b[..511]));
        assert!(!looks_like_report(b"%PDF-1.7 and so on"));
        let mut other = b.clone();
        other[..13].copy_from_slice(b"manifest.jsoX");
        assert!(!looks_like_report(&other));
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let mut w = BundleWriter::new(Vec::new(), &m).unwrap();
        w.add("report.pdf", 4, &b"%PDF"[..]).unwrap();
        w.add("media/photo-1.jpg", 10, &[7u8; 10][..]).unwrap();
        assert!(matches!(
            w.add("media/photo-1.jpg", 1, &b"x"[..]),
            Err(BundleError::Forbidden(_))
        ));
        assert!(w.add("../evil", 1, &b"x"[..]).is_err());
        let bytes = w.finish().unwrap();
        let mut got = Vec::new();
        let back = read_bundle(&bytes[..], |p, n, r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            got.push((p.to_owned(), n, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(back, m);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], ("media/photo-1.jpg".to_owned(), 10, vec![7u8; 10]));
    }

    #[test]
    fn pulled_and_pushed_bundles_are_the_same_bytes() {
        let m = sample();
        for sizes in [&[0u64, 0][..], &[1, 511], &[512, 513], &[1023, 1024, 5000]] {
            let files: Vec<(String, Vec<u8>)> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let path = if i == 0 {
                        "report.pdf".to_owned()
                    } else {
                        format!("media/photo-{i}.jpg")
                    };
                    (path, (0..n).map(|b| (b % 253) as u8).collect())
                })
                .collect();
            let mut w = BundleWriter::new(Vec::new(), &m).unwrap();
            let mut r = BundleReader::new(&m).unwrap();
            for (p, d) in &files {
                w.add(p, d.len() as u64, &d[..]).unwrap();
                r.add(p, d.len() as u64, &d[..]).unwrap();
            }
            let pushed = w.finish().unwrap();
            let r = r.finish();
            assert_eq!(r.len(), pushed.len() as u64, "{sizes:?}");
            let mut pulled = Vec::new();
            // A small buffer crosses every part boundary.
            let mut r = io::BufReader::with_capacity(7, r);
            io::copy(&mut r, &mut pulled).unwrap();
            assert_eq!(pulled, pushed, "{sizes:?}");
        }
    }

    #[test]
    fn a_file_shorter_than_its_size_is_an_error_not_a_broken_bundle() {
        let mut r = BundleReader::new(&sample()).unwrap();
        r.add("report.pdf", 10, &b"%PDF"[..]).unwrap();
        let mut out = Vec::new();
        let e = io::copy(&mut r.finish(), &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut w = BundleWriter::new(Vec::new(), &sample()).unwrap();
        assert!(w.add("report.pdf", 10, &b"%PDF"[..]).is_err());
        let mut r = BundleReader::new(&sample()).unwrap();
        assert!(matches!(
            r.add("../evil", 1, &b"x"[..]),
            Err(BundleError::Forbidden(_))
        ));
        assert!(r.add("manifest.json", 1, &b"x"[..]).is_err());
    }

    fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            // Written raw: `set_path` itself refuses the hostile names tested here.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_size(data.len() as u64);
            h.set_entry_type(*kind);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_bundles_are_refused() {
        let manifest = serde_json::to_vec(&sample()).unwrap();
        let ok = |_: &str, _: u64, _: &mut dyn Read| Ok(());
        let cases: Vec<Vec<u8>> = vec![
            raw_tar(&[("media/photo-1.jpg", tar::EntryType::Regular, b"x")]),
            raw_tar(&[
                ("manifest.json", tar::EntryType::Regular, &manifest),
                ("media/../../etc/passwd", tar::EntryType::Regular, b"x"),
            ]),
            raw_tar(&[
                ("manifest.json", tar::EntryType::Regular, &manifest),
                ("media/link", tar::EntryType::Symlink, b""),
            ]),
            raw_tar(&[
                ("manifest.json", tar::EntryType::Regular, &manifest),
                ("media/a", tar::EntryType::Regular, b"x"),
                ("media/a", tar::EntryType::Regular, b"y"),
            ]),
            raw_tar(&[("manifest.json", tar::EntryType::Regular, b"{not json")]),
            b"not a tar file at all, just some bytes that are long enough to fill a header block? no".repeat(8),
            Vec::new(),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert!(read_bundle(&c[..], ok).is_err(), "case {i} accepted");
        }
    }
}
