//! The wiring every entry point shares: opening the store, reading the secrets,
//! checking the settings and building the vendor clients. Entry points (`cli`,
//! `serve`, `lambda`) and the application service call these; nothing here knows
//! which entry point it serves.

use crate::config::{ConfigError, Environment, Secrets, SecretsSpec, Settings, StoreSpec};
use crate::connectwise::client::{ConnectWiseClient, ConnectWiseConfig};
use crate::domain::month::Month;
use crate::http::{ApiCounters, HttpPolicy};
use crate::sophos::client::{SophosClient, SophosConfig};
use crate::store::{Store, StoreError, dynamodb::DynamoStore, sqlite::SqliteStore};
use std::sync::Arc;

pub async fn open_store(spec: &StoreSpec) -> Result<Box<dyn Store>, StoreError> {
    Ok(match spec {
        StoreSpec::Sqlite(path) => Box::new(SqliteStore::open(path)?),
        StoreSpec::Dynamo(table) => {
            let config = aws_config::load_from_env().await;
            Box::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&config),
                table.clone(),
            ))
        }
    })
}

pub fn validate_settings(s: &Settings) -> Result<(), ConfigError> {
    use crate::domain::products::is_known;
    let unknown: Vec<&String> = s
        .products
        .iter()
        .chain(s.product_codes.values())
        .filter(|p| !is_known(p))
        .collect();
    if !unknown.is_empty() {
        return Err(ConfigError(format!(
            "unknown product identifiers {unknown:?}: use identifiers from the README's product table (e.g. Sophos_Intercept_X_Advanced)"
        )));
    }
    s.check_catalog_items().map_err(ConfigError)?;
    s.review.check().map_err(ConfigError)?;
    s.check_month_and_money().map_err(ConfigError)?;
    crate::config::operators::check(&s.operators).map_err(ConfigError)?;
    Month::from_setting(&s.month).map_err(|e| {
        ConfigError(format!(
            "the month setting: {e} (or \"current\", \"previous\")"
        ))
    })?;
    let max = crate::config::settings::MAX_CONNECTWISE_CONCURRENCY;
    if !(1..=max).contains(&s.connectwise_concurrency) {
        return Err(ConfigError(format!(
            "connectwiseConcurrency is {}: set it to how many ConnectWise requests may be in flight at once, from 1 to {max} (default {}), e.g. {{\"connectwiseConcurrency\":4}}",
            s.connectwise_concurrency,
            crate::config::settings::DEFAULT_CONNECTWISE_CONCURRENCY
        )));
    }
    Ok(())
}

pub async fn load_secrets(spec: &SecretsSpec) -> Result<Secrets, ConfigError> {
    match spec {
        SecretsSpec::File(path) => Secrets::from_file(path),
        SecretsSpec::SecretsManager(_) => {
            load_secrets_with(spec, &aws_config::load_from_env().await).await
        }
    }
}

/// Like [`load_secrets`] with a given AWS configuration (tests point it at moto).
pub async fn load_secrets_with(
    spec: &SecretsSpec,
    config: &aws_config::SdkConfig,
) -> Result<Secrets, ConfigError> {
    match spec {
        SecretsSpec::File(path) => Secrets::from_file(path),
        SecretsSpec::SecretsManager(id) => {
            let client = aws_sdk_secretsmanager::Client::new(config);
            let out = client.get_secret_value().secret_id(id).send().await.map_err(|e| {
                ConfigError(format!(
                    "cannot read secret {id} from Secrets Manager ({}); check the name and the permission secretsmanager:GetSecretValue",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
            let text = out.secret_string().ok_or_else(|| {
                ConfigError(format!(
                    "secret {id} has no string value: store the JSON as the secret string"
                ))
            })?;
            Secrets::parse(text, &format!("Secrets Manager secret {id}"))
        }
    }
}

pub async fn build_clients(
    env: &Environment,
    secrets: &Secrets,
    counters: Arc<ApiCounters>,
) -> Result<(SophosClient, ConnectWiseClient), ConfigError> {
    build_clients_with_policy(env, secrets, counters, HttpPolicy::default()).await
}

/// [`build_clients`] with other timeouts and retry limits (tests use a short timeout).
pub async fn build_clients_with_policy(
    env: &Environment,
    secrets: &Secrets,
    counters: Arc<ApiCounters>,
    policy: HttpPolicy,
) -> Result<(SophosClient, ConnectWiseClient), ConfigError> {
    let sophos = SophosClient::new(
        SophosConfig {
            id_url: env.sophos_id_url.clone(),
            api_url: env.sophos_api_url.clone(),
            client_id: secrets.sophos_client_id.clone(),
            client_secret: secrets.sophos_client_secret.clone(),
        },
        policy.clone(),
        counters.clone(),
    );
    let cw = ConnectWiseClient::connect(
        ConnectWiseConfig {
            site: secrets.cw_site.clone(),
            company_id: secrets.cw_company_id.clone(),
            public_key: secrets.cw_public_key.clone(),
            private_key: secrets.cw_private_key.clone(),
            client_id: secrets.cw_client_id.clone(),
            codebase: secrets.cw_codebase.clone(),
        },
        policy,
        counters,
    )
    .await
    .map_err(|e| ConfigError(format!("cannot reach ConnectWise: {e}")))?;
    Ok((sophos, cw))
}
