//! Global webhook events for searches no chunk knows: kept as orphans, once each.

use std::time::Duration;

use relay_shared::bodies::BodyStore;
use relay_shared::envelope::{Body, Envelope};
use relay_shared::store::{Claim, DedupeStore, Orphan, OrphanStore};

use crate::{Action, Deps, Disposition, EventKey, Failure, FetchWorker};

impl<S: Deps> FetchWorker<S> {
    /// Keeps a global webhook's event for a search no chunk knows as an orphan, once per event
    /// (its claim, `~orphan#<key>`, is no job's: `~` is in no job id). Never parked, never
    /// fetched; its body (a single event's result: contact data) is kept nowhere. One being kept
    /// by another delivery waits (`Deferred`, to be put back).
    pub(crate) async fn keep_orphan(
        &self,
        env: &Envelope,
        key: &EventKey,
        action: &Action,
    ) -> Result<Disposition, Failure> {
        // Its id, name and cost, as `parse` read them (only an Enrow event comes this way).
        let Some((provider_id, kind, credits)) = action.enrow_event() else {
            return Err(Failure::unprocessable(
                "a global delivery that is no Enrow event",
            ));
        };
        let claim = key.orphan();
        let owner = uuid::Uuid::new_v4().to_string();
        match self.dedupe.claim(&claim, &owner).await? {
            Claim::Claimed => {}
            Claim::Duplicate => return Ok(Disposition::Duplicate),
            Claim::InProgress => {
                let why = "being kept by another delivery";
                return Ok(Disposition::Deferred(Duration::ZERO, why.into()));
            }
        }
        let orphan = Orphan {
            provider: env.provider,
            provider_id: provider_id.clone(),
            event: kind.to_string(),
            received_at_ms: env.received_at_ms,
            delivery_id: env.delivery_id.clone(),
            credits,
        };
        if let Err(e) = self.jobs.put_orphan(&orphan).await {
            if let Err(e) = self.dedupe.release(&claim, &owner).await {
                tracing::warn!(error = %e, "claim not released; it expires with its lease");
            }
            return Err(e.into());
        }
        if let Err(e) = self.dedupe.complete(&claim, &owner).await {
            // Kept; a redelivery keeps it again once the lease runs out (a second orphan).
            tracing::warn!(error = %e, "claim not completed");
        }
        // A claim-checked copy of the body goes (the bucket's lifecycle rule would take it in
        // the end).
        if let Body::Stored { key, .. } = &env.body
            && let Err(e) = self.bodies.delete(key).await
        {
            tracing::warn!(error = %e, "orphan's claim-checked body not deleted");
        }
        Ok(Disposition::Orphaned)
    }
}
