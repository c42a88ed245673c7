//! A single result on the jobs table: its row as the exactly-once gate, then its chunk's count;
//! a stand-in (provisional, or a deadline's placeholder) replaced in one transaction.

use super::DynamoJobStore;
use super::attrs::{Item, cancellation_codes, cancellation_reasons, get_s, n, s, unavailable};
use super::counts::{CHUNK_COUNTS, UpdateParts};
use super::items::{parse_result, result_item, stored_at};
use super::keys::{chunk_sk, job_pk};
use super::requests::bound;
use crate::ids::ContactIndex;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{ChunkStatus, ContactResult, Outcome};
use crate::now_ms;
use crate::retry::BackoffBuilder;
use crate::store::counts::Counts;
use crate::store::{ChunkUpdate, StoreError, Stored};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

/// The first wait for a chunk that a bulk set holds (it doubles, five times: about 1.5 s in all).
pub(super) const LEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

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

impl DynamoJobStore {
    /// A single result: its row first, conditional on there being none (the exactly-once gate),
    /// then its chunk's count. A row found stored is replaced when this result replaces it
    /// (provisional or a deadline's placeholder), else it is counted if its count was lost.
    pub(super) async fn put_result(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
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
        let counted = match put {
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
        self.count_put(job_id, chunk_index, result, update, counted, stored)
            .await
    }

    /// Counts a row this call put or found (`counted`: its outcome) on its chunk, once; waits
    /// while a bulk set holds the chunk, then sees what it left in the row.
    async fn count_put(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
        result: ContactResult,
        update: Option<ChunkUpdate>,
        mut counted: Outcome,
        mut stored: Stored,
    ) -> Result<Stored, StoreError> {
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
        job_id: &JobId,
        chunk_index: ChunkIndex,
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

    /// Counts one contact's row on its chunk (and applies `update` to it), once: not when the
    /// chunk counts the contact already, is final, or is held by a bulk set.
    async fn count_row(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
        contact: ContactIndex,
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
        match out {
            Ok(out) => Ok(Ok(Counted {
                awaiting_link: out.attributes.as_ref().is_some_and(awaits_link),
            })),
            Err(e) => why_not_counted(e, contact, chunk_index),
        }
    }

    /// The transaction of a replacement: the put conditional on the exact row it replaces, and
    /// the chunk's counters moved by the difference (with `update` applied).
    fn replacement(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
        result: &ContactResult,
        update: Option<&ChunkUpdate>,
        (old, at): &(ContactResult, u64),
    ) -> Result<(Put, Update), StoreError> {
        let pk = job_pk(job_id);
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Data(e.to_string());
        let counts = Counts::of([result.outcome]).minus(Counts::of([old.outcome]));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.expiring(result_item(&pk, result))))
            .condition_expression("provisional = :t AND outcome = :o AND stored_at = :at")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":o", s(old.outcome.as_str()))
            .expression_attribute_values(":at", n(*at))
            .build()
            .map_err(build)?;
        let UpdateParts { b, expr } = match update {
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
        Ok((put, chunk))
    }

    /// A result taking the place of a stored row (provisional, or a deadline's placeholder):
    /// the put conditional on that exact row and the chunk's counters moved by the difference,
    /// in one transaction (rare: a late or final result over a stand-in).
    async fn replace_row(
        &self,
        job_id: &JobId,
        chunk_index: ChunkIndex,
        result: ContactResult,
        update: Option<ChunkUpdate>,
        mut replacing: (ContactResult, u64),
        mut stored: Stored,
    ) -> Result<Stored, StoreError> {
        for wait in crate::retry::exponential(LEASE_WAIT, 5).build() {
            let (put, chunk) =
                self.replacement(job_id, chunk_index, &result, update.as_ref(), &replacing)?;
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
}

/// Why a row's count was refused, from the chunk as its failed condition saw it: counted
/// already (or its chunk final), or held by a bulk set.
fn why_not_counted(
    e: aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError>,
    contact: ContactIndex,
    chunk_index: ChunkIndex,
) -> Result<Result<Counted, CountRefused>, StoreError> {
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
