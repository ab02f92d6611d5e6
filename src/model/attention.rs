//! Grouped-query self-attention with RoPE, in three forms: the inference
//! kernel over packed Q|K|V weights, the fused training op with its own
//! backward ([`super::autograd::AttentionOp`]), and candle's composite ops
//! (autograd oracle and fallback without AVX-512).

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::frozen_lora::FrozenGroup;
use super::kernels;
use super::linear::{Linear, Weights};
use super::llama::{Config, RopeStyle};
use crate::model::precision::Precision;

pub(super) struct Rope {
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) style: RopeStyle,
    pub(super) differentiable: bool,
}

impl Rope {
    pub(super) fn new(cfg: &Config, dev: &Device) -> Result<Self> {
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
            differentiable: false,
        })
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        use candle_nn::rotary_emb as re;
        match (self.style, self.differentiable) {
            (RopeStyle::Interleaved, false) => re::rope_i(x, &cos, &sin),
            (RopeStyle::HalfRotation, false) => re::rope(x, &cos, &sin),
            (RopeStyle::Interleaved, true) => re::rope_i_slow(x, &cos, &sin),
            (RopeStyle::HalfRotation, true) => re::rope_slow(x, &cos, &sin),
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
    pub(super) qkv_packed: Option<(Weights, Option<Tensor>)>,
    /// Training: Q|K|V frozen as one group with their LoRA updates.
    qkv_frozen: Option<FrozenGroup>,
}

/// The attention pattern of one forward pass.
pub struct MaskSpec<'a> {
    /// Additive `[B, 1, T, T]` mask for the autograd path.
    pub(super) additive: Option<Tensor>,
    pub(super) lengths: &'a [usize],
    pub(super) bidirectional: bool,
    /// Use only ops with a backward pass (training).
    pub(super) differentiable: bool,
    /// Training through the fused attention op.
    pub(super) fused: bool,
}

impl Attention {
    pub(super) fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
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
            qkv_frozen: None,
        })
    }

    /// Keep the projections frozen for training on the fast GEMM, Q, K
    /// and V as one group (see [`FrozenGroup`]).
    pub(super) fn freeze_for_training(&mut self, bf16: bool) -> Result<()> {
        let mut qkv = [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj];
        self.qkv_frozen = FrozenGroup::freeze(&mut qkv, bf16)?;
        self.o_proj.freeze_for_training(bf16)
    }

    /// `[rows, (heads + 2·kv_heads)·head_dim]` projections of `flat` for
    /// the fused training op.
    fn training_qkv(&self, flat: &Tensor) -> Result<Tensor> {
        let qkv = [&self.q_proj, &self.k_proj, &self.v_proj];
        FrozenGroup::project(self.qkv_frozen.as_ref(), &qkv, flat)
    }

    pub(super) fn pack_for_inference(&mut self, precision: Precision) -> Result<()> {
        for lin in [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj] {
            lin.merge_low_rank()?;
        }
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

    pub(super) fn weight_bytes(&self) -> usize {
        self.qkv_packed.as_ref().map_or(
            self.q_proj.bytes() + self.k_proj.bytes() + self.v_proj.bytes(),
            |w| w.0.bytes(),
        ) + self.o_proj.bytes()
    }

    pub(super) fn forward(&self, x: &Tensor, rope: &Rope, mask: &MaskSpec) -> Result<Tensor> {
        let (b, t, hidden) = x.dims3()?;
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let (q, k, v) = match &self.qkv_packed {
            Some((w, bias)) => {
                let mut qkv = w.matmul(&x.reshape((b * t, hidden))?)?;
                if let Some(bias) = bias {
                    qkv = qkv.broadcast_add(bias)?;
                }
                if mask.additive.is_none() {
                    return self.packed_kernel(&qkv, (b, t), rope, mask);
                }
                (
                    qkv.narrow(1, 0, h * d)?,
                    qkv.narrow(1, h * d, kvh * d)?,
                    qkv.narrow(1, (h + kvh) * d, kvh * d)?,
                )
            }
            None if mask.fused => return self.fused_autograd(x, rope, mask),
            None => (
                self.q_proj.forward(x)?,
                self.k_proj.forward(x)?,
                self.v_proj.forward(x)?,
            ),
        };
        self.with_mask_tensor((q, k, v), (b, t), rope, mask)
    }

    /// Inference through the fused attention kernel on packed QKV rows.
    fn packed_kernel(
        &self,
        qkv: &Tensor,
        (b, t): (usize, usize),
        rope: &Rope,
        mask: &MaskSpec,
    ) -> Result<Tensor> {
        let (h, d) = (self.heads, self.head_dim);
        let shape = kernels::AttentionShape {
            batch: b,
            t,
            heads: h,
            kv_heads: self.kv_heads,
            head_dim: d,
            lengths: mask.lengths,
            bidirectional: mask.bidirectional,
        };
        let ctx = super::linear::with_f32_slice(qkv, |q| {
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
        let ctx = Tensor::from_vec(ctx, (b, t, h * d), qkv.device())?;
        self.o_proj.forward(&ctx)
    }

    /// Training through the fused attention op with its own backward pass.
    fn fused_autograd(&self, x: &Tensor, rope: &Rope, mask: &MaskSpec) -> Result<Tensor> {
        let (b, t, hidden) = x.dims3()?;
        let (h, d) = (self.heads, self.head_dim);
        let qkv = self.training_qkv(&x.reshape((b * t, hidden))?)?;
        let op = super::autograd::AttentionOp {
            batch: b,
            t,
            heads: h,
            kv_heads: self.kv_heads,
            head_dim: d,
            lengths: mask.lengths.to_vec(),
            bidirectional: mask.bidirectional,
            interleaved: rope.style == RopeStyle::Interleaved,
            cos: rope.cos.narrow(0, 0, t)?.flatten_all()?.to_vec1()?,
            sin: rope.sin.narrow(0, 0, t)?.flatten_all()?.to_vec1()?,
        };
        let ctx = qkv.apply_op1(op)?.reshape((b, t, h * d))?;
        self.o_proj.forward(&ctx)
    }

    /// Attention with candle's operations and an additive mask tensor.
    fn with_mask_tensor(
        &self,
        (q, k, v): (Tensor, Tensor, Tensor),
        (b, t): (usize, usize),
        rope: &Rope,
        mask: &MaskSpec,
    ) -> Result<Tensor> {
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
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
            Some(m) if mask.differentiable => {
                candle_nn::ops::softmax(&scores.broadcast_add(m)?, D::Minus1)?
            }
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
