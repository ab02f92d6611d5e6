//! One linear layer, `y = x Wᵀ (+ b)`, over the weight representations the
//! precision variants need: dense candle tensors (autograd, fallback), packed
//! f32 or f16 panels for csplade's GEMM, and GGML block-quantized weights
//! (q8_0, q4_0) as int8 codes for csplade's int8 GEMM (AVX-512 VNNI or AVX2),
//! else through candle's `QMatMul`. All share one forward, so a comparison
//! of precisions measures only precision.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Module, Result, Storage, Tensor};
use candle_nn::VarBuilder;

use super::gemm::{self, PackedWeight};
use super::gemm_i8::{self, PackedQ8};
use crate::model::precision::Precision;

/// An inference-only weight.
#[derive(Clone)]
pub enum Weights {
    /// f32 or f16 panels for the packed GEMM.
    Packed(Arc<PackedWeight>),
    /// q8_0 / q4_0 blocks as int8 codes for the int8 GEMM (VNNI or AVX2).
    Int8(Arc<PackedQ8>),
    /// GGML block-quantized weight (or a dense fallback) through candle.
    Candle(Arc<QMatMul>, usize),
}

impl Weights {
    /// Prepare `weight [n, k]` for inference at `precision`.
    pub fn new(weight: &Tensor, precision: Precision) -> Result<Self> {
        let (n, k) = weight.dims2()?;
        let dense_packable = gemm::available() && weight.device().is_cpu();
        match precision {
            Precision::F32 | Precision::F16 if dense_packable => {
                let w = weight.to_dtype(DType::F32)?.contiguous()?;
                let half = precision == Precision::F16;
                Ok(Weights::Packed(Arc::new(with_f32_slice(&w, |d| {
                    PackedWeight::pack_as(d, n, k, half)
                })?)))
            }
            Precision::F32 => Ok(Weights::Candle(
                Arc::new(QMatMul::Tensor(weight.clone())),
                n * k * 4,
            )),
            Precision::F16 => {
                // Values rounded to f16, computed in f32 by candle.
                let w = weight.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
                Ok(Weights::Candle(Arc::new(QMatMul::Tensor(w)), n * k * 2))
            }
            Precision::Q8_0 | Precision::Q4_0
                if gemm_i8::available() && weight.device().is_cpu() && k % gemm_i8::QK == 0 =>
            {
                let w = weight.to_dtype(DType::F32)?.contiguous()?;
                let int4 = precision == Precision::Q4_0;
                Ok(Weights::Int8(Arc::new(with_f32_slice(&w, |d| {
                    PackedQ8::pack_as(d, n, k, int4)
                })?)))
            }
            Precision::Q8_0 | Precision::Q4_0 => {
                let q = QTensor::quantize(weight, precision.ggml_dtype())?;
                let bytes = q.storage_size_in_bytes();
                Ok(Weights::Candle(Arc::new(QMatMul::from_qtensor(q)?), bytes))
            }
        }
    }

    /// `x[rows, k] · Wᵀ` → `[rows, n]` (f32).
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Weights::Packed(p) => matmul_packed(x, p),
            Weights::Int8(p) => {
                let (m, k) = x.dims2()?;
                if k != p.k {
                    candle_core::bail!("matmul: input width {k}, weight width {}", p.k);
                }
                let x = x.contiguous()?;
                // Zero-filled (calloc'd pages): m·n stores against the GEMM's m·n·k.
                let mut out = vec![0f32; m * p.n];
                with_f32_slice(&x, |d| gemm_i8::matmul_t(d, m, p, &mut out))?;
                Tensor::from_vec(out, (m, p.n), x.device())
            }
            Weights::Candle(q, _) => q.forward(&x.contiguous()?),
        }
    }

    /// Bytes the weight occupies in memory.
    pub fn bytes(&self) -> usize {
        match self {
            Weights::Packed(p) => p.bytes(),
            Weights::Int8(p) => p.bytes(),
            Weights::Candle(_, b) => *b,
        }
    }
}

/// A low-rank update `ΔW = scale · B A` (LoRA) applied beside a frozen weight.
#[derive(Clone)]
pub struct LowRank {
    /// `[rank, in]`
    pub a: Tensor,
    /// `[out, rank]`
    pub b: Tensor,
    pub scale: f64,
}

#[derive(Clone)]
pub struct Linear {
    /// `[out, in]`, as stored by transformers (empty once packed for inference).
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    out_dim: usize,
    /// The inference representation (no autograd through it).
    packed: Option<Weights>,
    /// A trainable low-rank update (training only; merged before packing).
    pub low_rank: Option<LowRank>,
    /// Training with a frozen weight: packed `W` and `Wᵀ`, so both the
    /// forward and the input gradient run on the fast GEMM.
    frozen: Option<FrozenMatmul>,
}

/// `x · Wᵀ` for a frozen `W` as a candle op whose backward returns only the
/// input gradient `g · W` (candle's matmul backward would also form the
/// unused `gᵀ · x` for the weight, doubling the cost).
#[derive(Clone)]
pub struct FrozenMatmul {
    w: Arc<PackedWeight>,
    w_t: Arc<PackedWeight>,
}

impl FrozenMatmul {
    /// `None` where the fast GEMM is unavailable. With `bf16` (and a CPU
    /// that runs bf16 panels, [`gemm::bf16_available`]) both products round
    /// their inputs to bf16 and accumulate in f32; otherwise they are f32.
    pub fn new(weight: &Tensor, bf16: bool) -> Result<Option<Self>> {
        if !gemm::available() || !weight.device().is_cpu() {
            return Ok(None);
        }
        let (n, k) = weight.dims2()?;
        let w = weight.to_dtype(DType::F32)?.contiguous()?;
        let w_t = w.t()?.contiguous()?;
        let pack = |d: &[f32], n, k| match bf16 && gemm::bf16_available() {
            true => PackedWeight::pack_bf16(d, n, k),
            false => PackedWeight::pack(d, n, k),
        };
        Ok(Some(Self {
            w: Arc::new(with_f32_slice(&w, |d| pack(d, n, k))?),
            w_t: Arc::new(with_f32_slice(&w_t, |d| pack(d, k, n))?),
        }))
    }

