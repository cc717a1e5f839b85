//! The API's routes on the shared state, one thin handler per route and method:
//! the path parameter, the query and the body are read by the extractors of
//! [`super::extract`], the work is the application's.

use super::errors::ApiError;
use super::extract::{NO_SUCH_ROUTE, Pairs, Param, Query, QueryParams, limit_body};
use super::{ApiResponse, ok};
use crate::app::{App, StartOutcome};
use crate::config::Settings;
use crate::domain::month::Month;
use crate::state::Web;
use crate::store::{AuditFilter, HeldStatus, MAX_PAGE, Mapping, MappingKind};
use crate::sync::review::{self, Decision};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::Method;
use axum::routing::{MethodRouter, get, post, put};
use serde_json::{Map, Value, json};

/// Every route of the API; any other path is a 404 naming them ([`NO_SUCH_ROUTE`]).
pub fn routes() -> Router<Web> {
    Router::new()
        .route("/sync", methods(&["POST"], post(start_sync)))
        .route("/runs", methods(&["GET"], get(list_runs)))
        .route("/runs/{run_id}", methods(&["GET"], get(get_run)))
        .route("/status", methods(&["GET"], get(status)))
        .route("/audit", methods(&["GET"], get(audit)))
        .route("/mappings", methods(&["GET"], get(list_mappings)))
        .route(
            "/mappings/{tenant_id}",
            methods(&["PUT", "DELETE"], put(put_mapping).delete(delete_mapping)),
        )
        .route(
            "/settings",
            methods(&["GET", "PUT"], get(get_settings).put(put_settings)),
        )
        .route("/review", methods(&["GET"], get(list_review)))
        .route("/review/{id}/approve", methods(&["POST"], post(approve)))
        .route("/review/{id}/reject", methods(&["POST"], post(reject)))
        .fallback(no_such_route)
}

/// A path's handlers, which `allow` names: any other method (`HEAD` too) is a 405
/// naming them, and an answered one's body is bounded first ([`limit_body`]).
fn methods(allow: &'static [&'static str], handlers: MethodRouter<Web>) -> MethodRouter<Web> {
    let refuse = move |method: Method, OriginalUri(uri): OriginalUri| async move {
        ApiError::method_not_allowed(method.as_str(), uri.path(), allow)
    };
    let handlers = handlers.route_layer(axum::middleware::from_fn(limit_body));
    // axum answers HEAD with the GET handler; the API answers the methods it names.
    let handlers = match allow.contains(&"GET") {
        true => handlers.head(refuse),
        false => handlers,
    };
    handlers.fallback(refuse)
}

async fn no_such_route() -> ApiError {
    ApiError::not_found(NO_SUCH_ROUTE)
}

// ---------------------------------------------------------------- POST /sync

/// While the sync is paused a writing request starts nothing and is answered 409
/// with who paused it and how to resume; a dry run is still started.
async fn start_sync(State(web): State<Web>, body: Bytes) -> Result<ApiResponse, ApiError> {
    let SyncBody {
        month,
        dry_run,
        accept_usage_drop,
    } = sync_body(&body)?;
    match web
        .app
        .start_sync_with(month, dry_run, accept_usage_drop, API_ACTOR)
        .await?
    {
        StartOutcome::Started { run_id } => Ok(ApiResponse {
            status: 202,
            body: json!({"runId": run_id, "status": "queued", "dryRun": dry_run}),
        }),
        StartOutcome::Busy { run_id } => Err(ApiError::new(409, "a sync cycle is already running")
            .with("runId", Value::String(run_id))),
        StartOutcome::Paused { reason } => Err(paused(&reason)),
    }
}

/// The 409 of a writing run asked for while the sync is paused.
fn paused(reason: &str) -> ApiError {
    ApiError::new(
        409,
        format!(
            "{reason}. No run was started. Resume with PUT /settings and \"paused\": false, the Resume button on the console's Settings page, or `sophos-cw-sync resume`; a dry run ({{\"dryRun\":true}}) still plans"
        ),
    )
    .with("status", Value::String("paused".into()))
}

/// What `POST /sync` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SyncBody {
    month: Option<Month>,
    dry_run: bool,
    accept_usage_drop: bool,
}

