//! Encoders side by side. An encoder is a model (with its adapter), a
//! variant, a head and a precision, written `MODEL[:VARIANT][:HEAD][:PRECISION]`
//! (`default:echo:logprob:5:q8_0`, `base:causal`, `default:q4_0`), or with
//! `:inference-free` the model's query table instead of its forward pass for
//! the text; what is left out comes from the model's adapter (variant, head)
//! or is f32. Named
//! presets give the comparisons the paper makes: the three variants of a
//! model, the base against the trained model, and the four precisions.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use serde::Serialize;

use crate::encode::encoder::Reading;
use crate::encode::{Encoder, EncoderConfig, ExpansionTerm, Head, SparseVec, Variant};
use crate::index::IndexError;
use crate::model::{ModelError, ModelRef, SparseModel};
use crate::quant::{Precision, VectorDiff};
use crate::search::{Backend, LsrIndex, QueryFeedback, QueryPrior, QueryScoring};

/// Stored (in config files, JSON) in its written form.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EncoderSpec {
    pub model: String,
    pub variant: Option<Variant>,
    pub head: Option<Head>,
    pub precision: Precision,
    /// The text through the model's query table, not its forward pass.
    pub inference_free: bool,
}

impl EncoderSpec {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            variant: None,
            head: None,
            precision: Precision::F32,
            inference_free: false,
        }
    }

    /// The encoder this spec names over its loaded `model`.
    pub fn encoder<'m>(
        &self,
        model: impl Into<ModelRef<'m>>,
        reading: Reading,
    ) -> Result<Encoder<'m>, crate::encode::EncodeError> {
        let model = model.into();
        Encoder::new(model, self.config(model, reading)).with_inference_free(self.inference_free)
    }

    /// How `model` (loaded from this spec) encodes: the spec's choices, then
    /// what its adapter was trained with.
    pub fn config<'m>(&self, model: impl Into<ModelRef<'m>>, reading: Reading) -> EncoderConfig {
        let (variant, head) = model.into().trained_encoding();
        EncoderConfig {
            variant: self.variant.unwrap_or(variant),
            head: self.head.unwrap_or(head),
            max_len: reading.max_len,
            batch_size: 8,
            windows: reading.windows,
        }
    }
}

impl FromStr for EncoderSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let model = parts.next().filter(|m| !m.is_empty()).ok_or_else(|| {
            format!("encoder {s:?}: starts with a model (default, base, a file or MODEL+ADAPTER)")
        })?;
        let mut spec = EncoderSpec::new(model);
        let rest: Vec<&str> = parts.collect();
        // Each setting once: `echo:bi` or `q8_0:f16` is a mistake, not "the last wins".
        let mut seen: Vec<&str> = Vec::new();
        let mut once = |what: &'static str| {
            if seen.contains(&what) {
                return Err(format!("encoder {s:?}: names its {what} twice"));
            }
            seen.push(what);
            Ok(())
        };
        let mut i = 0;
        while i < rest.len() {
            let p = rest[i];
            if let Ok(v) = p.parse::<Variant>() {
                once("variant")?;
                spec.variant = Some(v);
            } else if p == "raw" {
                once("head")?;
                spec.head = Some(Head::RawLogits);
            } else if p == "logprob" {
                once("head")?;
                let c = rest
                    .get(i + 1)
                    .ok_or_else(|| format!("encoder {s:?}: logprob needs its shift (logprob:5)"))?;
                spec.head = Some(format!("logprob:{c}").parse()?);
                i += 1;
            } else if let Ok(prec) = p.parse::<Precision>() {
                once("precision")?;
                spec.precision = prec;
            } else if p == "inference-free" {
                once("query side")?;
                spec.inference_free = true;
            } else {
                return Err(format!(
                    "encoder {s:?}: {p:?} is not a variant (causal, echo, bi), a head (raw, logprob:C), a precision (f32, f16, q8_0, q4_0) or inference-free"
                ));
            }
            i += 1;
        }
        Ok(spec)
    }
}

