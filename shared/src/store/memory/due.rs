//! [`DueIndex`] in memory.

use super::MemoryJobs;
use crate::ids::JobId;
use crate::jobs::ChunkStatus;
use crate::now_ms;
use crate::store::{Due, DueAction, DueIndex, ReadCost, StoreError};

impl DueIndex for MemoryJobs {
    async fn due_chunks(
        &self,
        now_ms: u64,
        limit: usize,
        _hold_ms: u64,
    ) -> Result<(Vec<Due>, ReadCost), StoreError> {
        let jobs = self.jobs.lock().unwrap();
        let mut ids: Vec<&JobId> = jobs.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let job = &jobs[id];
            let chunks = job.chunks.values().filter_map(|c| {
                let at = job.chunk_due(c).filter(|at| *at <= now_ms)?;
                let action = match c.status {
                    ChunkStatus::Submitted => DueAction::Poll,
                    ChunkStatus::StartUnconfirmed => DueAction::ConfirmCheck,
                    _ => DueAction::Start,
                };
                Some((Some(c.index), at, action))
            });
            let callback = job
                .callback_due
                .filter(|at| *at <= now_ms)
                .map(|at| (None, at, DueAction::Callback));
            out.extend(
                callback
                    .into_iter()
                    .chain(chunks)
                    .map(|(chunk, at, action)| Due {
                        job_id: id.clone(),
                        chunk,
                        poll_at_ms: at,
                        action,
                    }),
            );
        }
        out.truncate(limit);
        Ok((out, ReadCost::default()))
    }

    async fn due_erasures(&self, now_ms: u64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        let mut out: Vec<Due> = jobs
            .iter()
            .filter_map(|(id, job)| {
                let at = job.erasure_due().filter(|at| *at <= now_ms)?;
                Some(Due {
                    job_id: id.clone(),
                    chunk: None,
                    poll_at_ms: at,
                    action: DueAction::Erase,
                })
            })
            .collect();
        out.sort_by_key(|d| d.poll_at_ms);
        out.truncate(limit);
        Ok(out)
    }

    async fn take_due(&self, due: &Due, hold_ms: u64) -> Result<Option<u64>, StoreError> {
        let next = now_ms() + hold_ms;
        let mut jobs = self.jobs.lock().unwrap();
        let Some(job) = jobs.get_mut(&due.job_id) else {
            return Ok(None);
        };
        let seen = Some(due.poll_at_ms);
        Ok(match (due.action, due.chunk) {
            (DueAction::Erase, _) if job.erasure_due() == seen => {
                job.erase_due = Some(next);
                Some(next)
            }
            (DueAction::Callback, None) if job.callback_due == seen => {
                job.callback_due = Some(next);
                Some(next)
            }
            (_, Some(index)) => {
                let Some(c) = job.chunks.get(&index) else {
                    return Ok(None);
                };
                if job.chunk_due(c) != seen {
                    return Ok(None);
                }
                let status = c.status;
                job.taken.insert(index, (status, next));
                Some(next)
            }
            _ => None,
        })
    }
}
