//! `medseal open --extract DIR` unpacks a sealed report and checks every file
//! against its manifest; a doctored bundle leaves nothing behind.

use std::fs;

use assert_cmd::Command;
use medseal_format::bundle::BundleWriter;
use medseal_format::manifest::*;
use tempfile::TempDir;

/// The fixture manifest, recording `described` as its photo, with consent
/// given as "unable" (the reason stated).
fn manifest(described: &[u8]) -> Manifest {
    let mut m = medseal_capture::fixtures::sample_manifest(described);
    m.report_id = "r_e2e".into();
    m.consent = Consent {
        method: ConsentMethod::Unable,
        given_by: ConsentGiver::Nobody,
        scope: vec![],
        recorded_at: "2026-11-23T10:00:00Z".into(),
        evidence: None,
        witness: None,
        unable_reason: Some("unconscious; photographed for emergency care".into()),
    };
    m
}

fn sealed_bundle(dir: &TempDir, photo_in_manifest: &[u8], photo_in_bundle: &[u8]) {
    let m = manifest(photo_in_manifest);
    let mut w = BundleWriter::new(Vec::new(), &m).unwrap();
    w.add("report.pdf", 8, &b"%PDF-1.7"[..]).unwrap();
    w.add(
        "media/photo-1.jpg",
        photo_in_bundle.len() as u64,
        photo_in_bundle,
    )
    .unwrap();
    fs::write(dir.path().join("report.tar"), w.finish().unwrap()).unwrap();
    fs::write(dir.path().join("key"), [9u8; 32]).unwrap();
    Command::cargo_bin("medseal")
        .unwrap()
        .current_dir(dir.path())
        .args([
            "seal",
            "--key-file",
            "key",
            "-o",
            "report.mseal",
            "report.tar",
        ])
        .assert()
        .success();
}

#[test]
fn extracts_a_report() {
    let dir = TempDir::new().unwrap();
    let photo = vec![0xd8u8; 5000];
    sealed_bundle(&dir, &photo, &photo);
    Command::cargo_bin("medseal")
        .unwrap()
        .current_dir(dir.path())
        .args([
            "open",
            "--key-file",
            "key",
            "--extract",
            "out",
            "report.mseal",
        ])
        .assert()
        .success();
    assert_eq!(
        fs::read(dir.path().join("out/media/photo-1.jpg")).unwrap(),
        photo
    );
    assert_eq!(
        fs::read(dir.path().join("out/report.pdf")).unwrap(),
        b"%PDF-1.7"
    );
    let m: Manifest =
        serde_json::from_slice(&fs::read(dir.path().join("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(m.report_id, "r_e2e");
    // Nothing of the report is readable by other users: folders 0700,
    // files 0600, whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for folder in ["out", "out/media"] {
        assert_eq!(mode(folder), 0o700, "{folder}");
    }
    for file in [
        "out/manifest.json",
        "out/report.pdf",
        "out/media/photo-1.jpg",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
}

#[test]
fn a_doctored_bundle_leaves_nothing() {
    let dir = TempDir::new().unwrap();
    sealed_bundle(
        &dir,
        b"the photo the manifest describes",
        b"a different photo",
    );
    let out = Command::cargo_bin("medseal")
        .unwrap()
        .current_dir(dir.path())
        .args([
            "open",
            "--key-file",
            "key",
            "--extract",
            "out",
            "report.mseal",
        ])
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match its manifest"), "{err}");
    assert_eq!(err.lines().count(), 1);
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["key", "report.mseal", "report.tar"]);
}
