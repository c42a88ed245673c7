//! The shapes of the API's JSON that no one type serializes, as OpenAPI schemas: the requests
//! (`relay_shared::validate` reads them field by field, naming the field at fault), the job's
//! summary (`JobMeta::summary_json`, shared with `job.completed`), its callback
//! (`callback::callback_json`), the pages and the error body (`error_json`). They are never
//! built, only described; `tests/it/openapi.rs` holds each to the bodies the API answers, and
//! `openapi.rs`'s tests their bounds to the code's.
#![allow(dead_code)]

use relay_shared::Provider;
use relay_shared::jobs::{
    CANCELED_STATUS, CallbackStatus, ContactResult, JobError, JobStatus, Operation,
};
use strum::VariantArray;
use utoipa::openapi::{Object, ObjectBuilder, Type};
use utoipa::{ToResponse, ToSchema};

use super::bodies::{ChunkRow, OrphanRow};

/// A string schema that takes only `values`.
pub(crate) fn one_of_strings<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().map(str::to_string)))
        .build()
}

/// A job as the API shows it: its fields and figures, never contact data.
#[derive(ToSchema)]
pub(crate) struct JobSummary {
    job_id: String,
    provider: Provider,
    operation: Operation,
    #[schema(required = true)]
    name: Option<String>,
    #[schema(schema_with = shown_status)]
    status: String,
    contacts: u64,
    /// Contacts with a result (found, not found or failed).
    done: u64,
    found: u64,
    not_found: u64,
    failed: u64,
    /// Duplicate webhook deliveries dropped.
    duplicates: u64,
    /// Unix time, ms.
    created_at: u64,
    /// Unix time, ms.
    updated_at: u64,
    #[schema(required = true)]
    error: Option<JobError>,
    /// The job this one retries (`POST /jobs/{id}/retry`); null on a job that retries none.
    #[schema(required = true)]
    retry_of: Option<String>,
}

/// A job's status as shown (`JobMeta::shown_status`): its stored status, or `canceled`.
fn shown_status() -> Object {
    let stored = JobStatus::VARIANTS.iter().map(|s| s.as_str());
    one_of_strings(stored.chain([CANCELED_STATUS]))
}

/// A job (`GET /jobs/{id}`): its summary, the credits its chunks used, its chunks and its
/// callback.
#[derive(ToSchema)]
#[schema(as = Job)]
pub(crate) struct JobDoc {
    #[serde(flatten)]
    summary: JobSummary,
    credits_used: f64,
    #[schema(inline)]
    credits: CreditsDoc,
    #[schema(inline)]
    chunks: Vec<ChunkRow<'static>>,
    #[schema(required = true)]
    callback: Option<CallbackStateDoc>,
    /// A waterfall's steps, in order (absent on a one-step job).
    #[schema(inline, required = false)]
    steps: Vec<StepView>,
    /// A waterfall's found contacts over its contacts (absent on a one-step job).
    #[schema(required = false)]
    found_rate: f64,
}

/// The job's credits: its budget (max_credits; null without one) and what is left of it, the
/// credits reserved by started chunks whose cost is not reported yet, and those spent (reported
/// by the provider), also by provider.
#[derive(ToSchema)]
#[schema(as = Credits)]
pub(crate) struct CreditsDoc {
    #[schema(required = true)]
    budget: Option<f64>,
    #[schema(required = true)]
    left: Option<f64>,
    reserved: f64,
    spent: f64,
    by_provider: std::collections::BTreeMap<String, ProviderCredits>,
}

/// One provider's share of a job's credits.
#[derive(ToSchema)]
pub(crate) struct ProviderCredits {
    reserved: f64,
    spent: f64,
}

/// The completion callback's delivery; null when the job has no callback_url.
#[derive(ToSchema)]
#[schema(as = CallbackState)]
pub(crate) struct CallbackStateDoc {
    url: String,
    /// [`CALLBACK_STATUS`].
    #[schema(schema_with = callback_status)]
    status: String,
    attempts: u32,
    /// The receiver's HTTP status at the last answered attempt.
    #[schema(required = true)]
    last_status_code: Option<u16>,
    /// Why the last attempt got no answer (timed out, could not connect).
    #[schema(required = false)]
    last_error: String,
    /// Unix time, ms, while pending.
    #[schema(required = false)]
    next_attempt_at: u64,
}

