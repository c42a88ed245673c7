//! [`Waterfalls`] over the jobs table. A pass-on is one transaction: the target step's head
//! takes the next contact and chunk indices (only while `open`, conditional on the indices it
//! was read with), its new chunk items, a record `FWD#<source job>#<chunk:05>` of what it took
//! (so the same pass-on again returns it), and the source head's `fwd_*` counters. Routes are
//! items `ROUTE#<index:07>#<position:02>` under the waterfall's head.

use crate::retry::BackoffBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::DynamoJobStore;
use super::attrs::{Item, get_n, n, put_request, s, unless_condition_failed};
use super::items::{chunk_item, contact_item, parse_result};
use super::keys::{chunk_sk, final_sk, job_pk, poll_shard, result_sk};
use crate::ids::{ChunkIndex, ContactIndex, JobId};
use crate::jobs::{Chunk, Contact, ContactResult, JobStatus};
use crate::now_ms;
use crate::store::counts::Counts;
use crate::store::{PassOn, Passed, StoreError, WaterfallFigures, Waterfalls};
use crate::waterfall::Route;

fn fwd_sk(from: &JobId, chunk: ChunkIndex) -> String {
    format!("FWD#{from}#{chunk:05}")
}

fn route_sk(index: ContactIndex, position: usize) -> String {
    format!("ROUTE#{index:07}#{position:02}")
}

#[derive(Serialize, Deserialize)]
struct RouteItem {
    pk: String,
    sk: String,
    route: String,
}

type UpdateBuilder = aws_sdk_dynamodb::types::builders::UpdateBuilder;

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Data(e.to_string())
}

fn update(u: UpdateBuilder) -> Result<TransactWriteItem, StoreError> {
    Ok(TransactWriteItem::builder()
        .update(u.build().map_err(build_error)?)
        .build())
}

/// A put of a new item (none at its key yet) into `table`.
fn put_new(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)");
    Ok(TransactWriteItem::builder()
        .put(put.build().map_err(build_error)?)
        .build())
}

impl Waterfalls for DynamoJobStore {
    async fn pass_on(&self, p: &PassOn) -> Result<Passed, StoreError> {
        let mut waits = crate::retry::exponential(std::time::Duration::from_millis(20), 8).build();
        loop {
            if let Some(done) = self.passed(p).await? {
                return Ok(done);
            }
            let head = self
                .item(&p.to, "META")
                .await?
                .ok_or_else(|| StoreError::Data(format!("no job {}", p.to)))?;
            if !head.contains_key("open") || head.contains_key("deleted_at") {
                return Err(StoreError::Conflict(format!("step {} is closed", p.to)));
            }
            let base: u64 = get_n(&head, "contacts").unwrap_or(0);
            let seq: u64 = get_n(&head, "chunk_seq")
                .or_else(|| get_n(&head, "chunks"))
                .unwrap_or(0);
            let first = u32::try_from(seq)
                .map_err(|_| StoreError::Data("chunk index out of range".into()))?;
            let chunks = Chunk::plan_range(base, p.count, p.chunk_size, first);
            let items = self.pass_on_items(p, base, seq, &chunks)?;
            match self.transact(&items).await? {
                None => return Ok(Passed { base, chunks }),
                // Another pass-on took these indices first, or made this one: read again.
                Some(_) => match waits.next() {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => {
                        return Err(StoreError::unavailable(
                            "the pass-on's transaction kept conflicting",
                        ));
                    }
                },
            }
        }
    }

    async fn write_contacts(&self, job_id: &JobId, contacts: &[Contact]) -> Result<(), StoreError> {
        let pk = job_pk(job_id);
        let requests = contacts
            .iter()
            .map(|c| put_request(self.expiring(contact_item(&pk, c))))
            .collect();
        self.batch_write_all(requests).await
    }

