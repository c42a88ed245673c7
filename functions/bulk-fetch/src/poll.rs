//! A poll of a started chunk whose results have not come, its deadline, and its end when the
//! provider no longer knows it or the deadline passed.

use std::time::Duration;

use relay_shared::Provider;
use relay_shared::envelope::PollTarget;
use relay_shared::jobs::{Chunk, ChunkStatus, ContactResult, JobError, JobMeta, reasons};
use relay_shared::now_ms;
use relay_shared::store::{
    ChunkRef, ChunkUpdate, DEFAULT_POLL_AFTER_MS, Jobs, MAX_POLL_EVERY_MS, Polls, Results,
    StoreError,
};

use crate::{Action, Deps, Disposition, EventKey, FetchWorker};

impl<S: Deps> FetchWorker<S> {
    /// A poll of a started chunk whose results have not come (the sweeper's message): one GET by
    /// its provider id, then the results applied under the same key as the notification they
    /// stand for (FullEnrich `fe:batch:{id}:{status}`, Enrow `enrow:{event}:{id}`), so a webhook
    /// and a poll of one completion apply once. Not ready: the next poll waits twice as long,
    /// up to an hour.
    pub(crate) async fn poll(&self, target: &PollTarget) -> Disposition {
        let job_id = target.job_id.as_str();
        let meta = match self.jobs.get_job(job_id).await {
            Ok(Some(meta)) if meta.deleted => {
                return Disposition::Polled("the job was deleted".into());
            }
            Ok(Some(meta)) => meta,
            Ok(None) => return Disposition::Parked("poll of an unknown job".into()),
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let chunk = match self.jobs.chunk(job_id, target.chunk).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Disposition::Parked("poll of an unknown chunk".into()),
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let Some(pid) = chunk
            .provider_id
            .clone()
            .filter(|_| chunk.status == ChunkStatus::Submitted)
        else {
            return Disposition::Polled(format!("chunk is {}", chunk.status.as_str()));
        };
        // The sweeper's take of this poll, once: a second delivery of the same message makes
        // no second GET.
        if let Some(taken) = target.taken_at_ms {
            match self.jobs.claim_poll(job_id, chunk.index, taken).await {
                Ok(true) => {}
                Ok(false) => return Disposition::Polled("this poll was made already".into()),
                Err(e) => return Disposition::Retry(e.to_string()),
            }
        }
        let result = match self.fetch_for_poll(&meta, &chunk, &pid).await {
            Ok((key, action)) => {
                self.apply_once(&meta, &key.scoped(job_id), action, false)
                    .await
            }
            Err(f) => Err(f),
        };
        let failure = match result {
            Ok(Disposition::Duplicate) => {
                return Disposition::Polled("applied already (by its webhook)".into());
            }
            Ok(d) => return d,
            Err(failure) => failure,
        };
        self.after_failed_poll(&meta, &chunk, failure).await
    }

    /// A poll that applied nothing: past the job's deadline the chunk's open contacts time out;
    /// an id the provider does not know ends the chunk; results not ready wait twice as long.
    async fn after_failed_poll(
        &self,
        meta: &JobMeta,
        chunk: &Chunk,
        failure: Disposition,
    ) -> Disposition {
        let job_id = meta.job_id.as_str();
        // Nothing came back. Past the job's deadline, the chunk's open contacts time out,
        // whatever the provider answered.
        match self.past_deadline(meta, chunk).await {
            Ok(true) => return self.time_out(meta, chunk).await,
            Ok(false) => {}
            Err(e) => return Disposition::Retry(e.to_string()),
        }
        let reason = match failure {
            // The provider does not know the id (FullEnrich 404, Enrow "Could not retrieve"):
            // no poll will ever find it, so the chunk ends now with the provider's reason.
            Disposition::Parked(reason) => return self.end_lost(meta, chunk, &reason).await,
            // No request slot this time: the chunk stays taken by the sweep until its hold
            // ends, then the next sweep polls it (nothing was spent).
            Disposition::Paced(_) => {
                return Disposition::Polled("waiting for a request slot".into());
            }
            Disposition::Deferred(_, reason) => reason,
            // The sweeper took the chunk until its next due time: it polls again then.
            Disposition::Retry(reason) => return Disposition::Polled(format!("failed: {reason}")),
            other => return Disposition::Polled(format!("failed: {other:?}")),
        };
        // Not ready: the next poll waits twice as long, up to an hour, and not past the chunk's
        // own deadline.
        let every = chunk.poll_every_ms.unwrap_or(DEFAULT_POLL_AFTER_MS);
        let to_deadline = chunk
            .started_at_ms
            .map(|t| (t + self.deadline_of(meta).as_millis() as u64).saturating_sub(now_ms()))
            .unwrap_or(u64::MAX)
            .max(1000);
        let next = (every * 2).min(MAX_POLL_EVERY_MS).min(to_deadline);
        match self.jobs.poll_later(job_id, chunk.index, next).await {
            Ok(()) => Disposition::Polled(format!("{reason}; next poll in {} s", next / 1000)),
            Err(e) => Disposition::Polled(format!("{reason}; not rescheduled: {e}")),
        }
    }

    /// The one GET of a poll, by the chunk's provider id: the event it stands for and its key.
    async fn fetch_for_poll(
        &self,
        meta: &JobMeta,
        chunk: &Chunk,
        pid: &str,
    ) -> Result<(EventKey, Action), Disposition> {
        match meta.provider {
            Provider::Fullenrich => self.poll_fullenrich(meta.operation, pid).await,
            // A chunk of one contact was started on the single endpoint.
            Provider::Enrow => self.poll_enrow(meta.operation, pid, chunk.count == 1).await,
        }
    }

    /// A poll's provider does not know the chunk's id: its contacts without a result end
    /// `failed` with [`reasons::PROVIDER_LOST`] (results already stored stand), the chunk ends
    /// `failed` with the provider's answer, and the job settles.
    async fn end_lost(&self, meta: &JobMeta, chunk: &Chunk, answer: &str) -> Disposition {
        let job_id = meta.job_id.as_str();
        let contacts = match self.jobs.contacts(job_id, chunk.offset, chunk.count).await {
            Ok(c) => c,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let results = contacts
            .iter()
            .map(|c| ContactResult::failed(c, reasons::PROVIDER_LOST))
            .collect();
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Failed,
            credits: None,
            error: Some(JobError::new(
                reasons::PROVIDER_LOST,
                format!("the provider does not know this chunk's id ({answer})"),
            )),
        };
        let stored = match self
            .jobs
            .store_chunk(job_id, ChunkRef::from(chunk), results, update)
            .await
        {
            Ok(s) => s,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        if let Err(d) = self.settle_after(meta, &stored).await {
            return d;
        }
        tracing::warn!(
            job_id,
            chunk = chunk.index,
            failed = stored.new,
            "poll: the provider does not know the chunk's id; chunk ended"
        );
        Disposition::Polled(format!("ended: {answer}"))
    }

    /// How long this job waits for its results after its last chunk started.
    pub(crate) fn deadline_of(&self, meta: &JobMeta) -> Duration {
        meta.deadline(self.deadline)
    }

    /// Whether the job's deadline has passed: every chunk has started (or is final), and the
    /// last one started longer ago than the job's deadline. Cheap while `chunk`'s own start is
    /// recent; then one query of the job's chunks.
    async fn past_deadline(&self, meta: &JobMeta, chunk: &Chunk) -> Result<bool, StoreError> {
        let wait = self.deadline_of(meta).as_millis() as u64;
        let now = now_ms();
        let started = |c: &Chunk| c.started_at_ms.unwrap_or(meta.created_at_ms);
        if started(chunk) + wait > now {
            return Ok(false);
        }
        let mut last = 0;
        for c in self.jobs.chunks(&meta.job_id).await? {
            match c.status {
                ChunkStatus::Submitted => last = last.max(started(&c)),
                s if s.is_final() => last = last.max(c.started_at_ms.unwrap_or(0)),
                // Not started yet (or its start is unconfirmed, which has its own timeout).
                _ => return Ok(false),
            }
        }
        Ok(last + wait <= now)
    }

    /// The deadline passed: the chunk's contacts without a result get a `timed_out`
    /// placeholder (a late result still replaces it, moving the counters exactly), the chunk
    /// ends `failed`, and the job settles (`partially_failed`, or `failed` if nothing came).
    async fn time_out(&self, meta: &JobMeta, chunk: &Chunk) -> Disposition {
        let job_id = meta.job_id.as_str();
        let hours = self.deadline_of(meta).as_secs() / 3600;
        let contacts = match self.jobs.contacts(job_id, chunk.offset, chunk.count).await {
            Ok(c) => c,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let placeholders = contacts.iter().map(ContactResult::timed_out).collect();
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Failed,
            credits: None,
            error: Some(JobError::new(
                reasons::TIMED_OUT,
                format!("no results {hours} h after the job's last chunk started"),
            )),
        };
        let stored = match self
            .jobs
            .store_chunk(job_id, ChunkRef::from(chunk), placeholders, update)
            .await
        {
            Ok(s) => s,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        if let Err(d) = self.settle_after(meta, &stored).await {
            return d;
        }
        tracing::warn!(
            job_id,
            chunk = chunk.index,
            timed_out = stored.new,
            "deadline passed: open contacts timed out"
        );
        Disposition::TimedOut(stored.new)
    }
}
