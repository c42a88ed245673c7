//! Enrow (providers.md §3): webhook events in their current and legacy shapes, single results,
//! bulk results.

use serde::Deserialize;
use serde_json::Value;

use crate::open_enum;
use crate::serde_util::{lenient_f64, lenient_string, non_empty_string, null_default};

open_enum!(
    /// The six documented events (§3.3). An unknown name is kept (rule 12).
    EventKind {
        SingleSearchFinished => "single_search_finished",
        BulkSearchFinished => "bulk_search_finished",
        VerificationFinished => "verification_finished",
        BulkVerificationFinished => "bulk_verification_finished",
        SinglePhoneSearchFinished => "single_phone_search_finished",
        BulkPhoneSearchFinished => "bulk_phone_search_finished",
    }
);

impl EventKind {
    /// Bulk events carry no results: the worker GETs them (§3.3).
    pub fn is_bulk(&self) -> bool {
        matches!(
            self,
            EventKind::BulkSearchFinished
                | EventKind::BulkVerificationFinished
                | EventKind::BulkPhoneSearchFinished
        )
    }
}

open_enum!(
    /// Finder/verifier: valid, invalid, ongoing; phone: found, not_found, ongoing (§3.2).
    /// SDKs also treat pending/processing as running.
    Qualification {
        Valid => "valid",
        Invalid => "invalid",
        Found => "found",
        NotFound => "not_found",
        Ongoing => "ongoing",
        Pending => "pending",
        Processing => "processing",
    }
);

impl Qualification {
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            Qualification::Ongoing | Qualification::Pending | Qualification::Processing
        )
    }
}

open_enum!(
    /// Bulk `general.status` (§3.2).
    BulkStatus {
        Completed => "completed",
        Ongoing => "ongoing",
        Failed => "failed",
        Pending => "pending",
        Processing => "processing",
    }
);

impl BulkStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(self, BulkStatus::Completed | BulkStatus::Failed)
    }
}

/// A webhook delivery, any of the six events, current or legacy (§3.3).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub event: Option<EventKind>,
    /// The job id, always the top-level `id` (§3.3 decision).
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub credits: EventCredits,
    /// `single_search_finished`, `single_phone_search_finished`: the result; legacy phone nests
    /// it once more in `result.result`.
    #[serde(default)]
    pub result: Option<Value>,
    // `verification_finished` is flat: its result fields sit at the top level.
    #[serde(default, deserialize_with = "non_empty_string")]
    pub email: Option<String>,
    #[serde(default)]
    pub qualification: Option<Qualification>,
    #[serde(default)]
    pub custom: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventCredits {
    #[serde(default, deserialize_with = "lenient_f64")]
    pub cost: Option<f64>,
    /// Legacy shapes only.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub balance: Option<f64>,
}

impl Event {
    pub fn parse(body: &[u8]) -> Result<Event, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The result a single event carries, from wherever this shape keeps it (rule 16):
    /// `result`, else `result.result` (legacy phone), else the flat top level (verification).
    /// `None` for bulk events.
    pub fn single_result(&self) -> Option<SingleResult> {
        if self.event.as_ref().is_some_and(EventKind::is_bulk) {
            return None;
        }
        if let Some(result) = self.result.as_ref().filter(|r| r.is_object()) {
            let looks_like_result = |v: &Value| {
                ["qualification", "number", "email"]
                    .iter()
                    .any(|k| v.get(*k).is_some())
            };
            let chosen = if looks_like_result(result) {
                Some(result)
            } else {
                result.get("result").filter(|r| r.is_object())
            };
            if let Some(chosen) = chosen {
                return SingleResult::from_value(chosen).ok();
            }
        }
        if self.qualification.is_some() || self.email.is_some() {
            return Some(SingleResult {
                email: self.email.clone(),
                qualification: self.qualification.clone(),
                custom: self.custom.clone(),
                ..SingleResult::default()
            });
        }
        None
    }
}