/// `{"month":"YYYY-MM","dryRun":true,"acceptUsageDrop":true}`, all optional; an
/// empty body is `{}`.
fn sync_body(body: &[u8]) -> Result<SyncBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(SyncBody {
            month: None,
            dry_run: false,
            accept_usage_drop: false,
        });
    }
    let obj = json_object(
        body,
        "{\"month\":\"2026-05\",\"dryRun\":true,\"acceptUsageDrop\":true} (all optional; or send no body)",
    )?;
    only_fields(&obj, &["month", "dryRun", "acceptUsageDrop"])?;
    let month = match obj.get("month") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.parse::<Month>().map_err(ApiError::bad_request)?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "month must be a string YYYY-MM, e.g. \"2026-05\"",
            ));
        }
    };
    Ok(SyncBody {
        month,
        dry_run: flag(&obj, "dryRun")?,
        accept_usage_drop: flag(&obj, "acceptUsageDrop")?,
    })
}

/// A true/false field; absent or null is false.
fn flag(obj: &Map<String, Value>, field: &str) -> Result<bool, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(format!(
            "{field} must be true or false"
        ))),
    }
}

// ---------------------------------------------------------------- runs

/// `GET /runs?limit=N&before=<runId>`.
struct RunsQuery {
    limit: usize,
    before: Option<String>,
}

impl QueryParams for RunsQuery {
    const NAMES: &'static [&'static str] = &["limit", "before"];
    fn read(q: &Pairs) -> Result<Self, ApiError> {
        Ok(Self {
            limit: q.limit(20, 100)?,
            before: q.given("before"),
        })
    }
}

async fn list_runs(
    State(web): State<Web>,
    Query(q): Query<RunsQuery>,
) -> Result<ApiResponse, ApiError> {
    let runs = web
        .app
        .store
        .list_runs(q.limit, q.before.as_deref())
        .await?;
    let next = match runs.last() {
        Some(last) if runs.len() == q.limit => Value::String(last.run_id.clone()),
        _ => Value::Null,
    };
    Ok(ok(json!({"items": to_json(&runs)?, "next": next})))
}

/// Customers per page of `GET /runs/{id}` and `GET /status`: a page stays far below
/// API Gateway's 6 MB response limit whatever the partner's size.
const CUSTOMER_PAGE: usize = 100;

/// `?limit=N&after=<tenantId>`: a page of customers in tenant-id order.
struct CustomerPage {
    limit: usize,
    after: Option<String>,
}

impl QueryParams for CustomerPage {
    const NAMES: &'static [&'static str] = &["limit", "after"];
    fn read(q: &Pairs) -> Result<Self, ApiError> {
        Ok(Self {
            limit: q.limit(CUSTOMER_PAGE, MAX_PAGE)?,
            after: q.given("after"),
        })
    }
}

/// The run's record (its summary) with one page of its customers, in tenant-id
/// order; `next` is the `after` of the following page (null on the last).
async fn get_run(
    State(web): State<Web>,
    Param(id): Param,
    Query(q): Query<CustomerPage>,
) -> Result<ApiResponse, ApiError> {
    let store = web.app.store.as_ref();
    let Some(run) = store.get_run(&id).await? else {
        return Err(ApiError::not_found(format!(
            "no run {id:?}: GET /runs lists the known run ids"
        )));
    };
    let page = store
        .list_run_customers(&id, q.limit, q.after.as_deref())
        .await?;
    let customers: Vec<Value> = page.items.into_iter().map(|c| c.report).collect();
    let mut body = to_json(&run)?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("customers".into(), Value::Array(customers));
        obj.insert("next".into(), page.next.map_or(Value::Null, Value::String));
    }
    Ok(ok(body))
}

// ---------------------------------------------------------------- status, audit

/// One page of the customers' latest results, in tenant-id order.
async fn status(
    State(web): State<Web>,
    Query(q): Query<CustomerPage>,
) -> Result<ApiResponse, ApiError> {
    let page = web
        .app
        .store
        .list_customer_statuses(q.limit, q.after.as_deref())
        .await?;
    let customers: Vec<Value> = page.items.into_iter().map(|s| s.report).collect();
    let next = page.next.map_or(Value::Null, Value::String);
    Ok(ok(json!({"customers": customers, "next": next})))
}

/// `GET /audit?limit=N&runId=<runId>&actor=<actor>`; `actor` is exact:
/// `console:alice@example.com`, `cli:bob`, `api:token`.
struct AuditQuery {
    limit: usize,
    filter: AuditFilter,
}

