//! The report's human-readable form, as PDF — read as a clinical document,
//! printed, and filed:
//!
//! - a summary page: the patient's identifier as people write it ("NHS
//!   number 943 476 5919"), organisation, who captured it and when (in the
//!   capturing device's local time, with its UTC offset), consent, body
//!   site, notes, and what the report contains;
//! - one page per photo, captioned with its number, the body site and when
//!   it was taken;
//! - a final "Integrity" page with the size and SHA-256 of every file.
//!
//! Every page carries the patient identifier, the report id and "Page X of
//! Y", so that a printed page can always be matched to its patient and its
//! report. The pages are laid out first and drawn second, so the total is
//! known when each footer is written.
//!
//! JPEG photos are embedded as they are (DCTDecode): no pixel is decoded or
//! re-encoded to make the PDF, which keeps it fast and faithful. PNG photos
//! are embedded as RGB pixels. Text uses the PDF base fonts, so characters
//! outside Latin-1 are shown as `?` (the manifest keeps the exact text).

use std::collections::BTreeMap;

use medseal_format::manifest::{ConsentMethod, Manifest, MediaEntry, MediaKind};
use printpdf::{
    BuiltinFont, DictItem, ExternalStream, ExternalXObject, Mm, Op as PdfOp, PdfDocument,
    PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, Px, RawImage, RawImageData, RawImageFormat,
    TextItem, XObjectId, XObjectTransform,
};

use crate::identifiers;
use crate::media::{Photo, PhotoFormat, Samples};

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
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
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

#[derive(Clone, Copy)]
enum Font {
    Regular,
    Bold,
    Mono,
}

/// One thing drawn on a page.
enum Op {
    Text {
        s: String,
        size: f32,
        font: Font,
        y: f32,
    },
    Photo {
        index: usize,
        y: f32,
        dpi: f32,
    },
}

/// The pages, laid out before anything is drawn.
struct Layout {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Layout {
            pages: vec![Vec::new()],
            y: PAGE_H - MARGIN,
        }
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = PAGE_H - MARGIN;
    }

    fn ensure(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.new_page();
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(p) = self.pages.last_mut() {
            p.push(op);
        }
    }

    fn text(&mut self, s: &str, size: f32, font: Font) {
        self.ensure(LINE);
        let y = self.y;
        self.push(Op::Text {
            s: s.to_owned(),
            size,
            font,
            y,
        });
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

    fn heading(&mut self, s: &str) {
        self.ensure(3.0 * LINE);
        self.text(s, 12.0, Font::Bold);
    }

    fn gap(&mut self) {
        self.y -= LINE * 0.6;
    }
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

/// An RFC 3339 time as a person reads it, in the local time of the device
/// that made the report: "23 Nov 2026 10:00:00 +01:00". Left as it is if
/// it does not parse.
pub fn local_time(rfc3339: &str, utc_offset_seconds: i32) -> String {
    use time::format_description::well_known::Rfc3339;
    let Ok(t) = time::OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_owned();
    };
    let offset =
        time::UtcOffset::from_whole_seconds(utc_offset_seconds).unwrap_or(time::UtcOffset::UTC);
    let t = t.to_offset(offset);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][usize::from(u8::from(t.month())) - 1];
    let (h, m, _) = offset.as_hms();
    format!(
        "{:02} {month} {} {:02}:{:02}:{:02} {}{:02}:{:02}",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        if offset.is_negative() { '-' } else { '+' },
        h.unsigned_abs(),
        m.unsigned_abs()
    )
}

/// At most `max` characters, ending in "..." when cut: a header or footer
/// has one line.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// "0:07", "1:02:03".
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The photo's caption: its number, body site and when it was taken.
fn caption(n: usize, of: usize, entry: &MediaEntry, body_site: Option<&str>) -> String {
    let mut parts = vec![format!("Photo {n} of {of}")];
    if let Some(site) = body_site {
        parts.push(site.to_owned());
    }
    parts.push(match &entry.captured_at {
        Some(t) => format!("taken {} (camera clock)", t.replace('T', " ")),
        None => "time taken not recorded".to_owned(),
    });
    parts.join(" - ")
}

