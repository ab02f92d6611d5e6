//! A Llama block's SwiGLU MLP in its three forms: gate|up packed as one
//! weight for the inference GEMM, the training forms (gate|up as one frozen
//! group with their LoRA updates and SwiGLU reading both halves in place, or
//! gate and up apart with the fused SwiGLU op), and candle's composite ops.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::frozen_lora::FrozenGroup;
use super::kernels;
use super::linear::{Linear, Weights};
use super::llama::Config;
use crate::model::precision::Precision;

/// The SwiGLU MLP of a block: `down(silu(gate x) ⊙ up x)`.
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    /// Gate|up packed as one weight for the inference GEMM.
    gate_up_packed: Option<Weights>,
    intermediate: usize,
    /// Training: SwiGLU as one fused op with its own backward.
    pub(super) fused_training: bool,
    /// Training: gate|up frozen as one group with their LoRA updates.
    gate_up_frozen: Option<FrozenGroup>,
}

impl Mlp {
    pub(super) fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: Linear::load(vb.pp("gate_proj"), h, i, false)?,
            up_proj: Linear::load(vb.pp("up_proj"), h, i, false)?,
            down_proj: Linear::load(vb.pp("down_proj"), i, h, false)?,
            gate_up_packed: None,
            intermediate: i,
            fused_training: false,
            gate_up_frozen: None,
        })
    }

    /// Keep the projections frozen for training on the fast GEMM, gate and
    /// up as one group (see [`FrozenGroup`]).
    pub(super) fn freeze_for_training(&mut self, bf16: bool) -> Result<()> {
        let mut gate_up = [&mut self.gate_proj, &mut self.up_proj];
        self.gate_up_frozen = FrozenGroup::freeze(&mut gate_up, bf16)?;
        self.down_proj.freeze_for_training(bf16)
    }

    pub(super) fn pack_for_inference(&mut self, precision: Precision) -> Result<()> {
        self.gate_proj.merge_low_rank()?;
        self.up_proj.merge_low_rank()?;
        let w = Tensor::cat(&[&self.gate_proj.weight, &self.up_proj.weight], 0)?;
        self.gate_up_packed = Some(Weights::new(&w, precision)?);
        for lin in [&mut self.gate_proj, &mut self.up_proj] {
            lin.weight = Tensor::zeros(0, candle_core::DType::F32, lin.weight.device())?;
        }
        self.down_proj.pack_for_inference(precision)
    }

    pub(super) fn weight_bytes(&self) -> usize {
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
        if self.fused_training {
            let dims = x.dims().to_vec();
            let hidden = dims[dims.len() - 1];
            let flat = x.reshape((x.elem_count() / hidden, hidden))?;
            let projections = [&self.gate_proj, &self.up_proj];
            let gate_up = FrozenGroup::project(self.gate_up_frozen.as_ref(), &projections, &flat)?;
            let act = gate_up.apply_op1(super::autograd::SwiGluPairOp)?;
            return self.down_proj.forward(&act)?.reshape(dims);
        }
        let g = candle_nn::ops::silu(&self.gate_proj.forward(x)?)?;
        let u = self.up_proj.forward(x)?;
        self.down_proj.forward(&(g * u)?)
    }
}
