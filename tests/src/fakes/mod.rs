//! Local stand-ins for services the tests cannot reach: Box, Dropbox and a
//! generic EMR endpoint, each following its public API (paths, headers,
//! multipart shapes, upload sessions, error bodies, token refresh, 429 with
//! Retry-After) closely enough that the real client code runs unchanged.
//!
//! A fake is a plain HTTP server on a loopback port (`tiny_http`), handling
//! one request at a time on its own thread, with its state behind a mutex
//! that the test can inspect.

pub mod boxcom;
pub mod dropbox;
pub mod emr;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// One part of a multipart body: its headers (lower-case names) and content.
pub type Part = (HashMap<String, String>, Vec<u8>);

/// A request as the fakes see it.
pub struct Req {
    /// `GET`, `POST`…
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Header values by lower-case name.
    pub headers: HashMap<String, String>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Req {
    /// A header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The bearer token, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// The body as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> HashMap<String, String> {
        url_decode_form(&String::from_utf8_lossy(&self.body))
    }

    /// The parts of a `multipart/*` body: (headers, content), in order.
    pub fn multipart(&self) -> Option<Vec<Part>> {
        let ct = self.header("content-type")?;
        let boundary = ct
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("boundary="))?
            .trim_matches('"');
        split_multipart(&self.body, boundary)
    }
}

fn url_decode_form(s: &str) -> HashMap<String, String> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        let bytes = v.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Splits a multipart body (RFC 2046) into its parts.
pub fn split_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut pos = find(body, delim.as_bytes(), 0)? + delim.len();
    loop {
        if body.get(pos..pos + 2)? == b"--" {
            return Some(parts);
        }
        pos += 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let headers = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let next = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4)?;
        parts.push((headers, body[head_end + 4..next].to_vec()));
        pos = next + 2 + delim.len();
    }
}

/// The `name` parameter of a part's Content-Disposition.
pub fn part_name(headers: &HashMap<String, String>) -> Option<String> {
    let cd = headers.get("content-disposition")?;
    cd.split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("name="))
        .map(|n| n.trim_matches('"').to_owned())
}

/// A response.
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Resp {
    /// A JSON response.
    pub fn json(status: u16, v: &Value) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }

    /// An empty response.
    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: &str) -> Resp {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// How fast a fake reads request bodies: (bytes per step, pause per step).
pub type Throttle = Option<(usize, Duration)>;

/// A running fake; stopped when dropped.
pub struct Fake<S> {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The fake's state.
    pub state: Arc<Mutex<S>>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<S: Send + 'static> Fake<S> {
    /// Starts a fake with `state`, answering with `handle`.
    pub fn start(
        state: S,
        throttle: Throttle,
        handle: impl Fn(&Req, &mut S, &str) -> Resp + Send + 'static,
    ) -> Fake<S> {
        Self::start_on(0, state, throttle, handle)
    }

    /// Starts a fake on a given port (0: any free one).
    pub fn start_on(
        port: u16,
        state: S,
        throttle: Throttle,
        handle: impl Fn(&Req, &mut S, &str) -> Resp + Send + 'static,
    ) -> Fake<S> {
        let server =
            Arc::new(tiny_http::Server::http(("127.0.0.1", port)).expect("bind a loopback port"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let url = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, state, stop, url) =
                (server.clone(), state.clone(), stop.clone(), url.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(Some(mut rq)) = server.recv_timeout(Duration::from_millis(50)) else {
                        continue;
                    };
                    let mut body = Vec::new();
                    let read = match throttle {
                        None => rq.as_reader().read_to_end(&mut body).map(|_| ()),
                        Some((step, pause)) => {
                            let mut buf = vec![0u8; step];
                            loop {
                                match rq.as_reader().read(&mut buf) {
                                    Ok(0) => break Ok(()),
                                    Ok(n) => body.extend_from_slice(&buf[..n]),
                                    Err(e) => break Err(e),
                                }
                                std::thread::sleep(pause);
                            }
                        }
                    };
                    if read.is_err() {
                        continue; // the client went away mid-body: nothing is stored
                    }
                    let full = rq.url().to_owned();
                    let req = Req {
                        method: rq.method().as_str().to_owned(),
                        path: full.split('?').next().unwrap_or_default().to_owned(),
                        headers: rq
                            .headers()
                            .iter()
                            .map(|h| {
                                (
                                    h.field.as_str().as_str().to_ascii_lowercase(),
                                    h.value.as_str().to_owned(),
                                )
                            })
                            .collect(),
                        body,
                    };
                    let resp = {
                        let mut s = state.lock().expect("fake state");
                        handle(&req, &mut s, &url)
                    };
                    let mut r =
                        tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
                    for (k, v) in resp.headers {
                        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                            r.add_header(h);
                        }
                    }
                    let _ = rq.respond(r);
                }
            })
        };
        Fake {
            url,
            state,
            server,
            stop,
            thread: Some(thread),
        }
    }
}

