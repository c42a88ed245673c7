//! [`DueIndex`] over DynamoDB: the `due` index's queries and takes.

use super::DynamoJobStore;
use super::attrs::unavailable;
use super::attrs::{Item, get_n, get_s, n, s, unless_condition_failed};
use super::items::item_size;
use super::items::parse_chunk;
use super::keys::{ERASE_SHARD, POLL_SHARDS, chunk_sk, final_sk, index_of};
use crate::ids::ChunkIndex;
use crate::ids::JobId;
use crate::jobs::ChunkStatus;
use crate::now_ms;
use crate::store::{Due, DueAction, DueIndex, FINAL_GROUP, ReadCost, StoreError};

impl DueIndex for DynamoJobStore {
    async fn due_chunks(
        &self,
        now_ms: u64,
        limit: usize,
        hold_ms: u64,
    ) -> Result<(Vec<Due>, ReadCost), StoreError> {
        let mut cost = ReadCost::default();
        let mut out = Vec::new();
        // The first shard turns with the minute, so a sweep that runs out of room before the
        // last shard does not leave the same shards waiting sweep after sweep.
        let first = (now_ms / 60_000) as u32 % POLL_SHARDS;
        for shard in (0..POLL_SHARDS).map(|i| (first + i) % POLL_SHARDS) {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name("due")
                    .key_condition_expression("poll_shard = :s AND poll_at <= :now")
                    .expression_attribute_values(":s", s(format!("poll#{shard}")))
                    .expression_attribute_values(":now", n(now_ms))
                    .set_exclusive_start_key(start)
                    .limit((limit - out.len()).clamp(1, 1000) as i32)
                    .send()
                    .await
                    .map_err(unavailable)?;
                cost.add_page(page.items(), false);
                for item in page.items() {
                    if out.len() >= limit {
                        // No room left: a group is not read for nothing (it stays due).
                        break;
                    }
                    let room = limit - out.len();
                    out.extend(due_of_entry(self, item, now_ms, room, hold_ms, &mut cost).await?);
                }
                start = page.last_evaluated_key;
                if start.is_none() || out.len() >= limit {
                    break;
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok((out, cost))
    }

    async fn due_erasures(&self, now_ms: u64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("due")
            .key_condition_expression("poll_shard = :s AND poll_at <= :now")
            .expression_attribute_values(":s", s(ERASE_SHARD))
            .expression_attribute_values(":now", n(now_ms))
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(page
            .items()
            .iter()
            .filter_map(|item| {
                Some(Due {
                    job_id: JobId::new(get_s(item, "pk")?.strip_prefix("JOB#")?),
                    chunk: None,
                    poll_at_ms: get_n(item, "poll_at")?,
                    action: DueAction::Erase,
                })
            })
            .collect())
    }

    async fn take_due(&self, due: &Due, hold_ms: u64) -> Result<Option<u64>, StoreError> {
        let next = now_ms() + hold_ms;
        let update = match due.chunk {
            Some(index) => self.chunk_item_update(&due.job_id, index),
            None => self.meta_item_update(&due.job_id),
        };
        let out = update
            .update_expression("SET poll_at = :next")
            .condition_expression("poll_at = :seen")
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":seen", n(due.poll_at_ms))
            .send()
            .await;
        Ok(unless_condition_failed(out)?.map(|_| next))
    }
}

/// What one entry of the `due` index makes due (at most `room`): a group's open chunks, a
/// chunk that entered the index itself (as chunks started before groups did; it leaves it
/// when it ends), or a job head (its callback).
async fn due_of_entry(
    store: &DynamoJobStore,
    item: &Item,
    now_ms: u64,
    room: usize,
    hold_ms: u64,
    cost: &mut ReadCost,
) -> Result<Vec<Due>, StoreError> {
    let job_id = get_s(item, "pk")
        .and_then(|p| p.strip_prefix("JOB#"))
        .map(JobId::new);
    let (Some(job_id), Some(poll_at)) = (job_id, get_n::<u64>(item, "poll_at")) else {
        return Ok(Vec::new());
    };
    let sk = get_s(item, "sk");
    if let Some(group) = index_of(sk, "CHUNK#~F") {
        let group = DueGroup {
            job_id: &job_id,
            group: group as u32,
            poll_at,
        };
        return due_in_group(store, &group, now_ms, room, hold_ms, cost).await;
    }
    let chunk = match sk {
        Some("META") => None,
        sk => match index_of(sk, "CHUNK#") {
            Some(i) => Some(ChunkIndex(i as u32)),
            None => return Ok(Vec::new()),
        },
    };
    Ok(vec![Due {
        job_id,
        chunk,
        poll_at_ms: poll_at,
        action: if chunk.is_some() {
            DueAction::Poll
        } else {
            DueAction::Callback
        },
    }])
}

/// A due group's open chunks due at `now_ms` (at most `room`); the group's next visit set
/// ([`DueIndex::due_chunks`]).
async fn due_in_group(
    store: &DynamoJobStore,
    g: &DueGroup<'_>,
    now_ms: u64,
    room: usize,
    hold_ms: u64,
    cost: &mut ReadCost,
) -> Result<Vec<Due>, StoreError> {
    let first = g.group * FINAL_GROUP;
    let items = store
        .query_range(
            g.job_id,
            &chunk_sk(ChunkIndex(first)),
            &chunk_sk(ChunkIndex(first + FINAL_GROUP - 1)),
            None,
        )
        .await?;
    // Read strongly: a chunk just started or just ended is seen as it is.
    cost.add_page(&items, true);
    let mut due = Vec::new();
    // When the group is next due: its earliest open chunk's poll (a chunk returned here is
    // taken for `hold_ms`; one not started yet is looked at again `poll_after_ms` on).
    let mut next: Option<u64> = None;
    for item in &items {
        let chunk = parse_chunk(item)?;
        if chunk.status.is_final() {
            continue;
        }
        // A chunk not started yet carries its start's due time in `poll_at` too: its start
        // message is sent again when that passes (lost, or its worker gone).
        let action = match chunk.status {
            ChunkStatus::Submitted => DueAction::Poll,
            ChunkStatus::StartUnconfirmed => DueAction::ConfirmCheck,
            _ => DueAction::Start,
        };
        let at = match get_n::<u64>(item, "poll_at") {
            Some(at) if at <= now_ms && due.len() < room => {
                due.push(Due {
                    job_id: g.job_id.clone(),
                    chunk: Some(chunk.index),
                    poll_at_ms: at,
                    action,
                });
                now_ms + hold_ms
            }
            Some(at) => at,
            None => now_ms + store.poll_after_ms,
        };
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    let update = store.item_update(g.job_id, &final_sk(ChunkIndex(first)));
    let out = match next {
        // Every chunk final: out of the index, unless a start moved the group meanwhile.
        None => {
            update
                .update_expression("REMOVE poll_at, poll_shard")
                .condition_expression("poll_at = :seen")
                .expression_attribute_values(":seen", n(g.poll_at))
                .send()
                .await
        }
        // Chunks left due that this sweep had no room for: the group stays due.
        Some(next) if next <= now_ms => return Ok(due),
        // Later, unless a start meanwhile wants it sooner.
        Some(next) => {
            update
                .update_expression("SET poll_at = :next")
                .condition_expression("poll_at = :seen OR poll_at > :next")
                .expression_attribute_values(":seen", n(g.poll_at))
                .expression_attribute_values(":next", n(next))
                .send()
                .await
        }
    };
    unless_condition_failed(out)?;
    Ok(due)
}

/// A group found in the `due` index.
struct DueGroup<'a> {
    job_id: &'a JobId,
    group: u32,
    poll_at: u64,
}

impl ReadCost {
    fn add_page(&mut self, items: &[Item], consistent: bool) {
        let bytes: usize = items.iter().map(item_size).sum();
        self.queries += 1;
        self.items += items.len();
        self.bytes += bytes;
        let unit = if consistent { 1.0 } else { 0.5 };
        self.read_units += (bytes.div_ceil(4096).max(1)) as f64 * unit;
    }
}
