//! A model from its Hugging Face `config.json`: the architecture figures the
//! performance model needs (layers, widths, KV heads and head size, MLA
//! latent, experts, sliding-window layers) and the parameter counts derived
//! from them. Understands the config layouts of Llama (2, 3, 4), Qwen2/2.5,
//! Qwen3 (dense and MoE), Mistral/Mixtral, DeepSeek-V2/V3 (MLA, shared
//! experts, leading dense layers), gpt-oss, Gemma 2/3, Phi-3/3.5/4, and the
//! hybrids of Gated DeltaNet linear attention and gated full attention
//! (Qwen3-Next, Qwen3.5); multimodal configs are read from their
//! `text_config`. Layers of state-space (Mamba) type are refused by name.

use serde_json::Value;

use crate::catalog::Model;
use crate::SimError;

/// The model configs shipped in `crates/sim/data/models/`, by file name.
pub const EMBEDDED_CONFIGS: &[(&str, &str)] = &include!("../data/models/index.rs.in");

/// The text of a shipped config, by file name ("qwen3-14b.json").
pub fn embedded_config(file: &str) -> Option<&'static str> {
    EMBEDDED_CONFIGS.iter().find(|(f, _)| *f == file).map(|(_, t)| *t)
}

fn bad(source: &str, why: impl Into<String>) -> SimError {
    SimError::Catalog { file: source.to_string(), message: why.into() }
}

