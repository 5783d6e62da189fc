//! Photos as DICOM VL Photographic Image instances (PS3.3 A.33.4), the IOD
//! PACS and EMR image viewers expect for clinical photography.
//!
//! Baseline JPEG photos are carried as they are, encapsulated under the
//! JPEG Baseline transfer syntax (no recompression: the evidence stays bit
//! for bit what the manifest hashes). Anything else (PNG, progressive JPEG)
//! is decoded and stored as native 8-bit RGB, lossless. Every UID is derived
//! from the delivery's idempotency key, so a retried delivery presents the
//! same instances and the archive stores each once.

use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use medseal_format::manifest::{Identifier, Manifest};

use crate::error::DeliveryError;
use crate::opened::Photo;
use crate::uid;

/// VL Photographic Image Storage.
pub const VL_PHOTOGRAPHIC_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.77.1.4";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// The UID root of instances made here (a UUID-derived root, PS3.5 B.2).
const IMPLEMENTATION_CLASS_UID: &str = "2.25.216397342427397196352513453451185133251";

/// The study and series of one report: the same for every photo.
pub struct Study<'a> {
    /// The report's manifest.
    pub manifest: &'a Manifest,
    /// The patient identifier to file under.
    pub patient: &'a Identifier,
    /// The delivery's idempotency key.
    pub key: &'a str,
}

impl Study<'_> {
    /// The Study Instance UID.
    pub fn study_uid(&self) -> String {
        uid::dicom_uid("study", self.key)
    }
    fn series_uid(&self) -> String {
        uid::dicom_uid("series", self.key)
    }
    /// The SOP Instance UID of photo `index`.
    pub fn instance_uid(&self, index: usize) -> String {
        uid::dicom_uid(&format!("instance-{index}"), self.key)
    }
}

/// What a JPEG's first frame header says.
#[derive(Debug, PartialEq, Eq)]
struct Sof {
    marker: u8,
    precision: u8,
    height: u16,
    width: u16,
    components: u8,
}

/// Walks the JPEG marker segments to the first start-of-frame.
fn jpeg_sof(data: &[u8]) -> Option<Sof> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    loop {
        // Skip fill bytes before a marker.
        while *data.get(i)? == 0xFF && *data.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *data.get(i)? != 0xFF {
            return None;
        }
        let marker = *data.get(i + 1)?;
        let len = u16::from_be_bytes([*data.get(i + 2)?, *data.get(i + 3)?]) as usize;
        if len < 2 {
            return None;
        }
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let s = data.get(i + 4..i + 2 + len)?;
            return Some(Sof {
                marker,
                precision: *s.first()?,
                height: u16::from_be_bytes([*s.get(1)?, *s.get(2)?]),
                width: u16::from_be_bytes([*s.get(3)?, *s.get(4)?]),
                components: *s.get(5)?,
            });
        }
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        i += 2 + len;
    }
}

/// `YYYYMMDD`, `HHMMSS` and `+HHMM` from an RFC 3339 time, in its own offset.
fn dicom_datetime(rfc3339: &str) -> Option<(String, String, String)> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let off = t.offset();
    let (h, m, _) = off.as_hms();
    Some((
        format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day()),
        format!("{:02}{:02}{:02}", t.hour(), t.minute(), t.second()),
        format!(
            "{}{:02}{:02}",
            if off.is_negative() { '-' } else { '+' },
            h.unsigned_abs(),
            m.unsigned_abs()
        ),
    ))
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) {
    obj.put(DataElement::new(tag, vr, value.into()));
}

