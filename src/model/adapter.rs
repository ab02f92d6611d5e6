//! Trained adapters over a frozen base: LoRA pairs (or full replacement
//! weights) for the transformer's projections, plus how the model was trained
//! to encode (variant, head), in one f16 safetensors file. Merged into the
//! base weights at load, so inference costs nothing extra.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::linear::LowRank;
use super::{Llama, ModelError};
use crate::data::passages::PassageSpec;
use crate::model::encoding::{Head, QueryFeedback, QueryPrior, Variant};

/// What the adapter file holds besides tensors (its safetensors metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterMeta {
    /// The base model it was trained on (`ModelIdentity`).
    pub base_id: String,
    pub base_sha256: String,
    /// `lora` or `full`.
    pub kind: String,
    pub rank: usize,
    pub alpha: f32,
    /// How the trained model encodes.
    pub variant: Variant,
    pub head: Head,
    /// The document length (tokens) it was trained on.
    pub max_len: usize,
    /// Free-form training summary (phase, steps, data).
    #[serde(default)]
    pub trained: String,
    /// The query-side prior the model is searched with unless told
    /// otherwise (chosen on a development collection; see MODEL_CARD.md).
    #[serde(default, skip_serializing_if = "QueryPrior::is_none")]
    pub query_prior: QueryPrior,
    /// The pseudo-relevance feedback it is searched with unless told
    /// otherwise (chosen with the prior; see MODEL_CARD.md).
    #[serde(default, skip_serializing_if = "QueryFeedback::is_none")]
    pub query_feedback: QueryFeedback,
    /// The passage split its indexes are built with unless told otherwise
    /// (`index --passages`; chosen with the prior; see MODEL_CARD.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passages: Option<PassageSpec>,
    /// The identity (sha256) of the model whose documents this adapter
    /// encodes exactly: an adapter that only adds an inference-free query
    /// table to another keeps that model's identity, so its indexes serve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents_as: Option<String>,
}

const META_KEY: &str = "csplade.adapter";
/// The learned scalar shift C of the log-probability head (`[1]`).
pub const SHIFT: &str = "head.shift";
/// The learned per-vocabulary shifts of the log-probability head (`[vocab]`).
pub const TERM_SHIFT: &str = "head.term_shift";
/// The inference-free query side: a weight per vocabulary entry (`[vocab]`).
pub const QUERY_TABLE: &str = "query.term_weight";

/// Tensors by name: `layers.N.self_attn.q_proj.lora_a` / `.lora_b` (LoRA),
/// `layers.N.….weight` (full fine-tuning), `head.shift` (learned shift C),
/// `head.term_shift` (learned per-vocabulary shifts).
pub struct Adapter {
    pub meta: AdapterMeta,
    pub tensors: HashMap<String, Tensor>,
}

