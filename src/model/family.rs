//! Sparse encoders of any family behind one type: a causal LM (CSPLADE,
//! [`LoadedModel`]) or a masked LM with SPLADE pooling ([`MlmModel`]: BERT,
//! DistilBERT), either with an inference-free query table. The family is
//! read from the files of a model directory:
//!
//! - `modules.json` (sentence-transformers' SparseEncoder): a fill-mask
//!   Transformer + `SpladePooling`, or a `Router` whose query route is a
//!   `SparseStaticEmbedding` and whose document route is the former;
//! - `config.json` of a `BertForMaskedLM` / `DistilBertForMaskedLM`, with
//!   OpenSearch's `idf.json` beside it for an inference-free query side;
//! - `config.json` of a Llama, Mistral or Qwen2 causal LM (CSPLADE).
//!
//! `--family` overrides what the files suggest.

use std::path::Path;

use candle_core::Device;
use sha2::{Digest, Sha256};

use super::encoding::{Head, QueryFeedback, QueryPrior, Variant};
use super::layouts;
use super::mlm::{self, MaskedLm};
use super::precision::Precision;
use super::{fetch, LoadedModel, ModelError, ModelIdentity, TextTokenizer};
use crate::data::passages::PassageSpec;

/// Which kind of sparse encoder a model directory holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    /// Read it from the files.
    #[default]
    Auto,
    /// A causal LM (CSPLADE): Llama, Mistral, Qwen2.
    Causal,
    /// A masked LM with SPLADE pooling.
    Splade,
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Family::Auto),
            "causal" | "csplade" => Ok(Family::Causal),
            "splade" | "mlm" => Ok(Family::Splade),
            other => Err(format!("unknown family {other:?} (auto, causal, splade)")),
        }
    }
}

/// A masked LM with its SPLADE pooling and, for an inference-free encoder,
/// its query table.
pub struct MlmModel {
    pub mlm: MaskedLm,
    /// Tokenizes without special tokens; `frame` adds them around a text.
    pub tokenizer: TextTokenizer,
    /// Special-token ids put before and after a text (`[CLS]`, `[SEP]`).
    pub frame: (Vec<u32>, Vec<u32>),
    /// Every special token's id (zeroed by `Head::Splade { zero_special }`).
    pub special_ids: Vec<u32>,
    pub identity: ModelIdentity,
    /// The pooling the checkpoint names (`Head::Splade`).
    pub head: Head,
    pub query_table: Option<Vec<f32>>,
}

/// Any sparse encoder csplade opens.
pub enum SparseModel {
    Causal(Box<LoadedModel>),
    MaskedLm(Box<MlmModel>),
}

/// A borrowed [`SparseModel`] (or a plain causal model), what an encoder
/// holds.
#[derive(Clone, Copy)]
pub enum ModelRef<'m> {
    Causal(&'m LoadedModel),
    MaskedLm(&'m MlmModel),
}

impl<'m> From<&'m LoadedModel> for ModelRef<'m> {
    fn from(m: &'m LoadedModel) -> Self {
        ModelRef::Causal(m)
    }
}

impl<'m> From<&'m MlmModel> for ModelRef<'m> {
    fn from(m: &'m MlmModel) -> Self {
        ModelRef::MaskedLm(m)
    }
}

impl<'m> From<&'m SparseModel> for ModelRef<'m> {
    fn from(m: &'m SparseModel) -> Self {
        m.as_ref()
    }
}

impl<'m> From<&'m std::sync::Arc<SparseModel>> for ModelRef<'m> {
    fn from(m: &'m std::sync::Arc<SparseModel>) -> Self {
        m.as_ref().as_ref()
    }
}

