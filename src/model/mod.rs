//! The backbone and everything needed to load it: model fetch (pip + sha256),
//! GGUF and HF loaders, tokenizer, the Llama-family transformer.

pub mod activation;
pub mod adapter;
pub mod attention;
pub mod autograd;
mod disjoint;
pub mod encoding;
pub mod family;
pub mod fetch;
mod frozen_lora;
pub mod gemm;
pub mod gemm_i8;
pub mod gguf;
pub mod hf;
pub mod kernels;
pub mod layouts;
pub mod linear;
pub mod llama;
pub mod mlm;
pub mod mlp;
pub mod peft;
pub mod precision;
pub mod tiny;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use family::{Family, ModelRef, SparseModel};
pub use llama::{AttentionMask, Config, Llama, RopeStyle};
pub use tokenizer::TextTokenizer;

/// Why a model could not be fetched or loaded; callers tell these apart
/// (a missing file is fixable by fetching, a checksum mismatch is not).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Fetch(String),
    #[error("{}: sha256 is {actual}, expected {expected}; the file is corrupt or not the model csplade expects — delete it and run again to re-fetch", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Output(#[from] crate::data::output::OutputError),
}

impl From<crate::data::output::OutputRefused> for ModelError {
    fn from(e: crate::data::output::OutputRefused) -> Self {
        ModelError::Output(e.into())
    }
}

/// Where the model runs: the CPU (csplade's packed AVX-512 kernels, fused
/// training ops) or a CUDA GPU (candle's CUDA ops through the device-generic
/// code paths; needs a build with the `cuda` feature, see README "GPU").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
}

impl std::str::FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda),
            other => Err(format!("unknown device {other:?} (cpu or cuda)")),
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        })
    }
}

impl DeviceKind {
    /// Open the device (CUDA: GPU 0).
    pub fn open(self) -> Result<Device, ModelError> {
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => Device::new_cuda(0).map_err(|e| {
                ModelError::Unsupported(format!(
                    "CUDA GPU 0: {e} (CUDA needs a binary built with the `cuda` feature, scripts/build-cuda.sh, and the CUDA 13 libraries on the library path)"
                ))
            }),
        }
    }
}

/// What a model is, for index metadata and refusal of mismatched indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Human name: `smollm2-135m-instruct` or the file / directory name.
    pub id: String,
    /// sha256 of the weights (of the concatenated per-file hashes for HF dirs).
    pub sha256: String,
}

/// A loaded backbone with its tokenizer.
pub struct LoadedModel {
    pub llama: Llama,
    pub tokenizer: TextTokenizer,
    pub identity: ModelIdentity,
    /// The trained adapter merged into the weights, with how it encodes.
    pub adapter: Option<adapter::AdapterMeta>,
    /// The inference-free query side: a weight per vocabulary entry (a query
    /// is its own tokens, each weighted from this table), when the adapter
    /// carries one.
    pub query_table: Option<Vec<f32>>,
}

impl LoadedModel {
    pub fn config(&self) -> &Config {
        &self.llama.config
    }

    /// How this model encodes unless told otherwise: the variant and head
    /// its adapter was trained with, else causal and `logprob:6`.
    pub fn trained_encoding(
        &self,
    ) -> (
        crate::model::encoding::Variant,
        crate::model::encoding::Head,
    ) {
        match &self.adapter {
            Some(a) => (a.variant, a.head),
            None => (
                crate::model::encoding::Variant::Causal,
                crate::model::encoding::Head::LogProb { shift: 6.0 },
            ),
        }
    }
}

impl LoadedModel {
    /// The query-side prior this model is searched with unless told
    /// otherwise: what its adapter records, else none.
    pub fn query_prior(&self) -> crate::model::encoding::QueryPrior {
        self.adapter
            .as_ref()
            .map(|a| a.query_prior)
            .unwrap_or_default()
    }

    /// The pseudo-relevance feedback this model is searched with unless
    /// told otherwise: what its adapter records, else none.
    pub fn query_feedback(&self) -> crate::model::encoding::QueryFeedback {
        self.adapter
            .as_ref()
            .map(|a| a.query_feedback)
            .unwrap_or_default()
    }

    /// The document length (tokens) this model was trained on, which
    /// commands read unless told `--max-len`: its adapter's, else none.
    pub fn trained_max_len(&self) -> Option<usize> {
        self.adapter.as_ref().map(|a| a.max_len).filter(|&n| n > 0)
    }

    /// The passage split this model's indexes are built with unless told
    /// otherwise: what its adapter records, else none.
    pub fn passages(&self) -> Option<crate::data::passages::PassageSpec> {
        self.adapter.as_ref().and_then(|a| a.passages)
    }
}

