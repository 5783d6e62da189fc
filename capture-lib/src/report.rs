//! Building a report: media taken in, manifest and PDF made, and the whole
//! bundle streamed straight into the sealer.
//!
//! Photos are sanitised in memory (a 12-megapixel JPEG is a few MB). On the
//! command line audio and video are hashed from disk, then streamed again
//! into the bundle, so a 2 GB video never sits in memory; in the browser
//! they come as bytes, as the recorder made them. The sealer reads the
//! bundle as it goes ([`Report::bundle`]; in the browser, a chunk at a
//! time for WebCrypto to seal, [`Report::into_bundle`]): no plaintext
//! report is ever written to disk or kept in the browser.

#[cfg(feature = "native")]
use std::fs::File;
#[cfg(feature = "native")]
use std::io::BufReader;
use std::io::{Read, Write};
#[cfg(feature = "native")]
use std::path::PathBuf;

use medseal_format::bundle::{BundleError, BundleReader, REPORT_PDF_PATH};
use medseal_format::manifest::*;
use medseal_format::{SealKey, SealOptions, SealSummary, SealWriter};
use sha2::{Digest, Sha256};

use crate::media::{self, MediaError, Photo};
use crate::pdf;

/// Everything that can stop a report being built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A media file could not be taken in.
    #[error("{path}: {source}")]
    Media {
        /// Which file.
        path: String,
        /// Why.
        source: MediaError,
    },
    /// The report breaks a manifest rule (e.g. consent).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A patient identifier fails its system's check (an NHS number's
    /// check digit).
    #[error(transparent)]
    Identifier(#[from] crate::identifiers::IdentifierError),
    /// Making the PDF failed.
    #[error(transparent)]
    Pdf(#[from] pdf::PdfError),
    /// Writing the bundle failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] medseal_format::Error),
    /// I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a media file's bytes are.
#[derive(Clone)]
pub enum MediaSource {
    /// A file on disk, read when the report is built (and, for audio and
    /// video, again when it is sealed).
    #[cfg(feature = "native")]
    Path(PathBuf),
    /// Bytes in memory under a name for messages (a browser's capture or
    /// chosen file), dropped as soon as they are taken in.
    Memory {
        /// What to call it in an error, e.g. the file's name.
        name: String,
        /// The bytes as captured.
        bytes: Vec<u8>,
    },
}

impl MediaSource {
    /// The name errors call it by.
    pub fn name(&self) -> String {
        match self {
            #[cfg(feature = "native")]
            MediaSource::Path(p) => p.display().to_string(),
            MediaSource::Memory { name, .. } => name.clone(),
        }
    }

    /// Its first bytes (up to 16), to tell what it is.
    fn head(&self) -> Result<Vec<u8>, MediaError> {
        match self {
            #[cfg(feature = "native")]
            MediaSource::Path(p) => {
                let mut head = [0u8; 16];
                let n = File::open(p).and_then(|mut f| f.read(&mut head))?;
                Ok(head[..n].to_vec())
            }
            MediaSource::Memory { bytes, .. } => Ok(bytes[..bytes.len().min(16)].to_vec()),
        }
    }

    /// All of it, for a photo (bounded, as a photo is held in memory).
    fn into_photo_bytes(self) -> Result<Vec<u8>, MediaError> {
        match self {
            #[cfg(feature = "native")]
            MediaSource::Path(p) => Ok(File::open(p)
                .and_then(|f| medseal_format::read_bounded(f, media::MAX_PHOTO_BYTES))?),
            MediaSource::Memory { bytes, .. } => {
                if bytes.len() as u64 > media::MAX_PHOTO_BYTES {
                    return Err(MediaError::Invalid(format!(
                        "a photo may be at most {} MiB",
                        media::MAX_PHOTO_BYTES >> 20
                    )));
                }
                Ok(bytes)
            }
        }
    }
}

impl std::fmt::Debug for MediaSource {
    // Never the bytes: they are the patient's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MediaSource({})", self.name())
    }
}

/// One media file to take in.
#[derive(Debug, Clone)]
pub struct MediaInput {
    /// What it is.
    pub kind: MediaKind,
    /// Where it is.
    pub source: MediaSource,
}

impl MediaInput {
    /// A file on disk.
    #[cfg(feature = "native")]
    pub fn file(kind: MediaKind, path: impl Into<PathBuf>) -> Self {
        MediaInput {
            kind,
            source: MediaSource::Path(path.into()),
        }
    }

    /// Bytes in memory.
    pub fn memory(kind: MediaKind, name: impl Into<String>, bytes: Vec<u8>) -> Self {
        MediaInput {
            kind,
            source: MediaSource::Memory {
                name: name.into(),
                bytes,
            },
        }
    }
}

/// What the capturer says about the report.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// The report id.
    pub report_id: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// Who captured.
    pub capturer: Person,
    /// Their organisation.
    pub organisation: String,
    /// The patient.
    pub patient: Patient,
    /// The consent (its `evidence` becomes the evidence's bundle path when
    /// it is taken in).
    pub consent: Consent,
    /// Consent evidence (a signed form's image or a recording), if any.
    pub consent_evidence: Option<MediaSource>,
    /// Body site.
    pub body_site: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// The media, in order.
    pub media: Vec<MediaInput>,
    /// The capturing device's offset from UTC, in seconds east: the PDF
    /// shows times as the clinician's clock did.
    pub utc_offset_seconds: i32,
}

