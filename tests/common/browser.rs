//! Headless Chromium driven over the DevTools protocol (CDP), for tests that need to read
//! values from a page: `Browser::open(url)` starts Debian's `chromium` (or `$CHROMIUM`) on a
//! fresh profile and opens one tab; `Page::eval_json(expr)` evaluates JavaScript in it and
//! returns the value as JSON; `Page::wait_until(expr, timeout)` polls an expression until it
//! is truthy. The page's console errors, uncaught exceptions and browser log errors (CSP
//! violations, failed loads) are collected in `Page::console_errors`.
//!
//! A minimal CDP client over `tungstenite` (synchronous) and `serde_json` rather than the
//! `headless_chrome` crate: that crate's build script downloads the protocol description
//! from the internet (`auto_generate_cdp`), so it does not build offline even with its
//! browser download (`fetch`) switched off — checked with headless_chrome 1.0.22. Four CDP
//! methods are all the tests need (`Target.createTarget`, `Target.attachToTarget`,
//! `Runtime.evaluate`, `Page.navigate`).
//!
//! Bounded: every wait has a deadline (the socket has a read timeout, each call a limit);
//! the browser runs in its own process group, killed on drop with its renderers, and its
//! temporary profile directory is removed on drop.

use std::fs;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// Time for Chromium to start and write its DevTools port.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Time for one CDP call to be answered.
const CALL_LIMIT: Duration = Duration::from_secs(20);
/// How long a blocking socket read waits before the deadline is checked again.
const READ_SLICE: Duration = Duration::from_millis(100);

