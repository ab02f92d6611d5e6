//! Searching an index: a query's expansion against the documents' impacts,
//! ranked by dot product, with per-term explanations; and the BM25 baseline
//! over the same corpus. Three LSR scorers: an exact one over the stored
//! vectors (in-memory, term-at-a-time), tantivy's impact postings, and
//! Seismic's approximate blocked posting lists (`seismic`).

pub mod feedback;
pub mod fusion;
pub mod passages;
mod postings;
pub mod prior;
pub mod seismic;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::schema::Value;
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument};

use crate::encode::{Contribution, SparseVec};
use crate::index::bm25::Bm25Index;
use crate::index::build::{BM25_DIR, TANTIVY_DIR, VECTORS_FILE};
use crate::index::impact::{ImpactQuery, ImpactTokenizer, TOKENIZER};
use crate::index::passages::PASSAGES_FILE;
use crate::index::{vectors, IndexError, IndexMeta};
pub use feedback::{Feedback, QueryFeedback, QueryScoring};
pub use fusion::Fusion;
pub use passages::PassageIndex;
pub use postings::PartialIndex;
use postings::Postings;
pub use prior::QueryPrior;

/// One ranked document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// Position in the corpus (and in the index).
    pub ordinal: usize,
    pub doc_id: String,
    pub score: f32,
}

/// Which LSR scorer answers a query.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Backend {
    /// Exact f32 dot products over the stored vectors (the default: faster at
    /// this scale, see `csplade bench search`).
    #[default]
    Exact,
    /// tantivy's postings with quantized impacts.
    Tantivy,
    /// Seismic's blocked, summarized posting lists (approximate; scores of
    /// the documents it returns are exact).
    Seismic(seismic::SeismicQuery),
}

impl std::str::FromStr for Backend {
    type Err = String;
    /// `exact`, `tantivy`, `seismic`, or `seismic:QUERY_TERMS:HEAP_FACTOR`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        match parts.next().unwrap_or("") {
            "exact" if parts.next().is_none() => Ok(Backend::Exact),
            "tantivy" if parts.next().is_none() => Ok(Backend::Tantivy),
            "seismic" => {
                let mut q = seismic::SeismicQuery::default();
                if let Some(terms) = parts.next() {
                    q.query_terms =
                        terms
                            .parse()
                            .ok()
                            .filter(|&n: &usize| (1..=10_000).contains(&n))
                            .ok_or_else(|| {
                                format!(
                                    "seismic: query terms {terms:?} must be a whole number from 1 to 10,000"
                                )
                            })?;
                    let factor = parts
                        .next()
                        .ok_or("seismic:QUERY_TERMS:HEAP_FACTOR needs a heap factor")?;
                    q.heap_factor = factor
                        .parse()
                        .ok()
                        .filter(|f: &f32| f.is_finite() && (0.0..=1000.0).contains(f))
                        .ok_or_else(|| {
                            format!(
                                "seismic: heap factor {factor:?} must be a number from 0 to 1000"
                            )
                        })?;
                }
                if parts.next().is_some() {
                    return Err(format!(
                        "{s:?}: expected seismic or seismic:QUERY_TERMS:HEAP_FACTOR"
                    ));
                }
                Ok(Backend::Seismic(q))
            }
            _ => Err(format!(
                "unknown backend {s:?} (exact, tantivy, seismic, seismic:QUERY_TERMS:HEAP_FACTOR)"
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Exact => f.write_str("exact"),
            Backend::Tantivy => f.write_str("tantivy"),
            Backend::Seismic(q) => write!(f, "seismic:{}:{}", q.query_terms, q.heap_factor),
        }
    }
}

/// Where an index caches its Seismic structure.
pub const SEISMIC_FILE: &str = "seismic.bin";

/// An opened LSR index with its BM25 companion.
pub struct LsrIndex {
    pub dir: PathBuf,
    pub meta: IndexMeta,
    pub vectors: Vec<SparseVec>,
    /// The exact scorer's lists, by document ordinal.
    postings: Postings,
    /// Inverse document frequency of every vocabulary entry over `vectors`.
    pub idf: Vec<f32>,
    doc_ids: Vec<String>,
    tantivy: Index,
    reader: IndexReader,
    ordinals: Vec<Vec<u32>>,
    addresses: Vec<tantivy::DocAddress>,
    pub bm25: Bm25Index,
    seismic: OnceLock<seismic::SeismicIndex>,
    /// The documents' later passages (an index built with `--passages`):
    /// a document scores as the best of its first read and its passages.
    pub passages: Option<PassageIndex>,
}

/// A stored document.
#[derive(Clone, Debug, Serialize)]
pub struct StoredDoc {
    pub doc_id: String,
    pub title: String,
    pub text: String,
}

