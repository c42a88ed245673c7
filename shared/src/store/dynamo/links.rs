//! [`Links`] over the jobs table: `PID#<id>` items, each conditional on its chunk naming the id.

use super::DynamoJobStore;
use super::attrs::{
    Item, cancellation_reasons, get_n, get_s, n, s, unavailable, unless_condition_failed,
};
use super::items::{contact_item, parse_contact};
use super::keys::{chunk_sk, job_pk};
use crate::ids::{ChunkIndex, JobId, ProviderId};
use crate::jobs::{ChunkStatus, Contact};
use crate::now_ms;
use crate::store::Jobs;
use crate::store::{ChunkRef, Link, Links, StoreError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

impl Links for DynamoJobStore {
    async fn find_link(
        &self,
        job_id: &JobId,
        provider_id: &ProviderId,
    ) -> Result<Option<Link>, StoreError> {
        // Eventually consistent first (half the read units): a link is written seconds before
        // its provider can answer. A miss is read again, strongly, before anything costlier.
        for consistent in [false, true] {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(job_pk(job_id)))
                .key("sk", s(format!("PID#{provider_id}")))
                .consistent_read(consistent)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(item) = out.item {
                return Ok(Some(Link {
                    chunk: ChunkRef {
                        index: get_n(&item, "chunk").unwrap_or(ChunkIndex(0)),
                        offset: get_n(&item, "offset").unwrap_or(0),
                        count: get_n(&item, "count").unwrap_or(0),
                    },
                    contact: match item.get("contact").and_then(|v| v.as_m().ok()) {
                        Some(m) => Some(parse_contact(m)?),
                        None => None,
                    },
                }));
            }
        }
        // The link is written just after the chunk; if a worker died in between, the chunk
        // itself still names its provider id.
        let chunk = self
            .chunks(job_id)
            .await?
            .into_iter()
            .find(|c| c.provider_id.as_deref() == Some(provider_id));
        Ok(chunk.map(|c| Link {
            chunk: ChunkRef::from(&c),
            contact: None,
        }))
    }

    async fn link_chunk(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        provider_id: &ProviderId,
        credits: Option<f64>,
        contact: Option<&Contact>,
    ) -> Result<bool, StoreError> {
        let pk = job_pk(job_id);
        let poll_at = now_ms() + self.poll_after_ms;
        // The group first: a chunk started is never out of the sweeper's sight, even if this
        // worker dies before the chunk write.
        self.group_due_by(job_id, chunk.index, poll_at).await?;
        let mut expr = String::from(
            "SET provider_id = :pid, #status = :st, started_at = :now, poll_at = :pa, poll_every = :pe REMOVE submit_until, submit_owner, unconfirmed_at",
        );
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(chunk_sk(chunk.index)))
            .condition_expression(
                "attribute_exists(pk) AND #status IN (:pending, :starting, :unconfirmed)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pid", s(provider_id))
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":pa", n(poll_at))
            .expression_attribute_values(":pe", n(self.poll_after_ms))
            .expression_attribute_values(":st", s(ChunkStatus::Submitted.as_str()))
            .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
            .expression_attribute_values(":starting", s(ChunkStatus::Starting.as_str()))
            .expression_attribute_values(":unconfirmed", s(ChunkStatus::StartUnconfirmed.as_str()));
        if let Some(c) = credits {
            expr = expr.replacen("#status = :st", "#status = :st, credits = :cr", 1);
            update = update.expression_attribute_values(":cr", n(c));
        }
        let linked = unless_condition_failed(update.update_expression(expr).send().await)?;
        if linked.is_none() {
            // Linked already (a webhook adopted the chunk before the start's answer came), or
            // the chunk moved on without this id.
            let now = self.chunk(job_id, chunk.index).await?;
            if now.and_then(|c| c.provider_id).as_deref() != Some(provider_id) {
                return Ok(false);
            }
        }
        put_link(self, job_id, chunk, provider_id, contact).await
    }

    async fn correct_link(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        provider_id: &ProviderId,
        contact: Option<&Contact>,
    ) -> Result<(), StoreError> {
        let pk = job_pk(job_id);
        let out = self
            .chunk_item_update(job_id, chunk.index)
            .update_expression("SET provider_id = :pid")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":pid", s(provider_id))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await
            .map_err(unavailable)?;
        let wrong = out
            .attributes
            .as_ref()
            .and_then(|a| get_s(a, "provider_id"))
            .filter(|w| *w != provider_id)
            .map(str::to_string);
        put_link(self, job_id, chunk, provider_id, contact).await?;
        if let Some(wrong) = wrong {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s(format!("PID#{wrong}")))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn take_candidate(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        max: u32,
    ) -> Result<bool, StoreError> {
        let out = self
            .chunk_item_update(job_id, index)
            .update_expression("ADD candidates :one")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(candidates) OR candidates < :max)",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }
}

/// Writes a provider id's link to its chunk (`PID#<id>`), carrying the chunk's one contact
/// when it has one ([`Link::new`]), conditional on the chunk still naming this id: a link
/// (which may carry a contact) never lands after the job's erasure deleted its chunks.
/// `false`: the chunk is gone or names another id.
async fn put_link(
    store: &DynamoJobStore,
    job_id: &JobId,
    chunk: ChunkRef,
    provider_id: &ProviderId,
    contact: Option<&Contact>,
) -> Result<bool, StoreError> {
    let pk = job_pk(job_id);
    let mut link = Item::from([
        ("pk".to_string(), s(&pk)),
        ("sk".to_string(), s(format!("PID#{provider_id}"))),
        ("chunk".to_string(), n(chunk.index)),
        ("offset".to_string(), n(chunk.offset)),
        ("count".to_string(), n(chunk.count)),
        ("expires_at".to_string(), n(store.expires_at())),
        // The `provider_ids` index: a global webhook's event finds its job by the id.
        ("gpid".to_string(), s(provider_id)),
    ]);
    if let Some(c) = Link::new(chunk, contact).contact {
        link.insert("contact".into(), AttributeValue::M(contact_item(&pk, &c)));
    }
    let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
    let put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(&store.table)
        .set_item(Some(link))
        .build()
        .map_err(build)?;
    let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
        .table_name(&store.table)
        .key("pk", s(&pk))
        .key("sk", s(chunk_sk(chunk.index)))
        .condition_expression("provider_id = :pid")
        .expression_attribute_values(":pid", s(provider_id))
        .build()
        .map_err(build)?;
    let sent = store
        .client
        .transact_write_items()
        .transact_items(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .put(put)
                .build(),
        )
        .transact_items(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .condition_check(check)
                .build(),
        )
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) => match cancellation_reasons(&e) {
            // The chunk is gone (erased) or names another id now.
            Some(r) if r.last().is_some_and(|(c, _)| c == "ConditionalCheckFailed") => Ok(false),
            _ => Err(unavailable(e)),
        },
    }
}
