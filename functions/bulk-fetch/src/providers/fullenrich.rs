//! FullEnrich: its batch and `contact_finished` events applied, its records mapped to contacts,
//! its result GETs paced with every other FullEnrich request of the account.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

use relay_shared::jobs::{
    ChunkStatus, Contact, ContactResult, JobError, JobMeta, Operation, Outcome, from_fullenrich,
    reasons,
};
use relay_shared::now_ms;
use relay_shared::providers::client::ProviderClient;
use relay_shared::providers::fullenrich::{self, JobStatus as FeStatus};
use relay_shared::store::{ChunkUpdate, Jobs, Links, RateSchedule, Results, Slot, Stored};

use super::{Arm, NOT_OURS, unknown_to_provider};
use crate::{
    Action, Deps, Disposition, EventKey, Failure, FetchWorker, MAX_SLOT_WAIT, PACED_MIN_WAIT,
    WRITE_RESERVE, fill_missing, record_key,
};
use relay_shared::{ContactIndex, ProviderId};

impl<S: Deps> FetchWorker<S> {
    /// A FullEnrich batch: the chunk's whole result set (fetched when the body cannot vouch for it).
    pub(crate) async fn apply_fullenrich_batch(
        &self,
        meta: &JobMeta,
        id: ProviderId,
        mut job: fullenrich::Job,
        signed: bool,
    ) -> Result<Arm, Failure> {
        let job_id = &meta.job_id;
        let op = meta.operation;
        let status = job.status.clone().unwrap_or(FeStatus::Other(String::new()));
        let linked = self.jobs.find_chunk(job_id, &id).await?;
        // Anyone holding the URL could have sent it: an id no chunk knows is fetched only as one
        // of the few candidates a chunk still waiting for its id allows.
        let read = match linked {
            None if !signed => match self.candidate(meta).await? {
                Some(read) => Some(read),
                None => return Ok(Arm::Dropped(NOT_OURS.into())),
            },
            _ => None,
        };
        // The result GET is the source of truth for a body that is not signed (anyone
        // holding the URL could have sent it: it is only a trigger), for a finished
        // batch without its records, and for one not terminal (which the batch webhook
        // should never be). A canceled or out-of-credits batch may rightly carry none.
        let finished_empty = status == FeStatus::Finished
            && job.data.is_empty()
            && linked.is_none_or(|c| c.count > 0);
        if !signed || !status.is_terminal() || finished_empty {
            job = match self.fullenrich_job(op, &id).await {
                Ok(job) => job,
                Err(f) => return unknown_to_provider(f, linked.is_some()),
            };
        }
        let chunk = match linked {
            Some(c) => c,
            None => {
                let rids: Vec<ContactIndex> = job.data.iter().filter_map(fullenrich_rid).collect();
                self.adopt(meta, &id, &rids, None, read).await?
            }
        };
        let status = job.status.clone().unwrap_or(FeStatus::Other(String::new()));
        if !status.is_terminal() {
            return Ok(Arm::Later(format!("enrichment {status}")));
        }
        let contacts = self
            .jobs
            .contacts(job_id, chunk.offset, chunk.count)
            .await?;
        let mut results = map_fullenrich(op, &contacts, &job.data);
        let (chunk_status, reason) = match status {
            FeStatus::Finished => (ChunkStatus::Completed, "missing_from_results"),
            FeStatus::CreditsInsufficient => (ChunkStatus::Failed, reasons::CREDITS_INSUFFICIENT),
            _ => (ChunkStatus::Failed, reasons::CANCELED),
        };
        let error = (chunk_status == ChunkStatus::Failed)
            .then(|| JobError::new(reason, format!("FullEnrich ended the enrichment {status}")));
        if let Some(e) = &error {
            // Out of credits or canceled stops the job: chunks not started yet are not
            // started (job-submit-worker reads this error before every start).
            self.jobs.set_job_error(job_id, e).await?;
            not_enriched(&mut results, reason);
        }
        fill_missing(&mut results, &contacts, reason);
        let update = ChunkUpdate {
            index: chunk.index,
            status: chunk_status,
            credits: job.cost.credits,
            error,
        };
        let stored = self
            .jobs
            .store_chunk(job_id, chunk, results, update)
            .await?;
        Ok(Arm::Stored(stored))
    }

