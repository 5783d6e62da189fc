//! The report manifest: what a sealed report contains and under what consent.
//!
//! `manifest.json` sits at the root of every report bundle. Its JSON Schema,
//! `docs/manifest.schema.json`, is generated from these types (so the two
//! cannot drift); [`Manifest::validate`] adds the rules a schema cannot say,
//! such as "a witnessed verbal consent names its witness".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The manifest version this build writes.
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest of one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always 1 for this layout.
    pub manifest_version: u32,
    /// The report's id (also the key server's `report_id`).
    pub report_id: String,
    /// When the report was built (RFC 3339, UTC).
    pub created_at: String,
    /// Who captured the media.
    pub capturer: Person,
    /// The capturer's organisation.
    pub organisation: String,
    /// Who the report is about.
    pub patient: Patient,
    /// The consent under which the media were captured.
    pub consent: Consent,
    /// Where on the body, in the clinician's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_site: Option<String>,
    /// Clinical notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Every media file in the bundle, in capture order.
    pub media: Vec<MediaEntry>,
}

/// A person named in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Display name.
    pub name: String,
    /// E-mail address, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The patient, identified as little as the purpose allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    /// Identifiers, e.g. an MRN, an NHS number, or a pseudonymous study id.
    pub identifiers: Vec<Identifier>,
    /// True when only a pseudonymous identifier is recorded (no name, no
    /// date of birth, no national number).
    pub minimised: bool,
}

/// One identifier and the system that issued it (a FHIR-style URI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    /// The issuing system, e.g. `https://fhir.nhs.uk/Id/nhs-number`.
    pub system: String,
    /// The identifier itself.
    pub value: String,
}

/// How consent was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentMethod {
    /// A signed consent form (the signature image is evidence).
    Written,
    /// Verbal consent recorded as audio (the recording is evidence).
    VerbalRecorded,
    /// Verbal consent given before a named witness.
    VerbalWitnessed,
    /// The patient could not consent; the reason is recorded.
    Unable,
}

/// Who gave consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentGiver {
    /// The patient.
    Patient,
    /// A parent or guardian.
    Guardian,
    /// Nobody: see the reason.
    Nobody,
}

/// What the media may be used for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentScope {
    /// The patient's own care.
    Care,
    /// Teaching.
    Teaching,
    /// Publication.
    Publication,
}

/// The consent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// How.
    pub method: ConsentMethod,
    /// Who.
    pub given_by: ConsentGiver,
    /// For what (empty only when nobody consented).
    pub scope: Vec<ConsentScope>,
    /// When (RFC 3339).
    pub recorded_at: String,
    /// Bundle path of the evidence (signature image or audio recording).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The witness of verbal consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<String>,
    /// Why the patient could not consent, and the lawful basis for capturing anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unable_reason: Option<String>,
}

/// What a media file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MediaKind {
    /// A clinical photograph (sanitised: metadata removed, orientation applied).
    Photo,
    /// An audio recording, kept byte for byte.
    Audio,
    /// A video, kept byte for byte.
    Video,
    /// Consent evidence: a signature image or a consent recording.
    ConsentEvidence,
}

/// One media file in the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaEntry {
    /// Path inside the bundle, under `media/`.
    pub path: String,
    /// What it is.
    pub kind: MediaKind,
    /// MIME type, e.g. `image/jpeg`.
    pub mime_type: String,
    /// Size in bytes, as stored in the bundle.
    pub size: u64,
    /// SHA-256 of the stored bytes, lower-case hex.
    pub sha256: String,
    /// When it was captured (RFC 3339), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<String>,
    /// Pixel width (photos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixel height (photos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Duration in seconds (audio, video), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

// `f64` has no `Eq`; durations are never NaN (validated), so equality is total.
impl Eq for MediaEntry {}

/// A rule a manifest breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest: {0}")]
pub struct ManifestError(pub String);

fn rule(ok: bool, msg: &str) -> Result<(), ManifestError> {
    if ok {
        Ok(())
    } else {
        Err(ManifestError(msg.to_owned()))
    }
}

