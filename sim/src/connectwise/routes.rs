//! ConnectWise PSA (Manage) REST routes, per ConnectWise's API documentation and the spec subset.
//!
//! | route | methods |
//! |---|---|
//! | `/login/companyinfo/{companyId}` | GET, no auth (codebase discovery) |
//! | `/{codebase}apis/3.0/company/companies` | GET, POST; `/count`; `/{id}` GET, PATCH, PUT, DELETE |
//! | `…/finance/agreements`, `…/finance/agreements/types` | same |
//! | `…/finance/agreements/{parentId}/additions` | same; 404 when the agreement does not exist |
//! | `…/procurement/catalog`, `…/types`, `…/categories`, `…/subcategories`, `…/unitOfMeasures` | same |
//!
//! Every API route needs `Authorization: Basic base64("{companyId}+{publicKey}:{privateKey}")`
//! and a `clientId` header. Lists take `conditions`, `orderBy`, `fields`, `page`,
//! `pageSize`, `pageId` and `pagination-type: forward-only` (see [`super::listing`]).
//! Not simulated: `childConditions`, `customFieldConditions` (ignored), the
//! `Accept` version pin, security-role rights, other ConnectWise endpoints.

// Errors are ready-made vendor responses returned on the rare failure path;
// boxing them would only add noise to every handler.
#![allow(clippy::result_large_err)]

use super::listing::{self, ListQuery, RequestUrl};
use super::patch::apply_patch;
use super::query;
use super::resources::{self, FROM_CATALOG, RESOURCES, Resource};
use super::validate::{self, FieldError, resource_name};
use crate::scenario::ConnectWiseScenario;
use crate::state::{Shared, SimState, lock};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

type CwResult<T> = Result<T, Response>;

pub fn router() -> Router<Shared> {
    RESOURCES
        .iter()
        .fold(Router::new(), add_resource)
        .route("/login/companyinfo/{company_id}", get(company_info))
        .fallback(|| async {
            cw_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The requested resource was not found.",
            )
        })
}

/// Collection, `/count` and item routes of one resource. Path parameters are
/// read by position (codebase, parent id, item id): the router needs one name
/// per position, and `{item}` is the agreement id for additions.
fn add_resource(router: Router<Shared>, res: &'static Resource) -> Router<Shared> {
    let base = format!("/{{codebase}}/apis/3.0/{}", res.path);
    let item = if res.parent.is_some() {
        format!("{base}/{{child}}")
    } else {
        format!("{base}/{{item}}")
    };
    let collection = get(move |ctx: Ctx| async move { list(res, ctx) })
        .post(move |ctx: Ctx, body: Bytes| async move { create(res, ctx, &body) });
    let one = get(move |ctx: Ctx| async move { get_one(res, ctx) })
        .patch(move |ctx: Ctx, body: Bytes| async move { patch(res, ctx, &body) })
        .put(move |ctx: Ctx, body: Bytes| async move { put(res, ctx, &body) })
        .delete(move |ctx: Ctx| async move { delete(res, ctx) });
    router
        .route(&base, collection)
        .route(
            &format!("{base}/count"),
            get(move |ctx: Ctx| async move { count(res, ctx) }),
        )
        .route(&item, one)
}

// ------------------------------------------------------------------ responses

/// ConnectWise answers `application/json; charset=utf-8` (ConnectWise's OpenAPI document).
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let json = HeaderValue::from_static("application/json; charset=utf-8");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    response
}

pub fn cw_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, &json!({"code": code, "message": message}))
}

fn not_found(label: &str, id: &str) -> Response {
    cw_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{label} with id {id} not found."),
    )
}

/// ConnectWise's documented 400 body: `InvalidObject` with one entry per field.
fn invalid(schema: &str, errors: Vec<FieldError>) -> Response {
    let message = format!("{} object is invalid", resource_name(schema));
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"code": "InvalidObject", "message": message, "errors": errors}),
    )
}

fn done(result: CwResult<Response>) -> Response {
    result.unwrap_or_else(|response| response)
}