/// Tokens read per text by a model whose adapter records no training length.
pub const DEFAULT_MAX_LEN: usize = 256;

/// The model every command uses unless told otherwise: the base with
/// csplade's trained adapter (assets/, see MODEL_CARD.md) merged in.
pub const DEFAULT_SPEC: &str = "default";
const DEFAULT_ADAPTER_NAME: &str = "csplade-echo.safetensors";
/// The shipped adapter, embedded in the binary.
pub static DEFAULT_ADAPTER: &[u8] = include_bytes!("../../assets/csplade-echo.safetensors");

/// A file-name-safe tag naming a model spec; `default` carries a hash of
/// the embedded adapter, so caches built with an older default are not reused.
pub fn spec_tag(spec: &str) -> String {
    use sha2::Digest;
    let safe = spec.replace(['/', '.', '+'], "_");
    if spec == DEFAULT_SPEC {
        let h = format!("{:x}", sha2::Sha256::digest(DEFAULT_ADAPTER));
        return format!("{safe}-{}", &h[..10]);
    }
    safe
}

/// `default` (base + shipped adapter), `base` (the fetched SmolLM2 GGUF), a
/// `.gguf` file, an HF directory, or any of these `+ADAPTER.safetensors`.
pub fn load(spec: &str, device: &Device) -> Result<LoadedModel, ModelError> {
    load_at(spec, device, crate::model::precision::Precision::F32, false)
}

/// [`load`] at a precision: f32, f16, q8_0 or q4_0 weights for every
/// projection, and for the embeddings / LM head too when `quantize_head`.
pub fn load_at(
    spec: &str,
    device: &Device,
    precision: crate::model::precision::Precision,
    quantize_head: bool,
) -> Result<LoadedModel, ModelError> {
    let mut m = load_unpacked(spec, device)?;
    m.llama.pack_for_inference(precision, quantize_head)?;
    Ok(m)
}

/// The tokenizer of a model spec (the model is read to find it).
pub fn load_tokenizer(spec: &str) -> Result<TextTokenizer, ModelError> {
    Ok(load_unpacked(spec, &Device::Cpu)?.tokenizer)
}

/// [`load`] without packing weights for the inference GEMM (for training,
/// where gradients flow through candle's matmul).
pub fn load_unpacked(spec: &str, device: &Device) -> Result<LoadedModel, ModelError> {
    if let Some((base, adapter_file)) = spec.rsplit_once('+') {
        let mut m = load_unpacked(base, device)?;
        let path = Path::new(adapter_file);
        if path.is_dir() {
            apply_peft(&mut m, path)?;
            return Ok(m);
        }
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        apply_adapter(&mut m, &bytes, path)?;
        return Ok(m);
    }
    if spec == DEFAULT_SPEC {
        let mut m = load_unpacked("base", device)?;
        apply_adapter(&mut m, DEFAULT_ADAPTER, Path::new(DEFAULT_ADAPTER_NAME))?;
        return Ok(m);
    }
    if spec == "base" {
        let path = fetch::base_model_path()?;
        let mut m = load_gguf(&path, device)?;
        m.identity.id = fetch::BASE_ID.to_string();
        return Ok(m);
    }
    let path = Path::new(spec);
    if path.is_dir() {
        hf::load(path, device)
    } else if path.is_file() {
        load_gguf(path, device)
    } else {
        Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such model file or directory (give `base`, a .gguf file or an HF model directory)",
            ),
        })
    }
}

/// The csplade adapter a model spec merges, read again (`default`: the
/// shipped one; `MODEL+FILE.safetensors`: that file); `None` for a spec
/// without one. A PEFT directory is refused: its layout is not csplade's.
pub fn adapter_of(spec: &str) -> Result<Option<adapter::Adapter>, ModelError> {
    if spec == DEFAULT_SPEC {
        return adapter::Adapter::from_bytes(DEFAULT_ADAPTER, Path::new(DEFAULT_ADAPTER_NAME))
            .map(Some);
    }
    match spec.rsplit_once('+') {
        Some((_, file)) if Path::new(file).is_dir() => Err(ModelError::Unsupported(format!(
            "{file}: a PEFT adapter; export it as a csplade adapter first"
        ))),
        Some((_, file)) => adapter::Adapter::read(Path::new(file)).map(Some),
        None => Ok(None),
    }
}

/// Merge the PEFT LoRA adapter in `dir` into `m` and name the result after both.
pub fn apply_peft(m: &mut LoadedModel, dir: &Path) -> Result<(), ModelError> {
    if !peft::is_peft_dir(dir) {
        return Err(ModelError::Format {
            path: dir.to_path_buf(),
            msg: format!(
                "an adapter directory holds {} and {} (a PEFT LoRA adapter)",
                peft::CONFIG_FILE,
                peft::WEIGHTS_FILE
            ),
        });
    }
    let (a, id_bytes) = peft::read(dir, &m.llama.config)?;
    a.merge_into(&mut m.llama, dir)?;
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "peft".into());
    name_merged(m, &name, &id_bytes, a.meta);
    Ok(())
}

