//! ConnectWise PSA (Manage) REST client (see sim/fixtures/connectwise-subset.json):
//! codebase discovery, Basic auth + clientId on every call, `Link`-header paging,
//! the handful of collection queries and writes the sync needs.

use super::model::{
    Addition, Agreement, CatalogItem, Company, NamedRecord, NewAddition, NewCatalogItem, PatchOp,
};
use crate::http::{
    self, AdaptiveLimit, ApiCounters, ApiError, ApiErrorKind, Call, FieldProblem, HttpPolicy,
    RawResponse, ThrottleStats, header_str, parse_json,
};
use base64::Engine;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LINK};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// Pinned API version: without one the server picks its default, and older versions
/// use different field shapes (e.g. `billCycleId` instead of `billingCycle`).
pub const ACCEPT_VERSION: &str = "application/vnd.connectwise.com+json; version=2025.1";
/// ConnectWise's hard maximum page size.
const PAGE_SIZE: &str = "1000";
/// Values per `in (...)` condition, to keep URLs well under server limits.
const IN_CHUNK: usize = 100;
/// Upper bound on pages we will follow, so a server that never ends cannot loop us forever.
const MAX_PAGES: usize = 10_000;
const API: &str = "connectwise";
const VENDOR: &str = "ConnectWise";

const CATALOG_FIELDS: &str = "id,identifier,description,inactiveFlag,price";
const COMPANY_FIELDS: &str = "id,identifier,name,deletedFlag,status";
const AGREEMENT_FIELDS: &str = "id,name,type,company,cancelledFlag,agreementStatus";
const ADDITION_FIELDS: &str =
    "id,product,quantity,effectiveDate,cancelledDate,agreementId,additionStatus,agreementStatus";

/// How to reach and authenticate to ConnectWise.
#[derive(Clone)]
pub struct ConnectWiseConfig {
    /// `api-na.myconnectwise.net` (→ `https://…`), or a full base such as
    /// `http://127.0.0.1:9001`, used as is.
    pub site: String,
    pub company_id: String,
    pub public_key: SecretString,
    pub private_key: SecretString,
    pub client_id: String,
    /// e.g. `v4_6_release/`; discovered from `/login/companyinfo` when `None`.
    pub codebase: Option<String>,
}

impl fmt::Debug for ConnectWiseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseConfig")
            .field("site", &self.site)
            .field("company_id", &self.company_id)
            .field("public_key", &"[redacted]")
            .field("private_key", &"[redacted]")
            .field("client_id", &self.client_id)
            .field("codebase", &self.codebase)
            .finish()
    }
}

/// The named reference lists needed to build a catalog item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamedKind {
    ProductType,
    Category,
    Subcategory,
    UnitOfMeasure,
}

impl NamedKind {
    pub fn path(self) -> &'static str {
        match self {
            Self::ProductType => "/procurement/types",
            Self::Category => "/procurement/categories",
            Self::Subcategory => "/procurement/subcategories",
            Self::UnitOfMeasure => "/procurement/unitOfMeasures",
        }
    }
}

/// ConnectWise client. Cheap to clone.
#[derive(Clone)]
pub struct ConnectWiseClient {
    http: reqwest::Client,
    /// `{base}/{codebase}apis/3.0`, no trailing slash.
    api_base: String,
    /// Marked sensitive so reqwest/hyper never print it.
    auth: HeaderValue,
    client_id: HeaderValue,
    policy: HttpPolicy,
    counters: Arc<ApiCounters>,
    /// How many requests may be in flight, adapting to 429s (see
    /// [`ConnectWiseClient::limited_to`]); None: no limit of its own.
    in_flight: Option<Arc<AdaptiveLimit>>,
}

impl fmt::Debug for ConnectWiseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseClient")
            .field("api_base", &self.api_base)
            .field("auth", &"[redacted]")
            .field("policy", &self.policy)
            .finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CwErrorBody {
    code: Option<String>,
    message: Option<String>,
    errors: Vec<FieldProblem>,
}

#[derive(Deserialize)]
struct CompanyInfo {
    #[serde(rename = "Codebase", default)]
    codebase: Option<String>,
}