    async fn mark_passed(&self, job_id: &JobId, index: ChunkIndex) -> Result<(), StoreError> {
        let out = self
            .item_update(job_id, &chunk_sk(index))
            .update_expression("SET passed = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        unless_condition_failed(out).map(|_| ())
    }

    async fn put_routes(&self, waterfall: &JobId, routes: &[Route]) -> Result<(), StoreError> {
        let pk = job_pk(waterfall);
        let requests = routes
            .iter()
            .map(|r| {
                let item = serde_dynamo::to_item(RouteItem {
                    pk: pk.clone(),
                    sk: route_sk(r.index, r.position),
                    route: serde_json::to_string(r).expect("a route serializes"),
                })
                .expect("a route item serializes");
                put_request(self.expiring(item))
            })
            .collect();
        self.batch_write_all(requests).await
    }

    async fn routes(
        &self,
        waterfall: &JobId,
        from: ContactIndex,
        to: ContactIndex,
    ) -> Result<Vec<Route>, StoreError> {
        let items = self
            .query_range(
                waterfall,
                &route_sk(from, 0),
                &format!("ROUTE#{to:07}#~"),
                None,
            )
            .await?;
        items
            .iter()
            .map(|i| {
                let r: RouteItem = serde_dynamo::from_item(i.clone())
                    .map_err(|e| StoreError::Data(format!("unreadable route: {e}")))?;
                serde_json::from_str(&r.route)
                    .map_err(|e| StoreError::Data(format!("unreadable route: {e}")))
            })
            .collect()
    }

    async fn results_at(
        &self,
        job_id: &JobId,
        indices: &[ContactIndex],
    ) -> Result<Vec<ContactResult>, StoreError> {
        let pk = job_pk(job_id);
        let mut out = Vec::with_capacity(indices.len());
        for part in indices.chunks(100) {
            let keys = part
                .iter()
                .map(|i| Item::from([("pk".into(), s(&pk)), ("sk".into(), s(result_sk(*i)))]))
                .collect();
            for item in self.batch_get(keys).await? {
                out.push(parse_result(&item)?);
            }
        }
        out.sort_by_key(|r| r.index);
        Ok(out)
    }

    async fn close_step(&self, job_id: &JobId) -> Result<(), StoreError> {
        let out = self
            .meta_item_update(job_id)
            .update_expression("REMOVE #open SET updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#open", "open")
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await;
        unless_condition_failed(out).map(|_| ())
    }

    async fn settle_waterfall(
        &self,
        job_id: &JobId,
        f: WaterfallFigures,
    ) -> Result<Option<JobStatus>, StoreError> {
        let Some(meta) = crate::store::Jobs::get_job(self, job_id).await? else {
            return Ok(None);
        };
        if meta.status.is_terminal() || meta.deleted {
            return Ok(None);
        }
        let counts = Counts {
            done: f.done as i64,
            found: f.found as i64,
            not_found: f.not_found as i64,
            failed: f.failed as i64,
        };
        let status = JobStatus::settled(meta.contacts, f.failed);
        self.write_settled(&meta, counts, status).await
    }
}

impl DynamoJobStore {
    /// The record of a pass-on made before, if any.
    async fn passed(&self, p: &PassOn) -> Result<Option<Passed>, StoreError> {
        let Some(item) = self.item(&p.to, &fwd_sk(&p.from, p.chunk)).await? else {
            return Ok(None);
        };
        let base: u64 = get_n(&item, "base").unwrap_or(0);
        let first: u32 = get_n(&item, "first").unwrap_or(0);
        let count: u64 = get_n(&item, "count").unwrap_or(0);
        let size: u64 = get_n(&item, "size").unwrap_or(1);
        Ok(Some(Passed {
            base,
            chunks: Chunk::plan_range(base, count, size, first),
        }))
    }

    fn pass_on_items(
        &self,
        p: &PassOn,
        base: u64,
        seq: u64,
        chunks: &[Chunk],
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let pk = job_pk(&p.to);
        let mut items = vec![
            update(self.take_indices(p, &pk, base, seq, chunks.len() as u64))?,
            put_new(&self.table, self.pass_record(p, &pk, base, seq))?,
        ];
        let start_due = now_ms() + self.start_overdue_ms;
        let mut groups = std::collections::BTreeSet::new();
        for c in chunks {
            let mut item = self.expiring(chunk_item(&pk, c));
            item.insert("poll_at".into(), n(start_due));
            items.push(put_new(&self.table, item)?);
            groups.insert(final_sk(c.index));
        }
        for sk in groups {
            items.push(update(self.group_of(p, &pk, sk, start_due))?);
        }
        if p.not_found + p.failed > 0 {
            items.push(update(self.passed_on_counts(p))?);
        }
        Ok(items)
    }

    /// The target head takes contact indices `base ..` and chunk indices `seq ..`, only while
    /// open and still at them.
    fn take_indices(&self, p: &PassOn, pk: &str, base: u64, seq: u64, k: u64) -> UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("META"))
            .update_expression(
                "SET contacts = :next, chunks = chunks + :k, chunk_seq = :seq_next, updated_at = :now",
            )
            .condition_expression(
                "attribute_exists(#open) AND attribute_not_exists(deleted_at) AND contacts = :base AND (chunk_seq = :seq OR (attribute_not_exists(chunk_seq) AND chunks = :seq))",
            )
            .expression_attribute_names("#open", "open")
            .expression_attribute_values(":next", n(base + p.count))
            .expression_attribute_values(":k", n(k))
            .expression_attribute_values(":seq_next", n(seq + k))
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":base", n(base))
            .expression_attribute_values(":seq", n(seq))
    }

    /// The record of the pass-on, in the target (what a call again returns).
    fn pass_record(&self, p: &PassOn, pk: &str, base: u64, seq: u64) -> Item {
        self.expiring(Item::from([
            ("pk".to_string(), s(pk)),
            ("sk".to_string(), s(fwd_sk(&p.from, p.chunk))),
            ("base".to_string(), n(base)),
            ("first".to_string(), n(seq)),
            ("count".to_string(), n(p.count)),
            ("size".to_string(), n(p.chunk_size)),
        ]))
    }

    /// A new chunk's group of final chunks, made if missing (one that holds final chunks
    /// already keeps its `f` set).
    fn group_of(&self, p: &PassOn, pk: &str, sk: String, due: u64) -> UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(
                "SET poll_shard = if_not_exists(poll_shard, :shard), poll_at = if_not_exists(poll_at, :due), expires_at = if_not_exists(expires_at, :exp)",
            )
            .expression_attribute_values(":shard", s(poll_shard(&p.to)))
            .expression_attribute_values(":due", n(due))
            .expression_attribute_values(":exp", n(self.expires_at()))
    }

    /// The source head's count of what it passed on.
    fn passed_on_counts(&self, p: &PassOn) -> UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(&p.from)))
            .key("sk", s("META"))
            .update_expression("ADD fwd_not_found :nf, fwd_failed :f")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":nf", n(p.not_found))
            .expression_attribute_values(":f", n(p.failed))
    }
}