impl TryFrom<String> for EncoderSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<EncoderSpec> for String {
    fn from(s: EncoderSpec) -> String {
        s.to_string()
    }
}

impl fmt::Display for EncoderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.model)?;
        if let Some(v) = self.variant {
            write!(f, ":{v}")?;
        }
        if let Some(h) = self.head {
            write!(f, ":{h}")?;
        }
        if self.precision != Precision::F32 {
            write!(f, ":{}", self.precision)?;
        }
        if self.inference_free {
            f.write_str(":inference-free")?;
        }
        Ok(())
    }
}

/// The ids of the `k` best documents of `idx` for the query `expansion`,
/// weighed by `prior` and extended by `feedback` (exact scorer).
pub fn top_documents(
    idx: &LsrIndex,
    expansion: &SparseVec,
    (prior, feedback): (QueryPrior, QueryFeedback),
    k: usize,
) -> Result<Vec<String>, IndexError> {
    let (scored, _) = idx.scored_query(expansion, prior, feedback, Backend::Exact)?;
    Ok(idx
        .search(&scored, k, Backend::Exact)?
        .into_iter()
        .map(|h| h.doc_id)
        .collect())
}

/// Named comparisons: (name, what it compares).
pub const PRESETS: [(&str, &str); 5] = [
    ("variants", "causal / echo / bi of the model"),
    (
        "base-vs-trained",
        "the untrained base against the model, encoding the same way",
    ),
    ("precisions", "f32 / f16 / q8_0 / q4_0 of the model"),
    (
        "query-sides",
        "the model's query encoder against its inference-free query table",
    ),
    (
        "families",
        "the model against a second one of any family (second_model in config.toml, or --second)",
    ),
];

/// The encoders of preset `name` for `model` (`None` for an unknown name).
/// `trained` is how the model encodes (its adapter's variant and head);
/// `second` is the model `families` sets beside it (a SPLADE checkpoint,
/// say), if one is named.
pub fn preset(
    name: &str,
    model: &str,
    trained: (Variant, Head),
    second: Option<&str>,
) -> Option<Vec<EncoderSpec>> {
    let with = |f: &dyn Fn(&mut EncoderSpec)| {
        let mut s = EncoderSpec::new(model);
        f(&mut s);
        s
    };
    Some(match name {
        "variants" => [Variant::Causal, Variant::Echo, Variant::Bi]
            .map(|v| with(&|s| s.variant = Some(v)))
            .to_vec(),
        "base-vs-trained" => {
            let base = model
                .split_once('+')
                .map(|(b, _)| b.to_string())
                .unwrap_or_else(|| "base".to_string());
            let mut b = EncoderSpec::new(&base);
            b.variant = Some(trained.0);
            b.head = Some(trained.1);
            vec![b, EncoderSpec::new(model)]
        }
        "precisions" => crate::quant::ALL
            .map(|p| with(&|s| s.precision = p))
            .to_vec(),
        "query-sides" => vec![with(&|_| ()), with(&|s| s.inference_free = true)],
        "families" => vec![EncoderSpec::new(model), EncoderSpec::new(second?)],
        _ => return None,
    })
}

/// Load the model of `spec` on `device` at its precision (any family).
pub fn load(spec: &EncoderSpec, device: &candle_core::Device) -> Result<SparseModel, ModelError> {
    crate::model::family::open(
        &spec.model,
        device,
        spec.precision,
        false,
        crate::model::Family::Auto,
    )
}

/// Loaded models by (model spec, precision): encoders that differ only in
/// variant or head share one. With `quantize_head`, the embeddings and LM
/// head take each encoder's precision too.
pub struct Models {
    device: candle_core::Device,
    quantize_head: bool,
    family: crate::model::Family,
    loaded: std::collections::HashMap<(String, Precision), SparseModel>,
}