impl ConnectWiseClient {
    /// Resolves the codebase (from config or `/login/companyinfo/{companyId}`) and
    /// prepares the auth headers.
    pub async fn connect(
        config: ConnectWiseConfig,
        policy: HttpPolicy,
        counters: Arc<ApiCounters>,
    ) -> Result<Self, ApiError> {
        Self::connect_with(http::default_client(), config, policy, counters).await
    }

    /// Like [`ConnectWiseClient::connect`] with a caller-supplied reqwest client.
    pub async fn connect_with(
        http: reqwest::Client,
        config: ConnectWiseConfig,
        policy: HttpPolicy,
        counters: Arc<ApiCounters>,
    ) -> Result<Self, ApiError> {
        let base = site_base(&config.site);
        let configured = config.codebase.clone().filter(|c| !c.trim().is_empty());
        let codebase = match configured {
            Some(c) => c,
            None => discover_codebase(&http, &base, &config.company_id, &policy, &counters).await?,
        };
        let api_base = api_base(&base, &codebase);
        if Url::parse(&api_base).is_err() {
            let msg = format!(
                "connectwise.site {:?} does not give a valid URL ({api_base}): use a host name \
                 such as api-na.myconnectwise.net",
                config.site
            );
            return Err(ApiError::new(API, ApiErrorKind::Config, "", "", msg));
        }
        let client_id = HeaderValue::from_str(config.client_id.trim()).map_err(|_| {
            let msg = "connectwise.clientId contains characters not allowed in an HTTP header: \
                       copy the GUID from developer.connectwise.com again";
            ApiError::new(API, ApiErrorKind::Config, "", "", msg)
        })?;
        Ok(Self {
            http,
            api_base,
            auth: auth_header(&config),
            client_id,
            policy,
            counters,
            in_flight: None,
        })
    }

    /// A client sharing this one's connections that keeps at most `max` requests
    /// in flight, however many tasks use it: ConnectWise's limit is a property of
    /// the partner's instance, so the client enforces it, and callers can run more
    /// customers than that (one customer's store bookkeeping overlaps another's
    /// ConnectWise calls). When ConnectWise answers 429 (the instance is busy) the
    /// limit halves, and it grows back by one after a run of answers, never above
    /// `max` (see [`crate::http::limit`]).
    pub fn limited_to(&self, max: usize) -> Self {
        Self {
            in_flight: Some(Arc::new(AdaptiveLimit::new(max))),
            ..self.clone()
        }
    }

    /// How often ConnectWise throttled this client and how far its concurrency
    /// went down; None for a client without a limit of its own.
    pub fn throttling(&self) -> Option<ThrottleStats> {
        self.in_flight.as_deref().map(AdaptiveLimit::stats)
    }

    /// The timeouts and retry limits of every request (the engine bounds its
    /// verified re-creates by the same attempts).
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// The API root in use, e.g. `https://api-na.myconnectwise.net/v4_6_release/apis/3.0`.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// Catalog items whose identifier is one of `identifiers` (one query per 100).
    pub async fn catalog_items_by_identifiers(
        &self,
        identifiers: &[String],
    ) -> Result<Vec<CatalogItem>, ApiError> {
        let mut items = Vec::new();
        for chunk in identifiers.chunks(IN_CHUNK) {
            let conditions = in_strings("identifier", chunk);
            let query = collection_query(conditions, Some(CATALOG_FIELDS));
            items.extend(self.get_all("/procurement/catalog", &query).await?);
        }
        Ok(items)
    }

    pub async fn create_catalog_item(
        &self,
        item: &NewCatalogItem,
    ) -> Result<CatalogItem, ApiError> {
        self.write(Method::POST, "/procurement/catalog", item).await
    }

    /// Product types, categories, subcategories or units of measure whose name
    /// contains `name` (trimmed), inactive ones included; with `category`, only the
    /// subcategories under that category. The caller picks the exact match: names
    /// in setup tables carry stray spaces, which `name="…"` would miss.
    pub async fn find_named(
        &self,
        kind: NamedKind,
        name: &str,
        category: Option<i64>,
    ) -> Result<Vec<NamedRecord>, ApiError> {
        let by_name = format!("name contains {}", quote(name.trim()));
        let conditions = match category {
            Some(id) => format!("category/id={id} and {by_name}"),
            None => by_name,
        };
        let query = collection_query(conditions, None);
        self.get_all(kind.path(), &query).await
    }