// ------------------------------------------------------------------ request context and auth

/// An authenticated API request: rejects wrong codebases (404) and bad
/// credentials (401) before any handler runs.
struct Ctx {
    shared: Shared,
    params: Vec<String>,
    uri: Uri,
    headers: HeaderMap,
}

impl FromRequestParts<Shared> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Shared) -> Result<Self, Response> {
        let Path(named) = Path::<Vec<(String, String)>>::from_request_parts(parts, shared)
            .await
            .map_err(IntoResponse::into_response)?;
        let params: Vec<String> = named.into_iter().map(|(_, value)| value).collect();
        admit(&lock(shared).scenario.connectwise, &params, &parts.headers)?;
        Ok(Ctx {
            shared: shared.clone(),
            params,
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

fn admit(cw: &ConnectWiseScenario, params: &[String], headers: &HeaderMap) -> CwResult<()> {
    let codebase = params.first().map(String::as_str).unwrap_or("");
    if codebase.trim_matches('/') != cw.codebase.trim_matches('/') {
        return Err(cw_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Unknown codebase '{codebase}/'."),
        ));
    }
    let unauthorized = |msg: &str| Err(cw_error(StatusCode::UNAUTHORIZED, "Unauthorized", msg));
    match headers.get("clientid").and_then(|v| v.to_str().ok()) {
        None => return unauthorized("The clientId header is required."),
        Some(id) if !id.trim().eq_ignore_ascii_case(&cw.client_id) => {
            return unauthorized("The clientId is not a registered integration.");
        }
        Some(_) => {}
    }
    if !credentials_ok(cw, headers) {
        return unauthorized("The API member's credentials are not valid.");
    }
    Ok(())
}

/// `Basic base64("{companyId}+{publicKey}:{privateKey}")`; the company id is
/// case-insensitive as at login, the keys are not.
fn credentials_ok(cw: &ConnectWiseScenario, headers: &HeaderMap) -> bool {
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| STANDARD.decode(encoded.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(decoded) = decoded else { return false };
    let Some((user, private)) = decoded.split_once(':') else {
        return false;
    };
    let Some((company, public)) = user.split_once('+') else {
        return false;
    };
    company.eq_ignore_ascii_case(&cw.company_id)
        && public == cw.public_key
        && private == cw.private_key
}

async fn company_info(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(company): Path<String>,
) -> Response {
    let st = lock(&shared);
    let cw = &st.scenario.connectwise;
    if !company.eq_ignore_ascii_case(&cw.company_id) {
        return cw_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Company '{company}' not found."),
        );
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let body = json!({
        "CompanyName": "Sim MSP",
        "Codebase": cw.codebase,
        "VersionCode": "v2025.1",
        "VersionNumber": "v4.6.90000",
        "CompanyID": cw.company_id,
        "IsCloud": true,
        "SiteUrl": host,
    });
    json_response(StatusCode::OK, &body)
}

// ------------------------------------------------------------------ lookups

/// The parent agreement of a nested resource; 404 when it does not exist.
fn parent_of(res: &Resource, st: &SimState, ctx: &Ctx) -> CwResult<Option<Value>> {
    let Some(parent) = &res.parent else {
        return Ok(None);
    };
    let raw = ctx.params.get(1).map(String::as_str).unwrap_or("");
    raw.parse::<i64>()
        .ok()
        .and_then(|id| st.record_by_id(parent.collection, id))
        .cloned()
        .map(Some)
        .ok_or_else(|| not_found(parent.label, raw))
}

/// Positions of the records a list of `res` starts from: a nested resource's
/// come from the index of its parent's children, so listing one agreement's
/// additions reads only those.
fn scope(res: &Resource, st: &SimState, parent: Option<&Value>) -> Vec<usize> {
    match parent.and_then(|p| p["id"].as_i64()) {
        Some(parent_id) if res.parent.is_some() => {
            st.child_positions(res.collection, parent_id).to_vec()
        }
        _ => (0..st.collection(res.collection).len()).collect(),
    }
}

/// The records of `res` in scope, in collection order.
fn in_scope<'a>(
    res: &Resource,
    st: &'a SimState,
    parent: Option<&Value>,
) -> impl Iterator<Item = &'a Value> {
    let items = st.collection(res.collection);
    scope(res, st, parent).into_iter().map(move |i| &items[i])
}

/// Index of the item the URL names, within the parent's scope.
fn find(res: &Resource, st: &SimState, parent: Option<&Value>, ctx: &Ctx) -> CwResult<usize> {
    let raw = ctx.params.last().map(String::as_str).unwrap_or("");
    let id = raw.parse::<i64>().ok();
    let found = match (id, parent.and_then(|p| p["id"].as_i64())) {
        (None, _) => None,
        (Some(id), Some(parent_id)) if res.parent.is_some() => {
            let items = st.collection(res.collection);
            st.child_positions(res.collection, parent_id)
                .iter()
                .copied()
                .find(|&i| items[i]["id"].as_i64() == Some(id))
        }
        (Some(id), _) => st.position_by_id(res.collection, id),
    };
    found.ok_or_else(|| not_found(res.schema, raw))
}

// ------------------------------------------------------------------ reads

fn list(res: &Resource, ctx: Ctx) -> Response {
    done(list_page(res, &lock(&ctx.shared), &ctx))
}

fn list_page(res: &Resource, st: &SimState, ctx: &Ctx) -> CwResult<Response> {
    let parent = parent_of(res, st, ctx)?;
    let q = ListQuery::parse(res.schema, &ctx.uri, &ctx.headers)?;
    let items: Vec<Value> = in_scope(res, st, parent.as_ref())
        .filter(|i| query::matches(&q.conditions, i))
        .cloned()
        .collect();
    let page = q.paginate(items, &RequestUrl::new(&ctx.uri, &ctx.headers));
    let mut response = json_response(StatusCode::OK, &Value::Array(page.items));
    if let Some(link) = page.link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

fn count(res: &Resource, ctx: Ctx) -> Response {
    done(count_matching(res, &lock(&ctx.shared), &ctx))
}

fn count_matching(res: &Resource, st: &SimState, ctx: &Ctx) -> CwResult<Response> {
    let parent = parent_of(res, st, ctx)?;
    let conditions = listing::conditions(res.schema, &ctx.uri)?;
    let n = in_scope(res, st, parent.as_ref())
        .filter(|i| query::matches(&conditions, i))
        .count();
    Ok(json_response(StatusCode::OK, &json!({"count": n})))
}

fn get_one(res: &Resource, ctx: Ctx) -> Response {
    done(fetch(res, &lock(&ctx.shared), &ctx))
}

fn fetch(res: &Resource, st: &SimState, ctx: &Ctx) -> CwResult<Response> {
    let parent = parent_of(res, st, ctx)?;
    let item = &st.collection(res.collection)[find(res, st, parent.as_ref(), ctx)?];
    let fields = listing::fields(&ctx.uri)?;
    Ok(json_response(
        StatusCode::OK,
        &query::project_fields(item, &fields),
    ))
}

// ------------------------------------------------------------------ writes

fn parse_body(body: &[u8]) -> CwResult<Value> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = format!("The request body is not valid JSON: {e}");
        cw_error(StatusCode::BAD_REQUEST, "InvalidObject", &msg)
    })
}