    /// FullEnrich `contact_finished`: provisional rows for its finished records (signed only).
    pub(crate) async fn apply_fullenrich_contact(
        &self,
        meta: &JobMeta,
        job: fullenrich::Job,
        signed: bool,
    ) -> Result<Arm, Failure> {
        let job_id = &meta.job_id;
        let op = meta.operation;
        if !signed {
            // Not trusted as results: anyone holding the URL could have sent it. The
            // enrichment's results come with its batch webhook, fetched from the API
            // when that is unsigned too (a GET now would only answer "in progress").
            tracing::info!(
                %job_id,
                "unsigned contact_finished: its results will come from the API"
            );
            return Ok(Arm::Stored(Stored::default()));
        }
        let finished: Vec<fullenrich::Record> = job
            .data
            .iter()
            .filter(|r| r.is_finished())
            .cloned()
            .collect();
        if finished.is_empty() {
            return Ok(Arm::Stored(Stored::default())); // a snapshot with nothing finished yet
        }
        let (rids, contacts) = self.contacts_named(meta, &job, &finished).await?;
        let results = map_fullenrich(op, &contacts, &finished);
        if results.is_empty() {
            return Err(Failure::unprocessable(
                "contact_finished record maps to no contact",
            ));
        }
        let stored = self.store_provisional(meta, results).await?;
        // A signed body is FullEnrich's own: a chunk still waiting for its id (its
        // start's answer was lost) adopts the enrichment it names, so the sweeper can
        // poll it and its batch webhook maps, instead of timing out as unconfirmed.
        if stored.awaiting_link
            && let Some(id) = &job.id
        {
            if let Err(f) = self
                .adopt(meta, &ProviderId::new(id.as_str()), &rids, None, None)
                .await
            {
                let disposition = Disposition::from(f);
                tracing::warn!(
                    %job_id,
                    ?disposition,
                    "contact_finished did not adopt its chunk"
                )
            }
        }
        Ok(Arm::Stored(stored))
    }

    /// The contacts a `contact_finished` body's finished records name (their record keys),
    /// read in one range (a snapshot can name many); a record without a key maps within the
    /// chunk its enrichment id names. Also the keys.
    async fn contacts_named(
        &self,
        meta: &JobMeta,
        job: &fullenrich::Job,
        finished: &[fullenrich::Record],
    ) -> Result<(Vec<ContactIndex>, Vec<Contact>), Failure> {
        let job_id = &meta.job_id;
        // The contacts the records name, read in one range (a snapshot can name many).
        let rids: Vec<ContactIndex> = finished
            .iter()
            .filter_map(fullenrich_rid)
            .filter(|i| i.get() < meta.contacts)
            .collect();
        let mut contacts = Vec::new();
        if let (Some(lo), Some(hi)) = (rids.iter().min(), rids.iter().max()) {
            contacts.extend(
                self.jobs
                    .contacts(job_id, lo.get(), hi.get() - lo.get() + 1)
                    .await?
                    .into_iter()
                    .filter(|c| rids.contains(&c.index)),
            );
        }
        // Records without a key map within the chunk their enrichment id names: read once.
        let keyless = finished
            .iter()
            .any(|r| !fullenrich_rid(r).is_some_and(|i| i.get() < meta.contacts));
        if keyless && let Some(id) = &job.id {
            let chunk = self
                .chunk_of(meta, &ProviderId::new(id.as_str()), &[], None)
                .await?
                .chunk;
            contacts.extend(
                self.jobs
                    .contacts(job_id, chunk.offset, chunk.count)
                    .await?,
            );
        }
        Ok((rids, contacts))
    }

    /// Stores a snapshot's results as provisional rows (the chunk's final result set replaces
    /// them).
    async fn store_provisional(
        &self,
        meta: &JobMeta,
        mut results: Vec<ContactResult>,
    ) -> Result<Stored, Failure> {
        let job_id = &meta.job_id;
        // A snapshot repeats what earlier deliveries stored: one keys-only query finds
        // those, and only the rest are written.
        let mut existing = 0;
        if results.len() > 1 {
            let lo = results
                .iter()
                .map(|r| r.index)
                .min()
                .unwrap_or(ContactIndex(0));
            let hi = results
                .iter()
                .map(|r| r.index)
                .max()
                .unwrap_or(ContactIndex(0));
            let have = self.jobs.stored_indices(job_id, lo, hi).await?;
            let before = results.len();
            results.retain(|r| !have.contains(&r.index));
            existing = before - results.len();
        }
        // Provisional: the chunk's final result set replaces them. A snapshot's records
        // are stored 8 at a time (most of them are stored already and cost one call).
        let writes = futures::stream::iter(results.into_iter().map(|mut r| async move {
            r.provisional = true;
            let chunk_index = self.chunk_index_of(meta, r.index).await?;
            Ok::<_, Failure>(self.jobs.store_result(job_id, chunk_index, r, None).await?)
        }))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
        let mut stored = Stored {
            existing,
            ..Stored::default()
        };
        for s in writes {
            let s = s?;
            stored.new += s.new;
            stored.existing += s.existing;
            stored.replaced += s.replaced;
            stored.write_calls += s.write_calls;
            stored.awaiting_link |= s.awaiting_link;
            if stored.final_group.is_none() || s.may_settle(meta.chunk_seq) {
                stored.final_group = s.final_group.or(stored.final_group);
            }
        }
        Ok(stored)
    }

