//! Masked-LM backbones of SPLADE-style encoders: BERT and DistilBERT read
//! from a Hugging Face directory (`config.json`, safetensors weights), on
//! csplade's [`Linear`] so that f32 / f16 / q8_0 / q4_0 variants share one
//! forward as the Llama path's do. Post-norm transformer layers; the MLM
//! head's decoder is tied to the word embeddings when the checkpoint leaves
//! it out (transformers' `save_pretrained` does), with the bias
//! `cls.predictions.bias` (BERT) or `vocab_projector.bias` (DistilBERT).

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use serde::Deserialize;

use super::linear::{with_f32_slice, Linear, Weights};
use super::precision::Precision;
use super::ModelError;

/// Which masked LM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Bert,
    DistilBert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// The exact (erf) GELU, transformers' `gelu`.
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

impl Act {
    fn parse(s: &str, origin: &Path) -> std::result::Result<Self, ModelError> {
        match s {
            "gelu" => Ok(Act::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Act::GeluTanh),
            "relu" => Ok(Act::Relu),
            other => Err(ModelError::Unsupported(format!(
                "{}: activation {other:?} (csplade reads gelu, gelu_new, gelu_pytorch_tanh, relu)",
                origin.display()
            ))),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Gelu => super::activation::gelu_erf(x),
            Act::GeluTanh => x.gelu(),
            Act::Relu => x.relu(),
        }
    }
}

/// The fields of BERT's and DistilBERT's `config.json` csplade reads.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    // BERT names …
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    hidden_act: Option<String>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    // … and DistilBERT's.
    dim: Option<usize>,
    n_layers: Option<usize>,
    n_heads: Option<usize>,
    hidden_dim: Option<usize>,
    activation: Option<String>,
    max_position_embeddings: usize,
}

#[derive(Clone, Debug)]
pub struct MlmConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    pub act: Act,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

/// Whether `config.json` text names a masked LM csplade reads.
pub fn is_masked_lm(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    let kind = v["model_type"].as_str().unwrap_or("");
    matches!(kind, "bert" | "distilbert")
        || v["architectures"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                matches!(
                    x.as_str(),
                    Some("BertForMaskedLM" | "DistilBertForMaskedLM")
                )
            })
        })
}

pub fn parse_config(text: &str, origin: &Path) -> std::result::Result<MlmConfig, ModelError> {
    let c: RawConfig = serde_json::from_str(text).map_err(|e| ModelError::Format {
        path: origin.to_path_buf(),
        msg: format!("line {}: {e}", e.line()),
    })?;
    let distil = c.model_type.as_deref() == Some("distilbert")
        || c.architectures.iter().any(|a| a == "DistilBertForMaskedLM");
    let missing = |what: &str| ModelError::Format {
        path: origin.to_path_buf(),
        msg: format!(
            "no {what} in a {} config",
            if distil { "DistilBERT" } else { "BERT" }
        ),
    };
    let cfg = if distil {
        MlmConfig {
            arch: Arch::DistilBert,
            vocab_size: c.vocab_size,
            hidden_size: c.dim.ok_or_else(|| missing("dim"))?,
            layers: c.n_layers.ok_or_else(|| missing("n_layers"))?,
            heads: c.n_heads.ok_or_else(|| missing("n_heads"))?,
            intermediate_size: c.hidden_dim.ok_or_else(|| missing("hidden_dim"))?,
            act: Act::parse(c.activation.as_deref().unwrap_or("gelu"), origin)?,
            max_position_embeddings: c.max_position_embeddings,
            type_vocab_size: 0,
            layer_norm_eps: 1e-12,
        }
    } else {
        MlmConfig {
            arch: Arch::Bert,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size.ok_or_else(|| missing("hidden_size"))?,
            layers: c
                .num_hidden_layers
                .ok_or_else(|| missing("num_hidden_layers"))?,
            heads: c
                .num_attention_heads
                .ok_or_else(|| missing("num_attention_heads"))?,
            intermediate_size: c
                .intermediate_size
                .ok_or_else(|| missing("intermediate_size"))?,
            act: Act::parse(c.hidden_act.as_deref().unwrap_or("gelu"), origin)?,
            max_position_embeddings: c.max_position_embeddings,
            type_vocab_size: c.type_vocab_size.unwrap_or(2),
            layer_norm_eps: c.layer_norm_eps.unwrap_or(1e-12),
        }
    };
    cfg.check().map_err(|msg| ModelError::Format {
        path: origin.to_path_buf(),
        msg,
    })?;
    Ok(cfg)
}

