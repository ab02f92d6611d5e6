//! How a model is asked to encode: the variant (how the backbone reads a
//! text: causal, Echo, Bi) and the sparse head (what is pooled). Adapters
//! record both, so they belong to the model; `encode` builds on them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::AttentionMask;

/// How the backbone reads a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    #[default]
    Causal,
    Echo,
    Bi,
}

impl Variant {
    pub fn mask(self) -> AttentionMask {
        match self {
            Variant::Bi => AttentionMask::Bidirectional,
            _ => AttentionMask::Causal,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::Causal => "causal",
            Variant::Echo => "echo",
            Variant::Bi => "bi",
        })
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "causal" => Ok(Variant::Causal),
            "echo" => Ok(Variant::Echo),
            "bi" => Ok(Variant::Bi),
            other => Err(format!("unknown variant {other:?} (causal, echo, bi)")),
        }
    }
}

/// What the sparse head pools.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Head {
    /// The paper's head: w_v = log(1 + ReLU(max_t logit[t, v])).
    #[default]
    RawLogits,
    /// Log-probability head: w_v = log(1 + ReLU(max_t log_softmax(logit[t])_v + shift)).
    LogProb { shift: f32 },
    /// The raw head with a logit scale (Llama-3 LSR checkpoints):
    /// w_v = log(1 + ReLU(scale · max_t logit[t, v])).
    ScaledRaw { scale: f32 },
    /// A masked LM's SPLADE pooling over every token the attention mask
    /// keeps: `log(1 + ReLU(logit))` (`log(1 + log(1 + ReLU))` with
    /// `double_log`), maximum or (SPLADE v1) sum over the tokens; special
    /// tokens' entries set to 0 when `zero_special` (OpenSearch's encoders).
    Splade {
        sum: bool,
        double_log: bool,
        zero_special: bool,
    },
}

impl Head {
    /// A masked LM's pooling (the head follows the checkpoint, not a flag).
    pub fn is_splade(self) -> bool {
        matches!(self, Head::Splade { .. })
    }
}

impl FromStr for Head {
    type Err = String;
    /// `raw`, `raw:SCALE`, `logprob:C` or `splade:max|sum[:log1p][:nospecial]`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "raw" {
            return Ok(Head::RawLogits);
        }
        if let Some(c) = s.strip_prefix("raw:") {
            return match c.parse::<f32>() {
                Ok(scale) if scale.is_finite() && scale > 0.0 => Ok(Head::ScaledRaw { scale }),
                _ => Err(format!(
                    "{s:?}: the logit scale must be a finite number > 0"
                )),
            };
        }
        if let Some(rest) = s.strip_prefix("splade:") {
            let mut parts = rest.split(':');
            let sum = match parts.next() {
                Some("max") => false,
                Some("sum") => true,
                _ => return Err(format!("{s:?}: splade:max or splade:sum")),
            };
            let (mut double_log, mut zero_special) = (false, false);
            for p in parts {
                match p {
                    "log1p" if !double_log => double_log = true,
                    "nospecial" if !zero_special => zero_special = true,
                    _ => {
                        return Err(format!(
                            "{s:?}: {p:?} is not log1p or nospecial (each once)"
                        ))
                    }
                }
            }
            return Ok(Head::Splade {
                sum,
                double_log,
                zero_special,
            });
        }
        if let Some(c) = s.strip_prefix("logprob:") {
            let shift: f32 = c.parse().map_err(|_| format!("bad shift {c:?} in {s:?}"))?;
            if !shift.is_finite() {
                return Err(format!("shift {c:?} in {s:?} must be a finite number"));
            }
            return Ok(Head::LogProb { shift });
        }
        Err(format!(
            "unknown head {s:?} (raw, raw:SCALE, logprob:C or splade:max|sum[:log1p][:nospecial])"
        ))
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Head::RawLogits => f.write_str("raw"),
            Head::LogProb { shift } => write!(f, "logprob:{shift}"),
            Head::ScaledRaw { scale } => write!(f, "raw:{scale}"),
            Head::Splade {
                sum,
                double_log,
                zero_special,
            } => {
                f.write_str(if *sum { "splade:sum" } else { "splade:max" })?;
                if *double_log {
                    f.write_str(":log1p")?;
                }
                if *zero_special {
                    f.write_str(":nospecial")?;
                }
                Ok(())
            }
        }
    }
}

/// How a query's expansion is weighed at search time, before scoring: a
/// lexical prior from the index's statistics (`search::prior`). It belongs
/// with the encoding because a trained model records the prior it was
/// measured with.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueryPrior {
    /// The expansion as the model wrote it.
    #[default]
    None,
    /// `q_v · idf(v)^power`.
    Idf { power: f32 },
}

