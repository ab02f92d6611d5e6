//! The encoder: text → token ids → backbone → per-position vocabulary
//! scores → pooled → `log(1 + ReLU(·))`, for any model family.
//!
//! A causal LM (CSPLADE, `causal`) reads a text under a variant (paper §3):
//! `causal` (standard mask), `echo` (the input repeated twice, pooling only
//! the second copy, so every pooled position has seen the whole text), `bi`
//! (causal mask removed); a masked LM (SPLADE, `masked`) reads it
//! bidirectionally between its special tokens. Texts are length-sorted into
//! batches and right-padded; padding never changes a vector. The LM head runs
//! only on pooled positions, in chunks of rows, so memory stays bounded. The
//! inference-free query side skips the backbone: a text is its own tokens,
//! weighted from the model's query table.

use serde::{Deserialize, Serialize};

use super::sparse::SparseVec;
use crate::model::{ModelError, ModelRef};

pub use crate::model::encoding::{Head, Variant};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    pub variant: Variant,
    pub head: Head,
    /// Maximum tokens kept from each text (echo then doubles them).
    pub max_len: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// A text longer than `max_len` tokens is read as up to this many
    /// consecutive windows of `max_len` tokens, each encoded on its own
    /// (echo repeats each window) and pooled by the term-wise maximum: the
    /// head's max over positions, carried across windows. 1 truncates.
    #[serde(default = "one_window")]
    pub windows: usize,
}

/// How much of a text an encoder reads: `max_len` tokens, in up to
/// `windows` windows of that length (the two settings of [`EncoderConfig`]
/// that an index records for its documents).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub max_len: usize,
    pub windows: usize,
}

/// One window: truncation (metadata written before windows existed).
pub(crate) fn one_window() -> usize {
    1
}

impl EncoderConfig {
    /// How much of a text this configuration reads.
    pub fn reading(&self) -> Reading {
        Reading {
            max_len: self.max_len,
            windows: self.windows,
        }
    }
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            variant: Variant::Causal,
            head: Head::RawLogits,
            max_len: crate::model::DEFAULT_MAX_LEN,
            batch_size: 8,
            windows: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("empty text: nothing to encode")]
    EmptyText,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{model} encodes the probe text {PROBE_TEXT:?} to {what}: its weights are corrupt or its adapter diverged")]
    Degenerate { model: String, what: String },
    #[error("{0} has no inference-free query table (an adapter written by `csplade train query-table` carries one)")]
    NoQueryTable(String),
}

/// A text every usable model encodes to some terms.
pub const PROBE_TEXT: &str = "what causes high blood pressure in adults";

/// Refuse a model whose expansion of [`PROBE_TEXT`] (the way it was trained
/// to encode) is empty or not finite: corrupt weights, or a diverged adapter.
pub fn check_probe<'m>(model: impl Into<ModelRef<'m>>) -> Result<(), EncodeError> {
    let model = model.into();
    let (variant, head) = model.trained_encoding();
    let enc = Encoder::new(
        model,
        EncoderConfig {
            variant,
            head,
            max_len: 64,
            batch_size: 1,
            windows: 1,
        },
    );
    let v = enc.encode_one(PROBE_TEXT)?.vector;
    let what = if v.weights.iter().any(|w| !w.is_finite()) {
        "non-finite weights"
    } else if v.is_empty() {
        "no term at all"
    } else {
        return Ok(());
    };
    Err(EncodeError::Degenerate {
        model: model.identity().id.clone(),
        what: what.into(),
    })
}

/// One encoded text.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The (possibly truncated) input tokens, without echo repetition: all
    /// windows' tokens.
    pub token_ids: Vec<u32>,
    /// Tokens dropped by `max_len` × `windows`.
    pub truncated_tokens: usize,
    pub vector: SparseVec,
}

/// One term of an expansion, for display.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpansionTerm {
    pub id: u32,
    pub token: String,
    pub weight: f32,
    /// The token occurs in the text itself (not only as an expansion).
    pub in_text: bool,
}

impl Encoded {
    /// The `k` heaviest terms (0 = all) with their tokens.
    pub fn terms(&self, tok: &crate::model::TextTokenizer, k: usize) -> Vec<ExpansionTerm> {
        // A word is the text's own whatever its leading space or case: the
        // first word of a text is tokenized without the space the same word
        // has later on.
        let input: std::collections::HashSet<String> = self
            .token_ids
            .iter()
            .map(|&id| surface(tok.token(id)))
            .collect();
        self.vector
            .top_k(k)
            .into_iter()
            .map(|(id, w)| {
                let token = tok.token(id).to_string();
                ExpansionTerm {
                    id,
                    in_text: input.contains(&surface(&token)),
                    token,
                    weight: w,
                }
            })
            .collect()
    }
}

/// A vocabulary entry's surface text, normalised so that one word compares
/// equal across vocabularies: without a leading space (BPE's `Ġ` is shown
/// as a space, SentencePiece's `▁`), without WordPiece's `##`, lower-cased.
pub fn surface(token: &str) -> String {
    let t = token.trim_start_matches([' ', '\u{2581}']);
    let t = t.strip_prefix("##").unwrap_or(t);
    t.trim_end().to_lowercase()
}

/// Input layout of one text under `variant` and the first pooled position:
/// `(ids, pool_start)`. Echo repeats the text and pools only the second copy.
pub fn input_layout(variant: Variant, ids: &[u32]) -> (Vec<u32>, usize) {
    match variant {
        Variant::Echo => {
            let mut v = Vec::with_capacity(ids.len() * 2);
            v.extend_from_slice(ids);
            v.extend_from_slice(ids);
            (v, ids.len())
        }
        _ => (ids.to_vec(), 0),
    }
}

