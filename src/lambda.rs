//! The AWS Lambda entry point: one function for the EventBridge schedule, the API
//! Gateway HTTP API (payload 2.0) and the internal asynchronous run event. Settings,
//! secrets and SDK clients are built once per container and reused.

use crate::app::{App, AppError, Invoker, RunRequest};
use crate::config::{Environment, StoreSpec};
use crate::state::ConsoleConfig;
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;
use crate::store::sqlite::SqliteStore;
use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use axum::Router;
use base64::Engine as _;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;
use tower::ServiceExt;
use tracing::Instrument;

/// What arrived.
#[derive(Debug)]
pub enum Incoming {
    /// A scheduled tick, identified by its scheduled time (or event id).
    Schedule {
        tick: String,
    },
    Http(Box<ApiGatewayV2httpRequest>),
    Run(RunRequest),
    Unknown(String),
}

/// Tells the event kinds apart by their shape.
pub fn classify(event: Value) -> Incoming {
    if event.get("sophosCwSync").is_some() {
        return match serde_json::from_value::<RunRequest>(event) {
            Ok(r) if r.sophos_cw_sync == "run" => Incoming::Run(r),
            Ok(r) => Incoming::Unknown(format!(
                "unknown sophosCwSync action {:?}",
                r.sophos_cw_sync
            )),
            Err(e) => Incoming::Unknown(format!("malformed run event: {e}")),
        };
    }
    if event
        .get("requestContext")
        .and_then(|c| c.get("http"))
        .is_some()
    {
        return match serde_json::from_value::<ApiGatewayV2httpRequest>(event) {
            Ok(r) => Incoming::Http(Box::new(r)),
            Err(e) => Incoming::Unknown(format!("malformed API Gateway request: {e}")),
        };
    }
    if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let tick = ["time", "id"].iter().find_map(|k| {
            event
                .get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        });
        return match tick {
            Some(t) => Incoming::Schedule { tick: t.to_owned() },
            None => Incoming::Unknown("scheduled event without time or id".into()),
        };
    }
    Incoming::Unknown(
        "unrecognised event: expected a schedule, an HTTP API 2.0 request or a run event".into(),
    )
}

/// A handler failure, typed for Lambda: retryable ones are worth the async retry.
#[derive(Debug)]
pub struct HandlerError {
    pub retryable: bool,
    pub message: String,
}

impl From<AppError> for HandlerError {
    fn from(e: AppError) -> Self {
        Self {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let kind = if e.retryable {
            "Retryable"
        } else {
            "NonRetryable"
        };
        Diagnostic {
            error_type: kind.into(),
            error_message: e.message,
        }
    }
}

/// Invokes this same function asynchronously (`InvocationType=Event`).
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
    function: String,
}

#[async_trait]
impl Invoker for LambdaInvoker {
    async fn invoke_async(&self, request: &RunRequest) -> Result<(), String> {
        let payload = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "invoking {} failed: {}",
                    self.function,
                    aws_sdk_lambda::error::DisplayErrorContext(&e)
                )
            })
    }
}

/// Builds the App once per container.
pub async fn build() -> Result<Arc<App>, HandlerError> {
    let config_error = |m: String| HandlerError {
        retryable: false,
        message: m,
    };
    let env = Environment::from_process().map_err(|e| config_error(e.0))?;
    let aws = aws_config::load_from_env().await;
    let store: Arc<dyn Store> = match &env.store {
        StoreSpec::Dynamo(table) => Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            table.clone(),
        )),
        StoreSpec::Sqlite(path) => {
            Arc::new(SqliteStore::open(path).map_err(|e| config_error(e.to_string()))?)
        }
    };
    let function = env.function_name.clone().ok_or_else(|| {
        config_error(
            "SYNC_FUNCTION_NAME is not set (nor Lambda's AWS_LAMBDA_FUNCTION_NAME): the function needs its own name to continue runs asynchronously; set it to the function's name".into(),
        )
    })?;
    let invoker = Arc::new(LambdaInvoker {
        client: aws_sdk_lambda::Client::new(&aws),
        function,
    });
    Ok(Arc::new(App::new(env, store, invoker, Some(aws))))
}

/// What one container serves: the App, and the router (console and API) that
/// answers its HTTP events.
#[derive(Clone)]
pub struct Function {
    pub app: Arc<App>,
    pub router: Router,
}

impl Function {
    /// The console behind API Gateway is always on https: its cookie is Secure.
    pub fn new(app: Arc<App>) -> Self {
        let router = crate::web::router(app.clone(), ConsoleConfig::default());
        Self { app, router }
    }
}

