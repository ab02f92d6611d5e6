//! Tiny random-weight Llama models written to disk in both formats (GGUF and
//! an HF directory), so fast tests exercise the real loaders, tokenizer and
//! encoder without downloading anything.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use super::gguf::{to_gguf_layout, write_llama};
use super::llama::{Config, RopeStyle};
use super::{ModelError, TextTokenizer};

pub use crate::rng::SplitMix;

/// The tiny configuration: 2 layers, width 32, 4 query / 2 KV heads.
pub fn tiny_config(vocab_size: usize) -> Config {
    Config {
        vocab_size,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        attention_bias: false,
        rope_style: RopeStyle::HalfRotation,
    }
}

/// A byte-level BPE vocabulary: the 256 byte symbols, a few merges and two
/// control tokens. Returns (tokens, merges, token types).
pub fn tiny_vocab() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort();
    let mut tokens: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    let merges = ["t h", "th e", "Ġ th", "Ġth e", "i n", "e r", "Ġ a", "o n"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut types = vec![1; tokens.len()];
    for s in ["<|endoftext|>", "<|im_start|>"] {
        tokens.push(s.into());
        types.push(3);
    }
    (
        tokens,
        merges.iter().map(|s| s.to_string()).collect(),
        types,
    )
}

/// Random HF-layout weights for `cfg`.
pub fn random_weights(cfg: &Config, seed: u64) -> Result<HashMap<String, Tensor>, ModelError> {
    let dev = Device::Cpu;
    let mut rng = SplitMix::new(seed);
    let mut mk = |shape: &[usize], scale: f32, offset: f32| -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| offset + scale * rng.uniform()).collect();
        Tensor::from_vec(v, shape, &dev)
    };
    let (h, i, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let kv = cfg.num_key_value_heads * d;
    let mut w = HashMap::new();
    w.insert(
        "model.embed_tokens.weight".into(),
        mk(&[cfg.vocab_size, h], 1.0, 0.0)?,
    );
    w.insert("model.norm.weight".into(), mk(&[h], 0.1, 1.0)?);
    let s_h = 1.0 / (h as f32).sqrt();
    let s_i = 1.0 / (i as f32).sqrt();
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        w.insert(format!("{p}.input_layernorm.weight"), mk(&[h], 0.1, 1.0)?);
        w.insert(
            format!("{p}.post_attention_layernorm.weight"),
            mk(&[h], 0.1, 1.0)?,
        );
        w.insert(
            format!("{p}.self_attn.q_proj.weight"),
            mk(&[cfg.num_attention_heads * d, h], s_h, 0.0)?,
        );
        w.insert(
            format!("{p}.self_attn.k_proj.weight"),
            mk(&[kv, h], s_h, 0.0)?,
        );
        w.insert(
            format!("{p}.self_attn.v_proj.weight"),
            mk(&[kv, h], s_h, 0.0)?,
        );
        w.insert(
            format!("{p}.self_attn.o_proj.weight"),
            mk(&[h, cfg.num_attention_heads * d], s_h, 0.0)?,
        );
        w.insert(format!("{p}.mlp.gate_proj.weight"), mk(&[i, h], s_h, 0.0)?);
        w.insert(format!("{p}.mlp.up_proj.weight"), mk(&[i, h], s_h, 0.0)?);
        w.insert(format!("{p}.mlp.down_proj.weight"), mk(&[h, i], s_i, 0.0)?);
    }
    Ok(w)
}

/// Tokenizer metadata entries for a GGUF file.
pub fn tokenizer_metadata(
    tokens: &[String],
    merges: &[String],
    types: &[i32],
) -> Vec<(String, Value)> {
    vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|t| Value::I32(*t)).collect()),
        ),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ]
}

/// Write a tiny random model as `<dir>/tiny.gguf` (Q/K permuted, interleaved
/// RoPE) and as an HF directory `<dir>/hf` (half-rotation RoPE) holding the
/// same weights. Returns the config (HF rope style).
pub fn write_tiny_model(dir: &Path, seed: u64) -> Result<Config, ModelError> {
    let (tokens, merges, types) = tiny_vocab();
    let cfg = tiny_config(tokens.len());
    let weights = random_weights(&cfg, seed)?;
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let mut q = Vec::new();
    for n in &names {
        let t = to_gguf_layout(n, &weights[*n], &cfg)?;
        q.push((
            (*n).clone(),
            QTensor::quantize(&t, candle_core::quantized::GgmlDType::F32)?,
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| ModelError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let gguf = dir.join("tiny.gguf");
    write_llama(
        &gguf,
        &cfg,
        &tokenizer_metadata(&tokens, &merges, &types),
        &q,
        &[],
    )?;
    let hf = dir.join("hf");
    std::fs::create_dir_all(&hf).map_err(|e| ModelError::Io {
        path: hf.clone(),
        source: e,
    })?;
    let g = super::gguf::GgufFile::open(&gguf)?;
    let tk = TextTokenizer::from_gguf(&g)?;
    tk.inner()
        .save(hf.join("tokenizer.json"), false)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    candle_core::safetensors::save(&weights, hf.join("model.safetensors"))?;
    let config_json = serde_json::json!({
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": true,
    });
    std::fs::write(hf.join("config.json"), config_json.to_string()).map_err(|e| {
        ModelError::Io {
            path: hf.clone(),
            source: e,
        }
    })?;
    Ok(cfg)
}
