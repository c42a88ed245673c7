//! A poll of a started chunk whose results have not come, its deadline, and its end when the
//! provider no longer knows it or the deadline passed.

use std::time::Duration;

use relay_shared::Provider;
use relay_shared::envelope::PollTarget;
use relay_shared::jobs::{Chunk, ChunkStatus, Contact, ContactResult, JobError, JobMeta, reasons};
use relay_shared::now_ms;
use relay_shared::store::{
    ChunkRef, ChunkUpdate, DEFAULT_POLL_AFTER_MS, Jobs, MAX_POLL_EVERY_MS, Polls, Results,
    StoreError, Stored,
};

use crate::gate::Applied;
use crate::{Action, Deps, Disposition, EventKey, Failure, FetchWorker};
use relay_shared::ProviderId;

impl<S: Deps> FetchWorker<S> {
    /// A poll of a started chunk whose results have not come (the sweeper's message): one GET by
    /// its provider id, then the results applied under the same key as the notification they
    /// stand for (FullEnrich `fe:batch:{id}:{status}`, Enrow `enrow:{event}:{id}`), so a webhook
    /// and a poll of one completion apply once. Not ready: the next poll waits twice as long,
    /// up to an hour.
    pub(crate) async fn poll(&self, target: &PollTarget) -> Disposition {
        self.try_poll(target)
            .await
            .unwrap_or_else(Disposition::from)
    }

    async fn try_poll(&self, target: &PollTarget) -> Result<Disposition, Failure> {
        let job_id = &target.job_id;
        let meta = match self.jobs.get_job(job_id).await? {
            Some(meta) if meta.deleted => {
                return Ok(Disposition::Polled("the job was deleted".into()));
            }
            Some(meta) => meta,
            None => return Err(Failure::unprocessable("poll of an unknown job")),
        };
        let chunk = self
            .jobs
            .chunk(job_id, target.chunk)
            .await?
            .ok_or_else(|| Failure::unprocessable("poll of an unknown chunk"))?;
        let Some(pid) = chunk
            .provider_id
            .clone()
            .filter(|_| chunk.status == ChunkStatus::Submitted)
        else {
            return Ok(Disposition::Polled(format!(
                "chunk is {}",
                chunk.status.as_str()
            )));
        };
        // The sweeper's take of this poll, once: a second delivery of the same message makes
        // no second GET.
        if let Some(taken) = target.taken_at_ms
            && !self.jobs.claim_poll(job_id, chunk.index, taken).await?
        {
            return Ok(Disposition::Polled("this poll was made already".into()));
        }
        let outcome = match self.fetch_for_poll(&meta, &chunk, &pid).await {
            Ok(Some((key, action))) => self
                .apply_once(&meta, &key.scoped(job_id), action, false)
                .await
                .map_or_else(Disposition::from, Disposition::from),
            Ok(None) => Applied::Later("results not ready".into()).into(),
            Err(failure) => failure.into(),
        };
        match outcome {
            Disposition::Duplicate => Ok(Disposition::Polled(
                "applied already (by its webhook)".into(),
            )),
            applied @ Disposition::Applied { .. } => Ok(applied),
            unapplied => self.after_failed_poll(&meta, &chunk, unapplied).await,
        }
    }