/// A text as the inference-free query side sees it: each distinct token of
/// it, weighted from `table` (tokens weighted 0 drop out).
pub fn table_vector(table: &[f32], ids: &[u32]) -> SparseVec {
    SparseVec::from_pairs(
        ids.iter()
            .map(|&id| (id, table.get(id as usize).copied().unwrap_or(0.0)))
            .collect(),
    )
}

pub struct Encoder<'m> {
    pub model: ModelRef<'m>,
    pub config: EncoderConfig,
    /// Pool through the device-generic head ([`super::head`]) instead of the
    /// CPU's fused LM-head kernels: always on a GPU; tests set it on the CPU.
    pub generic: bool,
    /// Encode without the backbone: a text is its own tokens, each weighted
    /// from the model's query table (the inference-free query side).
    pub inference_free: bool,
}

impl<'m> Encoder<'m> {
    pub fn new(model: impl Into<ModelRef<'m>>, mut config: EncoderConfig) -> Self {
        let model = model.into();
        let generic = !model.on_cpu();
        // At least one window: zero would read nothing.
        config.windows = config.windows.max(1);
        Self {
            model,
            config,
            generic,
            inference_free: false,
        }
    }

    /// This encoder as the inference-free query side (`on`), which needs
    /// the model's query table.
    pub fn with_inference_free(mut self, on: bool) -> Result<Self, EncodeError> {
        if on && self.model.query_table().is_none() {
            return Err(EncodeError::NoQueryTable(self.model.identity().id.clone()));
        }
        self.inference_free = on;
        Ok(self)
    }

    /// Tokenize and truncate to [`Self::max_text_tokens`]; `(ids, tokens
    /// dropped)`.
    pub fn tokenize(&self, text: &str) -> Result<(Vec<u32>, usize), EncodeError> {
        if text.trim().is_empty() {
            return Err(EncodeError::EmptyText);
        }
        // Inference-free: the first word is read as inside a text (a BPE
        // vocabulary marks a word's leading space), as documents have it.
        let tok = self.model.tokenizer();
        let mut ids = if self.inference_free && !text.starts_with(char::is_whitespace) {
            tok.encode(&format!(" {text}"))?
        } else {
            tok.encode(text)?
        };
        if ids.is_empty() {
            return Err(EncodeError::EmptyText);
        }
        let cap = self.max_text_tokens();
        let dropped = ids.len().saturating_sub(cap);
        ids.truncate(cap);
        Ok((ids, dropped))
    }

    /// Tokens kept per text, bounded by the model context (halved for
    /// echo; a masked LM's special tokens take their positions).
    pub fn max_tokens(&self) -> usize {
        let ctx = self.model.max_positions();
        let ctx = match self.model {
            ModelRef::MaskedLm(m) => ctx.saturating_sub(m.frame.0.len() + m.frame.1.len()),
            ModelRef::Causal(_) if self.config.variant == Variant::Echo => ctx / 2,
            ModelRef::Causal(_) => ctx,
        };
        self.config.max_len.clamp(1, ctx.max(1))
    }

    /// Tokens read from each text over all its windows.
    pub fn max_text_tokens(&self) -> usize {
        self.max_tokens().saturating_mul(self.config.windows)
    }

    pub fn encode_one(&self, text: &str) -> Result<Encoded, EncodeError> {
        Ok(self.encode(&[text])?.remove(0))
    }

    /// Encode texts, batching by length; results in input order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>, EncodeError> {
        let prepared = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<Vec<u32>> = prepared.iter().map(|p| p.0.clone()).collect();
        let vectors = self.encode_ids(&ids)?;
        Ok(prepared
            .into_iter()
            .zip(vectors)
            .map(|((token_ids, truncated_tokens), vector)| Encoded {
                token_ids,
                truncated_tokens,
                vector,
            })
            .collect())
    }

    /// Encode pre-tokenized texts (already truncated to
    /// [`Self::max_text_tokens`]), in input order.
    pub fn encode_ids(&self, seqs: &[Vec<u32>]) -> Result<Vec<SparseVec>, EncodeError> {
        if seqs.iter().any(|s| s.is_empty()) {
            return Err(EncodeError::EmptyText);
        }
        if self.inference_free {
            let table = self
                .model
                .query_table()
                .ok_or_else(|| EncodeError::NoQueryTable(self.model.identity().id.clone()))?;
            return Ok(seqs.iter().map(|s| table_vector(table, s)).collect());
        }
        // Each text's windows (one for a text that fits), encoded as texts
        // of their own, then pooled back into their text by the maximum.
        let width = self.max_tokens();
        let (pieces, owner): (Vec<&[u32]>, Vec<usize>) = seqs
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.chunks(width).map(move |w| (w, i)))
            .unzip();
        let mut order: Vec<usize> = (0..pieces.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(pieces[i].len()));
        let mut out: Vec<Option<SparseVec>> = vec![None; seqs.len()];
        for chunk in order.chunks(self.config.batch_size.max(1)) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| pieces[i]).collect();
            for (&i, v) in chunk.iter().zip(self.encode_batch(&batch)?) {
                let text = &mut out[owner[i]];
                *text = Some(match text.take() {
                    Some(seen) => seen.max(&v),
                    None => v,
                });
            }
        }
        Ok(out.into_iter().map(|v| v.unwrap_or_default()).collect())
    }

    /// One padded forward pass over a batch (texts already tokenized and
    /// truncated), through the model's family.
    pub fn encode_batch(&self, batch: &[&[u32]]) -> Result<Vec<SparseVec>, EncodeError> {
        match self.model {
            ModelRef::Causal(m) => {
                super::causal::encode_batch(m, &self.config, self.generic, batch)
            }
            ModelRef::MaskedLm(m) => super::masked::encode_batch(m, batch),
        }
    }
}
