//! A Dropbox API v2 stand-in: `oauth2/token`, `2/files/upload`,
//! `2/files/upload_session/{start,append_v2,finish}`, `2/files/get_metadata`,
//! with Dropbox's error bodies (`error_summary` + tagged `error`), 401
//! `expired_access_token`, 409 `path/conflict/file/`, `incorrect_offset`,
//! and 429 `too_many_requests` with Retry-After.

use std::collections::HashMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Fake, Faults, Req, Resp, Throttle, Tokens};

/// A stored file.
pub struct DbxFile {
    /// The content.
    pub data: Vec<u8>,
    /// Its id.
    pub id: String,
}

/// The fake's state.
pub struct State {
    /// OAuth.
    pub tokens: Tokens,
    /// Files by lower-cased path.
    pub files: HashMap<String, DbxFile>,
    /// Open upload sessions: id → bytes so far.
    pub sessions: HashMap<String, Vec<u8>>,
    /// Faults to inject.
    pub faults: Faults,
    /// Every request's path, in order.
    pub log: Vec<String>,
    next_id: u32,
}

/// Dropbox's content hash.
pub fn content_hash(data: &[u8]) -> String {
    let mut all = Vec::new();
    for block in data.chunks(4 * 1024 * 1024) {
        all.extend_from_slice(&Sha256::digest(block));
    }
    hex::encode(Sha256::digest(&all))
}

fn error(status: u16, summary: &str, error: Value) -> Resp {
    Resp::json(status, &json!({ "error_summary": summary, "error": error }))
}

fn metadata(path: &str, f: &DbxFile) -> Value {
    let name = path.rsplit('/').next().unwrap_or_default();
    json!({
        ".tag": "file",
        "name": name,
        "id": f.id,
        "client_modified": "2026-11-23T00:00:00Z",
        "server_modified": "2026-11-23T00:00:00Z",
        "rev": "015f1e1d6c8e4b7000000001",
        "size": f.data.len(),
        "path_lower": path.to_lowercase(),
        "path_display": path,
        "is_downloadable": true,
        "content_hash": content_hash(&f.data),
    })
}

fn arg(req: &Req) -> Option<Value> {
    serde_json::from_str(req.header("dropbox-api-arg")?).ok()
}

impl State {
    fn commit(&mut self, commit: &Value, data: Vec<u8>) -> Resp {
        let Some(path) = commit.get("path").and_then(Value::as_str) else {
            return error(
                400,
                "path/malformed_path/",
                json!({".tag": "path", "path": {".tag": "malformed_path"}}),
            );
        };
        if commit.get("mode").and_then(Value::as_str).unwrap_or("add") != "add" {
            return Resp::json(400, &json!("Error in call: only add mode is modelled"));
        }
        let key = path.to_lowercase();
        if self.files.contains_key(&key) {
            return error(
                409,
                "path/conflict/file/..",
                json!({".tag": "path", "reason": {".tag": "conflict", "conflict": {".tag": "file"}}, "upload_session_id": ""}),
            );
        }
        self.next_id += 1;
        let f = DbxFile {
            data,
            id: format!("id:a4ayc_80_OEAAAAAAAA{:04}", self.next_id),
        };
        let m = metadata(path, &f);
        self.files.insert(key, f);
        Resp::json(200, &m)
    }

    fn handle(&mut self, req: &Req) -> Resp {
        self.log.push(req.path.clone());
        if req.path == "/oauth2/token" {
            return self.tokens.refresh(req);
        }
        if let Some(r) = self.faults.take(&req.path) {
            return r;
        }
        if !self.tokens.authorised(req) {
            return error(
                401,
                "expired_access_token/",
                json!({".tag": "expired_access_token"}),
            );
        }
        let content = || req.header("content-type") == Some("application/octet-stream");
        match req.path.as_str() {
            "/2/files/upload" => {
                let (Some(a), true) = (arg(req), content()) else {
                    return Resp::json(
                        400,
                        &json!(
                            "Error in call to API function \"files/upload\": bad Dropbox-API-Arg or Content-Type"
                        ),
                    );
                };
                self.commit(&a, req.body.clone())
            }
            "/2/files/upload_session/start" => {
                if arg(req).is_none() || !content() {
                    return Resp::json(
                        400,
                        &json!("Error in call to API function \"files/upload_session/start\""),
                    );
                }
                let id = format!("AAAAAAAAAB{}", self.sessions.len() + 1);
                self.sessions.insert(id.clone(), req.body.clone());
                Resp::json(200, &json!({ "session_id": id }))
            }
            "/2/files/upload_session/append_v2" | "/2/files/upload_session/finish" => {
                let Some(a) = arg(req) else {
                    return Resp::json(400, &json!("Error in call: bad Dropbox-API-Arg"));
                };
                let cursor = &a["cursor"];
                let id = cursor["session_id"].as_str().unwrap_or_default().to_owned();
                let offset = cursor["offset"].as_u64().unwrap_or(u64::MAX);
                // append_v2 answers UploadSessionAppendError (the lookup
                // error's tags at the top); finish wraps them in
                // UploadSessionFinishError.lookup_failed.
                let append = req.path.ends_with("append_v2");
                let lookup = |tag: Value, summary: &str| {
                    if append {
                        error(409, &format!("{summary}/.."), tag)
                    } else {
                        error(
                            409,
                            &format!("lookup_failed/{summary}/.."),
                            json!({".tag": "lookup_failed", "lookup_failed": tag}),
                        )
                    }
                };
                let Some(data) = self.sessions.get_mut(&id) else {
                    return lookup(json!({".tag": "not_found"}), "not_found");
                };
                if offset != data.len() as u64 {
                    let correct = data.len();
                    return lookup(
                        json!({".tag": "incorrect_offset", "correct_offset": correct}),
                        "incorrect_offset",
                    );
                }
                data.extend_from_slice(&req.body);
                if req.path.ends_with("append_v2") {
                    return Resp::json(200, &Value::Null);
                }
                let data = self.sessions.remove(&id).unwrap_or_default();
                self.commit(&a["commit"], data)
            }
            "/2/files/get_metadata" => {
                let path = req
                    .json()
                    .and_then(|v| v["path"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                match self.files.get(&path.to_lowercase()) {
                    Some(f) => Resp::json(200, &metadata(&path, f)),
                    None => error(
                        409,
                        "path/not_found/..",
                        json!({".tag": "path", "path": {".tag": "not_found"}}),
                    ),
                }
            }
            _ => Resp::json(400, &json!("Unknown API function")),
        }
    }
}

/// Starts the fake with an app's credentials; the first access token is
/// already expired, so the client must refresh before anything else works.
pub fn start(
    client_id: &str,
    client_secret: &str,
    refresh: &str,
    throttle: Throttle,
) -> Fake<State> {
    let state = State {
        tokens: Tokens::new(client_id, client_secret, refresh, false),
        files: HashMap::new(),
        sessions: HashMap::new(),
        faults: Faults::default(),
        log: Vec::new(),
        next_id: 0,
    };
    Fake::start(state, throttle, |req, s, _| s.handle(req))
}

/// A 429 the way Dropbox sends it.
pub fn too_many_requests(retry_after: u32) -> Resp {
    error(
        429,
        "too_many_requests/..",
        json!({ "reason": {".tag": "too_many_requests"}, "retry_after": retry_after }),
    )
    .with("Retry-After", &retry_after.to_string())
}
