//! HF model directory loader: `config.json` + `*.safetensors` +
//! `tokenizer.json` for Llama / Mistral / Qwen2 style checkpoints. HF weights
//! rotate the two halves of each head, so they pair with
//! [`RopeStyle::HalfRotation`].

use std::path::Path;

use candle_core::{DType, Device};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::llama::{Config, Llama, RopeStyle};
use super::{fetch, LoadedModel, ModelError, ModelIdentity, TextTokenizer};

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default = "default_ctx")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
}

fn default_theta() -> f64 {
    10_000.0
}
fn default_ctx() -> usize {
    2048
}

/// Parse `config.json` text into a backbone config.
pub fn parse_config(text: &str, origin: &Path) -> Result<Config, ModelError> {
    let c: HfConfig = serde_json::from_str(text).map_err(|e| ModelError::Format {
        path: origin.to_path_buf(),
        msg: format!("line {}: {e}", e.line()),
    })?;
    let kind = c.model_type.clone().unwrap_or_else(|| "llama".into());
    let default_bias = match kind.as_str() {
        "llama" | "mistral" => false,
        "qwen2" => true,
        other => {
            return Err(ModelError::Unsupported(format!(
                "{}: model_type {other:?} (csplade reads llama, mistral and qwen2)",
                origin.display()
            )))
        }
    };
    let config = Config {
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        num_hidden_layers: c.num_hidden_layers,
        num_attention_heads: c.num_attention_heads,
        num_key_value_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
        rms_norm_eps: c.rms_norm_eps,
        rope_theta: c.rope_theta,
        max_position_embeddings: c.max_position_embeddings,
        tie_word_embeddings: c.tie_word_embeddings,
        attention_bias: c.attention_bias.unwrap_or(default_bias),
        rope_style: RopeStyle::HalfRotation,
    };
    config.check().map_err(|msg| ModelError::Format {
        path: origin.to_path_buf(),
        msg,
    })?;
    Ok(config)
}

pub fn load(dir: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::Io {
        path: cfg_path.clone(),
        source: e,
    })?;
    let config = parse_config(&text, &cfg_path)?;
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let mut weights: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    weights.sort();
    if weights.is_empty() {
        return Err(ModelError::Format {
            path: dir.to_path_buf(),
            msg: "no *.safetensors weights in the model directory".into(),
        });
    }
    // SAFETY: the files are memory-mapped read-only; csplade never writes them while loaded.
    let vb =
        unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&weights, DType::F32, device) }
            .map_err(|e| ModelError::Format {
                path: dir.to_path_buf(),
                msg: format!("reading safetensors: {e}"),
            })?;
    let llama = Llama::load(vb, &config).map_err(|e| ModelError::Format {
        path: dir.to_path_buf(),
        msg: format!("weights do not fit config.json: {e}"),
    })?;
    let mut h = Sha256::new();
    for w in &weights {
        h.update(fetch::sha256_cached(w)?.as_bytes());
    }
    let id = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "hf-model".into());
    Ok(LoadedModel {
        llama,
        tokenizer,
        identity: ModelIdentity {
            id,
            sha256: format!("{:x}", h.finalize()),
        },
        adapter: None,
        query_table: None,
    })
}
