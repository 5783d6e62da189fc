//! Dropbox: `/2/files/upload` for small reports, upload sessions (start,
//! append_v2, finish) for large ones, Dropbox's content hash checked against
//! what the server says it stored, OAuth refresh on 401.
//!
//! Files are committed with `mode: add` and `autorename: false`: a retry of
//! a delivery that did arrive meets `path/conflict`; the existing file's
//! content hash then tells "already there" (a receipt) from "someone else's
//! file" (a permanent error), so nothing is ever overwritten or duplicated.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ConfigError;
use crate::destination::{Destination, Parcel, ProgressHandle, Receipt};
use crate::digest::{DROPBOX_BLOCK, file_digests};
use crate::error::DeliveryError;
use crate::http::{self, TlsSettings};
use crate::oauth::{OAuth, OAuthSettings};

/// `type = "dropbox"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropboxConfig {
    /// Folder the reports go into, e.g. `/Clinical reports`.
    pub folder: String,
    /// The app's OAuth credentials.
    pub oauth: OAuthSettings,
    /// RPC endpoint host.
    #[serde(default = "default_api")]
    pub api_url: String,
    /// Content (upload) endpoint host.
    #[serde(default = "default_content")]
    pub content_url: String,
    /// Token endpoint.
    #[serde(default = "default_token")]
    pub token_url: String,
    /// Reports larger than this go through an upload session in pieces of
    /// this size (a multiple of 4 MiB, at most 148 MiB).
    #[serde(default = "default_chunk")]
    pub chunk_bytes: u64,
    /// Trust settings.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Time allowed for one request, in seconds.
    #[serde(default = "crate::http::default_timeout")]
    pub timeout_seconds: u64,
}

fn default_api() -> String {
    "https://api.dropboxapi.com".into()
}
fn default_content() -> String {
    "https://content.dropboxapi.com".into()
}
fn default_token() -> String {
    "https://api.dropboxapi.com/oauth2/token".into()
}
fn default_chunk() -> u64 {
    8 * 1024 * 1024
}

impl DropboxConfig {
    pub(crate) fn resolve(&mut self, base: &Path) {
        self.oauth.resolve(base);
        self.tls.resolve(base);
    }
}

/// The Dropbox destination.
pub struct Dropbox {
    config: DropboxConfig,
    client: Client,
    oauth: OAuth,
}

impl Dropbox {
    /// Checks the settings.
    pub fn new(config: DropboxConfig) -> Result<Self, ConfigError> {
        if !config.folder.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "dropbox folder {:?} must start with /",
                config.folder
            )));
        }
        let c = config.chunk_bytes;
        if c == 0 || !c.is_multiple_of(DROPBOX_BLOCK as u64) || c > 148 * 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "dropbox chunk_bytes must be a multiple of 4 MiB, at most 148 MiB".into(),
            ));
        }
        let urls = [
            config.api_url.as_str(),
            config.content_url.as_str(),
            config.token_url.as_str(),
        ];
        let client = http::endpoint_client(&urls, &config.tls, config.timeout_seconds)?;
        let oauth = OAuth::new(config.token_url.clone(), config.oauth.clone());
        Ok(Self {
            config,
            client,
            oauth,
        })
    }

    fn path_for(&self, file_name: &str) -> String {
        format!("{}/{}", self.config.folder.trim_end_matches('/'), file_name)
    }

    fn content(&self, endpoint: &str, arg: &Value) -> RequestBuilder {
        self.client
            .post(format!(
                "{}/2/{endpoint}",
                self.config.content_url.trim_end_matches('/')
            ))
            .header("Dropbox-API-Arg", api_arg(arg))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
    }

    fn send(
        &self,
        what: &str,
        build: impl Fn() -> Result<RequestBuilder, DeliveryError>,
    ) -> Result<Response, DeliveryError> {
        self.oauth.send(&self.client, what, build)
    }

    fn metadata(&self, path: &str) -> Result<Option<Value>, DeliveryError> {
        let url = format!(
            "{}/2/files/get_metadata",
            self.config.api_url.trim_end_matches('/')
        );
        let resp = self.send("dropbox get_metadata", || {
            Ok(self.client.post(&url).json(&json!({ "path": path })))
        })?;
        if resp.status() == StatusCode::CONFLICT {
            return Ok(None);
        }
        let resp = http::check("dropbox get_metadata", resp)?;
        resp.json()
            .map(Some)
            .map_err(|e| DeliveryError::transient(format!("dropbox get_metadata: {e}")))
    }
}