impl QueryParams for AuditQuery {
    const NAMES: &'static [&'static str] = &["limit", "runId", "actor"];
    fn read(q: &Pairs) -> Result<Self, ApiError> {
        Ok(Self {
            limit: q.limit(100, 1000)?,
            filter: AuditFilter {
                run_id: q.given("runId"),
                actor: q.given("actor"),
                ..AuditFilter::default()
            },
        })
    }
}

async fn audit(
    State(web): State<Web>,
    Query(q): Query<AuditQuery>,
) -> Result<ApiResponse, ApiError> {
    let entries = web
        .app
        .store
        .list_audit_matching(&q.filter, q.limit)
        .await?;
    Ok(ok(json!({"items": to_json(&entries)?})))
}

// ---------------------------------------------------------------- mappings

async fn list_mappings(State(web): State<Web>) -> Result<ApiResponse, ApiError> {
    let mappings = web.app.store.list_mappings().await?;
    Ok(ok(json!({"items": to_json(&mappings)?})))
}

async fn put_mapping(
    State(web): State<Web>,
    Param(tenant_id): Param,
    body: Bytes,
) -> Result<ApiResponse, ApiError> {
    const SHAPE: &str =
        "{\"companyId\":110}, {\"companyId\":110,\"agreementId\":210} or {\"ignore\":true}";
    let app = web.app.as_ref();
    let tenant_id = tenant_id.as_str();
    let obj = json_object(&body, SHAPE)?;
    only_fields(&obj, &["companyId", "agreementId", "ignore"])?;
    let ignore = match obj.get("ignore") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("ignore must be true or false")),
    };
    let company_id = positive_id(&obj, "companyId", "the ConnectWise company id")?;
    let agreement_id = positive_id(&obj, "agreementId", "the ConnectWise agreement id")?;
    if ignore && (company_id.is_some() || agreement_id.is_some()) {
        return Err(ApiError::bad_request(format!(
            "send either a companyId (and optionally an agreementId) or \"ignore\":true, not both: {SHAPE}"
        )));
    }
    if !ignore && company_id.is_none() {
        return Err(ApiError::bad_request(if agreement_id.is_some() {
            format!("agreementId needs the companyId of the agreement's company: {SHAPE}")
        } else {
            format!("say what to map the tenant to: {SHAPE}")
        }));
    }
    if !tenant_is_known(app, tenant_id).await? {
        return Err(ApiError::not_found(format!(
            "unknown tenant {tenant_id:?}: run a sync first so the tenant is known, or check the id (GET /status lists the tenants)"
        )));
    }
    let mapping = Mapping {
        tenant_id: tenant_id.to_owned(),
        kind: if ignore {
            MappingKind::Ignored
        } else {
            MappingKind::Manual
        },
        company_id,
        agreement_id,
        updated_at: chrono::Utc::now(),
    };
    app.set_mapping(&mapping, API_ACTOR).await?;
    Ok(ok(to_json(&mapping)?))
}

/// Known: the latest run reported it, or it already has a mapping.
async fn tenant_is_known(app: &App, tenant_id: &str) -> Result<bool, ApiError> {
    if app.store.get_mapping(tenant_id).await?.is_some() {
        return Ok(true);
    }
    Ok(app.store.get_customer_status(tenant_id).await?.is_some())
}

async fn delete_mapping(
    State(web): State<Web>,
    Param(tenant_id): Param,
) -> Result<ApiResponse, ApiError> {
    if web
        .app
        .clear_mapping(&tenant_id, API_ACTOR)
        .await?
        .is_some()
    {
        Ok(ok(json!({"deleted": true})))
    } else {
        Err(ApiError::not_found(format!(
            "tenant {tenant_id:?} has no mapping: GET /mappings lists the mappings"
        )))
    }
}

// ---------------------------------------------------------------- review

/// Who decides through the API: the one bearer token (the secret's webhookToken).
pub const API_ACTOR: &str = "api:token";

/// Held changes per page of `GET /review` by default.
const REVIEW_PAGE: usize = 100;

/// `GET /review?all=true&limit=N&after=<id>`.
struct ReviewQuery {
    all: bool,
    limit: usize,
    after: Option<String>,
}

