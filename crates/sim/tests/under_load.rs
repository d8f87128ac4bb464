//! `sim validate` on rows under load: every configuration the issue names is
//! replayed end to end, the `--json` contract is exact, bad input is
//! reported with its line and column, and unplaceable rows say why.

use std::path::Path;

use fleetbench_sim::underload::{self, validate_text, Validation};
use fleetbench_sim::Catalog;

const HEADER: &str = "id,gpu,gpu_count,model,quant,engine,max_num_batched_tokens,max_num_seqs,gpu_memory_utilization,cpu_offload,prefix_caching,workload,arrivals,measured_ttft_mean_ms,measured_tpot_mean_ms,measured_e2e_mean_ms,source";

/// The deployments of the independent check (H100, A100, L40S;
/// Llama 3.1 8B, Qwen3-14B, CodeLlama-34B, Llama 2 70B, Mixtral 8x7B and
/// 8x22B; TP 1 to 8), each with constant-rate stages of a shared-prefix
/// multi-turn workload. No measurements: the test is that each one runs.
const COVERAGE: &[&str] = &[
    "h100-llama8b-tp1,NVIDIA H100 80GB HBM3,1,meta-llama/Llama-3.1-8B-Instruct,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:4/s*30s,8/s*30s\",,,,own",
    "a100-llama8b-tp2,NVIDIA A100-SXM4-80GB,2,llama-3.1-8b,bf16,vllm,2048,128,0.9,,true,\"shared-prefix:groups=2,users=8,system=2000,question=100,output=100,multi-turn\",\"constant:5/s*30s,10/s*30s\",,,,own",
    "l40s-llama8b-tp1,NVIDIA L40S,1,Llama 3.1 8B,fp16,vllm,,,,,,\"shared-prefix:groups=4,users=4,system=500,question=100,output=150,multi-turn\",\"constant:2/s*30s,4/s*30s\",,,,own",
    "h100-qwen3-14b-tp1,NVIDIA H100 80GB HBM3,1,Qwen/Qwen3-14B,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:3/s*30s,6/s*30s\",,,,own",
    "a100-qwen3-14b-tp2,NVIDIA A100-SXM4-80GB,2,qwen3-14b,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:3/s*30s,6/s*30s\",,,,own",
    "l40s-qwen3-14b-tp2,NVIDIA L40S,2,Qwen3-14B,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=4,system=1000,question=100,output=100,multi-turn\",\"constant:1/s*30s,3/s*30s\",,,,own",
    "h100-codellama34b-tp2,NVIDIA H100 80GB HBM3,2,codellama/CodeLlama-34b-Instruct-hf,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1500,question=200,output=200,multi-turn\",\"constant:2/s*30s,4/s*30s\",,,,own",
    "a100-codellama34b-tp4,NVIDIA A100-SXM4-80GB,4,CodeLlama-34B,bf16,vllm,,,,8,,\"shared-prefix:groups=4,users=8,system=1500,question=200,output=200,multi-turn\",\"constant:2/s*30s,4/s*30s\",,,,own",
    "l40s-codellama34b-tp4,NVIDIA L40S,4,codellama-34b,fp16,vllm,,,,,,\"shared-prefix:groups=2,users=4,system=1000,question=100,output=100,multi-turn\",\"constant:1/s*30s,2/s*30s\",,,,own",
    "h100-llama2-70b-tp4,NVIDIA H100 80GB HBM3,4,meta-llama/Llama-2-70b-hf,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:2/s*30s,4/s*30s\",,,,own",
    "a100-llama2-70b-tp8,NVIDIA A100-SXM4-80GB,8,Llama 2 70B,bf16,vllm,,,,,false,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:2/s*30s,4/s*30s\",,,,own",
    "l40s-llama2-70b-tp8,NVIDIA L40S,8,llama-2-70b,fp16,vllm,,,,,,\"shared-prefix:groups=2,users=4,system=1000,question=100,output=100,multi-turn\",\"constant:1/s*30s,2/s*30s\",,,,own",
    "h100-mixtral8x7b-tp2,NVIDIA H100 80GB HBM3,2,mistralai/Mixtral-8x7B-Instruct-v0.1,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:3/s*30s,6/s*30s\",,,,own",
    "a100-mixtral8x7b-tp4,NVIDIA A100-SXM4-80GB,4,Mixtral 8x7B,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:3/s*30s,6/s*30s\",,,,own",
    "l40s-mixtral8x7b-tp4,NVIDIA L40S,4,mixtral-8x7b,fp16,vllm,,,,,,\"shared-prefix:groups=2,users=4,system=1000,question=100,output=100,multi-turn\",\"constant:1/s*30s,2/s*30s\",,,,own",
    "h100-mixtral8x22b-tp8,NVIDIA H100 80GB HBM3,8,mistralai/Mixtral-8x22B-Instruct-v0.1,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:2/s*30s,4/s*30s\",,,,own",
    "a100-mixtral8x22b-tp8,NVIDIA A100-SXM4-80GB,8,Mixtral 8x22B,bf16,vllm,,,,,,\"shared-prefix:groups=4,users=8,system=1000,question=200,output=200,multi-turn\",\"constant:1/s*30s,2/s*30s\",,,,own",
];

fn csv(rows: &[&str]) -> String {
    format!("{HEADER}\n{}\n", rows.join("\n"))
}

fn base() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The one data row `row` of a file headed `header` in folder `dir`, validated.
fn one_row(c: &Catalog, header: &str, row: &str, dir: &Path) -> underload::RowResult {
    validate_text(c, &format!("{header}\n{row}\n"), "runs.csv", dir).unwrap().rows.remove(0)
}

/// The predicted means of a covered row: TTFT, TPOT and E2E in ms.
fn predicted(r: &underload::RowResult) -> [f64; 3] {
    let p = r.figures.unwrap_or_else(|| panic!("{}: {:?}", r.id, r.skipped)).predicted;
    p.map(|x| x.unwrap_or(f64::NAN))
}

