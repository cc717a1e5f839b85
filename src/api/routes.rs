//! The routes: matching a path, then one handler per route and method.

use super::errors::ApiError;
use super::{ApiResponse, ok};
use crate::app::{App, StartOutcome};
use crate::config::Settings;
use crate::domain::month::Month;
use crate::store::{AuditFilter, HeldStatus, MAX_PAGE, Mapping, MappingKind};
use crate::sync::review::{self, Decision};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Sync,
    Runs,
    Run(String),
    Status,
    Audit,
    Mappings,
    Mapping(String),
    Settings,
    Review,
    /// `POST /review/{id}/approve` or `.../reject`.
    Decide(String, Decision),
}

impl Route {
    /// The methods the route answers.
    pub fn allow(&self) -> &'static [&'static str] {
        match self {
            Route::Sync => &["POST"],
            Route::Runs | Route::Run(_) | Route::Status | Route::Audit | Route::Mappings => {
                &["GET"]
            }
            Route::Mapping(_) => &["PUT", "DELETE"],
            Route::Settings => &["GET", "PUT"],
            Route::Review => &["GET"],
            Route::Decide(..) => &["POST"],
        }
    }
}

/// The route of `path` (one trailing slash is tolerated), or a 404.
pub fn resolve(path: &str) -> Result<Route, ApiError> {
    let trimmed = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    let segments: Vec<&str> = trimmed.strip_prefix('/').unwrap_or("").split('/').collect();
    let not_found = || {
        ApiError::not_found(
            "no such route: use POST /sync, GET /runs, GET /runs/{runId}, GET /status, GET /audit, GET /mappings, PUT or DELETE /mappings/{tenantId}, GET or PUT /settings, GET /review, POST /review/{id}/approve or /reject",
        )
    };
    let param = |raw: &str| -> Result<String, ApiError> {
        let value = percent_decode(raw, false).ok_or_else(|| {
            ApiError::bad_request("the path is not valid: check its percent-encoding")
        })?;
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(not_found());
        }
        Ok(value)
    };
    Ok(match segments.as_slice() {
        ["sync"] => Route::Sync,
        ["runs"] => Route::Runs,
        ["runs", id] => Route::Run(param(id)?),
        ["status"] => Route::Status,
        ["audit"] => Route::Audit,
        ["mappings"] => Route::Mappings,
        ["mappings", tenant] => Route::Mapping(param(tenant)?),
        ["settings"] => Route::Settings,
        ["review"] => Route::Review,
        ["review", id, "approve"] => Route::Decide(param(id)?, Decision::Approve),
        ["review", id, "reject"] => Route::Decide(param(id)?, Decision::Reject),
        _ => return Err(not_found()),
    })
}

pub async fn run(
    app: &App,
    route: Route,
    method: &str,
    query: &str,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    match (route, method) {
        (Route::Sync, "POST") => start_sync(app, body).await,
        (Route::Runs, "GET") => list_runs(app, query).await,
        (Route::Run(id), "GET") => get_run(app, &id, query).await,
        (Route::Status, "GET") => status(app, query).await,
        (Route::Audit, "GET") => audit(app, query).await,
        (Route::Mappings, "GET") => list_mappings(app).await,
        (Route::Mapping(tenant), "PUT") => put_mapping(app, &tenant, body).await,
        (Route::Mapping(tenant), "DELETE") => delete_mapping(app, &tenant).await,
        (Route::Settings, "GET") => Ok(ok(to_json(&app.settings().await?)?)),
        (Route::Settings, "PUT") => put_settings(app, body).await,
        (Route::Review, "GET") => list_review(app, query).await,
        (Route::Decide(id, decision), "POST") => decide(app, &id, decision, body).await,
        // `handle` answers 405 before getting here.
        (route, method) => Err(ApiError::method_not_allowed(
            method,
            "this path",
            route.allow(),
        )),
    }
}

// ---------------------------------------------------------------- POST /sync

