//! Llama-family backbone (Llama, Mistral, Qwen2, SmolLM2): GQA attention,
//! RMSNorm, SwiGLU, RoPE — returning hidden states and logits at **every**
//! position, with a causal or a bidirectional mask and right padding.
//!
//! Written in candle-transformers' style (a serde `Config`, weights through
//! `VarBuilder` prefixes, `forward`), because candle's causal-LM heads return
//! only the last position.

use candle_core::{Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::attention::{Attention, MaskSpec, Rope};
use super::linear::{Linear, Weights};
use super::mlp::Mlp;
use crate::model::precision::Precision;

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
    /// Refuse shapes no checkpoint can have, before anything divides by
    /// them or allocates them: every size from 1 to a bound far above any
    /// released model, heads that divide the hidden size and are shared by
    /// whole key/value groups, an even head size (RoPE rotates pairs), and
    /// a finite, positive norm epsilon and RoPE base.
    pub fn check(&self) -> std::result::Result<(), String> {
        super::sizes_within(&[
            ("vocab_size", self.vocab_size, 1, 10_000_000),
            ("hidden_size", self.hidden_size, 1, 1 << 16),
            ("intermediate_size", self.intermediate_size, 1, 1 << 18),
            ("num_hidden_layers", self.num_hidden_layers, 1, 1024),
            ("num_attention_heads", self.num_attention_heads, 1, 1024),
            ("num_key_value_heads", self.num_key_value_heads, 1, 1024),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1,
                1 << 21,
            ),
        ])?;
        let (hidden, heads, kv) = (
            self.hidden_size,
            self.num_attention_heads,
            self.num_key_value_heads,
        );
        if !hidden.is_multiple_of(heads) || !(hidden / heads).is_multiple_of(2) {
            return Err(format!(
                "hidden_size {hidden} over {heads} attention heads: each head needs an even whole size"
            ));
        }
        if !heads.is_multiple_of(kv) {
            return Err(format!(
                "{heads} attention heads cannot share {kv} key/value heads evenly"
            ));
        }
        for (name, x) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ] {
            if !(x.is_finite() && x > 0.0) {
                return Err(format!("{name} {x}: must be a finite number above 0"));
            }
        }
        Ok(())
    }

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
    /// Composed of differentiable ops (candle's fused kernel has no backward).
    differentiable: bool,
    /// Training through csplade's fused op instead.
    fused: bool,
}