enum Content {
    /// A sanitised photo, by its index in `Report::photos` (held once).
    Photo(usize),
    /// A file streamed from disk, and its size when it was hashed.
    #[cfg(feature = "native")]
    Disk(PathBuf, u64),
    /// A recording held as it came.
    Memory(Vec<u8>),
}

/// A report ready to be sealed.
pub struct Report {
    /// Its manifest.
    pub manifest: Manifest,
    pdf: Vec<u8>,
    photos: Vec<Photo>,
    contents: Vec<Content>,
}

fn media_err(name: String) -> impl Fn(MediaError) -> ReportError {
    move |source| ReportError::Media {
        path: name.clone(),
        source,
    }
}

fn av_ext(mime: &str) -> &'static str {
    match mime {
        "audio/wav" => "wav",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "audio/webm" | "video/webm" => "webm",
        "audio/ogg" => "ogg",
        "video/quicktime" => "mov",
        _ => "mp4",
    }
}

impl Report {
    /// Takes in the media, builds and validates the manifest, makes the PDF.
    pub fn build(mut spec: ReportSpec) -> Result<Report, ReportError> {
        // A mistyped identifier files the report under another patient:
        // checked first, before any media is read.
        spec.patient.identifiers = spec
            .patient
            .identifiers
            .iter()
            .map(crate::identifiers::check)
            .collect::<Result<_, _>>()?;
        let mut entries = Vec::new();
        let mut contents = Vec::new();
        // Sanitised photos (and photo-like consent evidence), held once.
        let mut photos: Vec<Photo> = Vec::new();
        // (manifest entry, photo) pairs that get a page in the PDF.
        let mut pages: Vec<(usize, usize)> = Vec::new();
        let mut counters = [0usize; 4];
        let mut inputs = std::mem::take(&mut spec.media);
        if let Some(source) = spec.consent_evidence.take() {
            inputs.push(MediaInput {
                kind: MediaKind::ConsentEvidence,
                source,
            });
        }
        let mut consent = spec.consent.clone();
        // Taken by value: a photo's bytes as captured are dropped as soon as
        // its sanitised copy exists, so the two never add up for long.
        for input in inputs {
            let err = media_err(input.source.name());
            let head = input.source.head().map_err(&err)?;
            let head = &head[..];
            let is_photo = media::sniff_photo(head).is_ok();
            let treat_as_photo = match input.kind {
                MediaKind::Photo => true,
                MediaKind::ConsentEvidence => is_photo,
                _ => false,
            };
            let slot = match input.kind {
                MediaKind::Photo => 0,
                MediaKind::Audio => 1,
                MediaKind::Video => 2,
                MediaKind::ConsentEvidence => 3,
            };
            counters[slot] += 1;
            let stem = match input.kind {
                MediaKind::Photo => format!("photo-{}", counters[slot]),
                MediaKind::Audio => format!("audio-{}", counters[slot]),
                MediaKind::Video => format!("video-{}", counters[slot]),
                MediaKind::ConsentEvidence => "consent-evidence".to_owned(),
            };
            if treat_as_photo {
                let bytes = input.source.into_photo_bytes().map_err(&err)?;
                let photo = media::sanitise_photo(bytes).map_err(&err)?;
                let path = format!("media/{stem}.{}", photo.format.ext());
                entries.push(MediaEntry {
                    path,
                    kind: input.kind,
                    mime_type: photo.format.mime().to_owned(),
                    size: photo.bytes.len() as u64,
                    sha256: hex::encode(Sha256::digest(&photo.bytes)),
                    captured_at: photo.captured_at.clone(),
                    width: Some(photo.width),
                    height: Some(photo.height),
                    duration_seconds: None,
                });
                contents.push(Content::Photo(photos.len()));
                if input.kind == MediaKind::Photo {
                    pages.push((entries.len() - 1, photos.len()));
                }
                photos.push(photo);
            } else {
                let mime = media::sniff_av(head).ok_or_else(|| {
                    err(MediaError::Unsupported(match input.kind {
                        MediaKind::Video => "not an MP4, MOV or WebM video".into(),
                        _ => "not a WAV, MP3, M4A, WebM or Ogg recording".into(),
                    }))
                })?;
                let expect_video = input.kind == MediaKind::Video;
                // MP4 and WebM hold audio or video; the others say which.
                let either = ["video/mp4", "video/webm"].contains(&mime);
                if mime.starts_with("video/") != expect_video && !either {
                    return Err(err(MediaError::Invalid(format!(
                        "this is {mime}, not {}",
                        if expect_video { "a video" } else { "audio" }
                    ))));
                }
                let mime = match (expect_video, mime) {
                    (false, "video/mp4") => "audio/mp4",
                    (false, "video/webm") => "audio/webm",
                    _ => mime,
                };
                let (sha256, size, duration_seconds, content) = match input.source {
                    #[cfg(feature = "native")]
                    MediaSource::Path(p) => {
                        let file = File::open(&p).map_err(|e| err(MediaError::Io(e)))?;
                        let (sha256, size) =
                            media::hash_stream(BufReader::new(file)).map_err(&err)?;
                        let duration = media::av_duration(&p);
                        (sha256, size, duration, Content::Disk(p, size))
                    }
                    MediaSource::Memory { bytes, .. } => (
                        hex::encode(Sha256::digest(&bytes)),
                        bytes.len() as u64,
                        media::av_duration_of(&bytes),
                        Content::Memory(bytes),
                    ),
                };
                entries.push(MediaEntry {
                    path: format!("media/{stem}.{}", av_ext(mime)),
                    kind: input.kind,
                    mime_type: mime.to_owned(),
                    size,
                    sha256,
                    captured_at: None,
                    width: None,
                    height: None,
                    duration_seconds,
                });
                contents.push(content);
            }
            if input.kind == MediaKind::ConsentEvidence {
                consent.evidence = entries.last().map(|e| e.path.clone());
            }
        }
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            report_id: spec.report_id,
            created_at: spec.created_at,
            capturer: spec.capturer,
            organisation: spec.organisation,
            patient: spec.patient,
            consent,
            body_site: spec.body_site,
            notes: spec.notes,
            media: entries,
        };
        manifest.validate()?;
        let pairs: Vec<(&MediaEntry, &Photo)> = pages
            .iter()
            .map(|(e, p)| (&manifest.media[*e], &photos[*p]))
            .collect();
        let pdf = pdf::render(&manifest, &pairs, spec.utc_offset_seconds)?;
        Ok(Report {
            manifest,
            pdf,
            photos,
            contents,
        })
    }

    /// The bundle (manifest, PDF, media) as a reader, its length known
    /// before it is read: what every sealer of this report reads.
    pub fn bundle(&self) -> Result<BundleReader<'_>, ReportError> {
        let media = self.contents.iter().map(|content| {
            let source: (u64, Box<dyn Read + '_>) = match content {
                Content::Photo(i) => {
                    let bytes = &self.photos[*i].bytes;
                    (bytes.len() as u64, Box::new(&bytes[..]))
                }
                Content::Memory(bytes) => (bytes.len() as u64, Box::new(&bytes[..])),
                #[cfg(feature = "native")]
                Content::Disk(p, size) => (*size, Box::new(open_unchanged(p, *size)?)),
            };
            Ok(source)
        });
        let pdf: Box<dyn Read + '_> = Box::new(&self.pdf[..]);
        assemble(&self.manifest, (self.pdf.len() as u64, pdf), media)
    }

    /// The bundle as [`Report::bundle`] reads it, owning the report: each
    /// file's memory is freed as soon as it has been read, so a sealer that
    /// pulls the bundle a chunk at a time never holds the report twice.
    pub fn into_bundle(self) -> Result<BundleReader<'static>, ReportError> {
        let Report {
            manifest,
            pdf,
            mut photos,
            contents,
        } = self;
        let media = contents.into_iter().map(|content| {
            let source: (u64, Box<dyn Read>) = match content {
                Content::Photo(i) => {
                    let bytes = std::mem::take(&mut photos[i].bytes);
                    (bytes.len() as u64, Box::new(std::io::Cursor::new(bytes)))
                }
                Content::Memory(bytes) => {
                    (bytes.len() as u64, Box::new(std::io::Cursor::new(bytes)))
                }
                #[cfg(feature = "native")]
                Content::Disk(p, size) => (size, Box::new(open_unchanged(&p, size)?)),
            };
            Ok(source)
        });
        let pdf_len = pdf.len() as u64;
        let pdf: Box<dyn Read> = Box::new(std::io::Cursor::new(pdf));
        assemble(&manifest, (pdf_len, pdf), media)
    }

    /// Writes the bundle to `out`.
    pub fn write_bundle<W: Write>(&self, mut out: W) -> Result<W, ReportError> {
        std::io::copy(&mut self.bundle()?, &mut out)?;
        Ok(out)
    }

    /// Seals the bundle into `out`, encrypting on every core.
    #[cfg(feature = "native")]
    pub fn seal<W: Write>(
        &self,
        key: SealKey<'_>,
        out: W,
        opts: &SealOptions,
    ) -> Result<SealSummary, ReportError> {
        Ok(medseal_format::seal(key, self.bundle()?, out, opts)?)
    }

    /// Seals the bundle into `out` on the calling thread: for a browser
    /// with no engine to do the bulk work (see
    /// [`medseal_format::offload::SealOffload`] for one that has). Makes the
    /// same file as [`Report::seal`].
    pub fn seal_on_this_thread<W: Write>(
        &self,
        key: SealKey<'_>,
        out: W,
        opts: &SealOptions,
    ) -> Result<(W, SealSummary), ReportError> {
        let mut sealer = SealWriter::new(key, out, opts)?;
        std::io::copy(&mut self.bundle()?, &mut sealer)?;
        Ok(sealer.finish()?)
    }
}

