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

/// How the recipient opens the file, by key mode: plain text and HTML.
pub fn instructions(file_name: &str, mode: &KeyMode) -> (String, String) {
    let stem = file_name.strip_suffix(".mseal").unwrap_or(file_name);
    let (steps, note) = match mode {
        KeyMode::KeyServer { origin, .. } => (
            vec![
                format!("medseal login --keyserver {origin} --email YOUR-ADDRESS"),
                format!("medseal open --extract {stem} {file_name}"),
            ],
            "Only the people the sender named can open it, and your organisation's key server records each opening.",
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
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
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

impl Destination for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        crate::http::probe_host(&self.config.host, self.port(), self.config.timeout_seconds)
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        if parcel.size > self.config.max_attachment_bytes {
            return Err(DeliveryError::permanent(format!(
                "the report is {} bytes, over this destination's max_attachment_bytes ({}); send it to Box, Dropbox or the EMR instead",
                parcel.size, self.config.max_attachment_bytes
            )));
        }
        let data = std::fs::read(parcel.sealed)?;
        let (text, html) = instructions(parcel.file_name, parcel.header.key_mode());
        let domain = self.from.email.domain().to_owned();
        let message_id = format!("<{}@{}>", parcel.idempotency_key, domain);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject("Secure clinical report")
            .message_id(Some(message_id.clone()));
        for t in &self.to {
            b = b.to(t.clone());
        }
        let attachment = Attachment::new(parcel.file_name.to_owned()).body(
            data,
            ContentType::parse("application/octet-stream")
                .map_err(|e| DeliveryError::permanent(e.to_string()))?,
        );
        let msg = b
            .multipart(
                MultiPart::mixed()
                    .multipart(MultiPart::alternative_plain_html(text, html))
                    .singlepart(attachment),
            )
            .map_err(|e| DeliveryError::permanent(format!("cannot build the message: {e}")))?;
        progress.begin(parcel.size);
        let sent = self.transport()?.send(&msg);
        match sent {
            Ok(_) => {
                progress.advance(parcel.size);
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
