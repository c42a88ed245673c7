//! A stand-in for Lambda's SQS event source mapping: receive up to 10 messages, hand them to the
//! function as a real `SqsEvent`, delete the ones that succeeded, and leave the
//! `batchItemFailures` to come back after the visibility timeout (and to reach the DLQ after
//! maxReceiveCount, as on AWS).

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

/// One receive → invoke → delete round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub received: usize,
    pub failed: usize,
}

pub struct Poller {
    pub sqs: Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    /// Overrides the queue's visibility timeout per receive (tests use a short one).
    pub visibility_timeout: Option<i32>,
    pub wait_seconds: i32,
}

impl Poller {
    pub fn new(sqs: Client, queue_url: &str, queue_arn: &str) -> Poller {
        Poller {
            sqs,
            queue_url: queue_url.to_string(),
            queue_arn: queue_arn.to_string(),
            batch_size: 10,
            visibility_timeout: None,
            wait_seconds: 0,
        }
    }

    fn lambda_message(&self, m: Message) -> SqsMessage {
        let mut out = SqsMessage::default();
        out.attributes = m
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect();
        out.message_id = m.message_id;
        out.receipt_handle = m.receipt_handle;
        out.body = m.body;
        out.md5_of_body = m.md5_of_body;
        out.md5_of_message_attributes = m.md5_of_message_attributes;
        out.event_source = Some("aws:sqs".into());
        out.event_source_arn = Some(self.queue_arn.clone());
        out.aws_region = Some("us-east-1".into());
        out
    }

    /// Receives a batch and runs `function` on it; deletes what succeeded.
    pub async fn round<F, Fut>(&self, function: F) -> Result<Round, String>
    where
        F: FnOnce(SqsEvent) -> Fut,
        Fut: Future<Output = Result<SqsBatchResponse, String>>,
    {
        let got = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .set_visibility_timeout(self.visibility_timeout)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(Round::default());
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .into_iter()
            .map(|m| self.lambda_message(m))
            .collect();
        let records = event.records.clone();
        // A function error fails the whole batch, as on Lambda: nothing is deleted.
        let failed: Vec<String> = match function(event).await {
            Ok(resp) => resp
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(_) => records
                .iter()
                .filter_map(|r| r.message_id.clone())
                .collect(),
        };
        for r in &records {
            if failed.iter().any(|f| Some(f) == r.message_id.as_ref()) {
                continue;
            }
            let deleted = self
                .sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(r.receipt_handle.clone().unwrap_or_default())
                .send()
                .await;
            match deleted {
                Ok(_) => {}
                // The function ran past the visibility timeout and the message was received
                // again meanwhile: its old handle no longer deletes it, and the new copy is
                // processed (harmlessly: the functions are idempotent) by whoever received it.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_receipt_handle_is_invalid()) => {}
                Err(e) => return Err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()),
            }
        }
        Ok(Round {
            received: records.len(),
            failed: failed.len(),
        })
    }
}
