//! The webhook queue. Ingest answers 2xx only after [`Queue::send`] returned `Ok`.

use std::future::Future;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;

#[derive(Debug, thiserror::Error)]
#[error("queue send failed: {0}")]
pub struct QueueError(pub String);

pub trait Queue: Send + Sync + 'static {
    /// Sends one message with string message attributes; `Ok` means SQS has it durably.
    /// Returns the message id.
    fn send_with_attributes(
        &self,
        body: String,
        attributes: &[(&str, &str)],
    ) -> impl Future<Output = Result<String, QueueError>> + Send;

    /// Sends one message; `Ok` means SQS has it durably. Returns the message id.
    fn send(&self, body: String) -> impl Future<Output = Result<String, QueueError>> + Send {
        self.send_with_attributes(body, &[])
    }

    /// Sends one message that becomes visible after `delay` (SQS allows up to 15 minutes; longer
    /// delays are cut to that). A message put back this way starts with a receive count of zero,
    /// so a long wait for a provider never pushes it into the DLQ.
    fn send_delayed(
        &self,
        body: String,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<String, QueueError>> + Send;
}

/// An SQS batch's partial response: the records for which `retry` holds go back to the queue
/// (retried after their visibility timeout, then to the DLQ); the others are done.
pub fn batch_response<T>(
    records: &[aws_lambda_events::event::sqs::SqsMessage],
    outcomes: &[T],
    retry: impl Fn(&T) -> bool,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in records.iter().zip(outcomes) {
        if retry(outcome) {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// SQS's longest message delay.
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(900);

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

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Queue for SqsQueue {
    async fn send_with_attributes(
        &self,
        body: String,
        attributes: &[(&str, &str)],
    ) -> Result<String, QueueError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (name, value) in attributes {
            req = req.message_attributes(
                *name,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(*value)
                    .build()
                    .map_err(|e| QueueError(e.to_string()))?,
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn send_delayed(
        &self,
        body: String,
        delay: std::time::Duration,
    ) -> Result<String, QueueError> {
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

/// A queue in memory (feature `memory`): what was sent, with its delay and attributes. A clone
/// is the same queue (as [`crate::store::memory::MemoryJobs`]).
#[cfg(feature = "memory")]
#[derive(Debug, Default, Clone)]
pub struct MemoryQueue {
    pub sent: std::sync::Arc<std::sync::Mutex<Vec<Sent>>>,
    /// Sends still to fail (as SQS being unreachable would).
    failing: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(feature = "memory")]
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub body: String,
    pub delay: std::time::Duration,
    pub attributes: Vec<(String, String)>,
}

#[cfg(feature = "memory")]
impl MemoryQueue {
    /// Takes every message sent so far.
    pub fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }

    /// The next `n` sends fail.
    pub fn fail_sends(&self, n: usize) {
        self.failing.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn send_fails(&self) -> Result<(), QueueError> {
        use std::sync::atomic::Ordering;
        match self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        {
            Ok(_) => Err(QueueError("injected send failure".into())),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(feature = "memory")]
impl Queue for MemoryQueue {
    async fn send_with_attributes(
        &self,
        body: String,
        attributes: &[(&str, &str)],
    ) -> Result<String, QueueError> {
        self.send_fails()?;
        let mut sent = self.sent.lock().unwrap();
        sent.push(Sent {
            body,
            delay: std::time::Duration::ZERO,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        Ok(format!("m{}", sent.len()))
    }

    async fn send_delayed(
        &self,
        body: String,
        delay: std::time::Duration,
    ) -> Result<String, QueueError> {
        self.send_fails()?;
        let mut sent = self.sent.lock().unwrap();
        sent.push(Sent {
            body,
            delay: delay.min(MAX_DELAY),
            attributes: Vec::new(),
        });
        Ok(format!("m{}", sent.len()))
    }
}
