//! Writing a generated timeline to files: telemetry (Prometheus text with
//! timestamps, OpenMetrics, or JSONL), `kernel.log`, `episodes.jsonl` and
//! `topology.json`. Streams step by step; memory does not grow with time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::episode::{plan_schedule, Episode, SLOT_S, STEP_S};
use crate::telemetry::{
    self, kernel_log_line, labels_to_json, Frame, Labels, MetricKind, GPU_METRICS, PORT_METRICS, REPLICA_METRICS,
};
use crate::time::TIMELINE_EPOCH;
use crate::topology::Fleet;
use crate::AiopsError;

/// Telemetry file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TelemetryFormat {
    /// Prometheus text exposition, one scrape per step, millisecond timestamps.
    Prometheus,
    /// OpenMetrics, family by family (for `promtool tsdb create-blocks-from openmetrics`).
    OpenMetrics,
    /// One JSON object per sample.
    Jsonl,
}

impl TelemetryFormat {
    pub fn parse(s: &str) -> Option<TelemetryFormat> {
        match s {
            "prometheus" | "prom" => Some(TelemetryFormat::Prometheus),
            "openmetrics" | "om" => Some(TelemetryFormat::OpenMetrics),
            "jsonl" | "json" => Some(TelemetryFormat::Jsonl),
            _ => None,
        }
    }
    pub fn file_name(self) -> &'static str {
        match self {
            TelemetryFormat::Prometheus => "telemetry.prom",
            TelemetryFormat::OpenMetrics => "telemetry.om",
            TelemetryFormat::Jsonl => "telemetry.jsonl",
        }
    }
}

/// What `generate` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    pub gpus: usize,
    pub steps: u64,
    pub samples: u64,
    pub episodes: usize,
    pub files: Vec<PathBuf>,
    /// Wall time it took.
    pub secs: f64,
}

impl std::fmt::Display for GenerateSummary {
    /// What was written, how fast, and one line per file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} GPUs, {} steps, {} episodes, {} samples in {:.1} s ({:.0} samples/s)",
            self.gpus,
            self.steps,
            self.episodes,
            self.samples,
            self.secs,
            self.samples as f64 / self.secs.max(1e-9)
        )?;
        for p in &self.files {
            write!(f, "\n  {}", p.display())?;
        }
        Ok(())
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AiopsError + '_ {
    move |source| AiopsError::Io { path: path.display().to_string(), source }
}

/// Writes `steps` steps of telemetry in Prometheus text or JSONL to `out`,
/// starting at the timeline epoch; returns the number of samples.
pub fn write_telemetry<W: Write>(
    fleet: &Fleet,
    episodes: &[Episode],
    steps: u64,
    format: TelemetryFormat,
    out: &mut W,
) -> std::io::Result<u64> {
    let labels = Labels::new(fleet);
    let labels_json = JsonLabels::new(&labels);
    let mut frame = Frame::before(fleet, TIMELINE_EPOCH);
    let mut buf = String::with_capacity(1 << 20);
    let mut samples = 0u64;
    for _ in 0..steps {
        frame.advance(fleet, episodes);
        buf.clear();
        match format {
            TelemetryFormat::Prometheus | TelemetryFormat::OpenMetrics => {
                telemetry::write_exposition(&mut buf, fleet, &labels, &frame, Some(frame.t * 1000));
            }
            TelemetryFormat::Jsonl => write_jsonl(&mut buf, fleet, &labels_json, &frame),
        }
        samples += frame.series() as u64;
        out.write_all(buf.as_bytes())?;
    }
    Ok(samples)
}

struct JsonLabels {
    gpu: Vec<String>,
    port: Vec<String>,
    replica: Vec<String>,
}

impl JsonLabels {
    fn new(l: &Labels) -> JsonLabels {
        JsonLabels {
            gpu: l.gpu.iter().map(|s| labels_to_json(s)).collect(),
            port: l.port.iter().map(|s| labels_to_json(s)).collect(),
            replica: l.replica.iter().map(|s| labels_to_json(s)).collect(),
        }
    }
}

