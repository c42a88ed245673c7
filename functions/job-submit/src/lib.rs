//! job-submit: the jobs API ([`Api`]) and the chunk submitter ([`ChunkSubmitter`]).
//!
//! `POST /jobs` validates, records the job (contacts, chunks, head) and queues one message per
//! chunk, then answers 202: no request waits on a provider. `job-submit-worker` consumes that
//! queue and starts each chunk at the provider's pace (a rate limit shared by every worker,
//! kept in DynamoDB), recording the provider id the moment the provider accepts it.
//!
//! **A start is made at most once.** Providers take no idempotency key, so a start is sent again
//! only when the provider is known not to have taken it (the connection failed before the request
//! was sent, a 429, a documented refusal). Any other failure (a timeout after sending, a 5xx, a
//! 2xx without an id, a worker that died mid-start) leaves the chunk `start_unconfirmed`: its
//! webhook adopts it, and if none comes within `START_CONFIRM_TIMEOUT` its contacts fail with
//! `start_unconfirmed` for the client to decide.

mod api;
mod api_error;
mod deployed;
mod submitter;

pub use api::{
    Affordability, Api, ApiDoc, BALANCE_MAX_AGE, BALANCE_READ_TIMEOUT, BALANCE_WAIT, Balances,
    CreditCheck, Credits, IDEMPOTENCY_LEASE, MAX_RESULTS_PAGE_BYTES, OPENAPI, ROUTES,
    generated_openapi, pages_cover, results_page,
};
pub use api_error::ApiError;
pub use deployed::HttpBalances;
pub use relay_shared::validate;
pub use submitter::{
    ChunkSubmitter, ERASE_PER_MESSAGE, MAX_START_WAIT, START_RESERVE, Submitted, starts_metrics,
};

/// The submit queue's message (in `relay_shared`: the sweeper queues them too).
pub use relay_shared::envelope::{SubmitAction, SubmitChunk};

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod credit_tests;
#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod staged_tests;
#[cfg(test)]
mod waterfall_tests;
#[cfg(test)]
mod worker_tests;