/// Reads a `config.json` text into a catalog model named `id`. `source`
/// names the file in errors and becomes the entry's source.
pub fn model_from_config(id: &str, text: &str, source: &str) -> Result<Model, SimError> {
    let root: Value = serde_json::from_str(text).map_err(|e| bad(source, format!("not a JSON model config: {e}")))?;
    let c = root.get("text_config").filter(|v| v.is_object()).unwrap_or(&root);
    let num = |key: &str| -> Option<f64> { c.get(key).and_then(Value::as_f64).or_else(|| root.get(key)?.as_f64()) };
    if let Some(why) = state_space_layers(c) {
        return Err(bad(
            source,
            format!(
                "{why}: layers of state-space (Mamba) type are not modelled; the simulator models full, \
                 sliding-window and latent (MLA) attention and Gated DeltaNet linear attention"
            ),
        ));
    }
    let need = |key: &str| -> Result<f64, SimError> {
        num(key).filter(|v| *v > 0.0).ok_or_else(|| {
            bad(source, format!("'{key}' is missing; a Hugging Face config.json of a decoder model states it"))
        })
    };
    let layers = num("num_hidden_layers").or_else(|| num("n_layer")).ok_or_else(|| {
        bad(source, "'num_hidden_layers' is missing; a Hugging Face config.json of a decoder model states it")
    })?;
    let hidden = need("hidden_size")?;
    let heads = need("num_attention_heads")?;
    let kv_heads = num("num_key_value_heads").filter(|v| *v > 0.0).unwrap_or(heads);
    // MLA configs give per-head widths instead: the attention's head size
    // is the non-rotary query/key width (128 in DeepSeek-V2/V3).
    let head_dim = num("head_dim")
        .filter(|v| *v > 0.0)
        .or_else(|| num("kv_lora_rank").and(num("qk_nope_head_dim")))
        .unwrap_or(hidden / heads);
    let vocab = need("vocab_size")?;
    let inter = num("intermediate_size").unwrap_or(4.0 * hidden);
    let tied = c
        .get("tie_word_embeddings")
        .or_else(|| root.get("tie_word_embeddings"))
        .and_then(Value::as_bool)
        .unwrap_or(matches!(model_type(c).as_str(), "gemma2" | "gemma3_text" | "gemma3" | "gemma"));

    // Linear-attention layers (Gated DeltaNet: Qwen3-Next, Qwen3.5) keep a
    // fixed state per sequence instead of a KV cache; the other layers are
    // full attention with an output gate.
    let linear = linear_attention(c, layers, hidden);
    if linear.is_some()
        && c.get("layer_types")
            .and_then(Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("sliding_attention")))
    {
        return Err(bad(source, "layers of both sliding-window and linear attention are not modelled"));
    }
    if linear.is_some_and(|l| l.layers >= layers) {
        return Err(bad(
            source,
            "every layer is linear attention: a model without softmax attention layers is not modelled",
        ));
    }
    let output_gate = c.get("attn_output_gate").and_then(Value::as_bool).unwrap_or(linear.is_some());

    // Attention weights per layer, and the KV elements each layer stores.
    let kv_lora = num("kv_lora_rank").filter(|v| *v > 0.0);
    let (attn, kv_elems_per_layer) = if let Some(kv_lora) = kv_lora {
        // Multi-head latent attention: the cache holds the compressed
        // latent plus the shared rotary key.
        let rope = num("qk_rope_head_dim").unwrap_or(64.0);
        let nope = num("qk_nope_head_dim").unwrap_or(128.0);
        let v_dim = num("v_head_dim").unwrap_or(128.0);
        let q = match num("q_lora_rank").filter(|v| *v > 0.0) {
            Some(r) => hidden * r + r * heads * (nope + rope),
            None => hidden * heads * (nope + rope),
        };
        let kv = hidden * (kv_lora + rope) + kv_lora * heads * (nope + v_dim);
        (q + kv + heads * v_dim * hidden, Some(kv_lora + rope))
    } else {
        let gate = if output_gate { hidden * heads * head_dim } else { 0.0 };
        (hidden * head_dim * (2.0 * heads + 2.0 * kv_heads) + gate, None)
    };
    let linear_layers = linear.map_or(0.0, |l| l.layers);
    let attention_weights = (layers - linear_layers) * attn + linear.map_or(0.0, |l| l.layers * l.params);

    // Experts.
    let experts =
        num("n_routed_experts").or_else(|| num("num_local_experts")).or_else(|| num("num_experts")).unwrap_or(0.0);
    let k = num("num_experts_per_tok").or_else(|| num("experts_per_token")).unwrap_or(0.0);
    let moe = experts > 1.0 && k > 0.0;
    let expert_inter = num("moe_intermediate_size").unwrap_or(inter);
    let gated = 3.0 * hidden; // gate, up and down projections
    let mut shared_experts = num("n_shared_experts").unwrap_or(0.0);
    let mut shared_params = shared_experts * gated * expert_inter;
    if let Some(s) = num("shared_expert_intermediate_size").filter(|v| *v > 0.0) {
        // Qwen2-MoE: one shared expert of its own width.
        shared_experts = shared_experts.max(1.0);
        shared_params = gated * s;
    }
    let mut dense_inter = inter;
    let mut moe_layers = if moe { layers } else { 0.0 };
    match model_type(c).as_str() {
        "llama4_text" | "llama4" => {
            // One shared expert as wide as a routed one on every MoE layer;
            // with interleaving the other layers are dense.
            shared_experts = 1.0;
            shared_params = gated * expert_inter;
            dense_inter = num("intermediate_size_mlp").unwrap_or(inter);
            let step = num("interleave_moe_layer_step").unwrap_or(1.0).max(1.0);
            moe_layers = (layers / step).floor();
        }
        _ if moe => {
            let first_dense = num("first_k_dense_replace").unwrap_or(0.0);
            let freq = num("moe_layer_freq").or_else(|| num("decoder_sparse_step")).unwrap_or(1.0).max(1.0);
            let sparse_only = c.get("mlp_only_layers").and_then(Value::as_array).map(|a| a.len() as f64).unwrap_or(0.0);
            moe_layers = ((layers - first_dense) / freq).floor() - sparse_only;
        }
        _ => {}
    }
    let dense_layers = layers - moe_layers;
    let routed_total = moe_layers * experts * gated * expert_inter;
    let per_moe_layer_fixed = shared_params + hidden * experts;
    let embeddings = vocab * hidden * if tied { 1.0 } else { 2.0 };
    let total = attention_weights
        + dense_layers * gated * dense_inter
        + moe_layers * per_moe_layer_fixed
        + routed_total
        + embeddings
        + layers * 2.0 * hidden;
    let active = if moe { total - routed_total * (1.0 - k / experts) } else { total };

    // Sliding-window layers: explicit layer types (gpt-oss, newer Gemma and
    // Qwen configs), Gemma 3's pattern (N−1 of every N), Gemma 2's
    // alternation, Llama 4's chunks, or every layer (Mistral v0.1, Phi-3)
    // when a window is set and not switched off.
    // Llama 4's chunked local attention (`attention_chunk_size`, on the
    // layers that use RoPE: those `no_rope_layers` marks 1, by default all
    // but every fourth) keeps at most one chunk: counted as a window of
    // that size, which is what it keeps at a chunk's end.
    let chunked = matches!(model_type(c).as_str(), "llama4_text" | "llama4")
        .then(|| num("attention_chunk_size"))
        .flatten()
        .filter(|v| *v > 0.0);
    let window = chunked.or(num("sliding_window")).unwrap_or(0.0);
    let sliding_off = c.get("use_sliding_window").and_then(Value::as_bool) == Some(false);
    let sliding_layers = if window <= 0.0 || sliding_off || linear.is_some() {
        0.0
    } else if chunked.is_some() {
        match c.get("no_rope_layers").and_then(Value::as_array).filter(|a| !a.is_empty()) {
            Some(flags) => flags.iter().filter(|f| f.as_f64().is_some_and(|v| v != 0.0)).count() as f64,
            None => layers - (layers / 4.0).floor(),
        }
    } else if let Some(types) = c.get("layer_types").and_then(Value::as_array) {
        types.iter().filter(|t| t.as_str() == Some("sliding_attention")).count() as f64
    } else if let Some(p) = num("sliding_window_pattern").filter(|p| *p > 1.0) {
        layers - (layers / p).floor()
    } else if model_type(c) == "gemma2" {
        (layers / 2.0).ceil()
    } else {
        layers
    };
    let max_context = num("max_position_embeddings").unwrap_or(32768.0).min(u32::MAX as f64);

    let u = |v: f64| v.round().clamp(0.0, u32::MAX as f64) as u32;
    Ok(Model {
        id: id.to_string(),
        name: id.to_string(),
        aliases: Vec::new(),
        layers: u(layers),
        hidden: u(hidden),
        heads: u(heads),
        kv_heads: u(kv_heads),
        head_dim: u(head_dim),
        vocab: u(vocab),
        params_total_b: total / 1e9,
        params_active_b: active / 1e9,
        experts: if moe { u(experts) } else { 0 },
        experts_per_token: if moe { u(k) } else { 0 },
        shared_experts: u(shared_experts),
        tied_embeddings: tied,
        kv_elems_per_layer: kv_elems_per_layer.map(u),
        max_context: u(max_context),
        sliding_window: if sliding_layers > 0.0 { u(window) } else { 0 },
        sliding_layers: u(sliding_layers),
        linear_layers: u(linear_layers),
        linear_state_bytes: linear.map_or(0.0, |l| l.state_bytes),
        native_quant: checkpoint_format(&root),
        source: source.to_string(),
    })
}

