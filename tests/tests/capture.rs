//! `medseal capture` end to end: phone photos carrying GPS EXIF and a
//! recording become one sealed report; opened and extracted, the photos
//! carry no metadata (read back with exiftool, an independent reader), the
//! manifest validates against the published schema, and the PDF has a
//! summary page and one page per photo.

use std::path::Path;
use std::process::{Command, Output};

use medseal_e2e::reports::exiftool;
use medseal_e2e::{medseal_bin, wav};
use serde_json::Value;

fn medseal(dir: &Path, args: &[&str]) -> Output {
    Command::new(medseal_bin())
        .current_dir(dir)
        .args(args)
        .env("MEDSEAL_CONFIG_DIR", dir.join("config"))
        // A device in India: the PDF shows its local time, UTC+05:30.
        .env("TZ", "IST-5:30")
        .output()
        .expect("run medseal")
}

#[test]
fn capture_open_extract_and_check_everything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p1.jpg"), medseal_capture::fixtures::phone_jpeg(1)).unwrap();
    std::fs::write(d.join("p2.jpg"), medseal_capture::fixtures::phone_jpeg(6)).unwrap();
    std::fs::write(d.join("consent.wav"), wav(1)).unwrap();
    std::fs::write(d.join("key"), [3u8; 32]).unwrap();

    // The fixtures really carry what must go: GPS and device details.
    let before = exiftool(&d.join("p1.jpg"));
    assert!(before.contains("GPSLatitude"), "{before}");
    assert!(before.contains("PhoneCo"), "{before}");

    let out = medseal(
        d,
        &[
            "capture",
            "--patient-id",
            "9434765919",
            "--patient-id-system",
            "https://fhir.nhs.uk/Id/nhs-number",
            "--consent",
            "verbal-recorded",
            "--consent-by",
            "guardian",
            "--consent-scope",
            "care,teaching",
            "--consent-evidence",
            "consent.wav",
            "--body-site",
            "left forearm",
            "--note",
            "Healing well",
            "--photo",
            "p1.jpg",
            "p2.jpg",
            "--organisation",
            "St Elsewhere",
            "--capturer",
            "Dr A",
            "--key-file",
            "key",
            "-o",
            "report.mseal",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = medseal(
        d,
        &[
            "open",
            "--key-file",
            "key",
            "--extract",
            "opened",
            "report.mseal",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opened = d.join("opened");

    // Manifest: valid against the published schema, and says what happened.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(opened.join("manifest.json")).unwrap()).unwrap();
    let errors = medseal_e2e::reports::schema_errors(&manifest);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(manifest["patient"]["identifiers"][0]["value"], "9434765919");
    assert_eq!(manifest["patient"]["minimised"], false);
    assert_eq!(manifest["consent"]["method"], "verbal-recorded");
    assert_eq!(manifest["consent"]["given_by"], "guardian");
    assert_eq!(
        manifest["consent"]["scope"],
        serde_json::json!(["care", "teaching"])
    );
    assert_eq!(
        manifest["consent"]["evidence"],
        "media/consent-evidence.wav"
    );
    let media = manifest["media"].as_array().unwrap();
    assert_eq!(media.len(), 3);
    assert_eq!(
        media[1]["width"], 20,
        "the second photo was rotated upright"
    );
    assert_eq!(media[1]["height"], 40);
    assert_eq!(media[2]["kind"], "consent-evidence");
    assert_eq!(media[2]["duration_seconds"], 1.0);

    // Photos: no EXIF, no GPS, no device, no comment — by an independent reader.
    for p in ["media/photo-1.jpg", "media/photo-2.jpg"] {
        let tags = exiftool(&opened.join(p));
        for banned in [
            "GPS",
            "PhoneCo",
            "Model",
            "Make",
            "Comment",
            "Orientation",
            "Thumbnail",
        ] {
            assert!(!tags.contains(banned), "{p} still has {banned}: {tags}");
        }
    }
    // The recording is byte for byte what was captured.
    assert_eq!(
        std::fs::read(opened.join("media/consent-evidence.wav")).unwrap(),
        std::fs::read(d.join("consent.wav")).unwrap()
    );
    // The PDF, read as a clinical document: a summary, one page per photo,
    // an Integrity page; every page matchable to its patient and report.
    let pdf = opened.join("report.pdf");
    let info = Command::new("pdfinfo").arg(&pdf).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Pages:", "4"]),
        "{info}"
    );
    let page = |n: usize| {
        let o = Command::new("pdftotext")
            .args(["-layout", "-f", &n.to_string(), "-l", &n.to_string()])
            .arg(&pdf)
            .arg("-")
            .output()
            .expect("pdftotext (poppler-utils)");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let report_id = manifest["report_id"].as_str().unwrap();
    for n in 1..=4 {
        let text = page(n);
        assert!(text.contains("NHS number 943 476 5919"), "page {n}: {text}");
        assert!(
            text.contains(&format!("Report {report_id}")),
            "page {n}: {text}"
        );
        assert!(text.contains(&format!("Page {n} of 4")), "page {n}: {text}");
        assert!(text.contains("St Elsewhere"), "page {n}: {text}");
    }
    let summary = page(1);
    for want in [
        "Organisation: St Elsewhere",
        "Captured by: Dr A",
        "+05:30",
        "Consent: verbal, recorded",
        "Given by: guardian",
        "Scope: care, teaching",
        "Body site: left forearm",
        "Notes: Healing well",
        "Photo 1 (photo-1.jpg)",
        "Photo 2 (photo-2.jpg), 20 x 40 pixels",
        "Consent evidence (consent-evidence.wav), duration 0:01",
    ] {
        assert!(summary.contains(want), "summary lacks {want:?}: {summary}");
    }
    assert!(
        !summary.contains("https://fhir.nhs.uk"),
        "the system's URI, not its name"
    );
    // The local time is the device's (TZ=IST-5:30): the UTC time plus 5:30.
    let created = manifest["created_at"].as_str().unwrap();
    let utc_hm: Vec<u32> = created[11..16]
        .split(':')
        .map(|x| x.parse().unwrap())
        .collect();
    let local = (utc_hm[0] * 60 + utc_hm[1] + 330) % (24 * 60);
    let shown = format!("{:02}:{:02}", local / 60, local % 60);
    assert!(summary.contains(&shown), "{shown} not in {summary}");
    // (These fixtures carry no capture time; the HEIC test's photo does.)
    assert!(
        page(2).contains("Photo 1 of 2 - left forearm - time taken not recorded"),
        "{}",
        page(2)
    );
    assert!(
        page(3).contains("Photo 2 of 2 - left forearm"),
        "{}",
        page(3)
    );
    let integrity = page(4);
    assert!(integrity.contains("Integrity"));
    for m in media {
        assert!(
            integrity.contains(m["sha256"].as_str().unwrap()),
            "{} missing from {integrity}",
            m["path"]
        );
        assert!(integrity.contains(m["path"].as_str().unwrap()));
    }
    // Rendered, the photo pages show their photos.
    let png = d.join("page2");
    let ok = Command::new("pdftoppm")
        .args(["-png", "-r", "40", "-f", "2", "-l", "2", "-singlefile"])
        .arg(&pdf)
        .arg(&png)
        .status()
        .unwrap();
    assert!(ok.success());
    let img = image::open(png.with_extension("png")).unwrap().to_rgb8();
    // The fixture photo's colours, not the caption's black text.
    let photo = img
        .pixels()
        .filter(|p| p[2] > 60 && p[2] < 120 && p[0] > 30)
        .count();
    assert!(
        photo > 200,
        "the photo is not visible on page 2 ({photo} pixels)"
    );
}

#[test]
fn no_consent_record_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.jpg"), medseal_capture::fixtures::phone_jpeg(1)).unwrap();
    std::fs::write(d.join("key"), [3u8; 32]).unwrap();
    for (args, says) in [
        (vec![], "needs its consent record"),
        (vec!["--consent", "unable"], "--no-consent-reason"),
        (vec!["--consent", "verbal-witnessed"], "witness"),
        (vec!["--consent", "written"], "evidence"),
    ] {
        let mut all = vec!["capture", "--patient-id", "P1"];
        all.extend(args);
        all.extend(["--photo", "p.jpg", "--key-file", "key", "-o", "r.mseal"]);
        let out = medseal(d, &all);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!d.join("r.mseal").exists());
    }
    // A damaged HEIC is refused plainly.
    let mut heic = vec![0, 0, 0, 24];
    heic.extend_from_slice(b"ftypheic\0\0\0\0");
    std::fs::write(d.join("p.heic"), heic).unwrap();
    let out = medseal(
        d,
        &unconsented("P1", None, &["--photo", "p.heic"], "r.mseal"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HEIC"));
}

fn run_ok(d: &Path, args: &[&str]) -> Output {
    let out = medseal(d, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `medseal capture` of a patient who could not consent (the shortest
/// lawful report), identified as `patient` in `system` (a pseudonym when
/// `None`), sealed with the file `key`: the `media` flags, then `-o out`.
fn unconsented<'a>(
    patient: &'a str,
    system: Option<&'a str>,
    media: &[&'a str],
    out: &'a str,
) -> Vec<&'a str> {
    let mut v = vec!["capture", "--patient-id", patient];
    if let Some(s) = system {
        v.extend(["--patient-id-system", s]);
    }
    v.extend([
        "--consent",
        "unable",
        "--no-consent-reason",
        "unconscious",
        "--key-file",
        "key",
    ]);
    v.extend_from_slice(media);
    v.extend(["-o", out]);
    v
}

/// An iPhone's HEIC photo, with GPS and a serial number in its EXIF,
/// becomes a clean JPEG in the report (decoded by libheif, re-encoded from
/// the pixels); its capture time is kept.
#[test]
fn heic_photos_become_clean_jpegs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.jpg"), medseal_capture::fixtures::phone_jpeg(1)).unwrap();
    std::fs::write(d.join("key"), [3u8; 32]).unwrap();
    let tag = Command::new("exiftool")
        .current_dir(d)
        .args([
            "-q",
            "-overwrite_original",
            "-GPSLatitude=51.5",
            "-GPSLatitudeRef=N",
            "-SerialNumber=SN-4417",
            "-DateTimeOriginal=2026:11:30 10:20:30",
            "p.jpg",
        ])
        .status()
        .unwrap();
    assert!(tag.success());
    let enc = Command::new("heif-enc")
        .current_dir(d)
        .args(["-q", "90", "-o", "p.heic", "p.jpg"])
        .output()
        .expect("heif-enc (libheif-examples) is needed: scripts/test-all.sh installs it");
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    let before = exiftool(&d.join("p.heic"));
    assert!(
        before.contains("GPSLatitude") && before.contains("SN-4417"),
        "{before}"
    );

    run_ok(
        d,
        &unconsented("P1", None, &["--photo", "p.heic"], "r.mseal"),
    );
    run_ok(
        d,
        &["open", "--key-file", "key", "--extract", "out", "r.mseal"],
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(d.join("out/manifest.json")).unwrap()).unwrap();
    let photo = &manifest["media"][0];
    assert_eq!(photo["path"], "media/photo-1.jpg");
    assert_eq!(photo["mime_type"], "image/jpeg");
    assert_eq!(photo["captured_at"], "2026-11-30T10:20:30");
    assert_eq!(photo["width"], 40);
    let bytes = std::fs::read(d.join("out/media/photo-1.jpg")).unwrap();
    assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
    let tags = exiftool(&d.join("out/media/photo-1.jpg"));
    for banned in ["GPS", "SN-4417", "Serial", "DateTimeOriginal", "PhoneCo"] {
        assert!(!tags.contains(banned), "{banned} survived: {tags}");
    }
    // Its caption in the PDF says when it was taken.
    let o = Command::new("pdftotext")
        .args(["-f", "2", "-l", "2"])
        .arg(d.join("out/report.pdf"))
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Photo 1 of 1 - taken 2026-11-30 10:20:30 (camera clock)"),
        "{text}"
    );
}

/// A voice note or a video alone is a report; nothing at all is not.
#[test]
fn audio_only_and_video_only_reports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("note.wav"), wav(2)).unwrap();
    std::fs::write(d.join("key"), [3u8; 32]).unwrap();
    // A minimal MP4: ftyp, and a moov with an mvhd of 3 s (timescale 1000).
    let mut mp4 = Vec::new();
    mp4.extend_from_slice(&[0, 0, 0, 20]);
    mp4.extend_from_slice(b"ftypisom\0\0\x02\0isom");
    let mut mvhd = vec![0u8; 8 + 100];
    mvhd[..4].copy_from_slice(&108u32.to_be_bytes());
    mvhd[4..8].copy_from_slice(b"mvhd");
    mvhd[20..24].copy_from_slice(&1000u32.to_be_bytes());
    mvhd[24..28].copy_from_slice(&3000u32.to_be_bytes());
    mp4.extend_from_slice(&(8 + mvhd.len() as u32).to_be_bytes());
    mp4.extend_from_slice(b"moov");
    mp4.extend_from_slice(&mvhd);
    std::fs::write(d.join("clip.mp4"), &mp4).unwrap();
    for (media, file, kind) in [
        (["--audio", "note.wav"], "a.mseal", "audio"),
        (["--video", "clip.mp4"], "v.mseal", "video"),
    ] {
        run_ok(d, &unconsented("P1", None, &media, file));
        let out = format!("{kind}-out");
        run_ok(d, &["open", "--key-file", "key", "--extract", &out, file]);
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(d.join(&out).join("manifest.json")).unwrap())
                .unwrap();
        let media = manifest["media"].as_array().unwrap();
        assert_eq!(media.len(), 1);
        assert_eq!(media[0]["kind"], kind);
        assert!(d.join(&out).join("report.pdf").exists());
    }
    let out = medseal(d, &unconsented("P1", None, &[], "none.mseal"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--photo"));
    assert!(!d.join("none.mseal").exists());
}

/// An NHS number with a wrong check digit is refused before anything is
/// written; a right one in any spacing is kept as its ten digits.
#[test]
fn nhs_numbers_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.jpg"), medseal_capture::fixtures::phone_jpeg(1)).unwrap();
    std::fs::write(d.join("key"), [3u8; 32]).unwrap();
    let nhs = Some("https://fhir.nhs.uk/Id/nhs-number");
    let capture =
        |id: &str, out: &str| medseal(d, &unconsented(id, nhs, &["--photo", "p.jpg"], out));
    for bad in ["943 476 5918", "943476591", "9434756919"] {
        let o = capture(bad, "bad.mseal");
        assert_eq!(o.status.code(), Some(1), "{bad}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("not a valid NHS number"), "{e}");
        assert_eq!(e.lines().count(), 1);
        assert!(!d.join("bad.mseal").exists());
    }
    let o = capture("943 476 5919", "good.mseal");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    run_ok(
        d,
        &[
            "open",
            "--key-file",
            "key",
            "--extract",
            "good",
            "good.mseal",
        ],
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(d.join("good/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["patient"]["identifiers"][0]["value"], "9434765919");
    // Another system is not checked.
    let mrn = Some("https://hospital.example/mrn");
    let o = medseal(
        d,
        &unconsented("MRN-0042", mrn, &["--photo", "p.jpg"], "mrn.mseal"),
    );
    assert!(o.status.success());
}

/// A report already written (perhaps already sent) is not replaced unless
/// asked: the old file is left exactly as it was.
#[test]
fn capture_never_replaces_a_report_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.jpg"), medseal_capture::fixtures::phone_jpeg(1)).unwrap();
    std::fs::write(d.join("key"), [3u8; 32]).unwrap();
    let mut args = unconsented("P1", None, &["--photo", "p.jpg"], "r.mseal");
    run_ok(d, &args);
    let first = std::fs::read(d.join("r.mseal")).unwrap();
    let o = medseal(d, &args);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(d.join("r.mseal")).unwrap(), first);
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
    args.push("--force");
    run_ok(d, &args);
    assert_ne!(std::fs::read(d.join("r.mseal")).unwrap(), first);
}
