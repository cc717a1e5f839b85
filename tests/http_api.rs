//! The HTTP API served by `serve` (axum on a loopback port), in-process against the
//! simulators and a temp SQLite store: auth, the webhook and its asynchronous cycle,
//! runs, status, audit, mappings, settings and every kind of malformed request.

mod support;

use async_trait::async_trait;
use serde_json::{Value, json};
use sophos_cw_sync::app::{App, Invoker, RunRequest};
use sophos_cw_sync::config::{Environment, SecretsSpec};
use sophos_cw_sync::serve::{LocalInvoker, build_local_app, serve_on};
use sophos_cw_sync::store::{RunRecord, RunStatus, Store};
use std::sync::{Arc, Mutex};
use support::app::{Harness, MONTH, demo_settings, tenant};

const TOKEN: &str = "webhook-token-secret-value";

/// A client of one served App. Every answer is checked: JSON with
/// `Content-Type: application/json`, and no secret value anywhere in it.
struct Api {
    base: String,
    client: reqwest::Client,
    secrets: Vec<String>,
}

impl Api {
    async fn start(h: &Harness, app: Arc<App>) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            serve_on(listener, app, Default::default())
                .await
                .expect("serve")
        });
        Api {
            base,
            client: reqwest::Client::new(),
            secrets: secret_values(h),
        }
    }

    /// With the real LocalInvoker: cycles run as tasks of this process.
    async fn local(h: &Harness) -> (Api, Arc<LocalInvoker>) {
        let (app, invoker) = build_local_app(h.env(), h.store.clone());
        (Api::start(h, app).await, invoker)
    }

    async fn with_invoker(h: &Harness, invoker: Arc<dyn Invoker>) -> Api {
        Api::start(
            h,
            Arc::new(App::new(h.env(), h.store.clone(), invoker, None)),
        )
        .await
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{path}: {text}"
        );
        for secret in &self.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{path} answered a secret value: {text}"
            );
        }
        let body: Value = serde_json::from_str(&text).expect("JSON answer");
        if status >= 400 {
            assert!(
                body["error"].as_str().is_some_and(|e| e.len() > 10),
                "{path}: {body}"
            );
        }
        (status, body)
    }

    /// With the right token; a 5xx fails the test.
    async fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let (status, body) = self
            .raw(method, path, Some(&format!("Bearer {TOKEN}")), body)
            .await;
        assert!(status < 500, "{method} {path} -> {status} {body}");
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    async fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        self.call(method, path, Some(body.to_string().into_bytes()))
            .await
    }

    /// Starts a cycle and returns its run id.
    async fn sync(&self, body: &Value) -> String {
        let (status, answer) = self.send("POST", "/sync", body).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "queued");
        answer["runId"].as_str().expect("runId").to_owned()
    }

    /// Polls `GET /runs/{id}` until the run is no longer running.
    async fn finished(&self, run_id: &str) -> Value {
        for _ in 0..1000 {
            let (status, run) = self.get(&format!("/runs/{run_id}")).await;
            assert_eq!(status, 200, "{run}");
            if run["status"] != "running" {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("run {run_id} did not finish within 20 s");
    }
}

/// Every secret value of the harness's secret (and the token).
fn secret_values(h: &Harness) -> Vec<String> {
    let secret: Value =
        serde_json::from_str(&std::fs::read_to_string(&h.secrets_path).unwrap()).unwrap();
    let values = [
        &secret["webhookToken"],
        &secret["sophos"]["clientSecret"],
        &secret["connectwise"]["publicKey"],
        &secret["connectwise"]["privateKey"],
    ];
    let values: Vec<String> = values
        .iter()
        .map(|v| v.as_str().expect("secret value").to_owned())
        .collect();
    assert!(values.contains(&TOKEN.to_owned()));
    values
}

/// Records the requests and runs nothing: the run stays queued and keeps its lease.
#[derive(Default)]
struct RecordingInvoker {
    requests: Mutex<Vec<RunRequest>>,
}

#[async_trait]
impl Invoker for RecordingInvoker {
    async fn invoke_async(&self, request: &RunRequest) -> Result<(), String> {
        self.requests.lock().unwrap().push(request.clone());
        Ok(())
    }
}

/// A bug behind `POST /sync`: the handler panics.
struct PanickingInvoker;

#[async_trait]
impl Invoker for PanickingInvoker {
    async fn invoke_async(&self, _request: &RunRequest) -> Result<(), String> {
        panic!("a bug behind POST /sync")
    }
}

async fn harness() -> Harness {
    let h = Harness::start().await;
    h.store.put_settings(&demo_settings()).await.unwrap();
    h
}

fn qty(v: &Value) -> f64 {
    v["quantity"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_the_right_bearer_token_get_401_and_do_nothing() {
    let h = harness().await;
    let (api, invoker) = Api::local(&h).await;
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("x:{TOKEN}")
        )
    );
    let wrong = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(basic),
        Some("Bearer".to_owned()),
        Some(TOKEN.to_owned()),
    ];
    let mapping = json!({"companyId": 110}).to_string().into_bytes();
    let settings = json!({"products": []}).to_string().into_bytes();
    let requests: [(&str, &str, Option<Vec<u8>>); 8] = [
        ("POST", "/sync", None),
        ("POST", "/sync", Some(b"{\"dryRun\":true}".to_vec())),
        ("PUT", &format!("/mappings/{}", tenant(10)), Some(mapping)),
        ("PUT", "/settings", Some(settings)),
        ("DELETE", &format!("/mappings/{}", tenant(1)), None),
        ("GET", "/runs", None),
        ("GET", "/no-such-route", None),
        ("PATCH", "/settings", Some(b"{not json".to_vec())),
    ];
    for auth in &wrong {
        for (method, path, body) in &requests {
            let (status, answer) = api.raw(method, path, auth.as_deref(), body.clone()).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {answer}");
            assert_eq!(answer, json!({"error": "missing or wrong bearer token"}));
        }
    }
    // Nothing happened: no run, no mapping, settings unchanged, no vendor call at all.
    assert_eq!(invoker.running(), 0);
    assert!(h.store.list_runs(10, None).await.unwrap().is_empty());
    assert!(h.store.list_mappings().await.unwrap().is_empty());
    assert_eq!(h.store.get_settings().await.unwrap(), Some(demo_settings()));
    assert_eq!(h.cw_writes(), 0);
    assert!(h.sim.requests().is_empty(), "{:?}", h.sim.requests());

    // The scheme is case-insensitive; the token is not.
    let (status, _) = api
        .raw("GET", "/settings", Some(&format!("bearer {TOKEN}")), None)
        .await;
    assert_eq!(status, 200);
    let upper = format!("Bearer {}", TOKEN.to_uppercase());
    assert_eq!(api.raw("GET", "/settings", Some(&upper), None).await.0, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_runs_the_demo_cycle_and_the_results_are_served() {
    let h = harness().await;
    let (api, _invoker) = Api::local(&h).await;
    let (status, answer) = api.call("POST", "/sync", None).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "queued");
    assert_eq!(answer["dryRun"], false);
    let run_id = answer["runId"].as_str().unwrap().to_owned();

    let run = api.finished(&run_id).await;
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["runId"], run_id.as_str());
    assert_eq!(run["trigger"], "webhook");
    assert_eq!(run["month"], MONTH);
    assert_eq!(run["dryRun"], false);
    assert!(run["finishedAt"].is_string());
    assert_eq!(run["report"]["runId"], run_id.as_str());
    assert_eq!(run["report"]["writes"], 6);
    // The record keeps a summary; the customers come as a page beside it.
    assert!(run["report"].get("customers").is_none(), "{run}");
    assert_eq!(run["report"]["customerCounts"]["total"], 14);
    assert_eq!(run["customers"].as_array().unwrap().len(), 14);
    assert_eq!(run["next"], Value::Null, "one page holds them all");

    // ConnectWise shows the demo result: Beta's addition 5 -> 8, Acme 42.
    let beta = h.additions_of(202);
    assert_eq!(beta.len(), 1);
    assert_eq!(qty(&beta[0]), 8.0);
    let acme_ixa = h
        .additions_of(201)
        .into_iter()
        .find(|a| a["product"]["id"] == 901)
        .unwrap();
    assert_eq!(qty(&acme_ixa), 42.0);
    assert_eq!(h.cw_writes(), 6);

    let (status, runs) = api.get("/runs").await;
    assert_eq!(status, 200);
    assert_eq!(runs["items"][0]["runId"], run_id.as_str());
    assert_eq!(runs["items"].as_array().unwrap().len(), 1);
    assert_eq!(runs["next"], Value::Null);

    let (status, st) = api.get("/status").await;
    assert_eq!(status, 200);
    let customers = st["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 14);
    let ids: Vec<&str> = customers
        .iter()
        .map(|c| c["tenantId"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "sorted by tenant id");
    let beta = customers
        .iter()
        .find(|c| c["tenantId"] == tenant(2).as_str())
        .unwrap();
    assert_eq!(beta["errors"][0]["code"], "PRODUCT_UNMAPPED");
    assert_eq!(beta["products"][0]["newQuantity"].as_f64(), Some(8.0));

    let (status, audit) = api.get("/audit").await;
    assert_eq!(status, 200);
    let items = audit["items"].as_array().unwrap();
    // Six writes, and the demo's existing catalog item taken into the store.
    assert_eq!(items.len(), 7, "{audit:#}");
    let adopted: Vec<_> = items
        .iter()
        .filter(|e| e["action"] == "adoptCatalogItem")
        .collect();
    assert_eq!(adopted.len(), 1, "{audit:#}");
    assert!(adopted[0]["entityId"].is_i64(), "{audit:#}");
    assert!(items.iter().all(|e| e["runId"] == run_id.as_str()));
    let update = items
        .iter()
        .find(|e| e["action"] == "updateAddition" && e["agreementId"] == 202)
        .unwrap();
    assert_eq!(
        (
            update["oldQuantity"].as_f64(),
            update["newQuantity"].as_f64()
        ),
        (Some(5.0), Some(8.0))
    );
    let (_, by_run) = api.get(&format!("/audit?runId={run_id}&limit=1000")).await;
    assert_eq!(by_run["items"].as_array().unwrap().len(), 7);
    let (_, other_run) = api.get("/audit?runId=r-nothing").await;
    assert!(other_run["items"].as_array().unwrap().is_empty());
    let (_, two) = api.get("/audit?limit=2").await;
    assert_eq!(two["items"].as_array().unwrap().len(), 2);

    // The lease was given back: the next webhook runs, and writes nothing.
    h.sim.clear_requests();
    let again = api.sync(&json!({})).await;
    let run = api.finished(&again).await;
    assert_eq!(run["report"]["writes"], 0, "{run}");
    assert_eq!(h.cw_writes(), 0);
    let (_, runs) = api.get("/runs").await;
    assert_eq!(runs["items"][0]["runId"], again.as_str());
    assert_eq!(runs["items"][1]["runId"], run_id.as_str());
    // Nothing changed, nothing was adopted again: nothing on the trail.
    let (_, trail) = api.get(&format!("/audit?runId={again}")).await;
    assert_eq!(
        trail["items"].as_array().map(Vec::len),
        Some(0),
        "{trail:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_webhook_while_a_cycle_runs_gets_409_naming_it() {
    let h = harness().await;
    let invoker = Arc::new(RecordingInvoker::default());
    let api = Api::with_invoker(&h, invoker.clone()).await;
    let first = api.sync(&json!({})).await;
    let (status, answer) = api.call("POST", "/sync", None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer,
        json!({"error": "a sync cycle is already running", "runId": first})
    );
    let requests = invoker.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].run_id, first);
    assert!(!requests[0].dry_run);
    assert_eq!(requests[0].trigger, "webhook");
    let (_, run) = api.get(&format!("/runs/{first}")).await;
    assert_eq!(run["status"], "running");
    assert_eq!(run["report"], Value::Null);

    // A dry run takes no lease, so it may start meanwhile.
    let (status, answer) = api
        .send(
            "POST",
            "/sync",
            &json!({"dryRun": true, "month": "2026-10"}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["dryRun"], true);
    let requests = invoker.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].month.as_deref(), Some("2026-10"));
    assert!(requests[1].dry_run);
    assert_eq!(h.cw_writes(), 0);
}

