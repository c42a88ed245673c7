//! Enrow: its single and bulk events applied, its rows mapped to contacts.

use std::collections::HashMap;

use relay_shared::jobs::{
    ChunkStatus, Contact, ContactResult, EnrowFields, JobError, JobMeta, Operation, from_enrow,
};
use relay_shared::providers::client::ProviderClient;
use relay_shared::providers::enrow::{self, EventKind};
use relay_shared::store::{ChunkUpdate, Jobs, Link, Links, Results};
use serde_json::Value;

use super::{Arm, NOT_OURS, unknown_to_provider};
use crate::{Action, Deps, EventKey, Failure, FetchWorker, fill_missing, record_key};
use relay_shared::{ContactIndex, ProviderId};

impl<S: Deps> FetchWorker<S> {
    /// A poll's GET of an Enrow search (`single`: started on the single endpoint): the event
    /// that announces its results.
    pub(crate) async fn poll_enrow(
        &self,
        op: Operation,
        pid: &ProviderId,
        single: bool,
    ) -> Result<(EventKey, Action), Failure> {
        let kind = enrow_event(op, single);
        let key = EventKey::enrow(&kind, pid);
        if single {
            let (result, raw) = self.providers.enrow_single(op, pid).await?;
            return Ok((
                key,
                Action::EnrowSingle {
                    id: pid.clone(),
                    kind,
                    custom: result.custom.clone(),
                    result,
                    raw,
                    credits: None,
                },
            ));
        }
        let bulk = self.providers.enrow_bulk(op, pid).await?;
        Ok((
            key,
            Action::EnrowBulk {
                id: pid.clone(),
                kind,
                credits: None,
                prefetched: Some(bulk),
            },
        ))
    }

    /// An Enrow single result: its one contact's row.
    pub(crate) async fn apply_enrow_single(
        &self,
        meta: &JobMeta,
        id: ProviderId,
        mut result: enrow::SingleResult,
        custom: Option<Value>,
        mut raw: Value,
        credits: Option<f64>,
    ) -> Result<Arm, Failure> {
        let job_id = &meta.job_id;
        let op = meta.operation;
        // The link carries a one-contact chunk's contact (one read for both).
        let link = match self.jobs.find_link(job_id, &id).await? {
            Some(link) => link,
            None => {
                // Not linked: Enrow does not sign, so the body is only a hint. A chunk
                // still waiting for its id may adopt it once Enrow's own answer for the
                // id (a GET) names one of its contacts; any other id is dropped.
                let Some(read) = self.candidate(meta).await? else {
                    return Ok(Arm::Dropped(NOT_OURS.into()));
                };
                (result, raw) = match self.providers.enrow_single(op, &id).await {
                    Ok(fetched) => fetched,
                    Err(e) => return unknown_to_provider(e.into(), false),
                };
                let rids: Vec<ContactIndex> = result
                    .custom
                    .as_ref()
                    .or(custom.as_ref())
                    .and_then(record_key)
                    .into_iter()
                    .collect();
                let chunk = self.adopt(meta, &id, &rids, Some(true), Some(read));
                Link::new(chunk.await?, None)
            }
        };
        let Link { chunk, contact } = link;
        let contact = match contact {
            Some(c) => c,
            None => self
                .jobs
                .contacts(job_id, chunk.offset, 1)
                .await?
                .pop()
                .ok_or_else(|| Failure::unprocessable("chunk has no contact"))?,
        };
        let fields = EnrowFields {
            qualification: result.qualification.as_ref(),
            email: result.email.as_deref(),
            number: result.number.as_deref(),
        };
        let stored = from_enrow(op, &contact, fields, raw);
        let update = ChunkUpdate {
            index: chunk.index,
            status: ChunkStatus::Completed,
            credits,
            error: None,
        };
        let stored = self
            .jobs
            .store_result(job_id, chunk.index, stored, Some(update))
            .await?;
        Ok(Arm::Stored(stored))
    }

