//! The ids the relay passes around, each its own type, so that a chunk index is never taken for a
//! contact index nor a provider's id for a job's: [`JobId`], [`ChunkIndex`], [`ContactIndex`],
//! [`ProviderId`]. On the wire and in the tables each is what it wraps (`#[serde(transparent)]`),
//! so messages and items written before these types read the same.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job's id as the relay issues it (`job_…`): 1 to 64 characters of `[A-Za-z0-9_-]` when it
/// came from a URL ([`JobId::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// An id the relay made or read back from its own store or queue.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// An id that came from outside (a URL, a CLI argument): `None` unless it is 1 to 64
    /// characters of `[A-Za-z0-9_-]`. Checked before anything else touches it.
    pub fn parse(id: &str) -> Option<Self> {
        Self::is_valid(id).then(|| Self(id.to_owned()))
    }

    /// Whether `id` is 1 to 64 characters of `[A-Za-z0-9_-]` ([`Self::parse`] without the copy).
    pub fn is_valid(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A provider's id of a request the relay started (FullEnrich's `enrichment_id`, Enrow's search
/// or bulk `id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderId(String);

impl ProviderId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

macro_rules! string_id {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl PartialEq<String> for $t {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
        impl PartialEq<&$t> for $t {
            fn eq(&self, other: &&$t) -> bool {
                self == *other
            }
        }
        impl PartialEq<$t> for str {
            fn eq(&self, other: &$t) -> bool {
                self == other.0
            }
        }
        impl PartialEq<$t> for String {
            fn eq(&self, other: &$t) -> bool {
                *self == other.0
            }
        }
        impl From<&$t> for String {
            fn from(id: &$t) -> String {
                id.0.clone()
            }
        }
    };
}
string_id!(JobId);
string_id!(ProviderId);

/// A chunk's index in its job: its place in the `CHUNK#<index:05>` sort key. A chunk split in
/// halves gives its halves new indices ([`crate::jobs::JobMeta::chunk_seq`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ChunkIndex(pub u32);

/// A contact's index in its job (0-based, in the order the caller sent them): what a result is
/// mapped back by, and the `CONTACT#` / `RESULT#<index:07>` sort keys.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ContactIndex(pub u64);

macro_rules! number_id {
    ($t:ident, $n:ty) => {
        impl $t {
            pub const fn get(self) -> $n {
                self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl From<$n> for $t {
            fn from(n: $n) -> Self {
                Self(n)
            }
        }
        impl From<$t> for $n {
            fn from(id: $t) -> $n {
                id.0
            }
        }
        impl std::str::FromStr for $t {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
        /// The index `n` places on.
        impl std::ops::Add<$n> for $t {
            type Output = $t;
            fn add(self, n: $n) -> $t {
                Self(self.0 + n)
            }
        }
    };
}
number_id!(ChunkIndex, u32);
number_id!(ContactIndex, u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_what_they_wrap_on_the_wire() {
        let job = JobId::new("job_1");
        assert_eq!(serde_json::to_string(&job).unwrap(), "\"job_1\"");
        assert_eq!(serde_json::from_str::<JobId>("\"job_1\"").unwrap(), job);
        assert_eq!(serde_json::to_string(&ChunkIndex(7)).unwrap(), "7");
        assert_eq!(
            serde_json::from_str::<ContactIndex>("42").unwrap(),
            ContactIndex(42)
        );
        assert_eq!(
            serde_json::to_string(&ProviderId::new("p")).unwrap(),
            "\"p\""
        );
    }

    #[test]
    fn a_job_id_from_outside_is_checked() {
        assert!(JobId::parse("job_abc-DEF_0").is_some());
        assert!(JobId::parse("").is_none());
        assert!(JobId::parse("job/1").is_none());
        assert!(JobId::parse(&"a".repeat(65)).is_none());
        assert!(JobId::parse(&"a".repeat(64)).is_some());
    }
}
