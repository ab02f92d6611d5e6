//! GGUF loader: header, metadata and tensors (Q4_1, Q8_0, Q4_0, F16, F32 …
//! dequantized to f32), mapped to the HF tensor names the backbone expects.
//!
//! llama.cpp's converter stores the rows of `attn_q` / `attn_k` permuted for
//! interleaved (adjacent-pair) RoPE, so a GGUF model is paired with
//! [`RopeStyle::Interleaved`]; [`permute_for_interleaved`] is that permutation,
//! used when writing GGUF files from HF-layout weights.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

use super::llama::{Config, RopeStyle};
use super::ModelError;

/// An opened GGUF file: parsed header plus a reader for tensor data.
pub struct GgufFile {
    pub content: Content,
    reader: BufReader<File>,
    path: std::path::PathBuf,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            msg: format!("not a readable GGUF file: {e}"),
        })?;
        Ok(Self {
            content,
            reader,
            path: path.to_path_buf(),
        })
    }

    /// A tensor's declared shape must fit in the file: checked before
    /// anything is allocated for it.
    fn check_extent(
        &self,
        name: &str,
        info: &candle_core::quantized::gguf_file::TensorInfo,
    ) -> Result<(), ModelError> {
        let dims = info.shape.dims();
        let elems = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .filter(|&n| n > 0);
        let block = info.ggml_dtype.block_size() as u64;
        let bytes = elems
            .filter(|n| n % block == 0)
            .and_then(|n| (n / block).checked_mul(info.ggml_dtype.type_size() as u64));
        let file_len = self
            .reader
            .get_ref()
            .metadata()
            .map(|m| m.len())
            .unwrap_or(0);
        let end = bytes.and_then(|b| {
            (self.content.tensor_data_offset)
                .checked_add(info.offset)
                .and_then(|s| s.checked_add(b))
        });
        match end {
            Some(end) if end <= file_len => Ok(()),
            _ => Err(self.err(format!(
                "tensor {name}: shape {dims:?} of {:?} at offset {} does not fit in the file ({file_len} bytes)",
                info.ggml_dtype, info.offset
            ))),
        }
    }

    fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::Format {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn meta_str(&self, key: &str) -> Result<&str, ModelError> {
        match self.meta(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.err(format!("metadata {key} is not a string"))),
            None => Err(self.err(format!("metadata {key} is missing"))),
        }
    }

    pub fn meta_usize(&self, key: &str) -> Result<usize, ModelError> {
        let v = self
            .meta(key)
            .ok_or_else(|| self.err(format!("metadata {key} is missing")))?;
        let n = match v {
            Value::U8(x) => *x as u64,
            Value::U16(x) => *x as u64,
            Value::U32(x) => *x as u64,
            Value::U64(x) => *x,
            Value::I8(x) if *x >= 0 => *x as u64,
            Value::I16(x) if *x >= 0 => *x as u64,
            Value::I32(x) if *x >= 0 => *x as u64,
            Value::I64(x) if *x >= 0 => *x as u64,
            _ => return Err(self.err(format!("metadata {key} is not a non-negative integer"))),
        };
        Ok(n as usize)
    }

    pub fn meta_f32(&self, key: &str) -> Result<f32, ModelError> {
        match self.meta(key) {
            Some(Value::F32(x)) => Ok(*x),
            Some(Value::F64(x)) => Ok(*x as f32),
            Some(_) => Err(self.err(format!("metadata {key} is not a float"))),
            None => Err(self.err(format!("metadata {key} is missing"))),
        }
    }

    /// The Llama-family configuration stored in the metadata.
    pub fn llama_config(&self) -> Result<Config, ModelError> {
        let arch = self.meta_str("general.architecture")?.to_string();
        if arch != "llama" {
            return Err(ModelError::Unsupported(format!(
                "{}: architecture {arch:?} (csplade reads llama-architecture GGUF files)",
                self.path.display()
            )));
        }
        let p = |k: &str| format!("llama.{k}");
        let hidden = self.meta_usize(&p("embedding_length"))?;
        let heads = self.meta_usize(&p("attention.head_count"))?;
        let kv_heads = self
            .meta_usize(&p("attention.head_count_kv"))
            .unwrap_or(heads);
        let vocab = match self.meta("tokenizer.ggml.tokens") {
            Some(Value::Array(a)) => a.len(),
            _ => self.meta_usize(&p("vocab_size"))?,
        };
        let tied = !self.content.tensor_infos.contains_key("output.weight");
        let config = Config {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: self.meta_usize(&p("feed_forward_length"))?,
            num_hidden_layers: self.meta_usize(&p("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            rms_norm_eps: self.meta_f32(&p("attention.layer_norm_rms_epsilon"))? as f64,
            rope_theta: self.meta_f32(&p("rope.freq_base")).unwrap_or(10_000.0) as f64,
            max_position_embeddings: self.meta_usize(&p("context_length")).unwrap_or(2048),
            tie_word_embeddings: tied,
            attention_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            rope_style: RopeStyle::Interleaved,
        };
        config.check().map_err(|msg| ModelError::Format {
            path: self.path.clone(),
            msg,
        })?;
        Ok(config)
    }

    /// Metadata entries under a prefix (`tokenizer.`), for copying into a new file.
    pub fn metadata_with_prefix(&self, prefix: &str) -> Vec<(String, Value)> {
        let mut v: Vec<(String, Value)> = self
            .content
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every tensor, dequantized to f32 and renamed to HF names
    /// (`model.layers.0.self_attn.q_proj.weight`, …).
    pub fn hf_tensors(&mut self, device: &Device) -> Result<HashMap<String, Tensor>, ModelError> {
        let mut names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        names.sort();
        let mut out = HashMap::with_capacity(names.len());
        for name in names {
            let info = &self.content.tensor_infos[&name];
            check_supported(info.ggml_dtype)
                .map_err(|m| self.err(format!("tensor {name}: {m}")))?;
            self.check_extent(&name, info)?;
            // Dequantized on the CPU, so every device starts from the same f32 values.
            let q = info
                .read(
                    &mut self.reader,
                    self.content.tensor_data_offset,
                    &Device::Cpu,
                )
                .map_err(|e| self.err(format!("tensor {name}: {e}")))?;
            let t = q
                .dequantize(&Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.to_device(device))
                .map_err(|e| self.err(format!("tensor {name}: {e}")))?;
            let hf = hf_name(&name).ok_or_else(|| self.err(format!("unexpected tensor {name}")))?;
            out.insert(hf, t);
        }
        Ok(out)
    }
}

fn check_supported(dt: GgmlDType) -> Result<(), String> {
    match dt {
        GgmlDType::F32
        | GgmlDType::F16
        | GgmlDType::BF16
        | GgmlDType::Q4_0
        | GgmlDType::Q4_1
        | GgmlDType::Q8_0
        | GgmlDType::Q4K
        | GgmlDType::Q6K
        | GgmlDType::Q8K => Ok(()),
        other => Err(format!("unsupported tensor type {other:?}")),
    }
}

/// Whole-model tensors: (GGUF name, HF name).
/// Tensors and metadata csplade adds to a GGUF of an adapted model (a
/// variant written by `csplade quantize --model default`): the trained
/// head's per-term shifts, the inference-free query table, and the adapter's
/// metadata (how the model encodes) as JSON. Named alike in both layouts.
pub const CSPLADE_PREFIX: &str = "csplade.";
pub const TERM_SHIFT_TENSOR: &str = "csplade.term_shift";
pub const QUERY_TABLE_TENSOR: &str = "csplade.query_table";
pub const ADAPTER_META_KEY: &str = "csplade.adapter";
/// Those tensors' names in the GGUF and in an adapter file.
pub const ADAPTER_TENSORS: [(&str, &str); 2] = [
    (TERM_SHIFT_TENSOR, super::adapter::TERM_SHIFT),
    (QUERY_TABLE_TENSOR, super::adapter::QUERY_TABLE),
];

const GLOBAL_NAMES: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// Per-layer modules: (GGUF module, HF module).
const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// GGUF tensor name → HF (transformers) tensor name.
pub fn hf_name(gguf: &str) -> Option<String> {
    if gguf.starts_with(CSPLADE_PREFIX) {
        return Some(gguf.to_string());
    }
    if let Some((_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == gguf) {
        return Some(hf.to_string());
    }
    let (layer, leaf) = gguf.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = leaf.rsplit_once('.')?;
    let (_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == module)?;
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// HF tensor name → GGUF tensor name (inverse of [`hf_name`]).
pub fn gguf_name(hf: &str) -> Option<String> {
    if hf.starts_with(CSPLADE_PREFIX) {
        return Some(hf.to_string());
    }
    if let Some((g, _)) = GLOBAL_NAMES.iter().find(|(_, h)| *h == hf) {
        return Some(g.to_string());
    }
    let (layer, leaf) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = leaf.rsplit_once('.')?;
    let (g, _) = LAYER_NAMES.iter().find(|(_, h)| *h == module)?;
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// llama.cpp's permutation of Q/K projection rows (HF half-rotation layout →
/// interleaved layout): per head, rows `[0..d/2, d/2..d]` become pairs.
/// Works on a weight `[heads * head_dim, in]` or a bias `[heads * head_dim]`.
pub fn permute_for_interleaved(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let rest: Vec<usize> = dims[1..].to_vec();
    let mut shape = vec![heads, 2, rows / heads / 2];
    shape.extend_from_slice(&rest);
    w.reshape(shape)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// Inverse of [`permute_for_interleaved`].
pub fn unpermute_from_interleaved(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let rest: Vec<usize> = dims[1..].to_vec();
    let mut shape = vec![heads, rows / heads / 2, 2];
    shape.extend_from_slice(&rest);
    w.reshape(shape)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// Write a llama-architecture GGUF file atomically (temp file, then rename).
/// `tensors` carry HF names (renamed to GGUF names here) and must already be
/// in GGUF layout — Q/K rows permuted for interleaved RoPE, see
/// [`to_gguf_layout`] — as llama.cpp's converter writes them. `metadata`
/// must hold the tokenizer; architecture keys are written from `cfg`.
pub fn write_llama(
    path: &Path,
    cfg: &Config,
    metadata: &[(String, Value)],
    tensors: &[(String, candle_core::quantized::QTensor)],
    inputs: &[&Path],
) -> Result<(), ModelError> {
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        (
            "llama.embedding_length".into(),
            Value::U32(cfg.hidden_size as u32),
        ),
        (
            "llama.feed_forward_length".into(),
            Value::U32(cfg.intermediate_size as u32),
        ),
        (
            "llama.block_count".into(),
            Value::U32(cfg.num_hidden_layers as u32),
        ),
        (
            "llama.attention.head_count".into(),
            Value::U32(cfg.num_attention_heads as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(cfg.num_key_value_heads as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        (
            "llama.rope.freq_base".into(),
            Value::F32(cfg.rope_theta as f32),
        ),
        (
            "llama.context_length".into(),
            Value::U32(cfg.max_position_embeddings as u32),
        ),
        ("llama.vocab_size".into(), Value::U32(cfg.vocab_size as u32)),
    ];
    let ours: std::collections::HashSet<String> = meta.iter().map(|m| m.0.clone()).collect();
    meta.extend(metadata.iter().filter(|m| !ours.contains(&m.0)).cloned());
    let mut renamed = Vec::with_capacity(tensors.len());
    for (hf, q) in tensors {
        let g = gguf_name(hf)
            .ok_or_else(|| ModelError::Unsupported(format!("tensor {hf} has no GGUF name")))?;
        renamed.push((g, q));
    }
    let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t: Vec<(&str, &candle_core::quantized::QTensor)> =
        renamed.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let out = crate::data::output::GGUF;
    crate::data::output::write_file(path, &out, inputs, "quantize", |f| {
        candle_core::quantized::gguf_file::write(f, &m, &t).map_err(std::io::Error::other)
    })?;
    Ok(())
}

/// Permute an HF-layout Q or K projection (weight or bias) into GGUF layout.
pub fn to_gguf_layout(hf: &str, t: &Tensor, cfg: &Config) -> candle_core::Result<Tensor> {
    if hf.ends_with("self_attn.q_proj.weight") || hf.ends_with("self_attn.q_proj.bias") {
        permute_for_interleaved(t, cfg.num_attention_heads)
    } else if hf.ends_with("self_attn.k_proj.weight") || hf.ends_with("self_attn.k_proj.bias") {
        permute_for_interleaved(t, cfg.num_key_value_heads)
    } else {
        Ok(t.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for g in [
            "token_embd.weight",
            "output_norm.weight",
            "blk.3.attn_q.weight",
            "blk.12.ffn_down.weight",
            "blk.0.attn_norm.weight",
        ] {
            let hf = hf_name(g).unwrap();
            assert_eq!(gguf_name(&hf).unwrap(), g);
        }
        assert!(hf_name("blk.x.attn_q.weight").is_none());
        assert!(hf_name("rope_freqs.weight").is_none());
    }

    #[test]
    fn permutation_inverts() {
        let d = Device::Cpu;
        let w = Tensor::arange(0f32, 8.0 * 3.0, &d)
            .unwrap()
            .reshape((8, 3))
            .unwrap();
        let p = permute_for_interleaved(&w, 2).unwrap();
        // head 0 rows [0,1,2,3] → [0,2,1,3]
        let rows: Vec<Vec<f32>> = p.to_vec2().unwrap();
        assert_eq!(rows[1], vec![6.0, 7.0, 8.0]);
        let back = unpermute_from_interleaved(&p, 2).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }
}