/// Why a row was skipped ("" when it was not).
fn skip_reason(r: &underload::RowResult) -> &str {
    r.skipped.as_deref().unwrap_or("")
}

/// Each configuration replayed both ways a multi-turn row may say its turns
/// were sent: alone (the default) and carrying their history.
#[test]
fn every_named_configuration_replays_end_to_end() {
    let catalog = Catalog::embedded().unwrap();
    for history in ["", "carried"] {
        let rows: Vec<String> = COVERAGE.iter().map(|r| format!("{r},{history}")).collect();
        let text = format!("{HEADER},multi_turn_history\n{}\n", rows.join("\n"));
        assert!(underload::is_under_load(&text));
        let r = validate_text(&catalog, &text, "coverage.csv", base()).unwrap();
        assert_eq!(r.total, COVERAGE.len());
        assert!(r.rows.iter().all(|x| x.turns_alone == history.is_empty()), "history '{history}'");
        replayed_end_to_end(&r);
    }
}

fn replayed_end_to_end(r: &underload::LoadReport) {
    let skipped: Vec<_> = r.rows.iter().filter_map(|x| x.skipped.as_ref().map(|s| format!("{}: {s}", x.id))).collect();
    assert!(skipped.is_empty(), "{skipped:#?}");
    assert_eq!(r.covered, r.total);
    for row in &r.rows {
        let f = row.figures.unwrap();
        let [ttft, tpot, e2e] = f.predicted.map(Option::unwrap);
        assert!(f.requests > 50, "{}: {} requests", row.id, f.requests);
        assert!(ttft > 0.0 && tpot > 0.0 && e2e > ttft, "{}: {ttft} {tpot} {e2e}", row.id);
        // Every request makes the same output, so the means obey
        // E2E = TTFT + (output - 1) x TPOT.
        let out = if row.id.starts_with("l40s") { 99.0 } else { 199.0 };
        let out = if row.id.starts_with("a100-llama8b") { 99.0 } else { out };
        let out = if row.id.starts_with("l40s-llama8b") { 149.0 } else { out };
        assert!((e2e - (ttft + tpot * out)).abs() / e2e < 1e-6, "{}: {e2e} vs {ttft} + {out} x {tpot}", row.id);
    }
}

#[test]
fn json_has_exactly_the_contract_keys_and_skips_say_why() {
    let rows = [
        "a,NVIDIA H100 80GB HBM3,1,llama-3.1-8b,fp8,vllm,,,,,,\"synthetic:in=500,out=100\",constant:4/s*20s,40,8,850,own",
        "b,NVIDIA Quantum Q1,1,llama-3.1-8b,fp8,vllm,,,,,,\"synthetic:in=500,out=100\",constant:4/s*20s,40,8,850,own",
    ];
    let text = format!("{HEADER}\n{}\n", rows.join("\n"));
    let r = validate_text(&Catalog::embedded().unwrap(), &text, "x.csv", base()).unwrap();
    let v = serde_json::to_value(Validation::UnderLoad(r.clone())).unwrap();
    let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["covered", "median_abs_err_pct", "rows", "total"]);
    let mut med: Vec<&str> = v["median_abs_err_pct"].as_object().unwrap().keys().map(String::as_str).collect();
    med.sort_unstable();
    assert_eq!(med, ["e2e", "tpot", "ttft"]);
    for row in v["rows"].as_array().unwrap() {
        let mut keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["e2e_err_pct", "id", "skipped", "tpot_err_pct", "ttft_err_pct"]);
    }
    assert_eq!((v["covered"].as_u64(), v["total"].as_u64()), (Some(1), Some(2)));
    assert!(v["rows"][0]["skipped"].is_null() && v["rows"][0]["ttft_err_pct"].is_number());
    let why = v["rows"][1]["skipped"].as_str().unwrap();
    assert!(why.contains("Quantum Q1"), "{why}");
    assert!(v["rows"][1]["e2e_err_pct"].is_null());
    // The error is (predicted - measured) / measured.
    let f = r.rows[0].figures.unwrap();
    let want = (f.predicted[2].unwrap() - 850.0) / 850.0 * 100.0;
    assert!((r.rows[0].e2e_err_pct.unwrap() - want).abs() < 1e-9);
    assert_eq!(r.median_abs_err_pct.e2e, Some(want.abs()));
}

