//! Notifications after a run: ONE summary message, only when something needs a
//! person (the run failed, customers went into error, changes wait for review,
//! customers or product codes are unmapped, the run warned of something it still
//! wrote), to every configured channel (an SNS topic, a chat webhook).
//!
//! The message is built by a pure function ([`notice_for_report`],
//! [`notice_for_error`]) from what the run reports; it holds counts, the month,
//! the run id, the first error codes and links to the console, never a secret.
//! [`Notifier::send_once`] claims `notify#{runId}` in the store first, so a
//! redelivered event or a retried run under the same id never sends a second one.
//! A dry run, an `incomplete` invocation (a continuation follows) and a quiet run
//! send nothing. Sending never fails the run: a channel's failure is logged.

pub mod sns;
pub mod webhook;

use crate::config::{Environment, Secrets};
use crate::store::{RunStatus, Store};
use crate::sync::report::{CustomerReport, ErrorCode, RunReport};
use std::time::Duration;

/// How long the `notify#{runId}` claim is kept (as long as run records are).
const CLAIM_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// How many distinct error codes a message names.
const MAX_CODES: usize = 5;
/// How many unmapped product codes a message names.
const MAX_PRODUCT_CODES: usize = 5;
/// How many of a run's warnings a message quotes.
const MAX_WARNINGS: usize = 5;
/// How many stored customer results are read for the error codes of a service run.
const CUSTOMERS_FOR_CODES: usize = 100;
/// SNS subjects are at most 100 characters.
const MAX_SUBJECT: usize = 99;
/// A failed run's error message is cut to this many characters.
const MAX_ERROR_TEXT: usize = 300;

/// One run's summary message.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub run_id: String,
    /// One line, ASCII, at most 99 characters (an SNS e-mail subject).
    pub subject: String,
    /// The message's lines; the console links are on lines of their own.
    pub lines: Vec<String>,
}

impl Notice {
    /// The text with one line per line (SNS, e-mail).
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The text with blank lines between lines: Teams' incoming webhooks join
    /// single line breaks, Slack shows both the same.
    pub fn chat_text(&self) -> String {
        self.lines.join("\n\n")
    }
}

