//! Box: the upload API (multipart, `attributes` part first) for small
//! reports, chunked upload sessions (parts with SHA-1 digests, then a commit
//! with the whole file's digest) for large ones, OAuth refresh on 401.
//!
//! Box refuses a second file of the same name in a folder with 409
//! `item_name_in_use` and names the existing file and its SHA-1: equal means
//! a retried delivery that had arrived (a receipt), different means someone
//! else's file (a permanent error). Nothing is overwritten.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use reqwest::blocking::multipart::Form;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ConfigError;
use crate::destination::{Destination, Parcel, ProgressHandle, Receipt};
use crate::digest::{file_digests, sha1};
use crate::error::DeliveryError;
use crate::http::{self, TlsSettings};
use crate::oauth::{OAuth, OAuthSettings};

/// Box accepts upload sessions only for files of at least this size.
pub const MIN_SESSION_BYTES: u64 = 20_000_000;

/// `type = "box"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxConfig {
    /// The folder's id (`0` is the root).
    pub folder_id: String,
    /// The app's OAuth credentials. Box rotates the refresh token at every
    /// refresh: keep it in a file medseal may rewrite.
    pub oauth: OAuthSettings,
    /// API host.
    #[serde(default = "default_api")]
    pub api_url: String,
    /// Upload host.
    #[serde(default = "default_upload")]
    pub upload_url: String,
    /// Token endpoint.
    #[serde(default = "default_token")]
    pub token_url: String,
    /// Reports at least this large use a chunked upload session.
    #[serde(default = "default_threshold")]
    pub chunked_threshold_bytes: u64,
    /// Trust settings.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Time allowed for one request, in seconds.
    #[serde(default = "crate::http::default_timeout")]
    pub timeout_seconds: u64,
}

fn default_api() -> String {
    "https://api.box.com/2.0".into()
}
fn default_upload() -> String {
    "https://upload.box.com/api/2.0".into()
}
fn default_token() -> String {
    "https://api.box.com/oauth2/token".into()
}
fn default_threshold() -> u64 {
    50_000_000
}

impl BoxConfig {
    pub(crate) fn resolve(&mut self, base: &Path) {
        self.oauth.resolve(base);
        self.tls.resolve(base);
    }
}

/// The Box destination.
pub struct BoxFolder {
    config: BoxConfig,
    client: Client,
    oauth: OAuth,
}

#[derive(Deserialize)]
struct Session {
    id: String,
    part_size: u64,
}

#[derive(Deserialize)]
struct Files {
    entries: Vec<FileEntry>,
}

#[derive(Deserialize)]
struct FileEntry {
    id: String,
    #[serde(default)]
    sha1: Option<String>,
}

impl BoxFolder {
    /// Checks the settings.
    pub fn new(config: BoxConfig) -> Result<Self, ConfigError> {
        if config.chunked_threshold_bytes < MIN_SESSION_BYTES {
            return Err(ConfigError::Invalid(format!(
                "box chunked_threshold_bytes must be at least {MIN_SESSION_BYTES} (Box's minimum for upload sessions)"
            )));
        }
        let urls = [
            config.api_url.as_str(),
            config.upload_url.as_str(),
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

    fn upload(&self, path: &str) -> String {
        format!("{}/{path}", self.config.upload_url.trim_end_matches('/'))
    }

    fn send(
        &self,
        what: &str,
        build: impl Fn() -> Result<RequestBuilder, DeliveryError>,
    ) -> Result<Response, DeliveryError> {
        self.oauth.send(&self.client, what, build)
    }

    fn small(
        &self,
        parcel: &Parcel<'_>,
        sha1_hex: &str,
        progress: &ProgressHandle,
    ) -> Result<Response, DeliveryError> {
        let attributes =
            json!({ "name": parcel.file_name, "parent": { "id": self.config.folder_id } })
                .to_string();
        self.send("box upload", || {
            let file = std::fs::File::open(parcel.sealed)?;
            let body = http::file_part(
                file,
                parcel.size,
                parcel.file_name,
                "application/octet-stream",
                progress,
            )?;
            // Box reads `attributes` before the file: it must come first.
            let form = Form::new()
                .text("attributes", attributes.clone())
                .part("file", body);
            Ok(self
                .client
                .post(self.upload("files/content"))
                .header("Content-MD5", sha1_hex)
                .multipart(form))
        })
    }

    fn chunked(
        &self,
        parcel: &Parcel<'_>,
        whole_sha1: &[u8; 20],
        progress: &ProgressHandle,
    ) -> Result<Response, DeliveryError> {
        let create = json!({ "folder_id": self.config.folder_id, "file_size": parcel.size, "file_name": parcel.file_name });
        let resp = self.send("box upload session", || {
            Ok(self
                .client
                .post(self.upload("files/upload_sessions"))
                .json(&create))
        })?;
        if resp.status() == StatusCode::CONFLICT {
            return Ok(resp);
        }
        let session: Session = http::check("box upload session", resp)?
            .json()
            .map_err(|e| DeliveryError::transient(format!("box upload session: {e}")))?;
        if session.part_size == 0 {
            return Err(DeliveryError::transient("box upload session: part_size 0"));
        }
        let mut file = std::fs::File::open(parcel.sealed)?;
        let mut parts = Vec::new();
        let mut offset = 0u64;
        while offset < parcel.size {
            let len = session.part_size.min(parcel.size - offset);
            let mut buf = vec![0u8; len as usize];
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut buf)?;
            let digest = format!("sha={}", B64.encode(sha1(&buf)));
            let range = format!("bytes {}-{}/{}", offset, offset + len - 1, parcel.size);
            let url = self.upload(&format!("files/upload_sessions/{}", session.id));
            let resp = self.send("box upload part", || {
                Ok(self
                    .client
                    .put(&url)
                    .header("Content-Range", &range)
                    .header("Digest", &digest)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(buf.clone()))
            })?;
            let part: Value = http::check("box upload part", resp)?
                .json()
                .map_err(|e| DeliveryError::transient(format!("box upload part: {e}")))?;
            let part = part.get("part").cloned().ok_or_else(|| {
                DeliveryError::transient("box upload part: no part in the answer")
            })?;
            parts.push(part);
            progress.advance(len);
            offset += len;
        }
        let commit_url = self.upload(&format!("files/upload_sessions/{}/commit", session.id));
        let digest = format!("sha={}", B64.encode(whole_sha1));
        let body = json!({ "parts": parts });
        // Box answers 202 + Retry-After while it assembles the parts.
        for _ in 0..30 {
            let resp = self.send("box commit", || {
                Ok(self
                    .client
                    .post(&commit_url)
                    .header("Digest", &digest)
                    .json(&body))
            })?;
            if resp.status() != StatusCode::ACCEPTED {
                return Ok(resp);
            }
            let wait = http::retry_after(&resp).unwrap_or(Duration::from_secs(1));
            std::thread::sleep(wait.min(Duration::from_secs(30)));
        }
        Err(DeliveryError::transient(
            "box commit: still processing after 30 tries",
        ))
    }
}

/// The existing file Box names in a 409 `item_name_in_use`.
fn conflict(body: &str) -> Option<(String, Option<String>)> {
    let v: Value = serde_json::from_str(body).ok()?;
    if v.get("code").and_then(Value::as_str) != Some("item_name_in_use") {
        return None;
    }
    let c = v.get("context_info")?.get("conflicts")?;
    let c = if c.is_array() { c.get(0)? } else { c };
    Some((
        c.get("id")?.as_str()?.to_owned(),
        c.get("sha1").and_then(Value::as_str).map(str::to_owned),
    ))
}

impl Destination for BoxFolder {
    fn kind(&self) -> &'static str {
        "box"
    }

