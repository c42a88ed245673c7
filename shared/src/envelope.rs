//! The envelope a webhook delivery travels in, from webhook-ingest through SQS to bulk-fetch.
//!
//! It keeps the raw body byte for byte: inline as text when the bytes are UTF-8 that SQS accepts,
//! inline as base64 otherwise, or by reference to the claim-check store when the envelope would
//! not fit in one SQS message.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::Provider;
use crate::auth::SignatureCheck;
use crate::callback::{CallbackRequest, CallbackTarget};
use crate::ids::{ChunkIndex, JobId};
use crate::providers::Hook;

/// SQS's message size limit (256 KiB), for the whole message body.
pub const SQS_MAX_MESSAGE_BYTES: usize = 262_144;

/// The request headers worth keeping; everything else (cookies, auth, forwarding) is dropped.
pub const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "user-agent",
    "x-signature-sha1",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version.
    pub v: u32,
    /// Unique per received HTTP request; not an event identity (a retried delivery gets a new one).
    pub delivery_id: String,
    pub provider: Provider,
    pub hook: Hook,
    pub job_id: JobId,
    pub received_at_ms: u64,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    /// What ingest found of FullEnrich's `X-Signature-SHA1`.
    pub signature: Signature,
    pub body: Body,
    /// How many times bulk-fetch put this delivery back on the queue, delayed, because its
    /// provider was not ready or rate-limited (bounded, so a delivery never circles forever).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requeues: u32,
    /// How many times it waited in the queue for a request slot of its provider account: the
    /// spread of its next wait grows with it, so a backlog's deliveries do not all come back at
    /// once (never towards the requeue limit: a slot always comes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paced: u32,
}

