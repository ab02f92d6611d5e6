//! Handing an index to the engines of the field: CIFF (the Common Index File
//! Format that PISA and Anserini import), Anserini's JsonVectorCollection,
//! and OpenSearch / Elasticsearch `rank_features` (a bulk NDJSON file, the
//! index mapping, and the query body for a csplade query). Impacts are the
//! index's own quantization, `round(weight × scale)`, wherever an engine
//! wants integers. Each export is streamed to a temporary file and renamed
//! into place.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::json;

use crate::encode::SparseVec;
use crate::index::IndexError;
use crate::model::TextTokenizer;
use crate::search::{LsrIndex, StoredDoc};

/// CIFF's messages (common-index-file-format.proto, version 1).
pub mod ciff {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Header {
        #[prost(int32, tag = "1")]
        pub version: i32,
        #[prost(int32, tag = "2")]
        pub num_postings_lists: i32,
        #[prost(int32, tag = "3")]
        pub num_docs: i32,
        #[prost(int32, tag = "4")]
        pub total_postings_lists: i32,
        #[prost(int32, tag = "5")]
        pub total_docs: i32,
        #[prost(int64, tag = "6")]
        pub total_terms_in_collection: i64,
        #[prost(double, tag = "7")]
        pub average_doclength: f64,
        #[prost(string, tag = "8")]
        pub description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Posting {
        /// Gap from the previous posting's document (the first: absolute).
        #[prost(int32, tag = "1")]
        pub docid: i32,
        #[prost(int32, tag = "2")]
        pub tf: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PostingsList {
        #[prost(string, tag = "1")]
        pub term: String,
        #[prost(int64, tag = "2")]
        pub df: i64,
        #[prost(int64, tag = "3")]
        pub cf: i64,
        #[prost(message, repeated, tag = "4")]
        pub postings: Vec<Posting>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DocRecord {
        #[prost(int32, tag = "1")]
        pub docid: i32,
        #[prost(string, tag = "2")]
        pub collection_docid: String,
        #[prost(int32, tag = "3")]
        pub doclength: i32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Ciff,
    Anserini,
    OpenSearch,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ciff" => Ok(ExportFormat::Ciff),
            "anserini" => Ok(ExportFormat::Anserini),
            "opensearch" => Ok(ExportFormat::OpenSearch),
            o => Err(format!(
                "unknown export format {o:?} (ciff, anserini, opensearch)"
            )),
        }
    }
}

/// What an export wrote: its documents are its units, first reads and
/// (with [`Units::WithPassages`]) `passages` of them passages.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExportReport {
    pub files: Vec<PathBuf>,
    pub documents: usize,
    pub passages: usize,
    pub terms: usize,
    pub postings: u64,
}

/// What an export holds as its documents (an outside engine's units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Units {
    /// Each document's first read, under its id.
    FirstReads,
    /// Each document's first read, then each of its passages as a unit
    /// `ID#K` (K from 1), so that an engine keeping each document's best
    /// unit ranks as csplade does (Anserini: `-selectMaxPassage
    /// -selectMaxPassage.delimiter '#'`).
    WithPassages,
}

/// What separates a document's id from its passage's number in a unit id.
pub const PASSAGE_DELIMITER: char = '#';

/// One exported unit: a document's first read or one of its passages.
struct Unit<'a> {
    id: String,
    vector: &'a SparseVec,
    ordinal: usize,
    /// The passage (1-based), for a passage.
    passage: Option<usize>,
}

/// The units of `idx`: every document's first read, each followed by its
/// passages with [`Units::WithPassages`]. A document id that holds the
/// delimiter is refused when its passages are exported.
fn units(idx: &LsrIndex, which: Units) -> Result<Vec<Unit<'_>>, IndexError> {
    let passages = idx
        .passages
        .as_ref()
        .filter(|_| which == Units::WithPassages);
    let mut out = Vec::with_capacity(idx.len() + passages.map_or(0, |p| p.len()));
    for (d, vector) in idx.vectors.iter().enumerate() {
        let id = idx.doc_id(d);
        out.push(Unit {
            id: id.to_string(),
            vector,
            ordinal: d,
            passage: None,
        });
        let Some(p) = passages.filter(|p| p.count(d) > 0) else {
            continue;
        };
        if id.contains(PASSAGE_DELIMITER) {
            return Err(IndexError::Unsupported {
                path: idx.dir.clone(),
                msg: format!("document id {id:?} holds {PASSAGE_DELIMITER:?}, which separates a passage's number from its document's id in the export; export first reads only"),
            });
        }
        out.extend(p.of(d).map(|(k, vector)| Unit {
            id: format!("{id}{PASSAGE_DELIMITER}{k}"),
            vector,
            ordinal: d,
            passage: Some(k),
        }));
    }
    Ok(out)
}