    fn reachable(&self) -> Result<(), DeliveryError> {
        http::probe(&self.config.upload_url, self.config.timeout_seconds)
    }

    fn deliver(
        &self,
        parcel: &Parcel<'_>,
        progress: &ProgressHandle,
    ) -> Result<Receipt, DeliveryError> {
        let sha1 = file_digests(parcel.sealed)?.sha1;
        let sha1_hex = hex::encode(sha1);
        progress.begin(parcel.size);
        let resp = if parcel.size >= self.config.chunked_threshold_bytes {
            self.chunked(parcel, &sha1, progress)?
        } else {
            self.small(parcel, &sha1_hex, progress)?
        };
        if resp.status() == StatusCode::CONFLICT {
            let body = resp.text().unwrap_or_default();
            return match conflict(&body) {
                Some((id, Some(theirs))) if theirs.eq_ignore_ascii_case(&sha1_hex) => Ok(Receipt {
                    id,
                    location: None,
                    already_present: true,
                }),
                Some(_) => Err(DeliveryError::permanent(format!(
                    "box: a different file named {} already exists in folder {}",
                    parcel.file_name, self.config.folder_id
                ))),
                None => Err(DeliveryError::permanent(format!(
                    "box: HTTP 409 ({})",
                    http::error_code(&body).unwrap_or_default()
                ))),
            };
        }
        let files: Files = http::check("box upload", resp)?
            .json()
            .map_err(|e| DeliveryError::transient(format!("box upload: unreadable answer: {e}")))?;
        let file = files
            .entries
            .into_iter()
            .next()
            .ok_or_else(|| DeliveryError::transient("box upload: no file in the answer"))?;
        if let Some(theirs) = &file.sha1
            && !theirs.eq_ignore_ascii_case(&sha1_hex)
        {
            return Err(DeliveryError::permanent(format!(
                "box stored file {} with a different SHA-1 than the report's: the upload was damaged",
                file.id
            )));
        }
        let location = format!(
            "{}/files/{}",
            self.config.api_url.trim_end_matches('/'),
            file.id
        );
        Ok(Receipt {
            id: file.id,
            location: Some(location),
            already_present: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_existing_file() {
        let body = r#"{"type":"error","status":409,"code":"item_name_in_use","context_info":{"conflicts":{"type":"file","id":"12345","sha1":"85136C79CBF9FE36BB9D05D0639C70C265C18D37","name":"x.mseal"}},"message":"Item with the same name already exists","request_id":"abc"}"#;
        assert_eq!(
            conflict(body),
            Some((
                "12345".into(),
                Some("85136C79CBF9FE36BB9D05D0639C70C265C18D37".into())
            ))
        );
        let arr = body
            .replace(r#""conflicts":{"#, r#""conflicts":[{"#)
            .replace(r#""name":"x.mseal"}}"#, r#""name":"x.mseal"}]}"#);
        assert_eq!(conflict(&arr).map(|c| c.0), Some("12345".into()));
        assert_eq!(conflict(r#"{"code":"other"}"#), None);
    }
}