impl Models {
    pub fn new(
        device: candle_core::Device,
        quantize_head: bool,
        family: crate::model::Family,
    ) -> Self {
        Self {
            device,
            quantize_head,
            family,
            loaded: Default::default(),
        }
    }

    /// The model of encoder `s`, loaded (and probed) on first use.
    pub fn get(&mut self, s: &EncoderSpec) -> anyhow::Result<&SparseModel> {
        use anyhow::Context;
        let key = (s.model.clone(), s.precision);
        if !self.loaded.contains_key(&key) {
            let m = crate::model::family::open(
                &s.model,
                &self.device,
                s.precision,
                self.quantize_head,
                self.family,
            )
            .with_context(|| format!("loading the model of encoder {s}"))?;
            crate::encode::encoder::check_probe(&m)?;
            self.loaded.insert(key.clone(), m);
        }
        Ok(&self.loaded[&key])
    }

    /// The model of an encoder already loaded with [`Models::get`].
    ///
    /// # Panics
    /// If it was not loaded: a caller's ordering error, not an input's.
    pub fn loaded(&self, s: &EncoderSpec) -> &SparseModel {
        &self.loaded[&(s.model.clone(), s.precision)]
    }
}

/// Whether `idx` holds documents encoded the way `model` with `config`
/// encodes queries (the same weights, variant and head; the documents'
/// precision may differ from the queries').
pub fn index_serves<'m>(
    idx: &LsrIndex,
    model: impl Into<ModelRef<'m>>,
    config: &EncoderConfig,
) -> bool {
    idx.meta.model.sha256 == model.into().identity().sha256
        && idx.meta.variant == config.variant
        && idx.meta.head == config.head
}

pub use crate::encode::encoder::surface;

/// Whether two tokenizers have the same vocabulary, entry by entry.
pub fn same_vocabulary(a: &crate::model::TextTokenizer, b: &crate::model::TextTokenizer) -> bool {
    a.vocab_size() == b.vocab_size() && (0..a.vocab_size() as u32).all(|i| a.token(i) == b.token(i))
}

/// How two encoders' vocabularies line up, when they differ.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Alignment {
    /// The first encoder's top terms with no entry of the same surface text
    /// in this encoder's vocabulary.
    pub first_only: Vec<String>,
    /// This encoder's top terms with no counterpart in the first's vocabulary.
    pub this_only: Vec<String>,
}

/// Expansions over different vocabularies as vectors over one space of
/// surface texts (weights of entries sharing a surface text: the largest),
/// and which of each side's top `k` terms the other vocabulary cannot express.
fn align(
    a: &SparseVec,
    tok_a: &crate::model::TextTokenizer,
    b: &SparseVec,
    tok_b: &crate::model::TextTokenizer,
    k: usize,
) -> (SparseVec, SparseVec, Alignment) {
    let mut keys: std::collections::HashMap<String, u32> = Default::default();
    let mut rekey = |v: &SparseVec, tok: &crate::model::TextTokenizer| {
        let pairs: Vec<(u32, f32)> = v
            .iter()
            .map(|(id, w)| {
                let n = keys.len() as u32;
                (*keys.entry(surface(tok.token(id))).or_insert(n), w)
            })
            .collect();
        SparseVec::from_pairs(pairs)
    };
    let (ra, rb) = (rekey(a, tok_a), rekey(b, tok_b));
    let vocab = |tok: &crate::model::TextTokenizer| -> HashSet<String> {
        (0..tok.vocab_size() as u32)
            .map(|i| surface(tok.token(i)))
            .collect()
    };
    let (va, vb) = (vocab(tok_a), vocab(tok_b));
    let missing = |v: &SparseVec, tok: &crate::model::TextTokenizer, other: &HashSet<String>| {
        v.top_k(k)
            .into_iter()
            .map(|(id, _)| tok.token(id).to_string())
            .filter(|t| !other.contains(&surface(t)))
            .collect()
    };
    let al = Alignment {
        first_only: missing(a, tok_a, &vb),
        this_only: missing(b, tok_b, &va),
    };
    (ra, rb, al)
}

