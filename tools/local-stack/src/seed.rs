//! Seeds a job the way job-submit records one (contacts, chunks, head, provider ids linked), for
//! tests and benchmarks of the worker that do not go through the jobs API.

use relay_shared::ContactIndex;
use relay_shared::jobs::{Chunk, Contact, JobMeta, JobStatus, Operation};
use relay_shared::store::{DynamoJobStore, JobWriter, Links};
use relay_shared::{JobId, ProviderId};
use serde_json::Value;

/// Contacts as (fields, custom) pairs, in chunks of `chunk_size`, each chunk linked to the
/// provider id at its position in `provider_ids`. Returns the job id.
pub async fn seed_job(
    jobs: &DynamoJobStore,
    operation: Operation,
    contacts: Vec<(Value, Value)>,
    chunk_size: u64,
    provider_ids: &[&str],
) -> JobId {
    let job_id = JobId::new(format!(
        "job_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    let n = contacts.len() as u64;
    let contacts: Vec<Contact> = contacts
        .into_iter()
        .enumerate()
        .map(|(i, (fields, custom))| Contact {
            origin: None,
            index: ContactIndex(i as u64),
            fields: fields.as_object().cloned().unwrap_or_default(),
            custom: Some(custom).filter(|c| !c.is_null()),
        })
        .collect();
    let chunks = Chunk::plan(n, chunk_size);
    let meta = JobMeta::new(
        job_id.clone(),
        operation,
        Some("seeded".into()),
        JobStatus::Running,
        n,
        chunk_size,
        Value::Null,
    );
    jobs.create_job(&meta, &chunks, &contacts)
        .await
        .expect("create job");
    for (chunk, pid) in chunks.iter().zip(provider_ids) {
        // As the submitter links it: a one-contact chunk's contact rides on its link.
        let contact = contacts.get(chunk.offset as usize);
        jobs.link_chunk(&job_id, chunk.into(), &ProviderId::new(*pid), None, contact)
            .await
            .expect("link chunk");
    }
    job_id
}

/// A FullEnrich `enrich` job of `n` numbered contacts (`F{i}`, custom `user_id: u{i}`) in chunks
/// of `chunk_size`, chunk `k` linked to provider id `fe-{k}`. Returns the job id and those ids.
pub async fn seed_numbered_fullenrich_job(
    jobs: &DynamoJobStore,
    n: u64,
    chunk_size: u64,
) -> (JobId, Vec<String>) {
    let pids: Vec<String> = (0..n.div_ceil(chunk_size))
        .map(|k| format!("fe-{k}"))
        .collect();
    let pid_refs: Vec<&str> = pids.iter().map(String::as_str).collect();
    let contacts = (0..n)
        .map(|i| {
            (
                serde_json::json!({"first_name": format!("F{i}"), "last_name": "L", "domain": "example.com"}),
                serde_json::json!({"user_id": format!("u{i}")}),
            )
        })
        .collect();
    let job = seed_job(jobs, Operation::Enrich, contacts, chunk_size, &pid_refs).await;
    (job, pids)
}

/// Contact `i` of a [`seed_numbered_fullenrich_job`] as FullEnrich returns it, in a
/// `contact_finished` or a batch body: its input, its `custom` with the relay's `rid` (the
/// contact's index, which the relay adds to every contact's `custom` at the start), and a work
/// email when `found`.
pub fn numbered_fullenrich_record(i: u64, found: bool) -> Value {
    let input = serde_json::json!({"first_name": format!("F{i}"), "last_name": "L", "company_domain": "example.com"});
    let custom = serde_json::json!({"user_id": format!("u{i}"), "rid": i.to_string()});
    let contact_info = if found {
        let email =
            serde_json::json!({"email": format!("f{i}@example.com"), "status": "DELIVERABLE"});
        serde_json::json!({"most_probable_work_email": email.clone(), "work_emails": [email]})
    } else {
        serde_json::json!({"most_probable_work_email": null, "work_emails": []})
    };
    serde_json::json!({"input": input, "custom": custom, "contact_info": contact_info})
}