#[test]
fn bad_values_are_reported_with_line_and_column() {
    let c = Catalog::embedded().unwrap();
    let good = "a,h100-sxm,1,llama-3.1-8b,fp8,vllm,,,,,,\"synthetic:in=500,out=100\",constant:4/s*20s,40,8,850,own";
    let cases = [
        (good.replace("constant:4/s*20s", "steady:4/s"), "line 3, column 13 (arrivals)"),
        (good.replace("\"synthetic:in=500,out=100\"", "synthetic:in=lots"), "line 3, column 12 (workload)"),
        (good.replace(",1,llama", ",two,llama"), "line 3, column 3 (gpu_count)"),
        (good.replace(",,,,,,", ",,,150,,,"), "line 3, column 9 (gpu_memory_utilization)"),
        (good.replace(",,,,,,", ",,,,,maybe,"), "line 3, column 11 (prefix_caching)"),
        (good.replace(",40,8,", ",-40,8,"), "line 3, column 14 (measured_ttft_mean_ms)"),
        (good.replace("h100-sxm", ""), "line 3, column 2 (gpu): empty"),
        (
            good.replace("constant:4/s*20s", "constant:100000/s*1000s"),
            "line 3, column 13 (arrivals): the replay would send",
        ),
        (good.replace("llama-3.1-8b", "N/A"), "line 3, column 4 (model): empty"),
    ];
    // A malformed row is skipped with its file, line and column; the good
    // row is still validated.
    for (row, want) in cases {
        let text = format!("{HEADER}\n{good}\n{row}\n");
        let r = validate_text(&c, &text, "runs.csv", base()).unwrap();
        assert_eq!((r.covered, r.total), (1, 2));
        assert!(!r.rows[0].malformed && r.rows[1].malformed);
        let why = r.rows[1].skipped.as_deref().unwrap_or("");
        assert!(why.contains("runs.csv") && why.contains(want), "{why} (wanted {want})");
        // The same lines in a file with CRLF line ends, and a blank line.
        let crlf = format!("{HEADER}\r\n{good}\r\n{row}\r\n");
        let r = validate_text(&c, &crlf, "runs.csv", base()).unwrap();
        let why = r.rows[1].skipped.as_deref().unwrap_or("");
        assert!(why.contains(want), "CRLF: {why} (wanted {want})");
        let blank = format!("{HEADER}\n\n{good}\n{row}\n");
        let r = validate_text(&c, &blank, "runs.csv", base()).unwrap();
        let why = r.rows[1].skipped.as_deref().unwrap_or("");
        assert!(why.contains(&want.replace("line 3", "line 4")), "blank line: {why} (wanted {want}, a line later)");
    }
    let err = validate_text(&c, "id,gpu,measured_ttft_mean_ms\n", "runs.csv", base()).unwrap_err().to_string();
    assert!(err.contains("missing column(s)") && err.contains("measured_tpot_mean_ms"), "{err}");
}

/// The spellings a check file may use: base and instruct Hugging Face ids
/// with release tags, an empty weight format (vLLM's `--dtype auto`), GPU
/// names as `nvidia-smi` prints them. Each places the same deployment as
/// its catalog spelling.
#[test]
fn hugging_face_ids_release_tags_and_an_empty_format_place_their_deployment() {
    let row = |id: &str, gpu: &str, n: u32, model: &str, quant: &str| {
        format!("{id},{gpu},{n},{model},{quant},vllm,,,,,,\"synthetic:in=500,out=50\",\"constant:2/s*10s\",,,,own")
    };
    let pairs = [
        (
            row("a", "NVIDIA H100 80GB HBM3", 2, "mistralai/Mixtral-8x7B-v0.1", ""),
            row("b", "h100-sxm", 2, "mixtral-8x7b", "bf16"),
        ),
        (
            row("a", "NVIDIA H100 80GB HBM3", 8, "mistralai/Mixtral-8x22B-v0.1", "auto"),
            row("b", "h100-sxm", 8, "mistralai/Mixtral-8x22B-Instruct-v0.1", "bf16"),
        ),
        (
            row("a", "NVIDIA A100-SXM4-80GB", 4, "meta-llama/Llama-2-70b-chat-hf", ""),
            row("b", "a100-sxm-80gb", 4, "llama-2-70b", "fp16"),
        ),
        (
            row("a", "NVIDIA L40S", 1, "meta-llama/Llama-3.1-8B", "bfloat16"),
            row("b", "l40s", 1, "llama-3.1-8b", "bf16"),
        ),
        (row("a", "A100-80G", 2, "Qwen/Qwen3-14B", "bf16"), row("b", "a100-80gb", 2, "qwen3-14b", "bf16")),
        (
            row("a", "2 x NVIDIA H100 80GB HBM3", 2, "codellama/CodeLlama-34b-Python-hf", ""),
            row("b", "h100-sxm", 2, "codellama-34b", "bf16"),
        ),
        (row("a", "NVIDIA L40", 2, "Qwen/Qwen3-14B", "bf16"), row("b", "l40", 2, "qwen3-14b", "bf16")),
        // vLLM's `--dtype half`.
        (
            row("a", "NVIDIA H100 PCIe", 1, "meta-llama/Llama-3.1-8B-Instruct", "half"),
            row("b", "h100-pcie", 1, "llama-3.1-8b", "fp16"),
        ),
    ];
    let catalog = Catalog::embedded().unwrap();
    for (spelled, canonical) in pairs {
        let r = validate_text(&catalog, &csv(&[&spelled, &canonical]), "names.csv", base()).unwrap();
        let skipped: Vec<_> = r.rows.iter().filter_map(|x| x.skipped.clone()).collect();
        assert!(skipped.is_empty(), "{spelled}: {skipped:?}");
        let [a, b] = [&r.rows[0], &r.rows[1]].map(|x| x.figures.unwrap().predicted);
        assert_eq!(a, b, "{spelled} and {canonical} place different deployments");
    }
}

