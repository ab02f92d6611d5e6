//! One linear layer over a dense weight: `y = x Wᵀ (+ b)`, flattening every
//! leading dimension into one GEMM (candle's batched path would run one small
//! GEMM per batch row).

use std::sync::Arc;

use candle_core::{Module, Result, Storage, Tensor};
use candle_nn::VarBuilder;

use super::gemm::{self, PackedWeight};

#[derive(Clone)]
pub struct Linear {
    /// `[out, in]`, as stored by transformers.
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// The weight packed for the inference GEMM (no autograd through it).
    packed: Option<Arc<PackedWeight>>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            packed: None,
        }
    }

    /// Pack the weight for the fast inference GEMM when the CPU has one.
    pub fn pack_for_inference(&mut self) -> Result<()> {
        self.packed = pack(&self.weight)?;
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
        self.weight.dim(0).unwrap_or(0)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let flat = x.reshape((rows, in_dim))?;
        let mut y = match &self.packed {
            Some(p) => matmul_packed(&flat, p)?,
            None => flat.matmul(&self.weight.t()?)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out_shape = dims[..dims.len() - 1].to_vec();
        out_shape.push(self.weight.dim(0)?);
        y.reshape(out_shape)
    }
}

/// Pack a `[n, k]` f32 CPU weight, or `None` where the fast GEMM is absent.
pub fn pack(weight: &Tensor) -> Result<Option<Arc<PackedWeight>>> {
    if !gemm::available() || !weight.device().is_cpu() || weight.dtype() != candle_core::DType::F32
    {
        return Ok(None);
    }
    let (n, k) = weight.dims2()?;
    let w = weight.contiguous()?;
    Ok(Some(Arc::new(with_f32_slice(&w, |d| {
        PackedWeight::pack(d, n, k)
    })?)))
}

/// `x[rows, k] · Wᵀ` through the packed GEMM.
pub fn matmul_packed(x: &Tensor, w: &PackedWeight) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    if k != w.k {
        candle_core::bail!("matmul: input width {k}, weight width {}", w.k);
    }
    let x = x.contiguous()?;
    let mut out = Vec::with_capacity(m * w.n);
    // SAFETY: matmul_t writes every element of `out` before it is read.
    #[allow(clippy::uninit_vec)]
    unsafe {
        out.set_len(m * w.n)
    };
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
