//! The dead-letter queues, for an operator: what is in them (counts by reason and by job, never a
//! body: bodies hold contact data), and moving messages back to the queue they came from.
//!
//! Two kinds of message land in a DLQ: a delivery that bulk-fetch *parked* (it can never be
//! processed as it is: it carries `reason`, `job_id` and `source_message_id` attributes) and one
//! that SQS *moved* after `maxReceiveCount` failed receives (no attributes; its reason reads
//! [`RETRIES_EXHAUSTED`]). SQS's own redrive (`start-message-move-task`) moves only the second
//! kind back and cannot filter; `replay` moves both, filtered by reason and job.

use std::collections::BTreeMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

/// The reason shown for a message SQS moved after its receives ran out.
pub const RETRIES_EXHAUSTED: &str = "retries exhausted (maxReceiveCount)";

/// How long messages read for a listing stay hidden from other readers (then they reappear, or
/// are released at once by [`Dlq::release`]).
const HOLD_SECONDS: i32 = 60;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("SQS {op} failed: {source}")]
    Sqs {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Usage(String),
}

fn sqs_error<E: std::error::Error + Send + Sync + 'static>(
    op: &'static str,
) -> impl FnOnce(E) -> DlqError {
    move |e| DlqError::Sqs {
        op,
        source: Box::new(e),
    }
}

/// One message read from a DLQ: what is needed to filter, move and delete it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub receipt_handle: String,
    pub body: String,
    pub reason: String,
    pub job_id: Option<String>,
}

impl DeadLetter {
    fn of(m: aws_sdk_sqs::types::Message) -> DeadLetter {
        let attrs = m.message_attributes.unwrap_or_default();
        let attr = |k: &str| {
            attrs
                .get(k)
                .and_then(|v| v.string_value.clone())
                .filter(|v| !v.is_empty())
        };
        let body = m.body.unwrap_or_default();
        // A moved delivery names its job in its body (the envelope, a poll or a chunk message).
        let job_id = attr("job_id").or_else(|| {
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("job_id")?.as_str().map(str::to_string))
        });
        DeadLetter {
            receipt_handle: m.receipt_handle.unwrap_or_default(),
            reason: attr("reason").unwrap_or_else(|| RETRIES_EXHAUSTED.to_string()),
            job_id,
            body,
        }
    }
}

/// Which messages a replay moves: all, or those whose reason contains `reason`
/// (case-insensitive) and whose job is `job`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub reason: Option<String>,
    pub job: Option<String>,
}

impl Filter {
    pub fn matches(&self, l: &DeadLetter) -> bool {
        self.reason
            .as_ref()
            .is_none_or(|r| l.reason.to_lowercase().contains(&r.to_lowercase()))
            && self
                .job
                .as_ref()
                .is_none_or(|j| l.job_id.as_deref() == Some(j.as_str()))
    }
}

/// A DLQ's contents in counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub by_reason: BTreeMap<String, usize>,
    pub by_job: BTreeMap<String, usize>,
    /// Messages another reader held while this one read (counted by SQS, not seen here).
    pub in_flight: usize,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Sent back to the source queue and deleted from the DLQ.
    pub moved: usize,
    /// Matching, but not moved because this was a dry run.
    pub would_move: usize,
    /// Not matching the filter: left in the DLQ, visible again at once.
    pub left: usize,
    /// Matching, but the send failed: left in the DLQ.
    pub failed: usize,
}

/// One dead-letter queue and the queue its messages go back to.
pub struct Dlq {
    sqs: Client,
    pub url: String,
}

impl Dlq {
    pub fn new(sqs: Client, url: impl Into<String>) -> Dlq {
        Dlq {
            sqs,
            url: url.into(),
        }
    }

    /// The DLQs of a deployment: queues named `{stack}-…DeadLetterQueue…` (SAM names them
    /// `{stack}-{LogicalId}-{suffix}`, the local stack `{prefix}-{LogicalId}`).
    pub async fn of_stack(sqs: &Client, stack: &str) -> Result<Vec<Dlq>, DlqError> {
        let mut urls = Vec::new();
        let mut next = None;
        loop {
            let out = sqs
                .list_queues()
                .queue_name_prefix(format!("{stack}-"))
                .set_next_token(next.take())
                .max_results(1000)
                .send()
                .await
                .map_err(sqs_error("ListQueues"))?;
            urls.extend(out.queue_urls.unwrap_or_default());
            next = out.next_token;
            if next.is_none() {
                break;
            }
        }
        urls.retain(|u| {
            u.rsplit('/')
                .next()
                .is_some_and(|name| name.contains("DeadLetterQueue"))
        });
        urls.sort();
        if urls.is_empty() {
            return Err(DlqError::Usage(format!(
                "no dead-letter queue named {stack}-…DeadLetterQueue…: check --stack (the CloudFormation stack name) and the AWS region"
            )));
        }
        Ok(urls.into_iter().map(|u| Dlq::new(sqs.clone(), u)).collect())
    }

