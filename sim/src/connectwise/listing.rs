//! List and count queries: `conditions`, `orderBy`, `fields`, navigable paging
//! (`page`/`pageSize` with an RFC 5988 `Link` header) and forward-only paging
//! (`pagination-type: forward-only` with `pageId`), per ConnectWise's API documentation.

// Errors are ready-made vendor responses returned on the rare failure path;
// boxing them would only add noise to every handler.
#![allow(clippy::result_large_err)]

use super::query::{self, Expr, Literal};
use super::routes::cw_error;
use super::validate;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::Value;

/// ConnectWise's documented default and hard maximum page size.
const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 1000;
/// Query parameters that paging rewrites in `Link` URLs.
const PAGING_PARAMS: [&str; 3] = ["page", "pagesize", "pageid"];

pub struct ListQuery {
    pub conditions: Expr,
    order: Vec<(String, bool)>,
    pub fields: String,
    page: usize,
    page_size: usize,
    page_id: i64,
    forward_only: bool,
}

/// One page of results and the `Link` header value, if any.
pub struct Page {
    pub items: Vec<Value>,
    pub link: Option<String>,
}

type Pairs = Vec<(String, String)>;

fn pairs(uri: &Uri) -> Result<Pairs, Response> {
    Query::<Pairs>::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| cw_error(StatusCode::BAD_REQUEST, "ConnectWiseApi", &e.body_text()))
}

/// Query parameter names are case-insensitive on ConnectWise (ASP.NET binding).
fn param<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `conditions` alone, for `/count`.
pub fn conditions(schema: &str, uri: &Uri) -> Result<Expr, Response> {
    parse_conditions(schema, param(&pairs(uri)?, "conditions").unwrap_or(""))
}

/// `fields` alone, for a get by id.
pub fn fields(uri: &Uri) -> Result<String, Response> {
    Ok(param(&pairs(uri)?, "fields").unwrap_or("").to_owned())
}

