//! Fault injection, latency, the request log and counters, as a client sees
//! them, and the control API over HTTP.

mod common;

use common::{Cw, Sophos, addition_body, client, json};
use serde_json::json;
use sophos_cw_sim::{Api, Fault, FaultKind, Latency, Scenario, Sim, generate};
use std::time::Duration;

fn fault(api: Api, path: &str, kind: FaultKind) -> Fault {
    Fault {
        api,
        method: None,
        path_contains: Some(path.to_owned()),
        nth: 1,
        times: 1,
        after_apply: false,
        kind,
        seen: 0,
    }
}

async fn demo() -> (Sim, Cw) {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let cw = Cw::new(&sim);
    (sim, cw)
}

#[tokio::test]
async fn rate_limit_fault_sends_429_with_retry_after() {
    let (sim, cw) = demo().await;
    sim.add_fault(fault(
        Api::Connectwise,
        "/company/companies",
        FaultKind::RateLimit { retry_after: 7 },
    ));
    let response = cw.get("company/companies").send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(json(response).await["code"], "ConnectWiseApi");
    assert_eq!(
        cw.get("company/companies").send().await.unwrap().status(),
        200,
        "times=1: once only"
    );
}

#[tokio::test]
async fn status_fault_uses_the_vendor_error_shape() {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let sophos = Sophos::login(&sim).await;
    sim.add_fault(fault(
        Api::Sophos,
        "/partner/v1/tenants",
        FaultKind::Status { status: 500 },
    ));
    let response = sophos.get("/partner/v1/tenants").send().await.unwrap();
    assert_eq!(response.status(), 500);
    let body = json(response).await;
    assert!(body["correlationId"].is_string() && body["message"].is_string());
}

#[tokio::test]
async fn hang_outlasts_a_client_timeout() {
    let (sim, cw) = demo().await;
    sim.add_fault(fault(
        Api::Connectwise,
        "/company/companies",
        FaultKind::Hang { ms: 2000 },
    ));
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = format!("{}/company/companies", cw.base);
    let request = impatient
        .get(url)
        .basic_auth(&cw.user, Some(&cw.password))
        .header("clientId", &cw.client_id);
    let error = request
        .send()
        .await
        .expect_err("the request hangs past the timeout");
    assert!(error.is_timeout(), "{error}");
}

#[tokio::test]
async fn truncated_body_fails_to_parse() {
    let (sim, cw) = demo().await;
    let mut truncate = fault(Api::Connectwise, "/company/companies", FaultKind::Truncate);
    truncate.after_apply = true;
    sim.add_fault(truncate);
    let response = cw.get("company/companies").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("[{"), "the start of the real body: {text}");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
}

