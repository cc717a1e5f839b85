//! Where things are: the store, the secrets and the vendor URLs, from the
//! environment (the same variables serve the CLI and the Lambda).

use secrecy::SecretString;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Bad configuration or credentials: the command stops before writing anything.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, PartialEq)]
pub enum StoreSpec {
    Sqlite(PathBuf),
    Dynamo(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SecretsSpec {
    File(PathBuf),
    SecretsManager(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub store: StoreSpec,
    pub secrets: SecretsSpec,
    pub sophos_id_url: String,
    pub sophos_api_url: String,
    pub settings_file: Option<PathBuf>,
    /// The console's address (`CONSOLE_URL`, e.g.
    /// `https://<api-id>.execute-api.<region>.amazonaws.com/console`), without a
    /// trailing slash: notifications link to its pages. None: they carry no links.
    pub console_url: Option<String>,
    /// The SNS topic run notifications are published to (`NOTIFY_TOPIC_ARN`).
    pub notify_topic_arn: Option<String>,
    /// How long one attempt to post a notification to the webhook may take
    /// (`NOTIFY_WEBHOOK_TIMEOUT_SECONDS`, default [`DEFAULT_WEBHOOK_TIMEOUT`]).
    pub notify_webhook_timeout: Duration,
    /// Console sign-in through the partner's identity provider (OpenID Connect):
    /// `CONSOLE_OIDC_ISSUER` and `CONSOLE_OIDC_CLIENT_ID` (both or neither), and
    /// `CONSOLE_OIDC_GROUPS_CLAIM`. None: the console password only.
    pub console_oidc: Option<OidcConfig>,
    /// How a run holds the lease and meets an invocation's deadline, the same for
    /// the CLI, `serve` and the Lambda.
    pub run_policy: RunPolicy,
    /// How long secrets read from Secrets Manager are reused before being read again
    /// (`SECRETS_REFRESH_SECONDS`, default [`DEFAULT_SECRETS_REFRESH`]), so a
    /// rotated secret is picked up without a restart.
    pub secrets_refresh: Duration,
    /// The Lambda function's own name, to continue a run in a new invocation
    /// (`SYNC_FUNCTION_NAME`, else Lambda's `AWS_LAMBDA_FUNCTION_NAME`). None off
    /// Lambda.
    pub function_name: Option<String>,
}

/// One lease and deadline policy for every entry point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPolicy {
    /// How long the lease lasts unless renewed (`SYNC_LEASE_TTL_SECONDS`, default
    /// [`DEFAULT_LEASE_TTL`]). A run renews it every third of this, so it never
    /// lapses while the run lives; it covers the gap between the webhook taking it
    /// and the run starting, and after a crash it is how long the next run waits.
    pub lease_ttl: Duration,
    /// How long before an invocation's deadline no new customer starts
    /// (`SYNC_DEADLINE_MARGIN_SECONDS`, default [`DEFAULT_DEADLINE_MARGIN`]), so the
    /// customers in progress finish and the summary is stored in time. Capped at a
    /// quarter of the time left (see [`RunPolicy::last_start`]).
    pub deadline_margin: Duration,
}

pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_secs(60);
pub const DEFAULT_SECRETS_REFRESH: Duration = Duration::from_secs(300);

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            lease_ttl: DEFAULT_LEASE_TTL,
            deadline_margin: DEFAULT_DEADLINE_MARGIN,
        }
    }
}

impl RunPolicy {
    /// When the last new customer may start in an invocation that must end by
    /// `deadline`: the margin before it, capped at a quarter of the time left so
    /// that a short timeout still leaves room to work.
    pub fn last_start(
        &self,
        now: tokio::time::Instant,
        deadline: tokio::time::Instant,
    ) -> tokio::time::Instant {
        let left = deadline.saturating_duration_since(now);
        now + left - self.deadline_margin.min(left / 4)
    }
}

/// Where the console's OpenID Connect sign-in goes; the client secret is the
/// secret's `consoleOidcClientSecret`.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    /// The issuer exactly as its discovery document states it (discovery at
    /// `{issuer}/.well-known/openid-configuration`); https, or http on loopback.
    pub issuer: String,
    pub client_id: String,
    /// The ID token claim that lists the person's groups (`groups`; Cognito:
    /// `cognito:groups`).
    pub groups_claim: String,
}

