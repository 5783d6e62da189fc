//! E-mail over SMTP (lettre), with STARTTLS or implicit TLS, always
//! authenticated and encrypted.
//!
//! The message carries the sealed file as an attachment and says how to
//! open it. Subject and body never carry patient data: mail is copied,
//! indexed and forwarded by systems no one here controls. The Message-ID is
//! derived from the idempotency key, so if a crash comes between the
//! server's "250 OK" and the outbox recording it, the repeat carries the
//! same Message-ID and mail systems that de-duplicate on it show one
//! message. SMTP itself has no stronger guarantee; `docs/integrations.md`
//! says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use medseal_format::KeyMode;
use serde::Deserialize;

use crate::config::{ConfigError, resolve_path};
use crate::destination::{Destination, Parcel, ProgressHandle, Receipt};
use crate::error::DeliveryError;
use crate::secret::SecretRef;

/// How the SMTP connection is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// `type = "email"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server.
    pub host: String,
    /// Its port (default 587 for STARTTLS, 465 for implicit TLS).
    #[serde(default)]
    pub port: Option<u16>,
    /// STARTTLS (default) or implicit TLS.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Extra trusted CA certificate (PEM) for the server's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SMTP user name.
    pub username: String,
    /// SMTP password.
    pub password: SecretRef,
    /// The sender, e.g. `Clinical reports <reports@example.org>`.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// Largest attachment sent, in bytes (default 20 MB, what most mail
    /// systems accept); larger reports should go to Box, Dropbox or an EMR.
    #[serde(default = "default_max")]
    pub max_attachment_bytes: u64,
    /// Time allowed for the SMTP conversation, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Send a share link instead of the attachment: the sealed report is
    /// stored on the key server that holds its key (`POST /v1/drops`, with
    /// the sender's session) and the mail carries the link, whatever the
    /// report's size. Only for reports sealed with a key-server key.
    #[serde(default)]
    pub link: bool,
}

fn default_max() -> u64 {
    20_000_000
}

fn default_timeout() -> u64 {
    120
}

impl EmailConfig {
    pub(crate) fn resolve(&mut self, base: &Path) {
        if let Some(p) = &mut self.ca_file {
            resolve_path(p, base);
        }
        self.password.resolve(base);
    }
}

/// The e-mail destination.
pub struct Email {
    config: EmailConfig,
    from: Mailbox,
    to: Vec<Mailbox>,
    tls: TlsParameters,
}

impl Email {
    /// Checks the settings.
    pub fn new(config: EmailConfig) -> Result<Self, ConfigError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ConfigError::Invalid(format!("email {what}: {e}"))
        };
        let from: Mailbox = config.from.parse().map_err(|e| bad("from", &e))?;
        if config.to.is_empty() {
            return Err(ConfigError::Invalid(
                "email: give at least one address in to".into(),
            ));
        }
        let to = config
            .to
            .iter()
            .map(|t| t.parse::<Mailbox>().map_err(|e| bad("to", &e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tls = TlsParameters::builder(config.host.clone());
        if let Some(ca) = &config.ca_file {
            let pem = crate::config::read_pem(ca)?;
            tls = tls
                .add_root_certificate(Certificate::from_pem(&pem).map_err(|e| bad("ca_file", &e))?);
        }
        let tls = tls.build_rustls().map_err(|e| bad("TLS", &e))?;
        Ok(Self {
            config,
            from,
            to,
            tls,
        })
    }

    /// The SMTP port: configured, else the one for the TLS mode.
    fn port(&self) -> u16 {
        self.config.port.unwrap_or(match self.config.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
        })
    }

    fn transport(&self) -> Result<SmtpTransport, DeliveryError> {
        let password = self
            .config
            .password
            .read()
            .map_err(|e| DeliveryError::permanent(e.to_string()))?;
        let tls = match self.config.tls {
            SmtpTls::Starttls => Tls::Required(self.tls.clone()),
            SmtpTls::Implicit => Tls::Wrapper(self.tls.clone()),
        };
        Ok(SmtpTransport::builder_dangerous(&self.config.host)
            .port(self.port())
            .tls(tls)
            .credentials(Credentials::new(
                self.config.username.clone(),
                password.to_string(),
            ))
            .timeout(Some(Duration::from_secs(
                self.config.timeout_seconds.max(1),
            )))
            .build())
    }
}