/// A bundle path is relative, under `media/`, with no `..`, no empty or
/// hidden components, and only portable characters — so that extracting a
/// bundle can never write outside its directory.
pub fn is_safe_media_path(p: &str) -> bool {
    let Some(rest) = p.strip_prefix("media/") else {
        return false;
    };
    !rest.is_empty()
        && p.len() <= 255
        && rest.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

impl Manifest {
    /// Checks the rules the JSON Schema cannot express.
    pub fn validate(&self) -> Result<(), ManifestError> {
        rule(
            self.manifest_version == MANIFEST_VERSION,
            "unsupported manifest_version",
        )?;
        rule(!self.report_id.is_empty(), "report_id is empty")?;
        rule(
            !self.patient.identifiers.is_empty(),
            "the patient needs at least one identifier",
        )?;
        rule(
            self.patient
                .identifiers
                .iter()
                .all(|i| !i.system.is_empty() && !i.value.is_empty()),
            "every patient identifier needs a system and a value",
        )?;
        let c = &self.consent;
        match c.method {
            ConsentMethod::Unable => {
                rule(
                    c.unable_reason
                        .as_deref()
                        .is_some_and(|r| !r.trim().is_empty()),
                    "capturing without consent requires the reason (--no-consent-reason)",
                )?;
                rule(
                    c.given_by == ConsentGiver::Nobody,
                    "when the patient is unable to consent, nobody gave it",
                )?;
            }
            method => {
                rule(
                    c.given_by != ConsentGiver::Nobody,
                    "consent must be given by the patient or a guardian",
                )?;
                rule(
                    !c.scope.is_empty(),
                    "consent needs a scope (care, teaching, publication)",
                )?;
                match method {
                    ConsentMethod::VerbalWitnessed => rule(
                        c.witness.as_deref().is_some_and(|w| !w.trim().is_empty()),
                        "witnessed verbal consent needs the witness's name (--witness)",
                    )?,
                    _ => rule(
                        c.evidence.is_some(),
                        "written or recorded consent needs its evidence (--consent-evidence)",
                    )?,
                }
            }
        }
        if let Some(e) = &c.evidence {
            rule(
                self.media
                    .iter()
                    .any(|m| &m.path == e && m.kind == MediaKind::ConsentEvidence),
                "the consent evidence must be a consent-evidence media entry",
            )?;
        }
        rule(
            self.media
                .iter()
                .any(|m| m.kind != MediaKind::ConsentEvidence),
            "a report needs at least one photo, audio or video",
        )?;
        let mut paths: Vec<&str> = self.media.iter().map(|m| m.path.as_str()).collect();
        paths.sort_unstable();
        rule(
            paths.windows(2).all(|w| w[0] != w[1]),
            "two media entries share a path",
        )?;
        for m in &self.media {
            rule(
                is_safe_media_path(&m.path),
                "media paths must be media/NAME with portable characters",
            )?;
            rule(
                m.sha256.len() == 64
                    && m.sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "sha256 must be 64 lower-case hex digits",
            )?;
            rule(
                m.duration_seconds.is_none_or(|d| d.is_finite() && d >= 0.0),
                "duration_seconds must be a non-negative number",
            )?;
        }
        Ok(())
    }

    /// The JSON Schema of the manifest, as published in `docs/manifest.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        let schema = schemars::schema_for!(Manifest);
        serde_json::to_value(schema).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            manifest_version: 1,
            report_id: "r_1".into(),
            created_at: "2026-11-23T10:00:00Z".into(),
            capturer: Person {
                name: "Dr A".into(),
                email: Some("a@st.example".into()),
            },
            organisation: "St Elsewhere".into(),
            patient: Patient {
                identifiers: vec![Identifier {
                    system: "urn:medseal:pseudonym".into(),
                    value: "P-77".into(),
                }],
                minimised: true,
            },
            consent: Consent {
                method: ConsentMethod::VerbalWitnessed,
                given_by: ConsentGiver::Patient,
                scope: vec![ConsentScope::Care],
                recorded_at: "2026-11-23T09:59:00Z".into(),
                evidence: None,
                witness: Some("Nurse B".into()),
                unable_reason: None,
            },
            body_site: Some("left forearm".into()),
            notes: None,
            media: vec![MediaEntry {
                path: "media/photo-1.jpg".into(),
                kind: MediaKind::Photo,
                mime_type: "image/jpeg".into(),
                size: 10,
                sha256: "a".repeat(64),
                captured_at: None,
                width: Some(4),
                height: Some(3),
                duration_seconds: None,
            }],
        }
    }

    #[test]
    fn a_complete_manifest_validates_and_round_trips() {
        let m = sample();
        m.validate().unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        assert!(json.contains("\"verbal-witnessed\""));
    }

    #[test]
    fn consent_rules() {
        let mut m = sample();
        m.consent.witness = None;
        assert!(m.validate().unwrap_err().0.contains("witness"));

        let mut m = sample();
        m.consent.method = ConsentMethod::Unable;
        m.consent.given_by = ConsentGiver::Nobody;
        assert!(m.validate().unwrap_err().0.contains("reason"));
        m.consent.unable_reason = Some("unconscious; emergency care".into());
        m.validate().unwrap();

        let mut m = sample();
        m.consent.method = ConsentMethod::Written;
        assert!(m.validate().unwrap_err().0.contains("evidence"));
        m.consent.evidence = Some("media/consent.png".into());
        assert!(m.validate().is_err(), "evidence must be in the bundle");
        m.media.push(MediaEntry {
            path: "media/consent.png".into(),
            kind: MediaKind::ConsentEvidence,
            mime_type: "image/png".into(),
            ..sample().media[0].clone()
        });
        m.validate().unwrap();
    }

    #[test]
    fn unsafe_paths_and_bad_hashes_are_refused() {
        for p in [
            "../x",
            "media/../x",
            "/etc/passwd",
            "media/",
            "media/.hidden",
            "media/a b",
            "x.jpg",
            "media//a",
        ] {
            assert!(!is_safe_media_path(p), "{p}");
            let mut m = sample();
            m.media[0].path = p.into();
            assert!(m.validate().is_err(), "{p}");
        }
        let mut m = sample();
        m.media[0].sha256 = "A".repeat(64);
        assert!(m.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Manifest>(v).is_err());
    }

    #[test]
    fn published_schema_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/manifest.schema.json");
        let generated = serde_json::to_string_pretty(&Manifest::json_schema()).unwrap() + "\n";
        if std::env::var_os("MEDSEAL_REGENERATE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            published, generated,
            "docs/manifest.schema.json is stale: run with MEDSEAL_REGENERATE_SCHEMA=1"
        );
    }

    #[test]
    fn sample_validates_against_the_published_schema() {
        let schema = Manifest::json_schema();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let good = serde_json::to_value(sample()).unwrap();
        assert!(validator.is_valid(&good));
        let mut bad = good.clone();
        bad["consent"]["method"] = serde_json::json!("telepathic");
        assert!(!validator.is_valid(&bad));
    }
}