/// The groups claim unless `CONSOLE_OIDC_GROUPS_CLAIM` says.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";

/// How long one webhook attempt may take unless `NOTIFY_WEBHOOK_TIMEOUT_SECONDS` says.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

impl Environment {
    /// Reads `SYNC_STORE`, `SYNC_SECRETS`, `SOPHOS_ID_URL`, `SOPHOS_API_URL`,
    /// `SYNC_SETTINGS`, `CONSOLE_URL`, `NOTIFY_TOPIC_ARN`, `NOTIFY_WEBHOOK_TIMEOUT_SECONDS`,
    /// the `CONSOLE_OIDC_*` variables, `SYNC_LEASE_TTL_SECONDS`,
    /// `SYNC_DEADLINE_MARGIN_SECONDS`, `SECRETS_REFRESH_SECONDS` and
    /// `SYNC_FUNCTION_NAME` (or `AWS_LAMBDA_FUNCTION_NAME`) through `var` (so tests
    /// need not touch the process env). Every variable the program reads is here.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        Ok(Self {
            store: parse_store(
                &get("SYNC_STORE").unwrap_or_else(|| "sqlite:./sophos-cw-sync.db".into()),
            )?,
            secrets: parse_secrets(
                &get("SYNC_SECRETS").unwrap_or_else(|| "file:./secrets.json".into()),
            )?,
            sophos_id_url: get("SOPHOS_ID_URL").unwrap_or_else(|| "https://id.sophos.com".into()),
            sophos_api_url: get("SOPHOS_API_URL")
                .unwrap_or_else(|| "https://api.central.sophos.com".into()),
            settings_file: get("SYNC_SETTINGS").map(PathBuf::from),
            console_url: get("CONSOLE_URL")
                .map(|v| parse_console_url(&v))
                .transpose()?,
            notify_topic_arn: get("NOTIFY_TOPIC_ARN")
                .map(|v| parse_topic_arn(&v))
                .transpose()?,
            notify_webhook_timeout: get("NOTIFY_WEBHOOK_TIMEOUT_SECONDS")
                .map(|v| parse_notify_timeout(&v))
                .transpose()?
                .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT),
            console_oidc: parse_oidc(
                get("CONSOLE_OIDC_ISSUER"),
                get("CONSOLE_OIDC_CLIENT_ID"),
                get("CONSOLE_OIDC_GROUPS_CLAIM"),
            )?,
            run_policy: RunPolicy {
                lease_ttl: seconds(&get, LEASE_TTL_VAR)?.unwrap_or(DEFAULT_LEASE_TTL),
                deadline_margin: seconds(&get, DEADLINE_MARGIN_VAR)?
                    .unwrap_or(DEFAULT_DEADLINE_MARGIN),
            },
            secrets_refresh: seconds(&get, SECRETS_REFRESH_VAR)?.unwrap_or(DEFAULT_SECRETS_REFRESH),
            function_name: get("SYNC_FUNCTION_NAME")
                .or_else(|| get("AWS_LAMBDA_FUNCTION_NAME"))
                .map(|v| v.trim().to_owned()),
        })
    }

    pub fn from_process() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }
}

fn parse_store(value: &str) -> Result<StoreSpec, ConfigError> {
    match value.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => Ok(StoreSpec::Sqlite(PathBuf::from(path))),
        Some(("dynamodb", table)) if !table.is_empty() => Ok(StoreSpec::Dynamo(table.to_owned())),
        _ => Err(ConfigError(format!(
            "SYNC_STORE={value:?} is not understood: use sqlite:<path> (e.g. sqlite:./sophos-cw-sync.db) or dynamodb:<table>"
        ))),
    }
}

fn parse_console_url(value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError(format!(
            "CONSOLE_URL={value:?} is not an http(s) address: set it to the console's address, e.g. https://<api-id>.execute-api.<region>.amazonaws.com/console (the stack's ConsoleUrl output), or leave it unset for notifications without links"
        ))),
    }
}

