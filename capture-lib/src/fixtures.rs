//! Test fixtures: photos as phones write them, with GPS, device make and
//! model, a comment and an orientation tag — for this crate's tests and the
//! end-to-end suite (feature `fixtures`). Not part of the supported API.

use bytes::Bytes;
use image::ImageEncoder;
use medseal_format::manifest::*;
use sha2::{Digest, Sha256};

/// A minimal big-endian EXIF block: Make, Model, Orientation, and a GPS
/// IFD with a latitude — what a phone writes into every photo.
pub fn exif_block(orientation: u16) -> Vec<u8> {
    let mut t: Vec<u8> = b"MM\0\x2a\0\0\0\x08".to_vec();
    let ifd0_entries = 4u16;
    let ifd0_len = 2 + 12 * ifd0_entries as u32 + 4;
    let data_off = 8 + ifd0_len; // after IFD0
    let make = b"PhoneCo\0";
    let model = b"Model X serial 12345\0";
    let gps_off = data_off + make.len() as u32 + model.len() as u32;
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32| {
        t.extend_from_slice(&tag.to_be_bytes());
        t.extend_from_slice(&kind.to_be_bytes());
        t.extend_from_slice(&count.to_be_bytes());
        t.extend_from_slice(&value.to_be_bytes());
    };
    t.extend_from_slice(&ifd0_entries.to_be_bytes());
    entry(&mut t, 0x010F, 2, make.len() as u32, data_off);
    entry(
        &mut t,
        0x0110,
        2,
        model.len() as u32,
        data_off + make.len() as u32,
    );
    entry(&mut t, 0x0112, 3, 1, (orientation as u32) << 16);
    entry(&mut t, 0x8825, 4, 1, gps_off);
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(make);
    t.extend_from_slice(model);
    // GPS IFD: latitude ref and latitude (3 rationals).
    let gps_entries = 2u16;
    let rat_off = gps_off + 2 + 12 * gps_entries as u32 + 4;
    t.extend_from_slice(&gps_entries.to_be_bytes());
    entry(&mut t, 0x0001, 2, 2, u32::from_be_bytes(*b"N\0\0\0"));
    entry(&mut t, 0x0002, 5, 3, rat_off);
    t.extend_from_slice(&0u32.to_be_bytes());
    for (n, d) in [(51u32, 1u32), (30, 1), (1234, 100)] {
        t.extend_from_slice(&n.to_be_bytes());
        t.extend_from_slice(&d.to_be_bytes());
    }
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&t);
    app1
}

/// A 40×20 JPEG (wider than tall) carrying phone-style EXIF with GPS.
pub fn phone_jpeg(orientation: u16) -> Vec<u8> {
    let img = image::RgbImage::from_fn(40, 20, |x, y| image::Rgb([x as u8 * 6, y as u8 * 12, 90]));
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .write_image(&img, 40, 20, image::ExtendedColorType::Rgb8)
        .unwrap();
    let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(Bytes::from(plain)).unwrap();
    let seg =
        img_parts::jpeg::JpegSegment::new_with_contents(0xE1, Bytes::from(exif_block(orientation)));
    jpeg.segments_mut().insert(1, seg);
    jpeg.segments_mut().insert(
        2,
        img_parts::jpeg::JpegSegment::new_with_contents(
            0xFE,
            Bytes::from_static(b"patient: J. Doe"),
        ),
    );
    let mut out = Vec::new();
    jpeg.encoder().write_to(&mut out).unwrap();
    out
}

/// A valid manifest (witnessed verbal consent, pseudonymous patient) whose
/// one photo, `media/photo-1.jpg`, is `photo`.
pub fn sample_manifest(photo: &[u8]) -> Manifest {
    Manifest {
        manifest_version: MANIFEST_VERSION,
        report_id: "r_1".into(),
        created_at: "2026-11-23T10:00:00Z".into(),
        capturer: Person {
            name: "Dr A".into(),
            email: None,
        },
        organisation: "St Elsewhere".into(),
        patient: Patient {
            identifiers: vec![Identifier {
                system: "urn:medseal:pseudonym".into(),
                value: "P-1".into(),
            }],
            minimised: true,
        },
        consent: Consent {
            method: ConsentMethod::VerbalWitnessed,
            given_by: ConsentGiver::Patient,
            scope: vec![ConsentScope::Care],
            recorded_at: "2026-11-23T10:00:00Z".into(),
            evidence: None,
            witness: Some("Nurse B".into()),
            unable_reason: None,
        },
        body_site: None,
        notes: None,
        media: vec![MediaEntry {
            path: "media/photo-1.jpg".into(),
            kind: MediaKind::Photo,
            mime_type: "image/jpeg".into(),
            size: photo.len() as u64,
            sha256: hex::encode(Sha256::digest(photo)),
            captured_at: None,
            width: None,
            height: None,
            duration_seconds: None,
        }],
    }
}