impl<'m> ModelRef<'m> {
    pub fn identity(self) -> &'m ModelIdentity {
        match self {
            ModelRef::Causal(m) => &m.identity,
            ModelRef::MaskedLm(m) => &m.identity,
        }
    }

    pub fn tokenizer(self) -> &'m TextTokenizer {
        match self {
            ModelRef::Causal(m) => &m.tokenizer,
            ModelRef::MaskedLm(m) => &m.tokenizer,
        }
    }

    /// Dimensions of the expansions: the vocabulary of the head.
    pub fn vocab_size(self) -> usize {
        match self {
            ModelRef::Causal(m) => m.config().vocab_size,
            ModelRef::MaskedLm(m) => m.mlm.config.vocab_size,
        }
    }

    /// Positions the backbone reads at most.
    pub fn max_positions(self) -> usize {
        match self {
            ModelRef::Causal(m) => m.config().max_position_embeddings,
            ModelRef::MaskedLm(m) => m.mlm.config.max_position_embeddings,
        }
    }

    pub fn query_table(self) -> Option<&'m [f32]> {
        match self {
            ModelRef::Causal(m) => m.query_table.as_deref(),
            ModelRef::MaskedLm(m) => m.query_table.as_deref(),
        }
    }

    /// How the model encodes unless told otherwise: a causal model's
    /// adapter's variant and head; a masked LM reads bidirectionally with
    /// its checkpoint's SPLADE pooling.
    pub fn trained_encoding(self) -> (Variant, Head) {
        match self {
            ModelRef::Causal(m) => m.trained_encoding(),
            ModelRef::MaskedLm(m) => (Variant::Bi, m.head),
        }
    }

    pub fn query_prior(self) -> QueryPrior {
        match self {
            ModelRef::Causal(m) => m.query_prior(),
            ModelRef::MaskedLm(_) => QueryPrior::None,
        }
    }

    pub fn query_feedback(self) -> QueryFeedback {
        match self {
            ModelRef::Causal(m) => m.query_feedback(),
            ModelRef::MaskedLm(_) => QueryFeedback::None,
        }
    }

    /// Tokens read per text unless told otherwise: the document length a
    /// causal model's adapter was trained on, else [`super::DEFAULT_MAX_LEN`]
    /// (a masked LM's checkpoint records none).
    pub fn max_len(self) -> usize {
        match self {
            ModelRef::Causal(m) => m.trained_max_len(),
            ModelRef::MaskedLm(_) => None,
        }
        .unwrap_or(super::DEFAULT_MAX_LEN)
    }

    /// The passage split the model's indexes use unless told otherwise.
    pub fn passages(self) -> Option<PassageSpec> {
        match self {
            ModelRef::Causal(m) => m.passages(),
            ModelRef::MaskedLm(_) => None,
        }
    }

    /// The model is an inference-free encoder: its queries go through its
    /// table unless told otherwise (OpenSearch's and sentence-transformers'
    /// layouts; csplade's own adapters keep the full query encoder).
    pub fn inference_free_by_default(self) -> bool {
        matches!(self, ModelRef::MaskedLm(m) if m.query_table.is_some())
    }

    pub fn weight_bytes(self) -> usize {
        match self {
            ModelRef::Causal(m) => m.llama.weight_bytes(),
            ModelRef::MaskedLm(m) => m.mlm.weight_bytes(),
        }
    }

    pub fn on_cpu(self) -> bool {
        match self {
            ModelRef::Causal(m) => m.llama.device().is_cpu(),
            ModelRef::MaskedLm(m) => m.mlm.device().is_cpu(),
        }
    }

    /// `masked LM (bert)`, `causal LM (llama)` …, for messages.
    pub fn family_name(self) -> &'static str {
        match self {
            ModelRef::Causal(_) => "causal LM",
            ModelRef::MaskedLm(m) => match m.mlm.config.arch {
                mlm::Arch::Bert => "masked LM (BERT)",
                mlm::Arch::DistilBert => "masked LM (DistilBERT)",
            },
        }
    }
}

impl SparseModel {
    pub fn as_ref(&self) -> ModelRef<'_> {
        match self {
            SparseModel::Causal(m) => ModelRef::Causal(m),
            SparseModel::MaskedLm(m) => ModelRef::MaskedLm(m),
        }
    }

    pub fn identity(&self) -> &ModelIdentity {
        self.as_ref().identity()
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        self.as_ref().tokenizer()
    }

    pub fn vocab_size(&self) -> usize {
        self.as_ref().vocab_size()
    }

    pub fn trained_encoding(&self) -> (Variant, Head) {
        self.as_ref().trained_encoding()
    }

    pub fn query_prior(&self) -> QueryPrior {
        self.as_ref().query_prior()
    }

    pub fn query_feedback(&self) -> QueryFeedback {
        self.as_ref().query_feedback()
    }

    pub fn passages(&self) -> Option<PassageSpec> {
        self.as_ref().passages()
    }

    pub fn max_len(&self) -> usize {
        self.as_ref().max_len()
    }

    pub fn inference_free_by_default(&self) -> bool {
        self.as_ref().inference_free_by_default()
    }

    /// The causal model, where one is needed (training, adapters, PEFT).
    pub fn causal(&self) -> Result<&LoadedModel, ModelError> {
        match self {
            SparseModel::Causal(m) => Ok(m),
            SparseModel::MaskedLm(m) => Err(ModelError::Unsupported(format!(
                "{} is a {}; this needs a causal LM",
                m.identity.id,
                self.as_ref().family_name()
            ))),
        }
    }
}