#[tokio::test]
async fn after_apply_fault_writes_but_answers_500() {
    let (sim, cw) = demo().await;
    let mut failing = fault(
        Api::Connectwise,
        "/additions",
        FaultKind::Status { status: 500 },
    );
    failing.method = Some("POST".into());
    failing.after_apply = true;
    sim.add_fault(failing);
    let before = sim.collection("additions").len();
    let response = cw
        .post("finance/agreements/202/additions", &addition_body(5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(
        sim.collection("additions").len(),
        before + 1,
        "the write happened"
    );
}

#[tokio::test]
async fn nth_and_times_pick_which_requests_fail() {
    let (sim, cw) = demo().await;
    let mut second_and_third = fault(
        Api::Connectwise,
        "/company/companies",
        FaultKind::Status { status: 503 },
    );
    second_and_third.nth = 2;
    second_and_third.times = 2;
    sim.add_fault(second_and_third);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            cw.get("company/companies")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 503, 503, 200]);
    // Requests to other paths do not count.
    assert_eq!(
        cw.get("finance/agreements").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn latency_shows_in_the_request_log() {
    let (sim, cw) = demo().await;
    sim.set_latency(
        Api::Connectwise,
        Latency {
            fixed_ms: 60,
            jitter_ms: 0,
        },
    );
    cw.get("company/companies").send().await.unwrap();
    let log = sim.requests();
    let entry = log
        .iter()
        .find(|r| r.path.ends_with("/company/companies"))
        .unwrap();
    assert!(entry.duration_ms >= 60, "{entry:?}");
}

#[tokio::test]
async fn request_log_and_counters_split_reads_and_writes_per_api() {
    let (sim, cw) = demo().await;
    let sophos = Sophos::login(&sim).await; // one Sophos write (token POST)
    sophos.get("/partner/v1/tenants").send().await.unwrap();
    cw.get("company/companies").send().await.unwrap();
    cw.get("finance/agreements/202/additions")
        .send()
        .await
        .unwrap();
    cw.post("finance/agreements/202/additions", &addition_body(2))
        .send()
        .await
        .unwrap();
    let counters = sim.counters();
    assert_eq!((counters.sophos.reads, counters.sophos.writes), (1, 1));
    assert_eq!(
        (counters.connectwise.reads, counters.connectwise.writes),
        (2, 1)
    );
    let log = sim.requests();
    assert_eq!(log.len(), 5);
    let post = log
        .iter()
        .find(|r| r.method == "POST" && r.api == Api::Connectwise)
        .unwrap();
    assert_eq!(
        (post.status, post.path.as_str()),
        (
            201,
            "/v4_6_release/apis/3.0/finance/agreements/202/additions"
        )
    );
    sim.clear_requests();
    assert_eq!(sim.counters().connectwise.reads, 0);
}

#[tokio::test]
async fn counters_keep_the_most_requests_in_flight_until_reset() {
    let (sim, cw) = demo().await;
    cw.get("company/companies").send().await.unwrap();
    cw.get("company/companies").send().await.unwrap();
    assert_eq!(
        sim.counters().connectwise.max_in_flight,
        1,
        "one after another"
    );
    // Three at once, each held by the latency long enough to overlap.
    sim.set_latency(
        Api::Connectwise,
        Latency {
            fixed_ms: 300,
            jitter_ms: 0,
        },
    );
    let (a, b, c) = tokio::join!(
        cw.get("company/companies").send(),
        cw.get("finance/agreements").send(),
        cw.get("procurement/catalog").send()
    );
    for r in [a, b, c] {
        assert_eq!(r.unwrap().status(), 200);
    }
    let counters = sim.counters();
    assert_eq!(counters.connectwise.max_in_flight, 3);
    assert_eq!(counters.sophos.max_in_flight, 0, "per API");
    sim.clear_requests();
    assert_eq!(sim.counters().connectwise.max_in_flight, 0, "reset");
    cw.get("company/companies").send().await.unwrap();
    assert_eq!(sim.counters().connectwise.max_in_flight, 1);
}

#[tokio::test]
async fn control_api_over_http() {
    let (sim, cw) = demo().await;
    let http = client();
    let control = |path: &str| format!("{}/_sim/{path}", sim.cw_url());

    let state = json(http.get(control("state")).send().await.unwrap()).await;
    assert_eq!(
        state["connectwise"]["companies"].as_array().unwrap().len(),
        12
    );

    let fault = json!({"api": "connectwise", "pathContains": "/procurement/catalog", "kind": "rateLimit", "retryAfter": 3});
    assert_eq!(
        http.post(control("faults"))
            .json(&fault)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let limited = cw.get("procurement/catalog").send().await.unwrap();
    assert_eq!(
        (
            limited.status().as_u16(),
            limited.headers()["retry-after"].to_str().unwrap()
        ),
        (429, "3")
    );

    let sophos = Sophos::login(&sim).await;
    let clock = http
        .post(control("clock"))
        .json(&json!({"advanceSeconds": 3601}))
        .send()
        .await
        .unwrap();
    assert_eq!(clock.status(), 204);
    assert_eq!(
        sophos
            .get("/partner/v1/tenants")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let generated = generate::generate(3, 1, 9);
    assert_eq!(
        http.put(control("scenario"))
            .json(&generated)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let companies = cw.get_ok("company/companies").await;
    assert_eq!(companies.as_array().unwrap().len(), 3);
    let log = json(http.get(control("requests")).send().await.unwrap()).await;
    assert_eq!(
        log.as_array().unwrap().len(),
        1,
        "loading a scenario clears the log"
    );
}

#[tokio::test]
async fn invalid_fault_is_the_vendors_400_and_writes_nothing() {
    let (sim, cw) = demo().await;
    sim.add_fault(fault(
        Api::Connectwise,
        "/procurement/catalog",
        FaultKind::Invalid {
            resource: "catalogItem".into(),
            field: "subcategory".into(),
            message: "The subcategory is restricted to another location.".into(),
        },
    ));
    let item = json!({"identifier": "Sophos_X", "description": "d", "customerDescription": "c",
                      "type": {"id": 11}, "subcategory": {"id": 31}});
    let response = cw.post("procurement/catalog", &item).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body = json(response).await;
    assert_eq!(body["code"], "InvalidObject");
    assert_eq!(body["errors"][0]["field"], "subcategory");
    assert_eq!(body["errors"][0]["resource"], "catalogItem");
    assert_eq!(
        body["errors"][0]["message"],
        "The subcategory is restricted to another location."
    );
    assert_eq!(sim.collection("catalog").len(), 1, "nothing written");
    let again = cw.post("procurement/catalog", &item).send().await.unwrap();
    assert_eq!(again.status(), 201, "the fault fired once");
}

// ------------------------------------------------------------------ throttling

#[tokio::test]
async fn a_scenario_throttle_answers_429_with_retry_after_and_logs_it() {
    let mut scenario = Scenario::demo();
    let text = r#"{"aboveInFlight": 0, "retryAfter": 3}"#;
    scenario.connectwise.throttle = Some(serde_json::from_str(text).unwrap());
    let sim = Sim::start(scenario).await.unwrap();
    let cw = Cw::new(&sim);
    let response = cw.get("company/companies").send().await.unwrap();
    assert_eq!(response.status(), 429, "one in flight is above 0");
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(json(response).await["code"], "ConnectWiseApi");
    let logged = sim.requests().pop().unwrap();
    assert_eq!(logged.status, 429);
    assert_eq!(logged.fault.as_deref(), Some("Throttled"));
    assert_eq!(logged.in_flight, 1);
    sim.set_throttle(None);
    assert_eq!(
        cw.get("company/companies").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn the_throttle_refuses_only_above_its_number_in_flight() {
    let (sim, cw) = demo().await;
    sim.set_throttle(Some(sophos_cw_sim::Throttle {
        above_in_flight: 1,
        retry_after: 0,
    }));
    // A request the simulator holds: one in flight, not refused.
    sim.add_fault(fault(
        Api::Connectwise,
        "/finance/agreements",
        FaultKind::Hang { ms: 30_000 },
    ));
    let held = tokio::spawn(cw.get("finance/agreements").send());
    while !sim.requests().iter().any(|r| r.path.contains("agreements")) {
        tokio::task::yield_now().await;
    }
    let second = cw.get("company/companies").send().await.unwrap();
    assert_eq!(second.status(), 429, "two in flight is above 1");
    assert_eq!(second.headers()["retry-after"], "0");
    held.abort();
    let log = sim.requests();
    let first = log.iter().find(|r| r.path.contains("agreements")).unwrap();
    assert_eq!(
        (first.in_flight, first.fault.as_deref()),
        (1, Some("Hang { ms: 30000 }"))
    );
    let refused = log.iter().find(|r| r.path.contains("companies")).unwrap();
    assert_eq!((refused.in_flight, refused.status), (2, 429));
    assert_eq!(refused.fault.as_deref(), Some("Throttled"));
}
