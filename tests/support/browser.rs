//! Headless Chromium for browser tests, driven over WebDriver (fantoccini).
//!
//! - One chromedriver per test binary, started on first use ([`Browser::shared`]) on a
//!   loopback port it picks itself (`--port=0`; the port is read from the line it
//!   prints), ready once its `/status` answers `"ready": true`.
//! - Each [`Browser::session`] is a new Chromium with its own empty profile
//!   (`--user-data-dir`), so tests never share cookies or storage; tests run in
//!   parallel against the one chromedriver. A test ends its session with
//!   `client.close().await`.
//! - Clean-up: chromedriver leads its own process group, and so do the Chromiums it
//!   starts (they stay in that group). A tiny `bash` watchdog, in a group of its own,
//!   reads a pipe whose write end only this test process holds. When the process ends,
//!   however it ends (tests done, a panic, Ctrl-C, SIGKILL), the pipe closes and the
//!   watchdog kills the whole chromedriver group (TERM, then KILL after 5 s) and deletes
//!   this run's temporary folder (profiles, HOME and XDG folders of the browsers).
//!   Nothing is left running after `cargo test`, not even for a session a panicking
//!   test did not close.
//! - `CHROMIUM` and `CHROMEDRIVER` (set by the Makefile) choose the binaries; they
//!   default to Debian's `/usr/bin/chromium` and `/usr/bin/chromedriver`
//!   (`make browser-deps` installs them).

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Chromium's flags for this machine (root, no display, a network closed to all but
/// loopback: without the background-networking flags it keeps dialling out).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// The watchdog (bash, not dash: dash's `kill` takes no process group). `$0`: the
/// chromedriver group, `$1`: the run's folder. Once stdin closes (this process has
/// ended): TERM to the group, up to 5 s for its members to end (zombies left for init
/// to reap do not count), KILL to any left, then the folder goes.
const WATCHDOG: &str = r#"
cat >/dev/null
g=$0 dir=$1
alive() {
  local stat rest
  for stat in /proc/[0-9]*/stat; do
    read -r rest < "$stat" 2>/dev/null || continue
    rest=${rest##*) }
    set -- $rest
    [ "$1" != Z ] && [ "$3" = "$g" ] && return 0
  done
  return 1
}
kill -TERM -- "-$g" 2>/dev/null
for _ in $(seq 50); do alive || break; sleep 0.1; done
kill -KILL -- "-$g" 2>/dev/null
rm -rf -- "$dir"
"#;

/// How long chromedriver may take to print its port and answer `/status`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// The chromedriver of this test binary.
pub struct Browser {
    webdriver_url: String,
    chromium: PathBuf,
    /// Profiles and the browsers' HOME; the watchdog deletes it at exit.
    run_dir: PathBuf,
}

/// The started chromedriver, or why it could not start (said to every caller, at once).
static SHARED: OnceLock<Result<Browser, String>> = OnceLock::new();
/// Never dropped: chromedriver's handle and the watchdog's (its stdin is the pipe
/// whose closing at process exit triggers the clean-up).
static PROCESSES: Mutex<Vec<Child>> = Mutex::new(Vec::new());

impl Browser {
    /// The chromedriver of this test binary, started by the first caller.
    /// Panics, saying what to install, when Chromium or chromedriver is missing.
    pub fn shared() -> &'static Browser {
        let started = SHARED.get_or_init(|| {
            std::panic::catch_unwind(start).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "chromedriver did not start".to_string())
            })
        });
        match started {
            Ok(browser) => browser,
            Err(why) => panic!("{why}"),
        }
    }

    /// A new headless Chromium with an empty profile of its own. End it with
    /// `client.close().await` (what a panicking test leaves open is killed at exit).
    pub async fn session() -> Client {
        // The first call starts chromedriver (blocking, bounded): not on the runtime.
        let browser = tokio::task::spawn_blocking(Browser::shared)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        browser.new_session().await
    }

    /// Where chromedriver listens, `http://127.0.0.1:PORT`.
    pub fn webdriver_url(&self) -> &str {
        &self.webdriver_url
    }

    async fn new_session(&self) -> Client {
        let profile = self
            .run_dir
            .join(format!("profile-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&profile)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", profile.display()));
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": self.chromium, "args": args },
            // The browser console, for console_errors().
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.webdriver_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver at {} could not start Chromium {}: {e} \
                     (a Chromium and chromedriver of the same version are needed: run `make browser-deps`)",
                    self.webdriver_url,
                    self.chromium.display()
                )
            })
    }
}

