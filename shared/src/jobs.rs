//! The job model: a job, its chunks (one provider request each), its contacts and their results;
//! how a provider's record becomes a [`ContactResult`] is `records.rs`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Provider;
use crate::ids::{ChunkIndex, ContactIndex, JobId, ProviderId};

mod records;
pub use records::{EnrowFields, from_enrow, from_fullenrich};

/// enrow: email_find, email_verify, phone_find; fullenrich: enrich, reverse_email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Operation {
    EmailFind,
    EmailVerify,
    PhoneFind,
    Enrich,
    ReverseEmail,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn provider(self) -> Provider {
        match self {
            Operation::EmailFind | Operation::EmailVerify | Operation::PhoneFind => Provider::Enrow,
            Operation::Enrich | Operation::ReverseEmail => Provider::Fullenrich,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum JobStatus {
    /// Created with `"staged"`: its contacts come in pages (`POST /jobs/{id}/contacts`) and
    /// nothing starts until `POST /jobs/{id}/start`.
    Draft,
    Accepted,
    Submitting,
    Running,
    Completed,
    PartiallyFailed,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::PartiallyFailed | JobStatus::Failed
        )
    }

    /// The final status once every contact has a result.
    pub fn settled(contacts: u64, failed: u64) -> JobStatus {
        match failed {
            0 => JobStatus::Completed,
            f if f >= contacts => JobStatus::Failed,
            _ => JobStatus::PartiallyFailed,
        }
    }
}

/// Where a chunk is on its way through the provider.
///
/// `pending` → `starting` (one worker holds it and may have sent the start) → `submitted` (the
/// provider's id is recorded) → `completed` | `failed`. A start whose answer was lost leaves the
/// chunk `start_unconfirmed`: it is never sent again on a guess, its webhook adopts it, and
/// `START_CONFIRM_TIMEOUT` after it was marked its contacts fail. A chunk the provider refused as
/// a whole is `split` into two halves (new chunks), recursively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum ChunkStatus {
    Pending,
    Starting,
    StartUnconfirmed,
    Submitted,
    Completed,
    Failed,
    Split,
}

impl ChunkStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The start may have reached the provider, and no provider id is recorded yet: a webhook
    /// that names this chunk's contacts adopts it.
    pub fn awaits_confirmation(self) -> bool {
        matches!(self, ChunkStatus::Starting | ChunkStatus::StartUnconfirmed)
    }

    /// Nothing will happen to this chunk any more (its contacts all have results, or it was
    /// replaced by its halves).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ChunkStatus::Completed | ChunkStatus::Failed | ChunkStatus::Split
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    Found,
    NotFound,
    Valid,
    Invalid,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An error a job or chunk ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobError {
    #[cfg_attr(
        feature = "openapi",
        schema(examples(
            "credits_insufficient",
            "canceled",
            "provider_unauthorized",
            "start_unconfirmed",
            "timed_out",
            "budget_exhausted"
        ))
    )]
    pub code: String,
    pub message: String,
}

/// The reasons a contact or a job fails, as the API shows them.
pub mod reasons {
    /// The provider's account ran out of credits (FullEnrich `CREDITS_INSUFFICIENT` or 402 on a
    /// start, Enrow 402/422).
    pub const CREDITS_INSUFFICIENT: &str = "credits_insufficient";
    /// The provider canceled the enrichment (FullEnrich `CANCELED`).
    pub const CANCELED: &str = "canceled";
    /// The provider refused the relay's API key.
    pub const PROVIDER_UNAUTHORIZED: &str = "provider_unauthorized";
    /// A start whose answer was lost, and no webhook came within `START_CONFIRM_TIMEOUT`.
    pub const START_UNCONFIRMED: &str = "start_unconfirmed";
    /// The provider refused this contact (its chunk was split down to it).
    pub const REJECTED_BY_PROVIDER: &str = "rejected_by_provider";
    /// The provider refused the whole request for a reason that is not about one contact.
    pub const PROVIDER_REJECTED: &str = "provider_rejected";
    /// No result came by the job's deadline (`JOB_DEADLINE_HOURS` after its last chunk started).
    /// A result that comes later replaces it.
    pub const TIMED_OUT: &str = "timed_out";
    /// A poll found that the provider does not know the chunk's id (FullEnrich 404, Enrow
    /// "Could not retrieve"): no result will come for it.
    pub const PROVIDER_LOST: &str = "provider_lost";
    /// The chunk's worst case did not fit in what was left of the job's `max_credits`: it was
    /// never started.
    pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";
}

