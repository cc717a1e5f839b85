//! The one error type both vendor clients return.
//!
//! Messages are written for the operator reading a log line or a CLI error: they
//! say what went wrong and, where we know it, what to change. They never contain
//! credentials, tokens or query strings (only the request path is kept).

use std::fmt;

/// What kind of failure, so callers can decide (retry later, stop the run, skip one record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorKind {
    /// 401, or the token endpoint refused the credentials.
    Unauthorized,
    /// 403: the credentials work but lack a permission.
    Forbidden,
    /// 404 where a record was expected.
    NotFound,
    /// The vendor refused the request body or query (400/409/422).
    Validation,
    /// 429 after the retries ran out.
    RateLimited,
    /// 5xx after the retries ran out, a refused connection or a broken connection.
    Unavailable,
    /// No answer within the policy timeout.
    Timeout,
    /// A response we cannot use: bad JSON, cut-short body, endless paging, odd status.
    BadResponse,
    /// Our own configuration is wrong (bad site, missing codebase, wrong credential type).
    Config,
}

/// One entry of ConnectWise's `errors[]` array (code/field/message).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(default)]
pub struct FieldProblem {
    pub code: String,
    pub message: String,
    pub resource: String,
    pub field: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.field.is_empty(), self.resource.is_empty()) {
            (false, false) => write!(f, "{}.{}", self.resource, self.field)?,
            (false, true) => f.write_str(&self.field)?,
            _ => {}
        }
        if !self.field.is_empty() {
            f.write_str(": ")?;
        }
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A failed vendor call. `path` is the request path only: no host, no query string.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// "sophos" or "connectwise".
    pub api: &'static str,
    pub kind: ApiErrorKind,
    pub status: Option<u16>,
    pub message: String,
    pub details: Vec<FieldProblem>,
    pub method: String,
    pub path: String,
}

impl ApiError {
    pub fn new(
        api: &'static str,
        kind: ApiErrorKind,
        method: &str,
        path: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            api,
            kind,
            status: None,
            message: message.into(),
            details: Vec::new(),
            method: method.to_string(),
            path: strip_query(path).to_string(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_details(mut self, details: Vec<FieldProblem>) -> Self {
        self.details = details;
        self
    }

    /// For a write that creates a record (POST): whether ConnectWise may have
    /// applied it although we got no usable answer (a 5xx, a timeout, a broken
    /// connection or a body cut short). The caller must read back before deciding
    /// to create it again; a refusal (4xx) or our own error means "not written".
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::Unavailable | ApiErrorKind::Timeout | ApiErrorKind::BadResponse
        )
    }

    /// Worth trying again later (the same run may retry, or the next scheduled run).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::RateLimited | ApiErrorKind::Unavailable | ApiErrorKind::Timeout
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for (i, d) in self.details.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{d}")?;
        }
        // Some messages already name the request; do not say it twice.
        if !self.path.is_empty() && !self.message.contains(&self.path) {
            write!(f, " ({} {})", self.method, self.path)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Paths are logged and put in errors; a query string could carry filter values we
/// do not want in logs, so it is always cut off.
pub(crate) fn strip_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The first `max` characters of a vendor body, on one line, for error messages.
pub(crate) fn body_snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    if out.trim().is_empty() {
        return "(empty body)".to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_adds_request_and_details() {
        let e = ApiError::new(
            "connectwise",
            ApiErrorKind::Validation,
            "POST",
            "/finance/agreements/1/additions?x=1",
            "ConnectWise rejected the request (InvalidObject)",
        )
        .with_status(400)
        .with_details(vec![FieldProblem {
            code: "MissingRequiredField".into(),
            message: "product is required".into(),
            resource: "addition".into(),
            field: "product".into(),
        }]);
        assert_eq!(e.path, "/finance/agreements/1/additions");
        assert_eq!(
            e.to_string(),
            "ConnectWise rejected the request (InvalidObject): addition.product: \
             product is required (MissingRequiredField) (POST /finance/agreements/1/additions)"
        );
    }

    #[test]
    fn display_does_not_repeat_path() {
        let e = ApiError::new(
            "connectwise",
            ApiErrorKind::BadResponse,
            "GET",
            "/finance/agreements",
            "unexpected response from ConnectWise GET /finance/agreements: x",
        );
        assert_eq!(e.to_string(), e.message);
    }

    #[test]
    fn retryable_kinds() {
        let mk = |k| ApiError::new("sophos", k, "GET", "/", "m");
        assert!(mk(ApiErrorKind::RateLimited).is_retryable());
        assert!(mk(ApiErrorKind::Unavailable).is_retryable());
        assert!(mk(ApiErrorKind::Timeout).is_retryable());
        assert!(!mk(ApiErrorKind::Unauthorized).is_retryable());
        assert!(!mk(ApiErrorKind::Validation).is_retryable());
        assert!(!mk(ApiErrorKind::BadResponse).is_retryable());
    }

    #[test]
    fn snippet_is_bounded_and_single_line() {
        let body = format!("<html>\n{}", "x".repeat(500));
        let s = body_snippet(body.as_bytes(), 200);
        assert!(!s.contains('\n'));
        assert_eq!(s.chars().count(), 201);
        assert_eq!(body_snippet(b"  ", 200), "(empty body)");
        // Cutting must respect UTF-8 boundaries.
        assert_eq!(body_snippet("ééé".as_bytes(), 2), "éé…");
    }
}