fn parse_oidc(
    issuer: Option<String>,
    client_id: Option<String>,
    groups_claim: Option<String>,
) -> Result<Option<OidcConfig>, ConfigError> {
    let (issuer, client_id) = match (issuer, client_id) {
        (None, None) => return Ok(None),
        (Some(i), Some(c)) => (i.trim().to_owned(), c.trim().to_owned()),
        (Some(_), None) => {
            return Err(ConfigError(
                "CONSOLE_OIDC_ISSUER is set but CONSOLE_OIDC_CLIENT_ID is not: set it to the client (application) id the identity provider gave the console, or unset CONSOLE_OIDC_ISSUER to sign in with the console password only".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError(
                "CONSOLE_OIDC_CLIENT_ID is set but CONSOLE_OIDC_ISSUER is not: set it to the identity provider's issuer, e.g. https://login.microsoftonline.com/<tenant-id>/v2.0 (Entra ID) or https://cognito-idp.<region>.amazonaws.com/<user-pool-id> (Cognito)".into(),
            ));
        }
    };
    let url = reqwest::Url::parse(&issuer)
        .ok()
        .filter(|u| u.host().is_some());
    let ok = match &url {
        Some(u) if u.scheme() == "https" => true,
        Some(u) if u.scheme() == "http" => is_loopback_host(u),
        _ => false,
    };
    if !ok
        || url
            .as_ref()
            .is_some_and(|u| u.query().is_some() || u.fragment().is_some())
    {
        return Err(ConfigError(format!(
            "CONSOLE_OIDC_ISSUER={issuer:?} is not an https address without a query: set it to the identity provider's issuer, e.g. https://login.microsoftonline.com/<tenant-id>/v2.0 (plain http is accepted on a loopback address only, for tests and `make console`)"
        )));
    }
    Ok(Some(OidcConfig {
        issuer,
        client_id,
        groups_claim: groups_claim
            .map(|g| g.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.to_owned()),
    }))
}

/// Whether an address names this machine (127.0.0.0/8, ::1 or localhost).
pub fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn parse_topic_arn(value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.starts_with("arn:") && value.split(':').count() == 6 && value.contains(":sns:") {
        return Ok(value.to_owned());
    }
    Err(ConfigError(format!(
        "NOTIFY_TOPIC_ARN={value:?} is not an SNS topic ARN: set it to e.g. arn:aws:sns:eu-west-1:123456789012:sophos-cw-sync-notifications, or leave it unset to publish no notifications to SNS"
    )))
}

fn parse_notify_timeout(value: &str) -> Result<Duration, ConfigError> {
    match value.trim().parse::<f64>() {
        Ok(secs) if (0.05..=60.0).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err(ConfigError(format!(
            "NOTIFY_WEBHOOK_TIMEOUT_SECONDS={value:?} is not understood: set it to how many seconds one attempt to post a notification to the webhook may take, from 0.05 to 60 (default {})",
            DEFAULT_WEBHOOK_TIMEOUT.as_secs()
        ))),
    }
}

const LEASE_TTL_VAR: Seconds = Seconds {
    name: "SYNC_LEASE_TTL_SECONDS",
    what: "how many seconds a run's lease lasts unless renewed (a run renews it every third of that; after a crash, the next run waits this long)",
    min: 30,
    max: 24 * 3600,
    default: DEFAULT_LEASE_TTL,
};
const DEADLINE_MARGIN_VAR: Seconds = Seconds {
    name: "SYNC_DEADLINE_MARGIN_SECONDS",
    what: "how many seconds before an invocation's deadline no new customer starts",
    min: 0,
    max: 600,
    default: DEFAULT_DEADLINE_MARGIN,
};
const SECRETS_REFRESH_VAR: Seconds = Seconds {
    name: "SECRETS_REFRESH_SECONDS",
    what: "how many seconds secrets read from Secrets Manager are reused before being read again",
    min: 0,
    max: 24 * 3600,
    default: DEFAULT_SECRETS_REFRESH,
};

/// A whole number of seconds in a variable, within bounds.
struct Seconds {
    name: &'static str,
    what: &'static str,
    min: u64,
    max: u64,
    default: Duration,
}

fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    var: Seconds,
) -> Result<Option<Duration>, ConfigError> {
    let Some(value) = get(var.name) else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(secs) if (var.min..=var.max).contains(&secs) => Ok(Some(Duration::from_secs(secs))),
        _ => Err(ConfigError(format!(
            "{}={value:?} is not understood: set it to {}, a whole number from {} to {} (default {}), or unset it",
            var.name,
            var.what,
            var.min,
            var.max,
            var.default.as_secs()
        ))),
    }
}