impl JobError {
    pub fn new(code: &str, message: impl Into<String>) -> JobError {
        JobError {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// Whether this error means no further chunk of the job may be started: more starts would
    /// fail the same way or spend what the account no longer has.
    pub fn stops_submission(&self) -> bool {
        [
            reasons::CREDITS_INSUFFICIENT,
            reasons::CANCELED,
            reasons::PROVIDER_UNAUTHORIZED,
        ]
        .contains(&self.code.as_str())
    }
}

/// The job's head item.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMeta {
    pub job_id: JobId,
    pub provider: Provider,
    pub operation: Operation,
    pub name: Option<String>,
    pub status: JobStatus,
    pub contacts: u64,
    /// Contacts per chunk (the last chunk may hold fewer).
    pub chunk_size: u64,
    pub chunks: u64,
    /// The next free chunk index (chunks split in halves take new indices from here).
    pub chunk_seq: u64,
    pub done: u64,
    pub found: u64,
    pub not_found: u64,
    pub failed: u64,
    pub duplicates: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub error: Option<JobError>,
    /// Operation options as the caller sent them (e.g. `enrich_fields`).
    pub options: Value,
    /// The caller asked for the job to be erased (`DELETE /jobs/{id}`): it reads as gone, starts
    /// nothing more, and its deliveries are dropped; its items are being deleted (the head stays
    /// as a tombstone without contact data until its retention ends).
    pub deleted: bool,
    /// A deleted job's erasure is done: only its tombstone is left.
    pub erased: bool,
    /// Its head is written and the rest of it may not be (`POST /jobs` still writing its
    /// contacts and chunks, or died doing so): it starts nothing and is not listed, a retry with
    /// its `Idempotency-Key` writes it again, and `DELETE` or, past [`CREATION_GRACE`], the
    /// sweeper erases it.
    ///
    /// [`CREATION_GRACE`]: crate::store::CREATION_GRACE
    pub creating: bool,
    /// Where `job.completed` is POSTed when the job ends (`callback_url` on `POST /jobs`).
    pub callback_url: Option<String>,
    /// That callback's delivery, once the job ended.
    pub callback: Option<CallbackState>,
    /// The job this one retries (`POST /jobs/{id}/retry`): its failed contacts, again.
    pub retry_of: Option<JobId>,
    /// `max_credits` on `POST /jobs`: what its chunks' starts may reserve ([`crate::budget`]).
    pub budget: Option<crate::budget::Budget>,
    /// A waterfall job's plan: its steps (each a job of its own) ([`crate::waterfall`]).
    pub waterfall: Option<crate::waterfall::Waterfall>,
    /// A step's job: the waterfall it is a step of, and where.
    pub step_of: Option<crate::waterfall::StepOf>,
    /// A later step's job while the step before it runs: more contacts may come, it cannot
    /// settle.
    pub open: bool,
    /// A step whose chunks pass contacts on to later steps: it settles only once each of its
    /// final chunks has ([`Chunk::passed`]).
    pub passes_on: bool,
    /// Of this step's results, those passed on to a later step (the waterfall counts them
    /// where they settle): `not_found` (or invalid) and `failed`.
    pub passed_on: PassedOn,
}

/// Of a step's results, how many went on to a later step ([`JobMeta::passed_on`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassedOn {
    pub not_found: u64,
    pub failed: u64,
}

/// Where a job's completion callback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum CallbackStatus {
    /// The job ended; the callback is due, or waits for its next attempt.
    Pending,
    /// An attempt got a 2xx.
    Delivered,
    /// No attempt got a 2xx within the retry window: given up.
    Failed,
}

impl CallbackStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A completion callback's delivery, as `GET /jobs/{id}` shows it (`callback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackState {
    pub status: CallbackStatus,
    /// Attempts made (begun) so far.
    pub attempts: u32,
    /// The HTTP status of the last answered attempt.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed without an HTTP status (timeout, connection refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next attempt is due (ms), while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
    /// When the job ended and the callback first became due (ms): retries stop a window after.
    #[serde(skip)]
    pub since_ms: u64,
}

/// The status the API shows for a canceled job once it has ended without every contact found or
/// not found: canceled by the client (`POST /jobs/{id}/cancel`: its chunks not started were
/// never started) or at the provider (FullEnrich `CANCELED`); `error.message` says which. A
/// cancel that came too late to stop anything leaves the job `completed`.
pub const CANCELED_STATUS: &str = "canceled";

impl JobMeta {
    /// How long this job may wait for its results: its own `options.deadline_hours`, else
    /// `default` (`JOB_DEADLINE_HOURS`).
    pub fn deadline(&self, default: std::time::Duration) -> std::time::Duration {
        self.options
            .get("deadline_hours")
            .and_then(Value::as_u64)
            .map_or(default, |h| std::time::Duration::from_secs(h * 3600))
    }

