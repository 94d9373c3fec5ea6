//! Human-readable durations in the config file (`"30d"`, `"6h"`, `"90m"`, `"1h 30m"`).
//!
//! Operators read and write these values by hand, so a bare number (seconds? minutes?) is
//! refused: every duration carries its unit. Parsing is [`humantime`]'s, which the CLI uses
//! too, so what the daemon prints can be pasted back into the file.

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;
use std::fmt;
use std::time::Duration;

/// Example shown in every duration error, so the fix is one glance away.
pub const EXAMPLE: &str =
    r#"write a string with a unit, e.g. "30d", "6h", "90m" or "1h 30m" (m = minutes, M = months)"#;

/// Longest duration accepted: 100 years (humantime's 365.25-day years). Deadlines are
/// computed as `now + duration` (`Instant` in the flow runner, `DateTime` in the rule
/// engine), which panics when it overflows: `"18446744073709551615s"` parsed and then
/// panicked every run (found by tests/fuzz_parsers.rs). No setting needs more.
pub const MAX: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses one duration string, with a message that says what a valid value looks like.
///
/// Kept separate from the serde glue so the CLI (e.g. `--max-age`) can reuse it.
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration; {EXAMPLE}"));
    }
    let d = humantime::parse_duration(trimmed)
        .map_err(|e| format!("invalid duration \"{text}\": {e}; {EXAMPLE}"))?;
    if d > MAX {
        return Err(format!(
            "duration \"{text}\" is longer than 100 years: no setting needs that, and a \
             deadline that far cannot be computed; {EXAMPLE}"
        ));
    }
    Ok(d)
}

/// Formats a duration the way [`parse`] reads it back (`"30days"`, `"6h"`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde `deserialize_with` entry point: a TOML string → [`Duration`].
pub fn deserialize<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(DurationVisitor)
}

/// Serde `serialize_with` entry point, the inverse of [`deserialize`].
pub fn serialize<S>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
{
    serializer.serialize_str(&format(*d))
}

/// Accepts strings only; numbers get a message explaining why they are refused.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration string such as \"6h\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "a bare number ({v}) has no unit; {EXAMPLE}"
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "a bare number ({v}) has no unit; {EXAMPLE}"
        )))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "a bare number ({v}) has no unit; {EXAMPLE}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operator_spellings() {
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("6h"), Ok(Duration::from_secs(6 * 3_600)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5_400)));
    }

    #[test]
    fn errors_show_an_example() {
        let e = parse("30 dayz").expect_err("bad unit");
        assert!(e.contains("\"30d\""), "{e}");
        let e = parse("").expect_err("empty");
        assert!(e.contains("\"6h\""), "{e}");
    }

    #[test]
    fn format_round_trips() {
        let d = Duration::from_secs(30 * 86_400);
        assert_eq!(parse(&format(d)), Ok(d));
    }
}
