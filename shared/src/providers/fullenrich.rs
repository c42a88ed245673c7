//! FullEnrich v2 (providers.md §2): the job object returned by the result GET and by both webhooks.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::open_enum;
use crate::serde_util::{lenient_f64, lenient_string, non_empty_string, null_default};

open_enum!(
    /// Enrichment status (§2.4). Only `FINISHED`, `CREDITS_INSUFFICIENT` and `CANCELED` are terminal.
    JobStatus {
        Created => "CREATED",
        InProgress => "IN_PROGRESS",
        Finished => "FINISHED",
        CreditsInsufficient => "CREDITS_INSUFFICIENT",
        Canceled => "CANCELED",
        RateLimit => "RATE_LIMIT",
        Unknown => "UNKNOWN",
    }
);

impl JobStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::CreditsInsufficient | JobStatus::Canceled
        )
    }
}

open_enum!(
    /// Email status (§2.3); a fixture also shows `NOT_FOUND`.
    EmailStatus {
        Deliverable => "DELIVERABLE",
        HighProbability => "HIGH_PROBABILITY",
        CatchAll => "CATCH_ALL",
        Invalid => "INVALID",
        InvalidDomain => "INVALID_DOMAIN",
        NotFound => "NOT_FOUND",
    }
);

/// The `enrich_fields` a start sends when the job names none: a work email.
pub const DEFAULT_ENRICH_FIELDS: [&str; 1] = ["contact.work_emails"];

/// `GET /account/credits` answers `{"balance": 5000}`, a double (§2.1). Tolerant: a number or a
/// numeric string; anything else is `None`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Balance {
    #[serde(default, deserialize_with = "lenient_f64")]
    pub balance: Option<f64>,
}

impl Balance {
    pub fn parse(body: &[u8]) -> Result<Balance, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// `POST /contact/enrich/bulk` and `/contact/reverse/email/bulk` answer `{"enrichment_id"}`;
/// some clients read `id` (§2.2).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StartResponse {
    #[serde(default, deserialize_with = "lenient_string")]
    pub enrichment_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
}

impl StartResponse {
    pub fn enrichment_id(&self) -> Option<&str> {
        self.enrichment_id
            .as_deref()
            .or(self.id.as_deref())
            .filter(|s| !s.is_empty())
    }
}

/// The job object (§2.3): GET body, batch webhook body, and (we decide) `contact_finished` body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Job {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<JobStatus>,
    #[serde(default, deserialize_with = "null_default")]
    pub cost: Cost,
    /// v1 called it `datas` (rule 10).
    #[serde(default, alias = "datas", deserialize_with = "null_default")]
    pub data: Vec<Record>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Cost {
    #[serde(default, deserialize_with = "lenient_f64")]
    pub credits: Option<f64>,
}

/// One contact's record. `raw` is the record as the provider sent it, for storage.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub input: Input,
    pub custom: Option<Value>,
    pub contact_info: ContactInfo,
    pub profile: Option<Value>,
    pub raw: Value,
}

impl Record {
    /// Whether FullEnrich has finished this contact: the record carries `contact_info` or a
    /// `profile` (a webhook body may be the whole enrichment, with records still running).
    pub fn is_finished(&self) -> bool {
        self.profile.is_some() || finished(&self.raw)
    }
}

/// Whether a record as sent (JSON) is finished: it carries a `profile` or a `contact_info` that
/// is neither null nor `{}` (a batch that ended out of credits or canceled may hold records that
/// are present but empty, providers.md §2.4: those contacts were not enriched).
pub fn finished(raw: &Value) -> bool {
    let present = |k: &str| match raw.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    };
    present("profile") || present("contact_info")
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default, deserialize_with = "null_default")]
            input: Input,
            #[serde(default)]
            custom: Option<Value>,
            #[serde(default, deserialize_with = "null_default")]
            contact_info: ContactInfo,
            #[serde(default)]
            profile: Option<Value>,
        }
        let raw = Value::deserialize(d)?;
        let f = Fields::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(Record {
            input: f.input,
            custom: f.custom.filter(|v| !v.is_null()),
            contact_info: f.contact_info,
            profile: f.profile.filter(|v| !v.is_null()),
            raw,
        })
    }
}

