//! The tools of one investigate-mode episode ([`EpisodeTools`], a
//! [`Toolset`]): PromQL over the episode's telemetry through the embedded
//! engine, the kernel log, the topology, the runbook and the submission.
//! Every argument is parsed and bounded; every output is bounded in size;
//! a malformed call is answered with a readable [`ToolReply::Error`].

use serde_json::{json, Value};

use fleetbench_promql::{parse, query_with_limits, range_with_limits, Expr, Limits, MatchOp, Matcher, QueryResult};

use super::cases::labels;
use super::score::parse_submission;
use super::tools::{ToolFuture, ToolReply, ToolSpec, Toolset};
use super::world::{Vendor, Work, World, GPUS_PER_NODE, PORTS_PER_NODE};
use super::{kernel, series};
use crate::scenario::Action;
use crate::time::{format_rfc3339, parse_rfc3339};

/// Largest tool output, characters; longer outputs are cut with a note.
pub const MAX_OUTPUT: usize = 12_000;
/// Longest query, grep pattern or entity accepted, bytes.
pub const MAX_QUERY: usize = 2_000;
const MAX_GREP: usize = 200;
const MAX_RANGE_POINTS: i64 = 1_000;
const MAX_SERIES_SHOWN: usize = 60;

/// docs/RUNBOOK.md, the text `runbook` searches.
pub const RUNBOOK: &str = include_str!("../../../../docs/RUNBOOK.md");

/// The tools of one episode.
#[derive(Debug)]
pub struct EpisodeTools {
    world: World,
}

impl EpisodeTools {
    pub fn new(world: World) -> EpisodeTools {
        EpisodeTools { world }
    }

    /// The world behind the tools (truth included: for scoring and `oracle`).
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The alerts firing, in Alertmanager's shape (what the briefing shows).
    pub fn alerts(&self) -> Vec<Value> {
        self.world.alerts.iter().map(|a| a.to_json()).collect()
    }

    /// Runs one call synchronously (what [`Toolset::call`] wraps).
    pub fn call_now(&self, name: &str, args: &Value) -> ToolReply {
        let out = match name {
            "promql_query" => self.promql_query(args),
            "promql_range" => self.promql_range(args),
            "kernel_log" => self.kernel_log(args),
            "topology" => self.topology(args),
            "runbook" => runbook(args),
            "submit_diagnosis" => {
                return match parse_submission(args) {
                    Ok(_) => ToolReply::Submitted(args.clone()),
                    Err(e) => ToolReply::Error(format!("submit_diagnosis: {e}; fix it and submit again")),
                }
            }
            other => Err(format!("unknown tool '{}'; the tools are {}", cut(other, 40), super::TOOL_NAMES.join(", "))),
        };
        match out {
            Ok(text) => ToolReply::Output(bound(text)),
            Err(e) => ToolReply::Error(e),
        }
    }

