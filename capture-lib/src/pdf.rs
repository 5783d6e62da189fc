//! The report's human-readable summary, as PDF: one summary page (patient
//! identifiers, consent, capturer, time, body site, notes, and the SHA-256 of
//! every media file), then one page per photo.
//!
//! JPEG photos are embedded as they are (DCTDecode): no pixel is decoded or
//! re-encoded to make the PDF, which keeps it fast and faithful. PNG photos
//! are embedded as RGB pixels. Text uses the PDF base fonts, so characters
//! outside Latin-1 are shown as `?` (the manifest keeps the exact text).

use std::io::{BufWriter, Cursor};

use image::ImageDecoder;
use medseal_format::manifest::{ConsentMethod, Manifest, MediaEntry};
use printpdf::{
    BuiltinFont, ColorBits, ColorSpace, Image, ImageFilter, ImageTransform, ImageXObject,
    IndirectFontRef, Mm, PdfDocument, PdfDocumentReference, PdfLayerReference, Px,
};

use crate::media::{Photo, PhotoFormat};

/// What can go wrong making the PDF.
#[derive(Debug, thiserror::Error)]
#[error("cannot make the report PDF: {0}")]
pub struct PdfError(String);

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 18.0;
const LINE: f32 = 5.2;

/// Latin-1 only: the base fonts cannot show anything else.
fn latin1(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c as u32) < 256 && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in s.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

struct Writer {
    doc: PdfDocumentReference,
    layer: PdfLayerReference,
    y: f32,
    regular: IndirectFontRef,
    bold: IndirectFontRef,
    mono: IndirectFontRef,
}

impl Writer {
    fn new_page(&mut self) {
        let (page, layer) = self.doc.add_page(Mm(PAGE_W), Mm(PAGE_H), "text");
        self.layer = self.doc.get_page(page).get_layer(layer);
        self.y = PAGE_H - MARGIN;
    }

    fn ensure(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.new_page();
        }
    }

    fn text(&mut self, s: &str, size: f32, font: Font) {
        self.ensure(LINE);
        let f = match font {
            Font::Regular => &self.regular,
            Font::Bold => &self.bold,
            Font::Mono => &self.mono,
        };
        self.layer
            .use_text(latin1(s), size, Mm(MARGIN), Mm(self.y), f);
        self.y -= LINE * size / 10.0;
    }

    fn field(&mut self, label: &str, value: &str) {
        for (i, line) in wrap(value, 80).iter().enumerate() {
            let l = if i == 0 {
                format!("{label}: {line}")
            } else {
                format!("    {line}")
            };
            self.text(&l, 10.0, Font::Regular);
        }
    }

    fn gap(&mut self) {
        self.y -= LINE * 0.6;
    }
}

#[derive(Clone, Copy)]
enum Font {
    Regular,
    Bold,
    Mono,
}