/// The message a finished run calls for, or None when nothing needs a person (a
/// clean run), or the run is not over (`incomplete`, `running`), was skipped or
/// was a dry run. `customers` gives the error codes when the report carries no
/// customers (a service run keeps them in the store); the report's own customers
/// are used too. `console` is [`Environment::console_url`].
pub fn notice_for_report(
    report: &RunReport,
    customers: &[CustomerReport],
    console: Option<&str>,
) -> Option<Notice> {
    if report.dry_run
        || matches!(
            report.status,
            RunStatus::Incomplete | RunStatus::Running | RunStatus::Skipped
        )
    {
        return None;
    }
    let c = &report.customer_counts;
    let failed = report.status == RunStatus::Failed;
    let errors = c.error > 0 || c.with_errors > 0;
    let held = c.held > 0 || c.review > 0;
    let unmapped_codes = report.unmapped_codes.len() as u64 + report.unmapped_codes_omitted;
    let unmapped = c.unmapped > 0 || unmapped_codes > 0;
    let warned = !report.warnings.is_empty();
    if !(failed || errors || held || unmapped || warned) {
        return None;
    }
    let run_id = &report.run_id;
    let month = &report.month;
    let status = status_word(report.status);
    let mut subject = Vec::new();
    let mut lines = vec![
        format!("sophos-cw-sync: the run {run_id} for {month} ended with status {status}."),
        format!(
            "Customers: {} in all, {} synced, {} in review, {} in error, {} unmapped, {} ignored; {} ConnectWise writes.",
            c.total, c.synced, c.review, c.error, c.unmapped, c.ignored, report.writes
        ),
    ];
    if failed {
        subject.push("run failed".to_owned());
        let codes = code_counts(report.errors.iter().map(|e| e.code));
        let codes = if codes.is_empty() {
            String::new()
        } else {
            format!(" ({codes})")
        };
        let first = report
            .errors
            .first()
            .map(|e| format!(" First: {}", clean(&e.message)))
            .unwrap_or_default();
        lines.push(format!("The run failed{codes}.{first}"));
        push_link(
            &mut lines,
            console,
            "Run details",
            &format!("/runs/{run_id}"),
        );
    }
    if errors {
        let with_errors = c.with_errors.max(c.error);
        subject.push(format!(
            "{} with errors",
            count(with_errors, "customer", "customers")
        ));
        let codes = code_counts(
            report
                .customers
                .iter()
                .chain(customers)
                .flat_map(|c| c.errors.iter().map(|e| e.code)),
        );
        let codes = if codes.is_empty() {
            String::new()
        } else {
            format!("; {codes}")
        };
        lines.push(format!(
            "Customers with errors: {with_errors} ({} in error{codes}).",
            c.error
        ));
        push_link(&mut lines, console, "Customers in error", "/?status=error");
    }
    if held {
        subject.push(format!(
            "{} held for review",
            count(c.held, "change", "changes")
        ));
        lines.push(format!(
            "Held for review: {} ({} in review); nothing is written for them until someone approves them.",
            count(c.held, "product change", "product changes"),
            count(c.review, "customer", "customers")
        ));
        push_link(&mut lines, console, "Review", "/review");
    }
    if unmapped {
        let mut parts = Vec::new();
        if c.unmapped > 0 {
            parts.push(format!(
                "{} without a ConnectWise company or agreement",
                count(c.unmapped, "customer", "customers")
            ));
            subject.push(format!(
                "{} unmapped",
                count(c.unmapped, "customer", "customers")
            ));
        }
        if unmapped_codes > 0 {
            let mut named: Vec<String> = report
                .unmapped_codes
                .iter()
                .take(MAX_PRODUCT_CODES)
                .map(|p| clean(&p.product_code))
                .collect();
            if unmapped_codes > named.len() as u64 {
                named.push(format!("and {} more", unmapped_codes - named.len() as u64));
            }
            parts.push(format!(
                "{} without a catalog identifier ({})",
                count(
                    unmapped_codes,
                    "billing product code",
                    "billing product codes"
                ),
                named.join(", ")
            ));
            subject.push(format!(
                "{} unmapped",
                count(unmapped_codes, "product code", "product codes")
            ));
        }
        lines.push(format!("Unmapped: {}.", parts.join("; ")));
        push_link(&mut lines, console, "Mapping", "/mapping");
    }
    if warned {
        push_warnings(report, &mut subject, &mut lines);
    }
    if !failed {
        push_link(
            &mut lines,
            console,
            "Run details",
            &format!("/runs/{run_id}"),
        );
    }
    Some(Notice {
        run_id: run_id.clone(),
        subject: subject_line(month, &subject),
        lines,
    })
}

/// The message for a run that ended in an error instead of a report (bad
/// settings or credentials, the store failing). `error` is the error's text,
/// which names no secret.
pub fn notice_for_error(run_id: &str, month: &str, error: &str, console: Option<&str>) -> Notice {
    let month_part = if month.is_empty() {
        String::new()
    } else {
        format!(" for {month}")
    };
    let mut lines = vec![
        format!("sophos-cw-sync: the run {run_id}{month_part} failed."),
        format!("Error: {}", clean(error)),
    ];
    push_link(
        &mut lines,
        console,
        "Run details",
        &format!("/runs/{run_id}"),
    );
    Notice {
        run_id: run_id.to_owned(),
        subject: subject_line(month, &["run failed".to_owned()]),
        lines,
    }
}