    /// The packed `W` (shared, e.g. as the inference head).
    pub fn weights(&self) -> Weights {
        Weights::Packed(self.w.clone())
    }

    /// `x [rows, k] · Wᵀ` with autograd to `x`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1(self.clone())
    }

    /// `g [rows, n] · W` → `[rows, k]` (no autograd).
    pub fn backward(&self, g: &Tensor) -> Result<Tensor> {
        matmul_packed(g, &self.w_t)
    }

    /// The packed `W` (`[n, k]`) and `Wᵀ`.
    pub(crate) fn packed(&self) -> &PackedWeight {
        &self.w
    }

    pub(crate) fn packed_t(&self) -> &PackedWeight {
        &self.w_t
    }
}

impl candle_core::CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (m, k) = layout.shape().dims2()?;
        if k != self.w.k || !layout.is_contiguous() {
            candle_core::bail!("frozen-matmul: input {m}×{k} for weight width {}", self.w.k);
        }
        let x = &storage.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + m * k];
        let mut out = vec![0f32; m * self.w.n];
        gemm::matmul_t(x, m, &self.w, &mut out);
        Ok((candle_core::CpuStorage::F32(out), (m, self.w.n).into()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(grad)?))
    }
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let out_dim = weight.dim(0).unwrap_or(0);
        Self {
            weight,
            bias,
            out_dim,
            packed: None,
            low_rank: None,
            frozen: None,
        }
    }

    /// Keep the weight frozen for training on the fast GEMM (see
    /// [`FrozenMatmul`]; `bf16` selects its mixed-precision products).
    pub fn freeze_for_training(&mut self, bf16: bool) -> Result<()> {
        self.frozen = FrozenMatmul::new(&self.weight, bf16)?;
        Ok(())
    }

    /// Fold the low-rank update into the weight: `W ← W + scale · B A`.
    pub fn merge_low_rank(&mut self) -> Result<()> {
        self.frozen = None;
        if let Some(lr) = self.low_rank.take() {
            let delta = (lr.b.matmul(&lr.a)? * lr.scale)?;
            self.weight = (&self.weight + delta.to_dtype(self.weight.dtype())?)?;
        }
        Ok(())
    }

    /// Switch to the inference representation at `precision`, releasing the
    /// dense weight.
    pub fn pack_for_inference(&mut self, precision: Precision) -> Result<()> {
        self.merge_low_rank()?;
        self.packed = Some(Weights::new(&self.weight, precision)?);
        self.weight = Tensor::zeros(0, DType::F32, self.weight.device())?;
        Ok(())
    }

    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self::new(weight, bias))
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Bytes of the weight as used for inference (dense f32 when unpacked).
    pub fn bytes(&self) -> usize {
        self.packed
            .as_ref()
            .map_or(self.weight.elem_count() * 4, Weights::bytes)
    }
}

impl Linear {
    /// Training on the fast GEMM: the frozen product and its low-rank update
    /// as one op (`frozen_lora`), when both apply; `None` otherwise.
    fn fused_low_rank(&self, flat: &Tensor) -> Result<Option<Tensor>> {
        match (&self.packed, &self.frozen, &self.low_rank) {
            (None, Some(f), Some(lr))
                if lr.a.dtype() == DType::F32 && lr.b.dtype() == DType::F32 =>
            {
                Ok(Some(super::frozen_lora::FrozenLora::apply(f, lr, flat)?))
            }
            _ => Ok(None),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let flat = x.reshape((rows, in_dim))?;
        let mut y = match self.fused_low_rank(&flat)? {
            Some(y) => y,
            None => {
                let y = match (&self.packed, &self.frozen) {
                    (Some(w), _) => w.matmul(&flat)?,
                    (None, Some(f)) => f.apply(&flat)?,
                    (None, None) => flat.matmul(&self.weight.t()?)?,
                };
                match &self.low_rank {
                    Some(lr) => (y + (flat.matmul(&lr.a.t()?)?.matmul(&lr.b.t()?)? * lr.scale)?)?,
                    None => y,
                }
            }
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out_shape = dims[..dims.len() - 1].to_vec();
        out_shape.push(self.out_dim);
        y.reshape(out_shape)
    }
}

/// `x[rows, k] · Wᵀ` through the packed GEMM.
pub fn matmul_packed(x: &Tensor, w: &PackedWeight) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    if k != w.k {
        candle_core::bail!("matmul: input width {k}, weight width {}", w.k);
    }
    let x = x.contiguous()?;
    // Zero-filled (calloc'd pages): m·n stores against the GEMM's m·n·k.
    let mut out = vec![0f32; m * w.n];
    with_f32_slice(&x, |d| gemm::matmul_t(d, m, w, &mut out))?;
    Tensor::from_vec(out, (m, w.n), x.device())
}

/// Run `f` over the f32 data of a contiguous CPU tensor without copying it.
pub fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if !t.is_contiguous() {
        candle_core::bail!("expected a contiguous tensor");
    }
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let data = cpu.as_slice::<f32>()?;
            let start = layout.start_offset();
            Ok(f(&data[start..start + t.elem_count()]))
        }
        _ => candle_core::bail!("expected a CPU tensor"),
    }
}
