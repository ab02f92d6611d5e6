//! Llama-family backbone (Llama, Mistral, Qwen2, SmolLM2): GQA attention,
//! RMSNorm, SwiGLU, RoPE — returning hidden states and logits at **every**
//! position, with a causal or a bidirectional mask and right padding.
//!
//! Written in candle-transformers' style (a serde `Config`, weights through
//! `VarBuilder` prefixes, `forward`), because candle's causal-LM heads return
//! only the last position.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::kernels;
use super::linear::{Linear, Weights};
use crate::quant::Precision;

/// How RoPE rotates a head: GGUF files from llama.cpp store Q/K rows permuted
/// for adjacent pairs; HF checkpoints rotate the two halves of the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    Interleaved,
    HalfRotation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub rope_style: RopeStyle,
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Multiply-adds per token of one forward pass, LM head included (×2 = FLOPs).
    pub fn macs_per_token(&self) -> usize {
        let h = self.hidden_size;
        let kv = self.num_key_value_heads * self.head_dim();
        let per_layer = h * h * 2 + h * kv * 2 + 3 * h * self.intermediate_size;
        per_layer * self.num_hidden_layers + h * self.vocab_size
    }
}

/// Which positions a token may attend to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionMask {
    /// Standard decoder mask: position t sees positions ≤ t.
    Causal,
    /// Mask removed (CSPLADE-Bi): every non-padding position is visible.
    Bidirectional,
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps: eps as f32,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

struct Rope {
    cos: Tensor,
    sin: Tensor,
    style: RopeStyle,
}

impl Rope {
    fn new(cfg: &Config, dev: &Device) -> Result<Self> {
        let d = cfg.head_dim();
        let max = cfg.max_position_embeddings.max(1);
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d as f64) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, d / 2), dev)?;
        let pos = Tensor::arange(0u32, max as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((max, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Self {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            style: cfg.rope_style,
        })
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        match self.style {
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(x, &cos, &sin),
            RopeStyle::HalfRotation => candle_nn::rotary_emb::rope(x, &cos, &sin),
        }
    }
}

pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Q|K|V packed as one weight for the inference GEMM, with their biases.
    qkv_packed: Option<(Weights, Option<Tensor>)>,
}

