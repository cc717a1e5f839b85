//! `Authorization: Bearer <token>` against the secret's `webhookToken`.

use super::errors::ApiError;
use crate::app::App;
use crate::state::Web;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

/// Lets the request through only with the right bearer token. Runs before anything
/// else of the request is looked at.
pub async fn authorize(app: &App, headers: &[(String, String)]) -> Result<(), ApiError> {
    let secrets = app.secrets.get().await.map_err(|e| {
        // The message names the source and the field, never a value, but it is
        // still only for the operator.
        tracing::error!(error = %e, "cannot load the secrets to check a bearer token");
        ApiError::unavailable(
            "the service cannot read its secrets: the operator can find the cause in the service log",
        )
    })?;
    // 503, not 401: without a configured token no request can ever be accepted, and
    // that is the operator's configuration to fix, not the caller's token. A 401 would
    // send callers hunting for a token that does not exist.
    let Some(expected) = secrets.webhook_token.as_ref() else {
        return Err(ApiError::unavailable(
            "the webhook token is not configured in the secret: the operator must add \"webhookToken\" to it",
        ));
    };
    let presented = bearer_token(headers).unwrap_or_default();
    if token_matches(expected.expose_secret().as_bytes(), presented.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// The router's layer in front of every API route (and the 404 of an unknown
/// path): without the right token the request goes no further.
pub async fn require_token(State(web): State<Web>, request: Request, next: Next) -> Response {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    match authorize(&web.app, &headers).await {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// The token of the one `Authorization: Bearer <token>` header (scheme in any case).
/// None when the header is missing, repeated, of another scheme or empty.
pub fn bearer_token(headers: &[(String, String)]) -> Option<&str> {
    let mut values = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim());
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(char::is_whitespace))
    .then_some(token)
}

/// Constant-time comparison: the time taken depends on the expected token's length
/// only, never on where the presented token first differs or on whether its length
/// matches (it is copied into a buffer of the expected length first).
pub fn token_matches(expected: &[u8], presented: &[u8]) -> bool {
    let mut padded = vec![0u8; expected.len()];
    let n = presented.len().min(expected.len());
    padded[..n].copy_from_slice(&presented[..n]);
    let same_len = (presented.len() as u64).ct_eq(&(expected.len() as u64));
    let same_bytes = padded.as_slice().ct_eq(expected);
    bool::from(same_len & same_bytes & !(expected.len() as u64).ct_eq(&0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bearer_token_is_read_strictly() {
        assert_eq!(
            bearer_token(&h(&[("Authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&h(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer_token(&h(&[])), None);
        assert_eq!(bearer_token(&h(&[("Authorization", "Basic abc")])), None);
        assert_eq!(bearer_token(&h(&[("Authorization", "Bearer")])), None);
        assert_eq!(bearer_token(&h(&[("Authorization", "Bearer ")])), None);
        assert_eq!(bearer_token(&h(&[("Authorization", "Bearer a b")])), None);
        assert_eq!(bearer_token(&h(&[("Authorization", "abc")])), None);
        assert_eq!(
            bearer_token(&h(&[
                ("Authorization", "Bearer abc"),
                ("authorization", "Bearer abc")
            ])),
            None
        );
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches(b"secret-token", b"secret-token"));
        assert!(!token_matches(b"secret-token", b"secret-toke"));
        assert!(!token_matches(b"secret-token", b"secret-token2"));
        assert!(!token_matches(b"secret-token", b"secret-tokem"));
        assert!(!token_matches(b"secret-token", b""));
        assert!(!token_matches(b"abc", b"abc\0"));
        assert!(!token_matches(b"", b""));
    }
}