    /// The job's status as the API, the CLI and callbacks show it: [`JobStatus`], except that an
    /// ended job that was canceled is [`CANCELED_STATUS`] (stored as `partially_failed` or
    /// `failed` with the error `canceled`).
    pub fn shown_status(&self) -> &'static str {
        match (&self.error, self.status) {
            (Some(e), JobStatus::PartiallyFailed | JobStatus::Failed)
                if e.code == reasons::CANCELED =>
            {
                CANCELED_STATUS
            }
            (_, s) => s.as_str(),
        }
    }

    /// The job as `GET /jobs` lists it and `job.completed` reports it: its fields and figures,
    /// no contact data (`GET /jobs/{id}` adds credits, chunks and the callback's state).
    pub fn summary_json(&self) -> Value {
        serde_json::json!({
            "job_id": self.job_id,
            "provider": self.provider.as_str(),
            "operation": self.operation.as_str(),
            "name": self.name,
            "status": self.shown_status(),
            "contacts": self.contacts,
            "done": self.done,
            "found": self.found,
            "not_found": self.not_found,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "created_at": self.created_at_ms,
            "updated_at": self.updated_at_ms,
            "error": self.error,
            "retry_of": self.retry_of,
        })
    }

    /// A new job's head: nothing counted yet.
    pub fn new(
        job_id: JobId,
        operation: Operation,
        name: Option<String>,
        status: JobStatus,
        contacts: u64,
        chunk_size: u64,
        options: Value,
    ) -> JobMeta {
        let now = crate::now_ms();
        let chunks = contacts.div_ceil(chunk_size.max(1));
        JobMeta {
            job_id,
            provider: operation.provider(),
            operation,
            name,
            status,
            contacts,
            chunk_size,
            chunks,
            chunk_seq: chunks,
            done: 0,
            found: 0,
            not_found: 0,
            failed: 0,
            duplicates: 0,
            created_at_ms: now,
            updated_at_ms: now,
            error: None,
            options,
            deleted: false,
            erased: false,
            creating: false,
            callback_url: None,
            callback: None,
            retry_of: None,
            budget: None,
            waterfall: None,
            step_of: None,
            open: false,
            passes_on: false,
            passed_on: PassedOn::default(),
        }
    }
}

/// One provider request: contacts `offset .. offset + count`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub index: ChunkIndex,
    pub offset: u64,
    pub count: u64,
    pub provider_id: Option<ProviderId>,
    pub status: ChunkStatus,
    pub credits: Option<f64>,
    pub error: Option<JobError>,
    /// When the chunk was marked `start_unconfirmed` (ms).
    pub unconfirmed_at_ms: Option<u64>,
    /// A `split` chunk's halves (chunk indices).
    pub parts: Vec<ChunkIndex>,
    /// A started chunk waiting for its results: the interval of its fallback polls (ms), which
    /// doubles each time a poll finds them not ready. `None` once the chunk is final.
    pub poll_every_ms: Option<u64>,
    /// When the provider's id was recorded (ms): the start of the wait for its results, from
    /// which the job's deadline counts.
    pub started_at_ms: Option<u64>,
    /// What its start reserved from the job's budget, if the job has one.
    pub reservation: Option<crate::budget::Reservation>,
    /// A waterfall step's final chunk whose contacts are all where they go next.
    pub passed: bool,
}

impl Chunk {
    /// `contacts` split into pending chunks of `size` (the last one may hold fewer).
    pub fn plan(contacts: u64, size: u64) -> Vec<Chunk> {
        Self::plan_range(0, contacts, size, 0)
    }

    /// Contacts `offset .. offset + count` in pending chunks of `size`, numbered from `first`.
    pub fn plan_range(offset: u64, count: u64, size: u64, first: u32) -> Vec<Chunk> {
        let size = size.max(1);
        (0..count.div_ceil(size))
            .map(|i| Chunk {
                index: ChunkIndex(first) + i as u32,
                offset: offset + i * size,
                count: size.min(count - i * size),
                provider_id: None,
                status: ChunkStatus::Pending,
                credits: None,
                error: None,
                unconfirmed_at_ms: None,
                parts: Vec::new(),
                poll_every_ms: None,
                started_at_ms: None,
                reservation: None,
                passed: false,
            })
            .collect()
    }

    /// Whether contact `index` is one of this chunk's.
    pub fn holds(&self, index: ContactIndex) -> bool {
        (self.offset..self.offset + self.count).contains(&index.0)
    }
}

/// A contact as the caller submitted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub index: ContactIndex,
    /// The operation's fields (`email`, `fullname`, `linkedin_url`, …).
    pub fields: Map<String, Value>,
    /// The caller's `custom`, exactly as sent.
    pub custom: Option<Value>,
    /// A later waterfall step's contact: the waterfall's contact it is, and its attempts so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::waterfall::Origin>,
}

impl Contact {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }
}

