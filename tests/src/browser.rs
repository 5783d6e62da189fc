//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, through `fantoccini`), for the web app's tests.
//!
//! One `chromedriver` per test process; each [`Browser`] is a fresh session
//! (its own profile: its own cookies and device id, as another person's
//! browser would have). Browser tests take a process-wide lock so that only
//! one Chromium runs at a time on a small machine. The window is a phone's:
//! 390 px wide.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};

struct Driver {
    port: u16,
    _child: Child,
}

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is not installed (apt-get install chromium chromium-driver)")
}

fn driver() -> &'static Driver {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let port = crate::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed (apt-get install chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            port,
            _child: child,
        }
    })
}

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One browser session.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    /// Where the browser saves downloads.
    pub downloads: tempfile::TempDir,
    _turn: Option<MutexGuard<'static, ()>>,
}

/// How long a step may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

impl Browser {
    /// A new headless Chromium with a phone-sized window.
    pub fn new() -> Browser {
        Browser::start(Some(one_at_a_time()), &[])
    }

    /// A new one with Chromium's `flags` besides the usual ones (fake media
    /// devices, for capture).
    pub fn with_flags(flags: &[&str]) -> Browser {
        Browser::start(Some(one_at_a_time()), flags)
    }

    /// A second browser (another person's) for the same test, open at the
    /// same time as this one, whose turn it shares.
    pub fn alongside(&self) -> Browser {
        Browser::start(None, &[])
    }

