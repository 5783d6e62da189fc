//! The key server's HTTP request bodies, through the real application: the
//! same routes, extractors, limits and error handlers as `serve`, on a real
//! SQLite store with a logged-in clinician, served in-process.
//!
//! Input: byte 0 picks the endpoint, byte 1 the Content-Type, the rest is
//! the body. Whatever the bytes, the answer is never a 5xx, always carries a
//! JSON body, and an error body is `{"error": …, "message": …}`.
#![no_main]

use std::cell::RefCell;

use actix_web::rt::SystemRunner;
use actix_web::{App, test, web};
use libfuzzer_sys::fuzz_target;
use medseal_keyserver::admin::Admin;
use medseal_keyserver::http::{AppState, configure};
use medseal_keyserver::server::{ServeConfig, app_state};
use medseal_keyserver::{Role, Store};
use serde_json::Value;

const DEVICE: &str = "fuzz-device-1";

struct Harness {
    _dir: tempfile::TempDir,
    rt: SystemRunner,
    state: web::Data<AppState>,
    token: String,
    key_id: String,
}

fn harness() -> Harness {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = tempfile::Builder::new()
        .prefix("medseal-fuzz-")
        .tempdir_in(base)
        .expect("tempdir");
    let store = Store::resolve(Some(dir.path().join("data")), None, None).expect("store");
    let mut admin = Admin::open(store.clone()).expect("admin");
    admin.add_org("Fuzz General").expect("org");
    let password = b"a long fuzzing password";
    admin
        .add_user(
            "Fuzz General",
            "alice@fuzz.example",
            Role::Clinician,
            password,
        )
        .expect("user");
    let mut cfg = ServeConfig::new(store).expect("config");
    cfg.pool_size = 2;
    let (state, _) = app_state(&cfg).expect("state");
    let rt = actix_web::rt::System::new();
    let mut h = Harness {
        _dir: dir,
        rt,
        state,
        token: String::new(),
        key_id: String::new(),
    };
    let (status, body) = h.call(
        0,
        "application/json",
        br#"{"email":"alice@fuzz.example","password":"a long fuzzing password","device_id":"fuzz-device-1"}"#,
    );
    assert_eq!(status, 201, "{body}");
    h.token = body["token"].as_str().expect("token").to_owned();
    let (status, body) = h.call(
        1,
        "application/json",
        br#"{"report_id":"r-seed","recipients":["bob@fuzz.example"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    h.key_id = body["key_id"].as_str().expect("key id").to_owned();
    h
}

impl Harness {
    fn call(&self, endpoint: u8, content_type: &str, body: &[u8]) -> (u16, Value) {
        let (uri, authed) = match endpoint % 4 {
            0 => ("/v1/sessions".to_owned(), false),
            1 => ("/v1/keys".to_owned(), true),
            2 => (format!("/v1/keys/{}/recipients", self.key_id), true),
            _ => ("/v1/keys".to_owned(), false),
        };
        let state = self.state.clone();
        let token = self.token.clone();
        let body = body.to_vec();
        let content_type = content_type.to_owned();
        self.rt.block_on(async move {
            let app = test::init_service(App::new().app_data(state).configure(configure)).await;
            let mut req = test::TestRequest::post().uri(&uri).set_payload(body);
            if !content_type.is_empty() {
                req = req.insert_header(("Content-Type", content_type));
            }
            if authed {
                req = req
                    .insert_header(("Authorization", format!("Bearer {token}")))
                    .insert_header(("X-Device-Id", DEVICE));
            }
            let resp = test::call_service(&app, req.to_request()).await;
            let status = resp.status().as_u16();
            let bytes = test::read_body(resp).await;
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "{status} answered with a body that is not JSON ({e}): {:?}",
                        String::from_utf8_lossy(&bytes)
                    )
                })
            };
            (status, value)
        })
    }
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

const CONTENT_TYPES: [&str; 5] = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    HARNESS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let h = slot.get_or_insert_with(harness);
        let ct = CONTENT_TYPES[data[1] as usize % CONTENT_TYPES.len()];
        let (status, body) = h.call(data[0], ct, &data[2..]);
        assert!(status < 500, "{status}: {body}");
        if status >= 400 {
            assert!(
                body["error"].is_string() && body["message"].is_string(),
                "{status} without an error body: {body}"
            );
        } else if status != 204 {
            assert!(body.is_object(), "{status}: {body}");
        }
    });
});
