//! The webhook queue. Ingest answers 2xx only after [`Queue::send`] returned `Ok`.

use std::future::Future;

use aws_sdk_sqs::error::DisplayErrorContext;

#[derive(Debug, thiserror::Error)]
#[error("queue send failed: {0}")]
pub struct QueueError(pub String);

pub trait Queue: Send + Sync + 'static {
    /// Sends one message; `Ok` means SQS has it durably. Returns the message id.
    fn send(&self, body: String) -> impl Future<Output = Result<String, QueueError>> + Send;
}

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }
}

impl Queue for SqsQueue {
    async fn send(&self, body: String) -> Result<String, QueueError> {
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
        Ok(out.message_id.unwrap_or_default())
    }
}