/// The browser binary: `$CHROMIUM`, else Debian's `chromium`.
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// A headless Chromium process with its own temporary profile; killed (with the renderers
/// it started) and the profile removed on drop.
pub struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts Chromium and opens `url` in a tab; panics (the test fails) with Chromium's
    /// output if it does not start within 30 s.
    ///
    /// Flags: `--headless=new` (the real browser, with its media stack, not the old
    /// headless shell), `--autoplay-policy=no-user-gesture-required` so `video.play()`
    /// works without a click, `--mute-audio` (audio is still decoded: the playback test
    /// asserts `webkitAudioDecodedByteCount` grows), and the timer and renderer throttling a
    /// hidden headless tab would get switched off, so playback runs at real time.
    pub fn open(url: &str) -> Page {
        let browser = Browser::launch();
        let mut page = browser.new_page();
        page.navigate(url);
        page
    }

    fn launch() -> Browser {
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let profile = std::env::temp_dir().join(format!(
            "shardcast-browser-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&profile);
        fs::create_dir_all(&profile).expect("create the browser profile directory");
        let log = fs::File::create(profile.join("chromium.log")).expect("create chromium.log");
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--autoplay-policy=no-user-gesture-required",
            "--mute-audio",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--disable-renderer-backgrounding",
            "--remote-debugging-port=0",
            "--window-size=1280,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        // Its own process group, so drop can kill the renderers and helpers too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", chromium()));
        Browser { child, profile }
    }

    /// The DevTools WebSocket URL Chromium wrote to `DevToolsActivePort` (port on the first
    /// line, browser target path on the second).
    fn devtools_url(&mut self) -> String {
        let file = self.profile.join("DevToolsActivePort");
        let end = Instant::now() + START_LIMIT;
        loop {
            if let Ok(text) = fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    return format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chromium exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < end,
                "chromium wrote no DevToolsActivePort within {START_LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The tail of Chromium's own output, for failure messages.
    fn log(&self) -> String {
        let text = fs::read_to_string(self.profile.join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn new_page(mut self) -> Page {
        let url = self.devtools_url();
        let addr = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("host:port in the DevTools URL")
            .to_owned();
        let stream = TcpStream::connect(&addr).expect("connect to DevTools");
        // The handshake with a whole call's limit (a read timeout in the middle of it would
        // end it), then short reads so calls can check their deadlines.
        stream
            .set_read_timeout(Some(CALL_LIMIT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(CALL_LIMIT))
            .expect("write timeout");
        let (ws, _) = tungstenite::client(url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools handshake with {url}: {e}"));
        ws.get_ref()
            .set_read_timeout(Some(READ_SLICE))
            .expect("read timeout");
        let mut page = Page {
            ws,
            session: None,
            next_id: 1,
            console: Vec::new(),
            browser: self,
        };
        let target = page.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"]
            .as_str()
            .expect("targetId from Target.createTarget")
            .to_owned();
        let attached = page.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        page.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId from Target.attachToTarget")
                .to_owned(),
        );
        page.call("Runtime.enable", json!({}));
        page.call("Log.enable", json!({}));
        page.call("Page.enable", json!({}));
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser and the renderer, GPU and utility processes it started.
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_profile(&self.profile);
    }
}

/// Removes the profile; the renderers killed with the browser may still be closing files
/// in it for a moment.
fn remove_profile(profile: &Path) {
    let end = Instant::now() + Duration::from_secs(5);
    while fs::remove_dir_all(profile).is_err() && profile.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One tab of a [`Browser`], attached over CDP; owns the browser, so dropping the page
/// ends it.
pub struct Page {
    ws: WebSocket<TcpStream>,
    session: Option<String>,
    next_id: u64,
    console: Vec<String>,
    // Last: the socket closes before the browser is killed.
    browser: Browser,
}

impl Page {
    /// Loads `url` in the tab (returns once the navigation is committed; the page's scripts
    /// may still be running, so wait for what a test needs with [`Page::wait_until`]).
    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            panic!("navigating to {url}: {e}");
        }
    }

    /// Emulates a `width`×`height` CSS-pixel screen (a phone: 375×740), as devtools' device
    /// mode does; media queries and `innerWidth` follow.
    pub fn set_viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 2, "mobile": true }),
        );
    }

    /// The value of the JavaScript expression `expr` (a promise is awaited), as JSON
    /// (`undefined` is `null`); panics on an exception in the page.
    pub fn eval_json(&mut self, expr: &str) -> Value {
        self.try_eval_json(expr)
            .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
    }

    /// The value of `expr`, or the exception it threw.
    pub fn try_eval_json(&mut self, expr: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            let what = ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["text"].as_str())
                .unwrap_or("exception");
            return Err(what.to_owned());
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Evaluates `expr` every 100 ms until it is truthy (not `null`, `false`, `0` or `""`;
    /// an exception counts as not yet) and returns that value; panics after `limit` with
    /// the last value and the console errors.
    pub fn wait_until(&mut self, expr: &str, limit: Duration) -> Value {
        let end = Instant::now() + limit;
        loop {
            let v = self.try_eval_json(expr);
            if let Ok(value) = &v {
                if truthy(value) {
                    return value.clone();
                }
            }
            if Instant::now() >= end {
                panic!(
                    "{expr} did not hold within {limit:?}; last: {v:?}\nconsole errors: {:#?}",
                    self.console
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Console errors, uncaught exceptions and browser log errors seen so far (events are
    /// read while calls wait for their answers).
    pub fn console_errors(&self) -> &[String] {
        &self.console
    }

    /// Chromium's own output (stderr), last lines.
    pub fn browser_log(&self) -> String {
        self.browser.log()
    }

    /// Sends a CDP command to the tab (or the browser before attaching) and waits for its
    /// answer, collecting events meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .unwrap_or_else(|e| panic!("sending {method}: {e}"));
        let end = Instant::now() + CALL_LIMIT;
        loop {
            let frame = match self.ws.read() {
                Ok(f) => f,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    assert!(
                        Instant::now() < end,
                        "no answer to {method} within {CALL_LIMIT:?}\n{}",
                        self.browser.log()
                    );
                    continue;
                }
                Err(e) => panic!("DevTools connection: {e}\n{}", self.browser.log()),
            };
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("CDP sent non-JSON ({e}): {text}"));
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method} failed: {err}");
                }
                return v["result"].clone();
            }
            self.event(&v);
        }
    }

    /// Keeps what a test may want to see of an event: errors, in the page's words.
    fn event(&mut self, v: &Value) {
        let p = &v["params"];
        match v["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x.get("value")
                                    .map(|v| {
                                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                                    })
                                    .or_else(|| x["description"].as_str().map(str::to_owned))
                                    .unwrap_or_default()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.console
                    .push(format!("console.error: {}", args.join(" ")));
            }
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                let what = d["exception"]["description"]
                    .as_str()
                    .or_else(|| d["text"].as_str())
                    .unwrap_or("exception");
                self.console.push(format!("exception: {what}"));
            }
            Some("Log.entryAdded") if p["entry"]["level"].as_str() == Some("error") => {
                let e = &p["entry"];
                self.console.push(format!(
                    "{}: {} {}",
                    e["source"].as_str().unwrap_or("log"),
                    e["text"].as_str().unwrap_or(""),
                    e["url"].as_str().unwrap_or("")
                ));
            }
            _ => {}
        }
    }
}

/// JavaScript truthiness of a JSON value (objects and arrays are truthy).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0 && !x.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