impl Envelope {
    /// When a delivery that found no request slot in reach comes back: when one is (`after`),
    /// plus a random spread that doubles with each wait, up to two minutes. A backlog's
    /// deliveries then come back spread over the schedule instead of all at once, so the schedule
    /// stays full at a handful of tries per request.
    pub fn paced_delay(&self, after: std::time::Duration) -> std::time::Duration {
        use std::time::Duration;
        let spread =
            crate::retry::nth_delay(Duration::from_secs(2), Duration::from_secs(120), self.paced);
        let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % spread.as_millis() as u64;
        after + Duration::from_millis(jitter)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    Verified,
    Absent,
    NotApplicable,
}

impl From<SignatureCheck> for Signature {
    fn from(c: SignatureCheck) -> Self {
        match c {
            SignatureCheck::Valid => Signature::Verified,
            // Invalid deliveries are refused before an envelope exists.
            SignatureCheck::Absent | SignatureCheck::Invalid => Signature::Absent,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// The body is UTF-8 text whose JSON encoding SQS accepts.
    Text { text: String },
    /// Any other bytes, base64 (standard alphabet, padded).
    Base64 { data: String },
    /// Too large for one SQS message: the bytes are in the claim-check store.
    Stored {
        bucket: String,
        key: String,
        size: u64,
        sha256: String,
    },
}

impl Body {
    /// Inline form of `bytes`: text when SQS can carry them as they are, base64 otherwise.
    pub fn inline(bytes: &[u8]) -> Body {
        match std::str::from_utf8(bytes) {
            // In valid UTF-8 the only characters SQS refuses once JSON has escaped the control
            // characters (`\u0000`) are the noncharacters U+FFFE and U+FFFF.
            Ok(text) if !text.contains(['\u{FFFE}', '\u{FFFF}']) => Body::Text {
                text: text.to_owned(),
            },
            _ => Body::Base64 {
                data: STANDARD.encode(bytes),
            },
        }
    }

    /// The raw bytes of an inline body; `None` for a stored one (fetch it from the store).
    pub fn inline_bytes(&self) -> Option<Result<Vec<u8>, base64::DecodeError>> {
        match self {
            Body::Text { text } => Some(Ok(text.as_bytes().to_vec())),
            Body::Base64 { data } => Some(STANDARD.decode(data)),
            Body::Stored { .. } => None,
        }
    }
}

/// Characters an SQS message body may hold (the XML 1.0 set).
#[cfg(test)]
fn sqs_allows(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

impl Envelope {
    /// The webhook queue's message for this delivery ([`WebhookMessage::Delivery`]).
    pub fn to_json(&self) -> String {
        MessageRef::Delivery(self).to_json()
    }

    /// The delivery a webhook-queue message carries (`Err` for any other message).
    pub fn from_json(s: &str) -> Result<Envelope, serde_json::Error> {
        match WebhookMessage::from_json(s)? {
            WebhookMessage::Delivery(env) => Ok(env),
            _ => Err(serde::de::Error::custom("not a delivery")),
        }
    }
}

/// The webhook queue's one message type, tagged by `type`: a delivery (ingest's, or one put back
/// to wait), a poll (the sweeper's), or a completion callback attempt. bulk-fetch decodes each
/// record once ([`WebhookMessage::from_json`]), then hands it to its stage.
///
/// Messages of the release before carry no `type` (a bare [`Envelope`], `{"poll": …}`,
/// `{"callback": …}`): they are read all the same, so a deploy with messages in flight loses
/// none. (Not `aws_lambda_events`' `SqsEventObj<T>`: it decodes the whole batch at once, so one
/// unreadable body would fail every record of it instead of being parked with its body.)
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WebhookMessage {
    Delivery(Envelope),
    Poll(PollTarget),
    Callback(CallbackTarget),
}

/// [`WebhookMessage`] by reference, to write one without copying its body.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum MessageRef<'a> {
    Delivery(&'a Envelope),
    Poll(&'a PollTarget),
    Callback(&'a CallbackTarget),
}

impl MessageRef<'_> {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a queue message serializes")
    }
}

/// The message shapes of the release before (no `type`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Untagged {
    Poll { poll: PollTarget },
    Callback { callback: CallbackTarget },
    Delivery(Envelope),
}

impl WebhookMessage {
    pub fn from_json(s: &str) -> Result<WebhookMessage, serde_json::Error> {
        serde_json::from_str::<WebhookMessage>(s).or_else(|tagged| {
            let Ok(old) = serde_json::from_str::<Untagged>(s) else {
                return Err(tagged);
            };
            Ok(match old {
                Untagged::Poll { poll } => WebhookMessage::Poll(poll),
                Untagged::Callback { callback } => WebhookMessage::Callback(callback),
                Untagged::Delivery(env) => WebhookMessage::Delivery(env),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: Body) -> Envelope {
        Envelope {
            v: 1,
            delivery_id: "d1".into(),
            provider: Provider::Enrow,
            hook: Hook::Event,
            job_id: "job_1".into(),
            received_at_ms: 1,
            headers: BTreeMap::new(),
            signature: Signature::NotApplicable,
            body,
            requeues: 0,
            paced: 0,
        }
    }

    /// A paced delivery comes back after its slot, spread over 2 s, then 4, 8, … up to 120 s as
    /// it waits again.
    #[test]
    fn a_paced_wait_spreads_over_a_window_that_doubles_to_two_minutes() {
        let after = std::time::Duration::from_secs(40);
        for (paced, window_s) in [(0, 2), (1, 4), (3, 16), (5, 64), (6, 120), (40, 120)] {
            let env = Envelope {
                paced,
                ..envelope(Body::inline(b"{}"))
            };
            let spreads: Vec<u128> = (0..200)
                .map(|_| (env.paced_delay(after) - after).as_millis())
                .collect();
            let window = window_s * 1000;
            assert!(spreads.iter().all(|s| *s < window), "{paced}: {spreads:?}");
            assert!(spreads.iter().any(|s| *s >= window / 2), "{paced}: spread");
        }
    }

    /// One message type per queue, tagged: each kind written with its `type` and read back as
    /// itself, and nothing else.
    #[test]
    fn each_webhook_queue_message_is_tagged_and_read_back_as_its_kind() {
        let env = envelope(Body::inline(b"{}"));
        let delivery: serde_json::Value = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(delivery["type"], "delivery");
        assert_eq!(
            WebhookMessage::from_json(&env.to_json()).unwrap(),
            WebhookMessage::Delivery(env.clone())
        );
        let poll = PollRequest::new(&JobId::new("job_1"), ChunkIndex(3), 7).taken_at(9);
        assert!(
            poll.to_json().starts_with(r#"{"type":"poll""#),
            "{}",
            poll.to_json()
        );
        assert_eq!(PollRequest::from_json(&poll.to_json()), Some(poll.clone()));
        let ask = CallbackRequest::new(&JobId::new("job_1"), Some(5));
        assert!(ask.to_json().starts_with(r#"{"type":"callback""#));
        assert_eq!(
            CallbackRequest::from_json(&ask.to_json()),
            Some(ask.clone())
        );
        // Each reader takes its own kind only.
        assert_eq!(PollRequest::from_json(&env.to_json()), None);
        assert_eq!(CallbackRequest::from_json(&poll.to_json()), None);
        assert!(Envelope::from_json(&ask.to_json()).is_err());
        assert!(WebhookMessage::from_json(r#"{"type":"nonsense"}"#).is_err());
    }

    /// The submit queue's messages: tagged on the way out, and those of the release before
    /// (`action` absent for a start) read as the same message.
    #[test]
    fn submit_queue_messages_are_tagged_and_the_old_shape_is_still_read() {
        let start: serde_json::Value =
            serde_json::from_str(&SubmitChunk::start(&JobId::new("job_1"), ChunkIndex(4))).unwrap();
        assert_eq!(
            start,
            serde_json::json!({"type": "start", "job_id": "job_1", "chunk": 4})
        );
        let erase: serde_json::Value =
            serde_json::from_str(&SubmitChunk::delete(&JobId::new("job_1"))).unwrap();
        assert_eq!(
            erase,
            serde_json::json!({"type": "erase", "job_id": "job_1"})
        );
        for (old, action) in [
            (r#"{"job_id":"job_1","chunk":4}"#, SubmitAction::Start),
            (
                r#"{"job_id":"job_1","chunk":4,"action":"confirm_check"}"#,
                SubmitAction::ConfirmCheck,
            ),
        ] {
            let m: SubmitChunk = serde_json::from_str(old).unwrap();
            assert_eq!(
                (m.job_id.as_str(), m.chunk, m.action),
                ("job_1", ChunkIndex(4), action)
            );
        }
        let check = SubmitChunk::message(
            &JobId::new("job_1"),
            ChunkIndex(2),
            SubmitAction::ConfirmCheck,
        );
        let back: SubmitChunk = serde_json::from_str(&check).unwrap();
        assert_eq!(back.action, SubmitAction::ConfirmCheck);
        let old_delete: SubmitChunk =
            serde_json::from_str(r#"{"job_id":"job_1","chunk":0,"action":"delete"}"#).unwrap();
        assert_eq!(old_delete.action, SubmitAction::Delete);
    }

    /// Messages of the release before (no `type`) are read all the same: a deploy with messages
    /// in flight loses none.
    #[test]
    fn messages_of_the_release_before_are_still_read() {
        let env = envelope(Body::inline(b"{}"));
        let old_delivery = serde_json::to_string(&env).unwrap();
        assert!(!old_delivery.contains("\"type\""));
        assert_eq!(
            WebhookMessage::from_json(&old_delivery).unwrap(),
            WebhookMessage::Delivery(env)
        );
        let old_poll = r#"{"poll":{"job_id":"job_1","chunk":2,"due_at_ms":5}}"#;
        assert_eq!(
            PollRequest::from_json(old_poll),
            Some(PollRequest::new(&JobId::new("job_1"), ChunkIndex(2), 5))
        );
        let old_callback = r#"{"callback":{"job_id":"job_1"}}"#;
        assert_eq!(
            CallbackRequest::from_json(old_callback),
            Some(CallbackRequest::new(&JobId::new("job_1"), None))
        );
    }

    #[test]
    fn bodies_round_trip_byte_for_byte() {
        let cases: Vec<Vec<u8>> = vec![
            br#"{"event":"x","id":"1"}"#.to_vec(),
            b"  {\"a\" :\t1}\r\n".to_vec(),
            "{\"name\":\"Zo\u{eb} \u{1F600}\"}".as_bytes().to_vec(),
            vec![0xff, 0xfe, 0x00, 0x01],
            "nul \u{0} inside".as_bytes().to_vec(),
            "\u{FFFE}".as_bytes().to_vec(),
            Vec::new(),
        ];
        for bytes in cases {
            let env = envelope(Body::inline(&bytes));
            let json = env.to_json();
            assert!(json.chars().all(sqs_allows), "SQS-safe: {json:?}");
            let back = Envelope::from_json(&json).unwrap();
            assert_eq!(back, env);
            assert_eq!(back.body.inline_bytes().unwrap().unwrap(), bytes);
        }
    }

    #[test]
    fn text_is_kept_as_text_and_binary_as_base64() {
        assert!(matches!(Body::inline(b"{}"), Body::Text { .. }));
        assert!(matches!(Body::inline(&[0xc3, 0x28]), Body::Base64 { .. }));
        assert!(matches!(
            Body::inline("\u{0}".as_bytes()),
            Body::Text { .. }
        ));
        assert!(matches!(
            Body::inline("\u{FFFF}".as_bytes()),
            Body::Base64 { .. }
        ));
    }
}

/// A poll of one started chunk whose results have not come (the sweeper's message on the webhook
/// queue): bulk-fetch GETs the chunk's results by its provider id and applies them as it would a
/// bulk notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollRequest {
    pub poll: PollTarget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollTarget {
    pub job_id: JobId,
    pub chunk: ChunkIndex,
    /// When the sweeper found it due (ms), for the latency of a recovered result.
    pub due_at_ms: u64,
    /// The chunk's `poll_at` as the sweeper's take left it: the poll is made only while the
    /// chunk still has it, so a second delivery of the same message makes no second GET.
    /// Absent in messages of earlier releases (then not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at_ms: Option<u64>,
}

impl PollRequest {
    pub fn new(job_id: &JobId, chunk: ChunkIndex, due_at_ms: u64) -> PollRequest {
        PollRequest {
            poll: PollTarget {
                job_id: job_id.clone(),
                chunk,
                due_at_ms,
                taken_at_ms: None,
            },
        }
    }

    /// The same poll, made only while the chunk's `poll_at` is `taken_at_ms`.
    pub fn taken_at(mut self, taken_at_ms: u64) -> PollRequest {
        self.poll.taken_at_ms = Some(taken_at_ms);
        self
    }

    /// The webhook queue's message for this poll ([`WebhookMessage::Poll`]).
    pub fn to_json(&self) -> String {
        MessageRef::Poll(&self.poll).to_json()
    }

    /// The poll a queue message carries, if it is one.
    pub fn from_json(s: &str) -> Option<PollRequest> {
        match WebhookMessage::from_json(s).ok()? {
            WebhookMessage::Poll(poll) => Some(PollRequest { poll }),
            _ => None,
        }
    }
}

impl CallbackRequest {
    /// The webhook queue's message for this attempt ([`WebhookMessage::Callback`]).
    pub fn to_json(&self) -> String {
        MessageRef::Callback(&self.callback).to_json()
    }

    /// The callback request a queue message carries, if it is one.
    pub fn from_json(s: &str) -> Option<CallbackRequest> {
        match WebhookMessage::from_json(s).ok()? {
            WebhookMessage::Callback(callback) => Some(CallbackRequest { callback }),
            _ => None,
        }
    }
}

/// The submit queue's message: a chunk to start, or to check on, or a job to erase. On the
/// queue it is one tagged type ([`SubmitMessage`]: `start`, `confirm_check`, `erase`); messages
/// of the release before (`{"job_id", "chunk", "action"?}`, no `type`) are read all the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SubmitRead", into = "SubmitMessage")]
pub struct SubmitChunk {
    pub job_id: JobId,
    pub chunk: ChunkIndex,
    pub action: SubmitAction,
}

/// The submit queue's messages as they travel, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SubmitMessage {
    /// Start the chunk, if it is still pending.
    Start { job_id: JobId, chunk: ChunkIndex },
    /// Check on the chunk's unconfirmed start.
    ConfirmCheck { job_id: JobId, chunk: ChunkIndex },
    /// Erase the job's items, a bounded number per message.
    Erase { job_id: JobId },
}

/// What the submit queue may carry: this release's tagged message, or the release before's.
#[derive(Deserialize)]
#[serde(untagged)]
enum SubmitRead {
    Tagged(SubmitMessage),
    Untagged {
        job_id: JobId,
        chunk: ChunkIndex,
        #[serde(default)]
        action: SubmitAction,
    },
}

impl From<SubmitRead> for SubmitChunk {
    fn from(m: SubmitRead) -> SubmitChunk {
        let (job_id, chunk, action) = match m {
            SubmitRead::Tagged(SubmitMessage::Start { job_id, chunk }) => {
                (job_id, chunk, SubmitAction::Start)
            }
            SubmitRead::Tagged(SubmitMessage::ConfirmCheck { job_id, chunk }) => {
                (job_id, chunk, SubmitAction::ConfirmCheck)
            }
            SubmitRead::Tagged(SubmitMessage::Erase { job_id }) => {
                (job_id, ChunkIndex(0), SubmitAction::Delete)
            }
            SubmitRead::Untagged {
                job_id,
                chunk,
                action,
            } => (job_id, chunk, action),
        };
        SubmitChunk {
            job_id,
            chunk,
            action,
        }
    }
}

impl From<SubmitChunk> for SubmitMessage {
    fn from(m: SubmitChunk) -> SubmitMessage {
        let SubmitChunk {
            job_id,
            chunk,
            action,
        } = m;
        match action {
            SubmitAction::Start => SubmitMessage::Start { job_id, chunk },
            SubmitAction::ConfirmCheck => SubmitMessage::ConfirmCheck { job_id, chunk },
            SubmitAction::Delete => SubmitMessage::Erase { job_id },
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitAction {
    /// Start the chunk (if it is still pending).
    #[default]
    Start,
    /// The chunk's start is unconfirmed: fail it if no webhook adopted it in time, else look
    /// again later.
    ConfirmCheck,
    /// Erase the job's items (`DELETE /jobs/{id}`), a bounded number per message.
    Delete,
}

impl SubmitChunk {
    pub fn start(job_id: &JobId, chunk: ChunkIndex) -> String {
        Self::message(job_id, chunk, SubmitAction::Start)
    }

    pub fn delete(job_id: &JobId) -> String {
        Self::message(job_id, ChunkIndex(0), SubmitAction::Delete)
    }

    pub fn message(job_id: &JobId, chunk: ChunkIndex, action: SubmitAction) -> String {
        serde_json::to_string(&SubmitChunk {
            job_id: job_id.clone(),
            chunk,
            action,
        })
        .expect("serializable")
    }
}
