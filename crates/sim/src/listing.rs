//! The catalogs as tables (`fleetbench sim list`) and as JSON.

use fleetbench_core::table::{Align, Table};

use crate::Catalog;

/// A part of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Gpus,
    Models,
    Quants,
    Engines,
    Interconnects,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

/// Right-aligns every column but the first (the id) and the last (the name).
fn numbers(t: Table, columns: usize) -> Table {
    (1..columns - 1).fold(t, |t, i| t.align(i, Align::Right))
}

impl Catalog {
    /// One row per entry of `part`, its figures and its name.
    pub fn table(&self, part: Part) -> Table {
        match part {
            Part::Gpus => {
                let mut t = numbers(
                    Table::new(["id", "GB", "GB/s", "data GB/s", "FP16 TF", "FP8 TF", "TDP W", "$/h", "name"]),
                    9,
                );
                for g in &self.gpus {
                    t.push([
                        g.id.clone(),
                        format!("{:.0}", g.memory_gb),
                        format!("{:.0}", g.memory_bw_gbs),
                        // Less the check bits where inline ECC is on.
                        format!("{:.0}", g.data_bw_gbs()),
                        format!("{:.0}", g.fp16_tflops),
                        opt(g.fp8_tflops, 0),
                        format!("{:.0}", g.tdp_w),
                        opt(g.usd_per_hour, 2),
                        g.name.clone(),
                    ]);
                }
                t
            }
            Part::Models => {
                let mut t = numbers(
                    Table::new(["id", "total B", "active B", "layers", "experts", "KV KB/tok", "ships in", "name"]),
                    7,
                );
                for m in &self.models {
                    t.push([
                        m.id.clone(),
                        format!("{:.1}", m.params_total_b),
                        format!("{:.1}", m.params_active_b),
                        m.layers.to_string(),
                        if m.is_moe() { format!("{}/{}", m.experts_per_token, m.experts) } else { "-".into() },
                        format!("{:.0}", m.kv_elems_per_token() * 2.0 / 1e3),
                        m.native_quant.clone().unwrap_or_else(|| "16-bit".into()),
                        m.name.clone(),
                    ]);
                }
                t
            }
            Part::Quants => {
                let mut t = numbers(Table::new(["id", "bits", "compute", "name"]), 4);
                for q in &self.quants {
                    t.push([q.id.clone(), format!("{:.2}", q.bits_per_weight), q.compute.to_string(), q.name.clone()]);
                }
                t
            }
            Part::Engines => {
                let mut t = numbers(Table::new(["id", "bw eff", "cmp eff", "max seqs", "step us", "name"]), 6);
                for e in &self.engines {
                    t.push([
                        e.id.clone(),
                        format!("{:.2}", e.bw_eff),
                        format!("{:.2}", e.compute_eff),
                        e.max_num_seqs.to_string(),
                        format!("{:.0}", e.step_overhead_us),
                        e.name.clone(),
                    ]);
                }
                t
            }
            Part::Interconnects => {
                // An all-reduce's latency over 2 and 8 GPUs and its bus
                // bandwidth over 4 and 8 (past one socket it can drop).
                let mut t =
                    numbers(Table::new(["id", "GB/s", "AR us x2", "AR us x8", "AR GB/s x4", "AR GB/s x8", "name"]), 7);
                for i in &self.interconnects {
                    t.push([
                        i.id.clone(),
                        format!("{:.1}", i.bandwidth_gbs),
                        format!("{:.1}", i.allreduce_latency_s(2) * 1e6),
                        format!("{:.1}", i.allreduce_latency_s(8) * 1e6),
                        format!("{:.1}", i.allreduce_busbw_gbs(4)),
                        format!("{:.1}", i.allreduce_busbw_gbs(8)),
                        i.name.clone(),
                    ]);
                }
                t
            }
        }
    }

    /// The entries of `part` as JSON.
    pub fn part_json(&self, part: Part) -> serde_json::Result<serde_json::Value> {
        match part {
            Part::Gpus => serde_json::to_value(&self.gpus),
            Part::Models => serde_json::to_value(&self.models),
            Part::Quants => serde_json::to_value(&self.quants),
            Part::Engines => serde_json::to_value(&self.engines),
            Part::Interconnects => serde_json::to_value(&self.interconnects),
        }
    }
}