    /// Non-deleted companies whose name is one of `names`.
    pub async fn companies_by_names(&self, names: &[String]) -> Result<Vec<Company>, ApiError> {
        let mut companies = Vec::new();
        for chunk in names.chunks(IN_CHUNK) {
            let conditions = format!("deletedFlag=false and {}", in_strings("name", chunk));
            let query = collection_query(conditions, Some(COMPANY_FIELDS));
            companies.extend(self.get_all("/company/companies", &query).await?);
        }
        Ok(companies)
    }

    /// Every non-deleted company (deleted ones linger in the recycle bin and would
    /// show up as duplicate names).
    pub async fn all_companies(&self) -> Result<Vec<Company>, ApiError> {
        let query = collection_query("deletedFlag=false".to_string(), Some(COMPANY_FIELDS));
        self.get_all("/company/companies", &query).await
    }

    /// Every company, those in the recycle bin included (`deletedFlag` either way),
    /// for the console's mapping suggestions: an operator must see a deleted
    /// duplicate to tell it from the live company. The sync never uses this.
    pub async fn companies_for_suggestions(&self) -> Result<Vec<Company>, ApiError> {
        let query = collection_query(
            "deletedFlag=false or deletedFlag=true".to_string(),
            Some(COMPANY_FIELDS),
        );
        self.get_all("/company/companies", &query).await
    }

    /// Every agreement of one company, of any type and status (the caller decides
    /// which are usable).
    pub async fn agreements_of_company(&self, company_id: i64) -> Result<Vec<Agreement>, ApiError> {
        let query = collection_query(format!("company/id={company_id}"), Some(AGREEMENT_FIELDS));
        self.get_all("/finance/agreements", &query).await
    }

    /// One company by id; `None` if ConnectWise has no such company.
    pub async fn company(&self, id: i64) -> Result<Option<Company>, ApiError> {
        let path = format!("/company/companies/{id}");
        let query = [("fields", COMPANY_FIELDS.to_string())];
        let raw = self.get_raw(&path, &query).await?;
        if raw.status == 404 {
            return Ok(None);
        }
        let call = self.call(Method::GET, &path);
        let raw = check(&call, raw)?;
        parse_json(&call, &raw, true).map(Some)
    }