/// The attention pattern of one forward pass.
pub struct MaskSpec<'a> {
    /// Additive `[B, 1, T, T]` mask for the autograd path.
    additive: Option<Tensor>,
    lengths: &'a [usize],
    bidirectional: bool,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let d = cfg.head_dim();
        let kv = cfg.num_key_value_heads * d;
        let b = cfg.attention_bias;
        Ok(Self {
            q_proj: Linear::load(vb.pp("q_proj"), h, cfg.num_attention_heads * d, b)?,
            k_proj: Linear::load(vb.pp("k_proj"), h, kv, b)?,
            v_proj: Linear::load(vb.pp("v_proj"), h, kv, b)?,
            o_proj: Linear::load(vb.pp("o_proj"), cfg.num_attention_heads * d, h, false)?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: d,
            qkv_packed: None,
        })
    }

    fn pack_for_inference(&mut self, precision: Precision) -> Result<()> {
        let w = Tensor::cat(
            &[
                &self.q_proj.weight,
                &self.k_proj.weight,
                &self.v_proj.weight,
            ],
            0,
        )?;
        let bias = match (&self.q_proj.bias, &self.k_proj.bias, &self.v_proj.bias) {
            (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[q, k, v], 0)?),
            _ => None,
        };
        self.qkv_packed = Some((Weights::new(&w, precision)?, bias));
        // The separate projections are no longer used: release their weights.
        for lin in [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj] {
            lin.weight = Tensor::zeros(0, candle_core::DType::F32, lin.weight.device())?;
        }
        self.o_proj.pack_for_inference(precision)
    }

    fn weight_bytes(&self) -> usize {
        self.qkv_packed.as_ref().map_or(
            self.q_proj.bytes() + self.k_proj.bytes() + self.v_proj.bytes(),
            |w| w.0.bytes(),
        ) + self.o_proj.bytes()
    }

    fn forward(&self, x: &Tensor, rope: &Rope, mask: &MaskSpec) -> Result<Tensor> {
        let (b, t, hidden) = x.dims3()?;
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let (q, k, v) = match &self.qkv_packed {
            Some((w, bias)) => {
                let mut qkv = w.matmul(&x.reshape((b * t, hidden))?)?;
                if let Some(bias) = bias {
                    qkv = qkv.broadcast_add(bias)?;
                }
                if mask.additive.is_none() {
                    let shape = kernels::AttentionShape {
                        batch: b,
                        t,
                        heads: h,
                        kv_heads: kvh,
                        head_dim: d,
                        lengths: mask.lengths,
                        bidirectional: mask.bidirectional,
                    };
                    let ctx = super::linear::with_f32_slice(&qkv, |q| {
                        super::linear::with_f32_slice(&rope.cos, |c| {
                            super::linear::with_f32_slice(&rope.sin, |s| {
                                let tables = kernels::RopeTables {
                                    cos: c,
                                    sin: s,
                                    interleaved: rope.style == RopeStyle::Interleaved,
                                };
                                kernels::attention(q, &shape, &tables)
                            })
                        })
                    })???;
                    let ctx = Tensor::from_vec(ctx, (b, t, h * d), x.device())?;
                    return self.o_proj.forward(&ctx);
                }
                (
                    qkv.narrow(1, 0, h * d)?,
                    qkv.narrow(1, h * d, kvh * d)?,
                    qkv.narrow(1, (h + kvh) * d, kvh * d)?,
                )
            }
            None => (
                self.q_proj.forward(x)?,
                self.k_proj.forward(x)?,
                self.v_proj.forward(x)?,
            ),
        };
        let q = q.reshape((b, t, h, d))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, kvh, d))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, kvh, d))?.transpose(1, 2)?.contiguous()?;
        let q = rope.apply(&q)?;
        let k = rope.apply(&k)?;
        // Grouped-query attention without copying K/V: the `rep` query heads
        // sharing one KV head are stacked along the position axis.
        let rep = h / kvh;
        let q = (q.reshape((b, kvh, rep * t, d))? * (1.0 / (d as f64).sqrt()))?;
        let scores = q.matmul(&k.t()?)?.reshape((b, h, t, t))?;
        let probs = match &mask.additive {
            Some(m) => candle_nn::ops::softmax_last_dim(&scores.broadcast_add(m)?)?,
            None => candle_core::bail!("attention without a mask tensor needs packed weights"),
        };
        let ctx = probs.reshape((b, kvh, rep * t, t))?.matmul(&v)?;
        let ctx = ctx
            .reshape((b, h, t, d))?
            .transpose(1, 2)?
            .reshape((b, t, h * d))?;
        self.o_proj.forward(&ctx)
    }
}

pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    /// Gate|up packed as one weight for the inference GEMM.
    gate_up_packed: Option<Weights>,
    intermediate: usize,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: Linear::load(vb.pp("gate_proj"), h, i, false)?,
            up_proj: Linear::load(vb.pp("up_proj"), h, i, false)?,
            down_proj: Linear::load(vb.pp("down_proj"), i, h, false)?,
            gate_up_packed: None,
            intermediate: i,
        })
    }

    fn pack_for_inference(&mut self, precision: Precision) -> Result<()> {
        let w = Tensor::cat(&[&self.gate_proj.weight, &self.up_proj.weight], 0)?;
        self.gate_up_packed = Some(Weights::new(&w, precision)?);
        for lin in [&mut self.gate_proj, &mut self.up_proj] {
            lin.weight = Tensor::zeros(0, candle_core::DType::F32, lin.weight.device())?;
        }
        self.down_proj.pack_for_inference(precision)
    }

    fn weight_bytes(&self) -> usize {
        self.gate_up_packed.as_ref().map_or(
            self.gate_proj.bytes() + self.up_proj.bytes(),
            Weights::bytes,
        ) + self.down_proj.bytes()
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(w) = &self.gate_up_packed {
            let dims = x.dims().to_vec();
            let hidden = dims[dims.len() - 1];
            let rows = x.elem_count() / hidden;
            let inter = self.intermediate;
            let gu = w.matmul(&x.reshape((rows, hidden))?)?;
            let act = super::linear::with_f32_slice(&gu, |d| kernels::swiglu(d, inter))?;
            let act = Tensor::from_vec(act, (rows, inter), x.device())?;
            let mut out_dims = dims;
            let last = out_dims.len() - 1;
            out_dims[last] = self.down_proj.out_dim();
            return self.down_proj.forward(&act)?.reshape(out_dims);
        }
        let g = candle_nn::ops::silu(&self.gate_proj.forward(x)?)?;
        let u = self.up_proj.forward(x)?;
        self.down_proj.forward(&(g * u)?)
    }
}