fn json_num(v: f64, kind: MetricKind) -> String {
    let v = telemetry::written_value(v, kind);
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn write_jsonl(buf: &mut String, fleet: &Fleet, labels: &JsonLabels, frame: &Frame) {
    use std::fmt::Write as _;
    let t = frame.t;
    for g in fleet.gpus() {
        let i = g.flat();
        if !frame.gpu_present[i] {
            continue;
        }
        for (m, def) in GPU_METRICS.iter().enumerate() {
            let _ = writeln!(
                buf,
                "{{\"t\":{t},\"metric\":\"{}\",\"labels\":{},\"value\":{}}}",
                def.name,
                labels.gpu[i],
                json_num(frame.gpus[i][m], def.kind)
            );
        }
    }
    for (i, row) in frame.ports.iter().enumerate() {
        for (m, def) in PORT_METRICS.iter().enumerate() {
            let _ = writeln!(
                buf,
                "{{\"t\":{t},\"metric\":\"{}\",\"labels\":{},\"value\":{}}}",
                def.name,
                labels.port[i],
                json_num(row[m], def.kind)
            );
        }
    }
    for (i, row) in frame.replicas.iter().enumerate() {
        if let Some(row) = row {
            for (m, def) in REPLICA_METRICS.iter().enumerate() {
                let _ = writeln!(
                    buf,
                    "{{\"t\":{t},\"metric\":\"{}\",\"labels\":{},\"value\":{}}}",
                    def.name,
                    labels.replica[i],
                    json_num(row[m], def.kind)
                );
            }
        }
    }
}

/// OpenMetrics wants each family in one block: write one temporary file per
/// family while stepping, then concatenate them.
fn write_openmetrics(fleet: &Fleet, episodes: &[Episode], steps: u64, path: &Path) -> Result<u64, AiopsError> {
    let tmp = path.with_extension("om.parts");
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let defs: Vec<(&telemetry::MetricDef, usize)> = GPU_METRICS
        .iter()
        .map(|d| (d, 0))
        .chain(PORT_METRICS.iter().map(|d| (d, 1)))
        .chain(REPLICA_METRICS.iter().map(|d| (d, 2)))
        .collect();
    let mut parts: Vec<BufWriter<File>> = Vec::with_capacity(defs.len());
    for i in 0..defs.len() {
        let p = tmp.join(format!("{i:03}"));
        parts.push(BufWriter::new(File::create(&p).map_err(io_err(&p))?));
    }
    let labels = Labels::new(fleet);
    let mut frame = Frame::before(fleet, TIMELINE_EPOCH);
    let mut samples = 0u64;
    let err = |e| AiopsError::Io { path: tmp.display().to_string(), source: e };
    for _ in 0..steps {
        frame.advance(fleet, episodes);
        let ts = frame.t;
        for (part, (def, group)) in parts.iter_mut().zip(&defs) {
            match group {
                0 => {
                    let idx = GPU_METRICS.iter().position(|d| d.name == def.name).unwrap_or(0);
                    for g in fleet.gpus() {
                        let i = g.flat();
                        if frame.gpu_present[i] {
                            writeln!(
                                part,
                                "{}{{{}}} {} {ts}",
                                def.name,
                                labels.gpu[i],
                                json_num(frame.gpus[i][idx], def.kind)
                            )
                            .map_err(err)?;
                            samples += 1;
                        }
                    }
                }
                1 => {
                    let idx = PORT_METRICS.iter().position(|d| d.name == def.name).unwrap_or(0);
                    for (i, row) in frame.ports.iter().enumerate() {
                        writeln!(part, "{}{{{}}} {} {ts}", def.name, labels.port[i], json_num(row[idx], def.kind))
                            .map_err(err)?;
                        samples += 1;
                    }
                }
                _ => {
                    let idx = REPLICA_METRICS.iter().position(|d| d.name == def.name).unwrap_or(0);
                    for (i, row) in frame.replicas.iter().enumerate() {
                        if let Some(row) = row {
                            writeln!(
                                part,
                                "{}{{{}}} {} {ts}",
                                def.name,
                                labels.replica[i],
                                json_num(row[idx], def.kind)
                            )
                            .map_err(err)?;
                            samples += 1;
                        }
                    }
                }
            }
        }
    }
    let mut out = BufWriter::new(File::create(path).map_err(io_err(path))?);
    for (i, (mut part, (def, _))) in parts.into_iter().zip(&defs).enumerate() {
        part.flush().map_err(err)?;
        drop(part);
        let (family, kind) = om_family(def);
        writeln!(out, "# HELP {family} {}\n# TYPE {family} {kind}", def.help).map_err(io_err(path))?;
        let p = tmp.join(format!("{i:03}"));
        let mut f = File::open(&p).map_err(io_err(&p))?;
        std::io::copy(&mut f, &mut out).map_err(io_err(path))?;
    }
    writeln!(out, "# EOF").map_err(io_err(path))?;
    out.flush().map_err(io_err(path))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(samples)
}

/// OpenMetrics family name and type: counters whose samples end in
/// `_total` drop the suffix; other cumulative series are typed `unknown` so
/// that every sample keeps the exporter's name.
fn om_family(def: &telemetry::MetricDef) -> (&'static str, &'static str) {
    match def.kind {
        MetricKind::Counter => match def.name.strip_suffix("_total") {
            Some(f) => (f, "counter"),
            None => (def.name, "unknown"),
        },
        MetricKind::Gauge => (def.name, "gauge"),
    }
}

/// `fleetbench aiops generate`: a fleet of `gpus` GPUs over `hours`, one
/// episode per 30-minute slot, written under `dir`.
pub fn generate(
    gpus: usize,
    hours: f64,
    seed: u64,
    format: TelemetryFormat,
    dir: &Path,
) -> Result<GenerateSummary, AiopsError> {
    if !(hours > 0.0 && hours <= 24.0 * 31.0) {
        return Err(AiopsError::Invalid("--hours must be above 0 and at most 744".into()));
    }
    let started = std::time::Instant::now();
    let fleet = Fleet::build(gpus, seed)?;
    let steps = ((hours * 3600.0) / STEP_S as f64).ceil().max(1.0) as u64;
    let slots = ((steps as i64 * STEP_S) as f64 / SLOT_S as f64).ceil() as usize;
    let episodes = plan_schedule(&fleet, slots, seed);
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut files = Vec::new();

    let topo = dir.join("topology.json");
    let text = serde_json::to_string_pretty(&fleet).unwrap_or_default();
    std::fs::write(&topo, text).map_err(io_err(&topo))?;
    files.push(topo);

    let eps_path = dir.join("episodes.jsonl");
    let mut w = BufWriter::new(File::create(&eps_path).map_err(io_err(&eps_path))?);
    for ep in &episodes {
        writeln!(w, "{}", ep.to_json()).map_err(io_err(&eps_path))?;
    }
    w.flush().map_err(io_err(&eps_path))?;
    files.push(eps_path);

    let log_path = dir.join("kernel.log");
    let mut w = BufWriter::new(File::create(&log_path).map_err(io_err(&log_path))?);
    for ep in &episodes {
        for x in ep.xids.iter().filter(|x| x.t >= ep.start && x.t < ep.end) {
            writeln!(w, "{}", kernel_log_line(&fleet, x)).map_err(io_err(&log_path))?;
        }
    }
    w.flush().map_err(io_err(&log_path))?;
    files.push(log_path);

    let tele = dir.join(format.file_name());
    let samples = match format {
        TelemetryFormat::OpenMetrics => write_openmetrics(&fleet, &episodes, steps, &tele)?,
        _ => {
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&tele).map_err(io_err(&tele))?);
            let n = write_telemetry(&fleet, &episodes, steps, format, &mut w).map_err(io_err(&tele))?;
            w.flush().map_err(io_err(&tele))?;
            n
        }
    };
    files.push(tele);
    let secs = started.elapsed().as_secs_f64();
    Ok(GenerateSummary { gpus: fleet.gpu_count(), steps, samples, episodes: episodes.len(), files, secs })
}

