//! Result counters: what a job head and each chunk keep, and how they move; which rows of a
//! chunk's result set are written. The one rule of both stores.

use crate::ids::ContactIndex;
use crate::jobs::{ContactResult, Outcome};
use crate::store::{ChunkRef, StoreError, Stored};

/// Result counters: what a job head and each chunk keep, or (signed) how they move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) done: i64,
    pub(super) found: i64,
    pub(super) not_found: i64,
    pub(super) failed: i64,
}

impl std::ops::Add for Counts {
    type Output = Counts;

    fn add(self, o: Counts) -> Counts {
        Counts {
            done: self.done + o.done,
            found: self.found + o.found,
            not_found: self.not_found + o.not_found,
            failed: self.failed + o.failed,
        }
    }
}

impl Counts {
    pub(super) fn of(outcomes: impl IntoIterator<Item = Outcome>) -> Counts {
        let mut c = Counts::default();
        for o in outcomes {
            c.done += 1;
            match o {
                Outcome::Found | Outcome::Valid => c.found += 1,
                Outcome::NotFound | Outcome::Invalid => c.not_found += 1,
                Outcome::Failed => c.failed += 1,
            }
        }
        c
    }

    /// The signed move from `o` to `self`: a provisional row replaced by a final one of
    /// another outcome moves one count down and another up.
    pub(super) fn minus(self, o: Counts) -> Counts {
        Counts {
            done: self.done - o.done,
            found: self.found - o.found,
            not_found: self.not_found - o.not_found,
            failed: self.failed - o.failed,
        }
    }
}

/// Of a chunk's result set, the rows to write over what is stored (`existing`): a final row is
/// kept (first final write wins), a provisional one is replaced by the chunk's final result set,
/// a deadline's placeholder by any result ([`ContactResult::replaces`]); the same contact twice
/// in one set: the first one stands. Tallies `replaced` and `existing` in `stored`. A result
/// outside the chunk is an error. The one rule of both stores.
pub(super) fn rows_to_write<'r, 'e>(
    chunk: ChunkRef,
    results: &'r [ContactResult],
    existing: impl Fn(ContactIndex) -> Option<&'e ContactResult>,
    stored: &mut Stored,
) -> Result<Vec<&'r ContactResult>, StoreError> {
    let mut written = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for r in results {
        if !chunk.holds(r.index) {
            return Err(StoreError::Data(format!(
                "result {} is outside chunk {}",
                r.index, chunk.index
            )));
        }
        if written.contains(&r.index) {
            continue;
        }
        match existing(r.index) {
            Some(old) if r.replaces(old) => stored.replaced += 1,
            Some(_) => {
                stored.existing += 1;
                continue;
            }
            None => {}
        }
        written.insert(r.index);
        rows.push(r);
    }
    Ok(rows)
}