impl QueryParams for ReviewQuery {
    const NAMES: &'static [&'static str] = &["all", "limit", "after"];
    fn read(q: &Pairs) -> Result<Self, ApiError> {
        let all = match q.get("all") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(ApiError::bad_request("all must be true or false")),
        };
        Ok(Self {
            all,
            limit: q.limit(REVIEW_PAGE, MAX_PAGE)?,
            after: q.given("after"),
        })
    }
}

/// One page of held changes, latest month first: the open ones (held or approved),
/// or with `all=true` every status. `next` is the `after` of the following page.
async fn list_review(
    State(web): State<Web>,
    Query(q): Query<ReviewQuery>,
) -> Result<ApiResponse, ApiError> {
    let page = web
        .app
        .store
        .list_held_changes(!q.all, q.limit, q.after.as_deref())
        .await?;
    let next = page.next.map_or(Value::Null, Value::String);
    Ok(ok(json!({"items": to_json(&page.items)?, "next": next})))
}

/// `POST /review/{id}/approve`.
async fn approve(
    State(web): State<Web>,
    Param(id): Param,
    body: Bytes,
) -> Result<ApiResponse, ApiError> {
    decide(&web.app, &id, Decision::Approve, &body).await
}

/// `POST /review/{id}/reject`.
async fn reject(
    State(web): State<Web>,
    Param(id): Param,
    body: Bytes,
) -> Result<ApiResponse, ApiError> {
    decide(&web.app, &id, Decision::Reject, &body).await
}

/// Approves or rejects one held change through `sync::review::decide`; an approve
/// with `{"sync":true}` then starts a run (as `POST /sync` does) so it is written now.
async fn decide(
    app: &App,
    id: &str,
    decision: Decision,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    let sync = decide_body(body, decision)?;
    let outcome = review::decide(app.store.as_ref(), &[id.to_owned()], decision, API_ACTOR)
        .await?
        .into_iter()
        .next()
        .ok_or_else(ApiError::internal)?;
    let change = match (outcome.change, outcome.error) {
        (Some(change), None) => change,
        (_, error) => {
            let message = error.unwrap_or_else(|| format!("held change {id} was not decided"));
            // Unknown: 404. Known but over (applied, closed) or busy: 409.
            return Err(match app.store.get_held_change(id).await? {
                None => ApiError::not_found(message),
                Some(h) => ApiError::new(409, message).with("status", to_json(&h.status)?),
            });
        }
    };
    let mut body = json!({"change": to_json(&change)?});
    if sync && change.status == HeldStatus::Approved {
        let month = change.month.parse::<Month>().ok();
        let (status, run) = match app.start_sync(month, false, API_ACTOR).await? {
            StartOutcome::Started { run_id } => (202, json!({"runId": run_id, "status": "queued"})),
            StartOutcome::Busy { run_id } => (
                200,
                json!({"runId": run_id, "status": "busy",
                    "message": "a sync cycle is already running: the approval is written by the next run"}),
            ),
            StartOutcome::Paused { reason } => (
                200,
                json!({"status": "paused",
                    "message": format!("{reason}: the approval is written by the first run after the sync is resumed (PUT /settings with \"paused\": false, the console's Settings page, or `sophos-cw-sync resume`)")}),
            ),
        };
        body["sync"] = run;
        return Ok(ApiResponse { status, body });
    }
    Ok(ok(body))
}

/// `{"sync":true}` (approve only), or no body.
fn decide_body(body: &[u8], decision: Decision) -> Result<bool, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let obj = json_object(body, "{\"sync\":true} (optional; or send no body)")?;
    if decision == Decision::Reject {
        return match obj.keys().next() {
            None => Ok(false),
            Some(k) => Err(ApiError::bad_request(format!(
                "unknown field {k:?} in the body: reject takes no fields (send no body or {{}})"
            ))),
        };
    }
    only_fields(&obj, &["sync"])?;
    match obj.get("sync") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request("sync must be true or false")),
    }
}

// ---------------------------------------------------------------- settings

async fn get_settings(State(web): State<Web>) -> Result<ApiResponse, ApiError> {
    Ok(ok(to_json(&web.app.settings().await?)?))
}

async fn put_settings(State(web): State<Web>, body: Bytes) -> Result<ApiResponse, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the body is empty: send the full settings JSON (GET /settings shows the current ones)",
        ));
    }
    // Settings hold no secrets, so serde's message (field names, expected types) is
    // passed on: it says exactly what to fix.
    // Syntax first (serde_json files some shape errors, e.g. a number for an enum,
    // under syntax), then the shape.
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_json(&e))?;
    let settings: Settings = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("the settings are not valid: {e}")))?;
    let saved = web.app.update_settings(settings, API_ACTOR, None).await?;
    Ok(ok(to_json(&saved.settings)?))
}