/// What one media file is, for the contents list.
fn describe(entry: &MediaEntry, n: usize) -> String {
    let what = match entry.kind {
        MediaKind::Photo => format!("Photo {n}"),
        MediaKind::Audio => format!("Audio recording {n}"),
        MediaKind::Video => format!("Video {n}"),
        MediaKind::ConsentEvidence => "Consent evidence".to_owned(),
    };
    let detail = match (entry.width, entry.height, entry.duration_seconds) {
        (_, _, Some(d)) => format!("duration {}", duration(d)),
        (Some(w), Some(h), _) => format!("{w} x {h} pixels"),
        _ if entry.kind == MediaKind::Audio || entry.kind == MediaKind::Video => {
            "duration not recorded".to_owned()
        }
        _ => String::new(),
    };
    let file = entry.path.rsplit('/').next().unwrap_or(&entry.path);
    if detail.is_empty() {
        format!("{what} ({file})")
    } else {
        format!("{what} ({file}), {detail}")
    }
}

/// Adds the photo to `doc` as an image XObject, for `Op::UseXobject`.
///
/// A JPEG goes in as it is: its sanitised bytes become the content of an
/// image stream with `/Filter /DCTDecode`, so the PDF viewer decodes the
/// JPEG itself and nothing here touches a pixel (a 12-megapixel photo costs
/// a header read, not a decode and re-encode). printpdf 0.12 has no image
/// type for an already-encoded stream (its `RawImage` is pixels), so this
/// is an [`ExternalXObject`]: printpdf writes the dictionary and content
/// given, marked not to be compressed again. Its colour space is the one
/// intake read from the frame header ([`Samples`]); CMYK stored inverted
/// (an Adobe marker) is read through `/Decode [1 0 1 0 1 0 1 0]`, as PDF
/// readers and writers agree.
///
/// A PNG is decoded to RGB pixels (any alpha dropped) and given to printpdf
/// as a [`RawImage`], which it writes Flate-compressed.
fn add_photo(doc: &mut PdfDocument, photo: &Photo) -> Result<XObjectId, PdfError> {
    let err = |e: image::ImageError| PdfError(e.to_string());
    match photo.format {
        PhotoFormat::Jpeg => {
            let color_space = match photo.samples {
                Samples::Grey => "DeviceGray",
                Samples::Rgb => "DeviceRGB",
                Samples::Cmyk { .. } => "DeviceCMYK",
            };
            let name = |n: &str| DictItem::Name(n.as_bytes().to_vec());
            let mut dict = BTreeMap::from([
                ("Type".to_owned(), name("XObject")),
                ("Subtype".to_owned(), name("Image")),
                ("Width".to_owned(), DictItem::Int(i64::from(photo.width))),
                ("Height".to_owned(), DictItem::Int(i64::from(photo.height))),
                ("ColorSpace".to_owned(), name(color_space)),
                ("BitsPerComponent".to_owned(), DictItem::Int(8)),
                ("Filter".to_owned(), name("DCTDecode")),
                ("Interpolate".to_owned(), DictItem::Bool(true)),
            ]);
            if photo.samples == (Samples::Cmyk { inverted: true }) {
                let decode = [1, 0, 1, 0, 1, 0, 1, 0].map(DictItem::Int).to_vec();
                dict.insert("Decode".to_owned(), DictItem::Array(decode));
            }
            Ok(doc.add_xobject(&ExternalXObject {
                stream: ExternalStream {
                    dict,
                    content: photo.bytes.clone(),
                    // Already compressed: Flate on top would only cost time.
                    compress: false,
                },
                // The size printpdf scales the unit-square image to, at the
                // placement's DPI.
                width: Some(Px(photo.width as usize)),
                height: Some(Px(photo.height as usize)),
                dpi: None,
            }))
        }
        PhotoFormat::Png => {
            let rgb = image::load_from_memory(&photo.bytes)
                .map_err(err)?
                .to_rgb8();
            Ok(doc.add_image(&RawImage {
                width: rgb.width() as usize,
                height: rgb.height() as usize,
                pixels: RawImageData::U8(rgb.into_raw()),
                data_format: RawImageFormat::RGB8,
                tag: Vec::new(),
            }))
        }
    }
}