/// One contact's result, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Result))]
pub struct ContactResult {
    /// The contact's position in the job.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub index: ContactIndex,
    /// As the contact sent it.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub custom: Option<Value>,
    pub outcome: Outcome,
    pub email: Option<String>,
    pub email_status: Option<String>,
    pub phone: Option<String>,
    /// Why it failed, e.g. timed_out, canceled, credits_insufficient.
    pub reason: Option<String>,
    /// Written from a per-contact webhook (FullEnrich `contact_finished`): the chunk's final
    /// result set (batch webhook or GET) replaces it, moving the counters exactly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// The provider's record as sent (include=raw).
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub raw: Value,
    /// A waterfall's row: the step that settled it, every step's account, the verification.
    #[serde(flatten)]
    pub waterfall: Option<crate::waterfall::Settled>,
}

impl ContactResult {
    /// The placeholder of a contact whose result did not come by the job's deadline:
    /// provisional, so a late result replaces it (a late result beats none).
    pub fn timed_out(contact: &Contact) -> ContactResult {
        ContactResult {
            provisional: true,
            ..ContactResult::failed(contact, reasons::TIMED_OUT)
        }
    }

    /// Whether this result takes the place of `existing`, the row stored for the same contact:
    /// a final result replaces a provisional one, and any result replaces a deadline's
    /// placeholder. A final row is never replaced, nor anything by a placeholder.
    ///
    /// Results stand: a failure (an outcome the relay inferred, or a provider's account of a
    /// contact it could not finish) replaces only a placeholder, never a result a per-contact
    /// webhook stored.
    pub fn replaces(&self, existing: &ContactResult) -> bool {
        if !existing.provisional || self.is_timed_out() {
            return false;
        }
        if existing.is_timed_out() {
            return true;
        }
        !self.provisional && self.outcome != Outcome::Failed
    }

    fn is_timed_out(&self) -> bool {
        self.outcome == Outcome::Failed && self.reason.as_deref() == Some(reasons::TIMED_OUT)
    }

    pub fn failed(contact: &Contact, reason: &str) -> ContactResult {
        ContactResult {
            index: contact.index,
            custom: contact.custom.clone(),
            outcome: Outcome::Failed,
            email: None,
            email_status: None,
            phone: None,
            reason: Some(reason.to_string()),
            provisional: false,
            raw: Value::Null,
            waterfall: None,
        }
    }
}

/// The record key the relay adds to FullEnrich `custom` (and sends as Enrow `custom`): the
/// contact's index in the job. Removed before results are served.
pub const RECORD_KEY: &str = "rid";

#[cfg(test)]
mod string_form_tests {
    use super::*;
    use crate::providers::Hook;
    use strum::VariantArray;

    /// Every enum's string form (strum: `as_str`, `FromStr`, `Display`) is its serde form, the
    /// one stored in items, shown by the API and written in URLs.
    fn agree<T>()
    where
        T: VariantArray
            + Copy
            + Serialize
            + serde::de::DeserializeOwned
            + PartialEq
            + std::fmt::Debug,
        T: Into<&'static str>,
    {
        for v in T::VARIANTS {
            let text: &'static str = (*v).into();
            assert_eq!(serde_json::to_value(v).unwrap(), Value::from(text), "{v:?}");
            let back: T = serde_json::from_value(Value::from(text)).unwrap();
            assert_eq!(back, *v);
        }
    }

    #[test]
    fn a_canceled_job_shows_canceled_once_it_ended_short() {
        let mut meta = JobMeta::new(
            "job_x".into(),
            Operation::Enrich,
            None,
            JobStatus::Running,
            300,
            100,
            Value::Null,
        );
        meta.error = Some(JobError::new(reasons::CANCELED, "by the client"));
        assert_eq!(meta.summary_json()["status"], "running", "not ended yet");
        for (stored, shown) in [
            (JobStatus::PartiallyFailed, "canceled"),
            (JobStatus::Failed, "canceled"),
            (JobStatus::Completed, "completed"),
        ] {
            meta.status = stored;
            assert_eq!(meta.summary_json()["status"], shown, "{stored}");
        }
        meta.status = JobStatus::PartiallyFailed;
        meta.error = Some(JobError::new(reasons::TIMED_OUT, "deadline"));
        assert_eq!(meta.summary_json()["status"], "partially_failed");
    }

    #[test]
    fn serde_and_strum_name_every_variant_alike() {
        agree::<Operation>();
        agree::<JobStatus>();
        agree::<ChunkStatus>();
        agree::<Outcome>();
        agree::<CallbackStatus>();
        agree::<Provider>();
        agree::<Hook>();
        assert_eq!("partially_failed".parse(), Ok(JobStatus::PartiallyFailed));
        assert_eq!(Provider::Fullenrich.to_string(), "fullenrich");
        assert!(
            "Completed".parse::<JobStatus>().is_err(),
            "case matters, as in serde"
        );
    }
}