/// The texts units were encoded from, in export order: a document is read
/// from the index once for its first read and its passages.
struct UnitTexts<'a> {
    idx: &'a LsrIndex,
    /// The document read last, by ordinal.
    doc: Option<(usize, StoredDoc)>,
}

impl<'a> UnitTexts<'a> {
    fn new(idx: &'a LsrIndex) -> Self {
        Self { idx, doc: None }
    }

    /// The document's text (title and text), or its title and the
    /// passage's words.
    fn of(&mut self, unit: &Unit) -> Result<String, IndexError> {
        let doc = match self.doc.take() {
            Some((ordinal, doc)) if ordinal == unit.ordinal => doc,
            _ => self.idx.document(unit.ordinal)?,
        };
        let text = match unit.passage {
            None if doc.title.is_empty() => doc.text.clone(),
            None => format!("{} {}", doc.title, doc.text),
            Some(k) => crate::data::beir::Document {
                id: String::new(),
                title: doc.title.clone(),
                text: self.idx.passage_text(&doc, k).unwrap_or_default(),
            }
            .full_text(),
        };
        self.doc = Some((unit.ordinal, doc));
        Ok(text)
    }
}

/// A token's text as a term every engine accepts: whitespace, control
/// characters, `%`, `.`, `#` and every character that lowercasing would
/// change percent-encoded byte by byte in lowercase hex (" copy" →
/// "%20copy", " Copy" → "%20%43opy"), so distinct texts stay distinct and
/// no term changes when an engine lowercases query terms (PISA does: an
/// upper-case term would otherwise be unreachable, or match another).
pub fn safe_term(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for c in token.chars() {
        let changes_in_lowercase = c.to_lowercase().ne(std::iter::once(c));
        if c.is_whitespace()
            || c.is_control()
            || matches!(c, '%' | '.' | '#')
            || changes_in_lowercase
        {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// The term of every vocabulary entry, by id. Byte-level vocabularies
/// display some entries alike (two spellings of "é"): the first keeps the
/// text, later ones get `#id` appended (`#` never occurs otherwise).
pub fn vocabulary(tok: &TextTokenizer, vocab: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    (0..vocab as u32)
        .map(|id| {
            let t = safe_term(tok.token(id));
            if seen.insert(t.clone()) {
                t
            } else {
                format!("{t}#{id}")
            }
        })
        .collect()
}

/// The integer impact of a weight: the index's own quantization.
pub fn quantize(w: f32, scale: f32) -> i32 {
    crate::index::impact::impact(w, scale) as i32
}

/// Write through `f` to the export file `out` under the output policy,
/// refusing paths inside the index it reads.
fn atomically(
    idx: &LsrIndex,
    out: &Path,
    f: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), IndexError> {
    use crate::data::output;
    Ok(output::write_file(
        out,
        &output::EXPORT,
        &[&idx.dir],
        "export",
        f,
    )?)
}

/// Distinct terms with at least one posting.
fn terms_used(idx: &LsrIndex, units: &[Unit]) -> usize {
    let mut used = vec![false; idx.meta.vocab_size];
    for u in units {
        for (id, _) in u.vector.iter() {
            if let Some(u) = used.get_mut(id as usize) {
                *u = true;
            }
        }
    }
    used.into_iter().filter(|&u| u).count()
}

/// Export `idx` (whose model's tokenizer is `tok`) as `format` to `out`:
/// its documents' first reads.
pub fn export(
    idx: &LsrIndex,
    tok: &TextTokenizer,
    format: ExportFormat,
    out: &Path,
    opensearch_index: &str,
) -> Result<ExportReport, IndexError> {
    export_units(idx, tok, format, out, opensearch_index, Units::FirstReads)
}

/// [`export`] with the units `which` says: first reads, or passages too.
pub fn export_units(
    idx: &LsrIndex,
    tok: &TextTokenizer,
    format: ExportFormat,
    out: &Path,
    opensearch_index: &str,
    which: Units,
) -> Result<ExportReport, IndexError> {
    let terms = vocabulary(tok, idx.meta.vocab_size);
    let units = units(idx, which)?;
    let mut report = match format {
        ExportFormat::Ciff => export_ciff(idx, &units, &terms, out)?,
        ExportFormat::Anserini => export_anserini(idx, &units, &terms, out)?,
        ExportFormat::OpenSearch => export_opensearch(idx, &units, &terms, out, opensearch_index)?,
    };
    report.passages = units.iter().filter(|u| u.passage.is_some()).count();
    Ok(report)
}

/// Anserini's JsonVectorCollection: a JSON document per line.
fn export_anserini(
    idx: &LsrIndex,
    units: &[Unit],
    terms: &[String],
    out: &Path,
) -> Result<ExportReport, IndexError> {
    let scale = idx.meta.scale;
    let mut postings = 0u64;
    let mut texts = UnitTexts::new(idx);
    atomically(idx, out, |w| {
        for u in units {
            let vector: serde_json::Map<String, serde_json::Value> = u
                .vector
                .iter()
                .map(|(id, wt)| (id, quantize(wt, scale)))
                .filter(|(_, q)| *q > 0)
                .map(|(id, q)| (terms[id as usize].clone(), json!(q)))
                .collect();
            postings += vector.len() as u64;
            let text = texts.of(u).map_err(std::io::Error::other)?;
            let line = json!({"id": u.id, "contents": text, "vector": vector});
            writeln!(w, "{line}")?;
        }
        Ok(())
    })?;
    Ok(ExportReport {
        files: vec![out.to_path_buf()],
        documents: units.len(),
        passages: 0,
        terms: terms_used(idx, units),
        postings,
    })
}

/// An OpenSearch / Elasticsearch bulk file and its mapping beside it.
fn export_opensearch(
    idx: &LsrIndex,
    units: &[Unit],
    terms: &[String],
    out: &Path,
    opensearch_index: &str,
) -> Result<ExportReport, IndexError> {
    // Both files are checked before either is written.
    let mapping = mapping_path(out);
    crate::data::output::check_file(&mapping, &crate::data::output::EXPORT, &[&idx.dir])?;
    let mut postings = 0u64;
    let mut texts = UnitTexts::new(idx);
    atomically(idx, out, |w| {
        for u in units {
            let features: serde_json::Map<String, serde_json::Value> = u
                .vector
                .iter()
                .map(|(id, wt)| (terms[id as usize].clone(), json!(wt)))
                .collect();
            postings += features.len() as u64;
            let text = texts.of(u).map_err(std::io::Error::other)?;
            let action = json!({"index": {"_index": opensearch_index, "_id": u.id}});
            writeln!(w, "{action}")?;
            writeln!(w, "{}", json!({"text": text, "terms": features}))?;
        }
        Ok(())
    })?;
    atomically(idx, &mapping, |w| writeln!(w, "{:#}", opensearch_mapping()))?;
    Ok(ExportReport {
        files: vec![out.to_path_buf(), mapping],
        documents: units.len(),
        passages: 0,
        terms: terms_used(idx, units),
        postings,
    })
}

/// `OUT.mapping.json` beside an OpenSearch bulk file.
pub fn mapping_path(out: &Path) -> PathBuf {
    let mut m = out.as_os_str().to_owned();
    m.push(".mapping.json");
    PathBuf::from(m)
}

/// The index mapping: the text, and the expansion as `rank_features`.
pub fn opensearch_mapping() -> serde_json::Value {
    json!({"mappings": {"properties": {
        "text": {"type": "text"},
        "terms": {"type": "rank_features"}
    }}})
}

/// The query body that scores documents by the dot product of the query's
/// expansion with their `terms` (each feature linear, boosted by the query
/// weight).
pub fn opensearch_query(query: &SparseVec, tok: &TextTokenizer, k: usize) -> serde_json::Value {
    let terms = vocabulary(tok, tok.vocab_size());
    let should: Vec<serde_json::Value> = query
        .iter()
        .map(|(id, w)| {
            json!({"rank_feature": {"field": format!("terms.{}", terms[id as usize]),
                "linear": {}, "boost": w}})
        })
        .collect();
    json!({"size": k, "query": {"bool": {"should": should}}})
}

fn export_ciff(
    idx: &LsrIndex,
    units: &[Unit],
    terms: &[String],
    out: &Path,
) -> Result<ExportReport, IndexError> {
    let scale = idx.meta.scale;
    let n = units.len();
    let (lists, lengths) = ciff_postings(units, terms.len(), scale);
    let mut order: Vec<usize> = (0..terms.len()).filter(|&t| !lists[t].is_empty()).collect();
    order.sort_by(|&a, &b| terms[a].cmp(&terms[b]));
    let total: i64 = lengths.iter().sum();
    let header = ciff::Header {
        version: 1,
        num_postings_lists: order.len() as i32,
        num_docs: n as i32,
        total_postings_lists: order.len() as i32,
        total_docs: n as i32,
        total_terms_in_collection: total,
        average_doclength: total as f64 / n.max(1) as f64,
        description: format!(
            "csplade index of {} ({}, {}, {}): impacts are term frequencies round(weight x {scale})",
            idx.meta.corpus, idx.meta.model.id, idx.meta.variant, idx.meta.head
        ),
    };
    let mut postings = 0u64;
    atomically(idx, out, |w| {
        let mut buf = Vec::new();
        let mut put = |w: &mut BufWriter<std::fs::File>, m: &dyn MessageBytes| {
            buf.clear();
            m.encode_delimited_into(&mut buf);
            w.write_all(&buf)
        };
        put(w, &header)?;
        for &t in &order {
            let list = postings_list(&terms[t], &lists[t]);
            postings += list.postings.len() as u64;
            put(w, &list)?;
        }
        for (d, (&len, u)) in lengths.iter().zip(units).enumerate() {
            let rec = ciff::DocRecord {
                docid: d as i32,
                collection_docid: u.id.clone(),
                doclength: len as i32,
            };
            put(w, &rec)?;
        }
        Ok(())
    })?;
    Ok(ExportReport {
        files: vec![out.to_path_buf()],
        documents: n,
        passages: 0,
        terms: order.len(),
        postings,
    })
}

/// Each term's postings (unit, impact), units ascending, and each unit's
/// length (the sum of its impacts), with impacts `round(w × scale)` > 0.
fn ciff_postings(units: &[Unit], vocab: usize, scale: f32) -> (Vec<Vec<(i32, i32)>>, Vec<i64>) {
    let mut lists: Vec<Vec<(i32, i32)>> = vec![Vec::new(); vocab];
    let mut lengths = vec![0i64; units.len()];
    for (d, u) in units.iter().enumerate() {
        for (id, w) in u.vector.iter() {
            let q = quantize(w, scale);
            if q > 0 {
                lists[id as usize].push((d as i32, q));
                lengths[d] += q as i64;
            }
        }
    }
    (lists, lengths)
}

/// One term's CIFF postings list: document gaps and impacts.
fn postings_list(term: &str, list: &[(i32, i32)]) -> ciff::PostingsList {
    let mut prev = 0;
    ciff::PostingsList {
        term: term.to_string(),
        df: list.len() as i64,
        cf: list.iter().map(|p| p.1 as i64).sum(),
        postings: list
            .iter()
            .map(|&(d, tf)| {
                let gap = d - prev;
                prev = d;
                ciff::Posting { docid: gap, tf }
            })
            .collect(),
    }
}

/// Length-delimited encoding of any of CIFF's messages.
trait MessageBytes {
    fn encode_delimited_into(&self, buf: &mut Vec<u8>);
}

impl<M: Message> MessageBytes for M {
    fn encode_delimited_into(&self, buf: &mut Vec<u8>) {
        // Encoding into a Vec cannot run out of space.
        let _ = self.encode_length_delimited(buf);
    }
}

/// A CIFF file read back: header, postings lists, document records.
pub fn read_ciff(
    path: &Path,
) -> Result<(ciff::Header, Vec<ciff::PostingsList>, Vec<ciff::DocRecord>), IndexError> {
    let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    let bad = |e: prost::DecodeError| IndexError::Corrupt {
        path: path.to_path_buf(),
        msg: format!("not a CIFF file: {e}"),
    };
    let mut buf = bytes.as_slice();
    let header = ciff::Header::decode_length_delimited(&mut buf).map_err(bad)?;
    let count = |n: i32| usize::try_from(n).unwrap_or(0).min(buf.len());
    let mut lists = Vec::with_capacity(count(header.num_postings_lists));
    for _ in 0..header.num_postings_lists.max(0) {
        lists.push(ciff::PostingsList::decode_length_delimited(&mut buf).map_err(bad)?);
    }
    let mut docs = Vec::with_capacity(count(header.num_docs));
    for _ in 0..header.num_docs.max(0) {
        docs.push(ciff::DocRecord::decode_length_delimited(&mut buf).map_err(bad)?);
    }
    Ok((header, lists, docs))
}