/// After an adapter is merged: the model is named `base+name` and its
/// identity hashes the base's with the adapter's bytes.
fn name_merged(m: &mut LoadedModel, name: &str, adapter_bytes: &[u8], meta: adapter::AdapterMeta) {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(m.identity.sha256.as_bytes());
    h.update(adapter_bytes);
    m.identity = ModelIdentity {
        id: format!("{}+{name}", m.identity.id),
        // An adapter that encodes documents exactly as another model does
        // (it only adds a query table) takes that model's identity.
        sha256: meta
            .documents_as
            .clone()
            .unwrap_or_else(|| format!("{:x}", h.finalize())),
    };
    m.adapter = Some(meta);
}

/// Merge an adapter file's bytes into `m` and name the result after both.
pub fn apply_adapter(m: &mut LoadedModel, bytes: &[u8], origin: &Path) -> Result<(), ModelError> {
    let a = adapter::Adapter::from_bytes(bytes, origin)?;
    a.merge_into(&mut m.llama, origin)?;
    m.query_table = a.query_table(m.llama.config.vocab_size, origin)?;
    let name = origin
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "adapter".into());
    name_merged(m, &name, bytes, a.meta);
    Ok(())
}

/// A llama-architecture GGUF file with its embedded tokenizer.
pub fn load_gguf(path: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let mut g = gguf::GgufFile::open(path)?;
    let config = g.llama_config()?;
    let tokenizer = TextTokenizer::from_gguf(&g)?;
    if tokenizer.vocab_size() != config.vocab_size {
        return Err(ModelError::Format {
            path: path.to_path_buf(),
            msg: format!(
                "tokenizer has {} entries, model vocabulary {}",
                tokenizer.vocab_size(),
                config.vocab_size
            ),
        });
    }
    let mut tensors = g.hf_tensors(device)?;
    let adapted = gguf_adapter(&g, &mut tensors)?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, device);
    let mut llama = Llama::load(vb, &config).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        msg: format!("weights do not fit the llama config: {e}"),
    })?;
    // Its head tensors go where an adapter file's would, checked the same way.
    let (adapter, query_table) = match adapted {
        Some(a) => {
            a.merge_into(&mut llama, path)?;
            let table = a.query_table(config.vocab_size, path)?;
            (Some(a.meta), table)
        }
        None => (None, None),
    };
    let sha256 = fetch::sha256_cached(path)?;
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    Ok(LoadedModel {
        llama,
        tokenizer,
        identity: ModelIdentity { id, sha256 },
        adapter,
        query_table,
    })
}

/// Each `(name, value, min, max)` of a checkpoint's config within its
/// bounds (far above any released model), checked before anything divides
/// by a size or allocates from it.
pub(crate) fn sizes_within(sizes: &[(&str, usize, usize, usize)]) -> Result<(), String> {
    for &(name, value, min, max) in sizes {
        if !(min..=max).contains(&value) {
            return Err(format!("{name} {value}: must be from {min} to {max}"));
        }
    }
    Ok(())
}

/// The adapter a GGUF written from an adapted model carries (see
/// [`gguf::ADAPTER_META_KEY`]): its metadata and its head tensors (per-term
/// shifts, query table), taken out of `tensors`; `None` for any other GGUF.
fn gguf_adapter(
    g: &gguf::GgufFile,
    tensors: &mut std::collections::HashMap<String, Tensor>,
) -> Result<Option<adapter::Adapter>, ModelError> {
    let bad = |msg: String| ModelError::Format {
        path: g.path().to_path_buf(),
        msg,
    };
    let head: std::collections::HashMap<String, Tensor> = gguf::ADAPTER_TENSORS
        .iter()
        .filter_map(|(in_gguf, in_adapter)| {
            tensors
                .remove(*in_gguf)
                .map(|t| (in_adapter.to_string(), t))
        })
        .collect();
    if g.meta(gguf::ADAPTER_META_KEY).is_none() {
        if head.is_empty() {
            return Ok(None);
        }
        return Err(bad(format!(
            "csplade head tensors without their metadata ({})",
            gguf::ADAPTER_META_KEY
        )));
    }
    let json = g.meta_str(gguf::ADAPTER_META_KEY)?;
    let meta = serde_json::from_str(json).map_err(|e| {
        bad(format!(
            "{}: not csplade adapter metadata: {e}",
            gguf::ADAPTER_META_KEY
        ))
    })?;
    Ok(Some(adapter::Adapter {
        meta,
        tensors: head,
    }))
}
