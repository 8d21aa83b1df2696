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
        Ok(d) => Ok(now_ms - d),
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
    parse_duration_ms(s).map(|d| now_ms + d).map_err(|e| {
        CoreError::invalid(
            field,
            format!("{e}; expected an RFC 3339 time or a delay like 10m"),
        )
    })
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
