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
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut seed = 0x5eed_u64 ^ u64::from(std::process::id());
    let started = Instant::now();
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (base, token, stop, acked) =
                    (ks.base.clone(), token.clone(), stop.clone(), acked.clone());
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
        std::thread::sleep(Duration::from_millis(150 + next(&mut seed) % 450));
        ks.kill(); // SIGKILL, mid-load
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().expect("a worker failed");
        }
        let verify = ks.admin(&["audit", "verify"]);
        assert!(
            verify.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        ks.start();
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "bounded in time"
        );
    }

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