fn binary(var: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    let runnable = std::fs::metadata(&path).is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    assert!(
        runnable,
        "{} is missing (${var}, default {default}): the browser tests need Chromium and chromedriver; \
         run `make browser-deps` (it installs Debian's `{package}`), or set {var} to the binary",
        path.display()
    );
    path
}

fn start() -> Browser {
    let chromium = binary("CHROMIUM", "/usr/bin/chromium", "chromium");
    let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver", "chromium-driver");
    // Deleted on drop until the watchdog has taken it over.
    let tmp = tempfile::Builder::new()
        .prefix("browser-tests-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary folder for the browsers: {e}"));
    // The browsers' HOME, XDG folders and TMPDIR are in it too: nothing lands in
    // ~/.config (crash reports), ~/.cache, ~/.pki or /tmp, and the watchdog deletes it all.
    let home = tmp.path().join("home");
    let tmpdir = tmp.path().join("tmp");
    for dir in [&home, &tmpdir] {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }

    let mut driver = Command::new(&chromedriver);
    driver.arg("--port=0");
    // For a failure to explain: CHROMEDRIVER_LOG=/some/file logs every command, verbosely.
    if let Some(log) = std::env::var_os("CHROMEDRIVER_LOG").filter(|v| !v.is_empty()) {
        let mut arg = std::ffi::OsString::from("--log-path=");
        arg.push(log);
        driver.arg(arg).arg("--verbose");
    }
    let mut driver = driver
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("TMPDIR", &tmpdir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (run `make browser-deps`)",
                chromedriver.display()
            )
        });
    let group = driver.id();
    // At once, before anything can fail: the watchdog that cleans up at exit.
    let watchdog = Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(group.to_string())
        .arg(tmp.path())
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let watchdog = match watchdog {
        Ok(w) => w,
        Err(e) => {
            let _ = driver.kill();
            panic!("cannot start the clean-up watchdog (bash): {e}");
        }
    };
    let run_dir = tmp.keep();

    // chromedriver prints "ChromeDriver was started successfully on port N."; the
    // thread then drains its stdout for good (a full pipe would block it).
    let stdout = driver.stdout.take().expect("chromedriver's stdout");
    let (port_tx, port_rx) = mpsc::channel::<u16>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut port_tx = Some(port_tx);
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(port) = started_port(&line) {
                if let Some(tx) = port_tx.take() {
                    let _ = tx.send(port);
                }
            }
            line.clear();
        }
    });
    let mut processes = PROCESSES.lock().unwrap_or_else(|p| p.into_inner());
    processes.push(watchdog);
    let deadline = Instant::now() + STARTUP_DEADLINE;
    let port = match port_rx.recv_timeout(STARTUP_DEADLINE) {
        Ok(port) => port,
        Err(_) => {
            let status = driver.try_wait().ok().flatten();
            let _ = driver.kill();
            panic!(
                "{} did not report its port within {STARTUP_DEADLINE:?} (exit status: {status:?}); \
                 run `make browser-deps`",
                chromedriver.display()
            );
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        match status_ready(addr) {
            Ok(true) => break,
            Ok(false) | Err(_) if Instant::now() < deadline => {}
            result => {
                let _ = driver.kill();
                panic!(
                    "chromedriver on {addr} is not ready within {STARTUP_DEADLINE:?}: {result:?}"
                );
            }
        }
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver exited before it was ready ({status})");
        }
        // Polling /status until its deadline: a wait on a condition.
        std::thread::sleep(Duration::from_millis(50));
    }
    processes.push(driver);
    Browser {
        webdriver_url: format!("http://{addr}"),
        chromium,
        run_dir,
    }
}

/// The port of chromedriver's "ChromeDriver was started successfully on port N." line.
fn started_port(line: &str) -> Option<u16> {
    let rest = line.split("started successfully on port ").nth(1)?;
    rest.trim().trim_end_matches('.').parse().ok()
}

/// `GET /status` on chromedriver, `value.ready`. (It answers HTTP/1.1 with a
/// Content-Length and keeps the connection open; to HTTP/1.0 it answers nothing.)
fn status_ready(addr: SocketAddr) -> Result<bool, String> {
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    (&stream)
        .write_all(
            format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(&stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| e.to_string())?;
    if !status_line.starts_with("HTTP/1.1 200") {
        return Err(format!("/status answered {status_line:?}"));
    }
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or("/status answered without a Content-Length")?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    let status: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("/status answered {:?}: {e}", String::from_utf8_lossy(&body)))?;
    Ok(status["value"]["ready"] == json!(true))
}