/// Validates against the vendor schema. Empty strings count as "not given"
/// (ConnectWise sends unset dates as `""` and takes them back).
fn check(schema: &str, body: &Value, for_update: bool) -> CwResult<()> {
    let mut given = body.clone();
    if let Some(map) = given.as_object_mut() {
        map.retain(|_, v| v.as_str() != Some(""));
    }
    let errors = validate::validate_body(schema, &given, for_update);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(schema, errors))
    }
}

fn create(res: &Resource, ctx: Ctx, body: &[u8]) -> Response {
    done(insert(res, &mut lock(&ctx.shared), &ctx, body))
}

/// POST: never refuses a duplicate catalog item or addition, as ConnectWise
/// does not either (ConnectWise's API documentation: the client must look up before creating).
fn insert(res: &Resource, st: &mut SimState, ctx: &Ctx, body: &[u8]) -> CwResult<Response> {
    let parent = parent_of(res, st, ctx)?;
    let body = parse_body(body)?;
    check(res.schema, &body, false)?;
    let record = resources::complete(res.schema, st, parent.as_ref(), None, body)
        .map_err(|e| invalid(res.schema, e))?;
    let id = st.allocate_id();
    let record = resources::stamp(record, id, st, None);
    st.push(res.collection, record.clone());
    Ok(json_response(StatusCode::CREATED, &record))
}