/// The bundle of `manifest`: its PDF, then each media file in manifest
/// order, each given as its length and its reader.
fn assemble<'a>(
    manifest: &Manifest,
    pdf: (u64, Box<dyn Read + 'a>),
    media: impl Iterator<Item = Result<(u64, Box<dyn Read + 'a>), ReportError>>,
) -> Result<BundleReader<'a>, ReportError> {
    let mut b = BundleReader::new(manifest)?;
    b.add(REPORT_PDF_PATH, pdf.0, pdf.1)?;
    for (entry, source) in manifest.media.iter().zip(media) {
        let (size, data) = source?;
        b.add(&entry.path, size, data)?;
    }
    Ok(b.finish())
}

/// A media file streamed from disk, which must not have changed since it
/// was hashed.
#[cfg(feature = "native")]
fn open_unchanged(p: &std::path::Path, size: u64) -> Result<BufReader<File>, ReportError> {
    let f = File::open(p)?;
    if f.metadata()?.len() != size {
        return Err(ReportError::Media {
            path: p.display().to_string(),
            source: MediaError::Invalid("the file changed while the report was built".into()),
        });
    }
    Ok(BufReader::with_capacity(1 << 20, f))
}

/// A fresh report id: `r_` and 32 hex digits.
pub fn new_report_id() -> Result<String, ReportError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| ReportError::Io(std::io::Error::other(format!("no randomness: {e}"))))?;
    Ok(format!("r_{}", hex::encode(b)))
}
