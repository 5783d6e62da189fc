//! A Box API stand-in: `oauth2/token` (refresh tokens rotate, single use),
//! `POST /api/2.0/files/content` (multipart, `attributes` before `file`,
//! `Content-MD5` = SHA-1), chunked upload sessions (create, `PUT` parts with
//! `Content-Range` and `Digest: sha=`, `commit` with the whole file's
//! digest and the part list), 409 `item_name_in_use` naming the existing
//! file, 401 on a stale token, 429 `rate_limit_exceeded` with Retry-After.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::{Fake, Faults, Req, Resp, Throttle, Tokens, part_name};

/// A stored file.
pub struct BoxFile {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its folder.
    pub folder: String,
    /// The content.
    pub data: Vec<u8>,
}

struct Session {
    folder: String,
    name: String,
    size: u64,
    part_size: u64,
    parts: HashMap<u64, (String, Vec<u8>)>,
}

/// The fake's state.
pub struct State {
    /// OAuth.
    pub tokens: Tokens,
    /// Files, in upload order.
    pub files: Vec<BoxFile>,
    /// Faults to inject.
    pub faults: Faults,
    /// Every request as `METHOD path`.
    pub log: Vec<String>,
    sessions: HashMap<String, Session>,
    next_id: u64,
    /// Part size the fake asks for (Box uses 8 MiB and up).
    pub part_size: u64,
}

fn sha1_hex(d: &[u8]) -> String {
    hex::encode(Sha1::digest(d))
}

fn error(status: u16, code: &str, message: &str, context: Option<Value>) -> Resp {
    let mut v = json!({
        "type": "error", "status": status, "code": code, "message": message,
        "help_url": "http://developers.box.com/docs/#errors", "request_id": "abcdef123456"
    });
    if let Some(c) = context {
        v["context_info"] = c;
    }
    Resp::json(status, &v)
}

fn file_json(f: &BoxFile) -> Value {
    json!({
        "type": "file", "id": f.id, "etag": "0", "sequence_id": "0", "name": f.name,
        "sha1": sha1_hex(&f.data), "size": f.data.len(),
        "parent": { "type": "folder", "id": f.folder }
    })
}

impl State {
    fn conflict(&self, folder: &str, name: &str) -> Option<Resp> {
        let f = self
            .files
            .iter()
            .find(|f| f.folder == folder && f.name == name)?;
        Some(error(
            409,
            "item_name_in_use",
            "Item with the same name already exists",
            Some(
                json!({ "conflicts": { "type": "file", "id": f.id, "sha1": sha1_hex(&f.data).to_uppercase(), "name": f.name } }),
            ),
        ))
    }

    fn store(&mut self, folder: String, name: String, data: Vec<u8>) -> Resp {
        self.next_id += 1;
        let f = BoxFile {
            id: format!("{}", 1_000_000 + self.next_id),
            name,
            folder,
            data,
        };
        let body = json!({ "total_count": 1, "entries": [file_json(&f)] });
        self.files.push(f);
        Resp::json(201, &body)
    }

