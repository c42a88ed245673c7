//! Staged jobs over the jobs table ([`JobDrafts`]): the draft head, its `PAGE#` items, the seal
//! a start holds, and the start itself.

use super::DynamoJobStore;
use super::attrs::{
    Item, cancellation_codes, data_error, get_n, get_s, n, put_request, s, unavailable,
    unless_condition_failed,
};
use super::items::{contact_item, meta_item};
use super::keys::{ERASE_SHARD, index_of, job_pk};
use crate::ids::JobId;
use crate::jobs::{Chunk, Contact, JobMeta, JobStatus};
use crate::now_ms;
use crate::store::{DRAFT_TTL, JobDrafts, Page, PageWrite, StoreError};
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem, Update};

pub(super) fn page_sk(offset: u64) -> String {
    format!("PAGE#{offset:07}")
}

/// The head is a draft taking pages: not deleted, not sealed by a start that still holds it.
const OPEN_DRAFT: &str = "#status = :draft AND attribute_not_exists(deleted_at) AND (attribute_not_exists(sealed_until) OR sealed_until < :now)";

impl JobDrafts for DynamoJobStore {
    async fn create_draft(&self, meta: &JobMeta) -> Result<(), StoreError> {
        let mut item = self.expiring(meta_item(meta));
        // In the erasure partition from the first: a draft never started is erased when due.
        item.insert("poll_shard".into(), s(ERASE_SHARD));
        item.insert(
            "poll_at".into(),
            n(meta.created_at_ms + DRAFT_TTL.as_millis() as u64),
        );
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match unless_condition_failed(out)? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(format!("job {} exists", meta.job_id))),
        }
    }

    async fn put_page(
        &self,
        job_id: &JobId,
        page: &Page,
        contacts: &[Contact],
    ) -> Result<PageWrite, StoreError> {
        let sk = page_sk(page.offset);
        if let Some(found) = self.item(job_id, &sk).await?.map(|i| parse_page(&i)) {
            let found = found?;
            if found.sha256 != page.sha256 {
                return Ok(PageWrite::Conflict);
            }
            if found.complete {
                return Ok(PageWrite::Unchanged);
            }
        }
        let pk = job_pk(job_id);
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("META"))
            .condition_expression(OPEN_DRAFT)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":draft", s(JobStatus::Draft.as_str()))
            .expression_attribute_values(":now", n(now_ms()))
            .build()
            .map_err(build)?;
        let claim = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(&sk))
            .update_expression("SET #count = :count, sha = :sha, expires_at = :exp")
            .condition_expression("attribute_not_exists(sk) OR sha = :sha")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":count", n(page.count))
            .expression_attribute_values(":sha", s(&page.sha256))
            .expression_attribute_values(":exp", n(self.expires_at()))
            .build()
            .map_err(build)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .transact_items(TransactWriteItem::builder().update(claim).build())
            .send()
            .await;
        if let Err(e) = sent {
            return match cancellation_codes(&e) {
                Some(r) if r.first().is_some_and(|c| c == "ConditionalCheckFailed") => {
                    Ok(PageWrite::Closed)
                }
                Some(r) if r.get(1).is_some_and(|c| c == "ConditionalCheckFailed") => {
                    Ok(PageWrite::Conflict)
                }
                _ => Err(unavailable(e)),
            };
        }
        let requests = contacts
            .iter()
            .map(|c| put_request(self.expiring(contact_item(&pk, c))))
            .collect();
        self.batch_write_all(requests).await?;
        let done = self
            .item_update(job_id, &sk)
            .update_expression("SET complete = :t")
            .condition_expression("sha = :sha")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":sha", s(&page.sha256))
            .send()
            .await;
        unless_condition_failed(done)?;
        Ok(PageWrite::Written)
    }

    async fn pages(&self, job_id: &JobId) -> Result<Vec<Page>, StoreError> {
        self.query_range(job_id, "PAGE#", "PAGE#~", None)
            .await?
            .iter()
            .map(parse_page)
            .collect()
    }

    async fn seal_draft(&self, job_id: &JobId, lease_ms: u64) -> Result<Option<u64>, StoreError> {
        let now = now_ms();
        let until = now + lease_ms;
        let out = self
            .meta_item_update(job_id)
            .update_expression("SET sealed_until = :until")
            .condition_expression(OPEN_DRAFT)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":draft", s(JobStatus::Draft.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":until", n(until))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.map(|_| until))
    }

    async fn unseal_draft(&self, job_id: &JobId, seal: u64) -> Result<(), StoreError> {
        let out = self
            .meta_item_update(job_id)
            .update_expression("REMOVE sealed_until")
            .condition_expression("sealed_until = :seal")
            .expression_attribute_values(":seal", n(seal))
            .send()
            .await;
        unless_condition_failed(out)?;
        Ok(())
    }

    async fn start_draft(
        &self,
        job_id: &JobId,
        chunks: &[Chunk],
        seal: u64,
    ) -> Result<bool, StoreError> {
        self.batch_write_all(self.plan_requests(job_id, chunks))
            .await?;
        let out = self
            .meta_item_update(job_id)
            .update_expression(
                "SET #status = :accepted, updated_at = :now REMOVE poll_shard, poll_at, sealed_until",
            )
            .condition_expression(
                "#status = :draft AND sealed_until = :seal AND attribute_not_exists(deleted_at)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":accepted", s(JobStatus::Accepted.as_str()))
            .expression_attribute_values(":draft", s(JobStatus::Draft.as_str()))
            .expression_attribute_values(":seal", n(seal))
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.is_some())
    }
}

fn parse_page(item: &Item) -> Result<Page, StoreError> {
    Ok(Page {
        offset: index_of(get_s(item, "sk"), "PAGE#").ok_or_else(|| data_error("page"))?,
        count: get_n(item, "count").ok_or_else(|| data_error("page"))?,
        sha256: get_s(item, "sha")
            .ok_or_else(|| data_error("page"))?
            .to_string(),
        complete: item
            .get("complete")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}