/// One photo as a DICOM Part 10 file.
pub fn photo_instance(
    study: &Study<'_>,
    index: usize,
    photo: &Photo,
) -> Result<Vec<u8>, DeliveryError> {
    let m = study.manifest;
    let bad = |why: String| DeliveryError::permanent(format!("{}: {why}", photo.entry.path));
    let mut obj = InMemDicomObject::new_empty();
    let instance_uid = study.instance_uid(index);
    put(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, VL_PHOTOGRAPHIC_IMAGE);
    put(
        &mut obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        instance_uid.as_str(),
    );
    // Patient: only the identifier the report carries; name and birth date
    // are type 2 and left empty on purpose (minimised reports have none).
    put(&mut obj, tags::PATIENT_NAME, VR::PN, "");
    put(
        &mut obj,
        tags::PATIENT_ID,
        VR::LO,
        study.patient.value.as_str(),
    );
    put(
        &mut obj,
        tags::ISSUER_OF_PATIENT_ID,
        VR::LO,
        study.patient.system.chars().take(64).collect::<String>(),
    );
    put(&mut obj, tags::PATIENT_BIRTH_DATE, VR::DA, "");
    put(&mut obj, tags::PATIENT_SEX, VR::CS, "");
    // Study and series.
    let (study_date, study_time, offset) = dicom_datetime(&m.created_at).unwrap_or_default();
    put(
        &mut obj,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        study.study_uid(),
    );
    put(&mut obj, tags::STUDY_DATE, VR::DA, study_date.as_str());
    put(&mut obj, tags::STUDY_TIME, VR::TM, study_time.as_str());
    if !offset.is_empty() {
        put(
            &mut obj,
            tags::TIMEZONE_OFFSET_FROM_UTC,
            VR::SH,
            offset.as_str(),
        );
    }
    put(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    put(
        &mut obj,
        tags::STUDY_ID,
        VR::SH,
        m.report_id.chars().take(16).collect::<String>(),
    );
    put(&mut obj, tags::ACCESSION_NUMBER, VR::SH, "");
    put(
        &mut obj,
        tags::STUDY_DESCRIPTION,
        VR::LO,
        "Clinical photography",
    );
    put(&mut obj, tags::MODALITY, VR::CS, "XC");
    put(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        study.series_uid(),
    );
    put(&mut obj, tags::SERIES_NUMBER, VR::IS, "1");
    if let Some(site) = &m.body_site {
        put(
            &mut obj,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            site.chars().take(64).collect::<String>(),
        );
    }
    put(&mut obj, tags::MANUFACTURER, VR::LO, "medseal");
    put(
        &mut obj,
        tags::INSTITUTION_NAME,
        VR::LO,
        m.organisation.chars().take(64).collect::<String>(),
    );
    put(
        &mut obj,
        tags::OPERATORS_NAME,
        VR::PN,
        m.capturer.name.chars().take(64).collect::<String>(),
    );
    // Image.
    put(
        &mut obj,
        tags::INSTANCE_NUMBER,
        VR::IS,
        (index + 1).to_string(),
    );
    put(&mut obj, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY");
    let captured = photo.entry.captured_at.as_deref().and_then(dicom_datetime);
    let (content_date, content_time) = match &captured {
        Some((d, t, _)) => (d.clone(), t.clone()),
        None => (study_date.clone(), study_time.clone()),
    };
    put(&mut obj, tags::CONTENT_DATE, VR::DA, content_date.as_str());
    put(&mut obj, tags::CONTENT_TIME, VR::TM, content_time.as_str());
    put(
        &mut obj,
        tags::ACQUISITION_DATE_TIME,
        VR::DT,
        format!("{content_date}{content_time}"),
    );
    put(
        &mut obj,
        tags::ANATOMIC_REGION_SEQUENCE,
        VR::SQ,
        PrimitiveValue::Empty,
    );
    put(&mut obj, tags::BITS_ALLOCATED, VR::US, 8u16);
    put(&mut obj, tags::BITS_STORED, VR::US, 8u16);
    put(&mut obj, tags::HIGH_BIT, VR::US, 7u16);
    put(&mut obj, tags::PIXEL_REPRESENTATION, VR::US, 0u16);

    let sof = if photo.entry.mime_type == "image/jpeg" {
        jpeg_sof(&photo.data)
    } else {
        None
    };
    let ts = match sof {
        Some(s)
            if matches!(s.marker, 0xC0 | 0xC1)
                && s.precision == 8
                && matches!(s.components, 1 | 3)
                && s.width > 0
                && s.height > 0 =>
        {
            let (samples, photometric) = if s.components == 3 {
                (3u16, "YBR_FULL_422")
            } else {
                (1, "MONOCHROME2")
            };
            put(&mut obj, tags::SAMPLES_PER_PIXEL, VR::US, samples);
            put(
                &mut obj,
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                photometric,
            );
            if samples == 3 {
                put(&mut obj, tags::PLANAR_CONFIGURATION, VR::US, 0u16);
            }
            put(&mut obj, tags::ROWS, VR::US, s.height);
            put(&mut obj, tags::COLUMNS, VR::US, s.width);
            put(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01");
            put(
                &mut obj,
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
                VR::CS,
                "ISO_10918_1",
            );
            let mut fragment = photo.data.clone();
            if fragment.len() % 2 == 1 {
                fragment.push(0);
            }
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                Value::PixelSequence(PixelFragmentSequence::new(
                    Vec::<u32>::new(),
                    vec![fragment],
                )),
            ));
            if s.marker == 0xC0 {
                JPEG_BASELINE
            } else {
                JPEG_EXTENDED
            }
        }
        _ => {
            let img = image::load_from_memory(&photo.data)
                .map_err(|e| bad(format!("cannot decode: {e}")))?
                .to_rgb8();
            let (w, h) = img.dimensions();
            let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
                return Err(bad(format!(
                    "{w}×{h} is larger than DICOM's 65535 rows or columns"
                )));
            };
            put(&mut obj, tags::SAMPLES_PER_PIXEL, VR::US, 3u16);
            put(&mut obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
            put(&mut obj, tags::PLANAR_CONFIGURATION, VR::US, 0u16);
            put(&mut obj, tags::ROWS, VR::US, h16);
            put(&mut obj, tags::COLUMNS, VR::US, w16);
            let lossy = photo.entry.mime_type == "image/jpeg";
            put(
                &mut obj,
                tags::LOSSY_IMAGE_COMPRESSION,
                VR::CS,
                if lossy { "01" } else { "00" },
            );
            let mut pixels = img.into_raw();
            if pixels.len() % 2 == 1 {
                pixels.push(0);
            }
            put(&mut obj, tags::PIXEL_DATA, VR::OB, pixels);
            EXPLICIT_VR_LE
        }
    };
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(ts)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(concat!("MEDSEAL_", env!("CARGO_PKG_VERSION"))),
        )
        .map_err(|e| bad(format!("cannot build the DICOM header: {e}")))?;
    let mut out = Vec::with_capacity(photo.data.len() + 4096);
    file.write_all(&mut out)
        .map_err(|e| bad(format!("cannot encode DICOM: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_frame_header() {
        // SOI, APP0 (len 4, 2 bytes), SOF0 8-bit 2x3, 3 components.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xC0, 0x00, 0x11, 8, 0, 2, 0, 3,
            3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1,
        ];
        assert_eq!(
            jpeg_sof(&jpeg),
            Some(Sof {
                marker: 0xC0,
                precision: 8,
                height: 2,
                width: 3,
                components: 3
            })
        );
        assert_eq!(jpeg_sof(&jpeg[..9]), None);
        assert_eq!(jpeg_sof(b"not a jpeg"), None);
        // A zero length segment must not loop forever.
        assert_eq!(jpeg_sof(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), None);
    }

    fn manifest() -> Manifest {
        let m = serde_json::json!({
            "manifest_version": 1, "report_id": "r-1", "created_at": "2026-11-23T09:05:01Z",
            "capturer": {"name": "Dr A"}, "organisation": "St Elsewhere",
            "patient": {"identifiers": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}], "minimised": false},
            "consent": {"method": "unable", "given_by": "nobody", "scope": [], "recorded_at": "2026-11-23T09:00:00Z", "unable_reason": "unconscious; treatment record"},
            "body_site": "left forearm", "media": []
        });
        serde_json::from_value(m).unwrap()
    }

    fn read_back(bytes: &[u8]) -> dicom_object::DefaultDicomObject {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.dcm");
        std::fs::write(&p, bytes).unwrap();
        dicom_object::open_file(&p).unwrap()
    }

    fn photo(mime: &str, data: Vec<u8>) -> Photo {
        let entry = serde_json::from_value(serde_json::json!({
            "path": "media/photo-1", "kind": "photo", "mime_type": mime, "size": data.len(), "sha256": "00"
        }))
        .unwrap();
        Photo { entry, data }
    }

    #[test]
    fn png_becomes_lossless_rgb_and_jpeg_is_carried_as_is() {
        let m = manifest();
        let study = Study {
            manifest: &m,
            patient: &m.patient.identifiers[0],
            key: "k",
        };
        let img =
            image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 40, y as u8 * 90, 7]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let obj = read_back(&photo_instance(&study, 0, &photo("image/png", png)).unwrap());
        assert_eq!(
            obj.meta().transfer_syntax().trim_end_matches('\0'),
            EXPLICIT_VR_LE
        );
        let text = |t| {
            obj.element(t)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_owned()
        };
        assert_eq!(text(tags::SOP_CLASS_UID), VL_PHOTOGRAPHIC_IMAGE);
        assert_eq!(text(tags::PATIENT_ID), "9434765919");
        assert_eq!(text(tags::PHOTOMETRIC_INTERPRETATION), "RGB");
        assert_eq!(text(tags::STUDY_INSTANCE_UID), study.study_uid());
        assert_eq!(obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(), 2);
        let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        assert_eq!(
            &pixels[..18],
            img.as_raw().as_slice(),
            "pixels stored exactly"
        );

        let mut jpeg = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        let obj =
            read_back(&photo_instance(&study, 1, &photo("image/jpeg", jpeg.clone())).unwrap());
        assert_eq!(
            obj.meta().transfer_syntax().trim_end_matches('\0'),
            JPEG_BASELINE
        );
        let frag = match obj.element(tags::PIXEL_DATA).unwrap().value() {
            Value::PixelSequence(seq) => seq.fragments()[0].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            &frag[..jpeg.len()],
            jpeg.as_slice(),
            "the JPEG is not recompressed"
        );
        assert_ne!(
            obj.element(tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap(),
            study.instance_uid(0),
            "each photo its own instance"
        );
    }

    #[test]
    fn dates_in_dicom_form() {
        assert_eq!(
            dicom_datetime("2026-11-23T09:05:01+01:30"),
            Some(("20261123".into(), "090501".into(), "+0130".into()))
        );
        assert_eq!(dicom_datetime("yesterday"), None);
    }
}
