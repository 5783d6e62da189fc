//! What every HTTP destination shares: a client with the configured trust
//! and client certificate, how a status becomes retry-or-not, Retry-After,
//! and upload bodies that report progress.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::destination::ProgressHandle;
use crate::error::DeliveryError;
use crate::secret::SecretRef;

/// TLS settings of one HTTP destination (`[destinations.NAME.tls]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Extra trusted CA certificates (PEM), e.g. the hospital's own CA.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM); a secret, so a file or a variable.
    pub client_key: Option<SecretRef>,
}

impl TlsSettings {
    pub(crate) fn resolve(&mut self, base: &Path) {
        for p in [&mut self.ca_file, &mut self.client_cert]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(k) = &mut self.client_key {
            k.resolve(base);
        }
    }
}

/// Default time allowed for one request, upload included.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 600;

/// Serde default of every destination's `timeout_seconds`.
pub fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECONDS
}

/// Refuses anything but http(s) URLs, and plain http except on loopback:
/// reports and credentials never cross a network in the clear.
pub fn check_url(url: &str) -> Result<reqwest::Url, ConfigError> {
    let u = reqwest::Url::parse(url).map_err(|e| ConfigError::Invalid(format!("{url}: {e}")))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        "http" => Err(ConfigError::Invalid(format!(
            "{url}: use https (plain http only on loopback)"
        ))),
        _ => Err(ConfigError::Invalid(format!("{url}: not an http(s) URL"))),
    }
}

/// The client of a destination whose base URLs are `urls`: each checked
/// with [`check_url`], then [`client`].
pub fn endpoint_client(
    urls: &[&str],
    tls: &TlsSettings,
    timeout_seconds: u64,
) -> Result<Client, ConfigError> {
    for u in urls {
        check_url(u)?;
    }
    client(tls, timeout_seconds)
}

/// Resolves the relative paths of an endpoint's TLS and auth settings.
pub(crate) fn resolve_endpoint(tls: &mut TlsSettings, auth: &mut Option<Auth>, base: &Path) {
    tls.resolve(base);
    if let Some(a) = auth {
        a.resolve(base);
    }
}

/// Builds the blocking client for one destination.
pub fn client(tls: &TlsSettings, timeout_seconds: u64) -> Result<Client, ConfigError> {
    let mut b = Client::builder()
        .use_rustls_tls()
        .https_only(false)
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(timeout_seconds.max(1)))
        .user_agent(concat!("medseal/", env!("CARGO_PKG_VERSION")));
    // The destination's own CA, and the bundle `SSL_CERT_FILE` names (the
    // usual way to point programs at an organisation's roots), besides the
    // public web roots.
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    for ca in tls.ca_file.iter().chain(bundle.as_ref()) {
        let pem = crate::config::read_pem(ca)?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", ca.display())))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = crate::config::read_pem(cert)?;
            pem.push(b'\n');
            pem.extend_from_slice(key.read()?.as_bytes());
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| ConfigError::Invalid(format!("client certificate: {e}")))?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => {
            return Err(ConfigError::Invalid(
                "tls: client_cert and client_key go together".into(),
            ));
        }
    }
    b.build()
        .map_err(|e| ConfigError::Invalid(format!("HTTP client: {e}")))
}

/// A request that never got an answer: worth retrying.
pub fn unreachable(what: &str, e: &reqwest::Error) -> DeliveryError {
    // The underlying I/O error says most (connection refused, reset…);
    // reqwest's own line repeats the URL and, for streamed bodies, may
    // only say that the body's sender stopped.
    let mut causes = Vec::new();
    let mut io_kind = None;
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        causes.push(inner.to_string());
        src = inner.source();
    }
    let why = if e.is_timeout() {
        "timed out".to_owned()
    } else if let Some(kind) = io_kind {
        format!("cannot reach the server: {kind}")
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else if causes.iter().any(|c| c.contains("receiver is gone")) {
        // A streamed body's pump reports only that the connection it fed
        // is gone; the cause (refused, reset) is lost on the way.
        "the connection failed or closed before the upload finished".to_owned()
    } else {
        std::iter::once("request failed".to_owned())
            .chain(causes)
            .collect::<Vec<_>>()
            .join(": ")
    };
    DeliveryError::transient(format!("{what}: {why}"))
}

/// Whether a status is worth retrying.
pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429)
}

/// The server's Retry-After, in seconds or as an HTTP date.
pub fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(24 * 3600)));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = when - time::OffsetDateTime::now_utc();
    Some(Duration::from_secs(
        wait.whole_seconds().clamp(0, 24 * 3600) as u64,
    ))
}

/// Passes 2xx through; turns anything else into a [`DeliveryError`] that
/// names the status and the server's error code, retryable or not.
pub fn check(what: &str, resp: Response) -> Result<Response, DeliveryError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    Err(failure(what, resp))
}