/// Open any model spec at `precision`: a masked-LM directory (or a
/// sentence-transformers layout) as a SPLADE encoder, everything else as a
/// causal LM ([`super::load_at`]).
pub fn open(
    spec: &str,
    device: &Device,
    precision: Precision,
    quantize_head: bool,
    family: Family,
) -> Result<SparseModel, ModelError> {
    let dir = Path::new(spec);
    let masked = match family {
        Family::Causal => false,
        Family::Splade => true,
        Family::Auto => !spec.contains('+') && dir.is_dir() && detect_masked(dir)?,
    };
    if !masked {
        return Ok(SparseModel::Causal(Box::new(super::load_at(
            spec,
            device,
            precision,
            quantize_head,
        )?)));
    }
    let mut m = load_masked(dir, device)?;
    m.mlm.pack_for_inference(precision, quantize_head)?;
    Ok(SparseModel::MaskedLm(Box::new(m)))
}

/// Whether `dir` holds a masked-LM encoder (refusing what csplade cannot
/// read, by name).
fn detect_masked(dir: &Path) -> Result<bool, ModelError> {
    if dir.join("modules.json").is_file() {
        return Ok(true);
    }
    let cfg = dir.join("config.json");
    if !cfg.is_file() {
        return Ok(false);
    }
    let text = read(&cfg)?;
    Ok(mlm::is_masked_lm(&text))
}

pub(super) fn read(p: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(p).map_err(|source| ModelError::Io {
        path: p.to_path_buf(),
        source,
    })
}

pub(super) fn format_err(p: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: p.to_path_buf(),
        msg: msg.into(),
    }
}

/// `[CLS] … [SEP]` (or the tokenizer's own template) as (before, after).
fn frame(tok: &TextTokenizer, origin: &Path) -> Result<(Vec<u32>, Vec<u32>), ModelError> {
    let inner = tok.inner();
    let with = inner
        .encode("a", true)
        .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", origin.display())))?;
    let without = inner
        .encode("a", false)
        .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", origin.display())))?;
    let (w, o) = (with.get_ids(), without.get_ids());
    let at = (0..=w.len().saturating_sub(o.len()))
        .find(|&i| w[i..].starts_with(o))
        .ok_or_else(|| {
            ModelError::Tokenizer(format!(
                "{}: cannot find where its template puts the text",
                origin.display()
            ))
        })?;
    Ok((w[..at].to_vec(), w[at + o.len()..].to_vec()))
}

fn load_masked(dir: &Path, device: &Device) -> Result<MlmModel, ModelError> {
    let lay = layouts::layout(dir)?;
    let cfg_path = lay.mlm_dir.join("config.json");
    let text = read(&cfg_path)?;
    if !mlm::is_masked_lm(&text) {
        return Err(ModelError::Unsupported(format!(
            "{}: not a BERT or DistilBERT masked LM (csplade's SPLADE family reads BertForMaskedLM and DistilBertForMaskedLM)",
            cfg_path.display()
        )));
    }
    let config = mlm::parse_config(&text, &cfg_path)?;
    let tokenizer = layouts::tokenizer(&lay.mlm_dir)?;
    if tokenizer.vocab_size() != config.vocab_size {
        return Err(format_err(
            &cfg_path,
            format!(
                "vocabulary of {} entries, but the tokenizer in {} has {}",
                config.vocab_size,
                lay.mlm_dir.display(),
                tokenizer.vocab_size()
            ),
        ));
    }
    let weights = layouts::weight_files(&lay.mlm_dir)?;
    let mlm = mlm::load_weights(&weights, &config, device, &lay.mlm_dir)?;
    let frame = frame(&tokenizer, &lay.mlm_dir)?;
    let special_ids = tokenizer.special_ids().to_vec();
    let mut h = Sha256::new();
    h.update(format!("{}", lay.head).as_bytes());
    for w in &weights {
        h.update(fetch::sha256_cached(w)?.as_bytes());
    }
    let query_table = match &lay.query {
        None => None,
        Some(layouts::QuerySide::Static(d)) => Some(layouts::static_table(d, &tokenizer, &mut h)?),
        Some(layouts::QuerySide::IdfJson(p)) => Some(layouts::idf_table(p, &tokenizer, &mut h)?),
    };
    let id = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "splade".into());
    Ok(MlmModel {
        mlm,
        tokenizer,
        frame,
        special_ids,
        identity: ModelIdentity {
            id,
            sha256: format!("{:x}", h.finalize()),
        },
        head: lay.head,
        query_table,
    })
}
