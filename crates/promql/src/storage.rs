//! In-memory series: labels (with `__name__`) and time-sorted samples.

use std::collections::HashMap;

use crate::PromqlError;

/// A label set, sorted by label name, without empty values.
pub type Labels = Vec<(String, String)>;

/// One series: its labels and its samples `(timestamp ms, value)`, sorted by
/// timestamp, at most one per timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// Unit of the timestamps in exposition text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    /// OpenMetrics: seconds, possibly fractional.
    Seconds,
    /// Prometheus text format: integer milliseconds.
    Milliseconds,
}

/// The series a query runs over.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    series: Vec<Series>,
    index: HashMap<Labels, usize>,
}

/// Sorts labels by name and drops empty values (an empty label is no label).
pub fn normalize(mut labels: Labels) -> Labels {
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    labels.dedup_by(|a, b| a.0 == b.0);
    labels
}

impl Storage {
    pub fn new() -> Self {
        Storage::default()
    }

    /// Reads OpenMetrics text (timestamps in seconds), as `fleetbench aiops
    /// generate --format openmetrics` writes it.
    pub fn from_openmetrics(text: &str) -> Result<Self, PromqlError> {
        Self::from_text(text, TimestampUnit::Seconds)
    }

    /// Reads exposition text whose every sample carries a timestamp.
    pub fn from_text(text: &str, unit: TimestampUnit) -> Result<Self, PromqlError> {
        let mut s = Storage::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (labels, v, ts) = parse_line(line, unit).map_err(|msg| PromqlError::Input { line: i + 1, msg })?;
            s.push(labels, ts, v);
        }
        Ok(s)
    }

    /// Adds one sample; a sample at an existing timestamp replaces it.
    pub fn push(&mut self, labels: Labels, ts: i64, v: f64) {
        let labels = normalize(labels);
        let idx = match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                self.series.push(Series { labels: labels.clone(), samples: Vec::new() });
                self.index.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let samples = &mut self.series[idx].samples;
        match samples.last() {
            Some(&(last, _)) if last < ts => samples.push((ts, v)),
            None => samples.push((ts, v)),
            _ => {
                let at = samples.partition_point(|&(t, _)| t < ts);
                if at < samples.len() && samples[at].0 == ts {
                    samples[at].1 = v;
                } else {
                    samples.insert(at, (ts, v));
                }
            }
        }
    }

    /// Every series, in insertion order.
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// The number of samples held.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

fn parse_line(line: &str, unit: TimestampUnit) -> Result<(Labels, f64, i64), String> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).ok_or("a sample line needs a value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut labels = vec![("__name__".to_string(), name.to_string())];
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let (ls, after) = parse_labels(r)?;
        labels.extend(ls);
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample line needs a value")?;
    let v = parse_value(value).ok_or_else(|| format!("invalid value {value:?}"))?;
    let ts = fields.next().ok_or("a sample needs a timestamp")?;
    let ts = match unit {
        TimestampUnit::Milliseconds => ts.parse::<i64>().map_err(|_| format!("invalid timestamp {ts:?}"))?,
        TimestampUnit::Seconds => {
            let s: f64 = ts.parse().map_err(|_| format!("invalid timestamp {ts:?}"))?;
            if !s.is_finite() || s.abs() > 1e14 {
                return Err(format!("timestamp out of range {ts:?}"));
            }
            (s * 1000.0).round() as i64
        }
    };
    if let Some(extra) = fields.next() {
        if !extra.starts_with('#') {
            return Err(format!("unexpected {extra:?} after the timestamp"));
        }
    }
    Ok((labels, v, ts))
}

fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix('}') {
            return Ok((out, r));
        }
        let eq = s.find('=').ok_or("a label needs '='")?;
        let name = s[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        let r = s[eq + 1..].trim_start().strip_prefix('"').ok_or("a label value needs quotes")?;
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((name.to_string(), value));
        s = r[end + 1..].trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

pub(crate) fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

pub(crate) fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openmetrics_with_escapes_and_seconds() {
        let text = "# TYPE x gauge\nx{a=\"q\\\"b\",b=\"\"} 1.5 10.25\nx{a=\"q\\\"b\"} NaN 10\n# EOF\n";
        let s = Storage::from_openmetrics(text).expect("valid");
        assert_eq!(s.series().len(), 1);
        let series = &s.series()[0];
        assert_eq!(series.labels, vec![("__name__".into(), "x".into()), ("a".into(), "q\"b".into())]);
        assert_eq!(series.samples[0].0, 10_000);
        assert!(series.samples[0].1.is_nan());
        assert_eq!(series.samples[1], (10_250, 1.5));
    }

    #[test]
    fn errors_name_the_line() {
        let err = Storage::from_openmetrics("x 1 1\ny{a=1} 2 3\n").expect_err("unquoted");
        assert_eq!(err, PromqlError::Input { line: 2, msg: "a label value needs quotes".into() });
        let err = Storage::from_text("x 1\n", TimestampUnit::Milliseconds).expect_err("no ts");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(Storage::from_openmetrics("9x 1 1\n").is_err());
    }

    #[test]
    fn push_keeps_samples_sorted_and_replaces_duplicates() {
        let mut s = Storage::new();
        let l = vec![("__name__".to_string(), "m".to_string())];
        s.push(l.clone(), 30, 3.0);
        s.push(l.clone(), 10, 1.0);
        s.push(l.clone(), 20, 2.0);
        s.push(l, 20, 4.0);
        assert_eq!(s.series()[0].samples, vec![(10, 1.0), (20, 4.0), (30, 3.0)]);
        assert_eq!(s.sample_count(), 3);
    }
}