/// The error for a non-2xx answer.
pub fn failure(what: &str, resp: Response) -> DeliveryError {
    let status = resp.status();
    let after = retry_after(&resp);
    let body = resp.text().unwrap_or_default();
    let code = error_code(&body);
    let message = match code {
        Some(c) => format!("{what}: HTTP {} ({c})", status.as_u16()),
        None => format!("{what}: HTTP {}", status.as_u16()),
    };
    let e = if is_transient(status) {
        DeliveryError::transient(message)
    } else {
        DeliveryError::permanent(message)
    };
    e.retry_after(after)
}

/// The short error code in the usual JSON error bodies: Box's `code`,
/// Dropbox's `error_summary`, OAuth's `error`, a FHIR OperationOutcome's
/// first issue code. Free-text descriptions are left out: they can echo
/// what was sent.
pub fn error_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let pick = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let code = pick("code")
        .or_else(|| pick("error_summary"))
        .or_else(|| pick("error"))
        .or_else(|| {
            v.get("issue")?
                .get(0)?
                .get("code")?
                .as_str()
                .map(str::to_owned)
        })?;
    Some(code.chars().filter(|c| !c.is_control()).take(120).collect())
}

/// A reader that reports how much of an upload went out.
pub struct ProgressReader<R> {
    inner: R,
    progress: ProgressHandle,
}

impl<R> ProgressReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, progress: ProgressHandle) -> Self {
        Self { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// A streaming request body over `len` bytes of `reader`, with progress.
pub fn body<R: Read + Send + 'static>(
    reader: R,
    len: u64,
    progress: &ProgressHandle,
) -> reqwest::blocking::Body {
    reqwest::blocking::Body::sized(ProgressReader::new(reader, progress.clone()), len)
}

/// A streamed multipart file part over `len` bytes of `reader`, with
/// progress: the sealed file or the opened bundle, as each destination
/// sends it.
pub fn file_part<R: Read + Send + 'static>(
    reader: R,
    len: u64,
    file_name: &str,
    mime: &str,
    progress: &ProgressHandle,
) -> Result<reqwest::blocking::multipart::Part, DeliveryError> {
    reqwest::blocking::multipart::Part::reader_with_length(
        ProgressReader::new(reader, progress.clone()),
        len,
    )
    .file_name(file_name.to_owned())
    .mime_str(mime)
    .map_err(|e| DeliveryError::permanent(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_from_the_usual_bodies() {
        assert_eq!(
            error_code(r#"{"type":"error","status":409,"code":"item_name_in_use","message":"x"}"#)
                .as_deref(),
            Some("item_name_in_use")
        );
        assert_eq!(
            error_code(r#"{"error_summary":"path/conflict/file/..","error":{".tag":"path"}}"#)
                .as_deref(),
            Some("path/conflict/file/..")
        );
        assert_eq!(
            error_code(r#"{"error":"invalid_grant"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            error_code(r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}"#).as_deref(),
            Some("invalid")
        );
        assert_eq!(error_code("<html>"), None);
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert!(!is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}

/// How an HTTP destination authenticates (`auth = { … }`); mutual TLS is
/// configured under `tls` instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer …`.
    Bearer(SecretRef),
    /// HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretRef,
    },
}

impl Auth {
    pub(crate) fn resolve(&mut self, base: &Path) {
        match self {
            Auth::Bearer(s) => s.resolve(base),
            Auth::Basic { password, .. } => password.resolve(base),
        }
    }

    /// Adds the credentials to a request.
    pub fn apply(
        auth: &Option<Auth>,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::RequestBuilder, DeliveryError> {
        let secret_err = |e: crate::secret::SecretError| DeliveryError::permanent(e.to_string());
        Ok(match auth {
            None => req,
            Some(Auth::Bearer(t)) => req.bearer_auth(t.read().map_err(secret_err)?.as_str()),
            Some(Auth::Basic { username, password }) => req.basic_auth(
                username,
                Some(password.read().map_err(secret_err)?.as_str()),
            ),
        })
    }
}

/// Whether a TCP connection to `url`'s host and port opens within
/// `timeout_seconds`: the [`Destination::reachable`](crate::Destination::reachable)
/// of HTTP destinations. Only the connection; nothing is sent.
pub fn probe(url: &str, timeout_seconds: u64) -> Result<(), DeliveryError> {
    // Behind an outgoing proxy the destination's own address may not be
    // reachable from here at all: the request itself will tell.
    if [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    {
        return Ok(());
    }
    let parsed = check_url(url).map_err(|e| DeliveryError::permanent(e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| DeliveryError::permanent(format!("{url} names no host")))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| DeliveryError::permanent(format!("{url} names no port")))?;
    probe_host(host, port, timeout_seconds)
}

/// Whether a TCP connection to `host:port` opens within `timeout_seconds`.
pub fn probe_host(host: &str, port: u16, timeout_seconds: u64) -> Result<(), DeliveryError> {
    use std::net::{TcpStream, ToSocketAddrs};
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let unreachable = |why: &dyn std::fmt::Display| {
        DeliveryError::transient(format!("cannot reach {host}:{port}: {why}"))
    };
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(&e))?
        .collect();
    let timeout = Duration::from_secs(timeout_seconds.clamp(1, 30));
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => unreachable(&e),
        None => unreachable(&"no address"),
    })
}