/// A config's Gated DeltaNet layers: how many, the weights of one, and the
/// bytes of the state one keeps per sequence.
#[derive(Debug, Clone, Copy)]
struct LinearAttention {
    layers: f64,
    params: f64,
    state_bytes: f64,
}

/// The linear-attention layers of a config that has them: named in
/// `layer_types` ("linear_attention", Qwen3.5), else every layer but each
/// `full_attention_interval`-th (Qwen3-Next). A layer projects the input to
/// queries, keys (`linear_num_key_heads` x `linear_key_head_dim` each),
/// values and an output gate (`linear_num_value_heads` x
/// `linear_value_head_dim` each) and two scalars a value head, runs a short
/// causal convolution (`linear_conv_kernel_dim`) over queries, keys and
/// values, and projects back. Its state per sequence is one key x value
/// matrix a value head, in `mamba_ssm_dtype` (vLLM keeps it in the model's
/// 16-bit type unless the config says `float32`), and the convolution's
/// last `kernel - 1` inputs in 16 bits.
fn linear_attention(c: &Value, layers: f64, hidden: f64) -> Option<LinearAttention> {
    let num = |key: &str| c.get(key).and_then(Value::as_f64).filter(|v| *v > 0.0);
    let count = match c.get("layer_types").and_then(Value::as_array) {
        Some(types) => types.iter().filter(|t| t.as_str() == Some("linear_attention")).count() as f64,
        None => match (num("full_attention_interval"), num("linear_num_value_heads")) {
            (Some(every), Some(_)) if every > 1.0 => layers - (layers / every).floor(),
            _ => 0.0,
        },
    };
    if count <= 0.0 {
        return None;
    }
    let value_heads = num("linear_num_value_heads").unwrap_or(32.0);
    let key_heads = num("linear_num_key_heads").unwrap_or(16.0);
    let key_dim = num("linear_key_head_dim").unwrap_or(128.0);
    let value_dim = num("linear_value_head_dim").unwrap_or(128.0);
    let kernel = num("linear_conv_kernel_dim").unwrap_or(4.0);
    let (qk, v) = (2.0 * key_heads * key_dim, value_heads * value_dim);
    let params =
        hidden * (qk + 2.0 * v + 2.0 * value_heads) + (qk + v) * kernel + v * hidden + 2.0 * value_heads + value_dim;
    let ssm_bytes = match c.get("mamba_ssm_dtype").and_then(Value::as_str) {
        Some("float32") => 4.0,
        _ => 2.0,
    };
    let state_bytes = value_heads * key_dim * value_dim * ssm_bytes + (qk + v) * (kernel - 1.0) * 2.0;
    Some(LinearAttention { layers: count, params, state_bytes })
}