impl MlmConfig {
    /// Refuse shapes no checkpoint can have, before anything divides by
    /// them or allocates them (bounds far above any released model).
    fn check(&self) -> std::result::Result<(), String> {
        super::sizes_within(&[
            ("vocab size", self.vocab_size, 1, 10_000_000),
            ("hidden size", self.hidden_size, 1, 1 << 16),
            ("layers", self.layers, 1, 1024),
            ("attention heads", self.heads, 1, 1024),
            ("intermediate size", self.intermediate_size, 1, 1 << 18),
            ("max positions", self.max_position_embeddings, 1, 1 << 21),
            ("token types", self.type_vocab_size, 0, 1024),
        ])?;
        if !self.hidden_size.is_multiple_of(self.heads) {
            return Err(format!(
                "hidden size {} is not a multiple of {} heads",
                self.hidden_size, self.heads
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!(
                "layer norm epsilon {}: must be a finite number above 0",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

/// A BERT or DistilBERT masked LM.
pub struct MaskedLm {
    pub config: MlmConfig,
    word: Tensor,
    position: Tensor,
    token_type: Option<Tensor>,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    transform: Linear,
    transform_norm: LayerNorm,
    /// The decoder `[vocab, hidden]` (dense until packed) and its bias.
    decoder: Tensor,
    decoder_packed: Option<Weights>,
    decoder_bias: Tensor,
    device: Device,
}

/// A LayerNorm under its current names (`weight`, `bias`) or the TensorFlow-era
/// ones that older BERT checkpoints still carry (`gamma`, `beta`), which
/// transformers renames on load too.
fn norm(vb: &VarBuilder, name: &str, size: usize, eps: f64) -> Result<LayerNorm> {
    let vb = vb.pp(name);
    let (scale, shift) = if !vb.contains_tensor("weight") && vb.contains_tensor("gamma") {
        ("gamma", "beta")
    } else {
        ("weight", "bias")
    };
    Ok(LayerNorm::new(
        vb.get(size, scale)?,
        vb.get(size, shift)?,
        eps,
    ))
}

/// Encoder layer `i` of a BERT or DistilBERT checkpoint, under each
/// architecture's tensor names.
fn load_layer(base: &VarBuilder, config: &MlmConfig, i: usize) -> Result<Layer> {
    let (h, eps) = (config.hidden_size, config.layer_norm_eps);
    let lin =
        |vb: &VarBuilder, name: &str, i: usize, o: usize| Linear::load(vb.pp(name), i, o, true);
    let (ff, inner) = (config.intermediate_size, h);
    Ok(match config.arch {
        Arch::Bert => {
            let l = base.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            Layer {
                q: lin(&a, "self.query", h, inner)?,
                k: lin(&a, "self.key", h, inner)?,
                v: lin(&a, "self.value", h, inner)?,
                o: lin(&a, "output.dense", inner, h)?,
                attn_norm: norm(&a.pp("output"), "LayerNorm", h, eps)?,
                ffn_in: lin(&l, "intermediate.dense", h, ff)?,
                ffn_out: lin(&l, "output.dense", ff, h)?,
                ffn_norm: norm(&l.pp("output"), "LayerNorm", h, eps)?,
            }
        }
        Arch::DistilBert => {
            let l = base.pp(format!("transformer.layer.{i}"));
            let a = l.pp("attention");
            Layer {
                q: lin(&a, "q_lin", h, inner)?,
                k: lin(&a, "k_lin", h, inner)?,
                v: lin(&a, "v_lin", h, inner)?,
                o: lin(&a, "out_lin", inner, h)?,
                attn_norm: norm(&l, "sa_layer_norm", h, eps)?,
                ffn_in: lin(&l, "ffn.lin1", h, ff)?,
                ffn_out: lin(&l, "ffn.lin2", ff, h)?,
                ffn_norm: norm(&l, "output_layer_norm", h, eps)?,
            }
        }
    })
}

/// The MLM head: transform, its norm, the decoder (tied to the word
/// embeddings when the checkpoint has none of its own) and its bias.
fn load_head(
    vb: &VarBuilder,
    config: &MlmConfig,
    word: &Tensor,
) -> Result<(Linear, LayerNorm, Tensor, Tensor)> {
    let (h, eps) = (config.hidden_size, config.layer_norm_eps);
    let lin =
        |vb: &VarBuilder, name: &str, i: usize, o: usize| Linear::load(vb.pp(name), i, o, true);
    Ok(match config.arch {
        Arch::Bert => {
            let p = vb.pp("cls.predictions");
            let decoder = if p.contains_tensor("decoder.weight") {
                p.get((config.vocab_size, h), "decoder.weight")?
            } else {
                word.clone()
            };
            let bias = if p.contains_tensor("bias") {
                p.get(config.vocab_size, "bias")?
            } else {
                p.get(config.vocab_size, "decoder.bias")?
            };
            (
                lin(&p, "transform.dense", h, h)?,
                norm(&p.pp("transform"), "LayerNorm", h, eps)?,
                decoder,
                bias,
            )
        }
        Arch::DistilBert => {
            let decoder = if vb.contains_tensor("vocab_projector.weight") {
                vb.get((config.vocab_size, h), "vocab_projector.weight")?
            } else {
                word.clone()
            };
            (
                lin(vb, "vocab_transform", h, h)?,
                norm(vb, "vocab_layer_norm", h, eps)?,
                decoder,
                vb.get(config.vocab_size, "vocab_projector.bias")?,
            )
        }
    })
}

impl MaskedLm {
    /// Weights from a `VarBuilder` over the checkpoint's tensors (with or
    /// without the `bert.` / `distilbert.` prefix).
    pub fn load(vb: VarBuilder, config: &MlmConfig) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let (base_name, emb_norm_name) = match config.arch {
            Arch::Bert => ("bert", "LayerNorm"),
            Arch::DistilBert => ("distilbert", "LayerNorm"),
        };
        let base = if vb.contains_tensor(&format!("{base_name}.embeddings.word_embeddings.weight"))
        {
            vb.pp(base_name)
        } else {
            vb.clone()
        };
        let emb = base.pp("embeddings");
        let word = emb.get((config.vocab_size, h), "word_embeddings.weight")?;
        let position = emb.get(
            (config.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type = match config.arch {
            Arch::Bert if config.type_vocab_size > 0 => {
                Some(emb.get((config.type_vocab_size, h), "token_type_embeddings.weight")?)
            }
            _ => None,
        };
        let emb_norm = norm(&emb, emb_norm_name, h, eps)?;
        let layers = (0..config.layers)
            .map(|i| load_layer(&base, config, i))
            .collect::<Result<Vec<_>>>()?;
        let (transform, transform_norm, decoder, decoder_bias) = load_head(&vb, config, &word)?;
        Ok(Self {
            config: config.clone(),
            word,
            position,
            token_type,
            emb_norm,
            layers,
            transform,
            transform_norm,
            decoder,
            decoder_packed: None,
            decoder_bias,
            device: vb.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Pack every projection for inference at `precision` (the decoder
    /// too when `quantize_head`; else it stays f32).
    pub fn pack_for_inference(&mut self, precision: Precision, quantize_head: bool) -> Result<()> {
        if !self.device.is_cpu() {
            if precision != Precision::F32 || quantize_head {
                candle_core::bail!("precision {precision} runs on the CPU only");
            }
            return Ok(());
        }
        for l in &mut self.layers {
            for lin in [
                &mut l.q,
                &mut l.k,
                &mut l.v,
                &mut l.o,
                &mut l.ffn_in,
                &mut l.ffn_out,
            ] {
                lin.pack_for_inference(precision)?;
            }
        }
        self.transform.pack_for_inference(precision)?;
        let head = if quantize_head {
            precision
        } else {
            Precision::F32
        };
        self.decoder_packed = Some(Weights::new(&self.decoder, head)?);
        Ok(())
    }

    /// Bytes of the weights as used for inference.
    pub fn weight_bytes(&self) -> usize {
        let f = |t: &Tensor| t.elem_count() * 4;
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.q, &l.k, &l.v, &l.o, &l.ffn_in, &l.ffn_out]
                    .iter()
                    .map(|x| x.bytes())
                    .sum::<usize>()
                    + 4 * 4 * self.config.hidden_size
            })
            .sum();
        let head = self
            .decoder_packed
            .as_ref()
            .map_or(f(&self.decoder), Weights::bytes);
        layers + f(&self.word) + f(&self.position) + self.token_type.as_ref().map_or(0, f) + head
    }

    /// Hidden states `[B, T, hidden]` of right-padded `ids [B, T]` whose
    /// texts have `lengths` real tokens.
    pub fn hidden_states(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t > self.config.max_position_embeddings {
            candle_core::bail!(
                "{t} tokens exceed the model's {} positions",
                self.config.max_position_embeddings
            );
        }
        let flat = ids.flatten_all()?;
        let mut x = self
            .word
            .index_select(&flat, 0)?
            .reshape((b, t, self.config.hidden_size))?;
        x = x.broadcast_add(&self.position.narrow(0, 0, t)?.unsqueeze(0)?)?;
        if let Some(tt) = &self.token_type {
            x = x.broadcast_add(&tt.narrow(0, 0, 1)?.unsqueeze(0)?)?;
        }
        x = self.emb_norm.forward(&x)?;
        // Additive key mask: 0 for real tokens, a large negative for padding.
        let mut mask = vec![0f32; b * t];
        for (i, &n) in lengths.iter().enumerate() {
            for v in &mut mask[i * t + n.min(t)..(i + 1) * t] {
                *v = -1.0e9;
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, 1, t), &self.device)?;
        for l in &self.layers {
            x = self.layer(l, &x, &mask)?;
        }
        Ok(x)
    }

    fn layer(&self, l: &Layer, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let (heads, dh) = (self.config.heads, h / self.config.heads);
        let split = |y: Tensor| -> Result<Tensor> {
            y.reshape((b, t, heads, dh))?.transpose(1, 2)?.contiguous()
        };
        let q = split(l.q.forward(x)?)?;
        let k = split(l.k.forward(x)?)?;
        let v = split(l.v.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (dh as f64).sqrt())?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, h))?;
        let x = l.attn_norm.forward(&(x + l.o.forward(&ctx)?)?)?;
        let ff = l
            .ffn_out
            .forward(&self.config.act.apply(&l.ffn_in.forward(&x)?)?)?;
        l.ffn_norm.forward(&(x + ff)?)
    }

    /// The MLM head's input `[rows, hidden]` for hidden rows `[rows, hidden]`.
    fn transformed(&self, rows: &Tensor) -> Result<Tensor> {
        let y = self.config.act.apply(&self.transform.forward(rows)?)?;
        self.transform_norm.forward(&y)
    }

    /// Logits `[rows, vocab]` of hidden rows `[rows, hidden]`.
    pub fn logits(&self, rows: &Tensor) -> Result<Tensor> {
        let y = self.transformed(rows)?;
        let l = match &self.decoder_packed {
            Some(w) => w.matmul(&y)?,
            None => y.matmul(&self.decoder.t()?)?,
        };
        l.broadcast_add(&self.decoder_bias)
    }

    /// `acc[owner[r] · V + v] = max(acc, logit[r, v])` over hidden rows
    /// `[rows, hidden]`, through the fused head where the decoder is packed
    /// (the `[rows, vocab]` logits are never stored), bias included.
    pub fn max_pool(&self, rows: &Tensor, owner: &[usize], acc: &mut [f32]) -> Result<()> {
        let v = self.config.vocab_size;
        let texts = owner.iter().max().map_or(0, |&o| o + 1);
        let y = self.transformed(rows)?.contiguous()?;
        let m = y.dim(0)?;
        let mut pooled = vec![f32::NEG_INFINITY; texts * v];
        match &self.decoder_packed {
            Some(Weights::Packed(p)) => {
                with_f32_slice(&y, |d| super::gemm::max_pool_t(d, m, owner, p, &mut pooled))?
            }
            Some(Weights::Int8(p)) => with_f32_slice(&y, |d| {
                super::gemm_i8::max_pool_t(d, m, owner, p, &mut pooled)
            })?,
            _ => {
                let l = match &self.decoder_packed {
                    Some(w) => w.matmul(&y)?,
                    None => y.matmul(&self.decoder.t()?)?,
                }
                .contiguous()?;
                with_f32_slice(&l, |d| {
                    for (r, &o) in owner.iter().enumerate() {
                        let dst = &mut pooled[o * v..(o + 1) * v];
                        for (a, &x) in dst.iter_mut().zip(&d[r * v..(r + 1) * v]) {
                            *a = a.max(x);
                        }
                    }
                })?;
            }
        }
        let bias = self.decoder_bias.to_vec1::<f32>()?;
        for (t, row) in pooled.chunks(v).enumerate() {
            let dst = &mut acc[t * v..(t + 1) * v];
            for ((a, &x), &b) in dst.iter_mut().zip(row).zip(&bias) {
                *a = a.max(x + b);
            }
        }
        Ok(())
    }
}

/// Read a masked LM's weights from `weights` (safetensors files).
pub fn load_weights(
    weights: &[std::path::PathBuf],
    config: &MlmConfig,
    device: &Device,
    origin: &Path,
) -> std::result::Result<MaskedLm, ModelError> {
    // SAFETY: the files are memory-mapped read-only; csplade never writes them while loaded.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, DType::F32, device) }.map_err(
        |e| ModelError::Format {
            path: origin.to_path_buf(),
            msg: format!("reading safetensors: {e}"),
        },
    )?;
    MaskedLm::load(vb, config).map_err(|e| ModelError::Format {
        path: origin.to_path_buf(),
        msg: format!("weights do not fit config.json: {e}"),
    })
}
