//! Each provider's arm of applying an event, and the one parser of the record key the relay sends
//! as `custom`.

mod enrow;
mod fullenrich;

use relay_shared::jobs::{JobMeta, RECORD_KEY};
use relay_shared::providers::client::FetchError;
use relay_shared::store::Stored;
use serde_json::Value;

use crate::{Action, Deps, Failure, FetchWorker};
use relay_shared::ContactIndex;

/// What an arm did with its event, short of a failure.
#[derive(Debug)]
pub(crate) enum Arm {
    /// Its results written (perhaps none new).
    Stored(Stored),
    /// Nothing written: its results are not ready (the reason), to be asked for again later.
    Later(String),
    /// Nothing written, nothing fetched, for this reason: an id its body cannot vouch for that
    /// no chunk of the job can have.
    Dropped(String),
}

/// Why an id is dropped that no chunk of the job awaits.
pub(crate) const NOT_OURS: &str = "provider id belongs to no chunk of this job";

/// A GET the provider answered "no such id": for an id no chunk was linked to (a candidate
/// fetched on an unsigned body's word) the delivery is dropped and counted, never parked with
/// its body; for a linked one it stays the failure it is.
pub(crate) fn unknown_to_provider(failure: Failure, linked: bool) -> Result<Arm, Failure> {
    match failure {
        Failure::Provider(FetchError::Permanent(reason)) if !linked => Ok(Arm::Dropped(format!(
            "the provider does not know the id ({reason})"
        ))),
        other => Err(other),
    }
}

impl<S: Deps> FetchWorker<S> {
    /// Applies a parsed event to its job: each provider's arm.
    pub(crate) async fn apply(&self, meta: &JobMeta, action: Action) -> Result<Arm, Failure> {
        match action {
            Action::FullenrichBatch { id, job, signed } => {
                self.apply_fullenrich_batch(meta, id, job, signed).await
            }
            Action::FullenrichContact { job, signed } => {
                self.apply_fullenrich_contact(meta, job, signed).await
            }
            Action::EnrowSingle {
                id,
                kind: _,
                result,
                custom,
                raw,
                credits,
            } => {
                self.apply_enrow_single(meta, id, result, custom, raw, credits)
                    .await
            }
            Action::EnrowBulk {
                id,
                kind: _,
                credits,
                prefetched,
            } => self.apply_enrow_bulk(meta, id, credits, prefetched).await,
        }
    }
}

/// The record key (contact index) the relay sent as `custom`, however it came back: a string
/// (`"7"`), a number, an object with `rid`, or that object serialized to a string.
pub(crate) fn record_key(custom: &Value) -> Option<ContactIndex> {
    match custom {
        Value::String(s) => s.trim().parse().ok().or_else(|| {
            serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .as_ref()
                .and_then(record_key)
        }),
        Value::Number(n) => n.as_u64().map(ContactIndex),
        Value::Object(o) => o.get(RECORD_KEY).and_then(record_key),
        _ => None,
    }
}
