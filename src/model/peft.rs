//! LoRA adapters in Hugging Face `peft`'s layout: a directory holding
//! `adapter_config.json` and `adapter_model.safetensors` (tensors named
//! `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` `[r, in]`
//! and `…lora_B.weight` `[out, r]`). Read as csplade adapters (merged at
//! load like csplade's own) and written from them.
//!
//! PEFT adapters address Hugging Face's weight layout. A GGUF base keeps the
//! Q/K projection rows permuted for interleaved RoPE, so the B matrices of
//! `q_proj` / `k_proj` are permuted the same way when read onto such a base,
//! and back when written.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::adapter::{Adapter, AdapterMeta};
use super::gguf::{permute_for_interleaved, unpermute_from_interleaved};
use super::llama::{Config, RopeStyle};
use super::ModelError;
use crate::model::encoding::{Head, Variant};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// How a csplade adapter encodes, which PEFT has no place for.
pub const ENCODING_FILE: &str = "csplade_encoding.json";
const PREFIX: &str = "base_model.model.model.";

#[derive(Debug, Serialize, Deserialize)]
struct PeftConfig {
    #[serde(default)]
    peft_type: Option<String>,
    r: usize,
    lora_alpha: f32,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    target_modules: serde_json::Value,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    bias: Option<String>,
}

fn err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Whether `dir` looks like a PEFT adapter directory.
pub fn is_peft_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file() && dir.join(WEIGHTS_FILE).is_file()
}

/// The head count whose rows a projection's B matrix permutes, if any.
fn permuted_heads(name: &str, cfg: &Config) -> Option<usize> {
    if cfg.rope_style != RopeStyle::Interleaved {
        return None;
    }
    if name.ends_with("self_attn.q_proj") {
        Some(cfg.num_attention_heads)
    } else if name.ends_with("self_attn.k_proj") {
        Some(cfg.num_key_value_heads)
    } else {
        None
    }
}

/// Read the PEFT adapter in `dir` for a base with config `cfg`; returns the
/// adapter and the bytes that identify it.
pub fn read(dir: &Path, cfg: &Config) -> Result<(Adapter, Vec<u8>), ModelError> {
    let (pc, text) = read_config(dir)?;
    let w_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&w_path).map_err(|source| ModelError::Io {
        path: w_path.clone(),
        source,
    })?;
    let tensors = lora_tensors(&w_path, &bytes, cfg)?;
    // rsLoRA scales by alpha/√r; csplade's adapters by alpha/r.
    let alpha = if pc.use_rslora {
        pc.lora_alpha * (pc.r as f32).sqrt()
    } else {
        pc.lora_alpha
    };
    let meta = AdapterMeta {
        base_id: pc.base_model_name_or_path.unwrap_or_default(),
        base_sha256: String::new(),
        kind: "lora".into(),
        rank: pc.r,
        alpha,
        // PEFT records no encoding: csplade's defaults for an untrained head.
        variant: Variant::Causal,
        head: Head::LogProb { shift: 6.0 },
        max_len: 256,
        trained: format!("PEFT LoRA adapter from {}", dir.display()),
        query_prior: Default::default(),
        query_feedback: Default::default(),
        passages: None,
        documents_as: None,
    };
    let mut a = Adapter { meta, tensors };
    let mut id = text;
    id.extend_from_slice(&bytes);
    id.extend(read_encoding(dir, &mut a)?);
    Ok((a, id))
}

/// The adapter's `adapter_config.json`, refused unless it describes a plain
/// LoRA adapter csplade can apply; with the file's bytes.
fn read_config(dir: &Path) -> Result<(PeftConfig, Vec<u8>), ModelError> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read(&cfg_path).map_err(|source| ModelError::Io {
        path: cfg_path.clone(),
        source,
    })?;
    let pc: PeftConfig = serde_json::from_slice(&text)
        .map_err(|e| err(&cfg_path, format!("not a PEFT adapter config: {e}")))?;
    let refusal = if pc.peft_type.as_deref().is_some_and(|t| t != "LORA") {
        Some(format!(
            "peft_type {:?}: only LORA adapters are read",
            pc.peft_type
        ))
    } else if pc.use_dora || pc.fan_in_fan_out {
        Some("DoRA and fan_in_fan_out adapters are not supported".into())
    } else if pc.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
        Some("modules_to_save (fully trained modules) are not supported".into())
    } else if pc.bias.as_deref().is_some_and(|b| b != "none") {
        Some("LoRA biases are not supported (bias must be \"none\")".into())
    } else if pc.r == 0 {
        Some("r = 0".into())
    } else {
        None
    };
    match refusal {
        Some(why) => Err(err(&cfg_path, why)),
        None => Ok((pc, text)),
    }
}

/// The LoRA A/B weights of `adapter_model.safetensors`, under csplade's
/// module names, B rows permuted where the base interleaves its heads.
fn lora_tensors(
    w_path: &Path,
    bytes: &[u8],
    cfg: &Config,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let raw = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| err(w_path, format!("reading tensors: {e}")))?;
    let mut tensors = HashMap::new();
    for (name, t) in raw {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            return Err(err(
                w_path,
                format!("unexpected tensor {name} (not under {PREFIX})"),
            ));
        };
        let rest = rest.replace(".default.", ".");
        let (module, leaf) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
            (m, "lora_a")
        } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
            (m, "lora_b")
        } else {
            return Err(err(
                w_path,
                format!("unexpected tensor {name} (only LoRA A/B weights are read)"),
            ));
        };
        let mut t = t.to_dtype(DType::F32)?;
        if leaf == "lora_b" {
            if let Some(heads) = permuted_heads(module, cfg) {
                t = permute_for_interleaved(&t, heads)?;
            }
        }
        tensors.insert(format!("{module}.{leaf}"), t);
    }
    Ok(tensors)
}

