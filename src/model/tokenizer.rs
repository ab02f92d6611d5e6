//! Tokenizer: built from a GGUF file's `tokenizer.ggml.*` metadata (byte-level
//! BPE with SmolLM's digit splitting) or read from an HF `tokenizer.json`,
//! with a table of every vocabulary entry's display text.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::gguf::GgufFile;
use super::ModelError;

/// A tokenizer plus the display text of every vocabulary entry.
pub struct TextTokenizer {
    inner: Tokenizer,
    display: Vec<String>,
    /// Ids of control tokens (`<|im_start|>` …), never counted as content.
    pub special_ids: Vec<u32>,
}

fn meta_strings(g: &GgufFile, key: &str) -> Result<Vec<String>, ModelError> {
    match g.meta(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ModelError::Tokenizer(format!("{key} holds a non-string"))),
            })
            .collect(),
        Some(_) => Err(ModelError::Tokenizer(format!("{key} is not an array"))),
        None => Err(ModelError::Tokenizer(format!(
            "the GGUF file has no {key}: no tokenizer to build"
        ))),
    }
}

impl TextTokenizer {
    /// Byte-level BPE from GGUF metadata (`tokenizer.ggml.model = gpt2`).
    pub fn from_gguf(g: &GgufFile) -> Result<Self, ModelError> {
        let model = g.meta_str("tokenizer.ggml.model").map_err(|_| {
            ModelError::Tokenizer("the GGUF file has no tokenizer.ggml.model".into())
        })?;
        if model != "gpt2" {
            return Err(ModelError::Unsupported(format!(
                "tokenizer model {model:?} (csplade builds byte-level BPE, \"gpt2\")"
            )));
        }
        let pre = g
            .meta_str("tokenizer.ggml.pre")
            .unwrap_or("default")
            .to_string();
        let tokens = meta_strings(g, "tokenizer.ggml.tokens")?;
        let merges = meta_strings(g, "tokenizer.ggml.merges")?;
        let types: Vec<i64> = match g.meta("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::I32(x) => *x as i64,
                    Value::U32(x) => *x as i64,
                    _ => 1,
                })
                .collect(),
            _ => vec![1; tokens.len()],
        };
        let vocab: ahash::AHashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Tokenizer(format!("merge {i} {m:?} has no space")))
            })
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| ModelError::Tokenizer(format!("building BPE: {e}")))?;
        let mut tk = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tok: PreTokenizerWrapper = match pre.as_str() {
            // SmolLM / StarCoder: every digit is its own word, then GPT-2 bytes.
            "smollm" | "starcoder" | "refact" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            _ => byte_level.into(),
        };
        tk.with_pre_tokenizer(Some(pre_tok));
        tk.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter())
            .filter(|(_, &ty)| ty == 3 || ty == 4)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        tk.add_special_tokens(special)
            .map_err(|e| ModelError::Tokenizer(format!("adding control tokens: {e}")))?;
        Self::finish(tk)
    }

    /// An HF `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        if !path.exists() {
            return Err(ModelError::Tokenizer(format!(
                "missing tokenizer: {} does not exist",
                path.display()
            )));
        }
        let bad =
            |e: &dyn std::fmt::Display| ModelError::Tokenizer(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(&e))?;
        // JSON syntax and templates first: the tokenizers crate panics on a
        // syntax error inside its `decoder` section, and when encoding with a
        // template that names a special token it does not define.
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&e))?;
        check_templates(&json).map_err(|e| bad(&e))?;
        let tk: Tokenizer = text.parse().map_err(|e| bad(&e))?;
        Self::finish(tk)
    }

    /// BERT's WordPiece tokenizer from a `vocab.txt` (lower-casing unless
    /// the `tokenizer_config.json` beside it says `do_lower_case: false`),
    /// with its `[CLS] … [SEP]` template.
    pub fn from_wordpiece_vocab(path: &Path) -> Result<Self, ModelError> {
        use tokenizers::models::wordpiece::WordPiece;
        use tokenizers::normalizers::bert::BertNormalizer;
        use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
        use tokenizers::processors::bert::BertProcessing;
        let err = |e: String| ModelError::Tokenizer(format!("{}: {e}", path.display()));
        let file = path.to_string_lossy().to_string();
        let wp = WordPiece::from_file(&file)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| err(e.to_string()))?;
        let lower = path
            .parent()
            .map(|d| d.join("tokenizer_config.json"))
            .and_then(|c| std::fs::read_to_string(c).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["do_lower_case"].as_bool())
            .unwrap_or(true);
        use tokenizers::Model;
        let id = |t: &str| {
            wp.token_to_id(t)
                .ok_or_else(|| err(format!("{t} is not in the vocabulary")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter(|t| wp.token_to_id(t).is_some())
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        let mut tk = Tokenizer::new(wp);
        tk.with_normalizer(Some(BertNormalizer::new(true, true, None, lower)))
            .map_err(|e| err(e.to_string()))?;
        tk.with_pre_tokenizer(Some(BertPreTokenizer));
        tk.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        tk.add_special_tokens(specials)
            .map_err(|e| err(e.to_string()))?;
        Self::finish(tk)
    }

    /// Ids of the special (control) tokens.
    pub fn special_ids(&self) -> &[u32] {
        &self.special_ids
    }

    fn finish(inner: Tokenizer) -> Result<Self, ModelError> {
        let n = inner.get_vocab_size(true);
        let mut display = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let text = inner.decode(&[id], false).unwrap_or_default();
            let text = if text.is_empty() || text.contains('\u{FFFD}') {
                inner.id_to_token(id).unwrap_or_default()
            } else {
                text
            };
            display.push(text);
        }
        let special_ids = inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        Ok(Self {
            inner,
            display,
            special_ids,
        })
    }

    /// Token ids of `text` (no BOS: SmolLM2 has `add_bos_token = false`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(format!("encoding text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Bytes of `text` covered by its first `tokens` tokens, when it has
    /// more than that (None: all of it is covered).
    pub fn prefix_bytes(&self, text: &str, tokens: usize) -> Option<usize> {
        let enc = self.inner.encode(text, false).ok()?;
        let offsets = enc.get_offsets();
        if offsets.len() <= tokens {
            return None;
        }
        Some(tokens.checked_sub(1).map_or(0, |last| offsets[last].1))
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    /// Display text of one vocabulary entry (`" Paris"`).
    pub fn token(&self, id: u32) -> &str {
        self.display
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("<?>")
    }

    pub fn vocab_size(&self) -> usize {
        self.display.len()
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// Every special token a `TemplateProcessing` post-processor (at any depth,
/// so inside a `Sequence` too) places must be among its `special_tokens`.
fn check_templates(v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::Object(o) => {
            if o.get("type").and_then(|t| t.as_str()) == Some("TemplateProcessing") {
                let defined = o.get("special_tokens").and_then(|s| s.as_object());
                for piece in ["single", "pair"]
                    .iter()
                    .filter_map(|k| o.get(*k).and_then(|p| p.as_array()))
                    .flatten()
                {
                    let Some(id) = piece.pointer("/SpecialToken/id") else {
                        continue;
                    };
                    let known = id
                        .as_str()
                        .is_some_and(|id| defined.is_some_and(|d| d.contains_key(id)));
                    if !known {
                        return Err(format!(
                            "post_processor: the template places special token {id} that its special_tokens do not define"
                        ));
                    }
                }
            }
            o.values().try_for_each(check_templates)
        }
        serde_json::Value::Array(a) => a.iter().try_for_each(check_templates),
        _ => Ok(()),
    }
}
