//! Units: human durations like `2s`, `500ms`, `1m30s`, and their display;
//! on/off switches as people and CSV files write them.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration '{input}': {why} (examples: 500ms, 2s, 1.5s, 10m, 1h, 1m30s)")]
pub struct ParseDurationError {
    input: String,
    why: &'static str,
}

/// Parses durations such as `250ms`, `2s`, `1.5s`, `10m`, `1h`, `1m30s`,
/// `100us`. A bare number is taken as seconds.
pub fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |why| ParseDurationError { input: input.to_string(), why };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return to_duration(secs).ok_or_else(|| err("must be a finite, non-negative number"));
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| err("a number needs a unit"))?;
        if num_end == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| err("bad number"))?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(err("unknown unit (use ns, us, ms, s, m or h)")),
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    to_duration(total).ok_or_else(|| err("out of range"))
}

fn to_duration(secs: f64) -> Option<Duration> {
    if (0.0..1e12).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        None
    }
}

/// Formats seconds for humans: `850 ms`, `12.3 s`, `4m05s`, `2h10m`.
pub fn format_seconds(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let m = (secs / 60.0).floor();
        format!("{}m{:02.0}s", m as u64, secs - m * 60.0)
    } else {
        let h = (secs / 3600.0).floor();
        format!("{}h{:02.0}m", h as u64, (secs - h * 3600.0) / 60.0)
    }
}

/// `true`/`false` as people and CSV files write them (`True`, `yes`, `on`,
/// `1`, `enabled`, ...); `None` when the text is neither.
pub fn parse_switch(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "on" | "yes" | "y" | "1" | "enabled" | "enable" => Some(true),
        "false" | "f" | "off" | "no" | "n" | "0" | "disabled" | "disable" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
    }

    #[test]
    fn rejects_garbage_with_a_helpful_message() {
        for bad in ["", "s", "5x", "-1s", "ms5", "1..2s", "nan"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().contains("examples"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(format_seconds(0.85), "850 ms");
        assert_eq!(format_seconds(12.34), "12.3 s");
        assert_eq!(format_seconds(245.0), "4m05s");
        assert_eq!(format_seconds(7800.0), "2h10m");
    }
}

/// RFC 3339 UTC timestamp (`2026-11-25T19:40:51Z`) of a wall-clock time,
/// used only to label runs.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // date -u -d @1795635651 +%FT%TZ
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_635_651)), "2026-11-25T19:40:51Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }
}