impl ListQuery {
    pub fn parse(schema: &str, uri: &Uri, headers: &HeaderMap) -> Result<Self, Response> {
        let pairs = pairs(uri)?;
        let forward_only = headers
            .get("pagination-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("forward-only"));
        let order_text = param(&pairs, "orderBy").unwrap_or("");
        if forward_only && !order_text.trim().is_empty() {
            let msg = "orderBy is not supported with forward-only pagination.";
            return Err(cw_error(StatusCode::BAD_REQUEST, "ConnectWiseApi", msg));
        }
        let order = query::parse_order_by(order_text)
            .map_err(|e| cw_error(StatusCode::BAD_REQUEST, "ConnectWiseApi", &e.message))?;
        Ok(ListQuery {
            conditions: parse_conditions(schema, param(&pairs, "conditions").unwrap_or(""))?,
            order,
            fields: param(&pairs, "fields").unwrap_or("").to_owned(),
            page: number(&pairs, "page")?.filter(|p| *p >= 1).unwrap_or(1) as usize,
            page_size: page_size(number(&pairs, "pageSize")?),
            page_id: number(&pairs, "pageId")?.unwrap_or(0),
            forward_only,
        })
    }

    /// Sorts and pages `items` (already filtered), building `Link` from `url`
    /// (the request URL: `http://host/path?query`).
    pub fn paginate(&self, mut items: Vec<Value>, url: &RequestUrl) -> Page {
        // Default order is by id; orderBy keys sort stably on top of it.
        query::sort_items(&mut items, &[("id".to_owned(), false)]);
        if self.forward_only {
            return self.forward_page(items, url);
        }
        query::sort_items(&mut items, &self.order);
        let last = items.len().div_ceil(self.page_size).max(1);
        let start = (self.page - 1).saturating_mul(self.page_size);
        let page = items.into_iter().skip(start).take(self.page_size);
        Page {
            items: page
                .map(|i| query::project_fields(&i, &self.fields))
                .collect(),
            link: nav_links(url, self.page, self.page_size, last),
        }
    }

    fn forward_page(&self, items: Vec<Value>, url: &RequestUrl) -> Page {
        let mut rest = items
            .into_iter()
            .filter(|i| id_of(i) > self.page_id)
            .peekable();
        let page: Vec<Value> = rest.by_ref().take(self.page_size).collect();
        // Forward-only answers always carry `Link`, empty on the last page:
        // clients treat a missing header as "endpoint not supported" (CTC).
        let link = match (rest.peek(), page.last()) {
            (Some(_), Some(last)) => {
                let query = format!("pageId={}&pageSize={}", id_of(last), self.page_size);
                format!("<{}>; rel=\"next\"", url.with(&query))
            }
            _ => String::new(),
        };
        let items = page
            .iter()
            .map(|i| query::project_fields(i, &self.fields))
            .collect();
        Page {
            items,
            link: Some(link),
        }
    }
}

fn id_of(item: &Value) -> i64 {
    item.get("id").and_then(Value::as_i64).unwrap_or(0)
}

/// Above 1000 ConnectWise silently caps; zero or less means the default.
fn page_size(requested: Option<i64>) -> usize {
    match requested {
        Some(n) if n >= 1 => (n as usize).min(MAX_PAGE_SIZE),
        _ => DEFAULT_PAGE_SIZE,
    }
}

fn number(pairs: &Pairs, name: &str) -> Result<Option<i64>, Response> {
    let Some(text) = param(pairs, name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    text.trim().parse().map(Some).map_err(|_| {
        let msg = format!("The value '{text}' is not valid for {name}.");
        cw_error(StatusCode::BAD_REQUEST, "ConnectWiseApi", &msg)
    })
}

/// The request URL split into what `Link` keeps and what paging replaces.
pub struct RequestUrl {
    base: String,
    kept: Vec<String>,
}

impl RequestUrl {
    pub fn new(uri: &Uri, headers: &HeaderMap) -> Self {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let kept = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|part| !part.is_empty())
            .filter(|part| {
                let key = part.split('=').next().unwrap_or("");
                !PAGING_PARAMS.iter().any(|p| key.eq_ignore_ascii_case(p))
            })
            .map(str::to_owned)
            .collect();
        RequestUrl {
            base: format!("http://{host}{}", uri.path()),
            kept,
        }
    }

    /// The URL with the other parameters kept raw (still encoded) plus `paging`.
    fn with(&self, paging: &str) -> String {
        let mut parts = self.kept.clone();
        parts.push(paging.to_owned());
        format!("{}?{}", self.base, parts.join("&"))
    }
}

fn nav_links(url: &RequestUrl, page: usize, size: usize, last: usize) -> Option<String> {
    let link = |p: usize, rel: &str| {
        format!(
            "<{}>; rel=\"{rel}\"",
            url.with(&format!("pageSize={size}&page={p}"))
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < last {
        links.push(link(page + 1, "next"));
    }
    if page > 1 {
        links.push(link(1, "first"));
    }
    if page < last {
        links.push(link(last, "last"));
    }
    (!links.is_empty()).then(|| links.join(", "))
}

// ------------------------------------------------------------------ conditions

/// Parses and checks `conditions` the way ConnectWise does: syntax, field
/// names known to the entity, enum values. Errors are 400 `ApiFindCondition`
/// (the code ConnectWise sends, e.g. "invoiceDate is not a recognized name.").
fn parse_conditions(schema: &str, text: &str) -> Result<Expr, Response> {
    let fail = |msg: &str| cw_error(StatusCode::BAD_REQUEST, "ApiFindCondition", msg);
    let expr = query::parse_conditions(text).map_err(|e| fail(&e.message))?;
    if let Some(root) = validate::schema(schema) {
        check_names(root, &expr).map_err(|msg| fail(&msg))?;
    }
    Ok(expr)
}

fn check_names(root: &Value, expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::All => Ok(()),
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_names(root, a).and_then(|()| check_names(root, b))
        }
        Expr::Compare { path, value, .. } => check_field(root, path, std::slice::from_ref(value)),
        Expr::In { path, values, .. } => check_field(root, path, values),
        Expr::Like { path, .. } | Expr::Contains { path, .. } => check_field(root, path, &[]),
    }
}

fn check_field(root: &Value, path: &str, literals: &[Literal]) -> Result<(), String> {
    let prop = resolve(root, path).ok_or_else(|| format!("{path} is not a recognized name."))?;
    let Some(allowed) = prop.and_then(|p| p.get("enum")).and_then(Value::as_array) else {
        return Ok(());
    };
    let known = |s: &str| {
        allowed
            .iter()
            .filter_map(Value::as_str)
            .any(|a| a.eq_ignore_ascii_case(s))
    };
    let bad = literals
        .iter()
        .any(|l| matches!(l, Literal::Str(s) if !known(s)));
    if bad {
        Err("Enum value supplied was invalid".to_owned())
    } else {
        Ok(())
    }
}

/// Walks `company/id` through the schema and its references. `None`: not a
/// field; `Some(None)`: a field whose shape the subset does not describe
/// (placeholder references, `_info/...`); `Some(Some(p))`: the property.
fn resolve<'a>(root: &'a Value, path: &str) -> Option<Option<&'a Value>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut schema = root;
    for (i, segment) in segments.iter().enumerate() {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Some(None);
        };
        let (_, prop) = props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(segment))?;
        if i + 1 == segments.len() {
            return Some(Some(prop));
        }
        schema = match referenced(prop) {
            Some(target) => target,
            // `_info/lastUpdated`: a free-form object.
            None if prop.get("type").and_then(Value::as_str) == Some("object") => {
                return Some(None);
            }
            // Child collections (`types/name`) and scalars cannot be descended.
            None => return None,
        };
    }
    Some(None)
}

fn referenced(prop: &Value) -> Option<&'static Value> {
    let name = prop
        .get("$ref")?
        .as_str()?
        .strip_prefix("#/components/schemas/")?;
    validate::schema(name)
}