fn format_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl Adapter {
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parse an adapter file's bytes (`origin` names it in errors).
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Self, ModelError> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| format_err(origin, format!("not a safetensors adapter: {e}")))?;
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| {
                format_err(
                    origin,
                    format!("no {META_KEY} metadata: not a csplade adapter"),
                )
            })?;
        let meta: AdapterMeta = serde_json::from_str(meta)
            .map_err(|e| format_err(origin, format!("bad {META_KEY} metadata: {e}")))?;
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| format_err(origin, format!("reading tensors: {e}")))?
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?)))
            .collect::<candle_core::Result<HashMap<_, _>>>()?;
        Ok(Self { meta, tensors })
    }

    /// Write as f16 safetensors, atomically, inside an output csplade has
    /// claimed (a training run).
    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = self.to_bytes(path)?;
        Ok(crate::data::output::write_new(path, &bytes)?)
    }

    /// The f16 safetensors file's bytes (`path` names it in errors).
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>, ModelError> {
        let half: Vec<(String, Tensor)> = self
            .tensors
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.to_dtype(DType::F16)?.contiguous()?)))
            .collect::<candle_core::Result<_>>()?;
        let views: Vec<(String, Vec<u8>, Vec<usize>)> = half
            .iter()
            .map(|(k, t)| {
                let v: Vec<half::f16> = t.flatten_all()?.to_vec1()?;
                let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Ok((k.clone(), bytes, t.dims().to_vec()))
            })
            .collect::<candle_core::Result<_>>()?;
        let mut tv = Vec::new();
        for (k, bytes, shape) in &views {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), bytes)
                    .map_err(|e| format_err(path, e.to_string()))?;
            tv.push((k.clone(), view));
        }
        tv.sort_by(|a, b| a.0.cmp(&b.0));
        let meta =
            serde_json::to_string(&self.meta).map_err(|e| format_err(path, e.to_string()))?;
        let info = Some(HashMap::from([(META_KEY.to_string(), meta)]));
        safetensors::serialize(tv, info).map_err(|e| format_err(path, e.to_string()))
    }

    /// The inference-free query table, if the adapter has one: finite,
    /// non-negative, one weight per vocabulary entry.
    pub fn query_table(&self, vocab: usize, origin: &Path) -> Result<Option<Vec<f32>>, ModelError> {
        let Some(t) = self.tensors.get(QUERY_TABLE) else {
            return Ok(None);
        };
        if t.dims() != [vocab] {
            return Err(format_err(
                origin,
                format!(
                    "{QUERY_TABLE} has shape {:?}, the model's vocabulary {vocab}",
                    t.dims()
                ),
            ));
        }
        let v: Vec<f32> = t.to_vec1()?;
        if let Some(i) = v.iter().position(|w| !w.is_finite() || *w < 0.0) {
            return Err(format_err(
                origin,
                format!(
                    "{QUERY_TABLE}[{i}] is {}: query weights must be finite and ≥ 0",
                    v[i]
                ),
            ));
        }
        Ok(Some(v))
    }

    /// Merge into `llama`'s weights (before packing for inference).
    pub fn merge_into(&self, llama: &mut Llama, origin: &Path) -> Result<(), ModelError> {
        let scale = (self.meta.alpha / self.meta.rank.max(1) as f32) as f64;
        let dev = llama.device().clone();
        let mut used = 0;
        for (name, lin) in llama.linears_mut() {
            if let Some(w) = self.tensors.get(&format!("{name}.weight")) {
                if w.dims() != lin.weight.dims() {
                    return Err(format_err(
                        origin,
                        format!(
                            "{name}.weight has shape {:?}, the model {:?}",
                            w.dims(),
                            lin.weight.dims()
                        ),
                    ));
                }
                lin.weight = w.to_device(&dev)?;
                used += 1;
            }
            let a = self.tensors.get(&format!("{name}.lora_a"));
            let b = self.tensors.get(&format!("{name}.lora_b"));
            if let (Some(a), Some(b)) = (a, b) {
                let (out, inp) = lin.weight.dims2()?;
                if a.dims() != [self.meta.rank, inp] || b.dims() != [out, self.meta.rank] {
                    return Err(format_err(origin, format!("{name}: LoRA shapes {:?} × {:?} do not fit a {out}×{inp} weight of rank {}", b.dims(), a.dims(), self.meta.rank)));
                }
                lin.low_rank = Some(LowRank {
                    a: a.to_device(&dev)?,
                    b: b.to_device(&dev)?,
                    scale,
                });
                lin.merge_low_rank()?;
                used += 2;
            }
        }
        if let Some(b) = self.tensors.get(TERM_SHIFT) {
            let vocab = llama.config.vocab_size;
            if b.dims() != [vocab] {
                return Err(format_err(
                    origin,
                    format!(
                        "{TERM_SHIFT} has shape {:?}, the model's vocabulary {vocab}",
                        b.dims()
                    ),
                ));
            }
            llama.term_shift = Some(b.to_device(llama.device())?);
        }
        let expected = self
            .tensors
            .keys()
            .filter(|k| !k.starts_with("head.") && k.as_str() != QUERY_TABLE)
            .count();
        if used != expected {
            return Err(format_err(
                origin,
                format!(
                    "{} of the adapter's {expected} tensors match no projection of this model",
                    expected - used
                ),
            ));
        }
        Ok(())
    }
}

/// Deterministic uniform numbers for initialisation (SplitMix64).
pub fn uniform(seed: u64, n: usize, bound: f32) -> Vec<f32> {
    let mut rng = crate::rng::SplitMix::new(seed);
    (0..n).map(|_| rng.uniform() * bound).collect()
}

/// Attach trainable LoRA pairs to the projections whose name ends with one of
/// `targets` (`q_proj`, `down_proj`, …): A uniform in ±1/√in, B zero, so
/// training starts from the base model. Returns the variables by name.
pub fn attach_low_rank(
    llama: &mut Llama,
    rank: usize,
    alpha: f32,
    targets: &[String],
    seed: u64,
) -> candle_core::Result<Vec<(String, Var)>> {
    let scale = (alpha / rank.max(1) as f32) as f64;
    let mut vars = Vec::new();
    for (i, (name, lin)) in llama.linears_mut().into_iter().enumerate() {
        if !targets.iter().any(|t| name.ends_with(t.as_str())) {
            continue;
        }
        let (out, inp) = lin.weight.dims2()?;
        let dev = lin.weight.device().clone();
        let init = uniform(
            seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D),
            rank * inp,
            1.0 / (inp as f32).sqrt(),
        );
        let a = Var::from_tensor(&Tensor::from_vec(init, (rank, inp), &dev)?)?;
        let b = Var::from_tensor(&Tensor::zeros((out, rank), DType::F32, &dev)?)?;
        lin.low_rank = Some(LowRank {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale,
        });
        vars.push((format!("{name}.lora_a"), a));
        vars.push((format!("{name}.lora_b"), b));
    }
    Ok(vars)
}

/// Make the targeted projections' weights trainable (full fine-tuning).
pub fn attach_full(
    llama: &mut Llama,
    targets: &[String],
) -> candle_core::Result<Vec<(String, Var)>> {
    let mut vars = Vec::new();
    for (name, lin) in llama.linears_mut() {
        if !targets.iter().any(|t| name.ends_with(t.as_str())) {
            continue;
        }
        let v = Var::from_tensor(&lin.weight)?;
        lin.weight = v.as_tensor().clone();
        vars.push((format!("{name}.weight"), v));
    }
    Ok(vars)
}