/// Runs the Lambda runtime loop.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let function = Function::new(build().await.map_err(|e| e.message)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let function = function.clone();
        async move { handle(&function, event).await }
    }))
    .await
}

pub async fn handle(function: &Function, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
    let app = function.app.as_ref();
    let deadline = invocation_deadline(event.context.deadline());
    match classify(event.payload) {
        Incoming::Http(request) => Ok(http(&function.router, *request, event.context).await),
        Incoming::Schedule { tick } => {
            let span = tracing::info_span!("schedule", tick = %tick);
            let report = app
                .on_schedule(&tick, deadline)
                .instrument(span)
                .await
                .inspect_err(|_| print_failure_metrics(None, false))?;
            Ok(match report {
                Some(r) => summary(&r),
                None => json!({"status": "duplicate", "tick": tick}),
            })
        }
        Incoming::Run(request) => {
            let span = tracing::info_span!("run", run_id = %request.run_id);
            let report = app
                .run_job(&request, deadline)
                .instrument(span)
                .await
                .inspect_err(|_| print_failure_metrics(Some(&request.run_id), request.dry_run))?;
            Ok(summary(&report))
        }
        Incoming::Unknown(why) => {
            tracing::warn!("{why}");
            Err(HandlerError {
                retryable: false,
                message: why,
            })
        }
    }
}

/// The metrics line of a run that failed before it could report (none for a dry
/// run: a preview is not an alarm).
fn print_failure_metrics(run_id: Option<&str>, dry_run: bool) {
    if let Some(line) = crate::metrics::emf_failure_line(run_id, dry_run) {
        println!("{line}");
    }
}

/// Logs the metrics line and answers a short summary (the report is in the store).
fn summary(report: &crate::sync::report::RunReport) -> Value {
    println!("{}", metrics_line(report));
    tracing::info!(run_id = %report.run_id, status = ?report.status, writes = report.writes, "run finished");
    json!({"runId": report.run_id, "status": report.status, "writes": report.writes})
}

/// The run's metrics line, its duration taken from the report's own times.
fn metrics_line(report: &crate::sync::report::RunReport) -> Value {
    let duration = report
        .finished_at
        .map(|f| (f - report.started_at).num_milliseconds().max(0) as u64)
        .unwrap_or_default();
    crate::metrics::emf_line(report, duration)
}

/// Lambda always sends a deadline in the future; an emulator may send a fixed value
/// (cargo lambda watch sends 600000 ms, i.e. 1970), which means "unknown": then
/// the cycle runs without one rather than one customer per invocation.
fn invocation_deadline(deadline: SystemTime) -> Option<tokio::time::Instant> {
    if deadline <= SystemTime::now() {
        tracing::warn!("the invocation deadline is not in the future; running without one");
        return None;
    }
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    // The run's policy takes its margin off this (`RunPolicy::last_start`).
    Some(tokio::time::Instant::now() + left)
}

/// An HTTP API (payload 2.0) request through the router, as `lambda_http` converts
/// it (cookies, `Set-Cookie` into `cookies`). A base64 body is decoded once, here:
/// `lambda_http` would decode it again, and panic on one that is not base64.
async fn http(
    router: &Router,
    mut request: ApiGatewayV2httpRequest,
    context: lambda_runtime::Context,
) -> Value {
    let decoded = match take_base64_body(&mut request) {
        Ok(decoded) => decoded,
        Err(message) => {
            return json!({
                "statusCode": 400,
                "headers": {"content-type": "application/json"},
                "body": json!({"error": message}).to_string(),
                "isBase64Encoded": false,
            });
        }
    };
    let event = LambdaEvent::new(LambdaRequest::ApiGatewayV2(request), context);
    // The decoded bytes go into the converted request, as lambda_http would put them.
    let service = router
        .clone()
        .map_request(move |mut r: lambda_http::Request| {
            if let Some(bytes) = &decoded {
                *r.body_mut() = lambda_http::Body::from(bytes.clone());
            }
            r
        });
    let adapter = lambda_http::Adapter::from(service);
    match adapter.oneshot(event).await {
        Ok(response) => serde_json::to_value(response).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialise an HTTP response");
            json!({"statusCode": 500})
        }),
        Err(never) => match never {},
    }
}