/// Dropbox wants the JSON argument header in ASCII, with anything else
/// escaped as `\uXXXX`.
fn api_arg(v: &Value) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn commit_info(path: &str) -> Value {
    json!({ "path": path, "mode": "add", "autorename": false, "mute": false, "strict_conflict": false })
}

/// A part of the file as a request body.
fn part(
    path: &Path,
    offset: u64,
    len: u64,
    progress: &ProgressHandle,
) -> Result<reqwest::blocking::Body, DeliveryError> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    Ok(http::body(f.take(len), len, progress))
}

#[derive(Deserialize)]
struct FileMetadata {
    id: String,
    #[serde(default)]
    path_display: Option<String>,
    #[serde(default)]
    content_hash: Option<String>,
}

impl Destination for Dropbox {
    fn kind(&self) -> &'static str {
        "dropbox"
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        http::probe(&self.config.content_url, self.config.timeout_seconds)
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        let path = self.path_for(parcel.file_name);
        let ours = file_digests(parcel.sealed)?.dropbox;
        // A retry after a crash between Dropbox storing the file and the
        // outbox recording it finds the file by its content hash before
        // sending a byte.
        if let Some(receipt) = self.existing(&path, &ours)? {
            return Ok(receipt);
        }
        let size = parcel.size;
        progress.begin(size);
        let resp = if size <= self.config.chunk_bytes {
            self.send("dropbox upload", || {
                Ok(self.content("files/upload", &commit_info(&path)).body(part(
                    parcel.sealed,
                    0,
                    size,
                    progress,
                )?))
            })?
        } else {
            let resume = parcel
                .scratch
                .map(|d| d.join(format!("{}.dropbox-session", parcel.idempotency_key)));
            let result = self.upload_session(parcel, &path, resume.as_deref(), progress);
            // Done with the session unless the attempt may be tried again:
            // a transient error, or `finish` answered busy (429, 5xx).
            let again = match &result {
                Err(e) => e.is_transient(),
                Ok(r) => {
                    r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error()
                }
            };
            if let Some(f) = resume.as_ref().filter(|_| !again) {
                let _ = std::fs::remove_file(f);
            }
            result?
        };
        if resp.status() == StatusCode::CONFLICT {
            let failure = http::failure("dropbox upload", resp);
            if !failure.message.contains("path/conflict") {
                return Err(failure);
            }
            return self.existing(&path, &ours)?.ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "dropbox: a different file already exists at {path}"
                ))
            });
        }
        let meta: FileMetadata = http::check("dropbox upload", resp)?.json().map_err(|e| {
            DeliveryError::transient(format!("dropbox upload: unreadable answer: {e}"))
        })?;
        if meta.content_hash.as_deref() != Some(ours.as_str()) {
            return Err(DeliveryError::permanent(format!(
                "dropbox stored {path} with a different content hash than the report's: the upload was damaged; check and delete that file, then retry"
            )));
        }
        Ok(Receipt {
            id: meta.id,
            location: meta.path_display.or(Some(path)),
            already_present: false,
        })
    }
}

impl Dropbox {
    /// The file at `path` if it is this report (same content hash): a
    /// receipt for it. A different file there is a permanent refusal: it
    /// is never overwritten.
    fn existing(&self, path: &str, ours: &str) -> Result<Option<Receipt>, DeliveryError> {
        let Some(m) = self.metadata(path)? else {
            return Ok(None);
        };
        if m.get("content_hash").and_then(Value::as_str) != Some(ours) {
            return Err(DeliveryError::permanent(format!(
                "dropbox: a different file already exists at {path}"
            )));
        }
        Ok(Some(Receipt {
            id: m
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            location: Some(path.to_owned()),
            already_present: true,
        }))
    }

