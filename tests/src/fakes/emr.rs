//! A generic EMR intake endpoint: `POST /inbox` with a multipart body
//! (`manifest` JSON part, `report` file part), bearer or basic auth, and an
//! `Idempotency-Key` it remembers: a repeat gets the first answer back with
//! `Idempotent-Replayed: true`, and nothing is stored twice.

use std::collections::HashMap;

use serde_json::json;

use super::{Fake, Faults, Req, Resp, Throttle, part_name};

/// One stored report.
pub struct Stored {
    /// The idempotency key it came with.
    pub key: String,
    /// The report part's file name.
    pub file_name: String,
    /// The report part's content.
    pub report: Vec<u8>,
    /// The manifest part, if sent.
    pub manifest: Option<Vec<u8>>,
}

/// The fake's state.
pub struct State {
    /// What must be in the Authorization header.
    pub authorization: String,
    /// Reports stored, in order.
    pub stored: Vec<Stored>,
    /// Idempotency key → receipt id.
    pub seen: HashMap<String, String>,
    /// Faults to inject.
    pub faults: Faults,
    /// Requests received (complete bodies only).
    pub requests: u32,
}

impl State {
    fn handle(&mut self, req: &Req) -> Resp {
        self.requests += 1;
        if let Some(r) = self.faults.take(&req.path) {
            return r;
        }
        if req.header("authorization") != Some(self.authorization.as_str()) {
            return Resp::json(401, &json!({ "error": "unauthorized" }));
        }
        if req.method != "POST" || req.path != "/inbox" {
            return Resp::json(404, &json!({ "error": "not_found" }));
        }
        let Some(key) = req.header("idempotency-key").map(str::to_owned) else {
            return Resp::json(400, &json!({ "error": "idempotency_key_required" }));
        };
        if let Some(id) = self.seen.get(&key) {
            return Resp::json(200, &json!({ "id": id })).with("Idempotent-Replayed", "true");
        }
        let Some(parts) = req.multipart() else {
            return Resp::json(400, &json!({ "error": "multipart_required" }));
        };
        let mut manifest = None;
        let mut report = None;
        for (h, data) in parts {
            match part_name(&h).as_deref() {
                Some("manifest") => manifest = Some(data),
                Some("report") => {
                    let cd = h.get("content-disposition").cloned().unwrap_or_default();
                    let name = cd
                        .split("filename=")
                        .nth(1)
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned();
                    report = Some((name, data));
                }
                _ => return Resp::json(400, &json!({ "error": "unexpected_part" })),
            }
        }
        let Some((file_name, report)) = report else {
            return Resp::json(400, &json!({ "error": "report_part_required" }));
        };
        let id = format!("emr-{}", self.stored.len() + 1);
        self.seen.insert(key.clone(), id.clone());
        self.stored.push(Stored {
            key,
            file_name,
            report,
            manifest,
        });
        Resp::json(201, &json!({ "id": id })).with("Location", &format!("/inbox/{id}"))
    }
}

/// Starts the endpoint, expecting `authorization` as the Authorization header.
pub fn start(authorization: &str, throttle: Throttle) -> Fake<State> {
    start_on(0, authorization, throttle)
}

/// Starts the endpoint on a given port.
pub fn start_on(port: u16, authorization: &str, throttle: Throttle) -> Fake<State> {
    let state = State {
        authorization: authorization.into(),
        stored: Vec::new(),
        seen: HashMap::new(),
        faults: Faults::default(),
        requests: 0,
    };
    Fake::start_on(port, state, throttle, |req, s, _| s.handle(req))
}
