//! The webhook queue's messages: a poll, a callback, or a delivery (its body read, its event
//! parsed, its job found), each to its stage.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use relay_shared::bodies::BodyStore;
use relay_shared::callback::{Attempted, CallbackRequest, CallbackTarget};
use relay_shared::envelope::{Body, Envelope, WebhookMessage};
use relay_shared::now_ms;
use relay_shared::providers::Hook;
use relay_shared::queue::{MAX_DELAY, Queue};
use relay_shared::store::{Jobs, OrphanStore};
use sha2::{Digest, Sha256};

use crate::gate::Applied;
use crate::{Deps, Disposition, Failure, FetchWorker, parse};
use relay_shared::JobId;

/// What became of one record: its disposition, the delivery's envelope, whether it was a poll,
/// and the job it named.
pub(crate) struct Processed {
    pub disposition: Disposition,
    pub envelope: Option<Envelope>,
    pub poll: bool,
    pub job_id: Option<JobId>,
}

impl Processed {
    fn of(disposition: Disposition) -> Processed {
        Processed {
            disposition,
            envelope: None,
            poll: false,
            job_id: None,
        }
    }
}

impl<S: Deps> FetchWorker<S> {
    /// What became of a record, decoded once: a poll, a callback attempt, or a delivery (its
    /// envelope kept for the log line and the DLQ).
    pub(crate) async fn process(&self, record: &SqsMessage) -> Processed {
        let body = record.body.as_deref().unwrap_or_default();
        let Ok(message) = WebhookMessage::from_json(body) else {
            return Processed::of(Disposition::Parked("unreadable envelope".into()));
        };
        match message {
            WebhookMessage::Poll(target) => Processed {
                poll: true,
                ..Processed::of(self.poll(&target).await)
            },
            WebhookMessage::Callback(target) => Processed {
                job_id: Some(target.job_id.clone()),
                ..Processed::of(self.callback(&target).await)
            },
            WebhookMessage::Delivery(env) => Processed {
                disposition: self.process_envelope(&env).await,
                job_id: Some(env.job_id.clone()),
                envelope: Some(env),
                poll: false,
            },
        }
    }

    /// What became of a delivery: applied, or what its failure comes to (a wait is a new,
    /// delayed copy of it on the queue).
    async fn process_envelope(&self, env: &Envelope) -> Disposition {
        let outcome = self.deliver(env).await.unwrap_or_else(Disposition::from);
        self.put_back(env, outcome).await
    }

    /// A delivery's body read, its event parsed, its job found, the event applied once.
    async fn deliver(&self, env: &Envelope) -> Result<Disposition, Failure> {
        let raw = self.body_bytes(env).await?;
        let (key, action) = parse(env, &raw).map_err(Failure::Unprocessable)?;
        // A global webhook's URL names no job: the job is the one a chunk of which is linked to
        // the event's id (the lookup reads its head); an id no chunk knows is an orphan, kept for
        // the user to see.
        let meta = match (env.hook, action.enrow_id()) {
            (Hook::Global, Some(id)) => {
                match self.jobs.job_head_of_provider_id(env.provider, id).await? {
                    Some(meta) => meta,
                    None => return self.keep_orphan(env, &key, &action).await,
                }
            }
            _ => self
                .jobs
                .job_head(&env.job_id)
                .await?
                .ok_or_else(|| Failure::unprocessable("unknown job"))?,
        };
        let job_id = &meta.job_id;
        // Scoped to the job of the URL: a caller holding one job's URL who posts events naming
        // another job's provider ids claims keys of its own job only, and burns nothing of the
        // other job (the event itself is then parked: its id is no chunk of this job). A global
        // event found its job by its id: its key is the one the job's own URL gives it, so the
        // same event on both URLs applies once.
        let key = key.scoped(job_id);
        if meta.deleted {
            // Erased at the caller's request: its data is not kept, not even in the DLQ.
            return Ok(self.drop_delivery(env, "the job was deleted").await);
        }
        if meta.provider != env.provider {
            return Err(Failure::unprocessable("provider does not match the job"));
        }
        match self.apply_once(&meta, &key, action, true).await {
            Ok(applied @ (Applied::Stored { .. } | Applied::Duplicate)) => Ok(applied.into()),
            unapplied => {
                // The head read first may be a second stale, and a DELETE may come while the
                // delivery is applied: a delivery that failed (its link or chunk erased, say) is
                // dropped if its job is deleted now, never parked or put back with its data.
                if matches!(self.jobs.get_job(job_id).await, Ok(Some(m)) if m.deleted) {
                    let why = "the job was deleted while its delivery was applied";
                    return Ok(self.drop_delivery(env, why).await);
                }
                unapplied.map(Disposition::from)
            }
        }
    }

    async fn body_bytes(&self, env: &Envelope) -> Result<Vec<u8>, Failure> {
        match &env.body {
            Body::Stored { key, sha256, .. } => {
                let bytes = self.bodies.get(key).await?;
                if hex::encode(Sha256::digest(&bytes)) != *sha256 {
                    return Err(Failure::unprocessable(
                        "claim-checked body does not match its SHA-256",
                    ));
                }
                Ok(bytes)
            }
            inline => inline
                .inline_bytes()
                .expect("inline body")
                .map_err(|_| Failure::unprocessable("undecodable body")),
        }
    }

    /// A delivery for a deleted job: dropped, its claim-checked body (if any) deleted with it.
    pub(crate) async fn drop_delivery(&self, env: &Envelope, why: &str) -> Disposition {
        if let Body::Stored { key, .. } = &env.body
            && let Err(e) = self.bodies.delete(key).await
        {
            // Its job's erasure deletes every body under the job's prefix (or the bucket's
            // lifecycle rule, in the end).
            tracing::warn!(job_id = %env.job_id, error = %e, "dropped delivery's body not deleted");
        }
        Disposition::Dropped(why.into())
    }

    /// One attempt of a job's completion callback, if it is due (see [`relay_shared::callback`]).
    /// A failed attempt is asked for again after its backoff (SQS delays up to 15 minutes;
    /// longer waits are the sweeper's).
    async fn callback(&self, target: &CallbackTarget) -> Disposition {
        let attempted = match self.callback_sender.attempt(&self.jobs, target).await {
            Ok(a) => a,
            Err(e) => return Failure::from(e).into(),
        };
        let job_id = &target.job_id;
        if let Attempted::Failed { next_at, .. } = &attempted {
            let wait = Duration::from_millis(next_at.saturating_sub(now_ms()));
            if wait <= MAX_DELAY {
                let ask = CallbackRequest::new(job_id, Some(*next_at)).to_json();
                if let Err(e) = self.requeue.send_delayed(ask, wait).await {
                    tracing::warn!(%job_id, error = %e, "callback retry not queued: the sweeper will");
                }
            }
        }
        Disposition::Callback(attempted)
    }
}
