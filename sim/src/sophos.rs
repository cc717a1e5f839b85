//! The Sophos Central Partner API simulator: the identity service's token
//! endpoint and the partner routes a billing sync uses (Sophos's API documentation).
//!
//! | route | notes |
//! |---|---|
//! | `POST /api/v2/oauth2/token` | form (or JSON) `grant_type=client_credentials` or `refresh_token` |
//! | `GET /whoami/v1` | `idType` is always `partner` |
//! | `GET /partner/v1/tenants` | page-number paging, `pageSize` ≤ 100 |
//! | `GET /partner/v1/tenants/{tenantId}` | |
//! | `GET /partner/v1/billing/usage/{year}/{month}` | key paging (`pageFromKey`), `pageSize` ≤ 1000, `accountId` filter |
//!
//! Every route but the token one needs a live bearer token; partner routes also
//! need `X-Partner-ID`. Not simulated: `fields`, `contactEmail`, tenant creation,
//! the licensing API.

// Errors are ready-made vendor responses returned on the rare failure path;
// boxing them would only add noise to every handler.
#![allow(clippy::result_large_err)]

use crate::state::{Shared, SimState, lock};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Sophos' default page size for both paging styles (Postman collection).
const DEFAULT_PAGE_SIZE: usize = 50;
/// `pages.maxSize` of the tenant list (clients use 100; Sophos's API documentation).
const TENANTS_MAX_PAGE_SIZE: usize = 100;
/// `pages.maxSize` of the usage report (Sophos's API documentation, assumed 1000).
const USAGE_MAX_PAGE_SIZE: usize = 1000;

type Params = HashMap<String, String>;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v2/oauth2/token", post(token))
        .route("/whoami/v1", get(whoami))
        .route("/partner/v1/tenants", get(tenants))
        .route("/partner/v1/tenants/{tenant_id}", get(tenant))
        .route("/partner/v1/billing/usage/{year}/{month}", get(usage))
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "Not Found") })
}

/// Sophos' standard API error body (Sophos's API documentation).
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({
        "error": status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', ""),
        "message": message,
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "requestId": uuid::Uuid::new_v4().to_string(),
        "createdAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(error_body(status, message))).into_response()
}

/// The identity service (id.sophos.com) answers in its own shape (Sophos's API documentation).
fn identity_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"errorCode": code, "message": message, "trackingId": tracking_id()});
    (status, Json(body)).into_response()
}

fn tracking_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ------------------------------------------------------------------ token

async fn token(State(shared): State<Shared>, req: Request) -> Response {
    let form = match read_token_request(req).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    match grant(&mut lock(&shared), &form) {
        Ok(body) => Json(body).into_response(),
        Err(response) => response,
    }
}

/// The documented body is form-encoded; Sophos' own "Refresh token" request
/// sends JSON, so both are read.
async fn read_token_request(req: Request) -> Result<Params, Response> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let parsed = if is_json {
        Json::<HashMap<String, Value>>::from_request(req, &())
            .await
            .map(|Json(map)| map.into_iter().map(|(k, v)| (k, plain(v))).collect())
            .map_err(|e| e.body_text())
    } else {
        Form::<Params>::from_request(req, &())
            .await
            .map(|Form(map)| map)
            .map_err(|e| e.body_text())
    };
    parsed.map_err(|msg| identity_error(StatusCode::BAD_REQUEST, "oauth.invalid_request", &msg))
}