/// Cells as pandas and spreadsheets write them: whole numbers as `2048.0`,
/// `NaN` for no value, `True`/`False`, a memory share in percent, an
/// offload as a switch or with its unit, an empty engine (vLLM), and
/// inference-perf's own names with semicolons in the workload and stages.
/// Each reads as its plain spelling.
#[test]
fn cells_as_pandas_and_spreadsheets_write_them_read_as_their_plain_spelling() {
    let row = |id: &str, count: &str, engine: &str, knobs: &str, workload: &str, arrivals: &str, tpot: &str| {
        format!("{id},NVIDIA H100 80GB HBM3,{count},Qwen/Qwen3-14B,bf16,{engine},{knobs},\"{workload}\",\"{arrivals}\",120,{tpot},3000,own")
    };
    let plain_workload = "shared-prefix:groups=2,users=4,system=2000,question=200,output=100,multi-turn";
    let plain_arrivals = "constant:2/s*20s,4/s*20s";
    let pairs = [
        (
            row("a", "2.0", "vllm", "2048.0,128.0,90%,False,True", plain_workload, plain_arrivals, "NaN"),
            row("b", "2", "vllm", "2048,128,0.9,0,true", plain_workload, plain_arrivals, ""),
        ),
        (
            row("a", "1", "", "None,nan,90,off,yes", plain_workload, plain_arrivals, "25"),
            row("b", "1", "vllm", ",,0.9,,", plain_workload, plain_arrivals, "25"),
        ),
        (
            row(
                "a",
                "1",
                "vllm",
                ",,,,",
                "shared-prefix:num_groups=2;num_prompts_per_group=4;system_prompt_len=2000;question_len=200;output_len=100;enable_multi_turn_chat=True",
                "Constant: 2rps*20s; 4qps*20s",
                "25",
            ),
            row("b", "1", "vllm", ",,,,", plain_workload, plain_arrivals, "25"),
        ),
        (
            row("a", "1", "vllm", ",,,True,", plain_workload, plain_arrivals, "25"),
            row("b", "1", "vllm", &format!(",,,{},", underload::DEFAULT_OFFLOAD_GB), plain_workload, plain_arrivals, "25"),
        ),
        (
            row("a", "1", "vllm", ",,,32GiB,", plain_workload, plain_arrivals, "25"),
            row("b", "1", "vllm", ",,,34.359738368,", plain_workload, plain_arrivals, "25"),
        ),
    ];
    let catalog = Catalog::embedded().unwrap();
    for (spelled, plain) in &pairs {
        let r = validate_text(&catalog, &csv(&[spelled, plain]), "cells.csv", base()).unwrap();
        let skipped: Vec<_> = r.rows.iter().filter_map(|x| x.skipped.clone()).collect();
        assert!(skipped.is_empty(), "{spelled}: {skipped:?}");
        let [a, b] = [&r.rows[0], &r.rows[1]].map(|x| x.figures.unwrap());
        assert_eq!((a.predicted, a.measured), (b.predicted, b.measured), "{spelled} and {plain} differ");
    }
    // Header names in another case are the same columns.
    let upper = format!("{}\n{}\n", HEADER.to_uppercase(), pairs[0].1);
    assert!(underload::is_under_load(&upper));
    let r = validate_text(&catalog, &upper, "upper.csv", base()).unwrap();
    let plain = validate_text(&catalog, &csv(&[&pairs[0].1]), "cells.csv", base()).unwrap();
    assert_eq!(r.rows[0].figures.map(|f| f.predicted), plain.rows[0].figures.map(|f| f.predicted));
}

/// An engine written with its version ("vLLM 0.8.5", "vllm==0.9.2", "vllm
/// v0.10.1") is that engine, with that version's defaults; an unknown one
/// is still skipped with its name.
#[test]
fn an_engine_with_its_version_is_that_engine() {
    let row = |id: &str, engine: &str, scheduling: &str, graphs: &str| {
        format!("{id},NVIDIA H100 80GB HBM3,1,llama-3.1-8b,bf16,{engine},,,,,,\"synthetic:in=500,out=50\",\"constant:8/s*10s\",,,,own,{scheduling},{graphs}")
    };
    let rows = [
        row("a", "vllm", "false", "piecewise"),
        row("b", "vLLM 0.8.5", "", ""),
        row("c", "vllm==0.9.2", "", ""),
        row("d", "vllm v0.10.1", "", ""),
        row("e", "vllm", "", ""),
        row("f", "vLLM 0.14.0", "", ""),
        row("g", "vllm v0.19.1rc2", "", ""),
        row("h", "fastllm 1.0", "", ""),
        row("i", "vllm", "false", ""),
        row("j", "vllm 0.11.0", "", ""),
    ];
    let text = format!("{HEADER},async_scheduling,cudagraph_mode\n{}\n", rows.join("\n"));
    let r = validate_text(&Catalog::embedded().unwrap(), &text, "engines.csv", base()).unwrap();
    let predicted = |i: usize| r.rows[i].figures.map(|f| f.predicted);
    // Before 0.14.0 vLLM scheduled each step after the last, and from 0.8
    // to 0.10 it ran decode steps in pieces: a versioned engine takes its
    // version's defaults, as the columns would say.
    for i in 1..4 {
        assert_eq!(predicted(i), predicted(0), "{}: {:?}", r.rows[i].id, r.rows[i].skipped);
    }
    for i in 5..7 {
        assert_eq!(predicted(i), predicted(4), "{}: {:?}", r.rows[i].id, r.rows[i].skipped);
    }
    // 0.11.0: decode whole, scheduling still synchronous.
    assert_eq!(predicted(9), predicted(8), "{:?}", r.rows[9].skipped);
    assert_ne!(predicted(0), predicted(8), "piecewise decode costs something");
    assert_ne!(predicted(8), predicted(4), "a synchronous scheduler costs something at 8 requests/s");
    assert!(r.rows[7].skipped.as_deref().is_some_and(|s| s.contains("fastllm")), "{:?}", r.rows[7].skipped);
}

/// A row may give the means of one stage of its arrivals (a published rate
/// ladder reports each stage): the comparison uses that stage's replayed
/// figures, which differ from the whole run's, and a stage the arrivals do
/// not have, a stage 0 or a stage without arrivals is an error at its cell.
#[test]
fn a_row_may_compare_one_stage_of_its_arrivals() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},measured_stage,concurrency,requests");
    let row = |stage: &str| {
        format!("a,h100-sxm,1,llama-3.1-8b,fp8,vllm,,,,,,\"synthetic:in=500,out=100\",\"constant:2/s*20s,40/s*20s\",100,20,2000,own,{stage},,")
    };
    let ttft = |stage: &str| {
        let text = format!("{header}\n{}\n", row(stage));
        validate_text(&c, &text, "runs.csv", base()).unwrap().rows[0].ttft_err_pct.unwrap()
    };
    let (whole, light, busy) = (ttft(""), ttft("1"), ttft("2"));
    assert!(light < busy, "the busy stage waits longer: {light} vs {busy}");
    assert!(light < whole && whole < busy, "{light} < {whole} < {busy}");
    for (stage, want) in [("3", "column 18 (measured_stage)"), ("0", "column 18 (measured_stage)")] {
        let text = format!("{header}\n{}\n", row(stage));
        let r = validate_text(&c, &text, "runs.csv", base()).unwrap();
        let err = r.rows[0].skipped.clone().unwrap_or_default();
        assert!(r.rows[0].malformed && err.contains(want), "{err}");
    }
    let closed = format!(
        "{header}\na,h100-sxm,1,llama-3.1-8b,fp8,vllm,,,,,,\"synthetic:in=500,out=100\",,100,20,2000,own,1,4,40\n"
    );
    let err = validate_text(&c, &closed, "runs.csv", base()).unwrap().rows[0].skipped.clone().unwrap_or_default();
    assert!(err.contains("(measured_stage)"), "{err}");
}

