//! Each provider's arm of applying an event, and the one parser of the record key the relay sends
//! as `custom`.

mod enrow;
mod fullenrich;

use relay_shared::bodies::BodyStore;
use relay_shared::jobs::{JobMeta, RECORD_KEY};
use relay_shared::providers::client::ProviderClient;
use relay_shared::queue::Queue;
use relay_shared::store::{CallbackStore, DedupeStore, JobStore, OrphanStore, Stored};
use serde_json::Value;

use crate::{Action, Disposition, Worker};
use relay_shared::ContactIndex;

impl<J, D, P, B, Q> Worker<J, D, P, B, Q>
where
    J: JobStore + CallbackStore + OrphanStore,
    D: DedupeStore,
    P: ProviderClient,
    B: BodyStore,
    Q: Queue,
{
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
