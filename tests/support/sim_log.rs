//! Faults to inject into the ConnectWise simulator, the request log it keeps, and
//! client policies for tests that make requests fail or hang.

use sophos_cw_sim::{Api, Fault, FaultKind, LoggedRequest};
use sophos_cw_sync::http::HttpPolicy;
use std::time::Duration;

use super::app::Harness;

/// A ConnectWise fault on the first request matching `method` and `path`.
pub fn cw_fault(method: &str, path: &str, kind: FaultKind) -> Fault {
    Fault {
        api: Api::Connectwise,
        method: Some(method.to_owned()),
        path_contains: Some(path.to_owned()),
        nth: 1,
        times: 1,
        after_apply: false,
        kind,
        seen: 0,
    }
}

/// ConnectWise requests since the last clear, in the order they were received.
pub fn cw_log(h: &Harness) -> Vec<LoggedRequest> {
    let mut log: Vec<LoggedRequest> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.api == Api::Connectwise)
        .collect();
    log.sort_by_key(|r| r.seq);
    log
}

/// The default policy with short backoff waits (the retries stay the same), and
/// `timeout` per request: a hang that must outlast the timeout stays short.
pub fn quick_policy(timeout: Duration) -> HttpPolicy {
    HttpPolicy {
        timeout,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        ..HttpPolicy::default()
    }
}