/// A body marked base64, decoded and taken out of the event (which then carries
/// none, so it is not decoded again); None for a plain body, left in place.
fn take_base64_body(r: &mut ApiGatewayV2httpRequest) -> Result<Option<Vec<u8>>, String> {
    if !r.is_base64_encoded {
        return Ok(None);
    }
    let Some(body) = r.body.take() else {
        return Ok(None);
    };
    r.is_base64_encoded = false;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map(Some)
        .map_err(|_| "the request body is marked base64 but is not valid base64".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn classifies_each_event_kind() {
        let schedule = json!({"version":"0","id":"e1","detail-type":"Scheduled Event","source":"aws.events","time":"2026-11-29T06:00:00Z","detail":{}});
        assert!(
            matches!(classify(schedule), Incoming::Schedule { tick } if tick == "2026-11-29T06:00:00Z")
        );
        let scheduler =
            json!({"source":"aws.scheduler","detail-type":"Scheduled Event","id":"x-1","time":""});
        assert!(matches!(classify(scheduler), Incoming::Schedule { tick } if tick == "x-1"));
        let run = json!({"sophosCwSync":"run","runId":"r1","month":null,"dryRun":false});
        assert!(matches!(classify(run), Incoming::Run(r) if r.run_id == "r1"));
        let bad_run = json!({"sophosCwSync":"run"});
        assert!(matches!(classify(bad_run), Incoming::Unknown(_)));
        let http = json!({"version":"2.0","rawPath":"/status","requestContext":{"http":{"method":"GET","path":"/status"}}});
        assert!(matches!(classify(http), Incoming::Http(_)));
        assert!(matches!(classify(json!({"hello":1})), Incoming::Unknown(_)));
    }

    #[test]
    fn the_invocation_deadline_is_lambdas_and_a_past_one_means_none() {
        // The margin is the run policy's (`RunPolicy::last_start`), not taken here.
        let now = tokio::time::Instant::now();
        let d = invocation_deadline(SystemTime::now() + Duration::from_secs(900)).unwrap();
        assert!(d >= now + Duration::from_secs(899) && d <= now + Duration::from_secs(901));
        assert_eq!(
            invocation_deadline(SystemTime::now() - Duration::from_secs(5)),
            None
        );
    }

    #[test]
    fn a_dry_runs_metrics_line_carries_no_failure_metric() {
        let mut report = crate::metrics::tests::report(crate::store::RunStatus::Failed);
        report.started_at = report.finished_at.unwrap() - chrono::Duration::seconds(2);
        let real = metrics_line(&report);
        assert_eq!(real["RunsFailed"], 1);
        assert_eq!(real["CustomerErrors"], 2);
        assert_eq!(real["DurationMs"], 2000);
        report.dry_run = true;
        let preview = metrics_line(&report);
        let declared = preview["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        for failure in ["RunsFailed", "CustomerErrors"] {
            assert!(preview.get(failure).is_none(), "{preview}");
            assert!(!declared.contains(failure), "{declared}");
        }
        assert_eq!(preview["DurationMs"], 2000);
    }

    #[test]
    fn errors_carry_their_retry_type() {
        let d: Diagnostic = HandlerError::from(AppError::Config("bad".into())).into();
        assert_eq!(d.error_type, "NonRetryable");
        let d: Diagnostic = HandlerError::from(AppError::Cycle("x".into())).into();
        assert_eq!(d.error_type, "Retryable");
    }

    #[test]
    fn a_body_marked_base64_that_is_not_is_refused_before_conversion() {
        let mut r: ApiGatewayV2httpRequest = serde_json::from_value(json!({
            "version":"2.0","rawPath":"/sync","rawQueryString":"a=1",
            "headers":{"authorization":"Bearer t"},
            "requestContext":{"http":{"method":"POST","path":"/sync"}},
            "body":"eyJkcnlSdW4iOnRydWV9","isBase64Encoded":true}))
        .unwrap();
        let plain = r.clone();
        assert_eq!(
            take_base64_body(&mut r).unwrap().as_deref(),
            Some(br#"{"dryRun":true}"#.as_slice())
        );
        // Taken out: nothing is left for lambda_http to decode a second time.
        assert!(r.body.is_none() && !r.is_base64_encoded);
        let mut text = plain.clone();
        text.is_base64_encoded = false;
        assert!(take_base64_body(&mut text).unwrap().is_none());
        assert_eq!(text.body, plain.body);
        let mut bad = plain;
        bad.body = Some("%%%".into());
        assert!(take_base64_body(&mut bad).unwrap_err().contains("base64"));
    }
}
