//! Hybrid ranking: the sparse model's and BM25's rankings of one query fused
//! into a third, as Pyserini, OpenSearch and Elasticsearch offer it.
//! Reciprocal rank fusion (Cormack et al., SIGIR 2009) adds `1 / (k + rank)`
//! from each list; the convex combination adds `α · lsr + (1 − α) · bm25`
//! of scores min-max normalised within each list, a document missing from a
//! list getting that list's minimum (0 after normalisation).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Hit;

/// How two rankings are fused.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fusion {
    /// Reciprocal rank fusion with constant `k` (60 in the original paper).
    Rrf { k: f32 },
    /// `alpha` times the normalised LSR score plus `1 − alpha` times BM25's.
    Convex { alpha: f32 },
}

/// The convex combination's weight on LSR, chosen on Cranfield (never on a
/// test split): see README "Fusion".
pub const DEFAULT_ALPHA: f32 = 0.3;

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Convex {
            alpha: DEFAULT_ALPHA,
        }
    }
}

impl FromStr for Fusion {
    type Err = String;
    /// `rrf`, `rrf:K`, `convex` (the default α) or `convex:ALPHA`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let number = |a: &str| a.parse::<f32>().ok().filter(|x| x.is_finite());
        match (name, arg) {
            ("rrf", None) => Ok(Fusion::Rrf { k: 60.0 }),
            ("rrf", Some(a)) => match number(a) {
                Some(k) if (0.0..=1e6).contains(&k) => Ok(Fusion::Rrf { k }),
                _ => Err(format!("fusion {s:?}: k must be a number in [0, 1e6]")),
            },
            ("convex", None) => Ok(Fusion::default()),
            ("convex", Some(a)) => match number(a) {
                Some(alpha) if (0.0..=1.0).contains(&alpha) => Ok(Fusion::Convex { alpha }),
                _ => Err(format!(
                    "fusion {s:?}: the weight on LSR must be a number in [0, 1]"
                )),
            },
            _ => Err(format!(
                "unknown fusion {s:?} (rrf, rrf:K, convex or convex:ALPHA)"
            )),
        }
    }
}

impl fmt::Display for Fusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fusion::Rrf { k } => write!(f, "rrf:{k}"),
            Fusion::Convex { alpha } => write!(f, "convex:{alpha}"),
        }
    }
}

/// Scores of a ranking min-max normalised to [0, 1] (all 1 when flat).
fn normalised(hits: &[Hit]) -> impl Iterator<Item = (&Hit, f32)> {
    let hi = hits
        .iter()
        .map(|h| h.score)
        .fold(f32::NEG_INFINITY, f32::max);
    let lo = hits.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
    hits.iter().map(move |h| {
        let s = if hi > lo {
            (h.score - lo) / (hi - lo)
        } else {
            1.0
        };
        (h, s)
    })
}

impl Fusion {
    /// The fused ranking of two rankings of the same query, best first,
    /// cut to `k` (ties by corpus position).
    pub fn fuse(self, lsr: &[Hit], bm25: &[Hit], k: usize) -> Vec<Hit> {
        fn add<'h>(acc: &mut HashMap<usize, (f32, &'h str)>, h: &'h Hit, s: f32) {
            acc.entry(h.ordinal).or_insert((0.0, h.doc_id.as_str())).0 += s;
        }
        let mut acc: HashMap<usize, (f32, &str)> = HashMap::new();
        match self {
            Fusion::Rrf { k } => {
                for list in [lsr, bm25] {
                    for (r, h) in list.iter().enumerate() {
                        add(&mut acc, h, 1.0 / (k + r as f32 + 1.0));
                    }
                }
            }
            Fusion::Convex { alpha } => {
                for (h, s) in normalised(lsr) {
                    add(&mut acc, h, alpha * s);
                }
                for (h, s) in normalised(bm25) {
                    add(&mut acc, h, (1.0 - alpha) * s);
                }
            }
        }
        let mut out: Vec<Hit> = acc
            .into_iter()
            .map(|(ordinal, (score, id))| Hit {
                ordinal,
                doc_id: id.to_string(),
                score,
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.ordinal.cmp(&b.ordinal)));
        out.truncate(k);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(v: &[(usize, f32)]) -> Vec<Hit> {
        v.iter()
            .map(|&(o, s)| Hit {
                ordinal: o,
                doc_id: format!("d{o}"),
                score: s,
            })
            .collect()
    }

    #[test]
    fn fusions_parse_print_and_refuse_by_name() {
        assert_eq!("rrf".parse(), Ok(Fusion::Rrf { k: 60.0 }));
        assert_eq!("convex:0.3".parse(), Ok(Fusion::Convex { alpha: 0.3 }));
        assert_eq!("convex".parse(), Ok(Fusion::default()));
        assert_eq!(Fusion::Rrf { k: 60.0 }.to_string(), "rrf:60");
        for bad in [
            "convex:1.5",
            "convex:-0.1",
            "convex:nan",
            "rrf:-1",
            "rrf:inf",
            "sum",
        ] {
            assert!(bad.parse::<Fusion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rrf_adds_reciprocal_ranks() {
        let lsr = hits(&[(1, 9.0), (2, 5.0)]);
        let bm = hits(&[(2, 30.0), (3, 20.0)]);
        let f = Fusion::Rrf { k: 60.0 }.fuse(&lsr, &bm, 10);
        let ids: Vec<usize> = f.iter().map(|h| h.ordinal).collect();
        assert_eq!(ids, vec![2, 1, 3]);
        assert!((f[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert!((f[1].score - 1.0 / 61.0).abs() < 1e-7);
        assert!(
            (f[2].score - 1.0 / 62.0).abs() < 1e-7,
            "rank 2 of BM25 alone"
        );
    }

    #[test]
    fn convex_combines_normalised_scores_and_its_ends_are_the_inputs() {
        let lsr = hits(&[(1, 10.0), (2, 6.0), (3, 2.0)]);
        let bm = hits(&[(3, 40.0), (2, 30.0), (4, 20.0)]);
        let f = Fusion::Convex { alpha: 0.5 }.fuse(&lsr, &bm, 10);
        let score = |o: usize| f.iter().find(|h| h.ordinal == o).map(|h| h.score);
        assert_eq!(score(1), Some(0.5));
        assert_eq!(score(2), Some(0.5 * 0.5 + 0.5 * 0.5));
        assert_eq!(score(3), Some(0.5));
        assert_eq!(score(4), Some(0.0));
        let only = |alpha: f32| -> Vec<usize> {
            Fusion::Convex { alpha }
                .fuse(&lsr, &bm, 2)
                .iter()
                .map(|h| h.ordinal)
                .collect()
        };
        // At either end the fused top is that list's own top.
        assert_eq!(only(1.0), vec![1, 2]);
        assert_eq!(only(0.0), vec![3, 2]);
    }
}
