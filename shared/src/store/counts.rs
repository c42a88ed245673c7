//! Result counters: what a job head and each chunk keep, and how they move.

use crate::jobs::Outcome;

use super::*;

pub(super) struct UpdateParts {
    pub(super) b: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    pub(super) expr: String,
}

pub(super) const JOB_COUNTS: [&str; 4] = ["done", "found", "not_found", "failed"];

pub(super) const CHUNK_COUNTS: [&str; 4] = ["c_done", "c_found", "c_not_found", "c_failed"];

/// Expression attribute names bound to placeholders (`#k0` → `c_done`, …).
pub(super) type Names = Vec<(String, String)>;
/// Expression attribute values bound to placeholders (`:k0` → a number, …).
pub(super) type Values = Vec<(String, aws_sdk_dynamodb::types::AttributeValue)>;

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

    pub(super) fn from_chunk(item: &Item) -> Counts {
        Counts {
            done: get_n(item, "c_done").unwrap_or(0),
            found: get_n(item, "c_found").unwrap_or(0),
            not_found: get_n(item, "c_not_found").unwrap_or(0),
            failed: get_n(item, "c_failed").unwrap_or(0),
        }
    }

    /// Binds the counts to `attrs` (done, found, not found, failed) on `b` as `#k0..#k3` /
    /// `:k0..:k3`; returns the builder and `"#k0 :k0, …"` for an `ADD`, or with `=` for a `SET`.
    pub(super) fn bind(
        self,
        b: aws_sdk_dynamodb::types::builders::UpdateBuilder,
        attrs: [&str; 4],
        op: &str,
    ) -> (aws_sdk_dynamodb::types::builders::UpdateBuilder, String) {
        let (names, values, expr) = self.placeholders(attrs, op);
        let b = names
            .into_iter()
            .fold(b, |b, (k, v)| b.expression_attribute_names(k, v));
        let b = values
            .into_iter()
            .fold(b, |b, (k, v)| b.expression_attribute_values(k, v));
        (b, expr)
    }

    /// [`Self::bind`]'s names, values and expression, for any request builder.
    pub(super) fn placeholders(self, attrs: [&str; 4], op: &str) -> (Names, Values, String) {
        let values = [self.done, self.found, self.not_found, self.failed];
        let mut parts = Vec::new();
        let mut names = Vec::new();
        let mut bound = Vec::new();
        for (i, (attr, value)) in attrs.iter().zip(values).enumerate() {
            names.push((format!("#k{i}"), attr.to_string()));
            bound.push((format!(":k{i}"), n(value)));
            parts.push(format!("#k{i}{op}:k{i}"));
        }
        (names, bound, parts.join(", "))
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
    existing: impl Fn(u64) -> Option<&'e ContactResult>,
    stored: &mut Stored,
) -> Result<Vec<&'r ContactResult>, StoreError> {
    let mut written = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for r in results {
        if r.index < chunk.offset || r.index >= chunk.offset + chunk.count {
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