/// One encoder's view of a text.
#[derive(Clone, Debug, Serialize)]
pub struct EncoderRun {
    pub encoder: EncoderSpec,
    /// How it encoded (the spec with the adapter's defaults filled in).
    pub variant: Variant,
    pub head: Head,
    pub terms: Vec<ExpansionTerm>,
    pub active: usize,
    pub latency_ms: f64,
    pub model_bytes: usize,
    /// Against the first encoder's expansion (absent for the first); terms
    /// aligned by surface text where the vocabularies differ.
    pub vs_first: Option<VectorDiff>,
    /// Where this encoder's vocabulary differs from the first's: the top
    /// terms either side cannot express.
    pub alignment: Option<Alignment>,
    /// Top-10 document ids, when an index of this encoder's documents is open.
    pub ranking: Option<Vec<String>>,
    /// The query prior and feedback that ranking was scored with.
    pub prior: Option<String>,
    pub feedback: Option<String>,
    /// Ranking agreement with the first encoder: overlap@10 and Kendall's τ.
    pub rank_overlap10: Option<f64>,
    pub kendall_tau: Option<f64>,
}

/// The same text under several encoders.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub text: String,
    pub runs: Vec<EncoderRun>,
}

/// Ranking agreement of `b` with the reference `a`: (overlap@10, τ).
pub fn agreement(a: &[String], b: &[String]) -> Option<(f64, f64)> {
    if a.is_empty() {
        return None;
    }
    let set: HashSet<&String> = a.iter().collect();
    let overlap = b.iter().filter(|d| set.contains(d)).count() as f64 / a.len() as f64;
    Some((overlap, crate::quant::kendall_tau(a, b)))
}