/// The crate's `docs/screenshots/`, where [`screenshot`] writes.
pub fn screenshots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
}

/// A PNG of the viewport as `docs/screenshots/{name}.png` (for the docs); returns its path.
pub async fn screenshot(client: &Client, name: &str) -> PathBuf {
    screenshot_in(client, &screenshots_dir(), name).await
}

/// A PNG of the viewport as `{dir}/{name}.png` (a test's temporary folder, for a
/// screenshot that must not land in the docs); creates `dir`; returns the path.
pub async fn screenshot_in(client: &Client, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let png = client
        .screenshot()
        .await
        .unwrap_or_else(|e| panic!("screenshot {name:?}: {e}"));
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// The first element matching `css`, now; panics naming the selector and the page.
pub async fn find(client: &Client, css: &str) -> Element {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => panic!("no element {css:?} on {}: {e}", current_url(client).await),
    }
}

/// Clicks the first element matching `css`; panics naming the selector.
pub async fn click(client: &Client, css: &str) {
    find(client, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The console of `app` served on a free loopback port over plain http (so the
/// cookie's Secure flag is dropped, as `serve --insecure-local-cookies` does), with
/// the tests' console settings; its base address, `http://127.0.0.1:PORT`.
pub async fn serve_console(app: std::sync::Arc<sophos_cw_sync::app::App>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = sophos_cw_sync::console::ConsoleConfig {
        secure_cookies: false,
        ..super::console::test_config()
    };
    tokio::spawn(async move {
        sophos_cw_sync::serve::serve_on(listener, app, config)
            .await
            .expect("serve")
    });
    base
}

/// The rendered text of the first element matching `css`.
pub async fn text_of(client: &Client, css: &str) -> String {
    let element = find(client, css).await;
    element
        .text()
        .await
        .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
}

/// Polls the page (every 50 ms) until the first element matching `css` has text
/// containing `needle` (the page after a form's redirect, not the one before it,
/// whose element may match `css` too); its text; panics after `timeout`.
pub async fn wait_for_text(client: &Client, css: &str, needle: &str, timeout: Duration) -> String {
    let until = std::time::Instant::now() + timeout;
    let mut last = String::new();
    while std::time::Instant::now() < until {
        // A stale or missing element is the page still changing: poll again.
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if text.contains(needle) {
                    return text;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{css:?} did not come to contain {needle:?} within {timeout:?} on {} (last text {last:?})",
        current_url(client).await
    )
}

/// Polls (every 50 ms) until the page's address has `part` in its query: the page
/// a link or GET form led to, not the one it was sent from; panics after `timeout`.
pub async fn wait_for_url_query(client: &Client, part: &str, timeout: Duration) {
    let until = std::time::Instant::now() + timeout;
    loop {
        let url = client.current_url().await.expect("the page's address");
        if url.query().is_some_and(|q| q.contains(part)) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "the address never came to have {part:?} in its query: {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the page (every 50 ms) until an element matches `css`; panics after `timeout`.
pub async fn wait_for(client: &Client, css: &str, timeout: Duration) -> Element {
    let result = client
        .wait()
        .at_most(timeout)
        .every(Duration::from_millis(50))
        .for_element(Locator::Css(css))
        .await;
    match result {
        Ok(element) => element,
        Err(e) => panic!(
            "no element {css:?} appeared within {timeout:?} on {}: {e}",
            current_url(client).await
        ),
    }
}

/// Runs `script` (a function body: `return` its value) in the page; its value as JSON.
pub async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
}

/// The browser console's entries of level SEVERE (errors, CSP refusals, failed loads)
/// since the session's start or the previous call (reading empties chromedriver's buffer).
pub async fn console_errors(client: &Client) -> Vec<String> {
    console_entries(client)
        .await
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| entry["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every browser console entry (`{"level", "message", "source", "timestamp"}`) since the
/// session's start or the previous call: chromedriver's log endpoint.
pub async fn console_entries(client: &Client) -> Vec<Value> {
    let session = client
        .session_id()
        .await
        .ok()
        .flatten()
        .expect("an open WebDriver session");
    let url = format!(
        "{}/session/{session}/se/log",
        Browser::shared().webdriver_url()
    );
    let answer: Value = reqwest::Client::new()
        .post(&url)
        .json(&json!({ "type": "browser" }))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    match &answer["value"] {
        Value::Array(entries) => entries.clone(),
        other => panic!("POST {url} answered {other}"),
    }
}

async fn current_url(client: &Client) -> String {
    client
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_else(|e| format!("(no URL: {e})"))
}