/// `measured_output_tokens_mean` is the length the run's answers really had
/// (they may stop before `max_tokens`): the replay generates that many, so
/// a row whose answers averaged half the asked length predicts about half
/// the end-to-end latency and the same time per token; a multi-turn
/// history then carries the shorter answers.
#[test]
fn the_measured_output_length_sets_the_replayed_answers() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},measured_output_tokens_mean,multi_turn_history");
    let predicted = |workload: &str, out: &str| {
        let history = if workload.contains("multi-turn") { "carried" } else { "" };
        let text = format!(
            "{header}\na,h100-sxm,1,llama-3.1-8b,fp8,vllm,,,,,,\"{workload}\",constant:2/s*30s,50,8,2000,own,{out},{history}\n"
        );
        let r = validate_text(&c, &text, "runs.csv", base()).unwrap();
        let e = |x: Option<f64>, m: f64| m * (1.0 + x.unwrap() / 100.0);
        (e(r.rows[0].tpot_err_pct, 8.0), e(r.rows[0].e2e_err_pct, 2000.0))
    };
    let (tpot_full, e2e_full) = predicted("synthetic:in=500,out=200", "");
    let (tpot_half, e2e_half) = predicted("synthetic:in=500,out=200", "100");
    assert!((tpot_half / tpot_full - 1.0).abs() < 0.1, "{tpot_full} vs {tpot_half} ms a token");
    assert!((e2e_half / e2e_full - 0.5).abs() < 0.08, "{e2e_full} vs {e2e_half} ms");
    let mt = "shared-prefix:groups=2,users=2,system=300,question=50,output=200,multi-turn";
    let (_, mt_full) = predicted(mt, "");
    let (_, mt_half) = predicted(mt, "100");
    assert!(mt_half < 0.7 * mt_full, "{mt_full} vs {mt_half} ms");
}

/// A multi-turn shared-prefix row is replayed as inference-perf sent its
/// turns in the published runs: each the user's system prompt and question
/// alone, at its arrival time, exactly as the single-turn workload sends
/// them. `multi_turn_history` `carried` replays conversations that carry
/// their history instead (each turn after the last answer, the prompt
/// growing); on any other workload it is refused.
#[test]
fn a_multi_turn_row_sends_its_turns_without_their_history_unless_it_says_carried() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},multi_turn_history");
    let row = |workload: &str, history: &str| {
        format!("a,h100-sxm,1,llama-3.1-8b,bf16,vllm,,,,,,\"{workload}\",\"constant:4/s*30s,8/s*30s\",60,10,3000,own,{history}")
    };
    let sp = "shared-prefix:groups=4,users=4,system=500,question=300,output=150";
    let mt = format!("{sp},multi-turn");
    let single = predicted(&one_row(&c, &header, &row(sp, ""), base()));
    for history in ["", "none", "None", "false"] {
        let r = one_row(&c, &header, &row(&mt, history), base());
        assert!(r.turns_alone, "history '{history}'");
        assert_eq!(predicted(&r), single, "history '{history}'");
    }
    assert!(!one_row(&c, &header, &row(sp, ""), base()).turns_alone);
    // Sixteen users at 4 and 8 requests/s come round every 2 to 4 s: by the
    // end each prompt carries about twenty earlier turns. The cache holds
    // them; each turn prefills its new question and the last answer.
    let carried_row = one_row(&c, &header, &row(&mt, "carried"), base());
    assert!(!carried_row.turns_alone);
    let carried = predicted(&carried_row);
    assert!(carried[0] > 1.5 * single[0], "TTFT {} ms carried, {} ms not", carried[0], single[0]);
    assert_eq!(carried, predicted(&one_row(&c, &header, &row(&mt, "true"), base())));
    let refused = one_row(&c, &header, &row("synthetic:in=500,out=100", "carried"), base());
    assert!(refused.malformed && skip_reason(&refused).contains("(multi_turn_history)"), "{:?}", refused.skipped);
    let bad = one_row(&c, &header, &row(&mt, "sometimes"), base());
    assert!(bad.malformed && skip_reason(&bad).contains("'sometimes' is not carried or none"), "{:?}", bad.skipped);
}

