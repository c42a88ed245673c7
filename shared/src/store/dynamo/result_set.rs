//! A chunk's result set on the jobs table, under the chunk's lease.

use super::DynamoJobStore;
use super::attrs::{Item, n, s, unavailable, unless_condition_failed};
use super::counts::CHUNK_COUNTS;
use super::items::{item_size, parse_result, result_item};
use super::keys::{chunk_sk, job_pk, result_sk};
use super::result_row::LEASE_WAIT;
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{ContactResult, Outcome};
use crate::now_ms;
use crate::retry::BackoffBuilder;
use crate::store::counts::{Counts, rows_to_write};
use crate::store::{ChunkRef, ChunkUpdate, StoreError, Stored};
use aws_sdk_dynamodb::types::{ConditionCheck, Put, ReturnValue, TransactWriteItem};
use std::collections::HashMap;

impl DynamoJobStore {
    /// A chunk's result set: the chunk taken under a lease (owned by this call: a take that the
    /// SDK sends again after its answer was lost finds its own lease; single results wait or
    /// step aside meanwhile), the rows not stored yet written 25 per BatchWriteItem, then the chunk's
    /// counters set to what it holds and the lease released in one conditional update.
    pub(super) async fn put_chunk_results(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
        results: Vec<ContactResult>,
        update: ChunkUpdate,
    ) -> Result<Stored, StoreError> {
        let pk = job_pk(job_id);
        let owner = uuid::Uuid::new_v4().to_string();
        let mut stored = Stored::default();

        // 1. Take the chunk: single results wait while this lease is held, so the counts read
        //    back here and the rows queried next are exactly what is counted already.
        stored.write_calls += 1;
        let counted = self.take_chunk(job_id, chunk.index, &owner).await?;
        // 2. The rows stored already (by single results or by an attempt that died midway), and
        //    whether they are provisional (from a per-contact webhook).
        let existing = self.chunk_rows(job_id, chunk).await?;

        // 3. The new rows. A final row is kept (first final write wins); a provisional one is
        //    replaced by the chunk's final result set, and a deadline's placeholder by any result
        //    ([`ContactResult::replaces`]).
        let mut outcomes: HashMap<ContactIndex, Outcome> =
            existing.iter().map(|(i, r)| (*i, r.outcome)).collect();
        let mut rows = Vec::new();
        for r in rows_to_write(chunk, &results, |i| existing.get(&i), &mut stored)? {
            outcomes.insert(r.index, r.outcome);
            rows.push(self.expiring(result_item(&pk, r)));
        }
        // Conditional on the lease this call holds: a chunk erased (or taken over) meanwhile
        // gets no row.
        stored.write_calls += self
            .put_rows_while_held(job_id, chunk.index, &owner, rows)
            .await?;

        // 4. The chunk's counters are what it holds now; the lease is released in the same
        //    conditional update, which only the lease holder can make.
        let total = Counts::of(outcomes.values().copied());
        stored.new = total.minus(counted).done.max(0) as usize;
        stored.write_calls += 1;
        self.release_chunk(job_id, &update, &owner, total).await?;

        // 5. A final chunk joins its group; a job that had ended already (a late set replacing
        //    its deadline's placeholders) gets its figures summed again.
        if update.status.is_final() {
            stored.write_calls += 1;
            stored.final_group = Some(self.mark_final(job_id, chunk.index).await?);
        }
        if total != counted {
            self.refresh_if_ended(job_id).await?;
        }
        Ok(stored)
    }

