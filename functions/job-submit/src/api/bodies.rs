//! The bodies the handlers answer with, as types: each is serialized as its OpenAPI schema
//! (`utoipa::ToSchema`) describes it. The bodies assembled elsewhere (a job's summary, its
//! callback, errors) and the requests are described in `schema.rs`.

use relay_shared::Provider;
use relay_shared::jobs::{Chunk, ChunkStatus, JobError, JobMeta};
use relay_shared::store::Orphan;
use serde::Serialize;
use utoipa::ToSchema;

/// A job taken: `POST /jobs`, `POST /jobs/{id}/start` (and a request sent again under its
/// `Idempotency-Key`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Accepted<'a> {
    job_id: &'a str,
    /// accepted; draft for a staged job until its start.
    status: &'static str,
    contacts: u64,
    chunks: u64,
    /// The job this one retries (`POST /jobs/{id}/retry`); null otherwise.
    #[schema(required = true)]
    retry_of: Option<&'a str>,
}

impl<'a> From<&'a JobMeta> for Accepted<'a> {
    fn from(meta: &'a JobMeta) -> Self {
        Accepted {
            job_id: &meta.job_id,
            status: meta.status.as_str(),
            contacts: meta.contacts,
            chunks: meta.chunks,
            retry_of: meta.retry_of.as_deref(),
        }
    }
}

/// A retry taken (`POST /jobs/{id}/retry`): the new job, and which contacts of the first it
/// took.
#[derive(Serialize, ToSchema)]
pub(crate) struct Retried<'a> {
    #[serde(flatten)]
    pub(crate) job: Accepted<'a>,
    /// Contacts of the first job the new one retries.
    pub(crate) retried: usize,
    /// Contacts of the first job that ended start_unconfirmed (their start may have been
    /// billed).
    pub(crate) unconfirmed: u64,
    /// Whether those are in the new job (include_unconfirmed).
    pub(crate) unconfirmed_included: bool,
}

/// One of a job's chunks (one provider request each), as `GET /jobs/{id}` lists them.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChunkRow<'a> {
    index: u32,
    #[schema(required = true)]
    provider_id: Option<&'a str>,
    status: ChunkStatus,
    contacts: u64,
    #[schema(required = true)]
    credits: Option<f64>,
    #[schema(required = true)]
    error: Option<&'a JobError>,
}

impl<'a> From<&'a Chunk> for ChunkRow<'a> {
    fn from(c: &'a Chunk) -> Self {
        ChunkRow {
            index: c.index.get(),
            provider_id: c.provider_id.as_deref(),
            status: c.status,
            contacts: c.count,
            credits: c.credits,
            error: c.error.as_ref(),
        }
    }
}

/// An event of Enrow's global webhook whose search no chunk knows: its id, event, cost and
/// when it came (never the event's body: no contact data).
#[derive(Serialize, ToSchema)]
#[schema(as = Orphan)]
pub(crate) struct OrphanRow<'a> {
    provider: Provider,
    /// The provider's id of the search (Enrow id).
    provider_id: &'a str,
    /// The event's name, e.g. single_search_finished.
    event: &'a str,
    /// Unix time, ms.
    received_at: u64,
    /// What the event says the search cost (Enrow credits.cost).
    #[schema(required = true)]
    credits: Option<f64>,
}

impl<'a> From<&'a Orphan> for OrphanRow<'a> {
    fn from(o: &'a Orphan) -> Self {
        OrphanRow {
            provider: o.provider,
            provider_id: &o.provider_id,
            event: &o.event,
            received_at: o.received_at_ms,
            credits: o.credits,
        }
    }
}

/// A page of a staged job's contacts taken (`POST /jobs/{id}/contacts`).
#[derive(Serialize, ToSchema)]
pub(crate) struct PageAccepted<'a> {
    pub job_id: &'a str,
    pub offset: u64,
    /// Contacts in the page.
    pub contacts: u64,
    /// false: the same page was in already (nothing written).
    pub written: bool,
}

/// A job being erased (`DELETE /jobs/{id}`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Deleting<'a> {
    pub job_id: &'a str,
    #[schema(schema_with = deleting)]
    pub status: &'static str,
}

impl<'a> Deleting<'a> {
    pub fn new(job_id: &'a str) -> Self {
        Deleting {
            job_id,
            status: "deleting",
        }
    }
}

fn deleting() -> utoipa::openapi::Object {
    crate::api::schema::one_of_strings(["deleting"])
}
