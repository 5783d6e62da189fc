//! Capture on a phone, in a real headless Chromium whose camera and
//! microphone are Chromium's fake devices (the camera showing a video file
//! made here), with photos chosen in the file input carrying a GPS position
//! and a serial number written by exiftool:
//!
//! - a report with no consent record is refused, as `medseal capture`
//!   refuses it, and nothing is sealed or sent;
//! - a clinician captures (two chosen photos, one from the camera, a voice
//!   note) and sends to a running `medseal endpoint serve`; what arrives
//!   opens with `medseal open --extract`, its manifest validates against
//!   the published schema, its media match their hashes, exiftool finds no
//!   position, device or serial in the photos, and the PDF holds every
//!   photo;
//! - with the page's network cut (DevTools), a report is sealed with a key
//!   taken in advance and waits in IndexedDB, where no stored value holds
//!   the photo's bytes; it is delivered once the network is back;
//! - the same photos through `medseal capture` give a manifest that differs
//!   only in ids and times;
//! - the app is installable, its service worker keeps only the app's
//!   files, and it starts with the key server gone; signing out deletes
//!   the keys kept on the phone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use medseal_e2e::browser::Browser;
use medseal_e2e::reports::{exiftool, schema_errors};
use medseal_e2e::services::Endpoint;
use medseal_e2e::{Backend, Device, KeyServer, free_port, write_file};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PW: &str = "a long clinician password";
const ORG: &str = "St Elsewhere";