const CALLBACK_STATUS: &str = "waiting: the job has not ended; pending: due, or waiting for its \
    next attempt; delivered: an attempt got a 2xx; failed: no 2xx within 24 h of the job's end.";

/// `waiting` (the job has not ended: `callback_json`), then [`CallbackStatus`].
fn callback_status() -> Object {
    let stored = CallbackStatus::VARIANTS.iter().map(|s| s.as_str());
    let mut status = one_of_strings(["waiting"].into_iter().chain(stored));
    status.description = Some(CALLBACK_STATUS.into());
    status
}

/// A page of jobs, newest first.
#[derive(ToSchema)]
pub(crate) struct JobsPage {
    jobs: Vec<JobSummary>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A page of orphans, newest first.
#[derive(ToSchema)]
pub(crate) struct OrphansPage {
    orphans: Vec<OrphanRow<'static>>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A page of results, in contact order.
#[derive(ToSchema)]
#[schema(as = ResultsPage)]
pub(crate) struct ResultsPageDoc {
    results: Vec<ContactResult>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// One Result per line.
#[derive(ToSchema)]
pub(crate) struct ResultsNdjson(String);

/// UTF-8, CRLF, no byte-order mark: index, the custom keys, then relay_outcome, relay_email,
/// relay_email_status (deliverable, risky, undeliverable or unknown, for both providers),
/// relay_email_status_raw (the provider's word), relay_phone, relay_emails and relay_phones
/// (every value the provider gave, ;-separated), relay_reason, relay_provider (a waterfall's:
/// the step that settled the row), relay_domain_sent, relay_operation, relay_verification (a
/// waterfall's verify: valid or invalid) and relay_attempts (a waterfall's steps, each
/// "provider operation: outcome (reason)", ;-separated). Cells starting with =, +, -, @, tab or CR get a leading ' (OWASP CSV
/// injection advice; a number or phone number such as +1 415 555 0100 is left as it is). The
/// same writer as the relay CLI's results files.
#[derive(ToSchema)]
pub(crate) struct ResultsCsv(String);

// `include`'s one value (read by `read.rs`' `include_raw`).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum Include {
    Raw,
}

/// An error body: `{"error": {"code", "message", "field"?}}`.
#[derive(ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    #[schema(inline)]
    error: ErrorDetail,
}

#[derive(ToSchema)]
struct ErrorDetail {
    code: String,
    message: String,
    /// Path of the field at fault, e.g. contacts[3].email.
    #[schema(required = false)]
    field: String,
}

/// An error: the code, a message naming the rule, the field when one is at fault.
#[derive(ToResponse)]
pub(crate) struct Error(ErrorBody);

/// The error answers a route may give, each the [`Error`] response under its status.
pub(crate) mod errors {
    use utoipa::IntoResponses;

    use super::Error;

