//! What a clinician fills in, as the command line's flags and the web app's
//! form both give it, and the one place that turns it into a
//! [`ReportSpec`]: so that `medseal capture` and the phone in the browser
//! refuse the same reports with the same words (no consent record, capture
//! without consent and no reason, a witness missing…).

use medseal_format::manifest::{
    Consent, ConsentGiver, ConsentMethod, ConsentScope, Identifier, ManifestError, Patient, Person,
};
use serde::Deserialize;

use crate::identifiers::PSEUDONYM;
use crate::report::{MediaInput, MediaSource, ReportError, ReportSpec};

/// The answers of the capture form. Empty text counts as not given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureForm {
    /// The patient's identifier (MRN, NHS number, or a pseudonymous id).
    pub patient_id: String,
    /// The system that issued it; none: a pseudonymous id, and the report
    /// is marked minimised.
    #[serde(default)]
    pub patient_id_system: Option<String>,
    /// How consent was obtained; none is refused.
    #[serde(default)]
    pub consent: Option<ConsentMethod>,
    /// Who consented (default: the patient).
    #[serde(default)]
    pub consent_by: Option<ConsentGiver>,
    /// What for (default: care).
    #[serde(default)]
    pub consent_scope: Vec<ConsentScope>,
    /// Who witnessed verbal consent.
    #[serde(default)]
    pub witness: Option<String>,
    /// Why the patient cannot consent, and the lawful basis for capturing.
    #[serde(default)]
    pub no_consent_reason: Option<String>,
    /// Where on the body.
    #[serde(default)]
    pub body_site: Option<String>,
    /// Clinical notes.
    #[serde(default)]
    pub note: Option<String>,
    /// The capturer's name.
    pub capturer: String,
    /// The capturer's e-mail (their login), if known.
    #[serde(default)]
    pub capturer_email: Option<String>,
    /// Their organisation.
    #[serde(default)]
    pub organisation: String,
}

/// Trimmed, and `None` when nothing is left.
fn given(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn refuse(msg: &str) -> ReportError {
    ReportError::Manifest(ManifestError(msg.to_owned()))
}

impl CaptureForm {
    /// The report this form describes, with its media, made at `created_at`
    /// (RFC 3339) on a device `utc_offset_seconds` east of UTC. Refuses a
    /// form with no consent record before anything is read.
    pub fn into_spec(
        self,
        report_id: String,
        created_at: String,
        media: Vec<MediaInput>,
        consent_evidence: Option<MediaSource>,
        utc_offset_seconds: i32,
    ) -> Result<ReportSpec, ReportError> {
        let method = self.consent.ok_or_else(|| {
            refuse(
                "a report needs its consent record: how consent was obtained \
                 (written, verbal-recorded, verbal-witnessed) or that the patient \
                 is unable to consent (--consent)",
            )
        })?;
        let unable = method == ConsentMethod::Unable;
        let reason = given(&self.no_consent_reason);
        if unable && reason.is_none() {
            return Err(refuse(
                "capturing without consent requires the reason (--no-consent-reason)",
            ));
        }
        let system = given(&self.patient_id_system).unwrap_or_else(|| PSEUDONYM.to_owned());
        let scope = if self.consent_scope.is_empty() {
            vec![ConsentScope::Care]
        } else {
            self.consent_scope
        };
        Ok(ReportSpec {
            report_id,
            created_at: created_at.clone(),
            capturer: Person {
                name: self.capturer.trim().to_owned(),
                email: given(&self.capturer_email),
            },
            organisation: self.organisation.trim().to_owned(),
            patient: Patient {
                minimised: system == PSEUDONYM,
                identifiers: vec![Identifier {
                    system,
                    value: self.patient_id.trim().to_owned(),
                }],
            },
            consent: Consent {
                method,
                given_by: if unable {
                    ConsentGiver::Nobody
                } else {
                    self.consent_by.unwrap_or(ConsentGiver::Patient)
                },
                scope: if unable { Vec::new() } else { scope },
                recorded_at: created_at,
                evidence: None,
                witness: given(&self.witness),
                unable_reason: reason,
            },
            consent_evidence,
            body_site: given(&self.body_site),
            notes: given(&self.note),
            media,
            utc_offset_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> CaptureForm {
        CaptureForm {
            patient_id: " 943 476 5919 ".into(),
            patient_id_system: Some("https://fhir.nhs.uk/Id/nhs-number".into()),
            consent: Some(ConsentMethod::VerbalWitnessed),
            witness: Some("Nurse Jones".into()),
            capturer: "Dr Amy".into(),
            ..CaptureForm::default()
        }
    }

    fn spec(f: CaptureForm) -> Result<ReportSpec, ReportError> {
        f.into_spec("r_1".into(), "2026-01-02T03:04:05Z".into(), vec![], None, 0)
    }

    #[test]
    fn no_consent_record_is_refused_first() {
        let e = spec(CaptureForm {
            consent: None,
            ..form()
        })
        .unwrap_err();
        assert!(e.to_string().contains("needs its consent record"), "{e}");
    }

    #[test]
    fn unable_needs_a_reason_and_leaves_nobody_and_no_scope() {
        let f = CaptureForm {
            consent: Some(ConsentMethod::Unable),
            no_consent_reason: Some("   ".into()),
            ..form()
        };
        assert!(spec(f.clone()).unwrap_err().to_string().contains("reason"));
        let s = spec(CaptureForm {
            no_consent_reason: Some("unconscious; best interests".into()),
            ..f
        })
        .unwrap();
        assert_eq!(s.consent.given_by, ConsentGiver::Nobody);
        assert!(s.consent.scope.is_empty());
    }

    #[test]
    fn defaults_are_the_command_lines() {
        let s = spec(CaptureForm {
            patient_id_system: Some(String::new()),
            witness: Some(" ".into()),
            ..form()
        })
        .unwrap();
        assert_eq!(s.patient.identifiers[0].system, PSEUDONYM);
        assert!(s.patient.minimised);
        assert_eq!(s.patient.identifiers[0].value, "943 476 5919");
        assert_eq!(s.consent.given_by, ConsentGiver::Patient);
        assert_eq!(s.consent.scope, vec![ConsentScope::Care]);
        assert_eq!(s.consent.witness, None);
    }
}
