//! The CSV of the published Local LLM Bench series, so fleetbench results
//! sit next to theirs: one row per task, with the run's wall time and
//! effective aggregate speed repeated on each row.

use std::io::{Read, Write};

use fleetbench_core::RequestRecord;
use serde::{Deserialize, Serialize};

use crate::ReportError;

/// The series' columns, in its order.
pub const COLUMNS: [&str; 12] = [
    "concurrency",
    "run",
    "task",
    "label",
    "task_type",
    "completion_tokens",
    "wall_seconds",
    "tok_per_sec",
    "finish_reason",
    "run_wall_seconds",
    "run_aggregate_tokens",
    "run_effective_tok_per_sec",
];

/// One row of the series' CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    pub concurrency: u32,
    pub run: u32,
    /// The task's id: the series writes its prompt keys (`algo_a`), we
    /// write the request id; never a number to compute with.
    pub task: String,
    pub label: String,
    pub task_type: String,
    pub completion_tokens: u64,
    pub wall_seconds: f64,
    pub tok_per_sec: f64,
    pub finish_reason: String,
    pub run_wall_seconds: f64,
    pub run_aggregate_tokens: u64,
    pub run_effective_tok_per_sec: f64,
}

/// One measured run of a level: its concurrency, its number (from 1), its
/// wall time, and its measured (non-warm-up) requests.
pub struct BenchRun<'a> {
    pub concurrency: u32,
    pub run: u32,
    pub run_wall_seconds: f64,
    pub records: &'a [RequestRecord],
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The series' task type and task id for a coding-swarm label (`tests/3`):
/// its types are `algorithm`, `testing`, `refactoring` and `system_design`,
/// its ids a type prefix and a variant letter (`test_c`). The tasks behind
/// them are fleetbench's coding-swarm tasks, not the series' own prompts.
fn series_task(label: &str) -> Option<(String, String)> {
    let (kind, variant) = label.split_once('/')?;
    let n: u32 = variant.parse().ok().filter(|n| (1..=26).contains(n))?;
    let (prefix, task_type) = match kind {
        "algorithm" => ("algo", "algorithm"),
        "tests" => ("test", "testing"),
        "refactoring" => ("refactor", "refactoring"),
        "design" => ("design", "system_design"),
        _ => return None,
    };
    let letter = char::from(b'a' + (n - 1) as u8);
    Some((format!("{prefix}_{letter}"), task_type.to_string()))
}

/// Rows of one run, completed requests only (failures have no speed).
pub fn rows(run: &BenchRun<'_>) -> Vec<BenchRow> {
    let done: Vec<&RequestRecord> = run.records.iter().filter(|r| r.ok() && !r.warmup).collect();
    let aggregate: u64 = done.iter().map(|r| r.output_tokens).sum();
    let wall = round(run.run_wall_seconds, 3);
    done.iter()
        .enumerate()
        .map(|(i, r)| {
            let label = r.label.clone().unwrap_or_else(|| r.request_id.clone());
            let own = if r.request_id.is_empty() { (i + 1).to_string() } else { r.request_id.clone() };
            let (task, task_type) =
                series_task(&label).unwrap_or_else(|| (own, label.split('/').next().unwrap_or("").to_string()));
            let secs = round(r.t_end - r.t_send, 3);
            BenchRow {
                concurrency: run.concurrency,
                run: run.run,
                task,
                task_type,
                label,
                completion_tokens: r.output_tokens,
                wall_seconds: secs,
                tok_per_sec: if secs > 0.0 { round(r.output_tokens as f64 / secs, 2) } else { 0.0 },
                finish_reason: r.finish_reason.clone().unwrap_or_default(),
                run_wall_seconds: wall,
                run_aggregate_tokens: aggregate,
                run_effective_tok_per_sec: if wall > 0.0 { round(aggregate as f64 / wall, 2) } else { 0.0 },
            }
        })
        .collect()
}