// ---------------------------------------------------------------- helpers

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise an API answer");
        ApiError::internal()
    })
}

/// The body as a JSON object; `shape` is shown when it is another JSON value.
fn json_object(body: &[u8], shape: &str) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_json(&e))?;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::bad_request(format!(
            "the body must be a JSON object: {shape}"
        ))),
    }
}

fn only_fields(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::bad_request(format!(
            "unknown field {unknown:?} in the body: the fields are {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn positive_id(obj: &Map<String, Value>, field: &str, what: &str) -> Result<Option<i64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v > 0) => Ok(n.as_i64()),
        Some(_) => Err(ApiError::bad_request(format!(
            "{field} must be a positive whole number ({what})"
        ))),
    }
}

/// What the routes answer, asked without running a handler: other modules'
/// tests check that what they name is a route (e.g. every error's advice).
#[cfg(test)]
pub(crate) mod probe {
    use super::routes;
    use crate::state::{ConsoleConfig, Web};
    use std::sync::Arc;
    use tower::ServiceExt;

    /// The methods `path` answers: a method no route takes (TRACE) is answered
    /// 405 with them. Err: why it answers none (the 404's message).
    pub fn methods_of(path: &str) -> Result<Vec<String>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let env = crate::config::Environment::from_vars(|_| None).map_err(|e| e.0)?;
            let store =
                crate::store::sqlite::SqliteStore::open_in_memory().map_err(|e| e.to_string())?;
            let (app, _invoker) = crate::serve::build_local_app(env, Arc::new(store));
            let router = routes().with_state(Web::new(app, ConsoleConfig::default()));
            let request = axum::http::Request::builder()
                .method("TRACE")
                .uri(path)
                .body(axum::body::Body::empty())
                .map_err(|e| e.to_string())?;
            let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .map_err(|e| e.to_string())?;
            let body: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            match (status, body["allow"].as_array()) {
                (405, Some(allow)) => Ok(allow
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect()),
                _ => Err(format!("{status} {}", body["error"])),
            }
        })
    }

    #[test]
    fn the_probe_tells_the_routes_and_their_methods() {
        assert_eq!(methods_of("/settings").unwrap(), ["GET", "PUT"]);
        assert_eq!(methods_of("/mappings/t1").unwrap(), ["PUT", "DELETE"]);
        assert_eq!(methods_of("/review/x/approve").unwrap(), ["POST"]);
        let nowhere = methods_of("/nowhere").unwrap_err();
        assert!(
            nowhere.starts_with("404") && nowhere.contains("no such route"),
            "{nowhere}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_bodies() {
        let plain = SyncBody {
            month: None,
            dry_run: false,
            accept_usage_drop: false,
        };
        assert_eq!(sync_body(b"").unwrap(), plain);
        assert_eq!(sync_body(b" {} ").unwrap(), plain);
        let b = sync_body(br#"{"month":"2026-05","dryRun":true}"#).unwrap();
        assert_eq!(
            (b.month.unwrap().to_string(), b.dry_run, b.accept_usage_drop),
            ("2026-05".into(), true, false)
        );
        assert!(
            sync_body(br#"{"acceptUsageDrop":true}"#)
                .unwrap()
                .accept_usage_drop
        );
        for bad in [
            &br#"{"acceptUsageDrop":"yes"}"#[..],
            br#"{"month":"2026-13"}"#,
            br#"{"month":202605}"#,
            br#"{"dryRun":"yes"}"#,
            br#"{"dry_run":true}"#,
            br#"[]"#,
            br#"{"#,
        ] {
            assert_eq!(sync_body(bad).unwrap_err().status, 400);
        }
        let e = sync_body(b"{\n  \"month\": oops}").unwrap_err();
        assert!(!decide_body(b"", Decision::Approve).unwrap());
        assert!(decide_body(br#"{"sync":true}"#, Decision::Approve).unwrap());
        assert_eq!(
            decide_body(br#"{"sync":"yes"}"#, Decision::Approve)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            decide_body(br#"{"sync":true}"#, Decision::Reject)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(e.message, "the body is not valid JSON: line 2 column 12");
    }
}
