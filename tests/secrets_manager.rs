//! Secrets from AWS Secrets Manager, against moto's server (real wire protocol).

mod support;

use secrecy::ExposeSecret;
use sophos_cw_sync::config::SecretsSpec;
use sophos_cw_sync::wiring::load_secrets_with;
use support::moto::{aws_config, unique_name};

const SECRET: &str = r#"{"sophos":{"clientId":"cid","clientSecret":"S3CRET-sophos"},
 "connectwise":{"site":"api-na.myconnectwise.net","companyId":"acme","publicKey":"PUB-KEY-1",
  "privateKey":"PRIV-KEY-1","clientId":"guid","codebase":"v2025_1/"},"webhookToken":"HOOK-1"}"#;

#[tokio::test]
async fn reads_the_secret_json_from_secrets_manager() {
    let config = aws_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let name = unique_name("sync-secret-");
    client
        .create_secret()
        .name(&name)
        .secret_string(SECRET)
        .send()
        .await
        .expect("create secret in moto");
    let secrets = load_secrets_with(&SecretsSpec::SecretsManager(name), &config)
        .await
        .expect("secret loads");
    assert_eq!(secrets.sophos_client_id, "cid");
    assert_eq!(
        secrets.sophos_client_secret.expose_secret(),
        "S3CRET-sophos"
    );
    assert_eq!(secrets.cw_private_key.expose_secret(), "PRIV-KEY-1");
    assert_eq!(secrets.cw_codebase.as_deref(), Some("v2025_1/"));
    assert_eq!(
        secrets
            .webhook_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
            .as_deref(),
        Some("HOOK-1")
    );
}

#[tokio::test]
async fn a_missing_or_malformed_secret_is_a_clear_config_error_without_values() {
    let config = aws_config().await;
    let missing = unique_name("absent-");
    let err = load_secrets_with(&SecretsSpec::SecretsManager(missing.clone()), &config)
        .await
        .unwrap_err();
    assert!(
        err.0.contains(&missing) && err.0.contains("GetSecretValue"),
        "{err}"
    );

    let client = aws_sdk_secretsmanager::Client::new(&config);
    let name = unique_name("bad-secret-");
    let bad = r#"{"sophos":{"clientId":"cid","clientSecret":"LEAKME-123"},"connectwise":{}}"#;
    client
        .create_secret()
        .name(&name)
        .secret_string(bad)
        .send()
        .await
        .unwrap();
    let err = load_secrets_with(&SecretsSpec::SecretsManager(name), &config)
        .await
        .unwrap_err();
    assert!(err.0.contains("connectwise.site"), "{err}");
    assert!(!err.0.contains("LEAKME"));
}