/// Text for the HTML part of a mail: nothing in it is markup.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How the recipient opens the file, by key mode: plain text and HTML.
pub fn instructions(file_name: &str, mode: &KeyMode) -> (String, String) {
    let stem = file_name.strip_suffix(".mseal").unwrap_or(file_name);
    let (steps, note) = match mode {
        KeyMode::KeyServer { origin, .. } => (
            vec![
                format!(
                    "in a browser: {origin}/app/ (choose the file, then sign in with this address)"
                ),
                "or with the medseal command line:".to_owned(),
                format!("medseal login --keyserver {origin} --email YOUR-ADDRESS --code"),
                format!("medseal open --extract {stem} {file_name}"),
            ],
            "Only the people the sender named can open it, and the sender's key server records each opening. \
             No account there? Choose \"Email me a code\" (or use --code): a single-use code is sent to this address.",
        ),
        KeyMode::StaticKey { .. } => (
            vec![format!(
                "medseal open --key-file YOUR-ORGANISATION-KEY --extract {stem} {file_name}"
            )],
            "It opens with your organisation's medseal key.",
        ),
        KeyMode::Password { .. } => (
            vec![format!(
                "medseal open --password-file - --extract {stem} {file_name}"
            )],
            "The sender will give you the password by another route: never by e-mail.",
        ),
    };
    let mut text = String::from("You have received a secure clinical report.\n\n");
    text.push_str(&format!(
        "The attached file, {file_name}, is encrypted: it shows nothing until it is opened with medseal. {note}\n\nTo open it:\n\n"
    ));
    for s in &steps {
        text.push_str(&format!("    {s}\n"));
    }
    text.push_str("\nPlease do not forward this message outside your organisation.\n");
    let mut html = String::from(
        "<!DOCTYPE html><html><body><p><strong>You have received a secure clinical report.</strong></p>",
    );
    html.push_str(&format!(
        "<p>The attached file, <code>{}</code>, is encrypted: it shows nothing until it is opened with medseal. {}</p><p>To open it:</p><pre>",
        esc(file_name),
        esc(note)
    ));
    for s in &steps {
        html.push_str(&esc(s));
        html.push('\n');
    }
    html.push_str(
        "</pre><p>Please do not forward this message outside your organisation.</p></body></html>",
    );
    (text, html)
}

/// What a link mail says: where to open the report, that nothing needs
/// installing, and that only the named recipients can open it.
pub fn link_instructions(url: &str, expires_at: &str) -> (String, String) {
    let text = format!(
        "You have received a secure clinical report.\n\n\
         Open it in your browser (nothing to install):\n\n    {url}\n\n\
         Sign in with this e-mail address: with your password if you have an account there, \
         or choose \"Email me a code\" for a single-use code sent to this address. Only the people \
         the sender named can open it, and each opening is recorded. The link works until {expires_at}.\n\n\
         Please do not forward this message outside your organisation.\n"
    );
    let html = format!(
        "<!DOCTYPE html><html><body><p><strong>You have received a secure clinical report.</strong></p>\
         <p><a href=\"{u}\">Open the report in your browser</a> (nothing to install).</p>\
         <p>Sign in with this e-mail address: with your password if you have an account there, or \
         choose \"Email me a code\" for a single-use code sent to this address. Only the people the \
         sender named can open it, and each opening is recorded. The link works until {e}.</p>\
         <p>Please do not forward this message outside your organisation.</p></body></html>",
        u = esc(url),
        e = esc(expires_at)
    );
    (text, html)
}

/// `POST /v1/drops` answer, as far as the mail needs it.
#[derive(Deserialize)]
struct Shared {
    url: String,
    expires_at: String,
}