/// `max_concurrency` caps an open-loop row's client: past the server's
/// capacity a request held back is timed from its send, below the cap
/// nothing changes, and a cap on a closed loop, of 0 or not a number is
/// refused with the column.
#[test]
fn max_concurrency_holds_an_overloaded_clients_requests_back() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},concurrency,requests,max_concurrency");
    // 80 requests/s of 1,000 + 256 tokens is past what one H100 serves an
    // 8B model at: without a cap the queue grows for the whole two minutes.
    // `closed` is the row's `concurrency,requests` (a closed loop), or ",".
    let row = |arrivals: &str, closed: &str, cap: &str| {
        format!(
            "a,h100-sxm,1,llama-3.1-8b,bf16,vllm,,,,,,\"synthetic:in=1000,out=256\",{arrivals},60,10,3000,own,{closed},{cap}"
        )
    };
    let open = predicted(&one_row(&c, &header, &row("constant:80/s*120s", ",", ""), base()));
    let capped_row = one_row(&c, &header, &row("constant:80/s*120s", ",", "64"), base());
    let capped = predicted(&capped_row);
    // Held back on the client, a request is timed from its send: its first
    // token waits for the engine's queue of at most 64, not for the backlog.
    assert!(capped[0] * 10.0 < open[0], "TTFT {} ms capped at 64, {} ms not", capped[0], open[0]);
    assert_eq!(capped_row.figures.unwrap().requests, 9600);
    // Below the cap it changes nothing.
    let light = |cap: &str| predicted(&one_row(&c, &header, &row("constant:2/s*60s", ",", cap), base()));
    assert_eq!(light("64"), light(""));
    for (closed, cap, why) in [
        ("8,500", "4", "(max_concurrency): caps an open-loop client's arrivals; a closed loop's is `concurrency`"),
        (",", "0", "(max_concurrency): must be at least 1"),
        (",", "many", "(max_concurrency)"),
    ] {
        let arrivals = if closed == "," { "constant:2/s*60s" } else { "" };
        let r = one_row(&c, &header, &row(arrivals, closed, cap), base());
        assert!(r.malformed && skip_reason(&r).contains(why), "{closed} {cap}: {:?}", r.skipped);
    }
}

#[test]
fn a_shared_prefix_row_counts_its_prompts_as_the_server_tokenized_them() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},prompt_token_scale");
    // A lone request now and then: its first token is the frontend and the
    // prefill of a prompt nothing else shares (one user per group).
    let row = |workload: &str, scale: &str| {
        format!("{header}\na,h100-sxm,1,llama-3.1-8b,bf16,vllm,,,,,,\"{workload}\",constant:0.2/s*60s,100,8,2000,own,{scale}\n")
    };
    let ttft = |text: String| {
        let r = validate_text(&c, &text, "runs.csv", base()).unwrap();
        assert!(r.rows[0].skipped.is_none(), "{:?}", r.rows[0].skipped);
        100.0 * (1.0 + r.rows[0].ttft_err_pct.unwrap() / 100.0)
    };
    let sp = "shared-prefix:groups=12,users=1,system=8000,question=2000,output=64";
    let exact = ttft(row(sp, "1"));
    let default = ttft(row(sp, ""));
    let double = ttft(row(sp, "2"));
    // inference-perf's random-token text comes back 4.5 % longer by default.
    assert!(default > exact * 1.02 && default < exact * 1.08, "{exact} vs {default} ms");
    assert!(double > exact * 1.6, "{exact} vs {double} ms");
    // Other workloads are sent as they are sized; a scale there is refused.
    let r = validate_text(&c, &row("synthetic:in=500,out=64", "1.1"), "runs.csv", base()).unwrap();
    let why = r.rows[0].skipped.clone().unwrap_or_default();
    assert!(why.contains("prompt_token_scale"), "{why}");
    let r = validate_text(&c, &row("synthetic:in=500,out=64", "1"), "runs.csv", base()).unwrap();
    assert!(r.rows[0].skipped.is_none());
}

/// A row whose every prompt and max_tokens exceed the model's context
/// (Llama 2's 4,096 tokens) completed nothing in the replay, as vLLM would
/// have refused each with HTTP 400: it is skipped, and the reason says so,
/// with the token count a shared-prefix prompt is taken at. One that fits
/// after the server's re-tokenisation is replayed.
#[test]
fn a_row_whose_prompts_all_exceed_the_context_says_why_it_is_skipped() {
    let c = Catalog::embedded().unwrap();
    let row = |system: u32| {
        format!(
            "a,h100-sxm,1,llama-2-7b,bf16,vllm,,,,,,\"shared-prefix:groups=2,users=2,system={system},question=100,output=200\",constant:1/s*10s,100,8,2000,own"
        )
    };
    // 3,700 + 100 drawn tokens are 3,971 as the server counts them: with 200
    // to generate, over 4,096.
    let over = one_row(&c, HEADER, &row(3700), base());
    let why = skip_reason(&over);
    assert!(why.contains("all 10 were refused") && why.contains("context of 4096 tokens"), "{why}");
    assert!(why.contains("1.045 server tokens"), "{why}");
    let under = one_row(&c, HEADER, &row(3500), base());
    assert!(under.skipped.is_none(), "{:?}", under.skipped);
}

/// The optional `kv_cache_dtype` column is vLLM's `--kv-cache-dtype`: an FP8
/// KV cache holds twice the tokens, so under a load whose KV does not fit in
/// 16 bits fewer requests wait and the mean end-to-end latency falls; `auto`
/// (or an empty cell) is the engine's default, 16 bits for vLLM even with FP8
/// weights, and a value vLLM does not take is reported with its column.
#[test]
fn the_kv_cache_dtype_column_is_vllms_flag() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},kv_cache_dtype");
    let row = |dtype: &str| {
        format!(
            "a,l40s,1,llama-3.1-8b,fp8,vllm,,,0.5,,,\"synthetic:in=3000,out=300\",constant:6/s*40s,500,40,20000,own,{dtype}"
        )
    };
    let e2e = |dtype: &str| {
        let r = validate_text(&c, &format!("{header}\n{}\n", row(dtype)), "runs.csv", base()).unwrap();
        assert_eq!(r.covered, 1, "{:?}", r.rows[0].skipped);
        20000.0 * (1.0 + r.rows[0].e2e_err_pct.unwrap() / 100.0)
    };
    let (auto, empty, bf16, fp8) = (e2e("auto"), e2e(""), e2e("bfloat16"), e2e("fp8"));
    assert_eq!(auto, empty);
    assert_eq!(auto, bf16, "vLLM keeps a 16-bit KV cache for FP8 weights");
    assert!(fp8 < 0.8 * auto, "fp8 KV {fp8} ms end to end against {auto}");
    let r = validate_text(&c, &format!("{header}\n{}\n", row("int3")), "runs.csv", base()).unwrap();
    let why = r.rows[0].skipped.as_deref().unwrap_or("");
    assert!(why.contains("column 18 (kv_cache_dtype)") && why.contains("int3"), "{why}");
}