/// Why a config has state-space (Mamba) layers, if it does: its model type
/// or the keys that lay them out.
fn state_space_layers(c: &Value) -> Option<String> {
    let kind = model_type(c);
    let known = ["mamba", "jamba", "zamba", "bamba", "falcon_h1", "nemotron_h", "granitemoehybrid", "plamo2", "lfm2"];
    if known.iter().any(|k| kind.starts_with(k)) {
        return Some(format!("model type '{kind}'"));
    }
    ["hybrid_override_pattern", "layers_block_type", "mamba_d_state", "ssm_state_size", "mamba_n_heads"]
        .into_iter()
        .find(|k| c.get(*k).is_some())
        .map(|k| format!("'{k}'"))
}

/// The catalog's weight format for a config's `quantization_config` (FP8,
/// MXFP4, 4-bit AWQ or GPTQ); `None` for 16-bit checkpoints and formats the
/// catalog does not name one-to-one.
fn checkpoint_format(root: &Value) -> Option<String> {
    let q = root.get("quantization_config")?;
    let method = q.get("quant_method").and_then(Value::as_str)?.to_ascii_lowercase();
    let bits = q.get("bits").or_else(|| q.get("w_bit")).and_then(Value::as_u64);
    let id = match (method.as_str(), bits) {
        ("fp8", _) => "fp8",
        ("mxfp4", _) => "mxfp4",
        ("awq", Some(4) | None) => "awq4",
        ("gptq", Some(4) | None) => "gptq4",
        _ => return None,
    };
    Some(id.to_string())
}

