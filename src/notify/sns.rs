//! The SNS channel: one Publish to the topic `NOTIFY_TOPIC_ARN` (e-mail
//! subscribers get the subject and the plain text). The function's role may
//! `sns:Publish` on that topic only (infra/template.yaml).

use crate::notify::Notice;
use aws_sdk_sns::config::timeout::TimeoutConfig;
use std::time::Duration;

/// One Publish attempt, and all of them (the SDK retries throttling and 5xx).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SnsChannel {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsChannel {
    /// A client of `config` with generous timeouts of its own: an attempt cut
    /// short while SNS is still delivering would be retried by the SDK and could
    /// publish the message twice, so these are not the webhook's short timeout.
    pub fn new(config: &aws_config::SdkConfig, topic_arn: &str) -> Self {
        let conf = aws_sdk_sns::config::Builder::from(config)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .build();
        Self {
            client: aws_sdk_sns::Client::from_conf(conf),
            topic_arn: topic_arn.to_owned(),
        }
    }

    pub async fn publish(&self, notice: &Notice) -> Result<(), String> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&notice.subject)
            .message(notice.text())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "cannot publish to {} ({}); check the topic and the permission sns:Publish",
                    self.topic_arn,
                    aws_sdk_sns::error::DisplayErrorContext(&e)
                )
            })
    }
}
