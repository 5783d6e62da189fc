//! Time-dependent rules with an injected clock, in process, without a
//! single wall-clock wait: a key expires, an idle session ends, a lock
//! lifts — each exactly when the clock says, and each refusal or change
//! still committed with its audit event.

use std::sync::Arc;

use actix_web::{App, test, web};
use medseal_keyserver::admin::Admin;
use medseal_keyserver::http::{AppState, configure};
use medseal_keyserver::server::{ServeConfig, app_state};
use medseal_keyserver::time::{Clock, ManualClock, rfc3339};
use medseal_keyserver::{Role, Store};
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;
const START: i64 = 1_893_456_000_000; // 2030-01-01T00:00:00Z

struct Server {
    _dir: tempfile::TempDir,
    state: web::Data<AppState>,
    clock: Arc<ManualClock>,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::resolve(Some(dir.path().join("data")), None, None).unwrap();
        let mut admin = Admin::open(store.clone()).unwrap();
        admin.add_org("St Elsewhere").unwrap();
        for who in ["alice", "bob"] {
            admin
                .add_user(
                    "St Elsewhere",
                    &format!("{who}@st.example"),
                    Role::Clinician,
                    b"a long enough password",
                )
                .unwrap();
        }
        let clock = Arc::new(ManualClock::at(START));
        let mut cfg = ServeConfig::new(store).unwrap();
        cfg.pool_size = 2;
        cfg.clock = clock.clone();
        let (state, _) = app_state(&cfg).unwrap();
        Server {
            _dir: dir,
            state,
            clock,
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let app =
            test::init_service(App::new().app_data(self.state.clone()).configure(configure)).await;
        let mut req = match method {
            "POST" => test::TestRequest::post().set_json(body),
            "DELETE" => test::TestRequest::delete(),
            _ => test::TestRequest::get(),
        }
        .uri(uri)
        .insert_header(("X-Device-Id", "phone"));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let resp = test::call_service(&app, req.to_request()).await;
        let status = resp.status().as_u16();
        let bytes = test::read_body(resp).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn login(&self, who: &str, password: &str) -> (u16, Value) {
        self.call(
            "POST",
            "/v1/sessions",
            None,
            json!({"email": format!("{who}@st.example"), "password": password, "device_id": "phone"}),
        )
        .await
    }

    /// The status of `GET /v1/sessions/current` with `token`.
    async fn whoami(&self, token: &str) -> u16 {
        self.call("GET", "/v1/sessions/current", Some(token), Value::Null)
            .await
            .0
    }

    async fn token(&self, who: &str) -> String {
        let (status, body) = self.login(who, "a long enough password").await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }
}

#[actix_web::test]
async fn a_key_expires_when_the_clock_says() {
    let s = Server::new();
    let alice = s.token("alice").await;
    let expires = rfc3339(START + 60 * MINUTE);
    let (status, created) = s
        .call(
            "POST",
            "/v1/keys",
            Some(&alice),
            json!({"report_id": "r1", "recipients": ["bob@st.example"], "expires_at": expires}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/v1/keys/{}", created["key_id"].as_str().unwrap());
    s.clock.advance(59 * MINUTE);
    let bob = s.token("bob").await;
    assert_eq!(s.call("GET", &path, Some(&bob), Value::Null).await.0, 200);
    s.clock.advance(MINUTE);
    let (status, body) = s.call("GET", &path, Some(&bob), Value::Null).await;
    assert_eq!(status, 410, "{body}");
    assert!(body["message"].as_str().unwrap().contains("expired"));
}

#[actix_web::test]
async fn an_idle_session_ends_and_a_lock_lifts_on_time() {
    let s = Server::new();
    let alice = s.token("alice").await;
    assert_eq!(s.whoami(&alice).await, 200);
    s.clock.advance(29 * MINUTE);
    assert_eq!(s.whoami(&alice).await, 200);
    // Used a minute ago: the idle timeout counts from then.
    s.clock.advance(29 * MINUTE);
    assert_eq!(s.whoami(&alice).await, 200);
    s.clock.advance(31 * MINUTE);
    assert_eq!(s.whoami(&alice).await, 401);

    for _ in 0..5 {
        assert_eq!(s.login("bob", "not the password").await.0, 401);
    }
    let (status, body) = s.login("bob", "a long enough password").await;
    assert_eq!(status, 429, "locked: {body}");
    s.clock.advance(14 * MINUTE);
    assert_eq!(s.login("bob", "a long enough password").await.0, 429);
    s.clock.advance(2 * MINUTE);
    assert_eq!(s.login("bob", "a long enough password").await.0, 201);
    assert!(s.clock.now_ms() > START);
}