/// Encode `text` with every encoder (each loaded model with its spec) and,
/// where `index_of(i)` gives an index serving encoder i, rank it there as
/// `scoring` resolves for that encoder.
pub fn compare_text<'a>(
    text: &str,
    encoders: &[(EncoderSpec, ModelRef<'_>)],
    (reading, scoring): (Reading, QueryScoring),
    top_terms: usize,
    index_of: impl Fn(usize) -> Option<&'a LsrIndex>,
) -> anyhow::Result<Comparison> {
    let mut runs: Vec<EncoderRun> = Vec::new();
    let mut first: Option<(SparseVec, Option<Vec<String>>, &crate::model::TextTokenizer)> = None;
    for (i, (spec, model)) in encoders.iter().enumerate() {
        let model = *model;
        let config = spec.config(model, reading);
        let enc = spec.encoder(model, reading)?;
        let encoded = enc.encode_one(text)?;
        // Timed on a second encoding (the first warms caches).
        let t0 = Instant::now();
        enc.encode_one(text)?;
        let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
        let ranked_with = scoring.resolve(model, spec.inference_free);
        let ranking = match index_of(i).filter(|idx| index_serves(idx, model, &config)) {
            Some(idx) => Some(top_documents(idx, &encoded.vector, ranked_with, 10)?),
            None => None,
        };
        let (prior, feedback) = match ranking {
            Some(_) => (
                Some(ranked_with.0.to_string()),
                Some(ranked_with.1.to_string()),
            ),
            None => (None, None),
        };
        let (vs_first, alignment, rank) = match &first {
            Some((v, r, tok)) => {
                let (diff, alignment) = if same_vocabulary(tok, model.tokenizer()) {
                    (crate::quant::diff(v, &encoded.vector), None)
                } else {
                    let (a, b, al) = align(v, tok, &encoded.vector, model.tokenizer(), top_terms);
                    (crate::quant::diff(&a, &b), Some(al))
                };
                let rank = match (r, &ranking) {
                    (Some(a), Some(b)) => agreement(a, b),
                    _ => None,
                };
                (Some(diff), alignment, rank)
            }
            None => {
                first = Some((encoded.vector.clone(), ranking.clone(), model.tokenizer()));
                (None, None, None)
            }
        };
        runs.push(EncoderRun {
            encoder: spec.clone(),
            variant: config.variant,
            head: config.head,
            terms: encoded.terms(model.tokenizer(), top_terms),
            active: encoded.vector.active(),
            latency_ms,
            model_bytes: model.weight_bytes(),
            vs_first,
            alignment,
            ranking,
            prior,
            feedback,
            rank_overlap10: rank.map(|r| r.0),
            kendall_tau: rank.map(|r| r.1),
        });
    }
    Ok(Comparison {
        text: text.to_string(),
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        let s: EncoderSpec = "default:echo:logprob:5:q8_0".parse().unwrap();
        assert_eq!(s.model, "default");
        assert_eq!(s.variant, Some(Variant::Echo));
        assert_eq!(s.head, Some(Head::LogProb { shift: 5.0 }));
        assert_eq!(s.precision, Precision::Q8_0);
        assert_eq!(s.to_string(), "default:echo:logprob:5:q8_0");
        let i: EncoderSpec = "default:inference-free:q8_0".parse().unwrap();
        assert!(i.inference_free);
        assert_eq!(i.to_string(), "default:q8_0:inference-free");
        let b: EncoderSpec = "base:raw".parse().unwrap();
        assert_eq!(
            (b.variant, b.head, b.precision),
            (None, Some(Head::RawLogits), Precision::F32)
        );
        assert_eq!(
            "m.gguf+a.safetensors:bi"
                .parse::<EncoderSpec>()
                .unwrap()
                .to_string(),
            "m.gguf+a.safetensors:bi"
        );
        for bad in [
            "",
            ":echo",
            "default:sideways",
            "default:logprob",
            "default:logprob:x",
            "default:echo:logprob:5:q8_0:f16",
            "default:echo:bi",
            "default:raw:logprob:5",
        ] {
            assert!(bad.parse::<EncoderSpec>().is_err(), "{bad:?}");
        }
        let e = "default:q8_0:f16".parse::<EncoderSpec>().unwrap_err();
        assert!(e.contains("precision twice"), "{e}");
    }

    #[test]
    fn terms_align_across_vocabularies_by_surface_text() {
        assert_eq!(surface(" Paris"), "paris");
        assert_eq!(surface("##ing"), "ing");
        assert_eq!(surface("\u{2581}Copy"), "copy");
        assert_eq!(surface("paris"), surface(" Paris"));
    }

    #[test]
    fn presets_expand() {
        let t = (Variant::Echo, Head::LogProb { shift: 5.0 });
        let v = preset("variants", "default", t, None).unwrap();
        assert_eq!(
            v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ["default:causal", "default:echo", "default:bi"]
        );
        let b = preset("base-vs-trained", "default", t, None).unwrap();
        assert_eq!(b[0].to_string(), "base:echo:logprob:5");
        assert_eq!(b[1].to_string(), "default");
        let b = preset("base-vs-trained", "m.gguf+a.safetensors", t, None).unwrap();
        assert_eq!(b[0].model, "m.gguf");
        assert_eq!(preset("precisions", "base", t, None).unwrap().len(), 4);
        let q = preset("query-sides", "default", t, None).unwrap();
        assert_eq!(q[1].to_string(), "default:inference-free");
        assert!(!q[0].inference_free && q[1].inference_free);
        assert!(preset("nope", "base", t, None).is_none());
        assert!(
            preset("families", "default", t, None).is_none(),
            "needs a second model"
        );
        let f = preset("families", "default", t, Some("splade-dir")).unwrap();
        assert_eq!(
            (f[0].model.as_str(), f[1].model.as_str()),
            ("default", "splade-dir")
        );
    }
}