    fn time_arg(&self, args: &Value, key: &str, default: i64) -> Result<i64, String> {
        let t = match args.get(key) {
            None | Some(Value::Null) => return Ok(default),
            Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()).map(|v| v as i64),
            Some(Value::String(s)) => parse_time(s, self.world.now),
            Some(_) => None,
        }
        .ok_or_else(|| format!("'{key}' must be an RFC 3339 time, Unix seconds, 'now' or 'now-30m'"))?;
        // Times outside the data are clamped to it (the history starts at
        // `history_start`; nothing exists after `now`).
        let t = t.clamp(self.world.history_start - 3600, self.world.now);
        Ok(t)
    }

    fn storage(&self, query: &str) -> Result<(fleetbench_promql::Storage, Limits), String> {
        if query.len() > MAX_QUERY {
            return Err(format!("query is {} bytes, at most {MAX_QUERY}", query.len()));
        }
        let expr = parse(query).map_err(|e| format!("PromQL {e}"))?;
        let mut sel = Selection::default();
        collect(&expr, &series::metric_names(), &mut sel)?;
        sel.names.sort_unstable();
        sel.names.dedup();
        let names = sel.names;
        let keep = |host: &str| sel.all_hosts || sel.hosts.iter().any(|m| m.matches(host));
        let limits = Limits {
            max_points: MAX_RANGE_POINTS as usize,
            max_series: 5_000,
            max_samples: 20_000_000,
            ..Limits::default()
        };
        let n = series::count_for(&self.world, &names, &keep);
        if n > limits.max_series {
            return Err(format!(
                "the selectors match {n} series, more than {}: name fewer metrics or pin Hostname=\"...\" (or a Hostname=~ regex)",
                limits.max_series
            ));
        }
        Ok((series::storage_for(&self.world, &names, &keep), limits))
    }

    fn promql_query(&self, args: &Value) -> Result<String, String> {
        let query = str_arg(args, "query", MAX_QUERY)?;
        let t = self.time_arg(args, "time", self.world.now)?;
        let (s, limits) = self.storage(query)?;
        let r = query_with_limits(&s, query, t * 1000, &limits).map_err(|e| format!("PromQL {e}"))?;
        render_as(args, &r)
    }

    fn promql_range(&self, args: &Value) -> Result<String, String> {
        let query = str_arg(args, "query", MAX_QUERY)?;
        let end = self.time_arg(args, "end", self.world.now)?;
        let start = self.time_arg(args, "start", end - 3600)?;
        let step = match args.get("step") {
            None | Some(Value::Null) => 60,
            Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite() && *v >= 1.0).map_or(0, |v| v as i64),
            Some(Value::String(s)) => parse_duration(s).unwrap_or(0),
            Some(_) => 0,
        };
        if step < 15 {
            return Err("'step' must be at least 15 seconds (e.g. 60 or \"1m\")".into());
        }
        if start > end {
            return Err("'start' is after 'end'".into());
        }
        if (end - start) / step > MAX_RANGE_POINTS {
            return Err(format!(
                "{} points asked; at most {MAX_RANGE_POINTS}: raise 'step' or narrow the range",
                (end - start) / step
            ));
        }
        let (s, limits) = self.storage(query)?;
        let r = range_with_limits(&s, query, start * 1000, end * 1000, step * 1000, &limits)
            .map_err(|e| format!("PromQL {e}"))?;
        render_as(args, &r)
    }

    fn kernel_log(&self, args: &Value) -> Result<String, String> {
        let w = &self.world;
        let node = str_arg(args, "node", 64)?;
        let n = w
            .topo
            .node_by_name(node)
            .ok_or_else(|| format!("no node named '{}' (topology lists them)", cut(node, 64)))?;
        let until = self.time_arg(args, "until", w.now)?;
        let since = self.time_arg(args, "since", until - 3600)?;
        let grep = match args.get("grep") {
            None | Some(Value::Null) => None,
            Some(Value::String(g)) if g.len() <= MAX_GREP => Some(
                regex::RegexBuilder::new(g)
                    .size_limit(1 << 16)
                    .build()
                    .map_err(|e| format!("'grep' is not a valid regular expression: {}", cut(&e.to_string(), 200)))?,
            ),
            Some(_) => return Err(format!("'grep' must be a regular expression of at most {MAX_GREP} bytes")),
        };
        let lines: Vec<String> = kernel::lines(w, n, since, until)
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| grep.as_ref().is_none_or(|re| re.is_match(l)))
            .collect();
        if lines.is_empty() {
            return Ok(format!("(no lines on {node} between {} and {})", format_rfc3339(since), format_rfc3339(until)));
        }
        Ok(lines.join("\n"))
    }

    fn topology(&self, args: &Value) -> Result<String, String> {
        let w = &self.world;
        let t = &w.topo;
        let entity = match args.get("entity") {
            None | Some(Value::Null) => "fleet",
            Some(Value::String(s)) if s.len() <= 64 => s.trim(),
            Some(_) => return Err("'entity' must be a name of at most 64 characters".into()),
        };
        let v = if entity.is_empty() || entity.eq_ignore_ascii_case("fleet") {
            let mut kinds: Vec<&str> = t.nodes.iter().map(|n| super::world::KINDS[n.kind].model).collect();
            kinds.sort();
            kinds.dedup();
            json!({
                "gpus": t.gpu_count(),
                "nodes": t.nodes.len(),
                "gpu_models": kinds,
                "cooling_loops": t.loops.iter().map(|l| json!({"loop": l.name, "racks": l.racks.iter().map(|&r| &t.racks[r].name).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                "jobs": t.jobs.iter().filter(|j| !j.nodes.is_empty()).map(|j| json!({"job": j.id, "nodes": j.nodes.len(), "first_node": t.nodes[j.nodes[0]].name})).collect::<Vec<_>>(),
                "hint": "ask topology for a loop, rack, node, job or leaf switch by name",
            })
        } else if let Some(l) = t.loop_by_name(entity) {
            json!({"loop": t.loops[l].name, "racks": t.loops[l].racks.iter().map(|&r| json!({"rack": t.racks[r].name, "nodes": t.racks[r].nodes.iter().map(|&n| &t.nodes[n].name).collect::<Vec<_>>()})).collect::<Vec<_>>()})
        } else if let Some(r) =
            t.rack_by_name(entity).or_else(|| t.racks.iter().position(|r| r.leaf.eq_ignore_ascii_case(entity)))
        {
            let rack = &t.racks[r];
            json!({
                "rack": rack.name, "cooling_loop": t.loops[rack.cooling_loop].name, "leaf_switch": rack.leaf,
                "nodes": rack.nodes.iter().map(|&n| json!({"node": t.nodes[n].name, "gpu_model": t.kind(n).model, "work": work(w, n)})).collect::<Vec<_>>(),
                "leaf_ports": rack.nodes.iter().enumerate().flat_map(|(i, &n)| (0..PORTS_PER_NODE).map(move |p| (i, n, p))).map(|(i, n, p)| json!({"port": format!("{}/{}", rack.leaf, 1 + i * PORTS_PER_NODE + p), "node": t.nodes[n].name, "device": format!("mlx5_{p}")})).collect::<Vec<_>>(),
            })
        } else if let Some(n) = t.node_by_name(entity) {
            let node = &t.nodes[n];
            let kind = t.kind(n);
            let rack = &t.racks[node.rack];
            let (exporter, fabric) = match kind.vendor {
                Vendor::Nvidia => (
                    "dcgm-exporter (labels Hostname, gpu, pci_bus_id)",
                    "NVLink through NVSwitch: every GPU reaches the 7 others; 18 links per GPU (nvlink0..nvlink17)",
                ),
                Vendor::Amd => (
                    "amd-device-metrics-exporter (labels hostname, gpu_id)",
                    "Infinity Fabric (xGMI): every GPU links directly to the 7 others",
                ),
            };
            json!({
                "node": node.name, "rack": rack.name, "cooling_loop": t.loops[rack.cooling_loop].name,
                "gpu_model": kind.model, "power_limit_w": kind.tdp_w, "pcie_max_gen": node.pcie_max_gen,
                "exporter": exporter, "gpu_interconnect": fabric, "work": work(w, n),
                "gpus": (0..GPUS_PER_NODE).map(|g| json!({"gpu": g, "pci": t.pci(n, g), "nvlink_peers": (0..GPUS_PER_NODE).filter(|&p| p != g).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                "ib_ports": (0..PORTS_PER_NODE).map(|p| json!({"device": format!("mlx5_{p}"), "leaf_switch": rack.leaf, "leaf_port": 1 + rack.nodes.iter().position(|&m| m == n).unwrap_or(0) * PORTS_PER_NODE + p})).collect::<Vec<_>>(),
            })
        } else if let Some(j) = t.jobs.iter().position(|j| j.id.eq_ignore_ascii_case(entity)) {
            json!({"job": t.jobs[j].id, "kind": "training", "nodes": t.jobs[j].nodes.iter().map(|&n| &t.nodes[n].name).collect::<Vec<_>>()})
        } else {
            return Err(format!(
                "no loop, rack, leaf switch, node or job named '{}'; topology(\"fleet\") lists them",
                cut(entity, 64)
            ));
        };
        serde_json::to_string(&v).map_err(|e| e.to_string())
    }
}

fn work(w: &World, n: usize) -> Value {
    match &w.topo.nodes[n].work {
        Work::Training { job } => {
            json!({"training_job": w.topo.jobs[*job].id, "job_nodes": w.topo.jobs[*job].nodes.len()})
        }
        Work::Serving { model } => json!({"vllm_replica": model}),
    }
}

/// The metric names and host filters a query's selectors use.
#[derive(Default)]
struct Selection {
    names: Vec<&'static str>,
    hosts: Vec<Matcher>,
    all_hosts: bool,
}

fn collect(e: &Expr, catalog: &[&'static str], sel: &mut Selection) -> Result<(), String> {
    match e {
        Expr::Number(_) => {}
        Expr::Selector(s) | Expr::Range(s, _) => {
            let host = s.matchers.iter().find(|m| m.name == "Hostname" || m.name == "hostname");
            match (s.matchers.iter().find(|m| m.name == "__name__"), host) {
                (Some(n), _) => sel.names.extend(catalog.iter().filter(|c| n.matches(c))),
                (None, Some(h)) if h.op == MatchOp::Eq => sel.names.extend(catalog),
                _ => return Err("every selector must name a metric (or pin Hostname=\"...\")".into()),
            }
            match host {
                Some(h) => sel.hosts.push(h.clone()),
                None => sel.all_hosts = true,
            }
        }
        Expr::Call { args, .. } => {
            for a in args {
                collect(a, catalog, sel)?;
            }
        }
        Expr::Aggregate { param, expr, .. } => {
            if let Some(p) = param {
                collect(p, catalog, sel)?;
            }
            collect(expr, catalog, sel)?;
        }
        Expr::Binary { lhs, rhs, .. } => {
            collect(lhs, catalog, sel)?;
            collect(rhs, catalog, sel)?;
        }
        Expr::Neg(x) => collect(x, catalog, sel)?,
    }
    Ok(())
}

fn str_arg<'a>(args: &'a Value, key: &str, max: usize) -> Result<&'a str, String> {
    match args.get(key) {
        Some(Value::String(s)) if s.len() <= max && !s.trim().is_empty() => Ok(s.as_str()),
        Some(Value::String(s)) if s.len() > max => Err(format!("'{key}' is {} bytes, at most {max}", s.len())),
        _ => Err(format!("'{key}' is required and must be a non-empty string")),
    }
}

/// `90`, `90s`, `5m`, `1h` in seconds.
fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    num.parse::<i64>().ok().filter(|v| *v >= 0 && *v < 10_000_000).map(|v| v * mult)
}

/// An RFC 3339 time, Unix seconds, `now` or `now-30m`.
fn parse_time(s: &str, now: i64) -> Option<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        return match rest.strip_prefix('-') {
            None if rest.is_empty() => Some(now),
            Some(d) => parse_duration(d).map(|d| now - d),
            None => None,
        };
    }
    parse_rfc3339(s).or_else(|| s.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| v as i64))
}

