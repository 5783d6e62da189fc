//! The endpoint's `service` account on the key server: its credentials, its
//! session (logged in at start, renewed when it ends), and opening reports
//! with the keys it fetches. Every fetch is audited by the key server under
//! this account's name.
//!
//! The same module checks senders: a sender's token is shown to the key
//! server with the sender's own device id (`GET /v1/sessions/current`);
//! the endpoint never uses it for anything else and never stores it.

use std::path::Path;
use std::sync::Mutex;

use medseal_capture::keyclient::{ClientError, KeyClient, Session, SessionOwner};
use medseal_format::{Header, KeyMode, Secret};
use medseal_integrations::outbox::Unsealer;
use medseal_integrations::secret::SecretRef;
use medseal_integrations::{DeliveryError, OpenedReport};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::Error;

/// The credentials file: TOML, owner-only (0600).
///
/// ```toml
/// email = "endpoint@st-elsewhere.example"
/// password = "…"
/// ```
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    email: String,
    password: Zeroizing<String>,
}

/// The endpoint's account and session.
pub struct ServiceAccount {
    client: KeyClient,
    email: String,
    /// The account's organisation, as the key server names it.
    org: String,
    password: Zeroizing<String>,
    session: Mutex<Option<Session>>,
}

impl ServiceAccount {
    /// Reads the credentials file (refused unless 0600) and logs in, so a
    /// wrong password or an unreachable key server stops the start.
    pub fn login(client: KeyClient, credentials: &Path) -> Result<Self, Error> {
        let text = SecretRef::File(credentials.to_path_buf())
            .read()
            .map_err(|e| Error::Startup(e.to_string()))?;
        // toml's own rendering quotes the offending line, which may hold
        // the password: name the file only.
        let file: CredentialsFile = toml::from_str(&text).map_err(|_| {
            Error::Startup(format!(
                "{}: expected `email = \"…\"` and `password = \"…\"` (TOML)",
                credentials.display()
            ))
        })?;
        let mut account = ServiceAccount {
            client,
            email: file.email,
            org: String::new(),
            password: file.password,
            session: Mutex::new(None),
        };
        let failed = |e: ClientError, account: &ServiceAccount| {
            Error::Startup(format!(
                "cannot log in to {} as {}: {e}",
                account.client.origin(),
                account.email
            ))
        };
        let session = account.fresh_session().map_err(|e| failed(e, &account))?;
        let me = account
            .client
            .session_owner(&session.token)
            .map_err(|e| failed(e, &account))?;
        if me.role != "service" {
            return Err(Error::Startup(format!(
                "{} is a {} account; the endpoint runs as a service account (keyserver user add --role service)",
                account.email, me.role
            )));
        }
        account.org = me.org;
        Ok(account)
    }

    /// The key server's origin.
    pub fn origin(&self) -> &str {
        self.client.origin()
    }

    /// The account's e-mail.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The account's organisation: the senders it accepts by default.
    pub fn org(&self) -> &str {
        &self.org
    }

    fn fresh_session(&self) -> Result<Session, ClientError> {
        let s = self.client.login(&self.email, self.password.as_bytes())?;
        if let Ok(mut g) = self.session.lock() {
            *g = Some(s.clone());
        }
        Ok(s)
    }

    fn current_session(&self) -> Result<Session, ClientError> {
        let cached = self.session.lock().ok().and_then(|g| g.clone());
        match cached {
            Some(s) => Ok(s),
            None => self.fresh_session(),
        }
    }

    /// Fetches a report's key; a session that has ended (idle timeout,
    /// restart of the key server's sessions) is renewed once.
    fn fetch(&self, key_id: &str) -> Result<medseal_capture::keyclient::ReportKey, ClientError> {
        let session = self.current_session()?;
        match self.client.fetch_key(&session, key_id) {
            Err(ClientError::SessionEnded(_)) => {
                let session = self.fresh_session()?;
                self.client.fetch_key(&session, key_id)
            }
            other => other,
        }
    }

    /// Who holds the session `token` of device `device_id`.
    pub fn sender(&self, token: &str, device_id: &str) -> Result<SessionOwner, Error> {
        match self.client.for_device(device_id).session_owner(token) {
            Ok(owner) => Ok(owner),
            Err(ClientError::Unreachable { .. }) => Err(Error::Unavailable(format!(
                "cannot reach the key server {} to check the sender; try again",
                self.origin()
            ))),
            Err(ClientError::SessionEnded(_)) => Err(Error::Unauthorized(format!(
                "the sender's session is not valid at {}; log in again",
                self.origin()
            ))),
            Err(e) => Err(Error::Unauthorized(format!(
                "the key server did not vouch for the sender: {e}"
            ))),
        }
    }
}

/// How a failed key fetch counts. Only a verdict on the report itself is
/// permanent (not this organisation's, unknown, revoked or expired): a
/// permanent failure of opening deletes the accepted report, so anything
/// the key server might answer differently later (busy, failing, an
/// integrity refusal an administrator must clear) is retried.
fn delivery_error(e: ClientError) -> DeliveryError {
    match e {
        ClientError::Unreachable { .. }
        | ClientError::Unavailable(_)
        | ClientError::Refused(_)
        | ClientError::Protocol(_) => DeliveryError::transient(e.to_string()),
        // The account may be disabled for a while, or its password being
        // rotated: worth retrying with backoff, visible meanwhile.
        ClientError::LoginRefused(_) | ClientError::SessionEnded(_) => {
            DeliveryError::transient(format!("the endpoint's service account: {e}"))
        }
        ClientError::NotRecipient => DeliveryError::permanent(
            "the endpoint's service account may not open this report: it was not sealed by this organisation",
        ),
        other => DeliveryError::permanent(other.to_string()),
    }
}

impl Unsealer for ServiceAccount {
    fn discard_refused(&self) -> bool {
        true
    }

    fn open(&self, sealed: &Path, header: &Header) -> Result<OpenedReport, DeliveryError> {
        let KeyMode::KeyServer { origin, key_id } = header.key_mode() else {
            return Err(DeliveryError::permanent(
                "the report is not sealed with a key server's key",
            ));
        };
        if origin != self.origin() {
            return Err(DeliveryError::permanent(format!(
                "the report's key is at {origin}, not at this endpoint's key server"
            )));
        }
        let key = self.fetch(key_id).map_err(delivery_error)?;
        let report = OpenedReport::open(sealed, Secret::Key(&key.key))?;
        if report.manifest.patient.identifiers.is_empty() {
            return Err(DeliveryError::permanent(
                "the report's manifest names no patient identifier",
            ));
        }
        Ok(report)
    }

    fn verify_every_report(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_verdict_on_the_report_is_permanent() {
        use medseal_integrations::Failure::{Permanent, Transient};
        for (e, want) in [
            (ClientError::Unavailable("busy".into()), Transient),
            (
                ClientError::Refused("integrity check failed".into()),
                Transient,
            ),
            (ClientError::Protocol("HTTP 502".into()), Transient),
            (ClientError::SessionEnded("o".into()), Transient),
            (ClientError::NotRecipient, Permanent),
            (ClientError::UnknownKey, Permanent),
            (ClientError::Gone("revoked".into()), Permanent),
        ] {
            let shown = e.to_string();
            assert_eq!(delivery_error(e).failure, want, "{shown}");
        }
    }
}
