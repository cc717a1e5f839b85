//! What the API's handlers take from a request, checked strictly and refused with
//! the API's JSON errors: a path parameter ([`Param`]), a typed query
//! ([`Query`]), and the body, bounded by [`limit_body`] to [`MAX_BODY`].

use super::MAX_BODY;
use super::errors::ApiError;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{Uri, uri::PathAndQuery};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

/// The message of a 404: every route the API answers.
pub const NO_SUCH_ROUTE: &str = "no such route: use POST /sync, GET /runs, GET /runs/{runId}, GET /status, GET /audit, GET /mappings, PUT or DELETE /mappings/{tenantId}, GET or PUT /settings, GET /review, POST /review/{id}/approve or /reject";

/// A route's one path parameter (`{runId}`, `{tenantId}`, `{id}`), percent-decoded
/// strictly and trimmed: broken escapes are a 400, an empty value a 404 (the path
/// names no route). axum's own `Path` would pass a broken escape such as `%zz` on
/// as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Param(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Param {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // The parameter is a whole segment: the one of the matched route's pattern
        // that is a `{...}`, read from the path as received (not yet decoded).
        let segment = parts
            .extensions
            .get::<MatchedPath>()
            .and_then(|pattern| pattern.as_str().split('/').position(|s| s.starts_with('{')))
            .and_then(|i| parts.uri.path().split('/').nth(i));
        let Some(raw) = segment else {
            tracing::error!(path = ?parts.uri.path(), "an API route without a path parameter asked for one");
            return Err(ApiError::internal());
        };
        param(raw).map(Param)
    }
}

/// One raw path segment, decoded and trimmed.
pub fn param(raw: &str) -> Result<String, ApiError> {
    let value = percent_decode(raw, false).ok_or_else(|| {
        ApiError::bad_request("the path is not valid: check its percent-encoding")
    })?;
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::not_found(NO_SUCH_ROUTE));
    }
    Ok(value.to_owned())
}

/// A route's query parameters, read into their type.
pub trait QueryParams: Sized {
    /// The parameters the route takes; any other is a 400.
    const NAMES: &'static [&'static str];
    fn read(query: &Pairs) -> Result<Self, ApiError>;
}

/// The query string as `T`: every parameter one of `T::NAMES`, given once, its
/// percent-encoding valid (`+` is a space); then `T::read` checks the values.
#[derive(Debug, Clone, PartialEq)]
pub struct Query<T>(pub T);

impl<T: QueryParams, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let pairs = Pairs::parse(parts.uri.query().unwrap_or_default(), T::NAMES)?;
        T::read(&pairs).map(Query)
    }
}

/// A decoded query string whose parameter names were checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pairs(Vec<(String, String)>);

impl Pairs {
    pub fn parse(raw: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let bad = || {
                ApiError::bad_request("the query string is not valid: check its percent-encoding")
            };
            let k = percent_decode(k, true).ok_or_else(bad)?;
            let v = percent_decode(v, true).ok_or_else(bad)?;
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?}: use {}",
                    allowed.join(", ")
                )));
            }
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(ApiError::bad_request(format!(
                    "the query parameter {k} is given twice: give it once"
                )));
            }
            pairs.push((k, v));
        }
        Ok(Self(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty value of `key` (an empty one is as if it were not given).
    pub fn given(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// `limit`: 1 to `max`, `default` when not given.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let Some(raw) = self.get("limit") else {
            return Ok(default);
        };
        match raw.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit must be a whole number from 1 to {max} (default {default})"
            ))),
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space in a query); None if the escapes are
/// broken or the result is not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Read beyond the limit (and thrown away) so a 413 reaches the client cleanly.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// A route's body, read before its handler: larger than [`MAX_BODY`] is a 413
/// whatever it holds; one that cannot be read a 400. The handler then takes it
/// whole (`axum::body::Bytes`).
pub async fn limit_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) if bytes.len() > MAX_BODY => {
            return ApiError::too_large(MAX_BODY).into_response();
        }
        Ok(bytes) => bytes,
        Err(()) => {
            return ApiError::bad_request("the request body could not be read: send it again")
                .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The body, cut at `MAX_BODY + 1` bytes (enough to tell it is too large).
async fn read_body(body: Body) -> Result<Vec<u8>, ()> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ())?;
        seen += chunk.len();
        if out.len() <= MAX_BODY {
            let room = MAX_BODY + 1 - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if seen > DRAIN_LIMIT {
            break;
        }
    }
    Ok(out)
}

/// One trailing slash is tolerated (`/sync/` is `/sync`): the request goes on
/// without it, before the routes are matched.
pub fn trim_trailing_slash(mut request: Request) -> Request {
    let uri = request.uri();
    let path = uri.path();
    let Some(trimmed) = path.strip_suffix('/').filter(|p| !p.is_empty()) else {
        return request;
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse::<PathAndQuery>() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return request,
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_decoded_strictly() {
        assert_eq!(param("r1").unwrap(), "r1");
        assert_eq!(param("a%2Db").unwrap(), "a-b");
        assert_eq!(param("a%2Fb").unwrap(), "a/b");
        assert_eq!(param("a+b").unwrap(), "a+b", "+ is a plus in a path");
        assert_eq!(param("%20").unwrap_err().status, 404);
        assert_eq!(param("").unwrap_err().status, 404);
        assert_eq!(param("%zz").unwrap_err().status, 400);
        assert_eq!(param("%FF").unwrap_err().status, 400, "not UTF-8");
        assert_eq!(param("%2").unwrap_err().status, 400);
    }

    #[test]
    fn queries_are_checked() {
        let q = Pairs::parse("limit=5&before=r%201", &["limit", "before"]).unwrap();
        assert_eq!(q.limit(20, 100).unwrap(), 5);
        assert_eq!(q.get("before"), Some("r 1"));
        assert_eq!(Pairs::parse("a=x+y", &["a"]).unwrap().get("a"), Some("x y"));
        assert_eq!(
            Pairs::parse("after=", &["after"]).unwrap().given("after"),
            None
        );
        for bad in ["limit=abc", "limit=0", "limit=101", "limit=-1", "limit="] {
            let q = Pairs::parse(bad, &["limit"]).unwrap();
            assert_eq!(q.limit(20, 100).unwrap_err().status, 400, "{bad}");
        }
        assert!(Pairs::parse("limt=5", &["limit"]).is_err());
        assert!(Pairs::parse("limit=5&limit=6", &["limit"]).is_err());
        assert!(Pairs::parse("limit=%G1", &["limit"]).is_err());
    }

    #[test]
    fn one_trailing_slash_is_dropped_and_the_query_kept() {
        let path = |uri: &str| {
            let request = Request::get(uri).body(Body::empty()).unwrap();
            trim_trailing_slash(request).uri().to_string()
        };
        assert_eq!(path("/sync/"), "/sync");
        assert_eq!(path("/runs/?limit=2"), "/runs?limit=2");
        assert_eq!(path("/review/x/reject/"), "/review/x/reject");
        assert_eq!(path("/runs//"), "/runs/", "one slash only");
        assert_eq!(path("/"), "/");
        assert_eq!(path("/runs"), "/runs");
    }
}