    #[derive(IntoResponses)]
    #[response(status = 400)]
    pub(crate) struct BadRequest(#[ref_response] Error);

    #[derive(IntoResponses)]
    #[response(status = 401)]
    pub(crate) struct Unauthorized(#[ref_response] Error);

    #[derive(IntoResponses)]
    #[response(status = 404)]
    pub(crate) struct NotFound(#[ref_response] Error);

    #[derive(IntoResponses)]
    #[response(status = 409)]
    pub(crate) struct Conflict(#[ref_response] Error);

    #[derive(IntoResponses)]
    #[response(status = 422)]
    pub(crate) struct Unprocessable(#[ref_response] Error);

    #[derive(IntoResponses)]
    #[response(status = 503)]
    pub(crate) struct Unavailable(#[ref_response] Error);
}

/// One waterfall step.
#[derive(ToSchema)]
pub(crate) struct StepDoc {
    provider: Provider,
    operation: Operation,
    #[schema(inline)]
    options: Option<Options>,
}

/// A waterfall's verify step.
#[derive(ToSchema)]
pub(crate) struct VerifyDoc {
    /// enrow
    provider: Provider,
    /// email_verify
    operation: Operation,
    /// Whose found emails are checked (default found: every step's).
    #[schema(schema_with = verify_when)]
    when: Option<String>,
}

fn verify_when() -> Object {
    one_of_strings(["found", "found_by_enrow", "found_by_fullenrich"])
}

/// A waterfall's step as `GET /jobs/{id}` shows it: its own job's figures and chunks.
#[derive(ToSchema)]
pub(crate) struct StepView {
    position: u32,
    /// find, or verify
    kind: String,
    /// The step's own job (GET /jobs/{id} shows it alone).
    job_id: String,
    provider: Provider,
    operation: Operation,
    status: String,
    /// Contacts that entered the step.
    contacts: u64,
    done: u64,
    found: u64,
    not_found: u64,
    failed: u64,
    /// Of them, passed on to a later step.
    passed_on: u64,
    /// Of them, settled here (null for verify).
    #[schema(required = true)]
    settled: Option<u64>,
    found_rate: f64,
    #[schema(inline)]
    credits: ProviderCredits,
    #[schema(required = true)]
    error: Option<JobError>,
    #[schema(inline)]
    chunks: Vec<ChunkRow<'static>>,
}

/// A new job (`POST /jobs`): with its contacts, or `staged` (its contacts in pages).
#[derive(ToSchema)]
#[schema(as = NewJob)]
pub(crate) struct NewJobDoc {
    /// A one-step job's provider (absent when the job names steps).
    #[schema(required = false)]
    provider: Provider,
    /// A one-step job's operation (absent when the job names steps).
    #[schema(required = false)]
    operation: Operation,
    /// A waterfall instead of one provider: each step in turn takes the contacts the steps
    /// before did not settle (not found, invalid, or failed for a reason another provider could
    /// change), as its own chunks started as soon as the step before settled them. Every
    /// contact must meet the first step's need; a later step it lacks a field for, it skips
    /// (its row's attempts say so).
    #[schema(inline, min_items = 1, max_items = 4)]
    steps: Option<Vec<StepDoc>>,
    /// A check of the emails the steps found (Enrow email_verify): `when` names whose.
    #[schema(inline)]
    verify: Option<VerifyDoc>,
    /// A waterfall contact whose next step's worst case would take its credits over this skips
    /// the step (attempt reason contact_budget_exhausted).
    #[schema(exclusive_minimum = 0)]
    max_credits_per_contact: Option<f64>,
    #[schema(max_length = 200)]
    name: Option<String>,
    #[schema(inline)]
    options: Option<Options>,
    /// The job's contacts. A staged job has none here (absent or []): they come in pages.
    #[schema(required = false, min_items = 1, max_items = 50000)]
    contacts: Vec<ContactDoc>,
    /// Where the relay POSTs a job.completed event when the job ends (see webhooks). https to a
    /// public host; no credentials in the URL; private, loopback and link-local addresses are
    /// refused. Signed the Standard Webhooks way; retried with exponential backoff for 24 h
    /// until a 2xx.
    #[schema(format = "uri", max_length = 2048)]
    callback_url: Option<String>,
    /// The job's credit budget. Before a chunk starts, its worst case (its contacts x the
    /// operation's worst case per contact: FullEnrich enrich 1 per work email, 3 per personal
    /// email, 10 per phone asked for in enrich_fields; reverse_email 1; Enrow email_find 1,
    /// email_verify 0.25, phone_find 50) is reserved from it; a chunk that does not fit is never
    /// started and its contacts end failed with reason budget_exhausted. When the provider
    /// reports the chunk's real cost, the rest goes back to the budget.
    #[schema(exclusive_minimum = 0)]
    max_credits: Option<f64>,
    /// Validate and price the job, write nothing, start nothing: 200 with the worst-case
    /// estimate and the provider account's balance (when this deployment can read it).
    dry_run: Option<bool>,
    #[schema(inline)]
    staged: Option<Staged>,
}

/// A job's worst case, or an account's balance, in a provider's credits.
#[derive(ToSchema)]
pub(crate) struct ProviderFigure {
    provider: Provider,
    credits: f64,
}

/// `POST /jobs` with `dry_run`: what the job would cost at worst, and what the account has.
#[derive(ToSchema)]
pub(crate) struct DryRun {
    dry_run: bool,
    contacts: u64,
    /// The first step's worst case (the one checked against the balance).
    estimate: ProviderFigure,
    /// Null when this deployment cannot read the account's balance.
    #[schema(required = true)]
    balance: Option<ProviderFigure>,
    /// A waterfall's worst case per step, as if every contact reached every step (absent on a
    /// one-step job).
    #[schema(required = false)]
    steps: Vec<ProviderFigure>,
}

/// A job whose worst case exceeds its provider account's balance: the error (code
/// credits_insufficient, field contacts), the estimate and the balance. Nothing was written.
#[derive(ToSchema)]
pub(crate) struct Unaffordable {
    #[schema(inline)]
    error: ErrorDetailShape,
    estimate: ProviderFigure,
    balance: ProviderFigure,
}

/// The error part of a 402.
#[derive(ToSchema)]
pub(crate) struct ErrorDetailShape {
    code: String,
    message: String,
    field: Option<String>,
}

/// `POST /jobs/{id}/retry`'s body (it may be empty).
#[derive(ToSchema)]
pub(crate) struct RetryRequest {
    /// Also retry the contacts that ended start_unconfirmed: their start may have been billed
    /// once already (default false).
    include_unconfirmed: Option<bool>,
}

/// The options an operation takes.
#[derive(ToSchema)]
pub(crate) struct Options {
    /// fullenrich enrich.
    #[schema(required = false, min_items = 1, inline)]
    enrich_fields: Vec<EnrichField>,
    /// enrow email_find, phone_find.
    #[schema(required = false, pattern = "^[A-Za-z]{2}$")]
    country_code: String,
    /// enrow email_find, phone_find.
    #[schema(required = false)]
    retrieve_gender: bool,
    /// Hours after the last chunk started before open contacts end timed_out (default
    /// JOB_DEADLINE_HOURS, 24).
    #[schema(required = false, minimum = 1, maximum = 720)]
    deadline_hours: u32,
}

/// What FullEnrich looks for.
#[derive(ToSchema)]
pub(crate) enum EnrichField {
    #[schema(rename = "contact.work_emails")]
    WorkEmails,
    #[schema(rename = "contact.personal_emails")]
    PersonalEmails,
    #[schema(rename = "contact.phones")]
    Phones,
}

/// A job too large for one request (a Lambda request body is at most 6 MB): created as a draft
/// that starts nothing; its contacts come in pages (POST /jobs/{id}/contacts), then POST
/// /jobs/{id}/start starts it. A draft not started within an hour of its creation is erased.
/// relay submit does this by itself for a body over 4 MB.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Staged {
    /// How many contacts the pages will hold.
    #[schema(minimum = 1, maximum = 50000)]
    contacts: u32,
    /// Any string identifying the contacts (relay submit sends their SHA-256): with an
    /// Idempotency-Key, the same key for other contacts is refused (422) as on a single POST
    /// /jobs.
    #[schema(required = false, max_length = 128)]
    digest: String,
}

/// The fields the operation reads (others are ignored), and custom, returned with the result.
/// Each operation derives what it needs from what is there: Enrow email_find makes fullname
/// from first_name + last_name, FullEnrich enrich and Enrow phone_find split a fullname into
/// first_name + last_name when both are missing, and domain and company_domain stand in for
/// each other. A domain field may be a website URL or a www. host: it is reduced to its
/// registrable domain by the Public Suffix List (https://www.acme.com/about is sent as
/// acme.com).
#[derive(ToSchema)]
#[schema(as = Contact)]
pub(crate) struct ContactDoc {
    #[schema(required = false)]
    fullname: String,
    #[schema(required = false)]
    company_domain: String,
    #[schema(required = false)]
    company_name: String,
    #[schema(required = false)]
    email: String,
    #[schema(required = false)]
    linkedin_url: String,
    #[schema(required = false)]
    first_name: String,
    #[schema(required = false)]
    last_name: String,
    #[schema(required = false)]
    domain: String,
    /// At most 2 KB; FullEnrich: at most 9 keys, string values of at most 100 UTF-16 units.
    #[schema(required = false, value_type = Object)]
    custom: (),
}

/// A page of a staged job's contacts (`POST /jobs/{id}/contacts`).
#[derive(ToSchema)]
pub(crate) struct ContactsPage {
    /// The index in the job of the page's first contact (0 for the first page). Pages must
    /// follow each other without overlapping.
    #[schema(minimum = 0)]
    offset: u64,
    #[schema(min_items = 1)]
    contacts: Vec<ContactDoc>,
}

/// `job.completed`: a job ended.
#[derive(ToSchema)]
pub(crate) struct JobCompleted {
    #[schema(schema_with = job_completed)]
    r#type: String,
    #[schema(format = DateTime)]
    timestamp: String,
    data: JobSummary,
}

fn job_completed() -> Object {
    one_of_strings(["job.completed"])
}
