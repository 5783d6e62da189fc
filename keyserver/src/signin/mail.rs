//! The key server's own mail: sign-in codes. SMTP through lettre, always
//! encrypted — STARTTLS required (`smtp://`) or TLS from the first byte
//! (`smtps://`) — and authenticated when a user is named.
//!
//! A code mail names the organisation and the key server's address and
//! nothing else: no patient, no report. Mail is copied and indexed by
//! systems no one here controls.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::codes::{CODE_TTL_MS, Code};
use crate::error::{Error, Result};

/// Largest password or CA file read.
const MAX_FILE: u64 = 1 << 20;

/// How the key server reaches its mail server (`keyserver serve` flags).
#[derive(Debug, Clone, Default)]
pub struct MailSettings {
    /// `smtp://[user@]host[:port]` (STARTTLS, 587) or `smtps://…` (465).
    pub url: String,
    /// The SMTP password, in a file of its own.
    pub password_file: Option<PathBuf>,
    /// An extra CA certificate (PEM) for a private PKI.
    pub ca_cert: Option<PathBuf>,
    /// The sender, e.g. `medseal <no-reply@hospital.example>`.
    pub from: String,
}

/// A ready mail transport.
pub struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

fn read_small(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::File::open(path)
        .and_then(|f| medseal_format::read_bounded(f, MAX_FILE))
        .map_err(|e| Error::Invalid(format!("cannot read the {what} {}: {e}", path.display())))
}

impl Mailer {
    /// Checks the settings and builds the transport (no connection yet).
    pub fn new(s: &MailSettings) -> Result<Self> {
        let bad = |m: String| Error::Invalid(format!("--smtp-url: {m}"));
        let url = url::Url::parse(&s.url).map_err(|e| bad(e.to_string()))?;
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => {
                return Err(bad(format!(
                    "'{other}' is not smtp (STARTTLS) or smtps (implicit TLS)"
                )));
            }
        };
        if url.password().is_some() {
            return Err(bad(
                "put the password in --smtp-password-file, not in the URL".into(),
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if implicit { 465 } else { 587 });
        let user = percent_encoding::percent_decode_str(url.username())
            .decode_utf8()
            .map_err(|e| bad(e.to_string()))?
            .into_owned();
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(ca) = &s.ca_cert {
            let pem = read_small(ca, "SMTP CA certificate")?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| Error::Invalid(format!("--smtp-ca-cert: {e}")))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| Error::Invalid(format!("SMTP TLS: {e}")))?;
        let mut builder = SmtpTransport::builder_dangerous(&host)
            .port(port)
            .tls(if implicit {
                Tls::Wrapper(tls)
            } else {
                Tls::Required(tls)
            })
            .timeout(Some(Duration::from_secs(30)));
        match (&s.password_file, user.is_empty()) {
            (Some(p), false) => {
                if let Some(why) = medseal_files::not_private(p) {
                    return Err(Error::Invalid(format!("the SMTP password file {why}")));
                }
                let raw = zeroize::Zeroizing::new(read_small(p, "SMTP password file")?);
                let text = std::str::from_utf8(&raw)
                    .map_err(|_| Error::Invalid("the SMTP password is not UTF-8".into()))?;
                let password = text.trim_end_matches(['\r', '\n']).to_owned();
                builder = builder.credentials(Credentials::new(user, password));
            }
            (None, false) => {
                return Err(bad(format!(
                    "user {user} is named but --smtp-password-file is not given"
                )));
            }
            (Some(_), true) => {
                return Err(bad(
                    "--smtp-password-file is given but the URL names no user (smtp://user@host)"
                        .into(),
                ));
            }
            (None, true) => {}
        }
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| Error::Invalid(format!("--mail-from: {e}")))?;
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends `code` to `to`. `app_url` is the key server's public address;
    /// the mail links to its code page, which asks for a click before it
    /// uses the code (mail scanners open links).
    pub fn send_code(
        &self,
        to: &str,
        org: &str,
        guest: bool,
        code: &Code,
        public_url: &str,
    ) -> Result<()> {
        let (text, html) = code_body(to, org, guest, code, public_url);
        let to: Mailbox = to
            .parse()
            .map_err(|e| Error::Invalid(format!("cannot mail {to}: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Your medseal sign-in code for {org}"))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .map_err(|e| Error::Internal(format!("cannot build the mail: {e}")))?;
        self.transport
            .send(&message)
            .map(|_| ())
            .map_err(|e| Error::Unavailable(format!("the mail server refused the code mail: {e}")))
    }
}

/// The link to the app's code page, with the address and code in the
/// fragment: a fragment never reaches a server, and the page still waits
/// for a click.
pub fn code_link(public_url: &str, email: &str, code: &Code) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "{}/app/#/code?email={}&code={}",
        public_url.trim_end_matches('/'),
        enc(email),
        code.as_str()
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plain-text and HTML bodies of a code mail.
pub fn code_body(
    to: &str,
    org: &str,
    guest: bool,
    code: &Code,
    public_url: &str,
) -> (String, String) {
    let minutes = CODE_TTL_MS / 60_000;
    let link = code_link(public_url, to, code);
    let why = if guest {
        format!(
            "{org} has sent you a secure clinical report. You can open it as a guest, without an account."
        )
    } else {
        format!("You asked to sign in to medseal at {org}.")
    };
    let text = format!(
        "{why}\n\nYour sign-in code is:\n\n    {grouped}\n\nIt works once, within {minutes} minutes.\n\n\
         Type it where you asked for it, or open this page and choose \"Sign in\":\n{link}\n\n\
         If you did not ask for a code, ignore this message: nobody can sign in without it.\n",
        grouped = code.grouped(),
    );
    let html = format!(
        "<p>{why}</p><p>Your sign-in code is:</p><p style=\"font-size:1.5em;font-family:monospace\">{grouped}</p>\
         <p>It works once, within {minutes} minutes.</p>\
         <p>Type it where you asked for it, or <a href=\"{link}\">open the sign-in page</a> and choose \"Sign in\".</p>\
         <p>If you did not ask for a code, ignore this message: nobody can sign in without it.</p>",
        why = esc(&why),
        grouped = code.grouped(),
        link = esc(&link),
    );
    (text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> MailSettings {
        MailSettings {
            url: url.into(),
            from: "medseal <no-reply@st.example>".into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_encrypted_urls_without_inline_passwords() {
        assert!(Mailer::new(&settings("smtp://mail.st.example")).is_ok());
        assert!(Mailer::new(&settings("smtps://mail.st.example:2465")).is_ok());
        for bad in [
            "http://mail.st.example",
            "smtp://u:secret@mail.st.example",
            "smtp://user@mail.st.example",
            "not a url",
        ] {
            let e = Mailer::new(&settings(bad)).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn the_mail_names_the_organisation_and_links_to_the_code_page() {
        let c = Code::parse("12345678").unwrap();
        let (text, html) = code_body(
            "bob@partner.example",
            "St <Elsewhere>",
            true,
            &c,
            "https://ks.example/",
        );
        assert!(text.contains("1234 5678"));
        assert!(text.contains("St <Elsewhere> has sent you"));
        assert!(
            text.contains(
                "https://ks.example/app/#/code?email=bob%40partner%2Eexample&code=12345678"
            )
        );
        assert!(html.contains("St &lt;Elsewhere&gt;"));
        assert!(!html.contains("<Elsewhere>"));
    }
}