/// A run whose prompts an earlier run on the same server left cached: a
/// workload that cycles its prompts and a `warmup` column of as many
/// requests (200 prompts of 1,500 tokens: 300,000 tokens, which the H100's
/// cache holds; a cycle larger than the cache would find nothing, as LRU
/// evicts each prompt before it comes round). Its first tokens are the
/// cached prompts' (one step, not a prefill), and a bad count is reported
/// with its column.
#[test]
fn a_warmup_column_replays_a_run_whose_prompts_are_cached() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},requests,warmup");
    let row = |workload: &str, warmup: &str| {
        format!("a,h100-sxm,1,llama-3.1-8b,bf16,vllm,,,,,,\"{workload}\",poisson:2/s*400s,100,10,2000,own,200,{warmup}")
    };
    let ttft = |workload: &str, warmup: &str| predicted(&one_row(&c, &header, &row(workload, warmup), base()))[0];
    let cold = ttft("synthetic:in=1500,out=50,prompts=200", "");
    let warm = ttft("synthetic:in=1500,out=50,prompts=200", "200");
    // Warm-up requests of prompts nobody sends again change nothing.
    let distinct = ttft("synthetic:in=1500,out=50", "200");
    assert!(warm < 0.5 * cold, "warm {warm} ms against cold {cold} ms");
    assert!((distinct - cold).abs() < 0.1 * cold, "distinct prompts {distinct} ms against {cold} ms");
    let r = one_row(&c, &header, &row("synthetic", "-3"), base());
    assert!(skip_reason(&r).contains("(warmup)"), "{}", skip_reason(&r));
}

/// A closed loop run after another on the same server, as `vllm bench
/// serve` runs one concurrency after another with one seed: the measured
/// clients start once the earlier run has ended, and its prompts, the first
/// of this run's, are found in the prefix cache.
#[test]
fn a_closed_loop_after_an_earlier_run_finds_its_prompts_cached() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},concurrency,requests,warmup,warmup_workload");
    let ttft = |warmup: &str, earlier: &str| {
        let row = format!(
            "a,l40s,1,llama-3.1-8b,bf16,vllm,,,,,,\"synthetic:in=1500,out=64,prompts=32\",,100,10,,own,8,32,{warmup},\"{earlier}\""
        );
        predicted(&one_row(&c, &header, &row, base()))[0]
    };
    let cold = ttft("", "");
    // The earlier run sent the first 8 of the 32 prompts (the first wave).
    let warm = ttft("8", "synthetic:in=1500,out=64,prompts=8");
    assert!(warm < 0.9 * cold, "warm {warm} ms against cold {cold} ms");
    // The row's own workload when no earlier one is named: all 32 cached.
    let all = ttft("32", "");
    assert!(all < warm, "all cached {all} ms against the first wave cached {warm} ms");
    // Prompts the earlier run never shares (no cycle) leave nothing.
    let unrelated = ttft("8", "synthetic:in=1500,out=64");
    assert!((unrelated - cold).abs() < 0.05 * cold, "unrelated {unrelated} ms against cold {cold} ms");
}

/// vLLM's random dataset with one seed makes prompt `i` at a shorter input
/// length the start of prompt `i` at a longer one, so a sweep run on one
/// server in rising prompt lengths finds the run before's prompts cached:
/// after a run of 3,072-token prompts, a 4,096-token prompt prefills about
/// 1,024 tokens, as a cold 1,024-token prompt does.
#[test]
fn an_earlier_run_of_shorter_prompts_leaves_their_start_cached() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},concurrency,requests,warmup,warmup_workload");
    let ttft = |workload: &str, warmup: &str, earlier: &str| {
        let row =
            format!("a,a100-80gb,1,qwen3-14b,bf16,vllm,,,,,,\"{workload}\",,100,10,,own,1,4,{warmup},\"{earlier}\"");
        predicted(&one_row(&c, &header, &row, base()))[0]
    };
    let long_cold = ttft("synthetic:in=4096,out=32,prompts=4", "", "");
    let short_cold = ttft("synthetic:in=1024,out=32,prompts=4", "", "");
    let long_warm = ttft("synthetic:in=4096,out=32,prompts=4", "4", "synthetic:in=3072,out=32,prompts=4");
    assert!(long_warm < 0.5 * long_cold, "after the 3,072-token run {long_warm} ms, cold {long_cold} ms");
    assert!(
        (long_warm - short_cold).abs() < 0.3 * short_cold,
        "after the 3,072-token run {long_warm} ms, a cold 1,024-token prompt {short_cold} ms"
    );
    // An earlier workload needs its request count, and is reported by column.
    let row = "a,a100-80gb,1,qwen3-14b,bf16,vllm,,,,,,synthetic,,100,10,,own,1,4,,synthetic:in=128";
    let r = one_row(&c, &header, row, base());
    let why = skip_reason(&r);
    assert!(why.contains("(warmup_workload)") && why.contains("warmup"), "{why}");
}

/// A `file:` workload in a row is read relative to the validation file, as
/// a trace is: the published per-request answer lengths of a closed loop.
#[test]
fn a_file_workload_is_relative_to_the_validation_file() {
    let c = Catalog::embedded().unwrap();
    let dir = base().join("../../data/calibration");
    let header = format!("{HEADER},concurrency,requests");
    let row = "a,l40s,1,llama-3.1-8b,bf16,vllm,,,,,,file:traces/massed-llama31-8b-l40s-c8.jsonl,,70,24,,own,8,40";
    let r = one_row(&c, &header, row, &dir);
    assert!(r.skipped.is_none(), "{:?}", r.skipped);
    // Elsewhere the same relative path names no file, and the row says so.
    let r = one_row(&c, &header, row, base());
    let why = skip_reason(&r);
    assert!(why.contains("(workload)") && why.contains("massed-llama31-8b-l40s-c8.jsonl"), "{why}");
}