/// What csplade records beside a PEFT adapter it exported (variant, head,
/// length, query prior, per-term shifts), applied to `a`; returns the
/// file's bytes (part of the adapter's identity), empty when there is none.
fn read_encoding(dir: &Path, a: &mut Adapter) -> Result<Vec<u8>, ModelError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Encoding {
        variant: Variant,
        head: Head,
        max_len: usize,
        trained: String,
        #[serde(default)]
        query_prior: Option<crate::model::encoding::QueryPrior>,
        #[serde(default)]
        query_feedback: Option<crate::model::encoding::QueryFeedback>,
        #[serde(default)]
        passages: Option<crate::data::passages::PassageSpec>,
        #[serde(default)]
        term_shift: Option<Vec<f32>>,
    }
    let path = dir.join(ENCODING_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ModelError::Io { path, source }),
    };
    let e: Encoding = serde_json::from_slice(&bytes)
        .map_err(|e| err(&path, format!("not csplade's encoding record: {e}")))?;
    a.meta.variant = e.variant;
    a.meta.head = e.head;
    a.meta.max_len = e.max_len;
    a.meta.trained = e.trained;
    if let Some(p) = e.query_prior {
        a.meta.query_prior = p;
    }
    if let Some(f) = e.query_feedback {
        a.meta.query_feedback = f;
    }
    if e.passages.is_some() {
        a.meta.passages = e.passages;
    }
    if let Some(shift) = e.term_shift {
        if shift.iter().any(|x| !x.is_finite()) {
            return Err(err(&path, "term_shift holds a value that is not finite"));
        }
        let n = shift.len();
        let t = Tensor::from_vec(shift, n, &Device::Cpu)?;
        a.tensors.insert(super::adapter::TERM_SHIFT.to_string(), t);
    }
    Ok(bytes)
}

/// Write csplade adapter `a` (LoRA, trained on a base with config `cfg`) as
/// a PEFT adapter directory at `out`, atomically (built beside it, renamed).
/// How it encodes (variant, head, per-term shifts) has no place in PEFT's
/// format and goes to `csplade_encoding.json` beside it.
pub fn write(a: &Adapter, cfg: &Config, base_name: &str, out: &Path) -> Result<(), ModelError> {
    if a.meta.kind != "lora" {
        return Err(err(out, "only LoRA adapters have a PEFT layout"));
    }
    use crate::data::output::{self, PEFT_ADAPTER};
    let _lock = output::lock::acquire(out, "adapter export")?;
    output::check(out, &PEFT_ADAPTER, &[])?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut modules = std::collections::BTreeSet::new();
    for (name, t) in &a.tensors {
        let (module, leaf) = if let Some(m) = name.strip_suffix(".lora_a") {
            (m, "lora_A")
        } else if let Some(m) = name.strip_suffix(".lora_b") {
            (m, "lora_B")
        } else {
            continue;
        };
        let mut t = t.to_dtype(DType::F32)?;
        if leaf == "lora_B" {
            if let Some(heads) = permuted_heads(module, cfg) {
                t = unpermute_from_interleaved(&t, heads)?;
            }
        }
        if let Some(short) = module.rsplit('.').next() {
            modules.insert(short.to_string());
        }
        tensors.push((format!("{PREFIX}{module}.{leaf}.weight"), t.contiguous()?));
    }
    tensors.sort_by(|x, y| x.0.cmp(&y.0));
    let config = PeftConfig {
        peft_type: Some("LORA".into()),
        r: a.meta.rank,
        lora_alpha: a.meta.alpha,
        use_rslora: false,
        use_dora: false,
        fan_in_fan_out: false,
        target_modules: serde_json::json!(modules.into_iter().collect::<Vec<_>>()),
        modules_to_save: None,
        base_model_name_or_path: Some(base_name.to_string()),
        task_type: Some("CAUSAL_LM".into()),
        bias: Some("none".into()),
    };
    let mut stage = out.as_os_str().to_owned();
    stage.push(".partial");
    let stage = std::path::PathBuf::from(stage);
    output::fresh_stage(&stage, &PEFT_ADAPTER, &[])?;
    let named: HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&named, stage.join(WEIGHTS_FILE))?;
    let json = serde_json::to_string_pretty(&config).map_err(|e| err(out, e.to_string()))?;
    output::write_new(&stage.join(CONFIG_FILE), json.as_bytes())?;
    let mut encoding = serde_json::json!({"variant": a.meta.variant, "head": a.meta.head,
        "max_len": a.meta.max_len, "trained": a.meta.trained, "query_prior": a.meta.query_prior});
    if !a.meta.query_feedback.is_none() {
        encoding["query_feedback"] = serde_json::json!(a.meta.query_feedback);
    }
    if let Some(p) = a.meta.passages {
        encoding["passages"] = serde_json::json!(p);
    }
    if let Some(b) = a.tensors.get(super::adapter::TERM_SHIFT) {
        encoding["term_shift"] = serde_json::json!(b.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    }
    output::write_new(&stage.join(ENCODING_FILE), encoding.to_string().as_bytes())?;
    Ok(output::publish(&stage, out)?)
}