/// Lays out every page.
fn layout(m: &Manifest, photos: &[(&MediaEntry, &Photo)], utc_offset_seconds: i32) -> Layout {
    let mut w = Layout::new();
    w.text("Clinical media report", 16.0, Font::Bold);
    w.text(
        "Confidential: contains patient information.",
        9.0,
        Font::Regular,
    );
    w.gap();
    w.heading("Patient");
    for id in &m.patient.identifiers {
        for line in wrap(&identifiers::display(id), 70) {
            w.text(&line, 11.0, Font::Bold);
        }
    }
    if m.patient.minimised {
        w.text("Identifiers minimised (pseudonymous).", 9.0, Font::Regular);
    }
    w.gap();
    w.heading("Report");
    w.field(
        "Organisation",
        if m.organisation.is_empty() {
            "not recorded"
        } else {
            &m.organisation
        },
    );
    w.field(
        "Captured by",
        &format!(
            "{}{}",
            m.capturer.name,
            m.capturer
                .email
                .as_deref()
                .map(|e| format!(" <{e}>"))
                .unwrap_or_default(),
        ),
    );
    w.field("Created", &local_time(&m.created_at, utc_offset_seconds));
    w.field("Report id", &m.report_id);
    w.gap();
    w.heading("Consent");
    for (k, v) in consent_text(m) {
        w.field(&k, &v);
    }
    w.field(
        "Recorded",
        &local_time(&m.consent.recorded_at, utc_offset_seconds),
    );
    w.gap();
    w.heading("Clinical");
    w.field(
        "Body site",
        m.body_site.as_deref().unwrap_or("not recorded"),
    );
    w.field("Notes", m.notes.as_deref().unwrap_or("none"));
    w.gap();
    w.heading("Contents");
    let mut counts = [0usize; 4];
    for e in &m.media {
        let slot = match e.kind {
            MediaKind::Photo => 0,
            MediaKind::Audio => 1,
            MediaKind::Video => 2,
            MediaKind::ConsentEvidence => 3,
        };
        counts[slot] += 1;
        w.text(&describe(e, counts[slot]), 10.0, Font::Regular);
    }
    w.text(
        "File sizes and SHA-256 hashes: see the Integrity page.",
        9.0,
        Font::Regular,
    );

    let max_w = PAGE_W - 2.0 * MARGIN;
    let max_h = PAGE_H - 2.0 * MARGIN - 3.0 * LINE;
    for (i, (entry, photo)) in photos.iter().enumerate() {
        w.new_page();
        for line in wrap(
            &caption(i + 1, photos.len(), entry, m.body_site.as_deref()),
            75,
        ) {
            w.text(&line, 11.0, Font::Bold);
        }
        w.gap();
        // Fit the photo in the free area, keeping its aspect ratio.
        let (pw, ph) = (photo.width.max(1) as f32, photo.height.max(1) as f32);
        let dpi = (pw / (max_w / 25.4)).max(ph / (max_h / 25.4));
        let h_mm = ph / dpi * 25.4;
        let y = w.y - h_mm;
        w.push(Op::Photo { index: i, y, dpi });
    }

    w.new_page();
    w.text("Integrity", 16.0, Font::Bold);
    for line in wrap(
        "The sealed report authenticates every byte below; these hashes let each extracted file be checked on its own (for example with sha256sum).",
        95,
    ) {
        w.text(&line, 9.0, Font::Regular);
    }
    w.gap();
    for e in &m.media {
        w.ensure(3.0 * LINE);
        let kind = serde_json::to_value(e.kind).unwrap_or_default();
        let line = format!(
            "{}  ({}, {}, {} bytes)",
            e.path,
            kind.as_str().unwrap_or(""),
            e.mime_type,
            e.size
        );
        for l in wrap(&line, 95) {
            w.text(&l, 9.0, Font::Regular);
        }
        w.text(&format!("SHA-256 {}", e.sha256), 8.0, Font::Mono);
    }
    w
}