    /// Uploads in chunks through an upload session, resuming the one named
    /// in `resume` (kept there by an earlier, interrupted attempt) from
    /// where Dropbox says it stands. Answers `finish`'s response.
    fn upload_session(
        &self,
        parcel: &Parcel<'_>,
        path: &str,
        resume: Option<&Path>,
        progress: &ProgressHandle,
    ) -> Result<Response, DeliveryError> {
        let (size, chunk) = (parcel.size, self.config.chunk_bytes);
        let resumed = match resume.and_then(|f| std::fs::read_to_string(f).ok()) {
            Some(id) => {
                let id = id.trim().to_owned();
                self.session_offset(&id)?.map(|offset| (id, offset))
            }
            None => None,
        };
        let (session, mut offset) = match resumed {
            Some((id, offset)) if offset <= size => {
                progress.begin(size);
                progress.advance(offset);
                (id, offset)
            }
            _ => {
                let start = self.send("dropbox upload_session/start", || {
                    Ok(self
                        .content("files/upload_session/start", &json!({ "close": false }))
                        .body(part(parcel.sealed, 0, chunk, progress)?))
                })?;
                let start: Value = http::check("dropbox upload_session/start", start)?
                    .json()
                    .map_err(|e| {
                        DeliveryError::transient(format!("dropbox upload_session/start: {e}"))
                    })?;
                let id = start
                    .get("session_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        DeliveryError::transient("dropbox upload_session/start: no session_id")
                    })?
                    .to_owned();
                if let Some(f) = resume {
                    // Best effort: without it a crash costs a fresh upload.
                    let _ = medseal_files::write_private(
                        f,
                        id.as_bytes(),
                        medseal_files::WriteOptions::default(),
                    );
                }
                (id, chunk)
            }
        };
        while size - offset > chunk {
            let arg =
                json!({ "cursor": { "session_id": session, "offset": offset }, "close": false });
            let r = self.send("dropbox upload_session/append_v2", || {
                Ok(self
                    .content("files/upload_session/append_v2", &arg)
                    .body(part(parcel.sealed, offset, chunk, progress)?))
            })?;
            http::check("dropbox upload_session/append_v2", r)?;
            offset += chunk;
        }
        let arg = json!({ "cursor": { "session_id": session, "offset": offset }, "commit": commit_info(path) });
        self.send("dropbox upload_session/finish", || {
            Ok(self.content("files/upload_session/finish", &arg).body(part(
                parcel.sealed,
                offset,
                size - offset,
                progress,
            )?))
        })
    }

    /// How many bytes an open upload session holds, asked the way Dropbox
    /// allows: an empty append at offset 0, answered `incorrect_offset`
    /// with the right one. `None` if the session is gone (finished,
    /// expired, unknown).
    fn session_offset(&self, session: &str) -> Result<Option<u64>, DeliveryError> {
        let arg = json!({ "cursor": { "session_id": session, "offset": 0 }, "close": false });
        let r = self.send("dropbox upload_session/append_v2", || {
            Ok(self
                .content("files/upload_session/append_v2", &arg)
                .body(Vec::new()))
        })?;
        if r.status() == StatusCode::OK {
            return Ok(Some(0));
        }
        if r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error() {
            // Busy: try the whole attempt again later, session and all.
            return Err(http::failure("dropbox upload_session/append_v2", r));
        }
        if r.status() != StatusCode::CONFLICT {
            // Anything else (a session id Dropbox no longer takes): start a
            // fresh session rather than fail the delivery.
            return Ok(None);
        }
        let body: Value = r.json().unwrap_or(Value::Null);
        let err = &body["error"];
        let tagged = if err.get(".tag").and_then(Value::as_str) == Some("lookup_failed") {
            &err["lookup_failed"]
        } else {
            err
        };
        Ok(tagged.get("correct_offset").and_then(Value::as_u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_arg_is_ascii() {
        let a = api_arg(&json!({"path": "/Clínica/😀.mseal"}));
        assert!(a.is_ascii());
        assert_eq!(a, r#"{"path":"/Cl\u00ednica/\ud83d\ude00.mseal"}"#);
    }
}
