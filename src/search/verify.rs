//! `csplade index verify`: every file of an index checked, each check
//! reported whether it passes or not, with what fixes a failure (rebuild,
//! or rerun to resume). The metadata is read and validated; `vectors.bin`
//! against its checksum, the document count and the vocabulary; tantivy's
//! and BM25's document counts, the ordinal table (a permutation of the
//! documents) and the ids; `passages.bin` when the index has passages; tantivy's impacts against the vectors' own, on a
//! sample of documents; and a Seismic cache if there is one.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use super::{LsrIndex, SEISMIC_FILE};
use crate::index::build::VECTORS_FILE;
use crate::index::passages::PASSAGES_FILE;
use crate::index::IndexMeta;

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
    /// What repairs it, for a failure.
    pub fix: Option<String>,
}

fn pass(what: &str, detail: String) -> Check {
    Check {
        what: what.into(),
        ok: true,
        detail,
        fix: None,
    }
}

fn fail(what: &str, detail: String, fix: &str) -> Check {
    Check {
        what: what.into(),
        ok: false,
        detail,
        fix: Some(fix.into()),
    }
}

const REBUILD: &str = "rebuild the index (csplade index --corpus CORPUS --out INDEX --force)";

/// Documents whose tantivy impacts are compared with their vectors.
const SAMPLE: usize = 64;

/// Check the index at `dir`.
pub fn verify(dir: &Path) -> Vec<Check> {
    let meta = match IndexMeta::read(dir) {
        Ok(m) => m,
        Err(e) => {
            let fix = match e {
                crate::index::IndexError::Missing { .. } => {
                    "if a build is under way or was interrupted, rerun the same csplade index command to resume it; else build it"
                }
                _ => REBUILD,
            };
            return vec![fail("meta.json", e.to_string(), fix)];
        }
    };
    let mut out = vec![pass(
        "meta.json",
        format!(
            "{} documents, {} {} {} at {}, vocabulary {}",
            meta.documents, meta.model.id, meta.variant, meta.head, meta.precision, meta.vocab_size
        ),
    )];
    let vectors = match super::read_vectors(dir, &meta) {
        Ok(v) => v,
        Err(e) => {
            out.push(fail(VECTORS_FILE, e.to_string(), REBUILD));
            out.push(fail(
                "tantivy, BM25",
                format!("not opened: {VECTORS_FILE} failed above"),
                REBUILD,
            ));
            return out;
        }
    };
    out.push(vectors_summary(dir, &vectors));
    if let Some(spec) = meta.passages {
        let path = dir.join(PASSAGES_FILE);
        match crate::index::passages::read(&path, meta.documents, meta.vocab_size) {
            Ok(p) => {
                let of: HashSet<usize> = p.iter().map(|(d, _)| *d).collect();
                out.push(pass(
                    PASSAGES_FILE,
                    format!(
                        "{} passages ({spec}) of {} documents, checksum verified",
                        p.len(),
                        of.len()
                    ),
                ));
            }
            Err(e) => {
                out.push(fail(PASSAGES_FILE, e.to_string(), REBUILD));
                return out;
            }
        }
    }
    match LsrIndex::open_with(dir, meta, vectors) {
        Ok(idx) => {
            out.push(pass(
                "tantivy, BM25",
                "both open; documents map onto the vectors".into(),
            ));
            out.extend(check_opened(&idx));
        }
        Err(e) => out.push(fail("tantivy, BM25", e.to_string(), REBUILD)),
    }
    out
}

/// `vectors.bin`, read and checked: its size and whether a checksum
/// guarded it.
fn vectors_summary(dir: &Path, vectors: &[crate::encode::SparseVec]) -> Check {
    let summed = crate::index::vectors::has_checksum(&dir.join(VECTORS_FILE));
    let postings: usize = vectors.iter().map(|v| v.active()).sum();
    let detail = format!(
        "{} vectors, {postings} postings, {}",
        vectors.len(),
        if summed {
            "checksum verified"
        } else {
            "no checksum (written by an earlier csplade; a rebuild adds one)"
        }
    );
    pass(VECTORS_FILE, detail)
}

