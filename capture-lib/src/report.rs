//! Building a report: media taken in, manifest and PDF made, and the whole
//! bundle streamed straight into the sealer.
//!
//! Photos are sanitised in memory (a 12-megapixel JPEG is a few MB); audio
//! and video are hashed from disk, then streamed again into the bundle, so
//! a 2 GB video never sits in memory. The bundle goes to the sealer through
//! an in-process pipe: no plaintext report is ever written to disk.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::PathBuf;

use medseal_format::bundle::{BundleError, BundleWriter, REPORT_PDF_PATH};
use medseal_format::manifest::*;
use medseal_format::{SealKey, SealOptions, SealSummary};
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

/// One media file to take in.
#[derive(Debug, Clone)]
pub struct MediaInput {
    /// What it is.
    pub kind: MediaKind,
    /// Where it is.
    pub path: PathBuf,
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
    /// The consent, with `evidence` naming a file on disk (it becomes a
    /// bundle path when taken in).
    pub consent: Consent,
    /// Consent evidence file, if any.
    pub consent_evidence: Option<PathBuf>,
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
    /// A file streamed from disk.
    Disk(PathBuf),
}

/// A report ready to be sealed.
pub struct Report {
    /// Its manifest.
    pub manifest: Manifest,
    pdf: Vec<u8>,
    photos: Vec<Photo>,
    contents: Vec<Content>,
}

fn media_err(path: &std::path::Path) -> impl Fn(MediaError) -> ReportError + '_ {
    move |source| ReportError::Media {
        path: path.display().to_string(),
        source,
    }
}

fn av_ext(mime: &str) -> &'static str {
    match mime {
        "audio/wav" => "wav",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
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
        let mut inputs = spec.media.clone();
        if let Some(e) = &spec.consent_evidence {
            inputs.push(MediaInput {
                kind: MediaKind::ConsentEvidence,
                path: e.clone(),
            });
        }
        let mut consent = spec.consent.clone();
        for input in &inputs {
            let err = media_err(&input.path);
            let mut head = [0u8; 16];
            let n = File::open(&input.path)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|e| err(MediaError::Io(e)))?;
            let head = &head[..n];
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
                let bytes = File::open(&input.path)
                    .and_then(|f| medseal_format::read_bounded(f, media::MAX_PHOTO_BYTES))
                    .map_err(|e| err(MediaError::Io(e)))?;
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
                        MediaKind::Video => "not an MP4 or MOV video".into(),
                        _ => "not a WAV, MP3 or M4A recording".into(),
                    }))
                })?;
                let expect_video = input.kind == MediaKind::Video;
                if mime.starts_with("video/") != expect_video && mime != "video/mp4" {
                    return Err(err(MediaError::Invalid(format!(
                        "this is {mime}, not {}",
                        if expect_video { "a video" } else { "audio" }
                    ))));
                }
                let file = File::open(&input.path).map_err(|e| err(MediaError::Io(e)))?;
                let (sha256, size) = media::hash_stream(BufReader::new(file)).map_err(&err)?;
                let mime = if !expect_video && mime == "video/mp4" {
                    "audio/mp4"
                } else {
                    mime
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
                    duration_seconds: media::av_duration(&input.path),
                });
                contents.push(Content::Disk(input.path.clone()));
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

    /// Writes the bundle (manifest, PDF, media) to `out`.
    pub fn write_bundle<W: Write>(&self, out: W) -> Result<W, ReportError> {
        let mut w = BundleWriter::new(out, &self.manifest)?;
        w.add(REPORT_PDF_PATH, self.pdf.len() as u64, &self.pdf[..])?;
        for (entry, content) in self.manifest.media.iter().zip(&self.contents) {
            match content {
                Content::Photo(i) => {
                    let b = &self.photos[*i].bytes;
                    w.add(&entry.path, b.len() as u64, &b[..])?
                }
                Content::Disk(p) => {
                    let f = File::open(p)?;
                    // The file must not have changed since it was hashed.
                    if f.metadata()?.len() != entry.size {
                        return Err(ReportError::Media {
                            path: p.display().to_string(),
                            source: MediaError::Invalid(
                                "the file changed while the report was built".into(),
                            ),
                        });
                    }
                    w.add(
                        &entry.path,
                        entry.size,
                        BufReader::with_capacity(1 << 20, f),
                    )?
                }
            }
        }
        Ok(w.finish()?)
    }

    /// Seals the bundle into `out`, streaming through an in-process pipe.
    pub fn seal<W: Write>(
        &self,
        key: SealKey<'_>,
        out: W,
        opts: &SealOptions,
    ) -> Result<SealSummary, ReportError> {
        let (reader, writer) = std::io::pipe()?;
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || self.write_bundle(writer).map(drop));
            let sealed = medseal_format::seal(key, reader, out, opts);
            let produced = producer.join().unwrap_or_else(|_| {
                Err(ReportError::Io(std::io::Error::other(
                    "bundle writer failed",
                )))
            });
            // A writer error explains a truncated stream better than the sealer's.
            produced?;
            Ok(sealed?)
        })
    }
}