/// Renders the PDF for `manifest`, with `photos` as (entry, sanitised
/// bytes), showing times in the capturing device's local time
/// (`utc_offset_seconds` east of UTC).
pub fn render(
    manifest: &Manifest,
    photos: &[(&MediaEntry, &Photo)],
    utc_offset_seconds: i32,
) -> Result<Vec<u8>, PdfError> {
    let layout = layout(manifest, photos, utc_offset_seconds);
    let mut doc = PdfDocument::new(&format!("Clinical report {}", manifest.report_id));
    // The document's dates are when the report was made, not when this PDF
    // was drawn (printpdf's default is 1970-01-01, never the clock). On wasm
    // printpdf writes 1970-01-01 whatever is set here: its date formatting
    // is stubbed out on that target.
    if let Some(created) = pdf_date(&manifest.created_at) {
        let info = &mut doc.metadata.info;
        info.creation_date = created;
        info.modification_date = created;
        info.metadata_date = created;
    }
    let pick = |f: Font| {
        PdfFontHandle::Builtin(match f {
            Font::Regular => BuiltinFont::Helvetica,
            Font::Bold => BuiltinFont::HelveticaBold,
            Font::Mono => BuiltinFont::Courier,
        })
    };
    // One text object per line, placed from the page's bottom left corner.
    // printpdf writes built-in font text as WinAnsi, which agrees with
    // Latin-1 for everything `latin1` lets through (it turns the C1
    // controls, where the two differ, into `?`).
    let text = |ops: &mut Vec<PdfOp>, s: String, size: f32, font: Font, y: f32| {
        ops.extend([
            PdfOp::StartTextSection,
            PdfOp::SetFont {
                font: pick(font),
                size: Pt(size),
            },
            PdfOp::SetTextCursor {
                pos: Point::new(Mm(MARGIN), Mm(y)),
            },
            PdfOp::ShowText {
                items: vec![TextItem::Text(s)],
            },
            PdfOp::EndTextSection,
        ]);
    };
    let patient = manifest
        .patient
        .identifiers
        .iter()
        .map(identifiers::display)
        .collect::<Vec<_>>()
        .join("; ");
    let header = shorten(
        &latin1(&format!("{patient}   |   Report {}", manifest.report_id)),
        130,
    );
    let org = if manifest.organisation.is_empty() {
        String::new()
    } else {
        format!("{}   |   ", shorten(&manifest.organisation, 80))
    };
    let total = layout.pages.len();
    let mut pages = Vec::with_capacity(total);
    for (n, page) in layout.pages.iter().enumerate() {
        let mut ops = Vec::new();
        text(&mut ops, header.clone(), 8.0, Font::Regular, PAGE_H - 10.0);
        text(
            &mut ops,
            latin1(&format!(
                "{org}Confidential   |   Page {} of {total}",
                n + 1
            )),
            8.0,
            Font::Regular,
            9.0,
        );
        for op in page {
            match op {
                Op::Text { s, size, font, y } => text(&mut ops, latin1(s), *size, *font, *y),
                Op::Photo { index, y, dpi } => {
                    let photo = photos
                        .get(*index)
                        .map(|p| p.1)
                        .ok_or_else(|| PdfError("a photo went missing".into()))?;
                    let id = add_photo(&mut doc, photo)?;
                    ops.push(PdfOp::UseXobject {
                        id,
                        transform: XObjectTransform {
                            translate_x: Some(Mm(MARGIN).into()),
                            translate_y: Some(Mm(*y).into()),
                            dpi: Some(*dpi),
                            ..Default::default()
                        },
                    });
                }
            }
        }
        pages.push(PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops));
    }
    doc.with_pages(pages);
    // printpdf reports problems as warnings and still writes a file; any
    // error among them means the PDF may be missing content, so it fails.
    let mut warnings = Vec::new();
    let opts = PdfSaveOptions {
        // No image re-encoding: photos go in as they are (see `add_photo`).
        image_optimization: None,
        ..Default::default()
    };
    let bytes = doc.save(&opts, &mut warnings);
    if let Some(w) = warnings
        .iter()
        .find(|w| w.severity == printpdf::PdfParseErrorSeverity::Error)
    {
        return Err(PdfError(w.msg.clone()));
    }
    Ok(bytes)
}