fn patch(res: &Resource, ctx: Ctx, body: &[u8]) -> Response {
    done(patch_record(res, &mut lock(&ctx.shared), &ctx, body))
}

fn patch_record(res: &Resource, st: &mut SimState, ctx: &Ctx, body: &[u8]) -> CwResult<Response> {
    let parent = parent_of(res, st, ctx)?;
    let index = find(res, st, parent.as_ref(), ctx)?;
    let existing = st.collection(res.collection)[index].clone();
    let ops = parse_body(body)?;
    let patched = apply_patch(&existing, &ops)
        .map_err(|msg| cw_error(StatusCode::BAD_REQUEST, "InvalidObject", &msg))?;
    let patched = redefault(res, &existing, patched, &ops);
    check(res.schema, &patched, false)?;
    save(res, st, parent.as_ref(), index, &existing, patched)
}

/// A new `product` re-defaults the catalog-derived fields the same PATCH does
/// not set (ConnectWise's API documentation).
fn redefault(res: &Resource, existing: &Value, mut patched: Value, ops: &Value) -> Value {
    if res.schema != "Addition" || existing.get("product") == patched.get("product") {
        return patched;
    }
    let touched: Vec<String> = ops
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|op| op.get("path")?.as_str())
        .map(|p| {
            p.trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .collect();
    if let Some(map) = patched.as_object_mut() {
        for field in FROM_CATALOG
            .iter()
            .filter(|f| !touched.contains(&f.to_ascii_lowercase()))
        {
            map.remove(*field);
        }
    }
    patched
}

fn put(res: &Resource, ctx: Ctx, body: &[u8]) -> Response {
    done(replace(res, &mut lock(&ctx.shared), &ctx, body))
}

/// PUT replaces the whole record: fields not sent fall back to defaults.
fn replace(res: &Resource, st: &mut SimState, ctx: &Ctx, body: &[u8]) -> CwResult<Response> {
    let parent = parent_of(res, st, ctx)?;
    let index = find(res, st, parent.as_ref(), ctx)?;
    let existing = st.collection(res.collection)[index].clone();
    let body = parse_body(body)?;
    check(res.schema, &body, true)?;
    save(res, st, parent.as_ref(), index, &existing, body)
}

fn save(
    res: &Resource,
    st: &mut SimState,
    parent: Option<&Value>,
    index: usize,
    existing: &Value,
    record: Value,
) -> CwResult<Response> {
    let id = existing["id"].as_i64().unwrap_or_default();
    let record = resources::complete(res.schema, st, parent, Some(id), record)
        .map_err(|e| invalid(res.schema, e))?;
    let record = resources::stamp(record, id, st, Some(existing));
    st.replace(res.collection, index, record.clone());
    Ok(json_response(StatusCode::OK, &record))
}

fn delete(res: &Resource, ctx: Ctx) -> Response {
    done(remove(res, &mut lock(&ctx.shared), &ctx))
}

fn remove(res: &Resource, st: &mut SimState, ctx: &Ctx) -> CwResult<Response> {
    let parent = parent_of(res, st, ctx)?;
    let index = find(res, st, parent.as_ref(), ctx)?;
    let removed = st.collection_mut(res.collection).remove(index);
    if res.collection == "agreements" {
        // An agreement's additions go with it.
        let id = removed["id"].as_i64();
        st.collection_mut("additions")
            .retain(|a| a["agreementId"].as_i64() != id);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