fn plain(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn grant(st: &mut SimState, form: &Params) -> Result<Value, Response> {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let grant_type = field("grant_type");
    if grant_type != "client_credentials" && grant_type != "refresh_token" {
        let msg = "grant_type must be client_credentials or refresh_token";
        return Err(identity_error(
            StatusCode::BAD_REQUEST,
            "oauth.invalid_grant_type",
            msg,
        ));
    }
    if !matches!(field("scope"), "" | "token") {
        return Err(identity_error(
            StatusCode::BAD_REQUEST,
            "oauth.invalid_scope",
            "scope must be token",
        ));
    }
    let sophos = &st.scenario.sophos;
    if field("client_id") != sophos.client_id || field("client_secret") != sophos.client_secret {
        return Err(identity_error(
            StatusCode::UNAUTHORIZED,
            "oauth.invalid_client_secret",
            "Unauthorized",
        ));
    }
    if grant_type == "refresh_token" && !st.refresh_tokens.contains(field("refresh_token")) {
        return Err(identity_error(
            StatusCode::UNAUTHORIZED,
            "oauth.invalid_refresh_token",
            "Unauthorized",
        ));
    }
    Ok(issue_token(st))
}

fn issue_token(st: &mut SimState) -> Value {
    let ttl = st.scenario.sophos.token_ttl_seconds;
    let access = opaque_token();
    let refresh = opaque_token();
    let expires = st.now() + chrono::Duration::seconds(ttl);
    st.tokens.insert(access.clone(), expires);
    st.refresh_tokens.insert(refresh.clone());
    json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": ttl,
        "errorCode": "success",
        "message": "OK",
        "trackingId": tracking_id(),
    })
}

/// Random and opaque: clients must not parse it (the real one is a JWT).
fn opaque_token() -> String {
    let raw = [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ]
    .concat();
    URL_SAFE_NO_PAD.encode(raw)
}

// ------------------------------------------------------------------ auth

/// A known, unexpired bearer token (401 causes in Sophos's API documentation).
fn authorize(st: &SimState, headers: &HeaderMap) -> Result<(), Response> {
    let unauthorized = |msg: &str| api_error(StatusCode::UNAUTHORIZED, msg);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| unauthorized("Unauthorized"))?;
    match st.tokens.get(token) {
        None => Err(unauthorized("Unauthorized")),
        Some(expiry) if *expiry <= st.now() => Err(unauthorized("token expired")),
        Some(_) => Ok(()),
    }
}

/// Partner routes also need `X-Partner-ID` = the whoami id (401 otherwise).
fn authorize_partner(st: &SimState, headers: &HeaderMap) -> Result<(), Response> {
    authorize(st, headers)?;
    let given = headers.get("x-partner-id").and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if id
                .trim()
                .eq_ignore_ascii_case(&st.scenario.sophos.partner_id) =>
        {
            Ok(())
        }
        Some(_) => Err(api_error(
            StatusCode::UNAUTHORIZED,
            "X-Partner-ID is not valid for this token",
        )),
        None => Err(api_error(
            StatusCode::UNAUTHORIZED,
            "X-Partner-ID header is missing",
        )),
    }
}

// ------------------------------------------------------------------ whoami

