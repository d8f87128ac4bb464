//! The engine settings through the binary: one flag group on `sim predict`,
//! `sim replay` and `sim serve`, SGLang's names as aliases, settings that
//! change what is predicted, and contradictions refused.

mod common;

use common::{bin, output, text};

const KNOBS: [&str; 13] = [
    "--max-num-batched-tokens",
    "--max-num-seqs",
    "--gpu-memory-utilization",
    "--block-size",
    "--no-prefix-caching",
    "--enable-prefix-caching",
    "--cpu-offload-gb",
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--kv-cache-dtype",
    "--async-scheduling",
    "--no-async-scheduling",
    "--cudagraph-mode",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_replay_and_serve_take_the_same_engine_flags() {
    for cmd in ["predict", "replay", "serve"] {
        let mut c = bin();
        c.args(["sim", cmd, "--help"]);
        let o = output(c).await;
        let help = text(&o);
        for k in KNOBS {
            assert!(help.contains(k), "sim {cmd} --help lacks {k}:\n{help}");
        }
    }
}

async fn json(args: &[&str]) -> serde_json::Value {
    let mut c = bin();
    c.arg("sim").args(args).arg("--json");
    let o = output(c).await;
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_change_the_figures() {
    let h100 = ["--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--quant", "fp8"];
    let predict = |extra: &'static [&'static str]| {
        let mut a = vec!["predict"];
        a.extend(h100);
        a.extend(["--concurrency", "4", "--input", "4000", "--output", "64"]);
        a.extend(extra);
        a
    };
    // A smaller step budget splits the 4000-token prompt into more chunks: a later first token.
    let wide = json(&predict(&[])).await;
    let narrow = json(&predict(&["--chunked-prefill-size", "512"])).await;
    let ttft = |v: &serde_json::Value| v["levels"][0]["ttft_ms"].as_f64().unwrap();
    assert!(ttft(&narrow) > ttft(&wide), "{narrow} vs {wide}");
    // Less memory for the engine, a fuller KV cache for the same load.
    let tight = json(&predict(&["--gpu-memory-utilization", "0.3"])).await;
    let usage = |v: &serde_json::Value| v["levels"][0]["kv_cache_usage"].as_f64().unwrap();
    assert!(usage(&tight) > 2.0 * usage(&wide), "{tight} vs {wide}");
    // FP8 weights keep vLLM's KV cache in 16 bits; an FP8 KV cache is asked
    // for, and holds the same load in half the pool.
    let fp8_kv = json(&predict(&["--kv-cache-dtype", "fp8"])).await;
    let half = usage(&fp8_kv) / usage(&wide);
    assert!((0.45..0.55).contains(&half), "{fp8_kv} vs {wide}");
    // vLLM before 0.14.0 scheduled each step after the last: the GPU waits
    // for the engine core's work on every running sequence. The last of
    // the two flags wins.
    let per_request = |v: &serde_json::Value| v["levels"][0]["per_request_tok_s"].as_f64().unwrap();
    let sync = json(&predict(&["--no-async-scheduling"])).await;
    assert!(per_request(&sync) < 0.99 * per_request(&wide), "{sync} vs {wide}");
    let last = json(&predict(&["--no-async-scheduling", "--async-scheduling"])).await;
    assert_eq!(per_request(&last), per_request(&wide));
    // The table's first line says which scheduler it priced, as does a
    // version in the engine's name.
    for (engine, flags) in [("vllm", &["--no-async-scheduling"][..]), ("vllm 0.8.5", &[][..])] {
        let mut c = bin();
        c.args([
            "sim",
            "predict",
            "--gpu",
            "l40s",
            "--model",
            "llama-3.1-8b",
            "--engine",
            engine,
            "--concurrency",
            "1",
        ]);
        c.args(flags);
        let o = output(c).await;
        assert!(text(&o).contains("vLLM (synchronous scheduling"), "{engine} {flags:?}: {}", text(&o));
    }
    // vLLM 0.8 to 0.10 ran decode steps in pieces, attention between the
    // CUDA graphs: a launch gap every layer, a slower single stream. The
    // mode is named on the table's first line, as is a version that had it.
    let piecewise = json(&predict(&["--cudagraph-mode", "piecewise"])).await;
    assert!(per_request(&piecewise) < 0.95 * per_request(&wide), "{piecewise} vs {wide}");
    let full = json(&predict(&["--cudagraph-mode", "FULL_AND_PIECEWISE"])).await;
    assert_eq!(per_request(&full), per_request(&wide));
    for (engine, flags) in [("vllm", &["--cudagraph-mode", "piecewise"][..]), ("vllm 0.10.1", &[][..])] {
        let mut c = bin();
        c.args(["sim", "predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--engine", engine]);
        c.args(["--concurrency", "1"]).args(flags);
        let o = output(c).await;
        assert!(text(&o).contains("piecewise CUDA graphs"), "{engine} {flags:?}: {}", text(&o));
    }
    // Tensor x pipeline parallel: eight GPUs for Llama 2 70B without --count.
    let mut a =
        vec!["predict", "--gpu", "h100-sxm", "--model", "llama-2-70b", "--quant", "fp16", "--tp", "4", "--pp", "2"];
    a.extend(["--concurrency", "1"]);
    let v = json(&a).await;
    assert!(v["levels"][0]["per_request_tok_s"].as_f64().unwrap() > 0.0, "{v}");
    // Replay with and without the prefix cache (SGLang's name for turning it off).
    let mut a = vec!["replay"];
    a.extend(h100);
    a.extend([
        "--workload",
        "shared-prefix:groups=2,users=4,system=1000,question=50,output=20",
        "--rate",
        "5",
        "--requests",
        "40",
    ]);
    let on = json(&a).await;
    a.push("--disable-radix-cache");
    let off = json(&a).await;
    assert_eq!((on["prefix_caching"].as_bool(), off["prefix_caching"].as_bool()), (Some(true), Some(false)));
    let hit = |v: &serde_json::Value| v["overall"]["prefix_hit_rate"].as_f64().unwrap();
    assert!(hit(&on) > 0.5 && hit(&off) == 0.0, "{} vs {}", hit(&on), hit(&off));
    // vLLM leaves prefix caching off for a model with linear-attention
    // layers unless asked, and sizes its blocks to hold their states.
    let hybrid = |extra: &[&'static str]| {
        let mut a = vec!["replay", "--gpu", "h200", "--model", "qwen3-next-80b-a3b", "--quant", "fp8"];
        a.extend(["--workload", "shared-prefix:groups=2,users=4,system=1200,question=50,output=20"]);
        a.extend(["--rate", "5", "--requests", "40"]);
        a.extend(extra);
        a
    };
    let (plain, asked) = (json(&hybrid(&[])).await, json(&hybrid(&["--enable-prefix-caching"])).await);
    assert_eq!((plain["prefix_caching"].as_bool(), asked["prefix_caching"].as_bool()), (Some(false), Some(true)));
    assert!(hit(&plain) == 0.0 && hit(&asked) > 0.3, "{} vs {}", hit(&plain), hit(&asked));
    // The replay names the KV cache it sized: 16-bit for FP8 weights, 8-bit when asked.
    let line = |v: &serde_json::Value| v["deployment"].as_str().unwrap().to_string();
    assert!(line(&on).contains("KV cache 16-bit"), "{}", line(&on));
    a.extend(["--kv-cache-dtype", "fp8"]);
    assert!(line(&json(&a).await).contains("KV cache 8-bit"));
    // And the scheduler, where the GPU waits for it.
    assert!(!line(&on).contains("synchronous"), "{}", line(&on));
    a.push("--no-async-scheduling");
    assert!(line(&json(&a).await).contains("vLLM · synchronous scheduling · KV cache"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradictory_settings_are_refused_with_the_reason() {
    let cases: [(&[&str], &str); 6] = [
        (&["--count", "3", "--tp", "4"], "tensor x pipeline"),
        (&["--count", "8", "--pp", "3"], "pipeline stages"),
        (&["--gpu-memory-utilization", "1.5"], "gpu_memory_utilization"),
        (&["--kv-cache-dtype", "int3"], "not one of auto, bfloat16, float16, fp8"),
        (&["--cudagraph-mode", "full_decode_only"], "does not model"),
        (&["--enable-prefix-caching", "--no-prefix-caching"], "cannot be used with"),
    ];
    for (extra, want) in cases {
        let mut c = bin();
        c.args(["sim", "predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--quant", "fp8"]).args(extra);
        let o = output(c).await;
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{extra:?}: {}", text(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_model_keeps_its_own_weights_unless_told() {
    let first_line = |o: &std::process::Output| text(o).lines().next().unwrap_or_default().to_string();
    // No options: the default deployment, whose model fits the RTX 3090 in AWQ 4-bit only.
    let mut c = bin();
    c.args(["sim", "predict", "--concurrency", "1"]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(first_line(&o).contains("AWQ 4-bit"), "{}", first_line(&o));
    // A model named without --quant: its checkpoint's 16-bit weights, as vLLM loads them.
    let mut c = bin();
    c.args([
        "sim",
        "predict",
        "--gpu",
        "h100-sxm",
        "--model",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--concurrency",
        "1",
    ]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(first_line(&o).contains("FP16 / BF16"), "{}", first_line(&o));
    // gpt-oss ships its experts in MXFP4, and is loaded so.
    let mut c = bin();
    c.args(["sim", "predict", "--gpu", "h100-sxm", "--model", "openai/gpt-oss-20b", "--concurrency", "1"]);
    let o = output(c).await;
    assert!(first_line(&o).contains("MXFP4"), "{}", first_line(&o));
    // --quant still decides when given.
    let mut c = bin();
    c.args(["sim", "predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--quant", "fp8", "--concurrency", "1"]);
    let o = output(c).await;
    assert!(first_line(&o).contains("FP8"), "{}", first_line(&o));
}

/// A prediction for requests the server would refuse (a prompt and answer
/// over the model's context) or that carry no tokens is refused with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_refuses_requests_the_server_would_refuse() {
    let cases = [
        (["--input", "4000", "--output", "200"], "exceed Llama 2 7B's context of 4096 tokens"),
        (["--input", "0", "--output", "200"], "at least 1 token"),
    ];
    for (args, why) in cases {
        let mut c = bin();
        c.args(["sim", "predict", "--gpu", "h100-sxm", "--model", "llama-2-7b", "--concurrency", "1"]).args(args);
        let o = output(c).await;
        assert!(!o.status.success() && text(&o).contains(why), "{args:?}: {}", text(&o));
    }
    let mut c = bin();
    c.args(["sim", "predict", "--gpu", "h100-sxm", "--model", "llama-2-7b", "--concurrency", "1", "--input", "3800"])
        .args(["--output", "200"]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
}