    pub async fn companies_by_ids(&self, ids: &[i64]) -> Result<Vec<Company>, ApiError> {
        let mut companies = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let query = collection_query(in_ids("id", chunk), Some(COMPANY_FIELDS));
            companies.extend(self.get_all("/company/companies", &query).await?);
        }
        Ok(companies)
    }

    /// All agreements of the named agreement type (any status; the caller filters).
    pub async fn agreements_of_type(&self, type_name: &str) -> Result<Vec<Agreement>, ApiError> {
        let conditions = format!("type/name={}", quote(type_name));
        let query = collection_query(conditions, Some(AGREEMENT_FIELDS));
        self.get_all("/finance/agreements", &query).await
    }

    pub async fn agreements_by_ids(&self, ids: &[i64]) -> Result<Vec<Agreement>, ApiError> {
        let mut agreements = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let query = collection_query(in_ids("id", chunk), Some(AGREEMENT_FIELDS));
            agreements.extend(self.get_all("/finance/agreements", &query).await?);
        }
        Ok(agreements)
    }

    pub async fn agreement_type_exists(&self, name: &str) -> Result<bool, ApiError> {
        let query = collection_query(format!("name={}", quote(name)), Some("id"));
        let found: Vec<serde::de::IgnoredAny> =
            self.get_all("/finance/agreements/types", &query).await?;
        Ok(!found.is_empty())
    }

    /// The names of the active agreement types, sorted: what `agreementType` may be.
    pub async fn agreement_type_names(&self) -> Result<Vec<String>, ApiError> {
        let query = [
            ("pageSize", PAGE_SIZE.to_string()),
            ("fields", "id,name,inactiveFlag".to_string()),
        ];
        let types: Vec<crate::connectwise::model::AgreementType> =
            self.get_all("/finance/agreements/types", &query).await?;
        let mut names: Vec<String> = types
            .into_iter()
            .filter(|t| t.inactive_flag != Some(true))
            .map(|t| t.name)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Every addition of an agreement (cancelled ones included; see `Addition::is_active`).
    pub async fn additions(&self, agreement_id: i64) -> Result<Vec<Addition>, ApiError> {
        let path = format!("/finance/agreements/{agreement_id}/additions");
        let query = [
            ("pageSize", PAGE_SIZE.to_string()),
            ("fields", ADDITION_FIELDS.to_string()),
        ];
        self.get_all(&path, &query).await
    }

    /// Creates an addition. Not retried once it may have reached the server (see
    /// `http::retry::should_retry`): a timeout here means "maybe created".
    pub async fn create_addition(
        &self,
        agreement_id: i64,
        addition: &NewAddition,
    ) -> Result<Addition, ApiError> {
        let path = format!("/finance/agreements/{agreement_id}/additions");
        self.write(Method::POST, &path, addition).await
    }

    /// Applies JSON Patch operations, e.g. `[{"op":"replace","path":"quantity","value":45}]`.
    /// Setting absolute values is idempotent, so PATCH is retried like a GET.
    pub async fn patch_addition(
        &self,
        agreement_id: i64,
        addition_id: i64,
        ops: &[PatchOp],
    ) -> Result<Addition, ApiError> {
        let path = format!("/finance/agreements/{agreement_id}/additions/{addition_id}");
        self.write(Method::PATCH, &path, ops).await
    }

    fn call<'a>(&'a self, method: Method, path: &'a str) -> Call<'a> {
        let is_write = method != Method::GET;
        Call {
            api: API,
            vendor: VENDOR,
            // Only POST creates records; PATCH/PUT set absolute values.
            idempotent: method != Method::POST,
            method,
            path,
            counter: &self.counters.connectwise_calls,
            write_counter: is_write.then_some(&self.counters.connectwise_writes),
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ApiError> {
        let mut url = Url::parse(&format!("{}{}", self.api_base, path)).map_err(|e| {
            let msg = format!("cannot build a ConnectWise URL for {path}: {e}");
            ApiError::new(API, ApiErrorKind::Config, "GET", path, msg)
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends one request (with retries) carrying the auth, clientId and version headers.
    async fn execute(
        &self,
        call: &Call<'_>,
        url: &Url,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ApiError> {
        http::send_limited(&self.policy, call, self.in_flight.as_deref(), || {
            let mut req = self
                .http
                .request(call.method.clone(), url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .header("clientId", self.client_id.clone())
                .header(ACCEPT, ACCEPT_VERSION);
            if let Some(body) = &body {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            req
        })
        .await
    }

    async fn get_raw(&self, path: &str, query: &[(&str, String)]) -> Result<RawResponse, ApiError> {
        let url = self.url(path, query)?;
        self.execute(&self.call(Method::GET, path), &url, None)
            .await
    }

    /// Every item of a collection, following `Link: <…>; rel="next"` until none.
    async fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, ApiError> {
        let call = self.call(Method::GET, path);
        let mut url = self.url(path, query)?;
        let mut seen = HashSet::from([url.to_string()]);
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let raw = check(&call, self.execute(&call, &url, None).await?)?;
            let page: Vec<T> = parse_json(&call, &raw, true)?;
            items.extend(page);
            let Some(next) = header_str(&raw.headers, LINK.as_str()).and_then(next_link) else {
                // Grown by doubling: up to half of a large listing would be slack
                // held for the whole cycle.
                items.shrink_to_fit();
                return Ok(items);
            };
            url = self.follow(&call, &url, &next)?;
            if !seen.insert(url.to_string()) {
                return Err(bad_paging(
                    &call,
                    "a rel=\"next\" link repeated an earlier page",
                ));
            }
        }
        Err(bad_paging(&call, "too many pages"))
    }

    /// Resolves a next link and refuses one that leaves the ConnectWise host: our
    /// Authorization header must never be sent anywhere else.
    fn follow(&self, call: &Call<'_>, current: &Url, next: &str) -> Result<Url, ApiError> {
        let url = current
            .join(next)
            .map_err(|_| bad_paging(call, "the rel=\"next\" link is not a valid URL"))?;
        if url.origin() != current.origin() {
            return Err(bad_paging(
                call,
                "the rel=\"next\" link points to another host",
            ));
        }
        Ok(url)
    }

    /// POST/PATCH with a JSON body; the response is the written record.
    async fn write<B, T>(&self, method: Method, path: &str, body: &B) -> Result<T, ApiError>
    where
        B: serde::Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let call = self.call(method, path);
        let bytes = serde_json::to_vec(body).map_err(|e| {
            let msg = format!("could not encode the request body: {e}");
            ApiError::new(API, ApiErrorKind::Config, call.method.as_str(), path, msg)
        })?;
        let url = self.url(path, &[])?;
        let raw = check(&call, self.execute(&call, &url, Some(bytes)).await?)?;
        parse_json(&call, &raw, true)
    }
}

/// `GET {base}/login/companyinfo/{companyId}` (no auth) → `Codebase`, e.g. `v4_6_release/`.
async fn discover_codebase(
    http: &reqwest::Client,
    base: &str,
    company_id: &str,
    policy: &HttpPolicy,
    counters: &ApiCounters,
) -> Result<String, ApiError> {
    let path = format!("/login/companyinfo/{company_id}");
    let not_found = || {
        let msg = format!(
            "ConnectWise returned no codebase for companyId {company_id:?}: check \
             connectwise.companyId (the company name used at login) and connectwise.site, \
             or set connectwise.codebase (usually v4_6_release/)"
        );
        ApiError::new(API, ApiErrorKind::Config, "GET", &path, msg)
    };
    let mut url = Url::parse(base).map_err(|_| not_a_site(base))?;
    url.path_segments_mut()
        .map_err(|_| not_a_site(base))?
        .pop_if_empty()
        .extend(["login", "companyinfo", company_id]);
    let call = Call {
        api: API,
        vendor: VENDOR,
        method: Method::GET,
        path: &path,
        idempotent: true,
        counter: &counters.connectwise_calls,
        write_counter: None,
    };
    let raw = http::send(policy, &call, || {
        http.get(url.clone()).header(ACCEPT, "application/json")
    })
    .await?;
    if raw.status == 404 {
        return Err(not_found());
    }
    let raw = check(&call, raw)?;
    // Unknown companies may come back as `null` rather than 404.
    let info: Option<CompanyInfo> = parse_json(&call, &raw, true)?;
    info.and_then(|i| i.codebase)
        .filter(|c| !c.trim_matches('/').trim().is_empty())
        .ok_or_else(not_found)
}

fn not_a_site(base: &str) -> ApiError {
    let msg = format!(
        "connectwise.site gives {base:?}, which is not a valid URL: use a host name such as \
         api-na.myconnectwise.net"
    );
    ApiError::new(API, ApiErrorKind::Config, "", "", msg)
}

/// `api-na.myconnectwise.net` → `https://api-na.myconnectwise.net`; a value that
/// already has a scheme (a simulator at `http://127.0.0.1:9001`) is kept as is.
fn site_base(site: &str) -> String {
    let site = site.trim().trim_end_matches('/');
    if site.contains("://") {
        site.to_string()
    } else {
        format!("https://{site}")
    }
}

/// `{base}/{codebase}apis/3.0` with exactly one slash on each side of the codebase.
fn api_base(base: &str, codebase: &str) -> String {
    let base = base.trim_end_matches('/');
    match codebase.trim().trim_matches('/') {
        "" => format!("{base}/apis/3.0"),
        cb => format!("{base}/{cb}/apis/3.0"),
    }
}

/// `Basic base64("{companyId}+{publicKey}:{privateKey}")`, marked sensitive.
fn auth_header(config: &ConnectWiseConfig) -> HeaderValue {
    let user = format!(
        "{}+{}:{}",
        config.company_id.trim(),
        config.public_key.expose_secret(),
        config.private_key.expose_secret()
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(user);
    // Base64 output is always a valid header value.
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// A ConnectWise conditions string literal: double quotes, with `"` and `\` escaped
/// so a name can never end the literal early and change the query.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `field in ("a","b")`.
fn in_strings(field: &str, values: &[String]) -> String {
    let list: Vec<String> = values.iter().map(|v| quote(v)).collect();
    format!("{field} in ({})", list.join(","))
}

/// `field in (1,2)`.
fn in_ids(field: &str, ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("{field} in ({})", list.join(","))
}

fn collection_query(conditions: String, fields: Option<&str>) -> Vec<(&'static str, String)> {
    let mut query = vec![
        ("conditions", conditions),
        ("pageSize", PAGE_SIZE.to_string()),
    ];
    if let Some(fields) = fields {
        query.push(("fields", fields.to_string()));
    }
    query
}

/// The `rel="next"` target of an RFC 5988 `Link` header, e.g.
/// `<https://h/x?page=2>; rel="next", <https://h/x?page=9>; rel="last"`.
/// URLs are taken from between `<` and `>` (they can contain commas, e.g. in `fields=`).
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = after[..close].trim();
        let params_end = after[close + 1..]
            .find('<')
            .map_or(after.len(), |i| close + 1 + i);
        let params = &after[close + 1..params_end];
        if has_rel_next(params) && !target.is_empty() {
            return Some(target.to_string());
        }
        rest = &after[params_end..];
    }
    None
}

fn has_rel_next(params: &str) -> bool {
    params.split([';', ',']).any(|param| {
        let Some((name, value)) = param.split_once('=') else {
            return false;
        };
        name.trim().eq_ignore_ascii_case("rel")
            && value
                .trim()
                .trim_matches('"')
                .split_ascii_whitespace()
                .any(|rel| rel.eq_ignore_ascii_case("next"))
    })
}

/// Passes a 2xx response through; anything else becomes an [`ApiError`].
fn check(call: &Call<'_>, raw: RawResponse) -> Result<RawResponse, ApiError> {
    if raw.is_success() {
        Ok(raw)
    } else {
        Err(status_error(call, &raw))
    }
}

fn bad_paging(call: &Call<'_>, why: &str) -> ApiError {
    let message = format!(
        "unexpected response from ConnectWise {} {}: paging does not end ({why}); stopped",
        call.method, call.path
    );
    ApiError::new(
        call.api,
        ApiErrorKind::BadResponse,
        call.method.as_str(),
        call.path,
        message,
    )
}

/// Maps a non-2xx ConnectWise response to an error with advice.
fn status_error(call: &Call<'_>, raw: &RawResponse) -> ApiError {
    let body: CwErrorBody = serde_json::from_slice(&raw.body).unwrap_or_default();
    let said = describe(&body, &raw.body);
    let s = raw.status;
    let (kind, mut message) = match s {
        401 => (
            ApiErrorKind::Unauthorized,
            "ConnectWise refused the API keys (401): check companyId, publicKey, privateKey \
             and clientId in the secret"
                .to_string(),
        ),
        403 => (
            ApiErrorKind::Forbidden,
            format!(
                "ConnectWise refused {} {} (403: {said}): the API member's security role lacks a \
                 permission (needed: Companies > Company Maintenance Inquire All; Finance > \
                 Agreements Add/Edit/Inquire All; Procurement > Product Catalog Add/Inquire All; System > Table Setup Inquire All)",
                call.method, call.path
            ),
        ),
        404 => (
            ApiErrorKind::NotFound,
            format!("ConnectWise found no such record (404: {said})"),
        ),
        400 | 409 | 422 => (
            ApiErrorKind::Validation,
            format!("ConnectWise rejected the request (HTTP {s}: {said})"),
        ),
        429 => (
            ApiErrorKind::RateLimited,
            format!(
                "ConnectWise is throttling requests (429: {said}) and the retries ran out: run again later"
            ),
        ),
        500..=599 => (
            ApiErrorKind::Unavailable,
            format!("ConnectWise is unavailable (HTTP {s}: {said}): try again later"),
        ),
        _ => (
            ApiErrorKind::BadResponse,
            format!(
                "unexpected response from ConnectWise {} {}: HTTP {s}: {said}",
                call.method, call.path
            ),
        ),
    };
    if !call.idempotent && s >= 500 {
        message.push_str(
            "; the request was not repeated because ConnectWise may already have processed it \
             (a repeat could create a duplicate): the next run checks before creating",
        );
    }
    ApiError::new(call.api, kind, call.method.as_str(), call.path, message)
        .with_status(s)
        .with_details(body.errors)
}

/// `code: message` from a ConnectWise error body, or the start of the body.
fn describe(body: &CwErrorBody, raw: &[u8]) -> String {
    let parts: Vec<&str> = [body.code.as_deref(), body.message.as_deref()]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        crate::http::error::body_snippet(raw, 200)
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: &str = "pubKEY123";
    const PRIVATE: &str = "privKEY456";

    fn config() -> ConnectWiseConfig {
        ConnectWiseConfig {
            site: "api-na.myconnectwise.net".into(),
            company_id: "acme".into(),
            public_key: SecretString::from(PUBLIC),
            private_key: SecretString::from(PRIVATE),
            client_id: "1111-2222".into(),
            codebase: Some("v4_6_release/".into()),
        }
    }

    async fn client() -> ConnectWiseClient {
        ConnectWiseClient::connect(config(), HttpPolicy::default(), Arc::default())
            .await
            .unwrap()
    }

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: reqwest::header::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn next_link_finds_next_among_rels() {
        let h = r#"<https://h/apis/3.0/x?page=1&fields=id,name>; rel="first", <https://h/apis/3.0/x?page=3&fields=id,name>; rel="next", <https://h/apis/3.0/x?page=9>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://h/apis/3.0/x?page=3&fields=id,name")
        );
    }

    #[test]
    fn next_link_tolerates_spacing_case_and_unquoted() {
        assert_eq!(
            next_link("< /x?page=2 > ;  REL = \"Next\"").as_deref(),
            Some("/x?page=2")
        );
        assert_eq!(
            next_link("</x?page=2>;rel=next").as_deref(),
            Some("/x?page=2")
        );
        assert_eq!(
            next_link(r#"</x?p=2>; title="a, b"; rel="prev next""#).as_deref(),
            Some("/x?p=2")
        );
    }

    #[test]
    fn next_link_absent() {
        assert_eq!(next_link(""), None);
        assert_eq!(next_link(r#"<https://h/x?page=1>; rel="first""#), None);
        assert_eq!(
            next_link(r#"<https://h/x?page=1>; rel="prev", <https://h/x?page=1>; rel="first""#),
            None
        );
        assert_eq!(next_link(r#"<https://h/x; rel="next""#), None);
        assert_eq!(next_link(r#"<https://h/x?page=2>; rel="nextpage""#), None);
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("Acme"), r#""Acme""#);
        assert_eq!(quote(r#"Say "hi""#), r#""Say \"hi\"""#);
        assert_eq!(quote(r"a\"), r#""a\\""#);
        assert_eq!(
            in_strings("name", &["A".into(), "B\"".into()]),
            r#"name in ("A","B\"")"#
        );
        assert_eq!(in_ids("id", &[1, 22]), "id in (1,22)");
    }

    #[test]
    fn auth_header_is_basic_company_plus_public_colon_private() {
        let value = auth_header(&config());
        assert!(value.is_sensitive());
        let text = value.to_str().unwrap();
        let encoded = text.strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"acme+pubKEY123:privKEY456");
    }

    #[test]
    fn site_and_codebase_normalise() {
        assert_eq!(
            site_base("api-na.myconnectwise.net"),
            "https://api-na.myconnectwise.net"
        );
        assert_eq!(
            site_base(" http://127.0.0.1:9001/ "),
            "http://127.0.0.1:9001"
        );
        let base = "https://h";
        let want = "https://h/v4_6_release/apis/3.0";
        assert_eq!(api_base(base, "v4_6_release/"), want);
        assert_eq!(api_base(base, "/v4_6_release"), want);
        assert_eq!(api_base("https://h/", "v4_6_release"), want);
        assert_eq!(api_base(base, "/"), "https://h/apis/3.0");
    }

    #[tokio::test]
    async fn debug_redacts_keys() {
        let text = format!("{:?} {:?}", config(), client().await);
        for secret in [PUBLIC, PRIVATE] {
            assert!(!text.contains(secret), "{text}");
        }
        // Nor the base64 form of them.
        let header = auth_header(&config());
        assert!(!text.contains(header.to_str().unwrap().trim_start_matches("Basic ")));
    }

    #[tokio::test]
    async fn connect_with_configured_codebase_makes_no_call() {
        let counters = Arc::new(ApiCounters::default());
        let c = ConnectWiseClient::connect(config(), HttpPolicy::default(), counters.clone())
            .await
            .unwrap();
        assert_eq!(
            c.api_base(),
            "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"
        );
        assert_eq!(counters.snapshot().connectwise_calls, 0);
    }

    #[tokio::test]
    async fn validation_error_keeps_details() {
        let c = client().await;
        let call = c.call(Method::POST, "/finance/agreements/1/additions");
        let body = r#"{"code":"InvalidObject","message":"Addition object is invalid","errors":[{"code":"MissingRequiredField","message":"The product field is required.","resource":"addition","field":"product"}]}"#;
        let e = status_error(&call, &raw(400, body));
        assert_eq!(e.kind, ApiErrorKind::Validation);
        assert_eq!(e.details.len(), 1);
        assert_eq!(e.details[0].field, "product");
        let text = e.to_string();
        assert!(
            text.contains("InvalidObject: Addition object is invalid"),
            "{text}"
        );
        assert!(text.contains("addition.product"), "{text}");
    }

    #[tokio::test]
    async fn status_kinds_and_messages() {
        let c = client().await;
        let get = c.call(Method::GET, "/finance/agreements");
        let e = status_error(&get, &raw(401, r#"{"code":"Unauthorized","message":"x"}"#));
        assert_eq!(e.kind, ApiErrorKind::Unauthorized);
        assert!(
            e.message
                .starts_with("ConnectWise refused the API keys (401): check companyId")
        );
        let e = status_error(&get, &raw(403, ""));
        assert_eq!(e.kind, ApiErrorKind::Forbidden);
        assert!(e.message.contains("security role lacks a permission"));
        assert_eq!(
            status_error(&get, &raw(404, "")).kind,
            ApiErrorKind::NotFound
        );
        assert_eq!(
            status_error(&get, &raw(429, "")).kind,
            ApiErrorKind::RateLimited
        );
        assert_eq!(
            status_error(&get, &raw(502, "")).kind,
            ApiErrorKind::Unavailable
        );
        assert_eq!(
            status_error(&get, &raw(302, "")).kind,
            ApiErrorKind::BadResponse
        );
        let post = c.call(Method::POST, "/finance/agreements/1/additions");
        let e = status_error(&post, &raw(500, ""));
        assert!(e.message.contains("not repeated"), "{}", e.message);
    }

    #[tokio::test]
    async fn errors_never_contain_keys() {
        let c = client().await;
        let call = c.call(Method::GET, "/company/companies");
        let encoded = auth_header(&config()).to_str().unwrap().to_string();
        for status in [400, 401, 403, 404, 429, 500, 418] {
            let text = status_error(&call, &raw(status, "oops")).to_string();
            for secret in [PUBLIC, PRIVATE, encoded.as_str()] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[tokio::test]
    async fn writes_are_counted_and_post_is_not_idempotent() {
        let c = client().await;
        assert!(!c.call(Method::POST, "/x").idempotent);
        assert!(c.call(Method::PATCH, "/x").idempotent);
        assert!(c.call(Method::GET, "/x").write_counter.is_none());
        assert!(c.call(Method::PATCH, "/x").write_counter.is_some());
    }

    #[tokio::test]
    async fn urls_carry_encoded_query_and_follow_stays_on_host() {
        let c = client().await;
        let query = collection_query(in_strings("name", &["A&B".into()]), Some("id,name"));
        let url = c.url("/company/companies", &query).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("conditions".into(), r#"name in ("A&B")"#.into()));
        assert_eq!(pairs[1], ("pageSize".into(), "1000".into()));
        let call = c.call(Method::GET, "/company/companies");
        let next = c
            .follow(
                &call,
                &url,
                "/v4_6_release/apis/3.0/company/companies?page=2",
            )
            .unwrap();
        assert_eq!(next.host_str(), Some("api-na.myconnectwise.net"));
        let e = c
            .follow(&call, &url, "https://evil.example/steal")
            .unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::BadResponse);
    }
}
