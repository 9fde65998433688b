//! Durations in the config, written as `500ms`, `2s`, `1m` or `1h30m`.
//!
//! Use as `#[serde(with = "crate::checks::shared::duration")]` on a `Duration`
//! field, or [`option`] on an `Option<Duration>` field.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parse a duration string; the error says what is accepted.
pub fn parse(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        format!("invalid duration {s:?}: write a number with a unit, like 500ms, 2s or 1m")
    })?;
    if d.is_zero() {
        return Err(format!("invalid duration {s:?}: must be greater than zero"));
    }
    Ok(d)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = DurationText::deserialize(d)?;
    parse(&raw.0).map_err(serde::de::Error::custom)
}

/// For `Option<Duration>` fields.
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<DurationText>::deserialize(d)?
            .map(|raw| parse(&raw.0).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Accepts a string, and reports a bare number as a missing unit rather
/// than as a type error.
struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration like 500ms, 2s or 1m")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationText, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required, like {v}s or {v}ms"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationText, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required, like {v}s or {v}ms"
                )))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationText, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required, like {v}s"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn rejects_zero_and_garbage() {
        assert!(parse("0s").unwrap_err().contains("greater than zero"));
        assert!(parse("soon").unwrap_err().contains("like 500ms, 2s or 1m"));
    }
}