fn parse_secrets(value: &str) -> Result<SecretsSpec, ConfigError> {
    match value.split_once(':') {
        Some(("file", path)) if !path.is_empty() => Ok(SecretsSpec::File(PathBuf::from(path))),
        Some(("secretsmanager", id)) if !id.is_empty() => {
            Ok(SecretsSpec::SecretsManager(id.to_owned()))
        }
        _ => Err(ConfigError(format!(
            "SYNC_SECRETS={value:?} is not understood: use file:<path> (e.g. file:./secrets.json) or secretsmanager:<name-or-arn>"
        ))),
    }
}

/// The credentials. `Debug` prints no secret.
pub struct Secrets {
    pub sophos_client_id: String,
    pub sophos_client_secret: SecretString,
    pub cw_site: String,
    pub cw_company_id: String,
    pub cw_public_key: SecretString,
    pub cw_private_key: SecretString,
    pub cw_client_id: String,
    pub cw_codebase: Option<String>,
    pub webhook_token: Option<SecretString>,
    /// The console's login password (`consoleToken`), separate from the webhook
    /// token; without it the console refuses every login and says why.
    pub console_token: Option<SecretString>,
    /// The console's OpenID Connect client secret (`consoleOidcClientSecret`),
    /// used with `CONSOLE_OIDC_ISSUER` and `CONSOLE_OIDC_CLIENT_ID`.
    pub console_oidc_client_secret: Option<SecretString>,
    /// Where run notifications are posted (`notifyWebhookUrl`, with the signing key
    /// `notifyWebhookSecret`): a Teams or Slack incoming webhook, or any receiver.
    pub notify_webhook: Option<crate::config::WebhookTarget>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("sophos_client_id", &self.sophos_client_id)
            .field("cw_site", &self.cw_site)
            .field("cw_company_id", &self.cw_company_id)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Parses the secret JSON. Errors name the missing or wrong field and where it
    /// came from, never a value (serde's messages may quote values, so they are not
    /// passed on).
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| {
            ConfigError(format!(
                "the secret from {source} is not valid JSON (line {}, column {}); it must look like {SHAPE}",
                e.line(),
                e.column()
            ))
        })?;
        let field = |path: &str, required: bool| -> Result<Option<String>, ConfigError> {
            let mut v = &doc;
            for part in path.split('.') {
                v = match v.get(part) {
                    Some(next) => next,
                    None if required => return Err(missing(path, source)),
                    None => return Ok(None),
                };
            }
            match v.as_str().map(str::trim) {
                Some(s) if !s.is_empty() => Ok(Some(s.to_owned())),
                _ if required => Err(missing(path, source)),
                _ => Ok(None),
            }
        };
        let req = |p: &str| field(p, true).map(|v| v.unwrap_or_default());
        Ok(Self {
            sophos_client_id: req("sophos.clientId")?,
            sophos_client_secret: SecretString::from(req("sophos.clientSecret")?),
            cw_site: req("connectwise.site")?,
            cw_company_id: req("connectwise.companyId")?,
            cw_public_key: SecretString::from(req("connectwise.publicKey")?),
            cw_private_key: SecretString::from(req("connectwise.privateKey")?),
            cw_client_id: req("connectwise.clientId")?,
            cw_codebase: field("connectwise.codebase", false)?,
            webhook_token: field("webhookToken", false)?.map(SecretString::from),
            console_token: field("consoleToken", false)?.map(SecretString::from),
            console_oidc_client_secret: field("consoleOidcClientSecret", false)?
                .map(SecretString::from),
            notify_webhook: crate::config::WebhookTarget::from_secret(
                field("notifyWebhookUrl", false)?,
                field("notifyWebhookSecret", false)?,
                source,
            )?,
        })
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read the secrets file {} ({e}); create it with {SHAPE} or set SYNC_SECRETS",
                path.display()
            ))
        })?;
        Self::parse(&text, &path.display().to_string())
    }
}

const SHAPE: &str = r#"{"sophos":{"clientId":"","clientSecret":""},"connectwise":{"site":"api-na.myconnectwise.net","companyId":"","publicKey":"","privateKey":"","clientId":""},"webhookToken":"","consoleToken":"","notifyWebhookUrl":"","notifyWebhookSecret":""}"#;