    fn start(turn: Option<MutexGuard<'static, ()>>, flags: &[&str]) -> Browser {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let downloads = tempfile::tempdir().expect("temp dir");
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=390,844",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--mute-audio",
        ];
        args.extend_from_slice(flags);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": args,
                // A desktop window cannot be narrower than 500 px: the
                // phone's screen is emulated, 390 CSS px wide.
                "mobileEmulation": {
                    "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 1.0 }
                },
                "prefs": {
                    "download.default_directory": downloads.path().display().to_string(),
                    "download.prompt_for_download": false,
                    "profile.default_content_setting_values.automatic_downloads": 1
                }
            }),
        );
        let url = format!("http://127.0.0.1:{}", driver().port);
        let client = rt
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url),
            )
            .expect("start a Chromium session");
        Browser {
            rt,
            client: Some(client),
            downloads,
            _turn: turn,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("browser session")
    }

    /// Loads `url`.
    pub fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).expect("navigate");
    }

    /// Panics unless the page fits a phone's 390-px screen: nothing makes
    /// it scroll sideways (`what` names the screen in the message).
    pub fn assert_fits_phone(&self, what: &str) {
        let fits = self.js(
            "const w = window.innerWidth;
             const wide = Array.from(document.querySelectorAll('body *'))
               .filter((e) => e.getBoundingClientRect().right > w + 1)
               .map((e) => e.tagName + '#' + e.id + '.' + e.className);
             return [document.documentElement.scrollWidth, w, wide.slice(0, 8)];",
            vec![],
        );
        assert_eq!(fits[1], 390, "a phone's width");
        assert!(
            fits[0].as_i64() <= fits[1].as_i64(),
            "{what}: the page is wider than the phone's screen ({fits})"
        );
    }

    /// Runs a DevTools protocol command in the page (e.g. cutting its
    /// network with `Network.emulateNetworkConditions`); answers its result.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.rt
            .block_on(
                self.c()
                    .issue_cmd(Cdp(json!({ "cmd": cmd, "params": params }))),
            )
            .unwrap_or_else(|e| panic!("DevTools {cmd}: {e}"))
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.c().execute(script, args))
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Runs `script`, which ends by calling `arguments[arguments.length-1]`
    /// with its answer.
    pub fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.c().execute_async(script, args))
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Waits until `f` answers `Some`, or fails the test saying `what`.
    pub fn until<T>(&self, what: &str, mut f: impl FnMut(&Browser) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page text: {}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn visible(&self, locator: Locator<'_>) -> Vec<Element> {
        let c = self.c();
        self.rt.block_on(async {
            let mut out = Vec::new();
            for e in c.find_all(locator).await.unwrap_or_default() {
                if e.is_displayed().await.unwrap_or(false) {
                    out.push(e);
                }
            }
            out
        })
    }

    /// The visible form control whose visible label reads `label`.
    pub fn field(&self, label: &str) -> Element {
        self.until(&format!("a field labelled {label:?}"), |b| {
            let labels = b.visible(Locator::XPath(&format!(
                "//label[normalize-space()={}]",
                xpath_literal(label)
            )));
            labels.into_iter().find_map(|l| {
                let id = b.rt.block_on(l.attr("for")).ok().flatten()?;
                let input = b.rt.block_on(b.c().find(Locator::Id(&id))).ok()?;
                // A file input may be styled away; anything else must show.
                let shown = b.rt.block_on(input.is_displayed()).unwrap_or(false);
                let file =
                    b.rt.block_on(input.attr("type")).ok().flatten().as_deref() == Some("file");
                (shown || file).then_some(input)
            })
        })
    }

    /// Types `value` into the field labelled `label`.
    pub fn fill(&self, label: &str, value: &str) {
        let f = self.field(label);
        self.rt.block_on(f.clear()).expect("clear");
        self.rt.block_on(f.send_keys(value)).expect("type");
    }

    /// Chooses the option reading `option` in the list labelled `label`.
    pub fn select(&self, label: &str, option: &str) {
        let f = self.field(label);
        let o = self
            .rt
            .block_on(f.find(Locator::XPath(&format!(
                ".//option[normalize-space()={}]",
                xpath_literal(option)
            ))))
            .unwrap_or_else(|e| panic!("no option {option:?} in {label:?}: {e}"));
        self.rt.block_on(o.click()).expect("choose an option");
    }

    /// Chooses the option reading `option` in the list whose accessible
    /// name (`aria-label`) is `name`, as in a table row.
    pub fn select_named(&self, name: &str, option: &str) {
        let lit = xpath_literal(name);
        let list = self.until(&format!("a list named {name:?}"), |b| {
            b.visible(Locator::XPath(&format!("//select[@aria-label={lit}]")))
                .into_iter()
                .next()
        });
        let o = self
            .rt
            .block_on(list.find(Locator::XPath(&format!(
                ".//option[normalize-space()={}]",
                xpath_literal(option)
            ))))
            .unwrap_or_else(|e| panic!("no option {option:?} in {name:?}: {e}"));
        self.rt.block_on(o.click()).expect("choose an option");
    }

    /// Ticks the check box or radio button whose label reads `label`.
    pub fn check(&self, label: &str) {
        let l = self.until(&format!("a choice labelled {label:?}"), |b| {
            b.visible(Locator::XPath(&format!(
                "//label[normalize-space()={}]",
                xpath_literal(label)
            )))
            .into_iter()
            .next()
        });
        self.tap(&l);
    }

    /// Chooses `path` in the file input labelled `label`.
    pub fn choose_file(&self, label: &str, path: &Path) {
        let f = self.field(label);
        self.rt
            .block_on(f.send_keys(&path.display().to_string()))
            .expect("choose a file");
    }

    /// Clicks the visible button (or link styled as one) named `name`.
    pub fn click(&self, name: &str) {
        let lit = xpath_literal(name);
        let b = self.until(&format!("a button {name:?}"), |b| {
            b.visible(Locator::XPath(&format!(
                "//button[normalize-space()={lit}] | //a[normalize-space()={lit}]"
            )))
            .into_iter()
            .next()
        });
        self.tap(&b);
    }

    fn tap(&self, e: &Element) {
        self.rt.block_on(e.clone().click()).expect("click");
    }

    /// Clicks the button named `name` in the table row that has a cell
    /// reading `cell` (e.g. "Disable" in a user's row).
    pub fn click_in_row(&self, cell: &str, name: &str) {
        let (cell, name) = (xpath_literal(cell), xpath_literal(name));
        let b = self.until(&format!("a button {name} in the row of {cell}"), |b| {
            b.visible(Locator::XPath(&format!(
                "//tr[td[normalize-space()={cell}]]//button[normalize-space()={name}]"
            )))
            .into_iter()
            .next()
        });
        self.tap(&b);
    }

    /// Waits until the page's status line (`#progress`) contains `text`.
    pub fn status_says(&self, text: &str) -> String {
        self.until(&format!("the status to say {text:?}"), |b| {
            let t = b.text("#progress");
            t.contains(text).then_some(t)
        })
    }

    /// The text of the first element matching `css` (empty if none).
    pub fn text(&self, css: &str) -> String {
        let c = self.c();
        self.rt.block_on(async {
            match c.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        })
    }

    /// Waits for the page's error summary (role `alert`) and answers its
    /// text.
    pub fn alert(&self) -> String {
        self.until("an error (role alert)", |b| {
            b.visible(Locator::Css("[role=alert]"))
                .into_iter()
                .next()
                .map(|e| b.rt.block_on(e.text()).unwrap_or_default())
                .filter(|t| !t.trim().is_empty())
        })
    }

    /// Waits until an element matching `css` is shown.
    pub fn shown(&self, css: &str) -> Element {
        self.until(&format!("{css} to show"), |b| {
            b.visible(Locator::Css(css)).into_iter().next()
        })
    }

    /// Whether an element matching `css` is shown now.
    pub fn is_shown(&self, css: &str) -> bool {
        !self.visible(Locator::Css(css)).is_empty()
    }

    /// A PNG screenshot of the page.
    pub fn screenshot(&self, to: &Path) {
        let png = self.rt.block_on(self.c().screenshot()).expect("screenshot");
        std::fs::write(to, png).expect("write screenshot");
    }

    /// Waits for the browser to have saved a file named `name`; answers
    /// its bytes.
    pub fn saved(&self, name: &str) -> Vec<u8> {
        let path = self.downloads.path().join(name);
        self.until(&format!("{name} to be saved"), |_| {
            std::fs::read(&path).ok().filter(|b| !b.is_empty())
        })
    }

    /// Files the browser has saved so far.
    pub fn downloaded(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.downloads.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_none_or(|e| e != "crdownload"));
        v.sort();
        v
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
    }
}

fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

/// A DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp(Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}