/// An RFC 3339 time as printpdf's document date, in UTC (printpdf writes
/// the fields with a `+00'00'` zone). `None` if it does not parse.
fn pdf_date(rfc3339: &str) -> Option<printpdf::OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(rfc3339, &Rfc3339).ok()?;
    printpdf::OffsetDateTime::from_unix_timestamp(t.unix_timestamp()).ok()
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
        let pdf = render(&m, &pairs, 3600).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let count = |needle: &[u8]| pdf.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(b"/DCTDecode"), 3, "each JPEG embedded as is");
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
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Pages:", "5"]),
            "{info}"
        );
        let coloured = photo_pixels_on_page_2(&path);
        assert!(
            coloured > 200,
            "the photo is not visible on its page ({coloured} pixels)"
        );
    }

    /// How many pixels of page 2, rendered by poppler, have the test
    /// photos' colour (blue 60..120, some red).
    fn photo_pixels_on_page_2(pdf: &std::path::Path) -> usize {
        page_2(pdf)
            .pixels()
            .filter(|p| p[2] > 60 && p[2] < 120 && p[0] > 30)
            .count()
    }

    /// Page 2 (the first photo's), rendered by poppler at 40 dpi.
    fn page_2(pdf: &std::path::Path) -> image::RgbImage {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("p");
        let ok = std::process::Command::new("pdftoppm")
            .args(["-png", "-r", "40", "-f", "2", "-l", "2", "-singlefile"])
            .arg(pdf)
            .arg(&png)
            .status()
            .unwrap();
        assert!(ok.success());
        image::open(png.with_extension("png")).unwrap().to_rgb8()
    }

    /// The report of one photo: its PDF's bytes, and the PDF in a file.
    fn one_photo_report(photo: &Photo) -> (Vec<u8>, tempfile::TempDir, std::path::PathBuf) {
        let entry = MediaEntry {
            path: format!("media/photo-1.{}", photo.format.ext()),
            kind: MediaKind::Photo,
            mime_type: photo.format.mime().into(),
            size: photo.bytes.len() as u64,
            sha256: "ef".repeat(32),
            captured_at: None,
            width: Some(photo.width),
            height: Some(photo.height),
            duration_seconds: None,
        };
        let m = manifest(vec![entry.clone()]);
        let pdf = render(&m, &[(&entry, photo)], 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pdf");
        std::fs::write(&path, &pdf).unwrap();
        (pdf, dir, path)
    }

    #[test]
    fn a_cmyk_photo_is_shown_in_its_colours() {
        let photo = sanitise_photo(crate::media::tests::CMYK_RED.to_vec()).unwrap();
        let (pdf, _dir, path) = one_photo_report(&photo);
        assert!(pdf.windows(11).any(|w| w == b"/DeviceCMYK"));
        // Red ink shows red: read as RGB it would not decode, and read
        // without the inversion it would show black.
        let page = page_2(&path);
        let red = page
            .pixels()
            .filter(|p| p[0] > 180 && p[1] < 90 && p[2] < 90)
            .count();
        let black = page
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 60))
            .count();
        assert!(red > 200, "the photo is not shown red ({red} pixels)");
        assert!(black < red / 10, "{black} black pixels against {red} red");
    }

    #[test]
    fn png_photo_is_drawn_from_its_pixels() {
        use image::ImageEncoder;
        let img = image::RgbaImage::from_pixel(40, 20, image::Rgba([200, 40, 90, 255]));
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&img, 40, 20, image::ExtendedColorType::Rgba8)
            .unwrap();
        let photo = sanitise_photo(png).unwrap();
        assert_eq!(photo.format, PhotoFormat::Png);
        let (pdf, _dir, path) = one_photo_report(&photo);
        assert!(
            !pdf.windows(10).any(|w| w == b"/DCTDecode"),
            "a PNG is not made into a JPEG"
        );
        let coloured = photo_pixels_on_page_2(&path);
        assert!(
            coloured > 200,
            "the photo is not visible on its page ({coloured} pixels)"
        );
    }
}
