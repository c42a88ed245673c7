//! [`CreditBudget`] over the jobs table: a chunk's reservation is one transaction of the head
//! (`cr_left`, what no reservation holds of `max_credits`) and the chunk (`cr_hold`, and
//! `cr_spent` once settled). DynamoDB conditions cannot add, so the head keeps what is left and
//! a reservation is conditional on `cr_left >= :cost`.

use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};

use super::DynamoJobStore;
use super::attrs::{Item, get_n, n, s};
use super::keys::{chunk_sk, job_pk};
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::ChunkStatus;
use crate::retry::BackoffBuilder;
use crate::store::{CreditBudget, Reserve, StoreError};

/// How a transaction on a head and a chunk came out: applied, or refused by one of its two
/// conditions (with the item that refused, when the store returned it).
enum Outcome {
    Applied,
    HeadRefused(Option<Item>),
    ChunkRefused(Option<Item>),
}

impl CreditBudget for DynamoJobStore {
    async fn reserve_credits(
        &self,
        budget: &JobId,
        job_id: &JobId,
        index: ChunkIndex,
        credits: f64,
    ) -> Result<Reserve, StoreError> {
        let head = self
            .head_update(budget)
            .update_expression("SET cr_left = cr_left - :cost")
            .condition_expression("cr_left >= :cost")
            .expression_attribute_values(":cost", n(credits));
        let chunk = self
            .chunk_of(job_id, index)
            .update_expression("SET cr_hold = :cost, cr_from = :from")
            .condition_expression(
                "attribute_exists(pk) AND #status = :pending AND attribute_not_exists(cr_hold)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":from", s(budget.as_str()))
            .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
            .expression_attribute_values(":cost", n(credits));
        Ok(match self.head_and_chunk(head, chunk).await? {
            Outcome::Applied => Reserve::Reserved,
            Outcome::ChunkRefused(item) => {
                match self.or_read(job_id, &chunk_sk(index), item).await? {
                    Some(c) if c.contains_key("cr_hold") => Reserve::Held,
                    _ => Reserve::NotPending,
                }
            }
            Outcome::HeadRefused(item) => match self.or_read(budget, "META", item).await? {
                Some(h) => match get_n::<f64>(&h, "cr_left") {
                    Some(left) => Reserve::Exhausted { left },
                    None => Reserve::Unlimited,
                },
                None => Reserve::NotPending,
            },
        })
    }

    async fn release_credits(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        spent: f64,
    ) -> Result<bool, StoreError> {
        // The hold is written once, before the start: read, then settled on exactly it.
        let Some(item) = self.item(job_id, &chunk_sk(index)).await? else {
            return Ok(false);
        };
        let Some(hold) = get_n::<f64>(&item, "cr_hold").filter(|_| !item.contains_key("cr_spent"))
        else {
            return Ok(false);
        };
        let chunk = self
            .chunk_of(job_id, index)
            .update_expression("SET cr_spent = :spent")
            .condition_expression("cr_hold = :hold AND attribute_not_exists(cr_spent)")
            .expression_attribute_values(":spent", n(spent))
            .expression_attribute_values(":hold", n(hold));
        let from = super::attrs::get_s(&item, "cr_from")
            .map(JobId::new)
            .unwrap_or_else(|| job_id.clone());
        let head = self
            .head_update(&from)
            .update_expression("SET cr_left = cr_left + :back")
            .condition_expression("attribute_exists(cr_left)")
            .expression_attribute_values(":back", n(hold - spent));
        Ok(matches!(
            self.head_and_chunk(head, chunk).await?,
            Outcome::Applied
        ))
    }
}

impl DynamoJobStore {
    fn head_update(&self, job_id: &JobId) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s("META"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    fn chunk_of(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(chunk_sk(index)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// The head's update and the chunk's, in one transaction; sent again, shortly, while it
    /// conflicts with another (workers reserving from one budget at once).
    async fn head_and_chunk(
        &self,
        head: aws_sdk_dynamodb::types::builders::UpdateBuilder,
        chunk: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    ) -> Result<Outcome, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
        let items = vec![
            TransactWriteItem::builder()
                .update(head.build().map_err(build)?)
                .build(),
            TransactWriteItem::builder()
                .update(chunk.build().map_err(build)?)
                .build(),
        ];
        let refused = |(code, _): &(String, Option<Item>)| code == "ConditionalCheckFailed";
        let mut waits = crate::retry::exponential(std::time::Duration::from_millis(20), 8).build();
        loop {
            let Some(mut reasons) = self.transact(&items).await? else {
                return Ok(Outcome::Applied);
            };
            if reasons.get(1).is_some_and(refused) {
                return Ok(Outcome::ChunkRefused(reasons.swap_remove(1).1));
            }
            if reasons.first().is_some_and(refused) {
                return Ok(Outcome::HeadRefused(reasons.swap_remove(0).1));
            }
            match waits.next() {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    return Err(StoreError::unavailable(
                        "the budget's transaction kept conflicting",
                    ));
                }
            }
        }
    }

    /// The item a refused condition returned, or (a store that does not return it) read.
    async fn or_read(
        &self,
        job_id: &JobId,
        sk: &str,
        item: Option<Item>,
    ) -> Result<Option<Item>, StoreError> {
        match item {
            Some(item) => Ok(Some(item)),
            None => self.item(job_id, sk).await,
        }
    }
}
