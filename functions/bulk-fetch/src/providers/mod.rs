//! Each provider's arm of applying an event, and the one parser of the record key the relay sends
//! as `custom`.

mod enrow;
mod fullenrich;

use relay_shared::jobs::{JobMeta, RECORD_KEY};
use relay_shared::store::Stored;
use serde_json::Value;

use crate::{Action, Deps, Disposition, FetchWorker};

impl<S: Deps> FetchWorker<S> {
    /// Applies a parsed event to its job: each provider's arm.
    pub(crate) async fn apply(
        &self,
        meta: &JobMeta,
        action: Action,
    ) -> Result<Stored, Disposition> {
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
pub(crate) fn record_key(custom: &Value) -> Option<u64> {
    match custom {
        Value::String(s) => s.trim().parse().ok().or_else(|| {
            serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .as_ref()
                .and_then(record_key)
        }),
        Value::Number(n) => n.as_u64(),
        Value::Object(o) => o.get(RECORD_KEY).and_then(record_key),
        _ => None,
    }
}
