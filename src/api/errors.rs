//! The API's error answers: a status and `{"error": "<what is wrong and how to fix it>"}`.
//!
//! Messages never carry secret values. Details of internal failures (store errors,
//! panics) go to the log, not to the caller.

use super::ApiResponse;
use crate::app::AppError;
use crate::app::changes::ChangeError;
use crate::store::StoreError;
use serde_json::{Value, json};

/// A handler's or an extractor's refusal, answered as the API's JSON error.
impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        self.to_response().into_response()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Extra members of the error body (e.g. `allow` on a 405, `runId` on a 409).
    pub extra: Vec<(&'static str, Value)>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            extra: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: Value) -> Self {
        self.extra.push((key, value));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "missing or wrong bearer token")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: &[&str]) -> Self {
        Self::new(
            405,
            format!(
                "method {method} is not allowed on {path}: use {}",
                allow.join(" or ")
            ),
        )
        .with("allow", json!(allow))
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            format!(
                "the body is larger than {} KiB: send a smaller JSON document",
                limit / 1024
            ),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }

    /// A bug on our side: no details for the caller (they are logged).
    pub fn internal() -> Self {
        Self::new(
            500,
            "internal error: the request could not be completed; the operator can find the cause in the service log",
        )
    }

    /// A JSON body that does not parse (syntax, not shape). serde's message is not
    /// passed on because it may quote parts of the body.
    pub fn bad_json(e: &serde_json::Error) -> Self {
        if e.is_eof() && e.line() <= 1 && e.column() == 0 {
            return Self::bad_request("the body is empty: send a JSON object");
        }
        Self::bad_request(format!(
            "the body is not valid JSON: line {} column {}",
            e.line(),
            e.column()
        ))
    }

    /// The error as the API answers it: `{"error": ..., <extra>}`.
    pub fn to_response(self) -> ApiResponse {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), Value::String(self.message));
        for (k, v) in self.extra {
            body.insert(k.into(), v);
        }
        ApiResponse {
            status: self.status,
            body: Value::Object(body),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store call failed while answering an API request");
        match e {
            StoreError::Unavailable(_) => {
                ApiError::unavailable("the store is unavailable: try again in a moment")
            }
            StoreError::Config(_) => ApiError::unavailable(
                "the store is misconfigured: the operator can find the cause in the service log",
            ),
            StoreError::Corrupt(_) | StoreError::Rejected(_) => ApiError::internal(),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Invalid(_) | ChangeError::UnknownAgreementType { .. } => {
                let known = match &e {
                    ChangeError::UnknownAgreementType { known, .. } => Some(json!(known)),
                    _ => None,
                };
                let error = ApiError::bad_request(e.to_string());
                match known {
                    Some(k) => error.with("agreementTypes", k),
                    None => error,
                }
            }
            ChangeError::ConnectWiseUnreachable(_) => {
                tracing::error!(error = %e, "PUT /settings: cannot check the agreement type");
                ApiError::new(502, e.to_string())
            }
            ChangeError::Secrets(_) => {
                tracing::error!(error = %e, "PUT /settings: cannot read the secrets");
                ApiError::unavailable(
                    "the service cannot read its secrets to check agreementType with ConnectWise; nothing was stored; the operator can find the cause in the service log",
                )
            }
            ChangeError::Store(s) => s.into(),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Store(s) => s.into(),
            other => {
                tracing::error!(error = %other, "the application failed while answering an API request");
                match other {
                    AppError::Invoke(_) => ApiError::unavailable(
                        "the cycle could not be started: try again in a moment; the operator can find the cause in the service log",
                    ),
                    AppError::Config(_) => ApiError::unavailable(
                        "the service is misconfigured: the operator can find the cause in the service log",
                    ),
                    _ => ApiError::internal(),
                }
            }
        }
    }
}