fn labels_text(l: &[(String, String)]) -> String {
    let name = l.iter().find(|(k, _)| k == "__name__").map(|(_, v)| v.as_str()).unwrap_or("");
    let rest: Vec<String> = l
        .iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "__name__" | "job" | "device" | "modelName" | "card_model")
                || (k == "device" && v_is_port(l))
        })
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

fn v_is_port(l: &[(String, String)]) -> bool {
    l.iter().any(|(k, v)| k == "device" && v.starts_with("mlx5"))
}

fn render(r: &QueryResult) -> String {
    // Series are shown whole, up to MAX_SERIES_SHOWN and the output bound;
    // the rest are counted.
    let show = |header: String, blocks: Vec<String>| {
        let total = blocks.len();
        let mut out = header;
        let mut shown = 0;
        for b in blocks.into_iter().take(MAX_SERIES_SHOWN) {
            if out.len() + b.len() > MAX_OUTPUT - 200 {
                break;
            }
            out.push_str(&b);
            shown += 1;
        }
        if shown < total {
            out.push_str(&format!(
                "... {} more series not shown: aggregate or filter (topk, by, Hostname=...)\n",
                total - shown
            ));
        }
        out
    };
    match r {
        QueryResult::Scalar(t, v) => format!("scalar at {}: {v}", format_rfc3339(t / 1000)),
        QueryResult::Vector(t, samples) => show(
            format!("{} series at {}\n", samples.len(), format_rfc3339(t / 1000)),
            samples
                .iter()
                .map(|s| format!("{} {}\n", labels_text(&s.labels), fleetbench_promql::format_value(s.value)))
                .collect(),
        ),
        QueryResult::Matrix(m) => show(
            format!("{} series\n", m.len()),
            m.iter()
                .map(|s| {
                    let pts: Vec<String> = s
                        .values
                        .iter()
                        .map(|(t, v)| {
                            let clock = format_rfc3339(t / 1000);
                            let clock = if t % 60_000 == 0 { &clock[11..16] } else { &clock[11..19] };
                            format!("{clock}={}", fleetbench_promql::format_value(*v))
                        })
                        .collect();
                    format!("{}\n  {}\n", labels_text(&s.labels), pts.join(" "))
                })
                .collect(),
        ),
    }
}