    /// The queue name (the last segment of the URL).
    pub fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }

    /// The queue whose redrive policy names this DLQ: where its messages came from.
    pub async fn source(&self) -> Result<String, DlqError> {
        let out = self
            .sqs
            .list_dead_letter_source_queues()
            .queue_url(&self.url)
            .send()
            .await
            .map_err(sqs_error("ListDeadLetterSourceQueues"))?;
        match out.queue_urls.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(DlqError::Usage(format!(
                "no queue names {} as its DLQ: give the destination with --to",
                self.name()
            ))),
            many => Err(DlqError::Usage(format!(
                "{} queues name {} as their DLQ ({}): choose one with --to",
                many.len(),
                self.name(),
                many.join(", ")
            ))),
        }
    }

    /// Reads every visible message, hiding each for a minute so none is read twice (release or
    /// delete them afterwards).
    pub async fn read_all(&self) -> Result<Vec<DeadLetter>, DlqError> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .visibility_timeout(HOLD_SECONDS)
                // Long polling asks every SQS server, so an empty answer means empty.
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(sqs_error("ReceiveMessage"))?;
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(out);
            }
            out.extend(messages.into_iter().map(DeadLetter::of));
        }
    }

    /// Makes messages read by [`Self::read_all`] visible again at once.
    pub async fn release(&self, letters: &[&DeadLetter]) -> Result<(), DlqError> {
        for batch in letters.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&l.receipt_handle)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            self.sqs
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sqs_error("ChangeMessageVisibilityBatch"))?;
        }
        Ok(())
    }

    /// Counts by reason and by job, leaving every message where it is.
    pub async fn summary(&self) -> Result<Summary, DlqError> {
        let letters = self.read_all().await?;
        let mut s = Summary {
            total: letters.len(),
            ..Summary::default()
        };
        for l in &letters {
            *s.by_reason.entry(l.reason.clone()).or_insert(0) += 1;
            let job = l.job_id.clone().unwrap_or_else(|| "(no job)".into());
            *s.by_job.entry(job).or_insert(0) += 1;
        }
        self.release(&letters.iter().collect::<Vec<_>>()).await?;
        s.in_flight = self
            .attribute(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .await?;
        Ok(s)
    }

    async fn attribute(&self, name: QueueAttributeName) -> Result<usize, DlqError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(sqs_error("GetQueueAttributes"))?;
        Ok(out
            .attributes
            .and_then(|a| a.get(&name).and_then(|v| v.parse().ok()))
            .unwrap_or(0))
    }

    /// Moves the messages `filter` matches to `to` (their source queue): each is sent with its
    /// body as it was, then deleted here. A message whose send fails stays. Sent and not yet
    /// deleted (a crash between the two) means a second copy later, which the relay's dedupe
    /// absorbs: nothing is lost either way. `dry_run`: only counts.
    pub async fn replay(
        &self,
        to: &str,
        filter: &Filter,
        dry_run: bool,
    ) -> Result<Replayed, DlqError> {
        let letters = self.read_all().await?;
        let (chosen, others): (Vec<&DeadLetter>, Vec<&DeadLetter>) =
            letters.iter().partition(|l| filter.matches(l));
        let mut r = Replayed {
            left: others.len(),
            ..Replayed::default()
        };
        self.release(&others).await?;
        if dry_run {
            r.would_move = chosen.len();
            self.release(&chosen).await?;
            return Ok(r);
        }
        for batch in chosen.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&l.body)
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let sent = self
                .sqs
                .send_message_batch()
                .queue_url(to)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sqs_error("SendMessageBatch"))?;
            let failed: Vec<usize> = sent
                .failed
                .iter()
                .filter_map(|f| f.id.parse().ok())
                .collect();
            r.failed += failed.len();
            let unsent: Vec<&DeadLetter> = failed
                .iter()
                .filter_map(|i| batch.get(*i).copied())
                .collect();
            self.release(&unsent).await?;
            let moved: Vec<(usize, &&DeadLetter)> = batch
                .iter()
                .enumerate()
                .filter(|(i, _)| !failed.contains(i))
                .collect();
            if moved.is_empty() {
                continue;
            }
            let deletes = moved
                .iter()
                .map(|(i, l)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&l.receipt_handle)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            self.sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(sqs_error("DeleteMessageBatch"))?;
            r.moved += moved.len();
        }
        Ok(r)
    }
}