/// One finished single operation: a webhook result or a single GET body (§3.2).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SingleResult {
    #[serde(default, deserialize_with = "non_empty_string")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "non_empty_string")]
    pub number: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub country: Option<String>,
    #[serde(default)]
    pub qualification: Option<Qualification>,
    #[serde(default)]
    pub custom: Option<Value>,
    #[serde(default)]
    pub info: Option<Value>,
    #[serde(default)]
    pub params: Option<Value>,
}

impl SingleResult {
    pub fn from_value(v: &Value) -> Result<SingleResult, serde_json::Error> {
        SingleResult::deserialize(v)
    }
}

/// A bulk GET body (§3.2): finder, verifier or phone.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BulkResults {
    #[serde(default, deserialize_with = "null_default")]
    pub general: General,
    #[serde(default)]
    pub stats: Option<Value>,
    /// Rows kept raw; [`BulkResults::rows`] gives the typed view beside each raw row.
    #[serde(default, deserialize_with = "null_default")]
    pub results: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct General {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<BulkStatus>,
    /// An object or a string, whatever was sent (rule 6).
    #[serde(default)]
    pub custom: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BulkRow {
    /// `"0"`, `0` or a UUID (rule 7).
    #[serde(default, deserialize_with = "lenient_string")]
    pub index: Option<String>,
    #[serde(default)]
    pub qualification: Option<Qualification>,
    #[serde(default, deserialize_with = "non_empty_string")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "non_empty_string")]
    pub number: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub country: Option<String>,
    #[serde(default)]
    pub custom: Option<Value>,
    #[serde(default)]
    pub info: Option<Value>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub raw_params: Option<Value>,
}

impl BulkResults {
    pub fn parse(body: &[u8]) -> Result<BulkResults, serde_json::Error> {
        serde_json::from_slice(body)
    }

    pub fn status(&self) -> Option<&BulkStatus> {
        self.general.status.as_ref()
    }

    /// Each row typed, beside the raw row it came from. A row that is not an object is typed as
    /// empty (and so maps to no contact) rather than failing the set.
    pub fn rows(&self) -> impl Iterator<Item = (BulkRow, &Value)> {
        self.results
            .iter()
            .map(|raw| (BulkRow::deserialize(raw).unwrap_or_default(), raw))
    }

    /// `stats.credits_cost`: a number, or `{initial, refunded, final}` (rule 9).
    pub fn credits_cost(&self) -> Option<f64> {
        let cost = self.stats.as_ref()?.get("credits_cost")?;
        match cost {
            Value::Object(o) => o.get("final").and_then(Value::as_f64),
            other => other.as_f64(),
        }
    }
}

/// `GET /account/info` answers `{"credits": 36000, "webhooks": ["…"]}` (§3.1). Tolerant: the
/// credits a number or a numeric string, the webhooks absent or `null` (none), entries that are
/// not strings skipped.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccountInfo {
    #[serde(default, deserialize_with = "lenient_f64")]
    pub credits: Option<f64>,
    #[serde(default, deserialize_with = "null_default")]
    webhooks: Vec<Value>,
}

impl AccountInfo {
    pub fn parse(body: &[u8]) -> Result<AccountInfo, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The dashboard webhooks the account has set.
    pub fn webhooks(&self) -> impl Iterator<Item = &str> {
        self.webhooks.iter().filter_map(Value::as_str)
    }
}

/// Start response of every operation (§3.1): any 2xx with a non-empty `id` means started.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StartResponse {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub credits_used: Option<f64>,
}

/// Error bodies: `{"message"}`, `{"reason","success"}`, legacy `{"error","message","status"}`
/// (§3.4). Read `message`, then `reason`, then `error` (rule 14).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EnrowErrorBody {
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub error: Option<String>,
}

impl EnrowErrorBody {
    pub fn text(&self) -> Option<&str> {
        self.message
            .as_deref()
            .or(self.reason.as_deref())
            .or(self.error.as_deref())
    }
}
