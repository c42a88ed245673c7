//! The groups of final chunks, and a job's figures summed over its chunk range.

use super::DynamoJobStore;
use super::attrs::unavailable;
use super::attrs::{Item, get_n, get_s, n, s, unless_condition_failed};
use super::counts::JOB_COUNTS;
use super::keys::{final_sk, job_pk};
use super::requests::bound;
use crate::ids::{ChunkIndex, JobId};
use crate::jobs::{ChunkStatus, JobMeta};
use crate::now_ms;
use crate::store::Jobs;
use crate::store::counts::Counts;
use crate::store::{FINAL_GROUP, FinalGroup, StoreError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

/// What a job's chunk range (`CHUNK#…`, groups and duplicate shards included) adds up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Figures {
    pub(super) counts: Counts,
    pub(super) duplicates: u64,
    /// Chunk indices recorded in the groups of final chunks.
    pub(super) final_chunks: u64,
    /// Every chunk item read is final.
    pub(super) all_final: bool,
    /// Every final chunk but a split one is marked passed on (a waterfall step's).
    pub(super) all_passed: bool,
}

impl Figures {
    pub(super) fn of(items: &[Item]) -> Figures {
        let mut f = Figures {
            all_final: true,
            all_passed: true,
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
                let passed = matches!(item.get("passed"), Some(AttributeValue::Bool(true)));
                f.all_passed &= passed || status == Some(ChunkStatus::Split);
            }
        }
        f
    }
}

impl DynamoJobStore {
    /// Records a final chunk in its group (a number set: adding it twice is adding it once).
    /// Returns the group as left.
    pub(super) async fn mark_final(
        &self,
        job_id: &JobId,
        index: ChunkIndex,
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
            group: index.0 / FINAL_GROUP,
            size,
        })
    }

    /// The job's chunk range summed (`only_duplicates`: the duplicate shards alone).
    pub(super) async fn figures(
        &self,
        job_id: &JobId,
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
    pub(super) async fn with_figures(&self, meta: JobMeta) -> Result<JobMeta, StoreError> {
        let f = self
            .figures(&meta.job_id, meta.status.is_terminal())
            .await?;
        Ok(with(meta, f))
    }

    /// [`Self::with_figures`] from the job's `CHUNK#` items already read (chunks, groups,
    /// duplicate shards): a job that ended keeps its settled counts.
    pub(super) fn with_figures_of(meta: JobMeta, items: &[Item]) -> JobMeta {
        with(meta, Figures::of(items))
    }
    /// A job that ended keeps its figures on its head: a change to its counters after that (a
    /// late result replacing a deadline's placeholder) sums them again.
    pub(super) async fn refresh_if_ended(&self, job_id: &JobId) -> Result<(), StoreError> {
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

/// The head with the figures summed: the counts while the job runs (once it ended its head
/// keeps the settled ones), duplicates always.
fn with(mut meta: JobMeta, f: Figures) -> JobMeta {
    if !meta.status.is_terminal() {
        let c = f.counts;
        meta.done = c.done.max(0) as u64;
        meta.found = c.found.max(0) as u64;
        meta.not_found = c.not_found.max(0) as u64;
        meta.failed = c.failed.max(0) as u64;
    }
    meta.duplicates = f.duplicates;
    meta
}
