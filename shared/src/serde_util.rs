//! Deserializers for the tolerance rules of providers.md §4.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `null` and absent both become `T::default()` (rule 2: `null` = absent = empty, arrays included).
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string, a number or a bool, kept as a `String` (rule 7: `index` is `"0"`, `0` or a UUID;
/// rule 8: ids are opaque strings). Anything else (object, array, null) is `None`.
pub fn lenient_string<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// A string that counts only when it has text (rule 3: `""` means not found).
pub fn non_empty_string<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(lenient_string(d)?.filter(|s| !s.trim().is_empty()))
}

/// Any JSON number, or a string holding one, as `f64` (rule 9: credits are 0.25, 386.25, int64 …).
pub fn lenient_f64<'de, D>(d: D) -> Result<Option<f64>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Declares an open enum (rule 5): the known variants plus `Other(String)`; never fails on a new value.
/// Matching is case-insensitive; `as_str` gives the canonical spelling back.
#[macro_export]
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know; kept as sent.
            Other(String),
        }

        impl $name {
            pub fn parse(s: &str) -> Self {
                $(if s.eq_ignore_ascii_case($text) { return $name::$variant; })+
                $name::Other(s.to_string())
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s.as_str(),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // A non-string (number, object) is kept as its JSON text rather than failing the record.
                Ok(match <serde_json::Value as serde::Deserialize>::deserialize(d)? {
                    serde_json::Value::String(s) => $name::parse(&s),
                    other => $name::Other(other.to_string()),
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
