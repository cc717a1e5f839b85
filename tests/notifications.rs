//! Notifications after a run: one summary message per run that needs a person,
//! to SNS (moto) and a signed chat webhook (a local receiver), never for a quiet
//! or dry run, never twice, and never failing the run.
//!
//! Observing SNS: moto 5.2 confirms `http` subscriptions at once (it sends no
//! SubscriptionConfirmation) and delivers a Publish to them synchronously, before
//! it answers the Publish. So each test subscribes its own local receiver on
//! 127.0.0.1 to a fresh topic, and the message is there when the run returns.

mod support;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sophos_cw_sim::{Scenario, generate};
use sophos_cw_sync::app::{App, RunRequest, StartOutcome};
use sophos_cw_sync::config::Settings;
use sophos_cw_sync::notify::{Notifier, notice_for_report, webhook};
use sophos_cw_sync::store::{RunStatus, Store};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::app::{Harness, QueueInvoker, generated_settings};

/// The generated scenario's settings with every product priced, so the items a
/// run creates bill something and the run has no CATALOG_PRICE_ZERO warning: a
/// quiet run stays quiet.
fn priced_settings() -> Settings {
    let mut settings = generated_settings();
    let price = sophos_cw_sync::config::Price {
        price: 4.5,
        cost: 2.9,
    };
    settings.prices = settings
        .products
        .iter()
        .map(|p| (p.clone(), price))
        .collect();
    settings
}

const CONSOLE: &str = "https://api.example.test/console";
const HOOK_KEY: &str = "notify-webhook-signing-key";

/// How a receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Status(u16),
    /// Never answers: the sender's timeout must cut it.
    Hang,
}

#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// An HTTP receiver on 127.0.0.1 that records every request it gets.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let state = (got.clone(), answer);
        let app = Router::new()
            .fallback(
                |State((got, answer)): State<(Arc<Mutex<Vec<Received>>>, Answer)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    got.lock().unwrap().push(Received { headers, body });
                    match answer {
                        Answer::Ok => StatusCode::OK,
                        Answer::Status(s) => StatusCode::from_u16(s).unwrap(),
                        Answer::Hang => std::future::pending().await,
                    }
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook/T0K3N", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The SNS notifications (moto's JSON envelope) received.
    fn sns_messages(&self) -> Vec<Value> {
        self.received()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).expect("an SNS envelope"))
            .filter(|v| v["Type"] == "Notification")
            .collect()
    }
}

/// A fresh SNS topic in moto with `receiver` subscribed over http.
async fn topic_to(receiver: &Receiver) -> (String, aws_config::SdkConfig) {
    let conf = support::moto::aws_config().await;
    let sns = aws_sdk_sns::Client::new(&conf);
    let topic = sns
        .create_topic()
        .name(support::moto::unique_name("notify-"))
        .send()
        .await
        .expect("moto creates the topic")
        .topic_arn
        .expect("a topic arn");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("http")
        .endpoint(&receiver.url)
        .send()
        .await
        .expect("moto subscribes the receiver");
    (topic, conf)
}

/// The harness's app with a queue for continuations, the console URL set, and,
/// where given, an SNS topic (on moto) and a short notification timeout.
async fn app_for(
    h: &Harness,
    settings: &Settings,
    topic: Option<(String, aws_config::SdkConfig)>,
    queue: Arc<QueueInvoker>,
) -> App {
    h.store.put_settings(settings).await.unwrap();
    // Secrets re-read on every use, so a test can change the secret between runs.
    let mut env = h.lambda_env(Duration::ZERO);
    env.console_url = Some(CONSOLE.into());
    env.notify_webhook_timeout = Duration::from_millis(300);
    let aws = topic.as_ref().map(|(_, conf)| conf.clone());
    env.notify_topic_arn = topic.map(|(arn, _)| arn);
    App::new(env, h.store.clone(), queue, aws)
}

fn use_webhook(h: &Harness, receiver: &Receiver) {
    h.set_secret_fields(json!({
        "notifyWebhookUrl": receiver.url,
        "notifyWebhookSecret": HOOK_KEY
    }));
}

/// A run started as the webhook does, then its first invocation.
async fn start_and_run(app: &App, queue: &QueueInvoker) -> (String, Result<RunStatus, String>) {
    let StartOutcome::Started { run_id } = app.start_sync(None, false, "test").await.unwrap()
    else {
        panic!("the lease is free")
    };
    let request = queue.pop().expect("the start was queued");
    let result = app
        .run_job(&request, None)
        .await
        .map(|r| r.status)
        .map_err(|e| e.to_string());
    (run_id, result)
}

