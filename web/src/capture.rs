//! Capture in the browser: the web app's form and media in, a sealed report
//! out, built by `medseal-capture` — the code of `medseal capture` — so the
//! manifest, the PDF, the metadata stripping and the consent refusals are
//! the command line's, not a second implementation.
//!
//! The page keeps the media only as long as the form is open; it hands each
//! file over once, [`Capture::build`] sanitises it (the bytes as captured
//! are dropped then), validates, and makes the PDF before any key is asked
//! for, so a refused report costs the key server nothing; then
//! [`Capture::seal`] writes the sealed file to the page a frame at a time.
//! Nothing unsealed leaves this module.

use std::io::Write;

use medseal_capture::form::CaptureForm;
use medseal_capture::report::{MediaInput, MediaSource, Report};
use medseal_format::bundle::BundleReader;
use medseal_format::manifest::MediaKind;
use medseal_format::offload::SealOffload;
use medseal_format::{Key, SealKey, SealOptions};
use zeroize::Zeroizing;

use crate::viewer::ViewError;

fn refused(message: impl std::fmt::Display) -> ViewError {
    ViewError {
        class: "refused",
        message: plain(&message.to_string()),
    }
}

/// The message without the command line's flag hints ("(--witness)"): the
/// page names its own fields.
fn plain(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" (--") {
        out.push_str(&rest[..at]);
        match rest[at..].find(')') {
            Some(end) => rest = &rest[at + end + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// One report being captured.
pub struct Capture {
    form: Option<CaptureForm>,
    report_id: String,
    created_at: String,
    utc_offset_seconds: i32,
    media: Vec<MediaInput>,
    evidence: Option<MediaSource>,
    report: Option<Report>,
}

impl Capture {
    /// A capture of the form `form_json` ([`CaptureForm`] as JSON), as
    /// report `report_id`, made at `created_at` (RFC 3339) on a device
    /// `utc_offset_seconds` east of UTC.
    pub fn new(
        form_json: &str,
        report_id: &str,
        created_at: &str,
        utc_offset_seconds: i32,
    ) -> Result<Capture, ViewError> {
        let form: CaptureForm = serde_json::from_str(form_json)
            .map_err(|e| refused(format!("the form is not complete: {e}")))?;
        if !report_id.starts_with("r_") || report_id.len() > 64 {
            return Err(refused("the report id is not one this app made"));
        }
        medseal_format::clock::parse_rfc3339(created_at)
            .ok_or_else(|| refused("the capture time is not an RFC 3339 time"))?;
        Ok(Capture {
            form: Some(form),
            report_id: report_id.to_owned(),
            created_at: created_at.to_owned(),
            utc_offset_seconds,
            media: Vec::new(),
            evidence: None,
            report: None,
        })
    }

    /// Adds a file: `kind` is `photo`, `audio`, `video` or
    /// `consent-evidence`; `name` is what errors call it.
    pub fn add(&mut self, kind: &str, name: &str, bytes: Vec<u8>) -> Result<(), ViewError> {
        let kind: MediaKind = serde_json::from_value(serde_json::Value::String(kind.into()))
            .map_err(|_| refused(format!("{kind} is not a kind of media")))?;
        if self.report.is_some() {
            return Err(refused("the report is already built"));
        }
        if kind == MediaKind::ConsentEvidence {
            if self.evidence.is_some() {
                return Err(refused("a report has one piece of consent evidence"));
            }
            self.evidence = Some(MediaSource::Memory {
                name: name.to_owned(),
                bytes,
            });
        } else {
            self.media.push(MediaInput::memory(kind, name, bytes));
        }
        Ok(())
    }

    /// Builds the report (refusing it as `medseal capture` would) and
    /// answers its manifest as JSON.
    pub fn build(&mut self) -> Result<String, ViewError> {
        let form = self
            .form
            .take()
            .ok_or_else(|| refused("the report is already built"))?;
        let spec = form
            .into_spec(
                self.report_id.clone(),
                self.created_at.clone(),
                std::mem::take(&mut self.media),
                self.evidence.take(),
                self.utc_offset_seconds,
            )
            .map_err(refused)?;
        let report = Report::build(spec).map_err(refused)?;
        let json = serde_json::to_string(&report.manifest)
            .map_err(|e| refused(format!("the manifest cannot be written: {e}")))?;
        self.report = Some(report);
        Ok(json)
    }

    /// Seals the built report with the key server's key for it (`key_id`,
    /// the key in base64) into `out`; answers the sealed length. The report
    /// is dropped afterwards, sealed or not: a capture seals once.
    pub fn seal<W: Write>(
        &mut self,
        origin: &str,
        key_id: &str,
        key_base64: &str,
        out: W,
    ) -> Result<u64, ViewError> {
        let (report, key) = self.take_for_sealing(key_base64)?;
        let key = SealKey::KeyServer {
            origin,
            key_id,
            key: &key,
        };
        let (_, summary) = report
            .seal_on_this_thread(key, out, &SealOptions::default())
            .map_err(sealing_failed)?;
        Ok(summary.sealed_len)
    }

    /// Hands the built report to another engine to seal (WebCrypto, under
    /// [`medseal_format::offload::SealOffload`]'s control), with the key
    /// server's key for it. The report goes with it: a capture seals once,
    /// and each file's memory is freed as the engine reads past it.
    pub fn seal_offload(
        &mut self,
        origin: &str,
        key_id: &str,
        key_base64: &str,
    ) -> Result<SealOffload<BundleReader<'static>>, ViewError> {
        let (report, key) = self.take_for_sealing(key_base64)?;
        let key = SealKey::KeyServer {
            origin,
            key_id,
            key: &key,
        };
        let bundle = report.into_bundle().map_err(sealing_failed)?;
        SealOffload::new(key, bundle, &SealOptions::default()).map_err(sealing_failed)
    }

    /// The built report and the key to seal it with; the capture keeps
    /// neither, sealed or not.
    fn take_for_sealing(&mut self, key_base64: &str) -> Result<(Report, Key), ViewError> {
        let report = self
            .report
            .take()
            .ok_or_else(|| refused("build the report before sealing it"))?;
        Ok((report, decode_key(key_base64)?))
    }
}

fn sealing_failed(e: impl std::fmt::Display) -> ViewError {
    ViewError {
        class: "seal",
        message: e.to_string(),
    }
}

fn decode_key(b64: &str) -> Result<Key, ViewError> {
    use base64::Engine;
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| refused("the key server's key is not base64"))?,
    );
    Key::from_slice(&raw).map_err(|_| refused("the key server's key is not 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use medseal_format::{OpenOptions, Opener, Secret};

    fn form(consent: Option<&str>) -> String {
        let mut f = serde_json::json!({
            "patient_id": "P1",
            "witness": "Nurse Jones",
            "capturer": "Dr Amy",
            "organisation": "St Elsewhere",
        });
        if let Some(c) = consent {
            f["consent"] = c.into();
        }
        f.to_string()
    }

    #[test]
    fn flag_hints_are_left_out() {
        assert_eq!(
            plain("witnessed verbal consent needs the witness's name (--witness)"),
            "witnessed verbal consent needs the witness's name"
        );
        assert_eq!(plain("no hint (--open"), "no hint");
    }

    #[test]
    fn a_capture_seals_a_report_the_command_line_opens() {
        let mut c = Capture::new(
            &form(Some("verbal-witnessed")),
            "r_00",
            "2026-01-02T03:04:05Z",
            3600,
        )
        .unwrap();
        c.add("photo", "IMG_1.jpg", medseal_capture_fixture_jpeg())
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&c.build().unwrap()).unwrap();
        assert_eq!(manifest["media"][0]["path"], "media/photo-1.jpg");
        let key = [7u8; 32];
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let mut sealed = Vec::new();
        let n = c
            .seal("https://ks.example", "k_1", &b64, &mut sealed)
            .unwrap();
        assert_eq!(n, sealed.len() as u64);
        let mut plain = Vec::new();
        Opener::new(&sealed[..])
            .unwrap()
            .open(
                Secret::Key(&Key::from_bytes(key)),
                &mut plain,
                &OpenOptions::default(),
            )
            .unwrap();
        assert!(plain.windows(4).any(|w| w == b"%PDF"));
        // Sealed once.
        assert!(
            c.seal("https://ks.example", "k_1", &b64, Vec::new())
                .is_err()
        );
    }

    #[test]
    fn no_consent_is_refused_before_any_key() {
        let mut c = Capture::new(&form(None), "r_00", "2026-01-02T03:04:05Z", 0).unwrap();
        c.add("photo", "IMG_1.jpg", medseal_capture_fixture_jpeg())
            .unwrap();
        let e = c.build().unwrap_err();
        assert_eq!(e.class, "refused");
        assert!(e.message.contains("consent record"), "{}", e.message);
        assert!(!e.message.contains("--"), "{}", e.message);
    }

    #[test]
    fn bad_input_is_refused_plainly() {
        assert!(Capture::new("{", "r_00", "2026-01-02T03:04:05Z", 0).is_err());
        assert!(Capture::new(&form(None), "x", "2026-01-02T03:04:05Z", 0).is_err());
        assert!(Capture::new(&form(None), "r_0", "yesterday", 0).is_err());
        let mut c = Capture::new(
            &form(Some("verbal-witnessed")),
            "r_0",
            "2026-01-02T03:04:05Z",
            0,
        )
        .unwrap();
        assert!(c.add("hologram", "x", vec![1]).is_err());
        c.add("photo", "not-a-photo.jpg", b"hello".to_vec())
            .unwrap();
        let e = c.build().unwrap_err();
        assert!(e.message.contains("not-a-photo.jpg"), "{}", e.message);
        assert!(c.seal("o", "k", "AAAA", Vec::new()).is_err());
    }

    fn medseal_capture_fixture_jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(64, 48, image::Rgb([180, 90, 60]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut out)
            .encode_image(&img)
            .unwrap();
        out
    }
}