/// The `n`th sealed report forwarded to `inbox` (bounded wait).
fn arrived(inbox: &Path, n: usize, endpoint: &Endpoint) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(inbox)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "mseal"))
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        if files.len() >= n {
            return files.swap_remove(n - 1);
        }
        assert!(
            Instant::now() < deadline,
            "report {n} did not arrive: {}",
            endpoint.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A phone photo: the fixture JPEG, then a GPS position, a serial number
/// and a camera maker and model written by exiftool, as a phone does.
fn gps_photo(dir: &Path, name: &str, seed: u16) -> PathBuf {
    tag_like_a_phone(write_file(
        dir,
        name,
        &medseal_capture::fixtures::phone_jpeg(seed),
    ))
}

/// A photo of a few megabytes (noise does not compress), so that the
/// report it goes in spans several of the sealed file's 1 MiB chunks and the
/// browser seals full chunks as well as the last one.
fn large_gps_photo(dir: &Path, name: &str) -> PathBuf {
    let mut state = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(1600, 1200, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [a, b, c, _] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .unwrap();
    assert!(jpeg.len() > 2 << 20, "{} bytes", jpeg.len());
    tag_like_a_phone(write_file(dir, name, &jpeg))
}

/// Writes a GPS position, a serial number and a camera maker and model
/// into the photo at `p`, as a phone does.
fn tag_like_a_phone(p: PathBuf) -> PathBuf {
    let ok = Command::new("exiftool")
        .args([
            "-overwrite_original",
            "-GPSLatitude=51.5072",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=0.1276",
            "-GPSLongitudeRef=W",
            "-SerialNumber=PX-4471-99",
            "-Make=PhoneCo",
            "-Model=Pocket 9",
        ])
        .arg(&p)
        .status()
        .expect("exiftool");
    assert!(ok.success());
    let tags = exiftool(&p);
    assert!(
        tags.contains("GPSLatitude") && tags.contains("PX-4471-99"),
        "{tags}"
    );
    p
}

/// A video file for the fake camera: two 640×480 frames (Y4M, 4:2:0).
fn camera_video(dir: &Path) -> PathBuf {
    let (w, h) = (640usize, 480usize);
    let mut v = format!("YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for f in 0..2u8 {
        v.extend_from_slice(b"FRAME\n");
        v.extend((0..w * h).map(|i| ((i % w) / 3) as u8 ^ f));
        v.extend(std::iter::repeat_n(90u8, w * h / 4));
        v.extend(std::iter::repeat_n(170u8, w * h / 4));
    }
    write_file(dir, "camera.y4m", &v)
}

/// A sound file for the fake microphone: two seconds of a 440 Hz tone
/// (WAV, 16-bit mono, 48 kHz).
fn microphone_sound(dir: &Path) -> PathBuf {
    let rate = 48_000u32;
    let samples: Vec<u8> = (0..rate * 2)
        .flat_map(|i| {
            {
                let t = f64::from(i) / f64::from(rate);
                ((t * 440.0 * std::f64::consts::TAU).sin() * 12_000.0) as i16
            }
            .to_le_bytes()
        })
        .collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes()); // PCM header length
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    w.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    w.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    w.extend_from_slice(&samples);
    write_file(dir, "voice.wav", &w)
}

fn sign_in(b: &Browser, email: &str) {
    b.shown("#signin-form");
    b.fill("Email", email);
    b.fill("Password", PW);
    b.click("Sign in");
}

/// Fills the form as the command line's flags below say.
fn fill_form(b: &Browser) {
    b.fill("Patient identifier", "943 476 5919");
    b.select("Identifier type", "NHS number");
    b.select("How consent was obtained", "Verbal, witnessed");
    b.fill("Witness", "Nurse Jones");
    b.check("Teaching");
    b.fill("Body site", "Left forearm");
    b.fill("Notes", "Wound, day 3");
}

const CLI_FORM: &[&str] = &[
    "--patient-id",
    "943 476 5919",
    "--patient-id-system",
    "https://fhir.nhs.uk/Id/nhs-number",
    "--consent",
    "verbal-witnessed",
    "--witness",
    "Nurse Jones",
    "--consent-scope",
    "care,teaching",
    "--body-site",
    "Left forearm",
    "--note",
    "Wound, day 3",
];

/// Opens `sealed` as `device` (the capturer) into `out`; answers the manifest.
fn extract(device: &Device, sealed: &Path, out: &Path) -> Value {
    device.ok(&[
        "open",
        "--extract",
        out.to_str().unwrap(),
        sealed.to_str().unwrap(),
    ]);
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

/// Every stored value in the app's IndexedDB, as JSON: Blobs as their size
/// and whether their bytes contain `needle` (hex), text as it is.
fn stored(b: &Browser, needle: &str) -> Value {
    b.js_async(
        "const [needle, done] = arguments;
         const want = new Uint8Array(needle.match(/../g).map((h) => parseInt(h, 16)));
         const has = (bytes) => {
           outer: for (let i = 0; i + want.length <= bytes.length; i++) {
             for (let j = 0; j < want.length; j++) if (bytes[i + j] !== want[j]) continue outer;
             return true;
           }
           return false;
         };
         const walk = async (v) => {
           if (v instanceof Blob) {
             const bytes = new Uint8Array(await v.arrayBuffer());
             return { blob: v.size, holds_photo: has(bytes), head: Array.from(bytes.slice(0, 8)) };
           }
           if (Array.isArray(v)) return Promise.all(v.map(walk));
           if (v && typeof v === 'object') {
             const o = {};
             for (const [k, x] of Object.entries(v)) o[k] = await walk(x);
             return o;
           }
           if (typeof v === 'string' && v.includes(btoa(String.fromCharCode(...want.slice(0, 30))))) return 'PHOTO BYTES';
           return v;
         };
         const open = indexedDB.open('medseal-capture');
         open.onsuccess = async () => {
           const db = open.result;
           const out = {};
           for (const name of db.objectStoreNames) {
             const rows = await new Promise((r) => {
               const q = db.transaction(name).objectStore(name).getAll();
               q.onsuccess = () => r(q.result);
             });
             out[name] = await walk(rows);
           }
           db.close();
           done(out);
         };
         open.onerror = () => done(null);",
        vec![json!(needle)],
    )
}

/// Everything but what differs from one capture to the next.
fn comparable(mut m: Value) -> Value {
    for key in ["report_id", "created_at"] {
        m.as_object_mut().unwrap().remove(key);
    }
    m["consent"].as_object_mut().unwrap().remove("recorded_at");
    m
}

#[test]
fn a_clinician_captures_on_a_phone_and_the_report_arrives_sealed_and_clean() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let mut ks = KeyServer::new(Backend::Sqlite);
    ks.org(ORG);
    ks.user(ORG, "alice@st.example", "clinician", PW);
    ks.user(ORG, "endpoint@st.example", "service", "endpoint-password-1");
    // The organisation's receiving endpoint is set before the key server
    // starts, so the app's first page may already post there.
    let port = free_port();
    let endpoint_url = format!("http://127.0.0.1:{port}");
    ks.admin_ok(&["org", "set", "--org", ORG, "--endpoint-url", &endpoint_url]);
    ks.start();
    let inbox = dir.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let config = write_file(
        dir,
        "endpoint.toml",
        format!(
            "[outbox]\nbackoff_initial_seconds = 0.2\nbackoff_max_seconds = 1\n\n\
             [destinations.inbox]\ntype = \"folder\"\npath = \"{}\"\npayload = \"sealed\"\n",
            inbox.display()
        )
        .as_bytes(),
    );
    let allow = ["--allow-origin", ks.base.as_str()];
    let endpoint = Endpoint::start_on(port, &ks, dir, &config, &["inbox"], &allow);
    let alice = Device::new(dir, "alice");
    alice.login(&ks, "alice@st.example", PW);

    let p1 = gps_photo(dir, "IMG_0001.jpg", 1);
    let p2 = large_gps_photo(dir, "IMG_0002.jpg");
    let video = camera_video(dir);
    let sound = microphone_sound(dir);
    let b = Browser::with_flags(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        &format!("--use-file-for-fake-video-capture={}", video.display()),
        &format!("--use-file-for-fake-audio-capture={}", sound.display()),
        "--autoplay-policy=no-user-gesture-required",
    ]);
    b.goto(&format!("{}/app/#/capture", ks.base));
    sign_in(&b, "alice@st.example");
    b.shown("#capture-form");

    // No consent record: refused as the command line refuses it.
    b.fill("Patient identifier", "943 476 5919");
    b.select("Identifier type", "NHS number");
    b.choose_file("Add photos", &p1);
    b.click("Seal report");
    let refusal = b.alert();
    assert!(refusal.contains("needs its consent record"), "{refusal}");
    let cli = alice.medseal(&[
        "capture",
        "--keyserver",
        &ks.base,
        "--recipient",
        "alice@st.example",
        "--patient-id",
        "9434765919",
        "--photo",
        p1.to_str().unwrap(),
        "-o",
        dir.join("refused.mseal").to_str().unwrap(),
    ]);
    assert!(!cli.status.success());
    let said = String::from_utf8_lossy(&cli.stderr);
    assert!(said.contains("needs its consent record"), "{said}");
    assert!(
        std::fs::read_dir(&inbox).unwrap().next().is_none(),
        "nothing sent"
    );

    // With consent, a camera photo and a voice note: sealed and sent.
    fill_form(&b);
    // The input that opens the phone's camera takes a photo as a file.
    b.choose_file("Take a photo", &p2);
    b.click("Use the camera");
    b.until("the camera's picture", |b| {
        (b.js(
            "return document.getElementById('cap-video').videoWidth",
            vec![],
        )
        .as_u64()?
            > 0)
        .then_some(())
    });
    b.click("Take photo");
    b.status_says("Photo taken. 3 in this report.");
    b.click("Close the camera");
    b.click("Record a voice note");
    std::thread::sleep(Duration::from_millis(1500));
    b.click("Stop recording");
    b.status_says("Voice note recorded.");
    shot(&b, "capture-form.png");
    b.click("Seal report");
    b.status_says("was sent to");
    let first = arrived(&inbox, 1, &endpoint);
    let opened = dir.join("first");
    let m = extract(&alice, &first, &opened);
    let errors = schema_errors(&m);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(m["patient"]["identifiers"][0]["value"], "9434765919");
    assert_eq!(m["consent"]["method"], "verbal-witnessed");
    assert_eq!(m["consent"]["witness"], "Nurse Jones");
    assert_eq!(m["consent"]["scope"], json!(["care", "teaching"]));
    assert_eq!(m["capturer"]["email"], "alice@st.example");
    assert_eq!(m["organisation"], ORG);
    let media = m["media"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = media
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["mime_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("photo", "image/jpeg"),
            ("photo", "image/jpeg"),
            ("photo", "image/jpeg"),
            ("audio", "audio/webm")
        ]
    );
    assert_eq!(media[2]["width"], 640, "the camera's frame, whole");
    // The voice note is the microphone's recording, kept as recorded (a
    // WebM file, EBML header first).
    let voice = std::fs::read(opened.join(media[3]["path"].as_str().unwrap())).unwrap();
    assert_eq!(voice[..4], [0x1A, 0x45, 0xDF, 0xA3], "a WebM recording");
    assert!(voice.len() > 1000, "{} bytes of recording", voice.len());
    for e in media {
        let bytes = std::fs::read(opened.join(e["path"].as_str().unwrap())).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), e["sha256"], "{e}");
        assert_eq!(bytes.len() as u64, e["size"].as_u64().unwrap());
        if e["kind"] == "photo" {
            let tags = exiftool(&opened.join(e["path"].as_str().unwrap()));
            for banned in ["GPS", "PX-4471-99", "Serial", "PhoneCo", "Pocket 9"] {
                assert!(!tags.contains(banned), "{banned} survived in {e}: {tags}");
            }
        }
    }
    let images = Command::new("pdfimages")
        .arg("-list")
        .arg(opened.join("report.pdf"))
        .output()
        .expect("pdfimages (poppler-utils)");
    let listed = String::from_utf8_lossy(&images.stdout);
    assert_eq!(
        listed
            .lines()
            .skip(2)
            .filter(|l| l.contains("image"))
            .count(),
        3,
        "one image per photo in the PDF: {listed}"
    );
    let text = Command::new("pdftotext")
        .arg(opened.join("report.pdf"))
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for n in 1..=3 {
        assert!(text.contains(&format!("Photo {n} of 3")), "{text}");
    }

    // Network cut: sealed with a key taken in advance, and kept sealed.
    shot(&b, "capture-sent.png");
    b.click("Capture another report");
    b.shown("#capture-form");
    b.cdp("Network.enable", json!({}));
    b.cdp(
        "Network.emulateNetworkConditions",
        json!({ "offline": true, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 }),
    );
    fill_form(&b);
    b.choose_file("Add photos", &p1);
    b.choose_file("Add photos", &p2);
    b.click("Seal report");
    b.shown("#cap-queue");
    b.until("the report waiting", |b| {
        b.text("#cap-queue-list").contains("2 photos").then_some(())
    });
    // A run of the first photo's picture data, which sanitising keeps.
    let photo = std::fs::read(opened.join("media/photo-1.jpg")).unwrap();
    let needle = &photo[photo.len() / 2..photo.len() / 2 + 48];
    let held = stored(&b, &hex::encode(needle));
    let queue = held["queue"].as_array().expect("the queue store").clone();
    assert_eq!(queue.len(), 1, "{held}");
    assert_eq!(queue[0]["sealed"]["holds_photo"], false, "{held}");
    assert_eq!(
        queue[0]["sealed"]["head"],
        json!(medseal_format::MAGIC.to_vec()),
        "a sealed file"
    );
    assert!(!held.to_string().contains("PHOTO BYTES"), "{held}");
    assert!(
        !held.to_string().contains("9434765919"),
        "no patient data: {held}"
    );
    // The check can fail: the run is in the photo as the phone took it.
    let taken = std::fs::read(&p1).unwrap();
    assert!(taken.windows(needle.len()).any(|w| w == needle));
    assert!(
        std::fs::read_dir(&inbox).unwrap().count() == 1,
        "not sent yet"
    );

    b.cdp(
        "Network.emulateNetworkConditions",
        json!({ "offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 }),
    );
    let second = arrived(&inbox, 2, &endpoint);
    b.until("the queue emptied", |b| {
        (stored(b, "00")["queue"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
    let browser_manifest = extract(&alice, &second, &dir.join("second"));
    assert_eq!(
        browser_manifest["media"][0]["sha256"], m["media"][0]["sha256"],
        "the same photo, the same sanitised bytes"
    );

    // The same photos through the command line: only ids and times differ.
    let mut args = vec![
        "capture",
        "--keyserver",
        &ks.base,
        "--recipient",
        "alice@st.example",
    ];
    args.extend_from_slice(CLI_FORM);
    let (p1s, p2s) = (p1.display().to_string(), p2.display().to_string());
    let cli_out = dir.join("cli.mseal").display().to_string();
    args.extend(["--photo", &p1s, "--photo", &p2s, "-o", &cli_out]);
    alice.ok(&args);
    let cli_manifest = extract(&alice, Path::new(&cli_out), &dir.join("cli"));
    assert_ne!(cli_manifest["report_id"], browser_manifest["report_id"]);
    assert_eq!(comparable(cli_manifest), comparable(browser_manifest));

    // Installable, and its service worker keeps the app's files only.
    let errors = b.cdp("Page.getInstallabilityErrors", json!({}));
    assert_eq!(errors["installabilityErrors"], json!([]), "{errors}");
    let kept = b.js_async(
        "const done = arguments[0];
         (async () => {
           await navigator.serviceWorker.ready;
           const urls = [];
           for (const name of await caches.keys()) {
             for (const r of await (await caches.open(name)).keys()) urls.push(new URL(r.url).pathname);
           }
           return urls;
         })().then(done, (e) => done(String(e)));",
        vec![],
    );
    let kept: Vec<&str> = kept
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(kept.contains(&"/app/medseal_web_bg.wasm"), "{kept:?}");
    assert!(kept.contains(&"/app/medseal_capture_bg.wasm"), "{kept:?}");
    assert!(kept.iter().all(|u| u.starts_with("/app/")), "{kept:?}");

    // With the key server gone, the installed app still starts (a real
    // load, not a move within the page) and shows the capture form.
    ks.kill();
    b.goto(&format!("{}/app/index.html#/capture", ks.base));
    b.shown("#capture-form");
    assert_eq!(b.text("#page-title"), "Capture a report");
    ks.start();

    // Signing out deletes the keys kept for sealing offline.
    b.goto(&format!("{}/app/#/capture", ks.base));
    b.shown("#capture-form");
    b.until("keys kept in advance", |b| {
        (stored(b, "00")["keys"].as_array().map(Vec::len) > Some(0)).then_some(())
    });
    b.click("Sign out");
    b.until("the keys deleted", |b| {
        (stored(b, "00")["keys"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
}

/// Saves a screenshot after checking that nothing makes the page scroll
/// sideways at a phone's 390 px.
fn shot(b: &Browser, name: &str) {
    b.assert_fits_phone(name);
    b.screenshot(&Path::new(env!("CARGO_TARGET_TMPDIR")).join(name));
}