/// Text (the default) or, with `"format": "json"`, the `data` object of
/// Prometheus's HTTP API (refused when larger than the output bound).
fn render_as(args: &Value, r: &QueryResult) -> Result<String, String> {
    match args.get("format").and_then(Value::as_str) {
        None | Some("text") => Ok(render(r)),
        Some("json") => {
            let text = r.to_json().to_string();
            if text.len() > MAX_OUTPUT {
                return Err(format!("the JSON answer is {} bytes, over {MAX_OUTPUT}: aggregate or filter", text.len()));
            }
            Ok(text)
        }
        Some(_) => Err("'format' must be \"text\" or \"json\"".into()),
    }
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Cuts an output to [`MAX_OUTPUT`] characters, saying so.
fn bound(text: String) -> String {
    if text.len() <= MAX_OUTPUT {
        return text;
    }
    let mut end = MAX_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[output cut at {MAX_OUTPUT} characters of {}: narrow the query]", &text[..end], text.len())
}

/// The sections of docs/RUNBOOK.md that best match `query`.
fn runbook(args: &Value) -> Result<String, String> {
    let q = str_arg(args, "query", 200)?.to_ascii_lowercase();
    let terms: Vec<&str> =
        q.split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '.').filter(|t| t.len() >= 2).collect();
    let mut sections: Vec<(usize, &str)> = Vec::new();
    let mut start = 0;
    for (i, _) in RUNBOOK.match_indices("\n## ").chain(std::iter::once((RUNBOOK.len(), ""))) {
        let sec = &RUNBOOK[start..i];
        let lower = sec.to_ascii_lowercase();
        let hits = terms.iter().map(|t| lower.matches(t).count()).sum::<usize>();
        if hits > 0 {
            sections.push((hits, sec.trim()));
        }
        start = i + 1;
    }
    sections.sort_by_key(|s| std::cmp::Reverse(s.0));
    if sections.is_empty() {
        return Ok("no runbook section matches; try an alert name (GpuXidCritical), a root cause or an action".into());
    }
    Ok(sections.iter().take(2).map(|(_, s)| *s).collect::<Vec<_>>().join("\n\n"))
}