impl RmsNorm {
    fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps: eps as f32,
            differentiable: false,
            fused: false,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fused {
            x.contiguous()?
                .apply_op2(&self.weight, super::autograd::RmsNormOp { eps: self.eps })
        } else if self.differentiable {
            candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps)
        } else {
            candle_nn::ops::rms_norm(x, &self.weight, self.eps)
        }
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
    /// The LM head as a frozen training op (its backward maps logit
    /// gradients to hidden-state gradients).
    lm_head_frozen: Option<super::linear::FrozenMatmul>,
    tied_head: bool,
    /// Learned per-vocabulary shifts of the log-probability head `[vocab]`
    /// (from an adapter's `head.term_shift`), added before the ReLU.
    pub term_shift: Option<Tensor>,
    /// Precision of the inference weights (f32 until packed otherwise).
    pub precision: Precision,
    /// Training through the fused ops of [`super::autograd`].
    fused_training: bool,
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
            lm_head_frozen: None,
            tied_head,
            term_shift: None,
            precision: Precision::F32,
            fused_training: false,
            device,
        })
    }

    /// Switch every projection (and the LM head) to its inference form at
    /// `precision`: packed panels for csplade's GEMM (f32, f16) or GGML
    /// blocks (q8_0, q4_0). With `quantize_head`, the embeddings and the tied
    /// LM head take the same precision; otherwise they stay f32. Inference
    /// only: no autograd through these weights.
    ///
    /// On a GPU the weights stay dense f32 tensors for candle's CUDA matmul
    /// (the packed and integer kernels are CPU code): only f32 is offered there.
    pub fn pack_for_inference(&mut self, precision: Precision, quantize_head: bool) -> Result<()> {
        if !self.device.is_cpu() {
            if precision != Precision::F32 || quantize_head {
                candle_core::bail!(
                    "precision {precision} runs on the CPU only; on a GPU csplade encodes at f32"
                );
            }
            return Ok(());
        }
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

    /// Prepare for training: every op on the way from embeddings to the final
    /// norm gets a backward pass (candle's fused RMSNorm, RoPE and softmax
    /// kernels have none), while the frozen LM head is packed for the fast
    /// GEMM, since gradients reach the hidden states through
    /// [`crate::train::pooling`] rather than through candle.
    ///
    /// `fused` selects csplade's fused ops with hand-written backward passes
    /// (attention, RMSNorm, SwiGLU; AVX-512 machines) over candle's
    /// composite ops; `freeze_projections` runs frozen projections on the
    /// packed GEMM (LoRA; not for full fine-tuning). With `bf16`, the frozen
    /// projections and the head multiply in bf16 with f32 sums where the CPU
    /// can ([`super::gemm::bf16_available`]).
    pub fn prepare_for_training(
        &mut self,
        freeze_projections: bool,
        fused: bool,
        bf16: bool,
    ) -> Result<()> {
        let fused = fused && super::gemm::available();
        self.rope.differentiable = true;
        self.fused_training = fused;
        self.norm.differentiable = true;
        self.norm.fused = fused;
        for l in &mut self.layers {
            for n in [&mut l.input_layernorm, &mut l.post_attention_layernorm] {
                n.differentiable = true;
                n.fused = fused;
            }
            l.mlp.fused_training = fused;
        }
        // One packing of the frozen head serves the forward and its backward.
        self.lm_head_frozen = super::linear::FrozenMatmul::new(&self.lm_head, bf16)?;
        self.lm_head_packed = Some(match &self.lm_head_frozen {
            Some(f) => f.weights(),
            None => Weights::new(&self.lm_head, Precision::F32)?,
        });
        if freeze_projections && fused {
            for l in &mut self.layers {
                l.self_attn.freeze_for_training(bf16)?;
                l.mlp.freeze_for_training(bf16)?;
            }
        } else if freeze_projections {
            for (_, lin) in self.linears_mut() {
                lin.freeze_for_training(bf16)?;
            }
        }
        Ok(())
    }

    /// `∂L/∂hidden = ∂L/∂logits · W_head` for logit gradients `[rows, vocab]`.
    pub fn head_backward(&self, grad_logits: &Tensor) -> Result<Tensor> {
        match &self.lm_head_frozen {
            Some(f) => f.backward(grad_logits),
            None => grad_logits.matmul(&self.lm_head),
        }
    }

    /// Every projection of the transformer with its path
    /// (`layers.3.self_attn.q_proj`), for adapters and fine-tuning.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let a = &mut l.self_attn;
            for (n, lin) in [
                ("self_attn.q_proj", &mut a.q_proj),
                ("self_attn.k_proj", &mut a.k_proj),
                ("self_attn.v_proj", &mut a.v_proj),
                ("self_attn.o_proj", &mut a.o_proj),
            ] {
                out.push((format!("layers.{i}.{n}"), lin));
            }
            let m = &mut l.mlp;
            for (n, lin) in [
                ("mlp.gate_proj", &mut m.gate_proj),
                ("mlp.up_proj", &mut m.up_proj),
                ("mlp.down_proj", &mut m.down_proj),
            ] {
                out.push((format!("layers.{i}.{n}"), lin));
            }
        }
        out
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
            && super::gemm::available()
            && self.device.is_cpu();
        let mask = MaskSpec {
            additive: if fast || self.fused_training {
                None
            } else {
                Some(self.attention_mask(lengths, t, kind)?)
            },
            lengths,
            bidirectional: kind == AttentionMask::Bidirectional,
            differentiable: self.rope.differentiable,
            fused: self.fused_training,
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
            Some(Weights::Int8(p)) => {
                let rows = rows.contiguous()?;
                let m = rows.dim(0)?;
                super::linear::with_f32_slice(&rows, |d| {
                    super::gemm_i8::max_pool_t(d, m, owner, p, acc)
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
