//! `medseal capture`: consented media in, one sealed report out.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use medseal_capture::form::CaptureForm;
use medseal_capture::report::{MediaInput, MediaSource, Report, new_report_id};
use medseal_format::SealOptions;
use medseal_format::manifest::{ConsentGiver, ConsentMethod, ConsentScope, MediaKind};

use crate::files::{InputPath, Output, check_one_stdin};
use crate::keysource::KeyArgs;

/// The identifier system used when none is given: a pseudonymous id.
const PSEUDONYM: &str = medseal_capture::identifiers::PSEUDONYM;

/// Arguments of `medseal capture`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("media").required(true).multiple(true).args(["photo", "audio", "video"]))]
pub struct Args {
    /// The patient's identifier (MRN, NHS number, or a pseudonymous id).
    #[arg(long, value_name = "ID")]
    patient_id: String,
    /// The system that issued it, e.g. https://fhir.nhs.uk/Id/nhs-number
    /// (its check digit is checked) (default: a pseudonymous id, and the
    /// report is marked minimised).
    #[arg(long, value_name = "URI", default_value = PSEUDONYM)]
    patient_id_system: String,
    /// How consent was obtained: written, verbal-recorded, verbal-witnessed,
    /// unable. A report without it is refused.
    #[arg(long, value_name = "KIND", value_parser = parse_method)]
    consent: Option<ConsentMethod>,
    /// Who consented: patient or guardian.
    #[arg(long, value_name = "WHO", value_parser = parse_giver, default_value = "patient")]
    consent_by: ConsentGiver,
    /// What for: any of care, teaching, publication, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_scope, default_value = "care")]
    consent_scope: Vec<ConsentScope>,
    /// The signed form's image (written) or the consent recording (verbal-recorded).
    #[arg(long, value_name = "FILE")]
    consent_evidence: Option<PathBuf>,
    /// Who witnessed verbal consent.
    #[arg(long, value_name = "NAME")]
    witness: Option<String>,
    /// Why the patient cannot consent, and the lawful basis for capturing (with --consent unable).
    #[arg(long, value_name = "TEXT")]
    no_consent_reason: Option<String>,
    /// Where on the body.
    #[arg(long, value_name = "TEXT")]
    body_site: Option<String>,
    /// Clinical notes.
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
    /// Photos (JPEG, PNG, HEIC); metadata is removed, orientation applied.
    /// At least one photo, recording or video.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    photo: Vec<PathBuf>,
    /// Audio recordings (WAV, MP3, M4A), kept exactly.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    audio: Vec<PathBuf>,
    /// Videos (MP4, MOV), kept exactly.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    video: Vec<PathBuf>,
    /// Your name as capturer (default: your login or user name).
    #[arg(long, value_name = "NAME")]
    capturer: Option<String>,
    /// Your organisation (default: the key server's name for your
    /// session's organisation; none with a key or password file).
    #[arg(long, value_name = "NAME")]
    organisation: Option<String>,
    #[command(flatten)]
    key: KeyArgs,
    /// The sealed report to write.
    #[arg(short, long, value_name = "OUT.mseal")]
    output: String,
    /// Replace OUT.mseal if it exists.
    #[arg(long)]
    force: bool,
}

fn parse_method(s: &str) -> Result<ConsentMethod, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| "use written, verbal-recorded, verbal-witnessed or unable".to_owned())
}

fn parse_giver(s: &str) -> Result<ConsentGiver, String> {
    match s {
        "patient" => Ok(ConsentGiver::Patient),
        "guardian" => Ok(ConsentGiver::Guardian),
        _ => Err("use patient or guardian".into()),
    }
}

fn parse_scope(s: &str) -> Result<ConsentScope, String> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_owned()))
        .map_err(|_| "use care, teaching or publication".to_owned())
}

/// Now, to the second, as the manifest records it.
fn now_rfc3339() -> String {
    use medseal_format::clock::{now_ms, rfc3339};
    rfc3339(now_ms() / 1000 * 1000)
}

pub fn run(a: Args) -> Result<()> {
    let secrets = a.key.inputs();
    check_one_stdin(&[secrets.first(), secrets.get(1)])?;
    if a.output == "-" {
        bail!("capture writes a file: name it with -o");
    }
    // Refused before any work, and again when the file is put in place.
    let out = Output::create_fresh(&a.output, &InputPath::Stdin, a.force)?;
    let mut media: Vec<MediaInput> = Vec::new();
    for (kind, paths) in [
        (MediaKind::Photo, &a.photo),
        (MediaKind::Audio, &a.audio),
        (MediaKind::Video, &a.video),
    ] {
        media.extend(paths.iter().map(|p| MediaInput::file(kind, p)));
    }
    // The capturer is the logged-in clinician when sealing for a key
    // server, and the organisation theirs unless named.
    let (login, session_org) = match &a.key.keyserver {
        Some(url) => {
            let client = crate::sessions::client(url)?;
            let session = crate::sessions::load(client.origin())?;
            let org = match &a.organisation {
                Some(_) => None,
                None => Some(
                    client
                        .session_owner(&session.token)
                        .context("cannot ask the key server who you are")?
                        .org,
                ),
            };
            (Some(session.email.clone()), org)
        }
        None => (None, None),
    };
    let capturer = a
        .capturer
        .clone()
        .or_else(|| login.clone())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    let report_id = new_report_id()?;
    // The same form, and the same refusals, as the web app's.
    let form = CaptureForm {
        patient_id: a.patient_id.clone(),
        patient_id_system: Some(a.patient_id_system.clone()),
        consent: a.consent,
        consent_by: Some(a.consent_by),
        consent_scope: a.consent_scope.clone(),
        witness: a.witness.clone(),
        no_consent_reason: a.no_consent_reason.clone(),
        body_site: a.body_site.clone(),
        note: a.note.clone(),
        capturer,
        capturer_email: login,
        organisation: a.organisation.clone().or(session_org).unwrap_or_default(),
    };
    let spec = form
        .into_spec(
            report_id.clone(),
            now_rfc3339(),
            media,
            a.consent_evidence.clone().map(MediaSource::Path),
            super::LOCAL_UTC_OFFSET.get().copied().unwrap_or(0),
        )
        .context("cannot build the report")?;
    // Build (and refuse) before asking the key server for a key.
    let report = Report::build(spec).context("cannot build the report")?;
    let material = a.key.resolve(&report_id)?;
    let mut out = out;
    report
        .seal(material.seal_key(), &mut out, &SealOptions::default())
        .context("cannot seal the report")?;
    out.commit()?;
    eprintln!(
        "report {report_id} sealed to {}: {} media files",
        a.output,
        report.manifest.media.len()
    );
    Ok(())
}