    /// An Enrow bulk: the chunk's whole result set (fetched unless a poll did).
    pub(crate) async fn apply_enrow_bulk(
        &self,
        meta: &JobMeta,
        id: ProviderId,
        credits: Option<f64>,
        prefetched: Option<enrow::BulkResults>,
    ) -> Result<Arm, Failure> {
        let job_id = &meta.job_id;
        let op = meta.operation;
        let linked = self.jobs.find_chunk(job_id, &id).await?;
        // Enrow does not sign its webhooks: an id no chunk knows is fetched only as one of the
        // few candidates a chunk still waiting for its id allows.
        let read = match linked {
            Some(_) => None,
            None => match self.candidate(meta).await? {
                Some(read) => Some(read),
                None => return Ok(Arm::Dropped(NOT_OURS.into())),
            },
        };
        let bulk = match prefetched {
            Some(bulk) => bulk,
            None => match self.providers.enrow_bulk(op, &id).await {
                Ok(bulk) => bulk,
                Err(e) => return unknown_to_provider(e.into(), linked.is_some()),
            },
        };
        let chunk = match linked {
            Some(c) => c,
            None => {
                let rids: Vec<ContactIndex> = bulk
                    .rows()
                    .filter_map(|(row, _)| row.custom.as_ref().and_then(record_key))
                    .collect();
                self.adopt(meta, &id, &rids, Some(false), read).await?
            }
        };
        let contacts = self
            .jobs
            .contacts(job_id, chunk.offset, chunk.count)
            .await?;
        let failed = bulk.status() == Some(&enrow::BulkStatus::Failed);
        let mut results = map_enrow_bulk(op, &contacts, &bulk);
        let reason = if failed {
            "provider_failed"
        } else {
            "missing_from_results"
        };
        fill_missing(&mut results, &contacts, reason);
        let update = ChunkUpdate {
            index: chunk.index,
            status: if failed {
                ChunkStatus::Failed
            } else {
                ChunkStatus::Completed
            },
            credits: credits.or(bulk.credits_cost()),
            error: failed.then(|| JobError {
                code: "provider_failed".into(),
                message: "Enrow reported the bulk as failed".into(),
            }),
        };
        let stored = self
            .jobs
            .store_chunk(job_id, chunk, results, update)
            .await?;
        Ok(Arm::Stored(stored))
    }
}

/// The Enrow event that announces an operation's results (providers.md §3.3).
fn enrow_event(op: Operation, single: bool) -> EventKind {
    match (op, single) {
        (Operation::EmailVerify, true) => EventKind::VerificationFinished,
        (Operation::EmailVerify, false) => EventKind::BulkVerificationFinished,
        (Operation::PhoneFind, true) => EventKind::SinglePhoneSearchFinished,
        (Operation::PhoneFind, false) => EventKind::BulkPhoneSearchFinished,
        (_, true) => EventKind::SingleSearchFinished,
        (_, false) => EventKind::BulkSearchFinished,
    }
}

/// Maps Enrow bulk rows to contacts: verification rows by email (their index is a UUID), others
/// by `index` (position in the chunk), else by the record key sent as `custom`.
pub(crate) fn map_enrow_bulk(
    op: Operation,
    contacts: &[Contact],
    bulk: &enrow::BulkResults,
) -> Vec<ContactResult> {
    let offset = contacts.first().map(|c| c.index).unwrap_or(ContactIndex(0));
    let mut by_email: HashMap<String, Vec<&Contact>> = HashMap::new();
    if op == Operation::EmailVerify {
        for c in contacts {
            if let Some(e) = c.field("email") {
                by_email
                    .entry(e.trim().to_ascii_lowercase())
                    .or_default()
                    .push(c);
            }
        }
    }
    let mut out: HashMap<ContactIndex, ContactResult> = HashMap::new();
    let mut unmapped = 0usize;
    for (row, raw) in bulk.rows() {
        let targets: Vec<&Contact> = if op == Operation::EmailVerify {
            row.email
                .as_deref()
                .and_then(|e| by_email.get(&e.trim().to_ascii_lowercase()))
                .cloned()
                .unwrap_or_default()
        } else {
            let by_position = row
                .index
                .as_deref()
                .and_then(|i| i.parse::<u64>().ok())
                .map(|i| offset + i);
            row.custom
                .as_ref()
                .and_then(record_key)
                .filter(|i| contacts.iter().any(|c| c.index == *i))
                .or(by_position)
                .and_then(|i| {
                    contacts
                        .get((i.get() - offset.get()) as usize)
                        .filter(|c| c.index == i)
                })
                .into_iter()
                .collect()
        };
        if targets.is_empty() {
            unmapped += 1;
        }
        for c in targets {
            let fields = EnrowFields {
                qualification: row.qualification.as_ref(),
                email: row.email.as_deref(),
                number: row.number.as_deref(),
            };
            out.entry(c.index)
                .or_insert_with(|| from_enrow(op, c, fields, raw.clone()));
        }
    }
    if unmapped > 0 {
        tracing::warn!(
            unmapped,
            "Enrow bulk rows that map to no contact of their chunk"
        );
    }
    let mut v: Vec<_> = out.into_values().collect();
    v.sort_by_key(|r| r.index);
    v
}