impl QueryPrior {
    pub fn is_none(&self) -> bool {
        *self == QueryPrior::None
    }
}

impl FromStr for QueryPrior {
    type Err = String;
    /// `none`, `idf` (power 1) or `idf:P` with 0 < P ≤ 4.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => return Ok(QueryPrior::None),
            "idf" => return Ok(QueryPrior::Idf { power: 1.0 }),
            _ => {}
        }
        let Some(p) = s.strip_prefix("idf:") else {
            return Err(format!(
                "unknown query prior {s:?} (none, idf or idf:POWER)"
            ));
        };
        match p.parse::<f32>() {
            Ok(power) if power.is_finite() && power > 0.0 && power <= 4.0 => {
                Ok(QueryPrior::Idf { power })
            }
            _ => Err(format!(
                "query prior {s:?}: the power must be a number in (0, 4]"
            )),
        }
    }
}

impl fmt::Display for QueryPrior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryPrior::None => f.write_str("none"),
            QueryPrior::Idf { power } if *power == 1.0 => f.write_str("idf"),
            QueryPrior::Idf { power } => write!(f, "idf:{power}"),
        }
    }
}

/// Pseudo-relevance feedback at search time (`search::feedback`): the query
/// as its prior weighs it, plus `weight` times the mean vector of the top
/// `docs` documents of that query's own first ranking (each document
/// weighed by its score over the first one's), every entry times the
/// index's idf to `idf_power`, cut to the `terms` largest entries. Rocchio's
/// method in the model's vocabulary: documents a query finds first lend it
/// the terms it did not expand to. Recorded with the prior, because a
/// trained model records how it was measured.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueryFeedback {
    /// One ranking, of the query as weighed.
    #[default]
    None,
    Rocchio {
        docs: usize,
        weight: f32,
        terms: usize,
        idf_power: f32,
    },
}

impl QueryFeedback {
    /// `rocchio` without parameters: the top document, weight 0.1, 30
    /// terms, idf to the power 1 (the setting with the largest mean gain
    /// over two development collections, Cranfield and SciFact's train
    /// queries, and no loss on either; see MODEL_CARD.md).
    pub const ROCCHIO: QueryFeedback = QueryFeedback::Rocchio {
        docs: 1,
        weight: 0.1,
        terms: 30,
        idf_power: 1.0,
    };

    pub fn is_none(&self) -> bool {
        *self == QueryFeedback::None
    }
}

impl FromStr for QueryFeedback {
    type Err = String;
    /// `none`, `rocchio`, or `rocchio:DOCS:WEIGHT:TERMS[:IDF_POWER]`
    /// (1–1,000 documents, a weight in (0, 100], 1–10,000 terms, a power
    /// from 0 to 4, 1 when left out).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => return Ok(QueryFeedback::None),
            "rocchio" => return Ok(QueryFeedback::ROCCHIO),
            _ => {}
        }
        let usage = || {
            format!("query feedback {s:?}: expected none, rocchio or rocchio:DOCS:WEIGHT:TERMS[:IDF_POWER]")
        };
        let rest = s.strip_prefix("rocchio:").ok_or_else(usage)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (docs, weight, terms, power) = match parts[..] {
            [d, w, t] => (d, w, t, "1"),
            [d, w, t, p] => (d, w, t, p),
            _ => return Err(usage()),
        };
        let idf_power = power
            .parse::<f32>()
            .ok()
            .filter(|p| p.is_finite() && (0.0..=4.0).contains(p))
            .ok_or_else(|| {
                format!("query feedback {s:?}: the idf power must be a number from 0 to 4")
            })?;
        let count = |what: &str, v: &str, max: usize| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    format!("query feedback {s:?}: {what} must be a whole number from 1 to {max}")
                })
        };
        let weight = weight
            .parse::<f32>()
            .ok()
            .filter(|w| w.is_finite() && *w > 0.0 && *w <= 100.0)
            .ok_or_else(|| {
                format!("query feedback {s:?}: the weight must be a number in (0, 100]")
            })?;
        Ok(QueryFeedback::Rocchio {
            docs: count("the documents", docs, 1_000)?,
            weight,
            terms: count("the terms", terms, 10_000)?,
            idf_power,
        })
    }
}

impl fmt::Display for QueryFeedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryFeedback::None => f.write_str("none"),
            QueryFeedback::Rocchio {
                docs,
                weight,
                terms,
                idf_power,
            } => write!(f, "rocchio:{docs}:{weight}:{terms}:{idf_power}"),
        }
    }
}
