//! Item keys of the jobs table, and the `due` index's shards.

use crate::ids::{ChunkIndex, ContactIndex, JobId};
use crate::store::FINAL_GROUP;
use sha2::{Digest, Sha256};

pub(super) fn job_pk(job_id: &JobId) -> String {
    format!("JOB#{job_id}")
}

pub fn chunk_sk(index: ChunkIndex) -> String {
    format!("CHUNK#{index:05}")
}

/// The group holding chunk `index` ([`FINAL_GROUP`] indices a group): it records which
/// of its chunks are final, and is in the `due` index while one of them is open.
pub(super) fn final_sk(index: ChunkIndex) -> String {
    format!("CHUNK#~F{:05}", index.0 / FINAL_GROUP)
}

/// How many items a job's duplicate count is spread over.
pub(super) const DUP_SHARDS: u32 = 8;

pub(super) fn dup_sk(shard: u32) -> String {
    format!("CHUNK#~D{shard}")
}

pub fn contact_sk(index: ContactIndex) -> String {
    format!("CONTACT#{index:07}")
}

pub fn result_sk(index: ContactIndex) -> String {
    format!("RESULT#{index:07}")
}

/// How many partitions the `due` index spreads its entries over (a sweep queries each).
pub const POLL_SHARDS: u32 = 4;

/// The `due` index partition of a job's groups of chunks and of its head.
pub fn poll_shard(job_id: &JobId) -> String {
    let h = Sha256::digest(job_id.as_bytes());
    format!("poll#{}", u32::from(h[0]) % POLL_SHARDS)
}

/// The `recent` index's one partition: every job head.
pub(super) const LIST_PK: &str = "jobs";

pub(super) fn index_of(sk: Option<&str>, prefix: &str) -> Option<u64> {
    sk?.strip_prefix(prefix)?.parse().ok()
}

/// The `due` index's partition of deleted jobs whose erasure is not done (`DELETE`s are rare:
/// one partition holds them).
pub const ERASE_SHARD: &str = "erase";