/// While the sync is paused a writing request starts nothing and is answered 409
/// with who paused it and how to resume; a dry run is still started.
async fn start_sync(app: &App, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let SyncBody {
        month,
        dry_run,
        accept_usage_drop,
    } = sync_body(body)?;
    match app
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

async fn list_runs(app: &App, query: &str) -> Result<ApiResponse, ApiError> {
    let q = Query::parse(query, &["limit", "before"])?;
    let limit = q.limit(20, 100)?;
    let before = q.get("before").filter(|b| !b.is_empty());
    let runs = app.store.list_runs(limit, before).await?;
    let next = match runs.last() {
        Some(last) if runs.len() == limit => Value::String(last.run_id.clone()),
        _ => Value::Null,
    };
    Ok(ok(json!({"items": to_json(&runs)?, "next": next})))
}

/// Customers per page of `GET /runs/{id}` and `GET /status`: a page stays far below
/// API Gateway's 6 MB response limit whatever the partner's size.
const CUSTOMER_PAGE: usize = 100;

/// The run's record (its summary) with one page of its customers, in tenant-id
/// order; `next` is the `after` of the following page (null on the last).
async fn get_run(app: &App, id: &str, query: &str) -> Result<ApiResponse, ApiError> {
    let q = Query::parse(query, &["limit", "after"])?;
    let limit = q.limit(CUSTOMER_PAGE, MAX_PAGE)?;
    let after = q.get("after").filter(|a| !a.is_empty());
    let Some(run) = app.store.get_run(id).await? else {
        return Err(ApiError::not_found(format!(
            "no run {id:?}: GET /runs lists the known run ids"
        )));
    };
    let page = app.store.list_run_customers(id, limit, after).await?;
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
async fn status(app: &App, query: &str) -> Result<ApiResponse, ApiError> {
    let q = Query::parse(query, &["limit", "after"])?;
    let limit = q.limit(CUSTOMER_PAGE, MAX_PAGE)?;
    let after = q.get("after").filter(|a| !a.is_empty());
    let page = app.store.list_customer_statuses(limit, after).await?;
    let customers: Vec<Value> = page.items.into_iter().map(|s| s.report).collect();
    let next = page.next.map_or(Value::Null, Value::String);
    Ok(ok(json!({"customers": customers, "next": next})))
}

async fn audit(app: &App, query: &str) -> Result<ApiResponse, ApiError> {
    let q = Query::parse(query, &["limit", "runId", "actor"])?;
    let limit = q.limit(100, 1000)?;
    // `actor` is exact: `console:alice@example.com`, `cli:bob`, `api:token`.
    let filter = AuditFilter {
        run_id: q.get("runId").filter(|r| !r.is_empty()).map(str::to_owned),
        actor: q.get("actor").filter(|a| !a.is_empty()).map(str::to_owned),
        ..AuditFilter::default()
    };
    let entries = app.store.list_audit_matching(&filter, limit).await?;
    Ok(ok(json!({"items": to_json(&entries)?})))
}

// ---------------------------------------------------------------- mappings

async fn list_mappings(app: &App) -> Result<ApiResponse, ApiError> {
    let mappings = app.store.list_mappings().await?;
    Ok(ok(json!({"items": to_json(&mappings)?})))
}

async fn put_mapping(app: &App, tenant_id: &str, body: &[u8]) -> Result<ApiResponse, ApiError> {
    const SHAPE: &str =
        "{\"companyId\":110}, {\"companyId\":110,\"agreementId\":210} or {\"ignore\":true}";
    let obj = json_object(body, SHAPE)?;
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

async fn delete_mapping(app: &App, tenant_id: &str) -> Result<ApiResponse, ApiError> {
    if app.clear_mapping(tenant_id, API_ACTOR).await?.is_some() {
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

/// One page of held changes, latest month first: the open ones (held or approved),
/// or with `all=true` every status. `next` is the `after` of the following page.
async fn list_review(app: &App, query: &str) -> Result<ApiResponse, ApiError> {
    let q = Query::parse(query, &["all", "limit", "after"])?;
    let all = match q.get("all") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("all must be true or false")),
    };
    let limit = q.limit(REVIEW_PAGE, MAX_PAGE)?;
    let after = q.get("after").filter(|a| !a.is_empty());
    let page = app.store.list_held_changes(!all, limit, after).await?;
    let next = page.next.map_or(Value::Null, Value::String);
    Ok(ok(json!({"items": to_json(&page.items)?, "next": next})))
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

async fn put_settings(app: &App, body: &[u8]) -> Result<ApiResponse, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the body is empty: send the full settings JSON (GET /settings shows the current ones)",
        ));
    }
    // Settings hold no secrets, so serde's message (field names, expected types) is
    // passed on: it says exactly what to fix.
    // Syntax first (serde_json files some shape errors, e.g. a number for an enum,
    // under syntax), then the shape.
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_json(&e))?;
    let settings: Settings = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("the settings are not valid: {e}")))?;
    let saved = app.update_settings(settings, API_ACTOR, None).await?;
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

/// A decoded query string whose parameter names were checked.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str, allowed: &[&str]) -> Result<Self, ApiError> {
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

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
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
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve() {
        assert_eq!(resolve("/sync").unwrap(), Route::Sync);
        assert_eq!(resolve("/sync/").unwrap(), Route::Sync);
        assert_eq!(resolve("/runs/r1").unwrap(), Route::Run("r1".into()));
        assert_eq!(
            resolve("/mappings/a%2Db").unwrap(),
            Route::Mapping("a-b".into())
        );
        for missing in ["/", "", "/nope", "/runs/a/b", "//sync", "/mappings/%20"] {
            assert_eq!(resolve(missing).unwrap_err().status, 404, "{missing}");
        }
        assert_eq!(resolve("/runs/%zz").unwrap_err().status, 400);
        assert_eq!(resolve("/review").unwrap(), Route::Review);
        assert_eq!(
            resolve("/review/2026-11-abc/approve").unwrap(),
            Route::Decide("2026-11-abc".into(), Decision::Approve)
        );
        assert_eq!(
            resolve("/review/2026-11-abc/reject/").unwrap(),
            Route::Decide("2026-11-abc".into(), Decision::Reject)
        );
        for missing in ["/review/x", "/review/x/delete", "/review/%20/approve"] {
            assert_eq!(resolve(missing).unwrap_err().status, 404, "{missing}");
        }
    }

    #[test]
    fn queries_are_checked() {
        let q = Query::parse("limit=5&before=r%201", &["limit", "before"]).unwrap();
        assert_eq!(q.limit(20, 100).unwrap(), 5);
        assert_eq!(q.get("before"), Some("r 1"));
        for bad in ["limit=abc", "limit=0", "limit=101", "limit=-1", "limit="] {
            let q = Query::parse(bad, &["limit"]).unwrap();
            assert_eq!(q.limit(20, 100).unwrap_err().status, 400, "{bad}");
        }
        assert!(Query::parse("limt=5", &["limit"]).is_err());
        assert!(Query::parse("limit=5&limit=6", &["limit"]).is_err());
        assert!(Query::parse("limit=%G1", &["limit"]).is_err());
    }

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
