//! Result counters on DynamoDB items: read from a chunk, bound into update expressions.

use super::attrs::{Item, get_n, n};
use crate::store::counts::Counts;

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

impl Counts {
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
}
