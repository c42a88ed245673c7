//! Results and their counters on the jobs table: a single result's row as the exactly-once gate
//! and its chunk's count; a chunk's result set under its lease; the groups of final chunks; the
//! job's figures summed over its chunks.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};

use super::*;
use crate::jobs::{ChunkStatus, ContactResult, JobMeta, Outcome};
use crate::now_ms;
use crate::retry::BackoffBuilder;

/// The first wait for a chunk that a bulk set holds (it doubles, five times: about 1.5 s in all).
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// What a job's chunk range (`CHUNK#…`, groups and duplicate shards included) adds up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Figures {
    pub(super) counts: Counts,
    pub(super) duplicates: u64,
    /// Chunk indices recorded in the groups of final chunks.
    pub(super) final_chunks: u64,
    /// Every chunk item read is final.
    pub(super) all_final: bool,
}

impl Figures {
    pub(super) fn of(items: &[Item]) -> Figures {
        let mut f = Figures {
            all_final: true,
            ..Figures::default()
        };
        for item in items {
            let sk = get_s(item, "sk").unwrap_or_default();
            if sk.starts_with("CHUNK#~F") {
                f.final_chunks += item
                    .get("f")
                    .and_then(|v| v.as_ns().ok())
                    .map_or(0, |ns| ns.len() as u64);
            } else if sk.starts_with("CHUNK#~D") {
                f.duplicates += get_n::<u64>(item, "n").unwrap_or(0);
            } else {
                f.counts = f.counts + Counts::from_chunk(item);
                let status = get_s(item, "status").and_then(|v| v.parse::<ChunkStatus>().ok());
                f.all_final &= status.is_some_and(ChunkStatus::is_final);
            }
        }
        f
    }
}

/// A row counted on its chunk: whether the chunk, as the count left it, still waits for its
/// provider id.
struct Counted {
    awaiting_link: bool,
}

/// A chunk item (as DynamoDB returned it) whose start is unconfirmed or not recorded yet.
fn awaits_link(item: &Item) -> bool {
    get_s(item, "status")
        .and_then(|v| v.parse::<ChunkStatus>().ok())
        .is_some_and(ChunkStatus::awaits_confirmation)
        && !item.contains_key("provider_id")
}

/// Why a chunk refused a single result's count.
enum CountRefused {
    /// It counts this contact already, or it is final (its counters are its rows' totals).
    Counted { chunk_final: bool },
    /// A bulk set holds it right now.
    Busy,
}

type UpdateItemRequest =
    aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;

/// Binds [`Counts::placeholders`]' names and values on an UpdateItem request.
pub(super) fn bound(req: UpdateItemRequest, (names, values): (Names, Values)) -> UpdateItemRequest {
    let req = names
        .into_iter()
        .fold(req, |r, (k, v)| r.expression_attribute_names(k, v));
    values
        .into_iter()
        .fold(req, |r, (k, v)| r.expression_attribute_values(k, v))
}

impl DynamoJobStore {
    /// One `Update` (the transaction item shape the chunk builders make) sent as an UpdateItem.
    fn update_item_of(&self, u: &aws_sdk_dynamodb::types::Update) -> UpdateItemRequest {
        self.client
            .update_item()
            .table_name(u.table_name())
            .set_key(Some(u.key().clone()))
            .update_expression(u.update_expression())
            .set_condition_expression(u.condition_expression().map(str::to_string))
            .set_expression_attribute_names(u.expression_attribute_names().cloned())
            .set_expression_attribute_values(u.expression_attribute_values().cloned())
    }