/// Reads `episodes.jsonl`: `(episode_id, scenario, truth)` per line.
pub fn read_episodes(text: &str) -> Result<Vec<(String, crate::Scenario, crate::Diagnosis)>, AiopsError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| AiopsError::EpisodeLine { line: i + 1, why };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let id =
            v.get("episode_id").and_then(|x| x.as_str()).ok_or_else(|| bad("missing string 'episode_id'".into()))?;
        let sc = v.get("scenario").and_then(|x| x.as_str()).ok_or_else(|| bad("missing string 'scenario'".into()))?;
        let scenario = crate::Scenario::from_id(sc).ok_or_else(|| bad(format!("unknown scenario '{sc}'")))?;
        let truth = v.get("truth").ok_or_else(|| bad("missing 'truth'".into()))?;
        let truth = crate::diagnosis::validate(truth).map_err(|e| bad(format!("truth: {e}")))?;
        out.push((id.to_string(), scenario, truth));
    }
    Ok(out)
}

/// `aiops score`: every episode of an `episodes.jsonl` text scored
/// against its answer in an answers JSONL text (`{"episode_id": ...,
/// "answer": "<raw text>"}` per line; every id must be an episode's; a
/// non-string answer is kept as its JSON text for the parser to judge).
/// An episode without an answer scores as unparseable; the count of those
/// comes second.
pub fn score_answers(episodes: &str, answers: &str) -> Result<(Vec<crate::EpisodeResult>, usize), AiopsError> {
    let episodes = read_episodes(episodes)?;
    let known: std::collections::BTreeSet<&str> = episodes.iter().map(|e| e.0.as_str()).collect();
    let mut by_id = std::collections::BTreeMap::new();
    for (i, line) in answers.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| AiopsError::AnswerLine { line: i + 1, why };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let id =
            v.get("episode_id").and_then(|x| x.as_str()).ok_or_else(|| bad("missing string 'episode_id'".into()))?;
        if !known.contains(id) {
            return Err(bad(format!("episode '{id}' is not in the episodes file")));
        }
        let answer = match v.get("answer") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        by_id.insert(id.to_string(), answer);
    }
    let missing = episodes.len() - by_id.len();
    let results = episodes
        .into_iter()
        .map(|(id, sc, truth)| {
            let answer = by_id.remove(&id).unwrap_or_default();
            crate::EpisodeResult::scored(&id, sc, &truth, answer)
        })
        .collect();
    Ok((results, missing))
}