/// Follows `next` through every page of `path` (`?limit=` given), checking each page's
/// size; returns the tenant ids in the order served.
async fn tenant_ids_by_page(api: &Api, path: &str, limit: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut url = format!("{path}?limit={limit}");
    loop {
        let (status, page) = api.get(&url).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let customers = page["customers"].as_array().unwrap();
        assert!(customers.len() <= limit, "{page}");
        ids.extend(
            customers
                .iter()
                .map(|c| c["tenantId"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => url = format!("{path}?limit={limit}&after={next}"),
            None => return (ids, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runs_customers_and_the_status_are_served_in_pages() {
    let h = harness().await;
    let (api, _invoker) = Api::local(&h).await;
    let run_id = api.sync(&json!({})).await;
    let run = api.finished(&run_id).await;
    assert_eq!(run["report"]["customerCounts"]["total"], 14, "{run}");

    let mut expected: Vec<String> = (1..=14).map(tenant).collect();
    expected.sort();
    for path in [format!("/runs/{run_id}"), "/status".to_owned()] {
        let (ids, pages) = tenant_ids_by_page(&api, &path, 5).await;
        assert_eq!(
            ids, expected,
            "{path}: every customer once, in tenant-id order"
        );
        assert_eq!(pages, 3, "{path}: 5 + 5 + 3");
    }
    let (_, page) = api.get(&format!("/runs/{run_id}?limit=5")).await;
    assert_eq!(
        page["runId"],
        run_id.as_str(),
        "each page carries the summary"
    );
    assert_eq!(page["status"], "partial");

    for bad in [
        format!("/runs/{run_id}?limit=0"),
        format!("/runs/{run_id}?limit=501"),
        "/status?limit=x".to_owned(),
        "/status?page=2".to_owned(),
    ] {
        let (status, answer) = api.get(&bad).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_webhook_records_the_plan_and_writes_nothing() {
    let h = harness().await;
    let (api, _invoker) = Api::local(&h).await;
    let (status, answer) = api
        .send("POST", "/sync", &json!({"month": MONTH, "dryRun": true}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["dryRun"], true);
    let run_id = answer["runId"].as_str().unwrap();
    let run = api.finished(run_id).await;
    assert_eq!(run["dryRun"], true, "{run}");
    assert_eq!(run["report"]["dryRun"], true);
    assert_eq!(run["report"]["writes"], 0);
    let beta = run["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenantId"] == tenant(2).as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (
            beta["products"][0]["previousQuantity"].as_f64(),
            beta["products"][0]["newQuantity"].as_f64()
        ),
        (Some(5.0), Some(8.0))
    );
    assert_eq!(h.cw_writes(), 0);
    assert_eq!(qty(&h.additions_of(202)[0]), 5.0);
    let (_, st) = api.get("/status").await;
    assert!(st["customers"].as_array().unwrap().is_empty(), "{st}");
    let (_, audit) = api.get("/audit").await;
    assert!(audit["items"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn mappings_are_set_listed_used_and_deleted() {
    let h = harness().await;
    let (api, _invoker) = Api::local(&h).await;
    let kappa = format!("/mappings/{}", tenant(10));

    // Unknown before any sync.
    let (status, answer) = api.send("PUT", &kappa, &json!({"companyId": 110})).await;
    assert_eq!(status, 404, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("unknown tenant") && error.contains("run a sync first"),
        "{error}"
    );
    assert!(h.store.list_mappings().await.unwrap().is_empty());

    let first = api.sync(&json!({})).await;
    let run = api.finished(&first).await;
    let kappa_report = run["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenantId"] == tenant(10).as_str())
        .unwrap()
        .clone();
    assert_eq!(kappa_report["status"], "unmapped");
    assert!(h.additions_of(210).is_empty());

    let (status, mapping) = api.send("PUT", &kappa, &json!({"companyId": 110})).await;
    assert_eq!(status, 200, "{mapping}");
    assert_eq!(mapping["tenantId"], tenant(10).as_str());
    assert_eq!(mapping["kind"], "manual");
    assert_eq!(mapping["companyId"], 110);
    assert!(mapping.get("agreementId").is_none());

    let (status, list) = api.get("/mappings").await;
    assert_eq!(status, 200);
    let manual: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "manual")
        .collect();
    assert_eq!(manual, [&mapping]);

    // The next cycle maps Kappa onto its agreement 210 and creates its addition.
    let second = api.sync(&json!({})).await;
    let run = api.finished(&second).await;
    let kappa_report = run["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenantId"] == tenant(10).as_str())
        .unwrap()
        .clone();
    assert_eq!(kappa_report["status"], "synced", "{kappa_report}");
    assert_eq!(kappa_report["agreementId"], 210);
    assert_eq!(qty(&h.additions_of(210)[0]), 15.0);

    // An agreement too; then ignore; known now because it has a mapping.
    let (status, m) = api
        .send(
            "PUT",
            &kappa,
            &json!({"companyId": 110, "agreementId": 210}),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["agreementId"], 210);
    let (status, m) = api.send("PUT", &kappa, &json!({"ignore": true})).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["kind"], "ignored");
    assert!(m.get("companyId").is_none());

    let (status, answer) = api.call("DELETE", &kappa, None).await;
    assert_eq!((status, answer), (200, json!({"deleted": true})));
    let (status, answer) = api.call("DELETE", &kappa, None).await;
    assert_eq!(status, 404, "{answer}");
    assert!(h.store.get_mapping(&tenant(10)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_round_trip_and_bad_settings_are_refused() {
    let h = Harness::start().await;
    let (api, _invoker) = Api::local(&h).await;
    let (status, defaults) = api.get("/settings").await;
    assert_eq!(status, 200);
    assert_eq!(defaults["products"], json!([]));

    let demo = serde_json::to_value(demo_settings()).unwrap();
    let (status, stored) = api.send("PUT", "/settings", &demo).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored, demo);
    assert_eq!(api.get("/settings").await, (200, demo.clone()));
    assert_eq!(h.store.get_settings().await.unwrap(), Some(demo_settings()));

    let with = |key: &str, value: Value| {
        let mut s = demo.clone();
        s[key] = value;
        s
    };
    let cases = [
        (
            with("products", json!(["Sophos_Nonexistent"])),
            "unknown product identifiers",
        ),
        (
            with("productCodes", json!({"X-MSP": "Nope"})),
            "unknown product identifiers",
        ),
        (with("surprise", json!(1)), "unknown field"),
        (
            with("products", json!("Sophos_Intercept_X")),
            "invalid type",
        ),
        (with("zeroUsage", json!(5)), "invalid type"),
        (with("zeroUsage", json!("sometimes")), "unknown variant"),
        (with("month", json!("2026-13")), "the month setting"),
        (
            with(
                "catalogItems",
                json!({"Sophos_Intercept_X_Advanced": "ACME-EDR",
                       "Sophos_Intercept_X_Advanced_XDR": "acme-edr"}),
            ),
            "one catalog item can stand for one product only",
        ),
        (
            with(
                "catalogItems",
                json!({"Sophos_Email_Advanced": "ACME-MAIL"}),
            ),
            "not among the selected products",
        ),
        (json!([1, 2]), "invalid type"),
    ];
    for (body, expected) in cases {
        let (status, answer) = api.send("PUT", "/settings", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(expected), "{body}: {error}");
    }
    let (status, answer) = api
        .call("PUT", "/settings", Some(b"{\"products\":".to_vec()))
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not valid JSON: line 1 column"),
        "{answer}"
    );
    let (status, answer) = api.call("PUT", "/settings", Some(Vec::new())).await;
    assert_eq!(status, 400, "{answer}");

    // 70 KiB: too large, whatever it holds.
    let mut big = demo.clone();
    big["agreementType"] = json!("x".repeat(70 * 1024));
    let (status, answer) = api.send("PUT", "/settings", &big).await;
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = api.send("POST", "/sync", &big).await;
    assert_eq!(status, 413, "{answer}");

    // None of it changed the settings or started anything.
    assert_eq!(api.get("/settings").await, (200, demo));
    assert!(h.store.list_runs(10, None).await.unwrap().is_empty());
}

/// Method, path, body, expected status, expected part of the error message.
type Case = (&'static str, String, Option<Vec<u8>>, u16, &'static str);

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_a_4xx_that_says_what_to_fix() {
    let h = harness().await;
    let invoker = Arc::new(RecordingInvoker::default());
    let api = Api::with_invoker(&h, invoker.clone()).await;
    let bad = |body: &str| Some(body.as_bytes().to_vec());
    let kappa = format!("/mappings/{}", tenant(10));
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/sync".into(),
            bad("{\"month\":"),
            400,
            "the body is not valid JSON: line 1 column 9",
        ),
        (
            "POST",
            "/sync".into(),
            bad("{\"dry_run\":true}"),
            400,
            "unknown field \"dry_run\"",
        ),
        (
            "POST",
            "/sync".into(),
            bad("{\"dryRun\":\"yes\"}"),
            400,
            "dryRun must be true or false",
        ),
        (
            "POST",
            "/sync".into(),
            bad("{\"month\":\"2026-13\"}"),
            400,
            "use YYYY-MM",
        ),
        (
            "POST",
            "/sync".into(),
            bad("{\"month\":\"November\"}"),
            400,
            "use YYYY-MM",
        ),
        (
            "POST",
            "/sync".into(),
            bad("{\"month\":202611}"),
            400,
            "month must be a string",
        ),
        (
            "POST",
            "/sync".into(),
            bad("[\"2026-11\"]"),
            400,
            "must be a JSON object",
        ),
        (
            "GET",
            "/runs?limit=abc".into(),
            None,
            400,
            "limit must be a whole number from 1 to 100",
        ),
        (
            "GET",
            "/runs?limit=100000".into(),
            None,
            400,
            "from 1 to 100",
        ),
        ("GET", "/runs?limit=0".into(), None, 400, "from 1 to 100"),
        (
            "GET",
            "/runs?limit=1&limit=2".into(),
            None,
            400,
            "given twice",
        ),
        (
            "GET",
            "/runs?limt=5".into(),
            None,
            400,
            "unknown query parameter",
        ),
        (
            "GET",
            "/audit?limit=1001".into(),
            None,
            400,
            "from 1 to 1000",
        ),
        ("GET", "/audit?limit=-3".into(), None, 400, "from 1 to 1000"),
        ("GET", "/runs/r-no-such-run".into(), None, 404, "no run"),
        ("GET", "/nope".into(), None, 404, "no such route"),
        ("GET", "/runs/a/b".into(), None, 404, "no such route"),
        ("GET", "/index.html".into(), None, 404, "no such route"),
        ("GET", "/sync".into(), None, 405, "use POST"),
        ("DELETE", "/settings".into(), None, 405, "use GET or PUT"),
        ("POST", "/mappings".into(), bad("{}"), 405, "use GET"),
        ("GET", kappa.clone(), None, 405, "use PUT or DELETE"),
        (
            "PUT",
            kappa.clone(),
            bad("{\"companyId\":\"110\"}"),
            400,
            "companyId must be a positive whole number",
        ),
        (
            "PUT",
            kappa.clone(),
            bad("{\"companyId\":-1}"),
            400,
            "companyId must be a positive whole number",
        ),
        (
            "PUT",
            kappa.clone(),
            bad("{\"companyId\":1.5}"),
            400,
            "companyId must be a positive whole number",
        ),
        (
            "PUT",
            kappa.clone(),
            bad("{\"companyId\":110,\"agreementId\":0}"),
            400,
            "agreementId must be a positive",
        ),
        (
            "PUT",
            kappa.clone(),
            bad("{\"agreementId\":210}"),
            400,
            "agreementId needs the companyId",
        ),
        (
            "PUT",
            kappa.clone(),
            bad("{\"companyId\":110,\"ignore\":true}"),
            400,
            "not both",
        ),
        (
            "PUT",
            kappa.clone(),
            bad("{\"ignore\":\"yes\"}"),
            400,
            "ignore must be true or false",
        ),
        (
            "PUT",
            kappa.clone(),
            bad("{\"company\":110}"),
            400,
            "unknown field \"company\"",
        ),
        (
            "PUT",
            kappa.clone(),
            bad("{}"),
            400,
            "say what to map the tenant to",
        ),
        ("PUT", kappa.clone(), bad(""), 400, "the body is empty"),
        (
            "PUT",
            kappa.clone(),
            bad("{'companyId': 110}"),
            400,
            "not valid JSON",
        ),
        (
            "PUT",
            "/mappings/%zz".into(),
            bad("{\"ignore\":true}"),
            400,
            "percent-encoding",
        ),
        ("DELETE", kappa.clone(), None, 404, "has no mapping"),
    ];
    for (method, path, body, expected_status, expected) in cases {
        let (status, answer) = api.call(method, &path, body).await;
        assert_eq!(status, expected_status, "{method} {path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(expected), "{method} {path}: {error}");
        if status == 405 {
            assert!(answer["allow"].is_array(), "{answer}");
        }
    }
    // The 405's Allow header.
    let resp = reqwest::Client::new()
        .delete(format!("{}/settings", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET, PUT");

    // None of them started a cycle or wrote anything.
    assert!(invoker.requests.lock().unwrap().is_empty());
    assert!(h.store.list_runs(10, None).await.unwrap().is_empty());
    assert!(h.store.list_mappings().await.unwrap().is_empty());
    assert_eq!(h.cw_writes(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_take_one_trailing_slash_and_read_their_path_parameters_strictly() {
    let h = harness().await;
    let invoker = Arc::new(RecordingInvoker::default());
    let api = Api::with_invoker(&h, invoker.clone()).await;
    // One trailing slash is the same route, query and path parameter included.
    assert_eq!(api.get("/settings/").await, api.get("/settings").await);
    let (status, page) = api.get("/runs/?limit=1").await;
    assert_eq!((status, &page["next"]), (200, &Value::Null), "{page}");
    let (status, answer) = api
        .send(
            "PUT",
            &format!("/mappings/{}/", tenant(1)),
            &json!({"ignore": true}),
        )
        .await;
    // No sync has made the tenant known: the route answered, with its tenant id.
    assert_eq!(status, 404, "{answer}");
    let unknown = format!("unknown tenant {:?}", tenant(1));
    assert!(
        answer["error"].as_str().unwrap().contains(&unknown),
        "{answer}"
    );
    let (status, answer) = api.call("POST", "/review/2026-11-nope/reject/", None).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        !answer["error"].as_str().unwrap().contains("no such route"),
        "the route answered: {answer}"
    );
    // A parameter is decoded (an encoded slash is part of it), broken escapes are
    // refused, and an empty one names no route.
    let (status, answer) = api.get("/runs/a%2Fb").await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("no run \"a/b\""),
        "{answer}"
    );
    let cases: [(&str, &str, u16, &str); 7] = [
        ("GET", "/runs/%zz", 400, "percent-encoding"),
        ("GET", "/runs/%FF", 400, "percent-encoding"),
        ("GET", "/runs/%20", 404, "no such route"),
        ("DELETE", "/mappings/%20/", 404, "no such route"),
        ("GET", "/runs//", 404, "no such route"),
        ("GET", "//sync", 404, "no such route"),
        ("POST", "/review/%20/approve", 404, "no such route"),
    ];
    for (method, path, expected_status, says) in cases {
        let (status, answer) = api.call(method, path, None).await;
        assert_eq!(status, expected_status, "{method} {path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(says), "{method} {path}: {error}");
    }
    // A body too large is refused on any route that answers the method; HEAD is
    // not one of a GET route's methods.
    let big = vec![b' '; 70 * 1024];
    let (status, answer) = api.call("GET", "/runs", Some(big)).await;
    assert_eq!(status, 413, "{answer}");
    let head = reqwest::Client::new()
        .head(format!("{}/runs", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 405);
    assert_eq!(head.headers()["allow"], "GET");
    // None of it started a cycle or wrote anything.
    assert!(invoker.requests.lock().unwrap().is_empty());
    assert!(h.store.list_mappings().await.unwrap().is_empty());
    assert_eq!(h.cw_writes(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_api_handler_is_answered_500_in_json_and_the_service_goes_on() {
    let h = harness().await;
    let api = Api::with_invoker(&h, Arc::new(PanickingInvoker)).await;
    let auth = format!("Bearer {TOKEN}");
    let (status, answer) = api.raw("POST", "/sync", Some(&auth), None).await;
    assert_eq!(status, 500, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.starts_with("internal error"), "{answer}");
    assert!(
        !error.contains("a bug behind"),
        "no detail for the caller: {answer}"
    );
    assert_eq!(api.get("/settings").await, (200, json!(demo_settings())));
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_paged_latest_first() {
    let h = harness().await;
    let api = Api::with_invoker(&h, Arc::new(RecordingInvoker::default())).await;
    for n in 1..=5 {
        let at = chrono::Utc::now();
        h.store
            .put_run(&RunRecord {
                run_id: format!("r2026110{n}T000000000Z-0000000{n}"),
                status: RunStatus::Succeeded,
                started_at: at,
                finished_at: Some(at),
                month: MONTH.into(),
                dry_run: false,
                trigger: "schedule".into(),
                started_by: None,
                report: json!({"writes": n}),
                expires_at: None,
            })
            .await
            .unwrap();
    }
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["runId"].as_str().unwrap()[..9].to_owned())
            .collect()
    };
    let (status, page) = api.get("/runs?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["r20261105", "r20261104"]);
    let next = page["next"].as_str().unwrap().to_owned();
    assert!(next.starts_with("r20261104"));
    let (_, page) = api.get(&format!("/runs?limit=2&before={next}")).await;
    assert_eq!(ids(&page), ["r20261103", "r20261102"]);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, page) = api.get(&format!("/runs?before={next}")).await;
    assert_eq!(ids(&page), ["r20261101"]);
    assert_eq!(page["next"], Value::Null);
    let (_, all) = api.get("/runs").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["items"][0]["report"], json!({"writes": 5}));
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_problems_answer_503_without_details() {
    let h = harness().await;
    // A secret without webhookToken.
    let mut secret: Value =
        serde_json::from_str(&std::fs::read_to_string(&h.secrets_path).unwrap()).unwrap();
    secret.as_object_mut().unwrap().remove("webhookToken");
    let no_token = h.dir.path().join("no-token.json");
    std::fs::write(&no_token, secret.to_string()).unwrap();
    let env = Environment {
        secrets: SecretsSpec::File(no_token),
        ..h.env()
    };
    let invoker = Arc::new(RecordingInvoker::default());
    let api = Api::start(
        &h,
        Arc::new(App::new(env, h.store.clone(), invoker.clone(), None)),
    )
    .await;
    for auth in [None, Some(format!("Bearer {TOKEN}"))] {
        let (status, answer) = api.raw("POST", "/sync", auth.as_deref(), None).await;
        assert_eq!(status, 503, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("webhook token is not configured"),
            "{answer}"
        );
    }

    // A secret that cannot be read: 503, and the path is not disclosed.
    let missing = h.dir.path().join("missing-secret.json");
    let env = Environment {
        secrets: SecretsSpec::File(missing),
        ..h.env()
    };
    let api = Api::start(
        &h,
        Arc::new(App::new(env, h.store.clone(), invoker.clone(), None)),
    )
    .await;
    let (status, answer) = api
        .raw("GET", "/status", Some(&format!("Bearer {TOKEN}")), None)
        .await;
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("cannot read its secrets"), "{error}");
    assert!(!error.contains("missing-secret"), "{error}");
    assert!(invoker.requests.lock().unwrap().is_empty());
    assert!(h.store.list_runs(10, None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_that_cannot_start_is_marked_failed_and_frees_the_lease() {
    let h = Harness::start().await;
    // No agreementType: the engine refuses to run (a configuration error).
    let mut settings = demo_settings();
    settings.agreement_type = None;
    h.store.put_settings(&settings).await.unwrap();
    let (api, invoker) = Api::local(&h).await;
    let run_id = api.sync(&json!({})).await;
    let run = api.finished(&run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["report"]["error"].as_str().unwrap();
    assert!(error.contains("agreementType"), "{error}");
    invoker.wait_idle().await;
    assert_eq!(h.cw_writes(), 0);
    // The lease is free: the next webhook is accepted, not answered 409.
    h.store.put_settings(&demo_settings()).await.unwrap();
    let next = api.sync(&json!({})).await;
    assert_eq!(api.finished(&next).await["status"], "partial");
}

/// `connectwiseConcurrency` is checked when set, and the cycle keeps to it: at 1,
/// ConnectWise never sees two requests at once (the simulator's high-water mark).
#[tokio::test(flavor = "multi_thread")]
async fn the_connectwise_concurrency_setting_is_validated_and_bounds_requests_in_flight() {
    let h = harness().await;
    let (api, _invoker) = Api::local(&h).await;
    let (_, current) = api.get("/settings").await;
    assert_eq!(current["connectwiseConcurrency"], 4, "the default");
    for bad in [json!(0), json!(33)] {
        let mut s = current.clone();
        s["connectwiseConcurrency"] = bad.clone();
        let (status, answer) = api.send("PUT", "/settings", &s).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("connectwiseConcurrency") && error.contains("from 1 to 32"),
            "{error}"
        );
    }
    assert_eq!(h.store.get_settings().await.unwrap(), Some(demo_settings()));

    let mut s = current.clone();
    s["connectwiseConcurrency"] = json!(1);
    let (status, answer) = api.send("PUT", "/settings", &s).await;
    assert_eq!(status, 200, "{answer}");
    h.sim.set_latency(
        sophos_cw_sim::Api::Connectwise,
        sophos_cw_sim::Latency {
            fixed_ms: 5,
            jitter_ms: 0,
        },
    );
    h.sim.clear_requests();
    let run_id = api.sync(&json!({})).await;
    let run = api.finished(&run_id).await;
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(h.cw_writes(), 6, "the demo's writes");
    assert_eq!(h.sim.counters().connectwise.max_in_flight, 1);
}

// ---------------------------------------------------------------- review

mod review_api {
    use super::*;
    use sophos_cw_sync::store::HeldStatus;
    use support::review::{held, put, with_status};

    const XA: &str = "Sophos_Intercept_X_Advanced";

    #[tokio::test(flavor = "multi_thread")]
    async fn held_changes_are_listed_in_pages_approved_and_rejected_as_the_api_actor() {
        let h = harness().await;
        let (api, _invoker) = Api::local(&h).await;
        let mut ids = Vec::new();
        for n in 0..5u32 {
            let c = held(
                MONTH,
                &tenant(200 + n),
                &format!("Customer {n}"),
                XA,
                40.0,
                4.0,
            );
            put(h.store.as_ref(), &c).await;
            ids.push(c.id);
        }
        let applied = with_status(
            &held("2026-10", &tenant(1), "Acme Ltd", XA, 9.0, 1.0),
            HeldStatus::Applied,
        );
        put(h.store.as_ref(), &applied).await;

        // Open ones by default, in pages, latest month first.
        let mut seen = Vec::new();
        let mut path = "/review?limit=2".to_owned();
        loop {
            let (status, page) = api.get(&path).await;
            assert_eq!(status, 200, "{page}");
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 2, "{page}");
            for item in items {
                for field in support::review::LISTED_FIELDS {
                    assert!(!item[field].is_null(), "{field} missing in {item}");
                }
                seen.push(item["id"].as_str().unwrap().to_owned());
            }
            match page["next"].as_str() {
                Some(next) => path = format!("/review?limit=2&after={next}"),
                None => break,
            }
        }
        let mut expected = ids.clone();
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, expected);
        let (_, all) = api.get("/review?all=true&limit=100").await;
        let all: Vec<&str> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(all.len(), 6);
        assert_eq!(all.last(), Some(&applied.id.as_str()), "2026-10 comes last");

        // Approve (empty body), reject ({}), as the API's actor.
        let (status, body) = api
            .call("POST", &format!("/review/{}/approve", ids[0]), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["change"]["status"], "approved");
        assert_eq!(body["change"]["decidedBy"], "api:token");
        let (status, body) = api
            .send("POST", &format!("/review/{}/reject", ids[1]), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["change"]["status"], "rejected");
        let stored = h.store.get_held_change(&ids[1]).await.unwrap().unwrap();
        assert_eq!(stored.status, HeldStatus::Rejected);
        assert_eq!(stored.decided_by.as_deref(), Some("api:token"));
        let trail = h.store.list_audit(100, None).await.unwrap();
        let decisions: Vec<(&str, &str)> = trail
            .iter()
            .filter(|e| e.action.ends_with("Change"))
            .map(|e| (e.action.as_str(), e.actor.as_str()))
            .collect();
        assert_eq!(
            decisions,
            vec![
                ("rejectChange", "api:token"),
                ("approveChange", "api:token")
            ]
        );
        // Decided ones leave the open list only when over: approved stays, rejected goes.
        let (_, open) = api.get("/review?limit=100").await;
        let open: Vec<&str> = open["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert!(open.contains(&ids[0].as_str()) && !open.contains(&ids[1].as_str()));

        // Refusals: unknown 404, applied 409 with its status, bad input 400.
        let (status, body) = api
            .call("POST", "/review/2026-11-000000000000/approve", None)
            .await;
        assert_eq!(status, 404, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("no held change has the id")
        );
        let (status, body) = api
            .call("POST", &format!("/review/{}/reject", applied.id), None)
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["status"], "applied");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("nothing left to reject")
        );
        for (method, path, body, says) in [
            ("GET", "/review?all=yes", None, "all must be true or false"),
            ("GET", "/review?limit=0", None, "limit must be"),
            (
                "GET",
                "/review?status=held",
                None,
                "unknown query parameter",
            ),
            (
                "POST",
                "/review/x/approve",
                Some(br#"{"sync":"now"}"#.to_vec()),
                "sync must be true or false",
            ),
            (
                "POST",
                "/review/x/reject",
                Some(br#"{"sync":true}"#.to_vec()),
                "reject takes no fields",
            ),
            (
                "POST",
                "/review/x/approve",
                Some(b"[".to_vec()),
                "not valid JSON",
            ),
        ] {
            let (status, answer) = api.call(method, path, body).await;
            assert_eq!(status, 400, "{path}: {answer}");
            assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
        }
        let (status, body) = api
            .call("GET", &format!("/review/{}/approve", ids[2]), None)
            .await;
        assert_eq!(status, 405, "{body}");
        assert_eq!(body["allow"], json!(["POST"]));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn review_routes_need_the_bearer_token() {
        let h = harness().await;
        let (api, _invoker) = Api::local(&h).await;
        let c = held(MONTH, &tenant(1), "Acme Ltd", XA, 40.0, 4.0);
        put(h.store.as_ref(), &c).await;
        for (method, path) in [
            ("GET", "/review".to_owned()),
            ("POST", format!("/review/{}/approve", c.id)),
            ("POST", format!("/review/{}/reject", c.id)),
        ] {
            for auth in [None, Some("Bearer wrong-token")] {
                let (status, body) = api.raw(method, &path, auth, None).await;
                assert_eq!(status, 401, "{method} {path}: {body}");
            }
        }
        let stored = h.store.get_held_change(&c.id).await.unwrap().unwrap();
        assert_eq!(stored.status, HeldStatus::Held);
        assert!(h.store.list_audit(10, None).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn approving_with_sync_starts_a_run_of_the_changes_month_or_says_busy() {
        let h = harness().await;
        let invoker = Arc::new(RecordingInvoker::default());
        let api = Api::with_invoker(&h, invoker.clone()).await;
        let first = held(MONTH, &tenant(1), "Acme Ltd", XA, 40.0, 4.0);
        let second = held(MONTH, &tenant(4), "Beta GmbH", XA, 30.0, 3.0);
        put(h.store.as_ref(), &first).await;
        put(h.store.as_ref(), &second).await;
        let (status, body) = api
            .send(
                "POST",
                &format!("/review/{}/approve", first.id),
                &json!({"sync": true}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["change"]["status"], "approved");
        assert_eq!(body["sync"]["status"], "queued");
        let run_id = body["sync"]["runId"].as_str().unwrap().to_owned();
        let requests = invoker.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].run_id, run_id);
        assert_eq!(requests[0].month.as_deref(), Some(MONTH));
        assert!(!requests[0].dry_run);
        // The recording invoker keeps the lease: a second one is approved, the run busy.
        let (status, body) = api
            .send(
                "POST",
                &format!("/review/{}/approve", second.id),
                &json!({"sync": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["change"]["status"], "approved");
        assert_eq!(body["sync"]["status"], "busy");
        assert_eq!(body["sync"]["runId"], run_id.as_str());
        assert_eq!(invoker.requests.lock().unwrap().len(), 1);
    }
}

/// The API's entries on the trail (no run), latest first.
async fn change_entries(h: &Harness) -> Vec<sophos_cw_sync::store::AuditEntry> {
    let all = h.store.list_audit(1000, None).await.unwrap();
    all.into_iter().filter(|e| e.run_id.is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mapping_and_settings_changes_go_on_the_trail_with_the_actor_and_old_and_new() {
    let h = harness().await;
    let (api, _invoker) = Api::local(&h).await;
    let kappa = format!("/mappings/{}", tenant(10));
    let first = api.sync(&json!({})).await;
    api.finished(&first).await;

    let (status, _) = api.send("PUT", &kappa, &json!({"companyId": 110})).await;
    assert_eq!(status, 200);
    let (status, _) = api
        .send(
            "PUT",
            &kappa,
            &json!({"companyId": 110, "agreementId": 210}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api.call("DELETE", &kappa, None).await;
    assert_eq!(status, 200);
    // A delete that finds nothing is no change: no entry.
    let (status, _) = api.call("DELETE", &kappa, None).await;
    assert_eq!(status, 404);

    let entries = change_entries(&h).await;
    let seen: Vec<(&str, &str, Option<&str>)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.detail.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "clearMapping",
                "api:token",
                Some("manual: company 110, agreement 210 → no mapping")
            ),
            (
                "setMapping",
                "api:token",
                Some("manual: company 110 → manual: company 110, agreement 210")
            ),
            (
                "setMapping",
                "api:token",
                Some("no mapping → manual: company 110")
            ),
        ]
    );
    assert!(
        entries
            .iter()
            .all(|e| e.tenant_id.as_deref() == Some(tenant(10).as_str()))
    );

    // Settings: only the changed keys, old → new; the same settings again write nothing.
    let mut next = serde_json::to_value(demo_settings()).unwrap();
    next["month"] = json!("previous");
    let (status, answer) = api.send("PUT", "/settings", &next).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = api.send("PUT", "/settings", &next).await;
    assert_eq!(status, 200);
    let entries = change_entries(&h).await;
    assert_eq!(entries.len(), 4, "{entries:#?}");
    assert_eq!(entries[0].action, "updateSettings");
    assert_eq!(entries[0].actor, "api:token");
    assert_eq!(
        entries[0].detail.as_deref(),
        Some(r#"month: "2026-11" → "previous""#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agreement_type_connectwise_does_not_have_is_refused_listing_the_ones_it_has() {
    let h = harness().await;
    let (api, _invoker) = Api::local(&h).await;
    let mut wrong = serde_json::to_value(demo_settings()).unwrap();
    wrong["agreementType"] = json!("Sophos MPS");
    let (status, answer) = api.send("PUT", "/settings", &wrong).await;
    assert_eq!(status, 400, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("\"Sophos MPS\"")
            && error.contains("Sophos MSP")
            && error.contains("Managed Services")
            && error.contains("Nothing was stored"),
        "{error}"
    );
    let listed = answer["agreementTypes"].as_array().unwrap();
    assert!(listed.contains(&json!("Sophos MSP")), "{answer}");
    assert_eq!(h.store.get_settings().await.unwrap(), Some(demo_settings()));
    assert!(change_entries(&h).await.is_empty());

    // One that exists is stored.
    wrong["agreementType"] = json!("Managed Services");
    let (status, answer) = api.send("PUT", "/settings", &wrong).await;
    assert_eq!(status, 200, "{answer}");
    let stored = h.store.get_settings().await.unwrap().unwrap();
    assert_eq!(stored.agreement_type.as_deref(), Some("Managed Services"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agreement_type_is_not_stored_unchecked_when_connectwise_is_out_of_reach() {
    let h = harness().await;
    // A ConnectWise site nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let site = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    h.set_secret_fields(json!({"connectwise": {
        "site": site, "companyId": "x", "publicKey": "pub-key-value-1",
        "privateKey": "private-key-value-1", "clientId": "c", "codebase": "v4_6_release/"}}));
    let (api, _invoker) = Api::local(&h).await;
    let mut other = serde_json::to_value(demo_settings()).unwrap();
    other["agreementType"] = json!("Managed Services");
    let (status, answer) = api
        .raw(
            "PUT",
            "/settings",
            Some(&format!("Bearer {TOKEN}")),
            Some(other.to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 502, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("ConnectWise could not be reached") && error.contains("nothing was stored"),
        "{error}"
    );
    assert_eq!(h.store.get_settings().await.unwrap(), Some(demo_settings()));
    // A change that leaves the agreement type alone needs no ConnectWise.
    let mut paused = serde_json::to_value(demo_settings()).unwrap();
    paused["paused"] = json!(true);
    let (status, answer) = api.send("PUT", "/settings", &paused).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn while_paused_post_sync_starts_nothing_and_says_how_to_resume_and_a_dry_run_still_plans() {
    let h = harness().await;
    let (api, _invoker) = Api::local(&h).await;
    let mut paused = serde_json::to_value(demo_settings()).unwrap();
    paused["paused"] = json!({"reason": "invoices being checked"});
    let (status, stored) = api.send("PUT", "/settings", &paused).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["paused"]["by"], "api:token");
    assert!(stored["paused"]["at"].is_string(), "{stored}");

    let (status, answer) = api.send("POST", "/sync", &json!({})).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["status"], "paused");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("paused by api:token")
            && error.contains("invoices being checked")
            && error.contains("No run was started")
            && error.contains("\"paused\": false"),
        "{error}"
    );
    assert!(h.store.list_runs(10, None).await.unwrap().is_empty());

    let plan = api.sync(&json!({"dryRun": true})).await;
    let run = api.finished(&plan).await;
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["dryRun"], true);
    assert_eq!(h.cw_writes(), 0);

    // Resuming through the API: audited as resumeSync, and writing runs run again.
    let (status, _) = api
        .send(
            "PUT",
            "/settings",
            &serde_json::to_value(demo_settings()).unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    let entries = change_entries(&h).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["resumeSync", "pauseSync"], "{entries:#?}");
    assert!(entries.iter().all(|e| e.actor == "api:token"));
    assert!(
        entries[1]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("paused: null → {"),
        "{entries:#?}"
    );
    let run_id = api.sync(&json!({"acceptUsageDrop": true})).await;
    let run = api.finished(&run_id).await;
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["report"]["usageDropAccepted"], true, "{run}");
}
