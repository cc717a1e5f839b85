//! "Now", for everything that depends on the calendar (the billing month, the
//! month close). Built with the `test-hooks` feature (the test suite only), the
//! variable `SOPHOS_CW_SYNC_NOW` (RFC 3339) fixes it, so tests of the month
//! choice run the real binaries and services against a fixed clock. The shipped
//! binary has no such hook.

use chrono::{DateTime, Utc};

/// The current time (fixed by `SOPHOS_CW_SYNC_NOW` in a test build).
pub fn now() -> DateTime<Utc> {
    #[cfg(feature = "test-hooks")]
    if let Some(fixed) = std::env::var("SOPHOS_CW_SYNC_NOW")
        .ok()
        .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
    {
        return fixed.with_timezone(&Utc);
    }
    Utc::now()
}

/// A test build's numeric hook variable (e.g. `SOPHOS_CW_SYNC_CRASH_AFTER_WRITES`);
/// always None in the shipped binary.
pub fn test_hook_number(name: &str) -> Option<u64> {
    #[cfg(feature = "test-hooks")]
    {
        std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
    }
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = name;
        None
    }
}