    /// A single result: its row first, conditional on there being none (the exactly-once gate),
    /// then its chunk's count. A row found stored is replaced when this result replaces it
    /// (provisional or a deadline's placeholder), else it is counted if its count was lost.
    pub(super) async fn put_result(
        &self,
        job_id: &str,
        chunk_index: u32,
        result: ContactResult,
        update: Option<ChunkUpdate>,
    ) -> Result<Stored, StoreError> {
        let pk = job_pk(job_id);
        let mut stored = Stored {
            write_calls: 1,
            ..Stored::default()
        };
        let put = self
            .put_row_if_chunk(
                job_id,
                chunk_index,
                self.expiring(result_item(&pk, &result)),
            )
            .await?;
        let mut counted = match put {
            None => {
                stored.new = 1;
                result.outcome
            }
            Some(held) => {
                let row = match held {
                    Some(item) => Some((parse_result(&item)?, stored_at(&item))),
                    // An emulator that does not return the old item: read it.
                    None => self.stored_row(job_id, result.index).await?,
                };
                match row {
                    Some((old, at)) if result.replaces(&old) => {
                        return self
                            .replace_row(job_id, chunk_index, result, update, (old, at), stored)
                            .await;
                    }
                    Some((old, _)) => {
                        stored.existing = 1;
                        old.outcome
                    }
                    None => {
                        return Err(StoreError::unavailable(format!(
                            "result {} neither stored nor writable",
                            result.index
                        )));
                    }
                }
            }
        };
        for wait in crate::retry::exponential(LEASE_WAIT, 5).build() {
            stored.write_calls += 1;
            let refused = self
                .count_row(job_id, chunk_index, result.index, counted, update.as_ref())
                .await?;
            match refused {
                Ok(Counted { awaiting_link }) => {
                    stored.awaiting_link = awaiting_link;
                    // This call counted the row: it is the one that applied it, whoever wrote
                    // the row (a first copy that died before counting it, or this call's own
                    // put, sent again by the SDK after its answer was lost).
                    stored.new = 1;
                    stored.existing = 0;
                    if update.as_ref().is_some_and(|u| u.status.is_final()) {
                        stored.write_calls += 1;
                        stored.final_group = Some(self.mark_final(job_id, chunk_index).await?);
                    }
                    return Ok(stored);
                }
                Err(CountRefused::Counted { chunk_final }) => {
                    // Counted by another copy (one that met this call's row, or wrote it first):
                    // that copy applied it; this one is its duplicate.
                    let redelivered = stored.existing > 0;
                    stored.new = 0;
                    stored.existing = 1;
                    let ending = update.as_ref().is_some_and(|u| u.status.is_final());
                    if chunk_final && (redelivered || ending) {
                        // A redelivery: whatever made the chunk final may have died before
                        // recording it in its group. Or this call's own count, sent again by
                        // the SDK after its answer was lost: it ended the chunk. Recording it
                        // (again) is harmless.
                        stored.write_calls += 1;
                        stored.final_group = Some(self.mark_final(job_id, chunk_index).await?);
                    }
                    return Ok(stored);
                }
                Err(CountRefused::Busy) if result.provisional => {
                    // The chunk's final set being written holds this contact: it accounts for
                    // the row (it replaces it, or counts it), so it is not waited for.
                    return Ok(stored);
                }
                Err(CountRefused::Busy) => {
                    // A bulk set (e.g. the deadline's placeholders) holds the chunk: wait for it,
                    // then see what it left in this contact's row.
                    tokio::time::sleep(wait).await;
                    if let Some((old, at)) = self.stored_row(job_id, result.index).await?
                        && old != result
                    {
                        if result.replaces(&old) {
                            return self
                                .replace_row(job_id, chunk_index, result, update, (old, at), stored)
                                .await;
                        }
                        counted = old.outcome;
                    }
                }
            }
        }
        Err(StoreError::unavailable(format!(
            "chunk {chunk_index} stayed busy"
        )))
    }

