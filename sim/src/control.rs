//! The control API, served under `/_sim/` on both ports. Not part of either vendor
//! API: it loads scenarios, exposes state, the request log and counters, and sets
//! latency and faults.
//!
//! | route | what it does |
//! |---|---|
//! | `GET /_sim/state` | vendor data now (ConnectWise collections, Sophos tenants and usage) |
//! | `PUT /_sim/scenario` | load a scenario (body: scenario JSON); resets everything |
//! | `POST /_sim/reset` | reload the current scenario's initial data |
//! | `GET /_sim/requests`, `DELETE /_sim/requests` | the request log; clearing also zeroes counters |
//! | `GET /_sim/counters` | reads, writes and the most requests in flight at once (`maxInFlight`), per API |
//! | `PUT /_sim/latency` | `{"api":"connectwise","fixedMs":20,"jitterMs":10}` |
//! | `GET/POST/DELETE /_sim/faults` | list, add (`Fault` JSON), clear injected faults |
//! | `POST /_sim/clock` | `{"advanceSeconds":3601}` moves the clock (token expiry) |
//! | `PUT /_sim/usage/{yyyy-mm}`, `DELETE …` | replace or remove one month's usage items |

use crate::scenario::Scenario;
use crate::state::{Api, Fault, Latency, Shared, lock};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/scenario", put(load_scenario))
        .route("/_sim/reset", post(reset))
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route("/_sim/counters", get(counters))
        .route("/_sim/latency", put(set_latency))
        .route(
            "/_sim/faults",
            get(faults).post(add_fault).delete(clear_faults),
        )
        .route("/_sim/clock", post(advance_clock))
        .route("/_sim/usage/{month}", put(put_usage).delete(delete_usage))
}

async fn state(State(s): State<Shared>) -> Json<Value> {
    Json(lock(&s).dump())
}

async fn load_scenario(State(s): State<Shared>, Json(scenario): Json<Scenario>) -> StatusCode {
    lock(&s).load(scenario);
    StatusCode::NO_CONTENT
}

async fn reset(State(s): State<Shared>) -> StatusCode {
    let mut st = lock(&s);
    let scenario = st.scenario.clone();
    st.load(scenario);
    StatusCode::NO_CONTENT
}

async fn requests(State(s): State<Shared>) -> Json<Value> {
    Json(json!(lock(&s).log))
}

async fn clear_requests(State(s): State<Shared>) -> StatusCode {
    let mut st = lock(&s);
    st.log.clear();
    st.counters = Default::default();
    StatusCode::NO_CONTENT
}

async fn counters(State(s): State<Shared>) -> Json<Value> {
    Json(json!(lock(&s).counters))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LatencyBody {
    api: Api,
    #[serde(flatten)]
    latency: Latency,
}

async fn set_latency(State(s): State<Shared>, Json(body): Json<LatencyBody>) -> StatusCode {
    lock(&s).latency.insert(body.api, body.latency);
    StatusCode::NO_CONTENT
}

async fn faults(State(s): State<Shared>) -> Json<Value> {
    Json(json!(lock(&s).faults))
}

async fn add_fault(State(s): State<Shared>, Json(fault): Json<Fault>) -> StatusCode {
    lock(&s).faults.push(fault);
    StatusCode::CREATED
}

async fn clear_faults(State(s): State<Shared>) -> StatusCode {
    lock(&s).faults.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClockBody {
    advance_seconds: i64,
}

async fn advance_clock(State(s): State<Shared>, Json(body): Json<ClockBody>) -> StatusCode {
    lock(&s).clock_offset += chrono::Duration::seconds(body.advance_seconds);
    StatusCode::NO_CONTENT
}

async fn put_usage(
    State(s): State<Shared>,
    Path(month): Path<String>,
    Json(items): Json<Vec<Value>>,
) -> Response {
    if !valid_month(&month) {
        return bad_month(&month);
    }
    lock(&s).scenario.sophos.usage.insert(month, items);
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_usage(State(s): State<Shared>, Path(month): Path<String>) -> Response {
    if !valid_month(&month) {
        return bad_month(&month);
    }
    lock(&s).scenario.sophos.usage.remove(&month);
    StatusCode::NO_CONTENT.into_response()
}

fn valid_month(m: &str) -> bool {
    chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").is_ok() && m.len() == 7
}

fn bad_month(m: &str) -> Response {
    let msg = format!("month {m:?} is not YYYY-MM");
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}
