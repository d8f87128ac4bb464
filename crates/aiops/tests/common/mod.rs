//! A fixed, known investigation for the agent loop and the MCP server's
//! tests: one alert, tools whose answers are constants, and a submission
//! that is returned as it came.

#![allow(dead_code)] // each test binary uses its own part

use fleetbench_aiops::investigate::tools::ToolFuture;
use fleetbench_aiops::investigate::{ToolReply, ToolSpec, Toolset, TOOL_NAMES};
use serde_json::{json, Value};

pub const BRIEFING: &str = "ALERT GpuXidErrors firing since 2026-01-01T03:10:00Z on node-03 \
(severity critical). Window 2026-01-01T00:00:00Z to 2026-01-01T06:00:00Z.";
pub const XID_SERIES: &str = "DCGM_FI_DEV_XID_ERRORS{node=\"node-03\",gpu=\"5\"} 79";
pub const KERNEL_LINE: &str = "NVRM: Xid (PCI:0000:9b:00): 79, GPU has fallen off the bus.";

/// The known investigation's tools.
pub struct FixedToolset;

fn spec(name: &'static str, what: &str, required: &[&str]) -> ToolSpec {
    let props: serde_json::Map<String, Value> =
        required.iter().map(|k| (k.to_string(), json!({"type": "string"}))).collect();
    ToolSpec {
        name,
        description: what.into(),
        parameters: json!({"type": "object", "properties": props, "required": required}),
    }
}

impl Toolset for FixedToolset {
    fn specs(&self) -> Vec<ToolSpec> {
        let specs = vec![
            spec("promql_query", "Instant PromQL query over the fleet.", &["query"]),
            spec("promql_range", "Range PromQL query over the fleet.", &["query", "start", "end", "step"]),
            spec("kernel_log", "A node's kernel log (dmesg).", &["node"]),
            spec("topology", "Where an entity sits: rack, loop, PCI bus ids, peers.", &["entity"]),
            spec("runbook", "Search the runbook.", &["query"]),
            spec("submit_diagnosis", "End the investigation with a diagnosis.", &["root_cause", "action"]),
        ];
        assert_eq!(specs.iter().map(|s| s.name).collect::<Vec<_>>(), TOOL_NAMES);
        specs
    }

    fn briefing(&self) -> String {
        BRIEFING.into()
    }

    fn call<'a>(&'a self, name: &'a str, arguments: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move {
            let arg = |k: &str| arguments.get(k).and_then(Value::as_str);
            match name {
                "submit_diagnosis" => match (arg("root_cause"), arg("action")) {
                    (Some(_), Some(_)) => ToolReply::Submitted(arguments.clone()),
                    _ => ToolReply::Error("root_cause and action are required".into()),
                },
                "promql_query" | "promql_range" => match arg("query") {
                    Some(q) if q.contains("XID") => ToolReply::Output(XID_SERIES.into()),
                    Some(_) => ToolReply::Output("no series".into()),
                    None => ToolReply::Error("query is required".into()),
                },
                "kernel_log" => match arg("node") {
                    Some("node-03") => ToolReply::Output(KERNEL_LINE.into()),
                    Some(n) => ToolReply::Error(format!("no node {n}")),
                    None => ToolReply::Error("node is required".into()),
                },
                "topology" => ToolReply::Output("node-03: rack r1, loop L1; PCI 0000:9b:00 = GPU 5".into()),
                "runbook" => ToolReply::Output("pcie.gpu_off_bus: drain the node and reseat the GPU".into()),
                other => ToolReply::Error(format!("no tool {other}")),
            }
        })
    }
}

/// The submission the known investigation ends with.
pub fn diagnosis() -> Value {
    json!({"root_cause": "pcie.gpu_off_bus", "action": "drain_and_reseat", "location": {"node": "node-03", "gpu": 5}})
}