/// A generated scenario in which every customer syncs cleanly (fewer than 50
/// tenants: no tenant without a company).
fn clean_scenario() -> Scenario {
    generate::generate(6, 2, 3)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_publishes_one_sns_message_even_when_its_event_is_redelivered() {
    let receiver = Receiver::start(Answer::Ok).await;
    let h = Harness::start().await;
    let good = std::fs::read_to_string(&h.secrets_path).unwrap();
    std::fs::write(
        &h.secrets_path,
        good.replace("sim-sophos-secret", "wrong-secret"),
    )
    .unwrap();
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(
        &h,
        &support::app::demo_settings(),
        Some(topic_to(&receiver).await),
        queue.clone(),
    )
    .await;
    let (run_id, result) = start_and_run(&app, &queue).await;
    assert!(
        result.is_err(),
        "the Sophos credentials are wrong: {result:?}"
    );
    let run = h.store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);

    let messages = receiver.sns_messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let subject = messages[0]["Subject"].as_str().unwrap();
    assert_eq!(subject, "sophos-cw-sync 2026-11: run failed");
    let text = messages[0]["Message"].as_str().unwrap();
    assert!(
        text.contains(&format!("the run {run_id} for 2026-11 failed")),
        "{text}"
    );
    assert!(text.contains(&format!("{CONSOLE}/runs/{run_id}")), "{text}");
    for secret in [
        "wrong-secret",
        "sim-sophos-secret",
        "webhook-token-secret-value",
    ] {
        assert!(!text.contains(secret), "no secret in the message: {text}");
    }

    // Lambda delivers the same event again: it fails again, but sends nothing more.
    let again = RunRequest::new(run_id.clone(), None, false, "webhook");
    assert!(app.run_job(&again, None).await.is_err());
    assert_eq!(receiver.sns_messages().len(), 1, "never twice for one run");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_ending_in_an_error_before_the_cycle_is_notified_too() {
    let receiver = Receiver::start(Answer::Ok).await;
    let h = Harness::start().await;
    use_webhook(&h, &receiver);
    let mut settings = support::app::demo_settings();
    settings.agreement_type = None;
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(&h, &settings, None, queue.clone()).await;
    let (run_id, result) = start_and_run(&app, &queue).await;
    let error = result.unwrap_err();
    assert!(error.contains("agreementType"), "{error}");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains(&run_id) && text.contains("agreementType"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_with_held_changes_is_published_to_sns_with_the_review_link() {
    // The report side of held changes, without the engine: a real clean run's
    // report with review counts, sent as the app sends it.
    let receiver = Receiver::start(Answer::Ok).await;
    let h = Harness::with_scenario(clean_scenario()).await;
    let mut report = h.run(&priced_settings()).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    report.customer_counts.review = 1;
    report.customer_counts.held = 2;
    let notice = notice_for_report(&report, &[], Some(CONSOLE)).expect("held changes notify");
    let mut env = h.env();
    let (topic, conf) = topic_to(&receiver).await;
    env.notify_topic_arn = Some(topic);
    let notifier = Notifier::new(&env, None, Some(&conf)).await;
    assert!(notifier.send_once(h.store.as_ref(), &notice).await);
    assert!(
        !notifier.send_once(h.store.as_ref(), &notice).await,
        "claimed once"
    );
    let messages = receiver.sns_messages();
    assert_eq!(messages.len(), 1);
    let text = messages[0]["Message"].as_str().unwrap();
    assert!(
        text.contains("Held for review: 2 product changes (1 customer in review)"),
        "{text}"
    );
    assert!(text.contains(&format!("{CONSOLE}/review")), "{text}");
    assert_eq!(
        messages[0]["Subject"],
        "sophos-cw-sync 2026-11: 2 changes held for review"
    );
}

/// Depends on main's engine holding changes for review (`review` settings): on
/// this branch the engine does not hold changes yet.
#[tokio::test(flavor = "multi_thread")]
async fn held_changes_of_a_run_publish_an_sns_message() {
    let receiver = Receiver::start(Answer::Ok).await;
    let h = Harness::with_scenario(clean_scenario()).await;
    let mut settings = priced_settings();
    settings.review = serde_json::from_value(json!({"quantityOver": 0})).unwrap();
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(
        &h,
        &settings,
        Some(topic_to(&receiver).await),
        queue.clone(),
    )
    .await;
    let (run_id, result) = start_and_run(&app, &queue).await;
    assert!(result.is_ok(), "{result:?}");
    let run = h.store.get_run(&run_id).await.unwrap().unwrap();
    assert!(run.report["customerCounts"]["held"].as_u64().unwrap() > 0);
    let messages = receiver.sns_messages();
    assert_eq!(messages.len(), 1);
    let text = messages[0]["Message"].as_str().unwrap();
    assert!(text.contains("Held for review: "), "{text}");
    assert!(text.contains(&format!("{CONSOLE}/review")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_gets_one_signed_text_message_teams_and_slack_accept() {
    let receiver = Receiver::start(Answer::Ok).await;
    // The demo scenario has customers in error and unmapped.
    let h = Harness::start().await;
    use_webhook(&h, &receiver);
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(&h, &support::app::demo_settings(), None, queue.clone()).await;
    let before = chrono::Utc::now().timestamp();
    let (run_id, result) = start_and_run(&app, &queue).await;
    assert_eq!(result, Ok(RunStatus::Partial));

    let got = receiver.received();
    assert_eq!(got.len(), 1, "one message");
    let request = &got[0];
    assert_eq!(request.headers["content-type"], "application/json");
    let timestamp = request.headers[webhook::TIMESTAMP_HEADER].to_str().unwrap();
    let sent_at: i64 = timestamp.parse().expect("unix seconds");
    assert!(sent_at >= before && sent_at <= chrono::Utc::now().timestamp());
    // The receiver's check: HMAC-SHA256 of "<timestamp>.<body>" under the key.
    let signature = request.headers[webhook::SIGNATURE_HEADER].to_str().unwrap();
    let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let expected = hex_bytes(hex);
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(HOOK_KEY.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&request.body);
    mac.verify_slice(&expected).expect("the signature holds");
    let mut forged = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"another key").unwrap();
    forged.update(format!("{timestamp}.").as_bytes());
    forged.update(&request.body);
    assert!(forged.verify_slice(&expected).is_err(), "the key matters");

    // Teams and Slack incoming webhooks: a JSON object with only "text".
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let obj = body.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["text"]);
    let text = obj["text"].as_str().unwrap();
    assert!(text.contains(&run_id) && text.contains("2026-11"), "{text}");
    assert!(text.contains(&format!("{CONSOLE}/?status=error")), "{text}");
    assert!(text.contains(&format!("{CONSOLE}/runs/{run_id}")), "{text}");
    assert!(text.contains("first codes: "), "the error codes: {text}");
    for secret in [
        HOOK_KEY,
        "T0K3N",
        "webhook-token-secret-value",
        "sim-sophos-secret",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    assert_eq!(hex.len(), 64, "{hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_answering_500_is_tried_three_times_and_the_run_still_succeeds() {
    let receiver = Receiver::start(Answer::Status(500)).await;
    let h = Harness::start().await;
    use_webhook(&h, &receiver);
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(&h, &support::app::demo_settings(), None, queue.clone()).await;
    let (_, result) = start_and_run(&app, &queue).await;
    assert_eq!(result, Ok(RunStatus::Partial), "the run is unaffected");
    assert_eq!(
        receiver.received().len(),
        1 + webhook::MAX_RETRIES as usize,
        "bounded retries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_answering_400_is_not_retried() {
    let receiver = Receiver::start(Answer::Status(400)).await;
    let h = Harness::start().await;
    use_webhook(&h, &receiver);
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(&h, &support::app::demo_settings(), None, queue.clone()).await;
    let (_, result) = start_and_run(&app, &queue).await;
    assert_eq!(result, Ok(RunStatus::Partial));
    assert_eq!(receiver.received().len(), 1, "a 4xx is final");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_webhook_is_cut_by_the_timeout_and_the_run_still_succeeds() {
    let receiver = Receiver::start(Answer::Hang).await;
    let h = Harness::start().await;
    use_webhook(&h, &receiver);
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(&h, &support::app::demo_settings(), None, queue.clone()).await;
    let started = std::time::Instant::now();
    let (_, result) = start_and_run(&app, &queue).await;
    let took = started.elapsed();
    assert_eq!(result, Ok(RunStatus::Partial), "the run is unaffected");
    assert_eq!(
        receiver.received().len(),
        1 + webhook::MAX_RETRIES as usize,
        "each attempt reached the receiver and was given up"
    );
    // Three 300 ms timeouts and at most 0.25 + 0.5 s of backoff, plus the run.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_run_and_a_dry_run_send_nothing() {
    let receiver = Receiver::start(Answer::Ok).await;
    let h = Harness::with_scenario(clean_scenario()).await;
    use_webhook(&h, &receiver);
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(
        &h,
        &priced_settings(),
        Some(topic_to(&receiver).await),
        queue.clone(),
    )
    .await;
    let (run_id, result) = start_and_run(&app, &queue).await;
    assert_eq!(result, Ok(RunStatus::Succeeded));
    assert!(h.cw_writes() > 0, "the run did sync");
    assert!(receiver.received().is_empty(), "nothing to report");
    let claim = h
        .store
        .claimed(&format!("notify#{run_id}"), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(claim, None, "nothing claimed for a quiet run");

    // A dry run with errors (the demo's) sends nothing either.
    let demo = Harness::start().await;
    use_webhook(&demo, &receiver);
    let app = app_for(&demo, &support::app::demo_settings(), None, queue.clone()).await;
    let dry = RunRequest::new("r-dry".into(), None, true, "webhook");
    let report = app.run_job(&dry, None).await.unwrap();
    assert!(
        report.customer_counts.with_errors > 0,
        "the dry run found errors"
    );
    assert!(receiver.received().is_empty(), "a dry run sends nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_over_several_invocations_sends_one_message_at_its_end() {
    let receiver = Receiver::start(Answer::Ok).await;
    // 60 tenants: the 50th has no company, so the run ends partial.
    let h = Harness::with_scenario(generate::generate(60, 1, 5)).await;
    use_webhook(&h, &receiver);
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(&h, &priced_settings(), None, queue.clone()).await;
    let StartOutcome::Started { run_id } = app.start_sync(None, false, "test").await.unwrap()
    else {
        panic!("the lease is free")
    };
    let mut invocations = 0;
    let mut last = None;
    while let Some(next) = queue.pop() {
        invocations += 1;
        assert!(invocations < 10, "the cycle must make progress");
        // The first invocation is out of time at once (one customer); the next
        // runs to the end.
        let deadline = (invocations == 1).then(tokio::time::Instant::now);
        let report = app.run_job(&next, deadline).await.unwrap();
        if report.status == RunStatus::Incomplete {
            assert!(
                receiver.received().is_empty(),
                "an incomplete invocation sends nothing"
            );
        }
        last = Some((next, report));
    }
    let (last_request, report) = last.unwrap();
    assert!(invocations >= 2, "needed {invocations} invocations");
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(report.customer_counts.total, 60);
    let got = receiver.received();
    assert_eq!(got.len(), 1, "one message for the run");
    let text: Value = serde_json::from_slice(&got[0].body).unwrap();
    let text = text["text"].as_str().unwrap();
    assert!(text.contains(&run_id), "{text}");
    assert!(
        text.contains("60 in all"),
        "counts across invocations: {text}"
    );
    assert!(text.contains(&format!("{CONSOLE}/mapping")), "{text}");

    // The last invocation's event delivered again: nothing more is sent.
    app.run_job(&last_request, None).await.unwrap();
    assert_eq!(receiver.received().len(), 1, "never twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sync_notifies_the_webhook_once_and_its_dry_run_not_at_all() {
    let receiver = Receiver::start(Answer::Ok).await;
    let h = Harness::start().await;
    use_webhook(&h, &receiver);
    let env = [
        ("CONSOLE_URL", CONSOLE),
        ("NOTIFY_WEBHOOK_TIMEOUT_SECONDS", "2"),
    ];
    let dry = h.cli(&["sync", "--dry-run"], &env).await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(receiver.received().is_empty(), "a dry run sends nothing");

    let out = h.cli(&["sync", "--json"], &env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = report["runId"].as_str().unwrap();
    let got = receiver.received();
    assert_eq!(got.len(), 1, "the demo's errors are notified");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.contains(&format!("{CONSOLE}/runs/{run_id}")), "{text}");
    assert!(got[0].headers.contains_key(webhook::SIGNATURE_HEADER));
    // Nothing of the notification on the CLI's output, and never the URL.
    for stream in [&out.stdout, &out.stderr] {
        let shown = String::from_utf8_lossy(stream);
        assert!(
            !shown.contains("T0K3N") && !shown.contains(HOOK_KEY),
            "{shown}"
        );
    }

    // A URL without its signing key: the command stops with a clear error.
    h.set_secret_fields(json!({"notifyWebhookSecret": null}));
    let out = h.cli(&["sync"], &env).await;
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("notifyWebhookSecret"), "{stderr}");
    assert!(!stderr.contains("T0K3N"), "{stderr}");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_secret_cannot_be_read_ends_failed_frees_the_lease_and_is_published() {
    let receiver = Receiver::start(Answer::Ok).await;
    let h = Harness::start().await;
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(
        &h,
        &support::app::demo_settings(),
        Some(topic_to(&receiver).await),
        queue.clone(),
    )
    .await;
    // The secret is broken after the webhook's start, before the run reads it.
    let StartOutcome::Started { run_id } = app.start_sync(None, false, "test").await.unwrap()
    else {
        panic!("the lease is free")
    };
    std::fs::write(&h.secrets_path, "{not json").unwrap();
    let request = queue.pop().expect("queued");
    let error = app.run_job(&request, None).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    let run = h.store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed, "not left running");
    assert!(run.finished_at.is_some());
    // The lease is free again: the next start is not refused as busy.
    assert!(matches!(
        app.start_sync(None, false, "test").await.unwrap(),
        StartOutcome::Started { .. }
    ));
    let messages = receiver.sns_messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let text = messages[0]["Message"].as_str().unwrap();
    assert!(text.contains(&run_id), "{text}");
    assert!(
        !text.contains("not json"),
        "the secret's content stays out: {text}"
    );
}
