//! Crash durability of the key server: clients create and fetch keys while
//! the server is killed with SIGKILL at random moments and restarted. Every
//! key creation and fetch that was acknowledged to a client must survive,
//! with its audit event, the audit chain must verify after every restart,
//! and nothing unacknowledged may be half-written (an audited key that
//! cannot be fetched, or a key without its audit event). On SQLite and on a
//! real PostgreSQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use medseal_e2e::{Backend, Client, KeyServer};
use serde_json::{Value, json};

const ROUNDS: u32 = 6;
const WORKERS: usize = 4;
const PASSWORD: &str = "a long clinician password";

#[derive(Default)]
struct Acked {
    /// key id → key material, for every 201.
    keys: HashMap<String, String>,
    /// key id → fetches answered 200.
    fetches: HashMap<String, u32>,
}

fn worker(
    base: String,
    token: String,
    device: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
    tag: String,
) {
    let mut c = Client::new(&base, &device);
    c.token = Some(token);
    let mut n = 0u32;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let report = format!("crash-{tag}-{n}");
        let Ok(r) = c.try_post(
            "/v1/keys",
            &json!({"report_id": report, "recipients": ["bob@st.example"]}),
        ) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        if r.status != 201 {
            // 503 while the store is busy restarting is fine; anything else is not.
            assert!(r.status == 503, "create answered {}: {}", r.status, r.body);
            continue;
        }
        let key_id = r.json["key_id"].as_str().unwrap().to_owned();
        let key = r.json["key"].as_str().unwrap().to_owned();
        acked
            .lock()
            .unwrap()
            .keys
            .insert(key_id.clone(), key.clone());
        if let Ok(f) = c.try_get(&format!("/v1/keys/{key_id}")) {
            assert!(
                f.status == 200 || f.status == 503,
                "fetch answered {}: {}",
                f.status,
                f.body
            );
            if f.status == 200 {
                assert_eq!(
                    f.json["key"].as_str().unwrap(),
                    key,
                    "a fetched key is the created key"
                );
                *acked.lock().unwrap().fetches.entry(key_id).or_default() += 1;
            }
        }
    }
}

/// A small deterministic generator for the kill moments (no extra crate).
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Rounds of load killed mid-way: each round `spawn` starts the load (the
/// workers to join, and a command line run alongside), the server is killed
/// with SIGKILL at a random moment, the load is stopped, `audit verify` must
/// pass on the store, and the server is restarted with `serve_args`.
/// `after` learns whether the round's command line succeeded.
fn killed_rounds(
    ks: &mut KeyServer,
    seed: u64,
    serve_args: &[&str],
    mut spawn: impl FnMut(
        u32,
        Arc<AtomicBool>,
    ) -> (
        Vec<std::thread::JoinHandle<()>>,
        Option<std::process::Child>,
    ),
    mut after: impl FnMut(u32, bool),
) {
    let mut seed = seed ^ u64::from(std::process::id());
    let started = Instant::now();
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let (workers, child) = spawn(round, stop.clone());
        std::thread::sleep(Duration::from_millis(150 + next(&mut seed) % 450));
        ks.kill(); // SIGKILL, mid-load
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().expect("a worker failed");
        }
        if let Some(c) = child {
            let ok = c
                .wait_with_output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            after(round, ok);
        }
        let verify = ks.admin(&["audit", "verify"]);
        assert!(
            verify.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        ks.start_with(serve_args);
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "bounded in time"
        );
    }
}