fn status_word(status: RunStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One line per warning (the first [`MAX_WARNINGS`]), code and message: the
/// advice is on the run's page, linked below them.
fn push_warnings(report: &RunReport, subject: &mut Vec<String>, lines: &mut Vec<String>) {
    let n = report.warnings.len();
    subject.push(count(n as u64, "warning", "warnings"));
    lines.push(format!(
        "{}; the writes went through, but a person should look:",
        count(n as u64, "warning", "warnings")
    ));
    for w in report.warnings.iter().take(MAX_WARNINGS) {
        let code = serde_json::to_value(w.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        lines.push(format!("- {code}: {}", clean(&w.message)));
    }
    if n > MAX_WARNINGS {
        lines.push(format!("- and {} more warnings", n - MAX_WARNINGS));
    }
}

/// "first codes: CODE xN, ..." for the first [`MAX_CODES`] distinct codes, in the
/// order met; empty without codes.
fn code_counts(codes: impl Iterator<Item = ErrorCode>) -> String {
    let mut counted: Vec<(ErrorCode, u64)> = Vec::new();
    for code in codes {
        match counted.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => counted.push((code, 1)),
        }
    }
    if counted.is_empty() {
        return String::new();
    }
    let mut named: Vec<String> = counted
        .iter()
        .take(MAX_CODES)
        .map(|(code, n)| {
            let name = serde_json::to_value(code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("{name} x{n}")
        })
        .collect();
    if counted.len() > MAX_CODES {
        named.push(format!("{} more codes", counted.len() - MAX_CODES));
    }
    format!("first codes: {}", named.join(", "))
}

/// "1 customer", "3 customers".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn push_link(lines: &mut Vec<String>, console: Option<&str>, label: &str, page: &str) {
    if let Some(base) = console {
        lines.push(format!("{label}: {base}{page}"));
    }
}

/// "sophos-cw-sync 2026-11: run failed, 3 customers with errors", ASCII, at most
/// [`MAX_SUBJECT`] characters.
fn subject_line(month: &str, parts: &[String]) -> String {
    let month = if month.is_empty() {
        String::new()
    } else {
        format!(" {month}")
    };
    let mut subject: String = format!("sophos-cw-sync{month}: {}", parts.join(", "))
        .chars()
        .map(|ch| {
            if ch.is_ascii() && !ch.is_ascii_control() {
                ch
            } else {
                ' '
            }
        })
        .collect();
    if subject.len() > MAX_SUBJECT {
        subject.truncate(MAX_SUBJECT - 3);
        subject.push_str("...");
    }
    subject
}

/// Free text (an error message, a product code) made safe for chat markup: no
/// `<` `>` (Slack's link syntax) or control characters, cut to a bounded length.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|ch| match ch {
            '<' => '‹',
            '>' => '›',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if out.chars().count() > MAX_ERROR_TEXT {
        out = out.chars().take(MAX_ERROR_TEXT).collect();
        out.push('…');
    }
    out
}

/// Every configured channel.
#[derive(Default)]
pub struct Notifier {
    pub sns: Option<sns::SnsChannel>,
    pub webhook: Option<webhook::WebhookChannel>,
}

impl Notifier {
    /// The channels `env` (`NOTIFY_TOPIC_ARN`) and the secret (`notifyWebhookUrl`)
    /// configure. `aws` is the AWS configuration the app uses (None: from the
    /// environment, read only when a topic is set).
    pub async fn new(
        env: &Environment,
        secrets: Option<&Secrets>,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Self {
        let sns = match &env.notify_topic_arn {
            Some(topic) => {
                let config = match aws {
                    Some(c) => c.clone(),
                    None => aws_config::load_from_env().await,
                };
                Some(sns::SnsChannel::new(&config, topic))
            }
            None => None,
        };
        let webhook = secrets
            .and_then(|s| s.notify_webhook.clone())
            .map(|target| webhook::WebhookChannel::new(target, env.notify_webhook_timeout));
        Self { sns, webhook }
    }

    pub fn is_empty(&self) -> bool {
        self.sns.is_none() && self.webhook.is_none()
    }

    /// Sends `notice` to every channel unless this run's notice was sent (claimed)
    /// before. Returns whether it was sent to at least one channel. Never fails:
    /// problems are logged (without the webhook's URL). When the claim cannot be
    /// made (the store is down) nothing is sent: at most one message per run.
    pub async fn send_once(&self, store: &dyn Store, notice: &Notice) -> bool {
        if self.is_empty() {
            return false;
        }
        let run_id = notice.run_id.as_str();
        let key = format!("notify#{run_id}");
        match store
            .claim_once(&key, run_id, chrono::Utc::now(), CLAIM_TTL)
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => {
                tracing::info!(
                    run_id,
                    "the run's notification was sent before; not sending it again"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(run_id, error = %e, "cannot record the notification in the store; not sending it, so that it is never sent twice");
                return false;
            }
        }
        self.send(notice).await
    }

    /// Sends to every channel (no claim). Returns whether one took it.
    pub async fn send(&self, notice: &Notice) -> bool {
        let run_id = notice.run_id.as_str();
        let mut sent = false;
        if let Some(sns) = &self.sns {
            match sns.publish(notice).await {
                Ok(()) => {
                    sent = true;
                    tracing::info!(run_id, channel = "sns", "notification published");
                }
                Err(e) => {
                    tracing::warn!(run_id, channel = "sns", error = %e, "notification not published")
                }
            }
        }
        if let Some(hook) = &self.webhook {
            match hook.post(notice).await {
                Ok(attempts) => {
                    sent = true;
                    tracing::info!(
                        run_id,
                        channel = "webhook",
                        host = hook.host(),
                        attempts,
                        "notification delivered"
                    );
                }
                Err(e) => {
                    tracing::warn!(run_id, channel = "webhook", host = hook.host(), error = %e, "notification not delivered")
                }
            }
        }
        sent
    }
}

/// How a service job ended, in the plain terms a notification needs (the app
/// builds it from its request and result, so notify does not depend on the app).
pub struct FinishedJob<'a> {
    pub run_id: &'a str,
    /// The month the request named, if any (else the stored run's is used).
    pub month: Option<&'a str>,
    pub dry_run: bool,
    pub outcome: JobOutcome<'a>,
}