pub struct Block {
    input_layernorm: RmsNorm,
    pub self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::load(
                vb.pp("input_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            self_attn: Attention::load(vb.pp("self_attn"), cfg)?,
            post_attention_layernorm: RmsNorm::load(
                vb.pp("post_attention_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            mlp: Mlp::load(vb.pp("mlp"), cfg)?,
        })
    }

    fn forward(&self, x: &Tensor, rope: &Rope, mask: &MaskSpec) -> Result<Tensor> {
        let a = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, rope, mask)?;
        let x = (x + a)?;
        let m = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?)?;
        x + m
    }
}

/// The backbone: embeddings, blocks, final norm and LM head.
pub struct Llama {
    pub config: Config,
    embed: Tensor,
    pub layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Tensor,
    lm_head_packed: Option<Weights>,
    tied_head: bool,
    /// Precision of the inference weights (f32 until packed otherwise).
    pub precision: Precision,
    rope: Rope,
    device: Device,
}

impl Llama {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let m = vb.pp("model");
        let embed = m.get((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Block::load(m.pp(format!("layers.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(m.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        let tied_head = cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight");
        let lm_head = if tied_head {
            embed.clone()
        } else {
            vb.get((cfg.vocab_size, cfg.hidden_size), "lm_head.weight")?
        };
        let device = embed.device().clone();
        Ok(Self {
            config: cfg.clone(),
            rope: Rope::new(cfg, &device)?,
            embed,
            layers,
            norm,
            lm_head,
            lm_head_packed: None,
            tied_head,
            precision: Precision::F32,
            device,
        })
    }

    /// Switch every projection (and the LM head) to its inference form at
    /// `precision`: packed panels for csplade's GEMM (f32, f16) or GGML
    /// blocks (q8_0, q4_0). With `quantize_head`, the embeddings and the tied
    /// LM head take the same precision; otherwise they stay f32. Inference
    /// only: no autograd through these weights.
    pub fn pack_for_inference(&mut self, precision: Precision, quantize_head: bool) -> Result<()> {
        for l in &mut self.layers {
            l.self_attn.pack_for_inference(precision)?;
            l.mlp.pack_for_inference(precision)?;
        }
        let head_precision = if quantize_head {
            precision
        } else {
            Precision::F32
        };
        if quantize_head && precision != Precision::F32 {
            // Embedding lookups see the same rounded values as the head.
            let q = candle_core::quantized::QTensor::quantize(&self.embed, precision.ggml_dtype())?;
            self.embed = q.dequantize(&self.device)?;
            if self.tied_head {
                self.lm_head = self.embed.clone();
            }
        }
        self.lm_head_packed = Some(Weights::new(&self.lm_head, head_precision)?);
        self.precision = precision;
        Ok(())
    }

    /// Bytes of every weight as used for inference (embeddings and norms included).
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.self_attn.weight_bytes() + l.mlp.weight_bytes() + 2 * 4 * self.config.hidden_size
            })
            .sum();
        let head = self
            .lm_head_packed
            .as_ref()
            .map_or(self.lm_head.elem_count() * 4, Weights::bytes);
        layers + self.embed.elem_count() * 4 + head + 4 * self.config.hidden_size
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `[vocab, hidden]`: row v scores vocabulary entry v.
    pub fn lm_head_weight(&self) -> &Tensor {
        &self.lm_head
    }

    /// Additive attention mask `[B, 1, T, T]`: 0 where allowed, a large
    /// negative number where a query may not see a key (future positions
    /// under `Causal`, padding keys always).
    pub fn attention_mask(
        &self,
        lengths: &[usize],
        t: usize,
        kind: AttentionMask,
    ) -> Result<Tensor> {
        const BLOCKED: f32 = -1e30;
        let b = lengths.len();
        let mut m = vec![0f32; b * t * t];
        for (bi, &len) in lengths.iter().enumerate() {
            for i in 0..t {
                let row = &mut m[(bi * t + i) * t..(bi * t + i + 1) * t];
                for (j, cell) in row.iter_mut().enumerate() {
                    let future = kind == AttentionMask::Causal && j > i;
                    let pad = j >= len && !(i >= len && j == i);
                    if future || pad {
                        *cell = BLOCKED;
                    }
                }
            }
        }
        Tensor::from_vec(m, (b, 1, t, t), &self.device)
    }

    /// Final-norm hidden states `[B, T, hidden]` for right-padded `ids [B, T]`
    /// whose true lengths are `lengths`.
    pub fn hidden_states(
        &self,
        ids: &Tensor,
        lengths: &[usize],
        kind: AttentionMask,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if lengths.len() != b {
            candle_core::bail!("{} lengths for a batch of {b}", lengths.len());
        }
        if t > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {t} tokens exceeds the model's context of {}",
                self.config.max_position_embeddings
            );
        }
        // The inference kernels mask by index; the autograd path adds a mask tensor.
        let fast = self
            .layers
            .first()
            .is_some_and(|l| l.self_attn.qkv_packed.is_some())
            && super::gemm::available();
        let mask = MaskSpec {
            additive: if fast {
                None
            } else {
                Some(self.attention_mask(lengths, t, kind)?)
            },
            lengths,
            bidirectional: kind == AttentionMask::Bidirectional,
        };
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            t,
            self.config.hidden_size,
        ))?;
        for layer in &self.layers {
            x = layer.forward(&x, &self.rope, &mask)?;
        }
        self.norm.forward(&x)
    }

    /// Logits `[rows, vocab]` for hidden rows `[rows, hidden]`.
    pub fn head(&self, rows: &Tensor) -> Result<Tensor> {
        match &self.lm_head_packed {
            Some(w) => w.matmul(rows),
            None => rows.matmul(&self.lm_head.t()?),
        }
    }

    /// Max over rows of the logits, per text: `acc[owner[r] * vocab + v] =
    /// max(…, logit[r, v])` for hidden rows `[rows, hidden]`. Fused with the
    /// LM head where the fast GEMM exists (the logits are never stored).
    pub fn head_max_pool(&self, rows: &Tensor, owner: &[usize], acc: &mut [f32]) -> Result<()> {
        let v = self.config.vocab_size;
        match &self.lm_head_packed {
            Some(Weights::Packed(p)) => {
                let rows = rows.contiguous()?;
                let m = rows.dim(0)?;
                super::linear::with_f32_slice(&rows, |d| {
                    super::gemm::max_pool_t(d, m, owner, p, acc)
                })
            }
            _ => {
                let logits = self.head(rows)?.contiguous()?;
                super::linear::with_f32_slice(&logits, |d| {
                    for (r, &o) in owner.iter().enumerate() {
                        let dst = &mut acc[o * v..(o + 1) * v];
                        for (a, &x) in dst.iter_mut().zip(&d[r * v..(r + 1) * v]) {
                            if x > *a {
                                *a = x;
                            }
                        }
                    }
                })
            }
        }
    }

    /// Logits at every position, `[B, T, vocab]`.
    pub fn forward(&self, ids: &Tensor, lengths: &[usize], kind: AttentionMask) -> Result<Tensor> {
        let h = self.hidden_states(ids, lengths, kind)?;
        let (b, t, d) = h.dims3()?;
        self.head(&h.reshape((b * t, d))?)?
            .reshape((b, t, self.config.vocab_size))
    }

    /// Mean next-token negative log-likelihood of one unpadded sequence.
    pub fn mean_nll(&self, ids: &[u32]) -> Result<f32> {
        if ids.len() < 2 {
            candle_core::bail!("need at least two tokens to score a continuation");
        }
        let t = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let logits = self
            .forward(&t, &[ids.len()], AttentionMask::Causal)?
            .squeeze(0)?;
        let n = ids.len() - 1;
        let logp = candle_nn::ops::log_softmax(&logits.narrow(0, 0, n)?, D::Minus1)?;
        let targets = Tensor::new(&ids[1..], &self.device)?.unsqueeze(1)?;
        let picked = logp.gather(&targets, 1)?;
        Ok(-(picked.mean_all()?.to_scalar::<f32>()?))
    }
}
