//! `Idempotency-Key`s of `POST /jobs`: claimed by one request (a lease), finished with its job.

use super::DynamoJobStore;
use super::attrs::unavailable;
use super::attrs::{Item, get_n, get_s, n, s, unless_condition_failed};
use crate::ids::JobId;
use crate::now_ms;
use crate::store::{Idempotency, IdempotencyKeys, StoreError};

impl IdempotencyKeys for DynamoJobStore {
    /// Claims an `Idempotency-Key` for the request about to create `job_id` (`owner` names the
    /// request). The first request owns it until it finishes or its lease (`lease_ms`, longer
    /// than the API's own timeout) runs out; then a retry takes over and finishes the same job.
    /// Keys are kept 24 hours.
    async fn claim_idempotency_key(
        &self,
        key: &str,
        body_sha256: &str,
        job_id: &JobId,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Idempotency, StoreError> {
        let pk = format!("IDEM#{key}");
        let now = now_ms();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s("IDEM"))
            .item("body_sha256", s(body_sha256))
            .item("job_id", s(job_id))
            .item("state", s("creating"))
            .item("owner", s(owner))
            .item("lease_until", n(now + lease_ms))
            .item("expires_at", n(now / 1000 + 86_400))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now / 1000))
            .send()
            .await;
        if unless_condition_failed(put)?.is_some() {
            return Ok(Idempotency::Owned {
                job_id: job_id.clone(),
            });
        }
        let item = read_key(self, &pk).await?;
        let first = JobId::new(get_s(&item, "job_id").unwrap_or_default());
        if get_s(&item, "body_sha256") != Some(body_sha256) {
            return Ok(Idempotency::Mismatch { job_id: first });
        }
        // Records written before the state existed were written once the job was.
        if get_s(&item, "state").unwrap_or("created") == "created" {
            return Ok(Idempotency::Created { job_id: first });
        }
        let lease_until: u64 = get_n(&item, "lease_until").unwrap_or(0);
        if lease_until > now {
            return Ok(Idempotency::InUse {
                retry_after_ms: lease_until - now,
            });
        }
        // The first request died or gave up: take over, unless another retry just did.
        Ok(
            if take_over(self, &pk, owner, now + lease_ms, lease_until).await? {
                Idempotency::Owned { job_id: first }
            } else {
                Idempotency::InUse {
                    retry_after_ms: lease_ms,
                }
            },
        )
    }

    /// Ends `owner`'s hold on an `Idempotency-Key`: `created` when the job is recorded and every
    /// chunk queued; otherwise the lease is given up so a retry can take over at once.
    async fn finish_idempotency_key(
        &self,
        key: &str,
        owner: &str,
        created: bool,
    ) -> Result<(), StoreError> {
        let update = if created {
            "SET #state = :created REMOVE lease_until"
        } else {
            "SET lease_until = :zero"
        };
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("IDEM#{key}")))
            .key("sk", s("IDEM"))
            .update_expression(update)
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", s(owner));
        req = if created {
            req.expression_attribute_names("#state", "state")
                .expression_attribute_values(":created", s("created"))
        } else {
            req.expression_attribute_values(":zero", n(0))
        };
        unless_condition_failed(req.send().await).map(|_| ())
    }
}

/// The key's record, read consistently.
async fn read_key(store: &DynamoJobStore, pk: &str) -> Result<Item, StoreError> {
    store
        .client
        .get_item()
        .table_name(&store.table)
        .key("pk", s(pk))
        .key("sk", s("IDEM"))
        .consistent_read(true)
        .send()
        .await
        .map_err(unavailable)?
        .item
        .ok_or_else(|| StoreError::unavailable("idempotency record vanished"))
}

/// Takes over a key whose owner's lease (`seen`) ran out, unless another retry just did.
async fn take_over(
    store: &DynamoJobStore,
    pk: &str,
    owner: &str,
    until: u64,
    seen: u64,
) -> Result<bool, StoreError> {
    let taken = store
        .client
        .update_item()
        .table_name(&store.table)
        .key("pk", s(pk))
        .key("sk", s("IDEM"))
        .update_expression("SET #owner = :me, lease_until = :until")
        .condition_expression("#state = :creating AND lease_until = :seen")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":me", s(owner))
        .expression_attribute_values(":until", n(until))
        .expression_attribute_values(":creating", s("creating"))
        .expression_attribute_values(":seen", n(seen))
        .send()
        .await;
    Ok(unless_condition_failed(taken)?.is_some())
}
