//! Human units in config values: durations (`"10s"`, `"250ms"`, `"2m"`, `"24h"`, or a bare
//! number of seconds) and byte sizes (`"10MB"`, `"512KB"`, or a bare number of bytes).
//!
//! Config files and environment variables are written by people; `shutdown_timeout = "10s"`
//! reads better than `shutdown_timeout_ms = 10000`, and a typo is a startup error naming the key.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Parses `"250ms"`, `"10s"`, `"2m"`, `"1h"`, `"1d"` or `"10"` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. \"250ms\", \"10s\", \"2m\")"))?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m, h, d)"
            ));
        }
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

/// The shortest exact rendering: `Duration::from_secs(90)` → `"90s"`, 250 ms → `"250ms"`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(3_600_000) && millis > 0 {
        format!("{}h", millis / 3_600_000)
    } else if millis.is_multiple_of(60_000) && millis > 0 {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

/// Parses `"10MB"`, `"512KB"`, `"1GB"` (powers of 1024, like Express's `"10mb"`) or bytes.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. \"10MB\", \"512KB\")"))?;
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use B, KB, MB, GB)")),
    };
    amount
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

pub fn format_byte_size(bytes: u64) -> String {
    for (unit, size) in [("GB", 1u64 << 30), ("MB", 1 << 20), ("KB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Accepts a string with a unit or a bare unsigned number, then parses it with `parse`.
struct UnitVisitor<T> {
    parse: fn(&str) -> Result<T, String>,
    expecting: &'static str,
}

impl<T> Visitor<'_> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        if v < 0 {
            return Err(E::custom(format!("{v} is negative")));
        }
        (self.parse)(&v.to_string()).map_err(E::custom)
    }
}

/// `#[serde(with = "duration")]` for `Duration` fields.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(UnitVisitor {
            parse: parse_duration,
            expecting: "a duration such as \"10s\" or \"250ms\"",
        })
    }
}

/// `#[serde(with = "byte_size")]` for `u64` byte counts.
pub mod byte_size {
    use super::*;

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_byte_size(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(UnitVisitor {
            parse: parse_byte_size,
            expecting: "a size such as \"10MB\"",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("10 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn durations_round_trip_through_their_rendering() {
        for text in ["250ms", "10s", "2m", "24h", "0s", "1500ms"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }

    #[test]
    fn sizes_use_powers_of_1024() {
        assert_eq!(parse_byte_size("10MB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_byte_size("512kb"), Ok(512 * 1024));
        assert_eq!(parse_byte_size("100"), Ok(100));
        assert!(parse_byte_size("10 parsecs").is_err());
        assert!(parse_byte_size("99999999999999999999GB").is_err());
        assert_eq!(format_byte_size(10 * 1024 * 1024), "10MB");
        assert_eq!(format_byte_size(1000), "1000B");
    }
}