async fn whoami(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let st = lock(&shared);
    if let Err(response) = authorize(&st, &headers) {
        return response;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    Json(json!({
        "id": st.scenario.sophos.partner_id,
        "idType": "partner",
        "apiHosts": {"global": format!("http://{host}")},
    }))
    .into_response()
}

// ------------------------------------------------------------------ tenants

async fn tenants(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let st = lock(&shared);
    let page = authorize_partner(&st, &headers).and_then(|()| {
        let size = page_size(&q, TENANTS_MAX_PAGE_SIZE)?;
        Ok((positive(&q, "page", 1)?, size))
    });
    match page {
        Ok((page, size)) => {
            Json(tenant_page(&st.scenario.sophos.tenants, page, size, &q)).into_response()
        }
        Err(response) => response,
    }
}

fn tenant_page(all: &[Value], page: usize, size: usize, q: &Params) -> Value {
    let start = (page - 1).saturating_mul(size);
    let items: Vec<&Value> = all.iter().skip(start).take(size).collect();
    let mut pages = json!({"current": page, "size": size, "maxSize": TENANTS_MAX_PAGE_SIZE});
    if page_total(q) {
        pages["total"] = json!(all.len().div_ceil(size));
        pages["items"] = json!(all.len());
    }
    json!({"items": items, "pages": pages})
}

async fn tenant(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let st = lock(&shared);
    if let Err(response) = authorize_partner(&st, &headers) {
        return response;
    }
    let found = st
        .scenario
        .sophos
        .tenants
        .iter()
        .find(|t| t["id"].as_str() == Some(id.as_str()));
    match found {
        Some(t) => Json(t.clone()).into_response(),
        None => api_error(StatusCode::NOT_FOUND, &format!("tenant {id} not found")),
    }
}

// ------------------------------------------------------------------ usage

async fn usage(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((year, month)): Path<(String, String)>,
    Query(q): Query<Params>,
) -> Response {
    let st = lock(&shared);
    let report = authorize_partner(&st, &headers)
        .and_then(|()| month_key(&year, &month))
        .and_then(|key| usage_page(&st, &key, &q));
    match report {
        Ok(body) => Json(body).into_response(),
        Err(response) => response,
    }
}

/// `2026`/`5` or `2026`/`05` → `2026-05` (Sophos's API documentation: clients send both).
fn month_key(year: &str, month: &str) -> Result<String, Response> {
    let digits = |s: &str, max_len: usize| {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    match (
        digits(year, 4).filter(|_| year.len() == 4),
        digits(month, 2),
    ) {
        (Some(y), Some(m)) if (1..=12).contains(&m) => Ok(format!("{y:04}-{m:02}")),
        _ => Err(api_error(
            StatusCode::BAD_REQUEST,
            &format!("invalid year or month: {year}/{month}"),
        )),
    }
}

fn usage_page(st: &SimState, key: &str, q: &Params) -> Result<Value, Response> {
    let Some(all) = st.scenario.sophos.usage.get(key) else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "no data for requested year or month",
        ));
    };
    let size = page_size(q, USAGE_MAX_PAGE_SIZE)?;
    let account = q.get("accountId").map(String::as_str);
    let items: Vec<&Value> = all
        .iter()
        .filter(|item| account.is_none_or(|a| item["accountId"].as_str() == Some(a)))
        .collect();
    let offset = match q.get("pageFromKey") {
        None => 0,
        Some(k) => decode_key(k).filter(|o| *o <= items.len()).ok_or_else(|| {
            api_error(
                StatusCode::BAD_REQUEST,
                "pageFromKey is not a key this report issued",
            )
        })?,
    };
    Ok(key_page(&items, offset, size, page_total(q)))
}

fn key_page(items: &[&Value], offset: usize, size: usize, with_total: bool) -> Value {
    let page: Vec<&Value> = items.iter().skip(offset).take(size).copied().collect();
    let mut pages =
        json!({"fromKey": encode_key(offset), "size": size, "maxSize": USAGE_MAX_PAGE_SIZE});
    if offset + size < items.len() {
        pages["nextKey"] = json!(encode_key(offset + size));
    }
    if with_total {
        pages["total"] = json!(items.len().div_ceil(size));
        pages["items"] = json!(items.len());
    }
    json!({"items": page, "pages": pages})
}

/// Keys are opaque to clients; here they carry the offset.
fn encode_key(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("sim-usage:{offset}"))
}

fn decode_key(key: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(key.trim()).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("sim-usage:")?
        .parse()
        .ok()
}

// ------------------------------------------------------------------ params

/// `pageSize`: default 50, at most `max`; anything else is a 400.
fn page_size(q: &Params, max: usize) -> Result<usize, Response> {
    let size = positive(q, "pageSize", DEFAULT_PAGE_SIZE)?;
    if size > max {
        let msg = format!("pageSize must be between 1 and {max}");
        return Err(api_error(StatusCode::BAD_REQUEST, &msg));
    }
    Ok(size)
}

fn positive(q: &Params, name: &str, default: usize) -> Result<usize, Response> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                api_error(
                    StatusCode::BAD_REQUEST,
                    &format!("{name} must be a positive integer"),
                )
            }),
    }
}

fn page_total(q: &Params) -> bool {
    q.get("pageTotal")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}