impl Email {
    /// Stores the sealed report on its key server as a share link.
    fn share(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Shared, DeliveryError> {
        let KeyMode::KeyServer { origin, .. } = parcel.header.key_mode() else {
            return Err(DeliveryError::permanent(
                "link = true needs a report sealed with a key-server key",
            ));
        };
        let sender = parcel.sender.ok_or_else(|| {
            DeliveryError::needs_key("a share link needs the sender's key-server session")
        })?;
        let tls = crate::http::TlsSettings {
            ca_file: sender.ca_file.clone(),
            ..Default::default()
        };
        let client = crate::http::client(&tls, 60 * 60)
            .map_err(|e| DeliveryError::permanent(e.to_string()))?;
        let file = std::fs::File::open(parcel.sealed)?;
        let part = crate::http::file_part(
            file,
            parcel.size,
            parcel.file_name,
            "application/octet-stream",
            progress,
        )?;
        let resp = client
            .post(format!("{origin}/v1/drops"))
            .bearer_auth(sender.token.as_str())
            .header("X-Device-Id", &sender.device_id)
            .multipart(reqwest::blocking::multipart::Form::new().part("report", part))
            .send()
            .map_err(|e| crate::http::unreachable("key server", &e))?;
        if resp.status().as_u16() == 401 {
            return Err(DeliveryError::needs_key(
                "the key server refused the sender's session: log in again",
            ));
        }
        let resp = crate::http::check("key server", resp)?;
        resp.json()
            .map_err(|e| DeliveryError::transient(format!("key server: unreadable answer: {e}")))
    }
}

impl Destination for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn needs_sender_session(&self) -> bool {
        self.config.link
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        crate::http::probe_host(&self.config.host, self.port(), self.config.timeout_seconds)
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        let domain = self.from.email.domain().to_owned();
        let message_id = format!("<{}@{}>", parcel.idempotency_key, domain);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject("Secure clinical report")
            .message_id(Some(message_id.clone()));
        for t in &self.to {
            b = b.to(t.clone());
        }
        let body = if self.config.link {
            let shared = self.share(parcel, progress)?;
            let (text, html) = link_instructions(&shared.url, &shared.expires_at);
            MultiPart::alternative_plain_html(text, html)
        } else {
            if parcel.size > self.config.max_attachment_bytes {
                return Err(DeliveryError::permanent(format!(
                    "the report is {} bytes, over this destination's max_attachment_bytes ({}); set link = true to send a share link, or send it to Box, Dropbox or the EMR",
                    parcel.size, self.config.max_attachment_bytes
                )));
            }
            let data = std::fs::read(parcel.sealed)?;
            let (text, html) = instructions(parcel.file_name, parcel.header.key_mode());
            let attachment = Attachment::new(parcel.file_name.to_owned()).body(
                data,
                ContentType::parse("application/octet-stream")
                    .map_err(|e| DeliveryError::permanent(e.to_string()))?,
            );
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(text, html))
                .singlepart(attachment)
        };
        let msg = b
            .multipart(body)
            .map_err(|e| DeliveryError::permanent(format!("cannot build the message: {e}")))?;
        if !self.config.link {
            progress.begin(parcel.size);
        }
        let sent = self.transport()?.send(&msg);
        match sent {
            Ok(_) => {
                if !self.config.link {
                    progress.advance(parcel.size);
                }
                Ok(Receipt {
                    id: message_id,
                    location: None,
                    already_present: false,
                })
            }
            Err(e) if e.is_permanent() => Err(DeliveryError::permanent(format!(
                "SMTP server refused the message: {e}"
            ))),
            Err(e) => Err(DeliveryError::transient(format!("SMTP: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use medseal_format::KeyMode;

    use super::instructions;

    /// The mail that carries a key-server report says whose key server
    /// records each opening (the sender's), and how to open it: the web
    /// app, or the command line with an e-mailed code.
    #[test]
    fn key_server_reports_say_how_to_open_them_and_whose_server_records_it() {
        let mode = KeyMode::KeyServer {
            origin: "https://keys.st.example".into(),
            key_id: "k_1".into(),
        };
        let (text, html) = instructions("report-1.mseal", &mode);
        for part in [&text, &html] {
            assert!(
                part.contains("the sender's key server records each opening"),
                "{part}"
            );
            assert!(!part.contains("your organisation's key server"), "{part}");
            assert!(part.contains("https://keys.st.example/app/"), "{part}");
            assert!(part.contains("--code"), "{part}");
            assert!(part.contains("Email me a code"), "{part}");
        }
        assert!(
            html.contains("&quot;Email me a code&quot;"),
            "markup escaped: {html}"
        );
    }
}
