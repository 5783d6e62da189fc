//! Checks of an opened report by independent readers, shared by the tests
//! of `medseal capture` and of capture in the browser: exiftool for what a
//! photo still says, the published JSON Schema for the manifest.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Every tag exiftool finds, as `Group:Tag=Value` lines.
pub fn exiftool(path: &Path) -> String {
    let out = Command::new("exiftool")
        .args(["-a", "-G1", "-s", "-e"])
        .arg(path)
        .output()
        .expect("exiftool (libimage-exiftool-perl) is needed: scripts/test-all.sh installs it");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `manifest` breaks of docs/manifest.schema.json (empty: valid).
pub fn schema_errors(manifest: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/manifest.schema.json"
        ))
        .expect("docs/manifest.schema.json"),
    )
    .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    validator
        .iter_errors(manifest)
        .map(|e| e.to_string())
        .collect()
}