impl Record {
    /// A value of `custom`, as a string (FullEnrich echoes `custom` unchanged, §2.9).
    pub fn custom_str(&self, key: &str) -> Option<String> {
        match self.custom.as_ref()?.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// `custom` as a map, whatever shape it came in (a map, or a JSON string holding one).
    pub fn custom_map(&self) -> Option<Map<String, Value>> {
        match self.custom.as_ref()? {
            Value::Object(m) => Some(m.clone()),
            Value::String(s) => serde_json::from_str(s).ok(),
            _ => None,
        }
    }
}

/// `input` echoes the request under its own names (§2.3; aliases per rule 10).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Input {
    #[serde(default, deserialize_with = "lenient_string")]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub full_name: Option<String>,
    #[serde(default, alias = "domain", deserialize_with = "lenient_string")]
    pub company_domain: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub company_name: Option<String>,
    #[serde(default, alias = "linkedin_url", deserialize_with = "lenient_string")]
    pub professional_network_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContactInfo {
    #[serde(default)]
    pub most_probable_work_email: Option<Email>,
    #[serde(default)]
    pub most_probable_personal_email: Option<Email>,
    #[serde(default)]
    pub most_probable_phone: Option<Phone>,
    #[serde(default, deserialize_with = "null_default")]
    pub work_emails: Vec<Email>,
    #[serde(default, deserialize_with = "null_default")]
    pub personal_emails: Vec<Email>,
    #[serde(default, deserialize_with = "null_default")]
    pub phones: Vec<Phone>,
}

impl ContactInfo {
    /// The work email to report: the most probable one, else the first listed with an address
    /// (rule 3: an entry without `email` is not found, whatever its status says).
    pub fn work_email(&self) -> Option<&Email> {
        self.most_probable_work_email
            .iter()
            .chain(self.work_emails.iter())
            .find(|e| e.email.is_some())
    }

    pub fn personal_email(&self) -> Option<&Email> {
        self.most_probable_personal_email
            .iter()
            .chain(self.personal_emails.iter())
            .find(|e| e.email.is_some())
    }

    pub fn phone(&self) -> Option<&Phone> {
        self.most_probable_phone
            .iter()
            .chain(self.phones.iter())
            .find(|p| p.number.is_some())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Email {
    #[serde(default, deserialize_with = "non_empty_string")]
    pub email: Option<String>,
    #[serde(default)]
    pub status: Option<EmailStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Phone {
    /// Kept raw: "E.164" in the spec, with spaces in the samples (§2.3).
    #[serde(default, deserialize_with = "non_empty_string")]
    pub number: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub region: Option<String>,
}

/// Error envelope `{"code","message"}` (§2.5); prefer `code` (rule 14).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FullenrichErrorBody {
    #[serde(default, deserialize_with = "lenient_string")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
}

/// Parses a batch webhook (`webhook_url`): the body equals the GET job object (§2.7).
pub fn parse_batch(body: &[u8]) -> Result<Job, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Parses a `contact_finished` webhook. No doc shows this payload (§2.7, §6.1): we take it as a job
/// object with the finished record(s) in `data`; a body with `input`/`contact_info` and no `data`
/// is one bare record.
pub fn parse_contact_finished(body: &[u8]) -> Result<Job, serde_json::Error> {
    let value: Value = serde_json::from_slice(body)?;
    let is_bare_record = value.as_object().is_some_and(|o| {
        !o.contains_key("data")
            && !o.contains_key("datas")
            && ["input", "contact_info", "custom", "profile"]
                .iter()
                .any(|k| o.contains_key(*k))
    });
    if is_bare_record {
        let record = Record::deserialize(value)?;
        Ok(Job {
            data: vec![record],
            ..Job::default()
        })
    } else {
        Job::deserialize(value)
    }
}