fn missing(path: &str, source: &str) -> ConfigError {
    ConfigError(format!(
        "the secret from {source} has no value for {path}; it must look like {SHAPE}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_and_overrides() {
        let env = Environment::from_vars(vars(&[])).unwrap();
        assert_eq!(env.store, StoreSpec::Sqlite("./sophos-cw-sync.db".into()));
        assert_eq!(env.secrets, SecretsSpec::File("./secrets.json".into()));
        assert_eq!(env.sophos_id_url, "https://id.sophos.com");
        let env = Environment::from_vars(vars(&[
            ("SYNC_STORE", "dynamodb:tbl"),
            ("SYNC_SECRETS", "secretsmanager:arn:aws:secretsmanager:x"),
        ]))
        .unwrap();
        assert_eq!(env.store, StoreSpec::Dynamo("tbl".into()));
        assert_eq!(
            env.secrets,
            SecretsSpec::SecretsManager("arn:aws:secretsmanager:x".into())
        );
    }

    #[test]
    fn bad_store_and_secrets_say_how_to_fix() {
        let e = Environment::from_vars(vars(&[("SYNC_STORE", "postgres:x")])).unwrap_err();
        assert!(e.0.contains("sqlite:<path>"), "{e}");
        let e = Environment::from_vars(vars(&[("SYNC_SECRETS", "vault:x")])).unwrap_err();
        assert!(e.0.contains("secretsmanager:<name-or-arn>"), "{e}");
    }

    #[test]
    fn notification_settings_parse_and_bad_ones_say_how_to_fix() {
        let env = Environment::from_vars(vars(&[])).unwrap();
        assert_eq!(env.console_url, None);
        assert_eq!(env.notify_topic_arn, None);
        assert_eq!(env.notify_webhook_timeout, DEFAULT_WEBHOOK_TIMEOUT);
        let env = Environment::from_vars(vars(&[
            (
                "CONSOLE_URL",
                "https://x.execute-api.eu-west-1.amazonaws.com/console/",
            ),
            ("NOTIFY_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:t"),
            ("NOTIFY_WEBHOOK_TIMEOUT_SECONDS", "0.5"),
        ]))
        .unwrap();
        assert_eq!(
            env.console_url.as_deref(),
            Some("https://x.execute-api.eu-west-1.amazonaws.com/console")
        );
        assert_eq!(
            env.notify_topic_arn.as_deref(),
            Some("arn:aws:sns:eu-west-1:123456789012:t")
        );
        assert_eq!(env.notify_webhook_timeout, Duration::from_millis(500));
        let e = Environment::from_vars(vars(&[("CONSOLE_URL", "console")])).unwrap_err();
        assert!(
            e.0.contains("CONSOLE_URL") && e.0.contains("https://"),
            "{e}"
        );
        let e = Environment::from_vars(vars(&[("NOTIFY_TOPIC_ARN", "my-topic")])).unwrap_err();
        assert!(e.0.contains("arn:aws:sns:"), "{e}");
        let e =
            Environment::from_vars(vars(&[("NOTIFY_WEBHOOK_TIMEOUT_SECONDS", "0")])).unwrap_err();
        assert!(e.0.contains("from 0.05 to 60"), "{e}");
    }

    #[test]
    fn the_run_policy_and_the_lambda_variables_are_read_and_bad_ones_say_how_to_fix() {
        let env = Environment::from_vars(vars(&[])).unwrap();
        assert_eq!(env.run_policy, RunPolicy::default());
        assert_eq!(env.run_policy.lease_ttl, Duration::from_secs(900));
        assert_eq!(env.secrets_refresh, DEFAULT_SECRETS_REFRESH);
        assert_eq!(env.function_name, None);
        let env = Environment::from_vars(vars(&[
            ("SYNC_LEASE_TTL_SECONDS", "1200"),
            ("SYNC_DEADLINE_MARGIN_SECONDS", "0"),
            ("SECRETS_REFRESH_SECONDS", " 60 "),
            ("AWS_LAMBDA_FUNCTION_NAME", "from-lambda"),
        ]))
        .unwrap();
        assert_eq!(env.run_policy.lease_ttl, Duration::from_secs(1200));
        assert_eq!(env.run_policy.deadline_margin, Duration::ZERO);
        assert_eq!(env.secrets_refresh, Duration::from_secs(60));
        assert_eq!(env.function_name.as_deref(), Some("from-lambda"));
        let env = Environment::from_vars(vars(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "from-lambda"),
            ("SYNC_FUNCTION_NAME", "ours"),
        ]))
        .unwrap();
        assert_eq!(env.function_name.as_deref(), Some("ours"));
        for (name, bad) in [
            ("SYNC_LEASE_TTL_SECONDS", "10"),
            ("SYNC_LEASE_TTL_SECONDS", "15m"),
            ("SYNC_DEADLINE_MARGIN_SECONDS", "-1"),
            ("SYNC_DEADLINE_MARGIN_SECONDS", "601"),
            ("SECRETS_REFRESH_SECONDS", "soon"),
        ] {
            let e = Environment::from_vars(vars(&[(name, bad)])).unwrap_err();
            assert!(
                e.0.starts_with(&format!("{name}=")) && e.0.contains("whole number from"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_margin_is_capped_at_a_quarter_of_the_time_left() {
        let policy = RunPolicy::default();
        let now = tokio::time::Instant::now();
        // 15 minutes left: the whole minute's margin.
        let deadline = now + Duration::from_secs(900);
        assert_eq!(
            policy.last_start(now, deadline),
            deadline - Duration::from_secs(60)
        );
        // 2 minutes left: a quarter of them, 30 s, not the minute.
        let deadline = now + Duration::from_secs(120);
        assert_eq!(
            policy.last_start(now, deadline),
            deadline - Duration::from_secs(30)
        );
        // Past the deadline: now.
        assert_eq!(policy.last_start(now, now), now);
    }

    #[test]
    fn the_webhook_fields_of_the_secret_are_read_and_checked() {
        let base = r#"{"sophos":{"clientId":"cid","clientSecret":"s"},
          "connectwise":{"site":"x","companyId":"co","publicKey":"p","privateKey":"q","clientId":"x"}"#;
        let s = Secrets::parse(&format!("{base}}}"), "test").unwrap();
        assert!(s.notify_webhook.is_none());
        let s = Secrets::parse(
            &format!(
                r#"{base},"notifyWebhookUrl":"https://hooks.slack.com/services/TOPSECRET","notifyWebhookSecret":"KEYSECRET"}}"#
            ),
            "test",
        )
        .unwrap();
        assert_eq!(
            s.notify_webhook.as_ref().map(|w| w.host()),
            Some("hooks.slack.com")
        );
        assert!(!format!("{s:?}").contains("SECRET"));
        let e = Secrets::parse(
            &format!(r#"{base},"notifyWebhookUrl":"https://hooks.slack.com/services/TOPSECRET"}}"#),
            "test",
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("notifyWebhookSecret") && !e.contains("TOPSECRET"),
            "{e}"
        );
    }

    #[test]
    fn secret_parses_and_never_shows_values() {
        let text = r#"{"sophos":{"clientId":"cid","clientSecret":"TOPSECRET1"},
          "connectwise":{"site":"http://127.0.0.1:1","companyId":"co","publicKey":"TOPSECRET2",
          "privateKey":"TOPSECRET3","clientId":"x"},"webhookToken":"TOPSECRET4"}"#;
        let s = Secrets::parse(text, "test").unwrap();
        assert_eq!(s.sophos_client_secret.expose_secret(), "TOPSECRET1");
        assert!(!format!("{s:?}").contains("TOPSECRET"));
        assert!(s.cw_codebase.is_none());
    }

    #[test]
    fn secret_errors_name_the_field_not_the_value() {
        let text = r#"{"sophos":{"clientId":"cid","clientSecret":"TOPSECRET1"},"connectwise":{"site":"s"}}"#;
        let e = Secrets::parse(text, "test").unwrap_err().0;
        assert!(e.contains("connectwise.companyId"), "{e}");
        assert!(!e.contains("TOPSECRET"));
        let e = Secrets::parse(r#"{"sophos":{"clientSecret": TOPSECRET1}}"#, "f")
            .unwrap_err()
            .0;
        assert!(
            e.contains("not valid JSON") && !e.contains("TOPSECRET"),
            "{e}"
        );
    }
}
