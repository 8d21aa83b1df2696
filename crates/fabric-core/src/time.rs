//! Parsing and printing of the time values operators type: `--since 30m|24h|7d|RFC 3339`.

use crate::CoreError;

/// Parses a duration like `500ms`, `30s`, `30m`, `24h`, `7d` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{s}' has no unit (use ms, s, m, h or d)"))?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("'{s}' does not start with a whole number"))?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "'{s}' has unknown unit '{unit}' (use ms, s, m, h or d)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Parses a `--since` value (`30m`, `24h`, `7d` or an RFC 3339 time) into an epoch-ms cut-off.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, CoreError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match parse_duration_ms(s) {
        Ok(d) => now_ms.checked_sub(d).ok_or_else(|| {
            CoreError::invalid("--since", format!("'{}' reaches too far back", s.trim()))
        }),
        Err(e) => Err(CoreError::invalid(
            "--since",
            format!("{e}; expected e.g. 30m, 24h, 7d or an RFC 3339 time"),
        )),
    }
}

/// Parses an absolute RFC 3339 time, or a delay from now like `10m`, into epoch ms.
pub fn parse_at(field: &str, s: &str, now_ms: i64) -> Result<i64, CoreError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let d = parse_duration_ms(s).map_err(|e| {
        CoreError::invalid(
            field,
            format!("{e}; expected an RFC 3339 time or a delay like 10m"),
        )
    })?;
    // Beyond what the store's clock can represent as an RFC 3339 time is not a real schedule.
    now_ms
        .checked_add(d)
        .filter(|t| chrono::DateTime::from_timestamp_millis(*t).is_some())
        .ok_or_else(|| CoreError::invalid(field, format!("'{}' is too far ahead", s.trim())))
}

/// A duration in whole milliseconds as `i64`, saturating at `i64::MAX`: leases, timeouts and
/// intervals from a config or a caller are added to epoch-ms times with this, never with an
/// `as` cast that would wrap a huge duration to a negative one.
pub fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `t` milliseconds from `now` as a [`std::time::Duration`]: zero when `t` is not after `now`.
pub fn until_ms(now: i64, t: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(t.saturating_sub(now)).unwrap_or(0))
}

/// Formats epoch ms as RFC 3339 UTC with millisecond precision.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_saturate_instead_of_wrapping() {
        use std::time::Duration;
        assert_eq!(duration_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
        assert_eq!(duration_ms(Duration::from_millis(u64::MAX)), i64::MAX);
        assert_eq!(until_ms(10, 25), Duration::from_millis(15));
        assert_eq!(until_ms(25, 10), Duration::ZERO);
        assert_eq!(
            until_ms(i64::MIN, i64::MAX),
            Duration::from_millis(i64::MAX as u64)
        );
        assert_eq!(until_ms(i64::MAX, i64::MIN), Duration::ZERO);
    }

    proptest! {
        /// Any text and any clock reading give a time or an error naming the option.
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,40}", now in any::<i64>()) {
            if let Err(e) = parse_since(&s, now) {
                prop_assert!(e.to_string().contains("--since"));
            }
            if let Err(e) = parse_at("run-at", &s, now) {
                prop_assert!(e.to_string().contains("run-at"));
            }
            let _ = format_ms(now);
        }

        #[test]
        fn huge_numbers_never_overflow(n in any::<u64>(), unit in "(ms|s|m|h|d)", now in any::<i64>()) {
            let s = format!("{n}{unit}");
            let _ = parse_duration_ms(&s);
            let _ = parse_since(&s, now);
            let _ = parse_at("run-at", &s, now);
        }
    }

    #[test]
    fn a_delay_past_the_end_of_time_is_an_error_naming_the_field() {
        let e = parse_at("run-at", "9223372036854775d", 1_000).unwrap_err();
        assert!(e.to_string().contains("run-at"), "{e}");
        let e = parse_at("run-at", "106751991167d", i64::MAX - 10).unwrap_err();
        assert!(e.to_string().contains("too far ahead"), "{e}");
        let e = parse_since("106751991167d", i64::MIN + 10).unwrap_err();
        assert!(e.to_string().contains("--since"), "{e}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("30m"), Ok(1_800_000));
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_duration_ms("7").is_err());
        assert!(parse_duration_ms("7w").is_err());
        assert!(parse_duration_ms("h").is_err());
    }

    #[test]
    fn since_accepts_relative_and_rfc3339() {
        assert_eq!(parse_since("1h", 10_000_000), Ok(10_000_000 - 3_600_000));
        assert_eq!(
            parse_since("2026-01-01T00:00:00Z", 0),
            Ok(1_767_225_600_000)
        );
        let err = parse_since("yesterday", 0).unwrap_err().to_string();
        assert!(err.contains("--since"), "{err}");
        assert!(err.contains("yesterday"), "{err}");
    }

    #[test]
    fn format_round_trips() {
        let t = 1_767_225_600_123;
        assert_eq!(format_ms(t), "2026-01-01T00:00:00.123Z");
        assert_eq!(parse_since(&format_ms(t), 0), Ok(t));
    }
}