/// Writes rows with the series' header.
pub fn write<W: Write>(out: W, rows: &[BenchRow]) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(out);
    for r in rows {
        w.serialize(r)?;
    }
    if rows.is_empty() {
        w.write_record(COLUMNS)?;
    }
    w.flush()?;
    Ok(())
}

/// Reads such a CSV (extra columns are ignored; a missing one is an error
/// naming it).
pub fn read<R: Read>(input: R) -> Result<Vec<BenchRow>, ReportError> {
    let mut r = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let headers = r.headers().map_err(ReportError::CsvRead)?.clone();
    for c in COLUMNS {
        if !headers.iter().any(|h| h == c) {
            return Err(ReportError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the CSV lacks the column '{c}' (expected the Local LLM Bench columns: {})",
                    COLUMNS.join(", ")
                ),
            )));
        }
    }
    r.deserialize().map(|row| row.map_err(ReportError::CsvRead)).collect()
}

/// Records equivalent to rows (for storing an imported run): each task
/// starts at 0 and ends at its wall time; token instants are unknown.
pub fn records_from_rows(rows: &[&BenchRow]) -> Vec<RequestRecord> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| RequestRecord {
            index: i as u64,
            request_id: r.task.clone(),
            label: Some(r.label.clone()),
            t_end: r.wall_seconds,
            output_tokens: r.completion_tokens,
            event_tokens: r.completion_tokens,
            token_source: fleetbench_core::TokenSource::Server,
            finish_reason: (!r.finish_reason.is_empty()).then(|| r.finish_reason.clone()),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench_testkit::RecordBuilder;

    #[test]
    fn header_is_the_series_header() {
        let mut out = Vec::new();
        let rec =
            RecordBuilder::bare(0).send(1.0).end(11.0).output_tokens(1500).label("algorithm/2").finish("stop").build();
        let recs = [rec];
        let rs = rows(&BenchRun { concurrency: 2, run: 1, run_wall_seconds: 12.5, records: &recs });
        write(&mut out, &rs).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().next().unwrap(), COLUMNS.join(","));
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "2,1,algo_b,algorithm/2,algorithm,1500,10.0,150.0,stop,12.5,1500,120.0"
        );
        assert_eq!(read(text.as_bytes()).unwrap(), rs);
        assert!(read("concurrency,run\n1,1\n".as_bytes()).unwrap_err().to_string().contains("task"));
    }

    #[test]
    fn coding_swarm_tasks_get_the_series_ids_and_types() {
        assert_eq!(series_task("tests/3"), Some(("test_c".into(), "testing".into())));
        assert_eq!(series_task("design/1"), Some(("design_a".into(), "system_design".into())));
        assert_eq!(series_task("refactoring/8"), Some(("refactor_h".into(), "refactoring".into())));
        // Other labels keep the request id and their own type.
        assert_eq!(series_task("group 2"), None);
        let rec = RecordBuilder::bare(0).request_id("r-7").send(0.0).end(1.0).output_tokens(10).label("chat/x").build();
        let recs = [rec];
        let rs = rows(&BenchRun { concurrency: 1, run: 1, run_wall_seconds: 1.0, records: &recs });
        assert_eq!((rs[0].task.as_str(), rs[0].task_type.as_str()), ("r-7", "chat"));
    }

    #[test]
    fn the_series_task_ids_are_words_and_errors_say_reading() {
        // The series writes prompt keys as task ids.
        let csv =
            format!("{}\n4,2,algo_a,Binary search,algorithm,812,9.95,81.6,stop,41.2,9120,221.4\n", COLUMNS.join(","));
        let rows = read(csv.as_bytes()).expect("the series' rows read");
        assert_eq!((rows[0].task.as_str(), rows[0].concurrency, rows[0].completion_tokens), ("algo_a", 4, 812));
        assert_eq!(records_from_rows(&[&rows[0]])[0].request_id, "algo_a");
        let bad = format!("{}\n4,two,algo_a,x,y,1,1,1,stop,1,1,1\n", COLUMNS.join(","));
        let e = read(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("reading CSV") && e.contains("line: 2"), "{e}");
    }
}