    /// Writes a bulk set's rows while `owner` holds the chunk's lease: each transaction (up to
    /// 99 rows, under 3.5 MB) also checks that the chunk is there and still held by `owner`, so
    /// no row lands after the chunk was erased or taken over. Transactions on one chunk go one
    /// after another (two at once on one item would conflict). Returns the calls made.
    async fn put_rows_while_held(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
        owner: &str,
        rows: Vec<Item>,
    ) -> Result<usize, StoreError> {
        const MAX_ROWS: usize = 99;
        const MAX_BYTES: usize = 3_500_000;
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(chunk_sk(chunk_index)))
            .condition_expression("applier = :me")
            .expression_attribute_values(":me", s(owner))
            .build()
            .map_err(build)?;
        let mut groups: Vec<Vec<Item>> = Vec::new();
        let mut bytes = 0;
        for row in rows {
            let size = item_size(&row);
            match groups.last_mut() {
                Some(g) if g.len() < MAX_ROWS && bytes + size <= MAX_BYTES => {
                    bytes += size;
                    g.push(row);
                }
                _ => {
                    bytes = size;
                    groups.push(vec![row]);
                }
            }
        }
        let mut calls = 0;
        for group in groups {
            let mut items = Vec::with_capacity(group.len() + 1);
            for row in group {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(row))
                    .build()
                    .map_err(build)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            items.push(
                TransactWriteItem::builder()
                    .condition_check(check.clone())
                    .build(),
            );
            let mut waits = crate::retry::exponential(LEASE_WAIT, 5).build();
            loop {
                calls += 1;
                let Some(reasons) = self.transact(&items).await? else {
                    break;
                };
                if reasons
                    .last()
                    .is_some_and(|(c, _)| c == "ConditionalCheckFailed")
                {
                    return Err(StoreError::Conflict(format!(
                        "chunk {chunk_index} was erased or taken over while its rows were written"
                    )));
                }
                match waits.next() {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => {
                        return Err(StoreError::unavailable(format!(
                            "the rows' transaction on chunk {chunk_index} kept conflicting"
                        )));
                    }
                }
            }
        }
        Ok(calls)
    }

    /// Takes chunk `index` for `owner`'s bulk set (its lease); returns what the chunk counts.
    /// `Conflict`: the chunk is gone (its job erased).
    async fn take_chunk(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
        owner: &str,
    ) -> Result<Counts, StoreError> {
        let now = now_ms();
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(chunk_sk(index)))
            .update_expression("SET applier = :me, applier_until = :until")
            // Its own lease too: the SDK resending this take after its answer was lost.
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(applier_until) OR applier_until < :now OR applier = :me)",
            )
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":until", n(now + self.apply_lease_ms))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let taken = match unless_condition_failed(taken)? {
            Some(taken) => taken,
            // No chunk: its job was erased (nothing of it is written again).
            None if self.item(job_id, &chunk_sk(index)).await?.is_none() => {
                return Err(StoreError::Conflict(format!(
                    "chunk {} is gone (its job was erased)",
                    index
                )));
            }
            None => {
                return Err(StoreError::unavailable(format!(
                    "chunk {} is being applied by another worker",
                    index
                )));
            }
        };
        Ok(taken
            .attributes
            .as_ref()
            .map(Counts::from_chunk)
            .unwrap_or_default())
    }

    /// The rows stored already for `chunk`'s contacts.
    async fn chunk_rows(
        &self,
        job_id: &JobId,
        chunk: ChunkRef,
    ) -> Result<HashMap<ContactIndex, ContactResult>, StoreError> {
        let first = result_sk(ContactIndex(chunk.offset));
        let last = result_sk(ContactIndex(chunk.offset + chunk.count.max(1) - 1));
        let mut existing: HashMap<ContactIndex, ContactResult> = HashMap::new();
        for item in self.query_range(job_id, &first, &last, None).await? {
            let r = parse_result(&item)?;
            existing.insert(r.index, r);
        }
        Ok(existing)
    }

    /// Sets the chunk's counters to `total` with `update`, and releases `owner`'s lease, in one
    /// update conditional on the lease.
    async fn release_chunk(
        &self,
        job_id: &JobId,
        update: &ChunkUpdate,
        owner: &str,
        total: Counts,
    ) -> Result<(), StoreError> {
        let release = self.chunk_update_builder(job_id, update);
        let (b, set) = total.bind(release.b, CHUNK_COUNTS, " = ");
        let release = b
            .condition_expression("applier = :me")
            .expression_attribute_values(":me", s(owner))
            .update_expression(format!(
                "{}, {set} REMOVE applier, applier_until, seen{}",
                release.expr,
                if update.status.is_final() {
                    ", poll_at, poll_every"
                } else {
                    ""
                }
            ))
            .build()
            .map_err(|e| StoreError::Data(e.to_string()))?;
        self.update_item_of(&release)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => {
                    StoreError::unavailable(format!(
                        "chunk {} lease lost before its counters were set",
                        update.index
                    ))
                }
                _ => unavailable(e),
            })?;
        Ok(())
    }
}