/// The vectors of the index in `dir`, checked against its metadata: one
/// per document, every term within the vocabulary.
pub fn read_vectors(dir: &Path, meta: &IndexMeta) -> Result<Vec<SparseVec>, IndexError> {
    let vectors = vectors::read(&dir.join(VECTORS_FILE))?;
    if vectors.len() != meta.documents {
        return Err(IndexError::Corrupt {
            path: dir.join(VECTORS_FILE),
            msg: format!("{} vectors for {} documents", vectors.len(), meta.documents),
        });
    }
    // Term ids are sorted within a vector: its last is its largest.
    for (d, v) in vectors.iter().enumerate() {
        if let Some(&id) = v.ids.last().filter(|&&id| id as usize >= meta.vocab_size) {
            return Err(IndexError::Corrupt {
                path: dir.join(VECTORS_FILE),
                msg: format!(
                    "document {d} has term {id}, beyond the vocabulary of {}",
                    meta.vocab_size
                ),
            });
        }
    }
    Ok(vectors)
}

impl LsrIndex {
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let meta = IndexMeta::read(dir)?;
        let vectors = read_vectors(dir, &meta)?;
        Self::open_with(dir, meta, vectors)
    }

    /// [`LsrIndex::open`] with the metadata and vectors already read (and
    /// checked by [`read_vectors`]).
    pub fn open_with(
        dir: &Path,
        meta: IndexMeta,
        vectors: Vec<SparseVec>,
    ) -> Result<Self, IndexError> {
        let postings = Postings::new(vectors.iter(), meta.vocab_size);
        let idf = postings.idf(vectors.len());
        let tdir = dir.join(TANTIVY_DIR);
        let tv = |e: tantivy::TantivyError| IndexError::Tantivy {
            path: tdir.clone(),
            msg: e.to_string(),
        };
        let tantivy =
            Index::open_in_dir(&tdir).map_err(|e| crate::index::unreadable_tantivy(&tdir, &e))?;
        tantivy.tokenizers().register(TOKENIZER, ImpactTokenizer);
        let reader: IndexReader = tantivy
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tv)?;
        let ordinals = crate::index::ordinal_table(&reader, &tdir)?;
        let mut addresses = vec![tantivy::DocAddress::new(0, 0); meta.documents];
        for (seg, ords) in ordinals.iter().enumerate() {
            for (doc, &o) in ords.iter().enumerate() {
                if let Some(a) = addresses.get_mut(o as usize) {
                    *a = tantivy::DocAddress::new(seg as u32, doc as u32);
                }
            }
        }
        let schema = tantivy.schema();
        let id_field = schema.get_field("doc_id").map_err(tv)?;
        let searcher = reader.searcher();
        let mut doc_ids = Vec::with_capacity(meta.documents);
        for a in &addresses {
            let d: TantivyDocument = searcher.doc(*a).map_err(tv)?;
            doc_ids.push(
                d.get_first(id_field)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
            );
        }
        let bm25 = Bm25Index::open(&dir.join(BM25_DIR))?;
        let passages = match meta.passages {
            Some(spec) => {
                let read = crate::index::passages::read(
                    &dir.join(PASSAGES_FILE),
                    meta.documents,
                    meta.vocab_size,
                )?;
                Some(PassageIndex::new(
                    spec,
                    read,
                    meta.documents,
                    meta.vocab_size,
                ))
            }
            None => None,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            vectors,
            postings,
            idf,
            doc_ids,
            tantivy,
            reader,
            ordinals,
            addresses,
            bm25,
            seismic: OnceLock::new(),
            passages,
        })
    }

    /// The Seismic structure with default build settings: from
    /// `seismic.bin` when it was made for this index, else built (seconds
    /// for SciFact) and cached there atomically.
    pub fn seismic(&self) -> Result<&seismic::SeismicIndex, IndexError> {
        if let Some(s) = self.seismic.get() {
            return Ok(s);
        }
        let (s, _) = self.load_or_build_seismic(seismic::SeismicBuild::default())?;
        Ok(self.seismic.get_or_init(|| s))
    }

    /// Load the cached Seismic structure made with `build`, or build and
    /// cache it; the flag says whether it was built now.
    pub fn load_or_build_seismic(
        &self,
        build: seismic::SeismicBuild,
    ) -> Result<(seismic::SeismicIndex, bool), IndexError> {
        if let Some(s) = self.cached_seismic(build)? {
            return Ok((s, false));
        }
        let s = seismic::SeismicIndex::build(&self.vectors, self.meta.vocab_size, build);
        s.save(&self.dir.join(SEISMIC_FILE), self.seismic_key()?)?;
        Ok((s, true))
    }

    /// The Seismic structure cached in `seismic.bin`, if one was made with
    /// `build` for this very index (`None`: none, or a stale one).
    pub fn cached_seismic(
        &self,
        build: seismic::SeismicBuild,
    ) -> Result<Option<seismic::SeismicIndex>, IndexError> {
        let path = self.dir.join(SEISMIC_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        seismic::SeismicIndex::load(&path, self.seismic_key()?, build)
    }

    /// What a cached Seismic structure must have been made for.
    fn seismic_key(&self) -> Result<seismic::CacheKey, IndexError> {
        let vectors_file = self.dir.join(VECTORS_FILE);
        let vectors_bytes = std::fs::metadata(&vectors_file)
            .map_err(|e| IndexError::io(&vectors_file, e))?
            .len();
        Ok(seismic::CacheKey {
            documents: self.meta.documents as u32,
            vocab: self.meta.vocab_size as u32,
            vectors_bytes,
            built_at: self.meta.built_at,
        })
    }

    /// Whether tantivy's documents carry the ordinals 0..n, each once.
    pub fn ordinals_are_a_permutation(&self) -> Result<(), String> {
        let n = self.len();
        let mut seen = vec![false; n];
        let mut count = 0;
        for &o in self.ordinals.iter().flatten() {
            count += 1;
            match seen.get_mut(o as usize) {
                Some(s) if !*s => *s = true,
                Some(_) => return Err(format!("ordinal {o} appears twice")),
                None => return Err(format!("ordinal {o} is beyond the {n} documents")),
            }
        }
        if count != n {
            return Err(format!("{count} tantivy documents for {n}"));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.meta.documents
    }

    pub fn is_empty(&self) -> bool {
        self.meta.documents == 0
    }

    pub fn doc_id(&self, ordinal: usize) -> &str {
        self.doc_ids.get(ordinal).map(String::as_str).unwrap_or("")
    }

    pub fn search(
        &self,
        query: &SparseVec,
        k: usize,
        backend: Backend,
    ) -> Result<Vec<Hit>, IndexError> {
        // No ranking is longer than the collection (and no allocation is
        // sized by a k beyond it).
        let k = k.min(self.len()).max(1);
        if self.passages.is_some() && backend != Backend::Exact {
            return Err(IndexError::Unsupported {
                path: self.dir.clone(),
                msg: format!(
                    "this index scores documents by their best passage, which only the exact backend does; drop --backend {backend}, or search an index built with --passages none"
                ),
            });
        }
        match backend {
            Backend::Exact => Ok(self.search_exact(query, k)),
            Backend::Tantivy => self.search_tantivy(query, k),
            Backend::Seismic(q) => Ok(self
                .seismic()?
                .search(query, k, &self.vectors, q)
                .into_iter()
                .map(|(o, score)| Hit {
                    ordinal: o,
                    doc_id: self.doc_id(o).to_string(),
                    score,
                })
                .collect()),
        }
    }

    /// The query as scored under `prior` (the expansion itself when none).
    pub fn weigh(&self, query: &SparseVec, prior: QueryPrior) -> SparseVec {
        prior.apply(query, &self.idf)
    }

    /// Exact dot products, term at a time into a dense accumulator; with
    /// passages, each document's best.
    pub fn search_exact(&self, query: &SparseVec, k: usize) -> Vec<Hit> {
        let mut acc = self.postings.scores(query, self.meta.documents);
        if let Some(p) = &self.passages {
            p.raise(query, &mut acc);
        }
        self.top_k(&acc, k)
    }

    fn top_k(&self, acc: &[f32], k: usize) -> Vec<Hit> {
        let mut cands: Vec<(usize, f32)> = acc
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, s)| s > 0.0)
            .collect();
        let by_score = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if cands.len() > k && k > 0 {
            cands.select_nth_unstable_by(k - 1, by_score);
            cands.truncate(k);
        }
        cands.sort_by(by_score);
        cands
            .into_iter()
            .map(|(o, score)| Hit {
                ordinal: o,
                doc_id: self.doc_id(o).to_string(),
                score,
            })
            .collect()
    }

    fn impact_query(&self, query: &SparseVec) -> Result<ImpactQuery, IndexError> {
        let field = self
            .tantivy
            .schema()
            .get_field("impact")
            .map_err(|e| IndexError::Tantivy {
                path: self.dir.clone(),
                msg: e.to_string(),
            })?;
        Ok(ImpactQuery::new(field, query, self.meta.scale))
    }

    /// Quantized impacts through tantivy's postings and our impact scorer.
    pub fn search_tantivy(&self, query: &SparseVec, k: usize) -> Result<Vec<Hit>, IndexError> {
        let q = self.impact_query(query)?;
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&q, &TopDocs::with_limit(k.max(1)))
            .map_err(|e| IndexError::Tantivy {
                path: self.dir.clone(),
                msg: e.to_string(),
            })?;
        Ok(top
            .into_iter()
            .map(|(score, a)| {
                let o = self.ordinals[a.segment_ord as usize][a.doc_id as usize] as usize;
                Hit {
                    ordinal: o,
                    doc_id: self.doc_id(o).to_string(),
                    score,
                }
            })
            .collect())
    }

    /// Why `ordinal` matched: per-term q_w × d_w from the exact vectors.
    pub fn explain(&self, query: &SparseVec, ordinal: usize) -> Vec<Contribution> {
        self.explain_with(query, QueryPrior::None, &SparseVec::default(), ordinal)
    }

    /// Why `ordinal` matched `query` scored under `prior` and the terms
    /// `feedback` added: per term, the expansion's weight, the prior's
    /// factor, the feedback's weight, the document's weight and their
    /// product, largest first.
    pub fn explain_with(
        &self,
        query: &SparseVec,
        prior: QueryPrior,
        feedback: &SparseVec,
        ordinal: usize,
    ) -> Vec<Contribution> {
        let Some(d) = self.vectors.get(ordinal) else {
            return Vec::new();
        };
        let d = match self.best_passage(query, prior, feedback, ordinal) {
            Some((k, _)) => self
                .passages
                .as_ref()
                .and_then(|p| p.vector(ordinal, k))
                .unwrap_or(d),
            None => d,
        };
        prior::explain(query, d, prior, &self.idf, feedback)
    }

    /// tantivy's own explanation of an impact score (quantized weights).
    pub fn explain_tantivy(&self, query: &SparseVec, ordinal: usize) -> Result<String, IndexError> {
        let q = self.impact_query(query)?;
        let searcher = self.reader.searcher();
        use tantivy::query::Query;
        let e = q
            .explain(&searcher, self.addresses[ordinal])
            .map_err(|e| IndexError::Tantivy {
                path: self.dir.clone(),
                msg: e.to_string(),
            })?;
        Ok(e.to_pretty_json())
    }

    pub fn document(&self, ordinal: usize) -> Result<StoredDoc, IndexError> {
        let tv = |e: tantivy::TantivyError| IndexError::Tantivy {
            path: self.dir.clone(),
            msg: e.to_string(),
        };
        let schema = self.tantivy.schema();
        let addr = *self
            .addresses
            .get(ordinal)
            .ok_or_else(|| IndexError::Corrupt {
                path: self.dir.clone(),
                msg: format!("no document {ordinal}"),
            })?;
        let d: TantivyDocument = self.reader.searcher().doc(addr).map_err(tv)?;
        let get = |n: &str| -> Result<String, IndexError> {
            let f = schema.get_field(n).map_err(tv)?;
            Ok(d.get_first(f)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string())
        };
        Ok(StoredDoc {
            doc_id: get("doc_id")?,
            title: get("title")?,
            text: get("text")?,
        })
    }

    /// BM25 ranking of a query text over the same corpus.
    pub fn search_bm25(&self, text: &str, k: usize) -> Result<Vec<Hit>, IndexError> {
        Ok(self
            .bm25
            .search(text, k)?
            .into_iter()
            .map(|h| Hit {
                ordinal: h.ordinal,
                doc_id: self.doc_id(h.ordinal).to_string(),
                score: h.score,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::seismic::SeismicQuery;
    use super::Backend;

    #[test]
    fn backends_parse_and_bad_settings_are_refused_by_name() {
        assert_eq!("exact".parse(), Ok(Backend::Exact));
        assert_eq!("tantivy".parse(), Ok(Backend::Tantivy));
        assert_eq!(
            "seismic".parse(),
            Ok(Backend::Seismic(SeismicQuery::default()))
        );
        assert_eq!(
            "seismic:5:0.9".parse(),
            Ok(Backend::Seismic(SeismicQuery {
                query_terms: 5,
                heap_factor: 0.9
            }))
        );
        for (bad, says) in [
            ("seismic:0:0.7", "query terms"),
            ("seismic:5", "needs a heap factor"),
            ("seismic:5:NaN", "heap factor"),
            ("seismic:99999999999999999999:0.7", "from 1 to 10,000"),
            ("seismic:5:1e39", "from 0 to 1000"),
            ("seismic:5:0.7:1", "expected seismic"),
            ("exact:3", "unknown backend"),
            ("faiss", "unknown backend"),
        ] {
            let e = bad.parse::<Backend>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