fn killed_at_random_moments(backend: Backend) {
    let mut ks = KeyServer::new(backend);
    ks.org("St Elsewhere");
    ks.user("St Elsewhere", "alice@st.example", "clinician", PASSWORD);
    ks.user("St Elsewhere", "bob@st.example", "clinician", PASSWORD);
    ks.start();
    let token = ks
        .login("alice@st.example", PASSWORD, "alice-phone")
        .token
        .unwrap();
    let ks_base = ks.base.clone();
    let acked = Arc::new(Mutex::new(Acked::default()));
    killed_rounds(
        &mut ks,
        0x5eed,
        &[],
        |round, stop| {
            let workers = (0..WORKERS)
                .map(|w| {
                    let (base, token, stop, acked) =
                        (ks_base.clone(), token.clone(), stop.clone(), acked.clone());
                    std::thread::spawn(move || {
                        worker(
                            base,
                            token,
                            "alice-phone".into(),
                            stop,
                            acked,
                            format!("{round}-{w}"),
                        )
                    })
                })
                .collect();
            (workers, None)
        },
        |_, _| {},
    );

    let acked = acked.lock().unwrap();
    assert!(
        acked.keys.len() >= 10,
        "the load really ran: {} keys",
        acked.keys.len()
    );
    let bob = ks.login("bob@st.example", PASSWORD, "bob-laptop");
    // Every acknowledged key is there, intact.
    for (id, key) in &acked.keys {
        let r = bob.get(&format!("/v1/keys/{id}"));
        assert_eq!(r.status, 200, "acknowledged key {id} lost: {}", r.body);
        assert_eq!(r.json["key"].as_str().unwrap(), key);
    }
    // Every acknowledged action has its audit event; every audited key
    // exists (nothing half-written).
    let export: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    let events = export["events"].as_array().unwrap();
    let mut created: HashMap<String, u32> = HashMap::new();
    let mut fetched: HashMap<String, u32> = HashMap::new();
    for e in events {
        let Some(id) = e["key_id"].as_str() else {
            continue;
        };
        if e["outcome"] != "success" && e["outcome"] != "allowed" {
            continue;
        }
        match e["action"].as_str().unwrap() {
            "key.created" => *created.entry(id.to_owned()).or_default() += 1,
            "key.fetched" => *fetched.entry(id.to_owned()).or_default() += 1,
            _ => {}
        }
    }
    for id in acked.keys.keys() {
        assert_eq!(created.get(id), Some(&1), "key {id}: one key.created event");
    }
    for (id, n) in &acked.fetches {
        // Bob's verification fetch above adds one.
        assert!(
            fetched.get(id).copied().unwrap_or(0) > *n,
            "key {id}: {n} acknowledged fetches, fewer audited"
        );
    }
    for id in created.keys() {
        let r = bob.get(&format!("/v1/keys/{id}"));
        assert_eq!(
            r.status, 200,
            "key {id} was audited as created but is not complete: {}",
            r.body
        );
    }
    let verify = ks.admin(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn sqlite_keeps_every_acknowledged_key_and_event_across_sigkill() {
    killed_at_random_moments(Backend::Sqlite);
}

#[test]
fn postgres_keeps_every_acknowledged_key_and_event_across_sigkill() {
    killed_at_random_moments(Backend::Postgres);
}

/// What was acknowledged under the mixed load.
#[derive(Default)]
struct Changes {
    revoked: Vec<String>,
    /// (key id, recipient) pairs answered 204.
    added: Vec<(String, String)>,
    /// Accounts whose `user disable` exited 0.
    disabled: Vec<String>,
    logins: u32,
}

/// One client's loop: create, sometimes add a recipient, sometimes revoke;
/// log in and out; fail a password now and then.
fn mutator(
    base: String,
    token: String,
    stop: Arc<AtomicBool>,
    changes: Arc<Mutex<Changes>>,
    tag: String,
) {
    let mut c = Client::new(&base, "alice-phone");
    c.token = Some(token);
    let mut n = 0u32;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let Ok(r) = c.try_post(
            "/v1/keys",
            &json!({"report_id": format!("mix-{tag}-{n}"), "recipients": ["bob@st.example"]}),
        ) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        if r.status != 201 {
            assert!(r.status == 503, "create answered {}: {}", r.status, r.body);
            continue;
        }
        let id = r.json["key_id"].as_str().unwrap().to_owned();
        if n.is_multiple_of(2) {
            let who = format!("guest{n}@other.example");
            if let Ok(a) = c.try_post(
                &format!("/v1/keys/{id}/recipients"),
                &json!({"recipients": [who]}),
            ) {
                assert!(a.status == 204 || a.status == 503, "{}", a.body);
                if a.status == 204 {
                    changes.lock().unwrap().added.push((id.clone(), who));
                }
            }
        }
        if n.is_multiple_of(3)
            && let Ok(v) = c.try_post(&format!("/v1/keys/{id}/revoke"), &json!({}))
        {
            assert!(v.status == 204 || v.status == 503, "{}", v.body);
            if v.status == 204 {
                changes.lock().unwrap().revoked.push(id);
            }
        }
        // A login with a wrong password (counts towards lockout), a good
        // one, and its logout.
        let mut s = Client::new(&base, &format!("bob-{tag}"));
        let password = if n.is_multiple_of(4) {
            "wrong password"
        } else {
            PASSWORD
        };
        if let Ok(l) = s.try_post(
            "/v1/sessions",
            &json!({"email": "bob@st.example", "password": password, "device_id": format!("bob-{tag}")}),
        ) && l.status == 201
        {
            changes.lock().unwrap().logins += 1;
            s.token = l.json["token"].as_str().map(str::to_owned);
            let _ = s.try_delete("/v1/sessions/current");
        }
    }
}

/// Under concurrent creates, revocations, recipient additions, logins,
/// logouts and `user disable` from the admin command line, the server is
/// killed with SIGKILL at random moments. After every restart `audit
/// verify` replays the log against the store — every state change has its
/// event and every event its change — and every acknowledged change is
/// there.
fn every_change_has_its_event_across_sigkill(backend: Backend) {
    let mut ks = KeyServer::new(backend);
    ks.org("St Elsewhere");
    ks.user("St Elsewhere", "alice@st.example", "clinician", PASSWORD);
    ks.user("St Elsewhere", "bob@st.example", "clinician", PASSWORD);
    const STAFF: usize = 12;
    for i in 0..STAFF {
        ks.user(
            "St Elsewhere",
            &format!("locum{i}@st.example"),
            "clinician",
            PASSWORD,
        );
    }
    // Every worker logs in from the one loopback address.
    ks.start_with(&["--logins-per-minute", "100000"]);
    let token = ks
        .login("alice@st.example", PASSWORD, "alice-phone")
        .token
        .unwrap();
    let changes = Arc::new(Mutex::new(Changes::default()));
    let (base, store_args) = (ks.base.clone(), ks.store_args());
    let locum = |round: u32| format!("locum{}@st.example", round as usize % STAFF);
    let disabled = changes.clone();
    killed_rounds(
        &mut ks,
        0x0a7,
        &["--logins-per-minute", "100000"],
        |round, stop| {
            let workers = (0..WORKERS)
                .map(|w| {
                    let (base, token, stop, changes) =
                        (base.clone(), token.clone(), stop.clone(), changes.clone());
                    std::thread::spawn(move || {
                        mutator(base, token, stop, changes, format!("{round}-{w}"))
                    })
                })
                .collect();
            // The admin command line changes users meanwhile, through the
            // same store.
            let admin = std::process::Command::new(medseal_e2e::medseal_bin())
                .args(["keyserver", "user", "disable", "--email", &locum(round)])
                .args(&store_args)
                .env_remove("MEDSEAL_KEYRING")
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (workers, Some(admin))
        },
        |round, ok| {
            if ok {
                disabled.lock().unwrap().disabled.push(locum(round));
            }
        },
    );
    let changes = changes.lock().unwrap();
    assert!(
        changes.revoked.len() >= 3 && changes.added.len() >= 3 && changes.logins >= 3,
        "the load really ran: {} revoked, {} added, {} logins",
        changes.revoked.len(),
        changes.added.len(),
        changes.logins
    );
    let alice = ks.login("alice@st.example", PASSWORD, "alice-phone");
    for id in &changes.revoked {
        let r = alice.get(&format!("/v1/keys/{id}"));
        assert_eq!(
            r.status, 410,
            "acknowledged revocation of {id} lost: {}",
            r.body
        );
    }
    let export: Value =
        serde_json::from_str(&ks.admin_ok(&["audit", "export", "--format", "json"])).unwrap();
    let events = export["events"].as_array().unwrap();
    let has = |action: &str, key: Option<&str>, detail: &str| {
        events.iter().any(|e| {
            e["action"] == action
                && e["outcome"] == "success"
                && key.is_none_or(|k| e["key_id"] == k)
                && e["detail"].as_str().unwrap_or("").contains(detail)
        })
    };
    for (id, who) in &changes.added {
        assert!(has("key.recipients_added", Some(id), who), "{id}: {who}");
    }
    for who in &changes.disabled {
        assert!(has("user.disabled", None, who), "{who}");
        let c = Client::new(&ks.base, "x");
        let r = c.post(
            "/v1/sessions",
            &json!({"email": who, "password": PASSWORD, "device_id": "x"}),
        );
        assert_eq!(r.status, 401, "{who} is still enabled: {}", r.body);
    }
    let mut revocations: HashMap<&str, u32> = HashMap::new();
    for e in events.iter().filter(|e| e["action"] == "key.revoked") {
        *revocations
            .entry(e["key_id"].as_str().unwrap())
            .or_default() += 1;
    }
    assert!(
        revocations.values().all(|n| *n == 1),
        "one event per revocation"
    );
}

#[test]
fn sqlite_every_change_has_its_event_across_sigkill() {
    every_change_has_its_event_across_sigkill(Backend::Sqlite);
}

#[test]
fn postgres_every_change_has_its_event_across_sigkill() {
    every_change_has_its_event_across_sigkill(Backend::Postgres);
}