/// A prediction for the terminal: the deployment, its memory, and one row
/// per concurrency level with the bottleneck.
pub fn prediction_text(d: &crate::Deployment, p: &crate::Prediction, input: u32, output: u32) -> String {
    let mut t =
        Table::new(["concurrency", "per-req tok/s", "aggr tok/s", "TTFT ms", "bottleneck", "KV use", "power W"])
            .all_right();
    for l in &p.levels {
        t.push([
            l.concurrency.to_string(),
            format!("{:.1}", l.per_request_tok_s),
            format!("{:.1}", l.aggregate_tok_s),
            format!("{:.0}", l.ttft_ms),
            l.bottleneck.as_str().to_string(),
            format!("{:.0}%", l.kv_cache_usage * 100.0),
            format!("{:.0}", l.power_w),
        ]);
    }
    let notes: String = p.notes.iter().map(|n| format!("note: {n}\n")).collect();
    // The scheduler and the CUDA graphs are named where they cost something
    // (as `sim replay` does).
    let settings = d.costly_settings();
    let scheduling = if settings.is_empty() { String::new() } else { format!(" ({})", settings.join(", ")) };
    format!(
        "{} x {} ({}), {} in {}, {}{scheduling}; {input} in / {output} out tokens\n\
         weights {:.1} GB, KV cache {:.0} tokens ({:.0} KB/token), max_num_seqs {}\n{notes}{}",
        d.count,
        d.gpu.name,
        d.interconnect.name,
        d.model.name,
        d.quant.name,
        d.engine.name,
        d.weight_bytes / 1e9,
        d.kv_capacity_tokens,
        d.kv_bytes_per_token / 1e3,
        d.max_num_seqs,
        t.text()
    )
}

/// A simulated setup of `fleetbench demo`: a title and what it places.
#[derive(Debug, Clone)]
pub struct Setup {
    pub title: &'static str,
    pub spec: crate::DeploymentSpec,
    /// A session workload swept instead of the demo's synthetic requests,
    /// with its own levels.
    pub sessions: Option<DemoSessions>,
}

/// The demo's agent-session sweep: what the agents send and how many.
#[derive(Debug, Clone, Copy)]
pub struct DemoSessions {
    pub workload: &'static str,
    pub levels: &'static [u32],
}

/// What the demo sweeps on one setup.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoTraffic {
    pub workload: String,
    /// `max_tokens` of every request (`None`: each turn's own).
    pub max_tokens: Option<u32>,
    pub requests_per_agent: u64,
    pub levels: Vec<u32>,
}

impl Setup {
    /// The setup's sessions, or synthetic requests of `input` and `output`
    /// tokens at `levels`.
    pub fn traffic(&self, levels: &[u32], input: u32, output: u32) -> DemoTraffic {
        match self.sessions {
            Some(s) => DemoTraffic {
                workload: s.workload.to_string(),
                max_tokens: None,
                // Sessions are taken whole: room for about one per agent.
                requests_per_agent: 6,
                levels: s.levels.to_vec(),
            },
            None => DemoTraffic {
                workload: format!("synthetic:in={input},out={output},spread=0"),
                max_tokens: Some(output),
                requests_per_agent: 2,
                levels: levels.to_vec(),
            },
        }
    }
}

/// The demo's contrasting setups: one consumer GPU with a MoE and with a
/// dense model of about the same size, and a datacenter GPU with a small
/// dense model, all on vLLM; then the MoE on the consumer GPU serving coding
/// agents whose sessions grow to tens of thousands of tokens, where the
/// prefix cache decides how many agents it serves.
pub fn demo_setups() -> Vec<Setup> {
    let spec = |gpu: &str, model: &str, quant: &str| crate::DeploymentSpec {
        gpu: gpu.into(),
        model: model.into(),
        quant: quant.into(),
        engine: "vllm".into(),
        ..Default::default()
    };
    vec![
        Setup {
            title: "RTX 3090 · Qwen3-Coder-30B-A3B (MoE) AWQ 4-bit · vLLM",
            spec: spec("rtx3090", "qwen3-coder-30b-a3b", "awq4"),
            sessions: None,
        },
        Setup {
            title: "RTX 3090 · Qwen2.5-Coder-32B (dense) AWQ 4-bit · vLLM",
            spec: spec("rtx3090", "qwen2.5-coder-32b", "awq4"),
            sessions: None,
        },
        Setup {
            title: "H100 SXM · Llama 3.1 8B FP8 · vLLM",
            spec: spec("h100-sxm", "llama-3.1-8b", "fp8"),
            sessions: None,
        },
        Setup {
            title: "RTX 3090 · Qwen3-Coder-30B-A3B · vLLM · agent sessions",
            spec: spec("rtx3090", "qwen3-coder-30b-a3b", "awq4"),
            sessions: Some(DemoSessions {
                workload: "agent-session:turns=4..6,system=2000,tool-output=1500..4000,output=50..150,think=0..1s",
                levels: &[1, 2, 4, 8],
            }),
        },
    ]
}