fn consent_text(m: &Manifest) -> Vec<(String, String)> {
    let c = &m.consent;
    let method = match c.method {
        ConsentMethod::Written => "written (signed)",
        ConsentMethod::VerbalRecorded => "verbal, recorded",
        ConsentMethod::VerbalWitnessed => "verbal, witnessed",
        ConsentMethod::Unable => "UNABLE TO CONSENT",
    };
    let to_str = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let mut out = vec![
        ("Consent".into(), method.to_owned()),
        (
            "Given by".into(),
            to_str(&serde_json::to_value(c.given_by).unwrap_or_default()),
        ),
        (
            "Scope".into(),
            c.scope
                .iter()
                .map(|s| to_str(&serde_json::to_value(s).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Recorded".into(), c.recorded_at.clone()),
    ];
    if let Some(w) = &c.witness {
        out.push(("Witness".into(), w.clone()));
    }
    if let Some(e) = &c.evidence {
        out.push(("Evidence".into(), e.clone()));
    }
    if let Some(r) = &c.unable_reason {
        out.push(("Reason".into(), r.clone()));
    }
    out
}

fn photo_xobject(photo: &Photo) -> Result<ImageXObject, PdfError> {
    let err = |e: image::ImageError| PdfError(e.to_string());
    match photo.format {
        PhotoFormat::Jpeg => {
            let dec =
                image::codecs::jpeg::JpegDecoder::new(Cursor::new(&photo.bytes)).map_err(err)?;
            let color_space = match dec.color_type() {
                image::ColorType::L8 | image::ColorType::L16 => ColorSpace::Greyscale,
                _ => ColorSpace::Rgb,
            };
            Ok(ImageXObject {
                width: Px(photo.width as usize),
                height: Px(photo.height as usize),
                color_space,
                bits_per_component: ColorBits::Bit8,
                interpolate: true,
                image_data: photo.bytes.clone(),
                image_filter: Some(ImageFilter::DCT),
                smask: None,
                clipping_bbox: None,
            })
        }
        PhotoFormat::Png => {
            let rgb = image::load_from_memory(&photo.bytes)
                .map_err(err)?
                .to_rgb8();
            Ok(ImageXObject {
                width: Px(rgb.width() as usize),
                height: Px(rgb.height() as usize),
                color_space: ColorSpace::Rgb,
                bits_per_component: ColorBits::Bit8,
                interpolate: true,
                image_data: rgb.into_raw(),
                image_filter: None,
                smask: None,
                clipping_bbox: None,
            })
        }
    }
}

/// Renders the PDF for `manifest`, with `photos` as (entry, sanitised bytes).
pub fn render(manifest: &Manifest, photos: &[(&MediaEntry, &Photo)]) -> Result<Vec<u8>, PdfError> {
    let (doc, page, layer) = PdfDocument::new(
        format!("Clinical report {}", manifest.report_id),
        Mm(PAGE_W),
        Mm(PAGE_H),
        "text",
    );
    let font = |f| doc.add_builtin_font(f).map_err(|e| PdfError(e.to_string()));
    let (regular, bold, mono) = (
        font(BuiltinFont::Helvetica)?,
        font(BuiltinFont::HelveticaBold)?,
        font(BuiltinFont::Courier)?,
    );
    let layer = doc.get_page(page).get_layer(layer);
    let mut w = Writer {
        doc,
        layer,
        y: PAGE_H - MARGIN,
        regular,
        bold,
        mono,
    };
    w.text("Clinical media report", 16.0, Font::Bold);
    w.text(
        "Confidential: contains patient information.",
        9.0,
        Font::Regular,
    );
    w.gap();
    w.field("Report", &manifest.report_id);
    w.field("Created", &manifest.created_at);
    w.field(
        "Captured by",
        &format!(
            "{}{} ({})",
            manifest.capturer.name,
            manifest
                .capturer
                .email
                .as_deref()
                .map(|e| format!(" <{e}>"))
                .unwrap_or_default(),
            manifest.organisation
        ),
    );
    w.gap();
    w.text("Patient", 12.0, Font::Bold);
    for id in &manifest.patient.identifiers {
        w.field(&id.system, &id.value);
    }
    if manifest.patient.minimised {
        w.text("Identifiers minimised (pseudonymous).", 9.0, Font::Regular);
    }
    w.gap();
    w.text("Consent", 12.0, Font::Bold);
    for (k, v) in consent_text(manifest) {
        w.field(&k, &v);
    }
    w.gap();
    w.text("Clinical", 12.0, Font::Bold);
    w.field("Body site", manifest.body_site.as_deref().unwrap_or("-"));
    w.field("Notes", manifest.notes.as_deref().unwrap_or("-"));
    w.gap();
    w.text("Media (SHA-256)", 12.0, Font::Bold);
    for m in &manifest.media {
        w.ensure(3.0 * LINE);
        let kind = serde_json::to_value(m.kind).unwrap_or_default();
        w.text(
            &format!(
                "{}  {}  {} bytes",
                m.path,
                kind.as_str().unwrap_or(""),
                m.size
            ),
            9.0,
            Font::Regular,
        );
        w.text(&format!("  {}", m.sha256), 8.0, Font::Mono);
    }

    let max_w = PAGE_W - 2.0 * MARGIN;
    let max_h = PAGE_H - 2.0 * MARGIN - 3.0 * LINE;
    for (entry, photo) in photos {
        w.new_page();
        w.text(&entry.path, 11.0, Font::Bold);
        w.text(&entry.sha256, 8.0, Font::Mono);
        // Fit the photo in the free area, keeping its aspect ratio.
        let (pw, ph) = (photo.width.max(1) as f32, photo.height.max(1) as f32);
        let dpi = (pw / (max_w / 25.4)).max(ph / (max_h / 25.4));
        let h_mm = ph / dpi * 25.4;
        Image::from(photo_xobject(photo)?).add_to_layer(
            w.layer.clone(),
            ImageTransform {
                translate_x: Some(Mm(MARGIN)),
                translate_y: Some(Mm(w.y - h_mm)),
                dpi: Some(dpi),
                ..Default::default()
            },
        );
    }
    let mut out = BufWriter::new(Vec::new());
    w.doc.save(&mut out).map_err(|e| PdfError(e.to_string()))?;
    out.into_inner().map_err(|e| PdfError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use medseal_format::manifest::*;

    use super::*;
    use crate::media::{sanitise_photo, tests::phone_jpeg};

    fn manifest(entries: Vec<MediaEntry>) -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            report_id: "r_pdf".into(),
            created_at: "2026-11-23T10:00:00Z".into(),
            capturer: Person {
                name: "Dr Zoë Ángel".into(),
                email: Some("z@st.example".into()),
            },
            organisation: "St Elsewhere".into(),
            patient: Patient {
                identifiers: vec![Identifier {
                    system: "https://fhir.nhs.uk/Id/nhs-number".into(),
                    value: "9434765919".into(),
                }],
                minimised: false,
            },
            consent: Consent {
                method: ConsentMethod::VerbalWitnessed,
                given_by: ConsentGiver::Guardian,
                scope: vec![ConsentScope::Care, ConsentScope::Teaching],
                recorded_at: "2026-11-23T09:58:00Z".into(),
                evidence: None,
                witness: Some("Nurse B".into()),
                unable_reason: None,
            },
            body_site: Some("left forearm".into()),
            notes: Some("Healing well. ".repeat(40)),
            media: entries,
        }
    }

    #[test]
    fn summary_and_one_page_per_photo_with_jpeg_passthrough() {
        let photos: Vec<Photo> = (0..3)
            .map(|_| sanitise_photo(phone_jpeg(1)).unwrap())
            .collect();
        let entries: Vec<MediaEntry> = (0..3)
            .map(|i| MediaEntry {
                path: format!("media/photo-{i}.jpg"),
                kind: MediaKind::Photo,
                mime_type: "image/jpeg".into(),
                size: photos[i].bytes.len() as u64,
                sha256: "ab".repeat(32),
                captured_at: None,
                width: Some(40),
                height: Some(20),
                duration_seconds: None,
            })
            .collect();
        let m = manifest(entries.clone());
        let pairs: Vec<(&MediaEntry, &Photo)> = entries.iter().zip(photos.iter()).collect();
        let pdf = render(&m, &pairs).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let count = |needle: &[u8]| pdf.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(b"/DCTDecode"), 3, "each JPEG embedded as is");
        assert!(count(b"/Type /Page\n") + count(b"/Type/Page") + count(b"/Type /Page ") >= 1);
        // The JPEG bytes are inside the PDF unchanged.
        assert!(
            pdf.windows(photos[0].bytes.len())
                .any(|w| w == photos[0].bytes.as_slice())
        );

        // Rendered by poppler: a summary page and one page per photo, and the
        // photo page really shows the photo (not a blank page).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pdf");
        std::fs::write(&path, &pdf).unwrap();
        if let Some(keep) = std::env::var_os("MEDSEAL_KEEP_PDF") {
            std::fs::write(keep, &pdf).unwrap();
        }
        let info = std::process::Command::new("pdfinfo")
            .arg(&path)
            .output()
            .expect("pdfinfo (poppler-utils) is needed: scripts/test-all.sh installs it");
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(
            info.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Pages:", "4"]),
            "{info}"
        );
        let png = dir.path().join("p");
        let ok = std::process::Command::new("pdftoppm")
            .args(["-png", "-r", "40", "-f", "2", "-l", "2", "-singlefile"])
            .arg(&path)
            .arg(&png)
            .status()
            .unwrap();
        assert!(ok.success());
        let page = image::open(png.with_extension("png")).unwrap().to_rgb8();
        let coloured = page
            .pixels()
            .filter(|p| p[2] > 60 && p[2] < 120 && p[0] > 30)
            .count();
        assert!(
            coloured > 200,
            "the photo is not visible on its page ({coloured} pixels)"
        );
    }
}