    /// A single result's row put, conditional on there being none (the exactly-once gate) and,
    /// in the same transaction, on its chunk existing: once a job's erasure deleted its chunks
    /// nothing late writes a row again (`Conflict`). `None`: written; `Some(held)`: a row is
    /// there, with it when the store returned it (else read it).
    async fn put_row_if_chunk(
        &self,
        job_id: &str,
        chunk_index: u32,
        row: Item,
    ) -> Result<Option<Option<Item>>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(row))
            .condition_expression("attribute_not_exists(sk)")
            // The row that stopped it, in the same call (free): a duplicate reads nothing more.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;
        let chunk = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(chunk_sk(chunk_index)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build)?;
        for wait in crate::retry::exponential(LEASE_WAIT, 5).build() {
            let sent = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put.clone()).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .condition_check(chunk.clone())
                        .build(),
                )
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(None),
                Err(e) => e,
            };
            let reasons = cancellation_reasons(&e).ok_or_else(|| unavailable(e))?;
            match reasons.as_slice() {
                [_, (code, _)] if code == "ConditionalCheckFailed" => {
                    return Err(StoreError::Conflict(format!(
                        "chunk {chunk_index} is gone (its job was erased)"
                    )));
                }
                [(code, held), _] if code == "ConditionalCheckFailed" => {
                    return Ok(Some(held.clone()));
                }
                // Another transaction on the row or the chunk right now: again, shortly.
                _ => tokio::time::sleep(wait).await,
            }
        }
        Err(StoreError::unavailable(format!(
            "the row's transaction on chunk {chunk_index} kept conflicting"
        )))
    }

    /// Writes a bulk set's rows while `owner` holds the chunk's lease: each transaction (up to
    /// 99 rows, under 3.5 MB) also checks that the chunk is there and still held by `owner`, so
    /// no row lands after the chunk was erased or taken over. Transactions on one chunk go one
    /// after another (two at once on one item would conflict). Returns the calls made.
    async fn put_rows_while_held(
        &self,
        job_id: &str,
        chunk_index: u32,
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
                let sent = self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(items.clone()))
                    .send()
                    .await;
                let e = match sent {
                    Ok(_) => break,
                    Err(e) => e,
                };
                let reasons = cancellation_reasons(&e).ok_or_else(|| unavailable(e))?;
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

    /// Counts one contact's row on its chunk (and applies `update` to it), once: not when the
    /// chunk counts the contact already, is final, or is held by a bulk set.
    async fn count_row(
        &self,
        job_id: &str,
        chunk_index: u32,
        contact: u64,
        outcome: Outcome,
        update: Option<&ChunkUpdate>,
    ) -> Result<Result<Counted, CountRefused>, StoreError> {
        let (names, values, add) = Counts::of([outcome]).placeholders(CHUNK_COUNTS, " ");
        let (req, set, remove) = match update {
            Some(u) => {
                let parts = self.chunk_update_builder(job_id, u);
                let built = parts
                    .b
                    .update_expression("-")
                    .build()
                    .map_err(|e| StoreError::Data(e.to_string()))?;
                // Nothing left to poll when final (its group leaves the `due` index once all
                // its chunks are final: this write touches no index entry).
                let remove = if u.status.is_final() {
                    " REMOVE poll_at, poll_every"
                } else {
                    ""
                };
                (
                    self.update_item_of(&built),
                    format!("{} ", parts.expr),
                    remove,
                )
            }
            None => (
                self.chunk_item_update(job_id, chunk_index),
                String::new(),
                "",
            ),
        };
        let req = bound(req, (names, values));
        let out = req
            .update_expression(format!("{set}ADD {add}, seen :seen{remove}"))
            .condition_expression(
                "attribute_exists(pk) AND NOT contains(seen, :i) AND NOT (#status IN (:done, :failed, :split)) AND (attribute_not_exists(applier_until) OR applier_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":seen", AttributeValue::Ns(vec![contact.to_string()]))
            .expression_attribute_values(":i", n(contact))
            .expression_attribute_values(":done", s(ChunkStatus::Completed.as_str()))
            .expression_attribute_values(":failed", s(ChunkStatus::Failed.as_str()))
            .expression_attribute_values(":split", s(ChunkStatus::Split.as_str()))
            .expression_attribute_values(":now", n(now_ms()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let e = match out {
            Ok(out) => {
                return Ok(Ok(Counted {
                    awaiting_link: out.attributes.as_ref().is_some_and(awaits_link),
                }));
            }
            Err(e) => e,
        };
        let Some(se) = e.as_service_error() else {
            return Err(unavailable(e));
        };
        if !se.is_conditional_check_failed_exception() {
            return Err(unavailable(e));
        }
        let old = match se {
            aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                c.item().cloned()
            }
            _ => None,
        };
        let Some(old) = old else {
            return Err(StoreError::Data(format!("no chunk {chunk_index}")));
        };
        let chunk_final = get_s(&old, "status")
            .and_then(|v| v.parse::<ChunkStatus>().ok())
            .is_some_and(ChunkStatus::is_final);
        let seen = old
            .get("seen")
            .and_then(|v| v.as_ns().ok())
            .is_some_and(|ns| ns.iter().any(|i| i.parse() == Ok(contact)));
        if chunk_final || seen {
            return Ok(Err(CountRefused::Counted { chunk_final }));
        }
        Ok(Err(CountRefused::Busy))
    }

    /// A result taking the place of a stored row (provisional, or a deadline's placeholder):
    /// the put conditional on that exact row and the chunk's counters moved by the difference,
    /// in one transaction (rare: a late or final result over a stand-in).
    async fn replace_row(
        &self,
        job_id: &str,
        chunk_index: u32,
        result: ContactResult,
        update: Option<ChunkUpdate>,
        mut replacing: (ContactResult, u64),
        mut stored: Stored,
    ) -> Result<Stored, StoreError> {
        let pk = job_pk(job_id);
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
        for wait in crate::retry::exponential(LEASE_WAIT, 5).build() {
            let (old, at) = &replacing;
            let counts = Counts::of([result.outcome]).minus(Counts::of([old.outcome]));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(self.expiring(result_item(&pk, &result))))
                .condition_expression("provisional = :t AND outcome = :o AND stored_at = :at")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":o", s(old.outcome.as_str()))
                .expression_attribute_values(":at", n(*at))
                .build()
                .map_err(build)?;
            let UpdateParts { b, expr } = match &update {
                Some(u) => {
                    let mut parts = self.chunk_update_builder(job_id, u);
                    if u.status.is_final() {
                        parts.expr.push_str(" REMOVE poll_at, poll_every");
                    }
                    parts.expr.push(' ');
                    parts
                }
                None => UpdateParts {
                    b: aws_sdk_dynamodb::types::Update::builder()
                        .table_name(&self.table)
                        .key("pk", s(&pk))
                        .key("sk", s(chunk_sk(chunk_index))),
                    expr: String::new(),
                },
            };
            let (b, add) = counts.bind(b, CHUNK_COUNTS, " ");
            let chunk = b
                .update_expression(format!("{expr}ADD {add}"))
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(applier_until) OR applier_until < :now_ms)",
                )
                .expression_attribute_values(":now_ms", n(now_ms()))
                .build()
                .map_err(build)?;
            stored.write_calls += 1;
            let sent = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(TransactWriteItem::builder().update(chunk).build())
                .send()
                .await;
            let e = match sent {
                Ok(_) => {
                    stored.replaced = 1;
                    // A chunk final already (a deadline's placeholders) is in its group.
                    if update.as_ref().is_some_and(|u| u.status.is_final()) {
                        stored.write_calls += 1;
                        stored.final_group = Some(self.mark_final(job_id, chunk_index).await?);
                    }
                    self.refresh_if_ended(job_id).await?;
                    return Ok(stored);
                }
                Err(e) => e,
            };
            let codes = cancellation_codes(&e).ok_or_else(|| unavailable(e))?;
            if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                // Replaced meanwhile: whatever is stored now decides.
                match self.stored_row(job_id, result.index).await? {
                    Some((old, at)) if result.replaces(&old) => replacing = (old, at),
                    Some(_) => {
                        stored.existing = 1;
                        return Ok(stored);
                    }
                    None => {
                        return Err(StoreError::unavailable(format!(
                            "result {} vanished while being replaced",
                            result.index
                        )));
                    }
                }
            } else if result.provisional {
                // The chunk is being applied in bulk right now: its final set replaces this.
                stored.existing = 1;
                return Ok(stored);
            } else {
                tokio::time::sleep(wait).await;
            }
        }
        Err(StoreError::unavailable(format!(
            "result {} could not replace its stand-in",
            result.index
        )))
    }

    /// A chunk's result set: the chunk taken under a lease (owned by this call: a take that the
    /// SDK sends again after its answer was lost finds its own lease; single results wait or
    /// step aside meanwhile), the rows not stored yet written 25 per BatchWriteItem, then the chunk's
    /// counters set to what it holds and the lease released in one conditional update.
    pub(super) async fn put_chunk_results(
        &self,
        job_id: &str,
        chunk: ChunkRef,
        results: Vec<ContactResult>,
        update: ChunkUpdate,
    ) -> Result<Stored, StoreError> {
        let pk = job_pk(job_id);
        let owner = uuid::Uuid::new_v4().to_string();
        let mut stored = Stored::default();

        // 1. Take the chunk: single results wait while this lease is held, so the counts read
        //    back here and the rows queried next are exactly what is counted already.
        let now = now_ms();
        stored.write_calls += 1;
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(chunk_sk(chunk.index)))
            .update_expression("SET applier = :me, applier_until = :until")
            // Its own lease too: the SDK resending this take after its answer was lost.
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(applier_until) OR applier_until < :now OR applier = :me)",
            )
            .expression_attribute_values(":me", s(&owner))
            .expression_attribute_values(":until", n(now + self.apply_lease_ms))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let taken = match unless_condition_failed(taken)? {
            Some(taken) => taken,
            // No chunk: its job was erased (nothing of it is written again).
            None if self.item(job_id, &chunk_sk(chunk.index)).await?.is_none() => {
                return Err(StoreError::Conflict(format!(
                    "chunk {} is gone (its job was erased)",
                    chunk.index
                )));
            }
            None => {
                return Err(StoreError::unavailable(format!(
                    "chunk {} is being applied by another worker",
                    chunk.index
                )));
            }
        };
        let counted = taken
            .attributes
            .as_ref()
            .map(Counts::from_chunk)
            .unwrap_or_default();

        // 2. The rows stored already (by single results or by an attempt that died midway), and
        //    whether they are provisional (from a per-contact webhook).
        let first = result_sk(chunk.offset);
        let last = result_sk(chunk.offset + chunk.count.max(1) - 1);
        let mut existing: HashMap<u64, ContactResult> = HashMap::new();
        for item in self.query_range(job_id, &first, &last, None).await? {
            let r = parse_result(&item)?;
            existing.insert(r.index, r);
        }

        // 3. The new rows. A final row is kept (first final write wins); a provisional one is
        //    replaced by the chunk's final result set, and a deadline's placeholder by any result
        //    ([`ContactResult::replaces`]).
        let mut outcomes: HashMap<u64, Outcome> =
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
        let release = self.chunk_update_builder(job_id, &update);
        let (b, set) = total.bind(release.b, CHUNK_COUNTS, " = ");
        let release = b
            .condition_expression("applier = :me")
            .expression_attribute_values(":me", s(&owner))
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
        stored.write_calls += 1;
        self.update_item_of(&release)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => {
                    StoreError::unavailable(format!(
                        "chunk {} lease lost before its counters were set",
                        chunk.index
                    ))
                }
                _ => unavailable(e),
            })?;

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

    /// Records a final chunk in its group (a number set: adding it twice is adding it once).
    /// Returns the group as left.
    pub(super) async fn mark_final(
        &self,
        job_id: &str,
        index: u32,
    ) -> Result<FinalGroup, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(final_sk(index)))
            .update_expression("ADD f :i SET expires_at = if_not_exists(expires_at, :exp)")
            .expression_attribute_values(":i", AttributeValue::Ns(vec![index.to_string()]))
            .expression_attribute_values(":exp", n(self.expires_at()))
            // The whole (small) item: UPDATED_NEW may leave out a set this call did not change.
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(unavailable)?;
        let size = out
            .attributes
            .as_ref()
            .and_then(|a| a.get("f"))
            .and_then(|v| v.as_ns().ok())
            .map_or(0, |ns| ns.len() as u64);
        Ok(FinalGroup {
            group: index / FINAL_GROUP,
            size,
        })
    }

    /// The job's chunk range summed (`only_duplicates`: the duplicate shards alone).
    pub(super) async fn figures(
        &self,
        job_id: &str,
        only_duplicates: bool,
    ) -> Result<Figures, StoreError> {
        let from = if only_duplicates {
            "CHUNK#~D"
        } else {
            "CHUNK#"
        };
        let items = self.query_range(job_id, from, "CHUNK#~~", None).await?;
        Ok(Figures::of(&items))
    }

    /// The head with its figures: summed over the chunks while the job runs, as settled once
    /// it ended; duplicates always summed over their shards.
    pub(super) async fn with_figures(&self, mut meta: JobMeta) -> Result<JobMeta, StoreError> {
        let f = self
            .figures(&meta.job_id, meta.status.is_terminal())
            .await?;
        if !meta.status.is_terminal() {
            let c = f.counts;
            meta.done = c.done.max(0) as u64;
            meta.found = c.found.max(0) as u64;
            meta.not_found = c.not_found.max(0) as u64;
            meta.failed = c.failed.max(0) as u64;
        }
        meta.duplicates = f.duplicates;
        Ok(meta)
    }

    /// A job that ended keeps its figures on its head: a change to its counters after that (a
    /// late result replacing a deadline's placeholder) sums them again.
    async fn refresh_if_ended(&self, job_id: &str) -> Result<(), StoreError> {
        let Some(meta) = self.get_job(job_id).await? else {
            return Ok(());
        };
        if !meta.status.is_terminal() {
            return Ok(());
        }
        let f = self.figures(job_id, false).await?;
        let (names, values, set) = f.counts.placeholders(JOB_COUNTS, " = ");
        let out = bound(self.meta_item_update(job_id), (names, values))
            .update_expression(format!("SET {set}, updated_at = :now"))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await;
        unless_condition_failed(out).map(|_| ())
    }
}
