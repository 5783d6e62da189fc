//! Exit codes and the one-line error message.
//!
//! | code | meaning                                                   |
//! |------|-----------------------------------------------------------|
//! | 0    | success                                                   |
//! | 1    | any other failure (I/O, bad arguments found after parsing) |
//! | 2    | command-line usage error (from the argument parser, or e.g. standard input named twice) |
//! | 3    | no key: wrong key or password, not a recipient, key revoked or expired, not logged in |
//! | 4    | the file is damaged or was tampered with                   |
//! | 5    | not a medseal file, or an unsupported version              |
//! | 6    | refused by policy (e.g. too few PBKDF2 iterations)         |
//! | 7    | queued: a delivery will be attempted again later (`send`, `outbox flush`) |

use std::process::ExitCode;

use medseal_format::ErrorKind;

/// A command line that parsed but cannot be carried out as given (two
/// inputs on standard input): a usage error, exit 2, like the parser's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// No session with a key server on this device: no key can be fetched, so
/// exit 3, like an ended session.
#[derive(Debug, thiserror::Error)]
#[error("you are not logged in to {0}; run: medseal login --keyserver {0}")]
pub struct NotLoggedIn(pub String);

/// Picks the exit code from the first format or key-server error in the chain.
pub fn code_for(err: &anyhow::Error) -> ExitCode {
    if err.downcast_ref::<UsageError>().is_some() {
        return ExitCode::from(2);
    }
    if err
        .chain()
        .any(|e| e.downcast_ref::<NotLoggedIn>().is_some())
    {
        return ExitCode::from(3);
    }
    if err.downcast_ref::<crate::delivery::Queued>().is_some() {
        return ExitCode::from(7);
    }
    if err.chain().any(|e| {
        e.downcast_ref::<medseal_keyserver_api::VerifyError>()
            .is_some()
    }) {
        // A receipt or checkpoint that does not verify: tampered.
        return ExitCode::from(4);
    }
    use medseal_capture::keyclient::ClientError;
    if let Some(e) = err.chain().find_map(|e| e.downcast_ref::<ClientError>()) {
        return ExitCode::from(match e {
            ClientError::Unreachable { .. }
            | ClientError::Unavailable(_)
            | ClientError::Protocol(_)
            | ClientError::BadUrl(_) => 1,
            _ => 3,
        });
    }
    let kind = err
        .chain()
        .find_map(|e| e.downcast_ref::<medseal_format::Error>())
        .map(medseal_format::Error::kind);
    ExitCode::from(match kind {
        Some(ErrorKind::Key) => 3,
        Some(ErrorKind::Integrity) => 4,
        Some(ErrorKind::Format) => 5,
        Some(ErrorKind::Policy) => 6,
        Some(ErrorKind::Environment) | None => 1,
    })
}

/// The whole context chain on one line, `outer: inner: cause`.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string().replace(['\n', '\r'], " ");
        // `anyhow` contexts often repeat their cause; keep the line short.
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    let mut line = parts.join(": ");
    // A certificate the client does not trust: say what to do about it.
    if line.contains("invalid peer certificate") && !line.contains("--ca-cert") {
        line.push_str(
            " (a key server with a private CA: give its CA certificate with --ca-cert FILE or MEDSEAL_CA_CERT)",
        );
    }
    line
}