/// `async_scheduling` false is vLLM before 0.14.0: the GPU waits every step
/// for the engine core's work on each running sequence, which shows at
/// load and not for one client; a bad value is reported with its column.
#[test]
fn the_async_scheduling_column_is_vllms_flag() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},concurrency,requests,async_scheduling");
    let tpot = |clients: u32, value: &str| {
        let row = format!(
            "a,l40s,1,llama-3.1-8b,bf16,vllm,,,,,,\"synthetic:in=128,out=128\",,50,20,,own,{clients},{},{value}",
            4 * clients
        );
        predicted(&one_row(&c, &header, &row, base()))[1]
    };
    let (busy_sync, busy_async, busy_default) = (tpot(32, "false"), tpot(32, "true"), tpot(32, ""));
    assert_eq!(busy_async, busy_default, "vLLM schedules ahead by default");
    assert!(busy_sync > 1.03 * busy_async, "32 clients: {busy_sync} ms against {busy_async} ms");
    let (one_sync, one_async) = (tpot(1, "false"), tpot(1, "true"));
    assert!(one_sync - one_async < 0.1 * (busy_sync - busy_async), "one client: {one_sync} against {one_async}");
    let r = one_row(&c, &header, "a,l40s,1,llama-3.1-8b,bf16,vllm,,,,,,synthetic,,50,20,,own,1,4,sometimes", base());
    let why = skip_reason(&r);
    assert!(why.contains("(async_scheduling)") && why.contains("sometimes"), "{why}");
    // A row that names vLLM with neither its version nor both settings is
    // flagged as replayed with today's defaults (`sim validate` says so).
    let header = format!("{header},cudagraph_mode");
    let assumed = |engine: &str, scheduling: &str, graphs: &str| {
        let row = format!("a,l40s,1,llama-3.1-8b,bf16,{engine},,,,,,synthetic,,50,20,,own,1,4,{scheduling},{graphs}");
        let r = one_row(&c, &header, &row, base());
        assert!(r.skipped.is_none(), "{engine}: {:?}", r.skipped);
        r.defaults_assumed
    };
    assert!(assumed("vllm", "", "") && assumed("", "", "") && assumed("vllm/vllm-openai:latest", "", ""));
    assert!(assumed("vllm", "true", "") && assumed("vllm", "", "piecewise"));
    assert!(!assumed("vllm", "true", "full_and_piecewise") && !assumed("vllm", "false", "piecewise"));
    assert!(!assumed("vllm 0.11.0", "", "") && !assumed("vllm/vllm-openai:v0.15.1", "", ""));
    assert!(!assumed("sglang", "", ""));
}

/// `cudagraph_mode` `piecewise` is vLLM 0.8 to 0.10: decode steps in pieces,
/// attention between the CUDA graphs, a fixed cost more per layer, which
/// shows most for one client; a version in that range says the same, and
/// a bad value is reported with its column.
#[test]
fn the_cudagraph_mode_column_is_vllms_setting() {
    let c = Catalog::embedded().unwrap();
    let header = format!("{HEADER},concurrency,requests,cudagraph_mode");
    let tpot = |engine: &str, value: &str| {
        let row = format!(
            "a,h100-sxm,1,llama-3.1-8b,bf16,{engine},,,,,,\"synthetic:in=128,out=128\",,50,20,,own,1,4,{value}"
        );
        let r = one_row(&c, &header, &row, base());
        assert!(r.skipped.is_none(), "{engine} {value}: {:?}", r.skipped);
        predicted(&r)[1]
    };
    let (full, piecewise, default) = (tpot("vllm", "full_and_piecewise"), tpot("vllm", "PIECEWISE"), tpot("vllm", ""));
    assert_eq!(full, default, "vLLM runs decode whole by default");
    assert!(piecewise > 1.1 * full, "one client: {piecewise} ms against {full} ms");
    assert_eq!(tpot("vllm 0.10.1", ""), tpot("vllm 0.10.1", "piecewise"));
    assert_eq!(tpot("vllm 0.11.0", ""), tpot("vllm 0.11.0", "full_and_piecewise"));
    let r = one_row(&c, &header, "a,h100-sxm,1,llama-3.1-8b,bf16,vllm,,,,,,synthetic,,50,20,,own,1,4,eager", base());
    let why = skip_reason(&r);
    assert!(why.contains("(cudagraph_mode)") && why.contains("eager"), "{why}");
}

/// A row that cannot be placed is skipped with the reason that is true: an
/// unknown model as the model (whatever the weight format cell says), an
/// unknown format as the format.
#[test]
fn a_skipped_row_names_what_is_unknown() {
    let c = Catalog::embedded().unwrap();
    let row = |id: &str, model: &str, quant: &str| {
        format!("{id},h100-sxm,1,{model},{quant},vllm,,,,,,synthetic,poisson:1/s*10s,10,10,100,own")
    };
    let text = format!(
        "{HEADER}\n{}\n{}\n{}\n",
        row("a", "no-such-model", ""),
        row("b", "no-such-model", "auto"),
        row("c", "llama-3.1-8b", "int3-foo")
    );
    let r = validate_text(&c, &text, "runs.csv", base()).unwrap();
    assert_eq!(r.covered, 0);
    let why = |i: usize| r.rows[i].skipped.clone().unwrap_or_default();
    assert!(why(0).contains("unknown model 'no-such-model'"), "{}", why(0));
    assert!(why(1).contains("unknown model 'no-such-model'"), "{}", why(1));
    assert!(why(2).contains("weight format 'int3-foo' is not recognised"), "{}", why(2));
}