    /// A poll that applied nothing (`unapplied`: what the delivery came to): past the job's
    /// deadline the chunk's open contacts time out; an id the provider does not know ends the
    /// chunk; results not ready wait twice as long.
    async fn after_failed_poll(
        &self,
        meta: &JobMeta,
        chunk: &Chunk,
        unapplied: Disposition,
    ) -> Result<Disposition, Failure> {
        let job_id = &meta.job_id;
        // Nothing came back. Past the job's deadline, the chunk's open contacts time out,
        // whatever the provider answered.
        if self.past_deadline(meta, chunk).await? {
            return self.time_out(meta, chunk).await;
        }
        let reason = match unapplied {
            // The provider does not know the id (FullEnrich 404, Enrow "Could not retrieve"):
            // no poll will ever find it, so the chunk ends now with the provider's reason.
            Disposition::Parked(reason) => return self.end_lost(meta, chunk, &reason).await,
            // No request slot this time: the chunk stays taken by the sweep until its hold
            // ends, then the next sweep polls it (nothing was spent).
            Disposition::Paced(_) => {
                return Ok(Disposition::Polled("waiting for a request slot".into()));
            }
            Disposition::Deferred(_, reason) => reason,
            // The sweeper took the chunk until its next due time: it polls again then.
            Disposition::Retry(reason) => {
                return Ok(Disposition::Polled(format!("failed: {reason}")));
            }
            other => return Ok(Disposition::Polled(format!("failed: {other:?}"))),
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
        Ok(
            match self.jobs.poll_later(job_id, chunk.index, next).await {
                Ok(()) => Disposition::Polled(format!("{reason}; next poll in {} s", next / 1000)),
                Err(e) => Disposition::Polled(format!("{reason}; not rescheduled: {e}")),
            },
        )
    }

    /// The one GET of a poll, by the chunk's provider id: the event it stands for and its key
    /// (`None`: its results are not ready).
    async fn fetch_for_poll(
        &self,
        meta: &JobMeta,
        chunk: &Chunk,
        pid: &ProviderId,
    ) -> Result<Option<(EventKey, Action)>, Failure> {
        match meta.provider {
            Provider::Fullenrich => self.poll_fullenrich(meta.operation, pid).await,
            // A chunk of one contact was started on the single endpoint.
            Provider::Enrow => Ok(Some(
                self.poll_enrow(meta.operation, pid, chunk.count == 1)
                    .await?,
            )),
        }
    }

    /// A poll's provider does not know the chunk's id: its contacts without a result end
    /// `failed` with [`reasons::PROVIDER_LOST`] (results already stored stand), the chunk ends
    /// `failed` with the provider's answer, and the job settles.
    async fn end_lost(
        &self,
        meta: &JobMeta,
        chunk: &Chunk,
        answer: &str,
    ) -> Result<Disposition, Failure> {
        let error = JobError::new(
            reasons::PROVIDER_LOST,
            format!("the provider does not know this chunk's id ({answer})"),
        );
        let failed = |c: &Contact| ContactResult::failed(c, reasons::PROVIDER_LOST);
        let stored = self.end_chunk(meta, chunk, failed, error).await?;
        tracing::warn!(
            job_id = meta.job_id.as_str(),
            chunk = chunk.index.get(),
            failed = stored.new,
            "poll: the provider does not know the chunk's id; chunk ended"
        );
        Ok(Disposition::Polled(format!("ended: {answer}")))
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
    async fn time_out(&self, meta: &JobMeta, chunk: &Chunk) -> Result<Disposition, Failure> {
        let hours = self.deadline_of(meta).as_secs() / 3600;
        let error = JobError::new(
            reasons::TIMED_OUT,
            format!("no results {hours} h after the job's last chunk started"),
        );
        let stored = self
            .end_chunk(meta, chunk, ContactResult::timed_out, error)
            .await?;
        tracing::warn!(
            job_id = meta.job_id.as_str(),
            chunk = chunk.index.get(),
            timed_out = stored.new,
            "deadline passed: open contacts timed out"
        );
        Ok(Disposition::TimedOut(stored.new))
    }

    /// Ends the chunk `failed` with `error`, each of its contacts without a result given
    /// `result(contact)` (a result already stored stands), and settles the job.
    async fn end_chunk(
        &self,
        meta: &JobMeta,
        chunk: &Chunk,
        result: impl Fn(&Contact) -> ContactResult,
        error: JobError,
    ) -> Result<Stored, Failure> {
        let job_id = &meta.job_id;
        let contacts = self
            .jobs
            .contacts(job_id, chunk.offset, chunk.count)
            .await?;
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Failed,
            credits: None,
            error: Some(error),
        };
        let results = contacts.iter().map(result).collect();
        let stored = self
            .jobs
            .store_chunk(job_id, ChunkRef::from(chunk), results, update)
            .await?;
        self.settle_after(meta, &stored).await?;
        Ok(stored)
    }
}