/// A job's report, or the error it ended in.
pub enum JobOutcome<'a> {
    Report(&'a RunReport),
    Error {
        /// The error's text, which names no secret.
        message: String,
        /// Whether a retry of the same run may mend it.
        retryable: bool,
    },
}

impl FinishedJob<'_> {
    /// Whether the job may call for a message, decided without the store or the
    /// channels: most runs are quiet, and reading the secrets for them is waste.
    pub fn may_notify(&self) -> bool {
        if self.dry_run {
            return false;
        }
        match &self.outcome {
            JobOutcome::Report(report) => notice_for_report(report, &[], None).is_some(),
            JobOutcome::Error { .. } => true,
        }
    }
}

/// The one call at the end of a service job: notifies about a finished run or
/// one that ended in an error, through `notifier`. A retryable error that did not
/// mark the run failed (e.g. its continuation could not be started) is left to
/// the retry, which ends the run. `console` is [`Environment::console_url`].
/// Never fails.
pub async fn after_job(
    store: &dyn Store,
    notifier: &Notifier,
    console: Option<&str>,
    job: &FinishedJob<'_>,
) {
    if !job.may_notify() || notifier.is_empty() {
        return;
    }
    let notice = match &job.outcome {
        JobOutcome::Report(report) => with_codes(store, report, console).await,
        JobOutcome::Error { message, retryable } => {
            let stored = store.get_run(job.run_id).await.ok().flatten();
            let failed = stored.as_ref().map(|r| r.status) == Some(RunStatus::Failed);
            if *retryable && !failed {
                return;
            }
            let month = job
                .month
                .map(str::to_owned)
                .or_else(|| stored.map(|r| r.month))
                .unwrap_or_default();
            Some(notice_for_error(job.run_id, &month, message, console))
        }
    };
    if let Some(notice) = notice {
        notifier.send_once(store, &notice).await;
    }
}

/// [`notice_for_report`] with the error codes of the run's first stored customers
/// when the report keeps none (a service run).
async fn with_codes(
    store: &dyn Store,
    report: &RunReport,
    console: Option<&str>,
) -> Option<Notice> {
    let notice = notice_for_report(report, &[], console)?;
    let c = &report.customer_counts;
    if !report.customers.is_empty() || (c.error == 0 && c.with_errors == 0) {
        return Some(notice);
    }
    let customers: Vec<CustomerReport> = match store
        .list_run_customers(&report.run_id, CUSTOMERS_FOR_CODES, None)
        .await
    {
        Ok(page) => page
            .items
            .into_iter()
            .filter_map(|c| serde_json::from_value(c.report).ok())
            .collect(),
        Err(_) => return Some(notice),
    };
    notice_for_report(report, &customers, console)
}

#[cfg(test)]
mod tests;