    fn handle(&mut self, req: &Req, base: &str) -> Resp {
        self.log.push(format!("{} {}", req.method, req.path));
        if req.path == "/oauth2/token" {
            return self.tokens.refresh(req);
        }
        if let Some(r) = self.faults.take(&req.path) {
            return r;
        }
        if !self.tokens.authorised(req) {
            return Resp::empty(401).with("WWW-Authenticate", "Bearer realm=\"Service\", error=\"invalid_token\", error_description=\"The access token provided is invalid.\"");
        }
        let path = req.path.as_str();
        if req.method == "POST" && path == "/api/2.0/files/content" {
            let Some(parts) = req.multipart() else {
                return error(400, "bad_request", "multipart body expected", None);
            };
            let names: Vec<String> = parts.iter().filter_map(|(h, _)| part_name(h)).collect();
            if names.first().map(String::as_str) != Some("attributes")
                || names.get(1).map(String::as_str) != Some("file")
            {
                return error(
                    400,
                    "bad_request",
                    "attributes must be sent before the file",
                    None,
                );
            }
            let attrs: Value = serde_json::from_slice(&parts[0].1).unwrap_or(Value::Null);
            let (Some(name), Some(folder)) =
                (attrs["name"].as_str(), attrs["parent"]["id"].as_str())
            else {
                return error(
                    400,
                    "bad_request",
                    "attributes need name and parent.id",
                    None,
                );
            };
            let data = parts[1].1.clone();
            if let Some(md5) = req.header("content-md5")
                && !md5.eq_ignore_ascii_case(&sha1_hex(&data))
            {
                return error(
                    400,
                    "sha1_mismatch",
                    "The SHA-1 of the file does not match Content-MD5",
                    None,
                );
            }
            if let Some(c) = self.conflict(folder, name) {
                return c;
            }
            return self.store(folder.to_owned(), name.to_owned(), data);
        }
        if req.method == "POST" && path == "/api/2.0/files/upload_sessions" {
            let b = req.json().unwrap_or(Value::Null);
            let (Some(folder), Some(size), Some(name)) = (
                b["folder_id"].as_str(),
                b["file_size"].as_u64(),
                b["file_name"].as_str(),
            ) else {
                return error(
                    400,
                    "bad_request",
                    "folder_id, file_size and file_name are required",
                    None,
                );
            };
            if size < 20_000_000 {
                return error(
                    400,
                    "file_size_too_small",
                    "File size is less than minimum allowed for this API",
                    None,
                );
            }
            if let Some(c) = self.conflict(folder, name) {
                return c;
            }
            let id = format!(
                "F971964745A5CD0C001BBE4E58196B{:02}",
                self.sessions.len() + 1
            );
            let part_size = self.part_size;
            self.sessions.insert(
                id.clone(),
                Session {
                    folder: folder.into(),
                    name: name.into(),
                    size,
                    part_size,
                    parts: HashMap::new(),
                },
            );
            let up = format!("{base}/api/2.0/files/upload_sessions/{id}");
            return Resp::json(
                201,
                &json!({
                    "id": id, "type": "upload_session", "session_expires_at": "2026-12-01T00:00:00Z",
                    "part_size": part_size, "total_parts": size.div_ceil(part_size), "num_parts_processed": 0,
                    "session_endpoints": {
                        "upload_part": up, "commit": format!("{up}/commit"), "abort": up,
                        "list_parts": format!("{up}/parts"), "status": up, "log_event": format!("{up}/log")
                    }
                }),
            );
        }
        if let Some(rest) = path.strip_prefix("/api/2.0/files/upload_sessions/") {
            let (id, commit) = match rest.strip_suffix("/commit") {
                Some(id) => (id.to_owned(), true),
                None => (rest.to_owned(), false),
            };
            let Some(s) = self.sessions.get_mut(&id) else {
                return error(404, "not_found", "Upload session not found", None);
            };
            if !commit && req.method == "PUT" {
                let range = req.header("content-range").unwrap_or_default();
                let Some((a, b, total)) = (|| {
                    let r = range.strip_prefix("bytes ")?;
                    let (ab, total) = r.split_once('/')?;
                    let (a, b) = ab.split_once('-')?;
                    Some((
                        a.parse::<u64>().ok()?,
                        b.parse::<u64>().ok()?,
                        total.parse::<u64>().ok()?,
                    ))
                })() else {
                    return error(400, "bad_request", "Content-Range is required", None);
                };
                let len = b + 1 - a;
                if total != s.size
                    || len != req.body.len() as u64
                    || a % s.part_size != 0
                    || (len != s.part_size && b + 1 != s.size)
                {
                    return error(
                        416,
                        "range_not_satisfiable",
                        "The requested range is not satisfiable",
                        None,
                    );
                }
                let digest = format!("sha={}", B64.encode(Sha1::digest(&req.body)));
                if req.header("digest") != Some(digest.as_str()) {
                    return error(
                        412,
                        "sha1_mismatch",
                        "The part's digest does not match",
                        None,
                    );
                }
                let part_id = format!("{:08X}", 0xBFDF_0000u64 + a / s.part_size);
                s.parts.insert(a, (part_id.clone(), req.body.clone()));
                return Resp::json(
                    200,
                    &json!({ "part": { "part_id": part_id, "offset": a, "size": len, "sha1": sha1_hex(&req.body) } }),
                );
            }
            if commit && req.method == "POST" {
                let body = req.json().unwrap_or(Value::Null);
                let listed: Vec<(String, u64)> = body["parts"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| {
                                Some((p["part_id"].as_str()?.to_owned(), p["offset"].as_u64()?))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut offsets: Vec<u64> = s.parts.keys().copied().collect();
                offsets.sort_unstable();
                let ok = listed.len() == offsets.len()
                    && listed.iter().zip(&offsets).all(|((pid, off), o)| {
                        off == o && s.parts.get(o).is_some_and(|p| &p.0 == pid)
                    });
                if !ok {
                    return error(
                        400,
                        "bad_request",
                        "The parts list does not match the uploaded parts",
                        None,
                    );
                }
                let data: Vec<u8> = offsets.iter().flat_map(|o| s.parts[o].1.clone()).collect();
                if data.len() as u64 != s.size {
                    return error(400, "bad_request", "Not all parts were uploaded", None);
                }
                let digest = format!("sha={}", B64.encode(Sha1::digest(&data)));
                if req.header("digest") != Some(digest.as_str()) {
                    return error(
                        412,
                        "sha1_mismatch",
                        "The file's digest does not match",
                        None,
                    );
                }
                let (folder, name) = (s.folder.clone(), s.name.clone());
                self.sessions.remove(&id);
                if let Some(c) = self.conflict(&folder, &name) {
                    return c;
                }
                return self.store(folder, name, data);
            }
        }
        error(404, "not_found", "Not Found", None)
    }
}

/// Starts the fake; the access token the client has at first is stale.
pub fn start(
    client_id: &str,
    client_secret: &str,
    refresh: &str,
    throttle: Throttle,
) -> Fake<State> {
    let state = State {
        tokens: Tokens::new(client_id, client_secret, refresh, true),
        files: Vec::new(),
        faults: Faults::default(),
        log: Vec::new(),
        sessions: HashMap::new(),
        next_id: 0,
        part_size: 8 * 1024 * 1024,
    };
    Fake::start(state, throttle, |req, s, base| s.handle(req, base))
}

/// A 429 the way Box sends it.
pub fn rate_limited(retry_after: u32) -> Resp {
    error(
        429,
        "rate_limit_exceeded",
        "Request rate limit exceeded, please try again later",
        None,
    )
    .with("Retry-After", &retry_after.to_string())
}
