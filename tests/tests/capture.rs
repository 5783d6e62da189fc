//! `medseal capture` end to end: phone photos carrying GPS EXIF and a
//! recording become one sealed report; opened and extracted, the photos
//! carry no metadata (read back with exiftool, an independent reader), the
//! manifest validates against the published schema, and the PDF has a
//! summary page and one page per photo.

use std::path::Path;
use std::process::{Command, Output};

use medseal_e2e::{medseal_bin, wav};
use serde_json::Value;

fn medseal(dir: &Path, args: &[&str]) -> Output {
    Command::new(medseal_bin())
        .current_dir(dir)
        .args(args)
        .env("MEDSEAL_CONFIG_DIR", dir.join("config"))
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
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/manifest.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&manifest)
        .map(|e| e.to_string())
        .collect();
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
    // The PDF: summary + one page per photo.
    let info = Command::new("pdfinfo")
        .arg(opened.join("report.pdf"))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Pages:", "3"]),
        "{info}"
    );
}

#[test]
fn no_consent_record_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.jpg"), medseal_capture::fixtures::phone_jpeg(1)).unwrap();
    std::fs::write(d.join("key"), [3u8; 32]).unwrap();
    for (args, says) in [
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
    // HEIC is refused plainly.
    let mut heic = vec![0, 0, 0, 24];
    heic.extend_from_slice(b"ftypheic\0\0\0\0");
    std::fs::write(d.join("p.heic"), heic).unwrap();
    let out = medseal(
        d,
        &[
            "capture",
            "--patient-id",
            "P1",
            "--consent",
            "unable",
            "--no-consent-reason",
            "unconscious",
            "--photo",
            "p.heic",
            "--key-file",
            "key",
            "-o",
            "r.mseal",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HEIC"));
}

/// Every tag exiftool finds, as `Group:Tag=Value` lines.
fn exiftool(path: &Path) -> String {
    let out = Command::new("exiftool")
        .args(["-a", "-G1", "-s", "-e"])
        .arg(path)
        .output()
        .expect("exiftool (libimage-exiftool-perl) is needed: scripts/test-all.sh installs it");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