impl<S> Drop for Fake<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Faults to inject: the next requests matching a path prefix get these
/// answers instead of being served.
#[derive(Default)]
pub struct Faults {
    queue: Vec<(String, Resp)>,
}

impl Faults {
    /// The next request whose path starts with `prefix` gets `resp`.
    pub fn push(&mut self, prefix: &str, resp: Resp) {
        self.queue.push((prefix.to_owned(), resp));
    }

    /// Takes the first fault for `path`, if any.
    pub fn take(&mut self, path: &str) -> Option<Resp> {
        let i = self
            .queue
            .iter()
            .position(|(p, _)| path.starts_with(p.as_str()))?;
        Some(self.queue.remove(i).1)
    }
}

/// OAuth token endpoint state shared by the Box and Dropbox fakes.
pub struct Tokens {
    /// The access token currently valid.
    pub access: String,
    /// The refresh token currently valid.
    pub refresh: String,
    /// The app's client id and secret.
    pub client: (String, String),
    /// Whether each refresh issues a new refresh token (Box does).
    pub rotate: bool,
    /// Refreshes served.
    pub refreshes: u32,
    /// Expire the access token after this many uses (to make a client meet
    /// a 401 in the middle of its work).
    pub expire_after: Option<u32>,
    /// Uses of the current access token.
    pub uses: u32,
    /// 401s answered.
    pub rejected: u32,
}

impl Tokens {
    /// An app's token state; the access token the client starts with is
    /// stale, so it must refresh before anything else works.
    pub fn new(client_id: &str, client_secret: &str, refresh: &str, rotate: bool) -> Tokens {
        Tokens {
            access: "not-issued-yet".into(),
            refresh: refresh.into(),
            client: (client_id.into(), client_secret.into()),
            rotate,
            refreshes: 0,
            expire_after: None,
            uses: 0,
            rejected: 0,
        }
    }

    /// Serves `POST …/oauth2/token` with `grant_type=refresh_token`.
    pub fn refresh(&mut self, req: &Req) -> Resp {
        let f = req.form();
        let bad = |code: &str, desc: &str| {
            Resp::json(
                400,
                &serde_json::json!({ "error": code, "error_description": desc }),
            )
        };
        if f.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return bad("unsupported_grant_type", "grant type not supported");
        }
        if f.get("client_id") != Some(&self.client.0)
            || f.get("client_secret") != Some(&self.client.1)
        {
            return bad("invalid_client", "The client credentials are invalid");
        }
        if f.get("refresh_token") != Some(&self.refresh) {
            return bad("invalid_grant", "Invalid refresh token");
        }
        self.refreshes += 1;
        self.uses = 0;
        self.access = format!("access-{}", self.refreshes);
        let mut body = serde_json::json!({ "access_token": self.access, "expires_in": 3600, "token_type": "bearer" });
        if self.rotate {
            self.refresh = format!("refresh-{}", self.refreshes);
            body["refresh_token"] = Value::String(self.refresh.clone());
            body["restricted_to"] = Value::Array(Vec::new());
        }
        Resp::json(200, &body)
    }

    /// Whether the request carries the valid access token.
    pub fn authorised(&mut self, req: &Req) -> bool {
        let ok = req.bearer() == Some(self.access.as_str())
            && self.expire_after.is_none_or(|n| self.uses < n);
        if ok {
            self.uses += 1;
        } else {
            self.rejected += 1;
        }
        ok
    }
}