fn model_type(c: &Value) -> String {
    c.get("model_type").and_then(Value::as_str).unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(file: &str) -> Model {
        model_from_config(file, embedded_config(file).unwrap(), file).unwrap()
    }

    /// Qwen3-Next: 36 of 48 layers Gated DeltaNet (every fourth is full
    /// attention, with an output gate). The derived parameters meet the
    /// checkpoint's (79,674,391,296 in all; 3,874,929,408 with one token's
    /// ten routed experts and the shared one), and each linear layer keeps
    /// 32 value heads of a 128 x 128 state in 16 bits plus three steps of
    /// its convolution's input.
    #[test]
    fn linear_attention_layers_keep_a_state_instead_of_a_cache() {
        let m = shipped("qwen3-next-80b-a3b.json");
        assert_eq!((m.layers, m.linear_layers, m.attention_layers()), (48, 36, 12));
        assert_eq!(m.linear_state_bytes, 32.0 * 128.0 * 128.0 * 2.0 + (2.0 * 16.0 * 128.0 + 32.0 * 128.0) * 3.0 * 2.0);
        assert!((m.params_total_b / 79.674_391_296 - 1.0).abs() < 1e-4, "{}", m.params_total_b);
        assert!((m.params_active_b / 3.874_929_408 - 1.0).abs() < 1e-4, "{}", m.params_active_b);
        // The KV cache is the twelve attention layers' alone.
        assert_eq!(m.kv_elems_per_token(), 12.0 * 2.0 * 2.0 * 256.0);
        assert_eq!(m.sliding_layers, 0);
        // Qwen3.5 names its layers and keeps the state in FP32.
        let qwen35 = r#"{"model_type": "qwen3_5", "text_config": {"model_type": "qwen3_5_text",
            "num_hidden_layers": 8, "hidden_size": 4096, "num_attention_heads": 16, "num_key_value_heads": 4,
            "head_dim": 256, "intermediate_size": 12288, "vocab_size": 248320, "attn_output_gate": true,
            "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention",
                            "linear_attention", "linear_attention", "linear_attention", "full_attention"],
            "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_num_key_heads": 16,
            "linear_num_value_heads": 32, "linear_value_head_dim": 128, "mamba_ssm_dtype": "float32"}}"#;
        let m = model_from_config("qwen3.5", qwen35, "config.json").unwrap();
        assert_eq!((m.linear_layers, m.attention_layers()), (6, 2));
        // Every layer linear: no KV cache to size, refused.
        let all = qwen35
            .replace(r#""full_attention"]"#, r#""linear_attention"]"#)
            .replace(r#""linear_attention", "full_attention","#, r#""linear_attention", "linear_attention","#);
        let err = model_from_config("qwen3.5", &all, "config.json").unwrap_err().to_string();
        assert!(err.contains("every layer is linear attention"), "{err}");
        assert_eq!(m.linear_state_bytes, 32.0 * 128.0 * 128.0 * 4.0 + 8192.0 * 3.0 * 2.0);
        // A plain config has none.
        assert_eq!(shipped("qwen3-30b-a3b.json").linear_layers, 0);
    }

    /// Llama 4's chunked local attention keeps at most one 8,192-token
    /// chunk on the layers that use RoPE: all but every fourth by default,
    /// or those `no_rope_layers` marks 1.
    #[test]
    fn llama_4_chunked_layers_keep_one_chunk() {
        let scout = shipped("llama-4-scout.json");
        assert_eq!((scout.sliding_window, scout.sliding_layers), (8192, 36));
        let flagged = r#"{"model_type": "llama4_text", "num_hidden_layers": 4, "hidden_size": 64,
            "num_attention_heads": 4, "vocab_size": 100, "attention_chunk_size": 2048, "no_rope_layers": [1, 0, 0, 1]}"#;
        let m = model_from_config("l4", flagged, "config.json").unwrap();
        assert_eq!((m.sliding_window, m.sliding_layers), (2048, 2));
        // Other model types with the key keep their own reading.
        let other = flagged.replace("llama4_text", "llama");
        assert_eq!(model_from_config("l", &other, "config.json").unwrap().sliding_layers, 0);
    }

    /// Mamba layers are not modelled: a config with them is refused by
    /// name, not read as attention.
    #[test]
    fn state_space_layers_are_refused_by_name() {
        let nemotron = r#"{"model_type": "nemotron_h", "num_hidden_layers": 4, "hidden_size": 64,
            "num_attention_heads": 4, "vocab_size": 100, "hybrid_override_pattern": "M-M*"}"#;
        let err = model_from_config("nemotron-h", nemotron, "nemotron/config.json").unwrap_err().to_string();
        assert!(err.contains("nemotron/config.json") && err.contains("nemotron_h") && err.contains("Mamba"), "{err}");
        let keyed = r#"{"model_type": "custom", "num_hidden_layers": 4, "hidden_size": 64,
            "num_attention_heads": 4, "vocab_size": 100, "ssm_state_size": 16}"#;
        let err = model_from_config("custom", keyed, "config.json").unwrap_err().to_string();
        assert!(err.contains("'ssm_state_size'") && err.contains("Mamba"), "{err}");
    }

    #[test]
    fn a_quantization_config_names_the_checkpoints_format() {
        let with = |q: &str| {
            let text = format!(
                r#"{{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 100,
                    "quantization_config": {q}}}"#
            );
            model_from_config("m", &text, "config.json").unwrap().native_quant
        };
        assert_eq!(with(r#"{"quant_method": "fp8", "weight_block_size": [128, 128]}"#).as_deref(), Some("fp8"));
        assert_eq!(with(r#"{"quant_method": "mxfp4"}"#).as_deref(), Some("mxfp4"));
        assert_eq!(with(r#"{"quant_method": "awq", "bits": 4, "group_size": 128}"#).as_deref(), Some("awq4"));
        assert_eq!(with(r#"{"quant_method": "gptq", "bits": 4}"#).as_deref(), Some("gptq4"));
        // Formats the catalog has no one-to-one entry for stay 16-bit.
        assert_eq!(with(r#"{"quant_method": "gptq", "bits": 8}"#), None);
        assert_eq!(with(r#"{"quant_method": "bitsandbytes", "load_in_4bit": true}"#), None);
        assert_eq!(shipped("llama-3.1-8b.json").native_quant, None);
    }

    /// Total and active parameters derived from the shipped configs against
    /// the model cards' figures (billions).
    #[test]
    fn derived_parameter_counts_match_the_model_cards() {
        for (file, total, active) in [
            ("llama-3.1-8b.json", 8.03, 8.03),
            ("llama-3.1-70b.json", 70.6, 70.6),
            ("llama-3.1-405b.json", 405.9, 405.9),
            ("qwen3-14b.json", 14.8, 14.8),
            ("qwen3-32b.json", 32.8, 32.8),
            ("qwen3-30b-a3b.json", 30.5, 3.3),
            ("qwen3-235b-a22b.json", 235.0, 22.0),
            ("mixtral-8x7b.json", 46.7, 12.9),
            ("mixtral-8x22b.json", 141.0, 39.0),
            ("deepseek-v3.json", 671.0, 37.0),
            ("deepseek-v2-lite.json", 15.7, 2.4),
            ("llama-4-scout.json", 109.0, 17.0),
            ("llama-4-maverick.json", 400.0, 17.0),
            ("gpt-oss-120b.json", 116.8, 5.1),
            ("codellama-34b.json", 33.7, 33.7),
            ("mistral-small-24b.json", 23.6, 23.6),
            ("gemma-3-27b.json", 27.0, 27.0),
            ("phi-4.json", 14.7, 14.7),
        ] {
            let m = shipped(file);
            let err = |got: f64, want: f64| (got - want).abs() / want;
            assert!(err(m.params_total_b, total) < 0.04, "{file}: total {} B, card {total} B", m.params_total_b);
            // Some cards (gpt-oss, DeepSeek-V2-Lite) leave the input
            // embedding, a table look-up, out of "active".
            let without_embedding = m.params_active_b - m.embedding_params() / 1e9;
            assert!(
                err(m.params_active_b, active) < 0.06 || err(without_embedding, active) < 0.06,
                "{file}: active {} B ({without_embedding} B without the input embedding), card {active} B",
                m.params_active_b
            );
        }
    }

    #[test]
    fn kv_layout_follows_the_attention_kind() {
        let ds = shipped("deepseek-v3.json");
        assert_eq!(ds.kv_elems_per_layer, Some(576));
        assert_eq!((ds.experts, ds.experts_per_token, ds.shared_experts), (256, 8, 1));
        let l = shipped("llama-3.1-8b.json");
        assert_eq!((l.kv_heads, l.head_dim, l.kv_elems_per_layer), (8, 128, None));
        let g = shipped("gemma-3-27b.json");
        assert_eq!((g.layers, g.sliding_window, g.sliding_layers), (62, 1024, 52));
        let o = shipped("gpt-oss-20b.json");
        assert_eq!((o.sliding_window, o.sliding_layers, o.head_dim), (128, 12, 64));
        let q = shipped("qwen2.5-7b.json");
        assert_eq!(q.sliding_layers, 0, "use_sliding_window false");
        let m = shipped("mistral-7b-v0.1.json");
        assert_eq!(m.sliding_layers, 32);
    }

    #[test]
    fn a_config_without_layers_says_what_is_missing() {
        let e = model_from_config("x", r#"{"hidden_size": 10}"#, "cfg.json").unwrap_err().to_string();
        assert!(e.contains("num_hidden_layers") && e.contains("cfg.json"), "{e}");
        assert!(model_from_config("x", "not json", "cfg.json").is_err());
    }
}
