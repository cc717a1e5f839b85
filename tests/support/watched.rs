//! A `.venv` program (moto's server, the OpenID provider) started once per test
//! process on a free loopback port, under a tiny `sh` watchdog that reads the test
//! process's end of a pipe: when the test process exits (normally or killed), the
//! pipe closes and the watchdog kills the program, so nothing is left behind.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The watchdogs' handles, never dropped: their stdin stays open until exit.
static WATCHDOGS: Mutex<Vec<std::process::Child>> = Mutex::new(Vec::new());

/// Starts `.venv/bin/{program}` with `args` (a shell fragment in which `"$1"` is
/// the port) and waits until `ready` says it answers on its address; that
/// address. Panics saying what to do when it is not installed or never answers.
pub fn start(
    program: &str,
    args: &str,
    env_hint: &str,
    ready: fn(SocketAddr) -> bool,
) -> SocketAddr {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(program);
    assert!(
        bin.exists(),
        "{} is missing: run `make venv` (or set {env_hint})",
        bin.display()
    );
    let port = free_port();
    let script = format!(
        r#""$0" {args} >/dev/null 2>&1 & m=$!; cat >/dev/null; kill "$m" 2>/dev/null; wait "$m""#
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&bin)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(addr) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{program} exited before it was ready ({status})");
        }
        if Instant::now() > deadline {
            // Closing the pipe makes the watchdog stop it.
            drop(child.stdin.take());
            panic!("{program} did not answer on {addr} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    WATCHDOGS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(child);
    addr
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}