/// What needs the opened index: counts, ordinals, ids, impacts, Seismic.
fn check_opened(idx: &LsrIndex) -> Vec<Check> {
    let n = idx.len();
    let mut out = Vec::new();
    let bm25 = idx.bm25.num_docs() as usize;
    out.push(if bm25 == n {
        pass("BM25 documents", format!("{bm25}"))
    } else {
        fail(
            "BM25 documents",
            format!("{bm25} for {n} documents"),
            REBUILD,
        )
    });
    out.push(match idx.ordinals_are_a_permutation() {
        Ok(()) => pass(
            "document order",
            format!("tantivy's {n} documents are ordinals 0..{n}, each once"),
        ),
        Err(e) => fail("document order", e, REBUILD),
    });
    let mut seen = HashSet::new();
    let bad_id = (0..n).find(|&o| {
        let id = idx.doc_id(o);
        id.is_empty() || !seen.insert(id)
    });
    out.push(match bad_id {
        None => pass("document ids", format!("{n} distinct")),
        Some(o) => fail(
            "document ids",
            format!(
                "document {o} has an empty or repeated id {:?}",
                idx.doc_id(o)
            ),
            REBUILD,
        ),
    });
    out.push(check_impacts(idx));
    out.push(check_seismic(idx));
    out
}

/// tantivy scores a document as its vector says: for sampled documents, the
/// document's own top terms as a query, its tantivy score against the sum
/// of query weight × impact read back from the vector.
fn check_impacts(idx: &LsrIndex) -> Check {
    let n = idx.len();
    let scale = idx.meta.scale;
    let step = (n / SAMPLE).max(1);
    let (mut agree, mut checked) = (0, 0);
    for o in (0..n).step_by(step).take(SAMPLE) {
        let v = &idx.vectors[o];
        if v.active() == 0 {
            continue;
        }
        let q = crate::encode::SparseVec::from_pairs(v.top_k(16));
        let expected: f32 = q
            .iter()
            .map(|(t, w)| w * crate::index::impact::as_scored(v.get(t), scale))
            .sum();
        let hits = match idx.search_tantivy(&q, 50) {
            Ok(h) => h,
            Err(e) => return fail("impacts", e.to_string(), REBUILD),
        };
        let Some(h) = hits.iter().find(|h| h.ordinal == o) else {
            continue;
        };
        checked += 1;
        if (h.score - expected).abs() <= 1e-3 * expected.abs().max(1.0) {
            agree += 1;
        } else {
            return fail(
                "impacts",
                format!(
                    "document {o} ({}) scores {} in tantivy, {expected} from its vector",
                    idx.doc_id(o),
                    h.score
                ),
                REBUILD,
            );
        }
    }
    pass(
        "impacts",
        format!("tantivy agrees with the vectors on {agree} of {checked} sampled documents"),
    )
}

/// A Seismic cache, if present, loads for this index (a stale one is
/// rebuilt on next use).
fn check_seismic(idx: &LsrIndex) -> Check {
    if !idx.dir.join(SEISMIC_FILE).is_file() {
        return pass(SEISMIC_FILE, "none cached (built on first use)".into());
    }
    match idx.cached_seismic(super::seismic::SeismicBuild::default()) {
        Ok(Some(s)) => pass(
            SEISMIC_FILE,
            format!("{} blocks over {} documents", s.blocks(), s.documents()),
        ),
        Ok(None) => pass(
            SEISMIC_FILE,
            "made for another build or settings: rebuilt on first use".into(),
        ),
        Err(e) => fail(
            SEISMIC_FILE,
            e.to_string(),
            "delete seismic.bin; it is rebuilt on first use",
        ),
    }
}