    /// Takes the next slot of the account's FullEnrich schedule (shared with the starts) if it
    /// is near enough to wait for here: within [`MAX_SLOT_WAIT`], and early enough that the GET
    /// and the writes after it still fit in the invocation. Otherwise nothing is taken and the
    /// delivery waits in the queue until a slot is in reach (`Paced`): a slot taken is a
    /// request made.
    pub(crate) async fn fullenrich_slot(&self) -> Result<(), Failure> {
        let reserve = self.providers.timeout() + WRITE_RESERVE;
        let Some(max_wait) = relay_shared::invocation::bounded_wait(MAX_SLOT_WAIT, reserve) else {
            return Err(Failure::Paced(PACED_MIN_WAIT));
        };
        let interval = self.fullenrich_interval.as_millis() as u64;
        match self
            .jobs
            .take_slot("fullenrich", interval, max_wait.as_millis() as u64)
            .await?
        {
            Slot::At(at) => {
                let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Slot::Busy { retry_in_ms } => Err(Failure::Paced(
                Duration::from_millis(retry_in_ms).max(PACED_MIN_WAIT),
            )),
        }
    }

    /// A poll's GET of a FullEnrich enrichment: a terminal one is its batch event (from the
    /// provider's API: its records are FullEnrich's); `None` while it runs.
    pub(crate) async fn poll_fullenrich(
        &self,
        op: Operation,
        pid: &ProviderId,
    ) -> Result<Option<(EventKey, Action)>, Failure> {
        let job = self.fullenrich_job(op, pid).await?;
        Ok(match job.status.clone() {
            Some(status) if status.is_terminal() => Some((
                EventKey::fullenrich_batch(pid, status.as_str()),
                Action::FullenrichBatch {
                    id: pid.clone(),
                    job,
                    signed: true,
                },
            )),
            _ => None,
        })
    }

    /// A FullEnrich result GET, paced with every other FullEnrich request of the account.
    pub(crate) async fn fullenrich_job(
        &self,
        op: Operation,
        id: &str,
    ) -> Result<fullenrich::Job, Failure> {
        self.fullenrich_slot().await?;
        Ok(self.providers.fullenrich_job(op, id).await?)
    }
}

/// Records of a job that ran out of credits or was canceled may be present but empty: those
/// contacts were not enriched (`failed` with `reason`), not "not found". A record that finished
/// with nothing found stays `not_found`.
fn not_enriched(results: &mut [ContactResult], reason: &str) {
    for r in results
        .iter_mut()
        .filter(|r| r.outcome == Outcome::NotFound && !fullenrich::finished(&r.raw))
    {
        r.outcome = Outcome::Failed;
        r.reason = Some(reason.to_string());
    }
}

/// The contact index a FullEnrich record names (its `custom`'s record key).
pub(crate) fn fullenrich_rid(record: &fullenrich::Record) -> Option<ContactIndex> {
    record.custom.as_ref().and_then(record_key)
}

/// Maps FullEnrich records to contacts: by the record key the relay put in `custom`, else by input
/// (email for reverse lookups; LinkedIn URL, else name + domain). Order does not matter.
pub(crate) fn map_fullenrich(
    op: Operation,
    contacts: &[Contact],
    records: &[fullenrich::Record],
) -> Vec<ContactResult> {
    let by_index: HashMap<ContactIndex, &Contact> = contacts.iter().map(|c| (c.index, c)).collect();
    let norm = |s: Option<&str>| s.map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase());
    let mut out: HashMap<ContactIndex, ContactResult> = HashMap::new();
    for record in records {
        let by_key = fullenrich_rid(record).and_then(|i| by_index.get(&i).copied());
        let contact = by_key.or_else(|| {
            let input = &record.input;
            contacts.iter().find(|c| match op {
                Operation::ReverseEmail => {
                    norm(input.email.as_deref()).is_some()
                        && norm(input.email.as_deref()) == norm(c.field("email"))
                }
                _ => {
                    let li = norm(input.professional_network_url.as_deref());
                    if li.is_some() && li == norm(c.field("linkedin_url")) {
                        return true;
                    }
                    norm(input.first_name.as_deref()).is_some()
                        && norm(input.first_name.as_deref()) == norm(c.field("first_name"))
                        && norm(input.last_name.as_deref()) == norm(c.field("last_name"))
                        && (norm(input.company_domain.as_deref()) == norm(c.field("domain"))
                            || norm(input.company_name.as_deref()) == norm(c.field("company_name")))
                }
            })
        });
        match contact {
            Some(c) if !out.contains_key(&c.index) => {
                out.insert(c.index, from_fullenrich(op, c, record));
            }
            Some(_) => {}
            None => tracing::warn!("a FullEnrich record maps to no contact of its chunk"),
        }
    }
    let mut v: Vec<_> = out.into_values().collect();
    v.sort_by_key(|r| r.index);
    v
}