impl Toolset for EpisodeTools {
    fn specs(&self) -> Vec<ToolSpec> {
        let time = json!({"type": ["string", "number"], "description": "RFC 3339, Unix seconds, 'now' or 'now-30m'"});
        let loc = json!({"type": ["object", "null"], "additionalProperties": false, "properties": {
            "loop": {"type": ["string", "null"]}, "rack": {"type": ["string", "null"]}, "node": {"type": ["string", "null"]},
            "gpu": {"type": ["integer", "null"], "minimum": 0, "maximum": 7}, "link": {"type": ["string", "null"], "description": "nvlinkN or mlx5_N"}}});
        let actions: Vec<&str> = Action::every().map(|a| a.as_str()).collect();
        let fault = json!({"type": "object", "properties": {
            "root_cause": {"enum": labels()}, "location": loc, "onset": {"type": ["string", "null"], "format": "date-time"}, "action": {"enum": actions}}});
        vec![
            ToolSpec { name: "promql_query", description: "Evaluate a PromQL expression at one instant over the fleet's telemetry (history included).".into(),
                parameters: json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string", "maxLength": MAX_QUERY}, "time": time, "format": {"enum": ["text", "json"]}}}) },
            ToolSpec { name: "promql_range", description: "Evaluate a PromQL expression over a time range (at most 1,000 steps).".into(),
                parameters: json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string", "maxLength": MAX_QUERY}, "start": time, "end": time, "step": {"type": ["string", "number"], "description": "seconds or 1m; at least 15 s"}, "format": {"enum": ["text", "json"]}}}) },
            ToolSpec { name: "kernel_log", description: "A node's kernel log (dmesg) between two times, optionally filtered by a regular expression.".into(),
                parameters: json!({"type": "object", "required": ["node"], "properties": {"node": {"type": "string"}, "since": time, "until": time, "grep": {"type": "string", "maxLength": MAX_GREP}}}) },
            ToolSpec { name: "topology", description: "The fleet, a cooling loop, rack, leaf switch, node (PCI bus ids, NVLink peers, IB ports, workload) or job.".into(),
                parameters: json!({"type": "object", "properties": {"entity": {"type": "string", "description": "fleet, loop-0, r03, leaf-03, r03-n01 or a job id"}}}) },
            ToolSpec { name: "runbook", description: "Search the on-call runbook (alerts, root causes and the actions wanted).".into(),
                parameters: json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string", "maxLength": 200}}}) },
            ToolSpec { name: "submit_diagnosis", description: "End the investigation with a diagnosis. Use 'second' only for a second, independent fault.".into(),
                parameters: json!({"type": "object", "required": ["detected", "root_cause", "action"], "additionalProperties": false, "properties": {
                    "detected": {"type": "boolean"}, "root_cause": {"enum": labels()}, "location": loc,
                    "onset": {"type": ["string", "null"], "format": "date-time"}, "action": {"enum": Action::every().map(|a| a.as_str()).collect::<Vec<_>>()},
                    "second": {"oneOf": [{"type": "null"}, fault]},
                    "evidence": {"type": "array", "maxItems": 20, "items": {"type": "object", "required": ["entity", "signal"], "properties": {"entity": {"type": "string", "maxLength": 128}, "signal": {"type": "string", "maxLength": 128}}}},
                    "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1}, "summary": {"type": "string", "maxLength": 2000}}}) },
        ]
    }

    fn briefing(&self) -> String {
        let w = &self.world;
        let alerts: Vec<Value> = w.alerts.iter().map(|a| a.to_json()).collect();
        format!(
            "You are on call for a GPU fleet. You were paged at {} (it is now {}). Alerts firing (the page first):\n{}\n\n\
             Investigate with the tools (telemetry from {} on, every {} s; kernel logs; topology; the runbook), then call \
             submit_diagnosis once. A diagnosis names: detected (is something wrong that needs an action?), root_cause (one \
             label), location (loop, rack, node, gpu, link: the granularity the fault has), onset (when the fault began, \
             the precursor or the hard event the runbook names), action (the runbook's), evidence as {{\"entity\", \"signal\"}} \
             pairs (e.g. {{\"entity\": \"r03-n01 gpu 3\", \"signal\": \"DCGM_FI_DEV_ROW_REMAP_PENDING\"}}), and a 'second' fault \
             only if there is an independent one. Alerts may be noise (flapping, stale, sympathetic).\n\
             Labels: {}\nActions: {}",
            format_rfc3339(w.alert_at),
            format_rfc3339(w.now),
            serde_json::to_string_pretty(&alerts).unwrap_or_default(),
            format_rfc3339(w.history_start),
            super::world::STEP_S,
            labels().join(", "),
            Action::every().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
        )
    }

    fn call<'a>(&'a self, name: &'a str, arguments: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move { self.call_now(name, arguments) })
    }
}
