//! Building an index from a BEIR corpus: encode documents in length-sorted
//! batches, append each batch's vectors to a journal (resumable: a killed
//! build continues from the last committed batch), then write the tantivy
//! impact index, the BM25 index, the exact vectors and the metadata into a
//! staging directory that is renamed into place only when complete (atomic:
//! a reader never sees a half index).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tantivy::schema::{
    IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, STORED, STRING,
};
use tantivy::{Index, TantivyDocument};

use super::journal::{Encoding, JOURNAL, PROGRESS};
use super::meta::{IndexMeta, FORMAT_VERSION};
use super::passages::{self, PassageSpec, PASSAGES_FILE};
use super::{bm25, impact, vectors, IndexError};
use crate::data::beir::{self, Document};
use crate::encode::{Encoder, SparseVec};

pub const VECTORS_FILE: &str = "vectors.bin";
pub const TANTIVY_DIR: &str = "tantivy";
pub const BM25_DIR: &str = "bm25";

pub struct BuildOptions {
    pub corpus: PathBuf,
    pub out: PathBuf,
    /// Impact quantization: tf = round(w × scale).
    pub scale: f32,
    /// Keep only the heaviest terms per document (0 = all).
    pub doc_top_k: usize,
    /// Documents per journal commit.
    pub commit_every: usize,
    /// Precision label recorded in the metadata.
    pub precision: String,
    /// Stop after this many commits in this run (`csplade index
    /// --stop-after`): for time-limited jobs, which rerun to resume. `None`
    /// runs to the end.
    pub stop_after_commits: Option<usize>,
    /// `(i, n)`: encode only shard i of n (every n-th commit batch, starting
    /// at batch i) into a partial index that `index merge` joins.
    pub shard: Option<(usize, usize)>,
    /// Also index each document's later words as passages (MaxP; see
    /// [`super::passages`]). `None`: each document is its first read.
    pub passages: Option<PassageSpec>,
}

/// Events reported while building.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BuildProgress {
    Start {
        /// Documents encoded by this run, and passages beside them
        /// (`--passages`); `resumed_from` counts both.
        documents: usize,
        passages: usize,
        /// Passages cut to the encoder's length.
        passages_truncated: usize,
        resumed_from: usize,
        tokens: u64,
        /// Documents cut to the encoder's length, its length and windows.
        truncated: usize,
        max_len: usize,
        windows: usize,
    },
    Progress {
        done: usize,
        total: usize,
        tokens_done: u64,
        tokens_total: u64,
        docs_per_s: f64,
        tokens_per_s: f64,
        eta_s: f64,
    },
    Phase {
        name: String,
    },
    Done {
        documents: usize,
        seconds: f64,
        path: String,
    },
}

/// `<out>.partial`: where the index is staged until complete.
pub fn staging_dir(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

pub fn fingerprint(path: &Path) -> Result<String, IndexError> {
    let mut f = std::fs::File::open(path).map_err(|e| IndexError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| IndexError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

pub fn build(
    encoder: &Encoder,
    opts: &BuildOptions,
    mut progress: impl FnMut(BuildProgress),
) -> Result<IndexMeta, IndexError> {
    let t0 = Instant::now();
    // Never over (or inside) what is not ours: the output, its staging
    // directory, and the collection read.
    let stage = staging_dir(&opts.out);
    let _lock = crate::data::output::lock::acquire(&opts.out, "index")?;
    for p in [&opts.out, &stage] {
        crate::data::output::check(p, &crate::data::output::INDEX, &[&opts.corpus])?;
    }
    let docs = beir::read_corpus(&opts.corpus)?;
    check_passages(encoder, opts)?;
    let corpus_fp = fingerprint(&beir::collection_file(&opts.corpus, "corpus.jsonl"))?;
    if let Some(done) = publish_if_staged(encoder, opts, &stage, docs.len(), &corpus_fp)? {
        progress(BuildProgress::Done {
            documents: docs.len(),
            seconds: done.build_seconds,
            path: opts.out.display().to_string(),
        });
        return Ok(done);
    }
    std::fs::create_dir_all(&stage).map_err(|e| IndexError::io(&stage, e))?;
    crate::data::output::mark_dir(&stage, &crate::data::output::INDEX)?;
    // Tokenize everything up front (documents, then passages); encode
    // longest first in fixed batches.
    let (mut seqs, truncated) = tokenize_all(encoder, &docs)?;
    let (owners, passages_truncated) = split_passages(encoder, opts, &docs, &mut seqs)?;
    let commit = opts.commit_every.max(1);
    let base_settings = settings_record(encoder, opts, &corpus_fp);
    let (order, settings) = order_and_settings(&seqs, opts, commit, &base_settings)?;
    let run = Encoding {
        encoder,
        opts,
        seqs: &seqs,
        order: &order,
        commit,
        journal_path: stage.join(JOURNAL),
        progress_path: stage.join(PROGRESS),
    };
    let (state, journal) = run.resume(&settings, &stage, &mut progress)?;
    // What this run encodes: a shard's share, or everything.
    let passages_here = order.iter().filter(|&&i| i >= docs.len()).count();
    progress(BuildProgress::Start {
        documents: order.len() - passages_here,
        passages: passages_here,
        passages_truncated,
        resumed_from: state.done,
        tokens: order.iter().map(|&i| seqs[i].len() as u64).sum(),
        truncated,
        max_len: encoder.config.max_len,
        windows: encoder.config.windows,
    });
    let state = run.encode(state, journal, &stage, &mut progress)?;

    let meta = new_meta(encoder, opts, docs.len(), corpus_fp, &seqs);
    if let Some((i, n)) = opts.shard {
        let shard = super::shard::ShardMeta {
            shard: i,
            of: n,
            commit_every: commit,
            settings: base_settings,
            documents: order.len(),
            index: meta,
            journal_crc: state.crc,
        };
        return super::shard::publish_shard(&stage, &opts.out, &shard, t0, progress);
    }
    // Read the journal back into corpus order.
    progress(BuildProgress::Phase {
        name: "writing vectors".into(),
    });
    let mut vecs = run.vectors(seqs.len())?;
    write_passages(&stage, opts.passages, owners, vecs.split_off(docs.len()))?;
    finish(&stage, &opts.out, &docs, &vecs, meta, t0, progress)
}

/// With passages, write each one's document and vector (`passages.bin`)
/// into the staged index.
pub(super) fn write_passages(
    stage: &Path,
    spec: Option<PassageSpec>,
    owners: Vec<usize>,
    vecs: Vec<SparseVec>,
) -> Result<(), IndexError> {
    if spec.is_none() {
        return Ok(());
    }
    let passages: Vec<(usize, SparseVec)> = owners.into_iter().zip(vecs).collect();
    passages::write(&stage.join(PASSAGES_FILE), &passages)
}

/// Passages replace windows: refuse the mix by name.
fn check_passages(encoder: &Encoder, opts: &BuildOptions) -> Result<(), IndexError> {
    match opts.passages {
        Some(spec) if encoder.config.windows > 1 => Err(IndexError::Unsupported {
            path: opts.out.clone(),
            msg: format!("--passages {spec}: --windows (max-pooled windows) and --passages (scored apart) read the rest of a document in two ways; choose one"),
        }),
        _ => Ok(()),
    }
}

/// The document of each passage `spec` cuts from `docs`, in the order
/// [`split_passages`] appends them (none without a split): what a merge of
/// shards needs to place the passages without tokenizing them again.
pub(super) fn passage_owners(spec: Option<PassageSpec>, docs: &[Document]) -> Vec<usize> {
    let Some(spec) = spec else {
        return Vec::new();
    };
    docs.iter()
        .enumerate()
        .flat_map(|(ordinal, d)| {
            let n = spec.ranges(d.text.split_whitespace().count()).len();
            std::iter::repeat_n(ordinal, n)
        })
        .collect()
}

/// With passages, append every document's passages to `seqs` (after the
/// documents, in document order); return each one's document and how many
/// were cut to the encoder's length.
fn split_passages(
    encoder: &Encoder,
    opts: &BuildOptions,
    docs: &[Document],
    seqs: &mut Vec<Vec<u32>>,
) -> Result<(Vec<usize>, usize), IndexError> {
    let Some(spec) = opts.passages else {
        return Ok((Vec::new(), 0));
    };
    let owners = passage_owners(Some(spec), docs);
    let texts: Vec<Document> = docs.iter().flat_map(|d| spec.split(d)).collect();
    debug_assert_eq!(owners.len(), texts.len());
    let (passage_seqs, truncated) = tokenize_all(encoder, &texts)?;
    seqs.extend(passage_seqs);
    Ok((owners, truncated))
}

/// What this run encodes, in order (every text longest first, or a
/// shard's commit batches of them), and the settings record its journal
/// must match to resume.
fn order_and_settings(
    seqs: &[Vec<u32>],
    opts: &BuildOptions,
    commit: usize,
    base_settings: &str,
) -> Result<(Vec<usize>, String), IndexError> {
    let order = longest_first(seqs);
    Ok(match opts.shard {
        // A shard encodes whole commit batches, so its batches are exactly
        // those of a one-process build: the same vectors, bit for bit.
        Some((i, n)) => (
            shard_order(&order, commit, i, n, &opts.out)?,
            format!("{base_settings} shard {i}/{n} every {commit}"),
        ),
        None => (order, base_settings.to_string()),
    })
}

/// Document positions, longest first (ties in corpus order).
fn longest_first(seqs: &[Vec<u32>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(seqs[i].len()), i));
    order
}

/// Every setting that shapes the vectors, as the record a resumed build
/// (and every shard of one build) must match.
fn settings_record(encoder: &Encoder, opts: &BuildOptions, corpus_fp: &str) -> String {
    let mut record = serde_json::json!({
        "corpus": corpus_fp, "model": encoder.model.identity().sha256,
        "variant": encoder.config.variant, "head": encoder.config.head,
        "max_len": encoder.config.max_len, "precision": opts.precision,
        "doc_top_k": opts.doc_top_k,
    });
    // Recorded only when it differs from truncation, so builds in progress
    // from before windows existed still resume.
    if encoder.config.windows > 1 {
        record["windows"] = encoder.config.windows.into();
    }
    if let Some(p) = opts.passages {
        record["passages"] = p.to_string().into();
    }
    record.to_string()
}

/// A staging directory that already holds the complete index of these
/// settings (a build killed after finishing, before publishing) is
/// published as it is rather than encoded again.
fn publish_if_staged(
    encoder: &Encoder,
    opts: &BuildOptions,
    stage: &Path,
    documents: usize,
    corpus_fp: &str,
) -> Result<Option<IndexMeta>, IndexError> {
    let Ok(done) = IndexMeta::read(stage) else {
        return Ok(None);
    };
    let same = done.model.sha256 == encoder.model.identity().sha256
        && done.variant == encoder.config.variant
        && done.head == encoder.config.head
        && done.max_len == encoder.config.max_len
        && done.precision == opts.precision
        && done.doc_top_k == opts.doc_top_k
        && done.scale == opts.scale
        && done.passages == opts.passages
        && done.documents == documents
        && done.corpus_fingerprint == corpus_fp
        && stage.join(VECTORS_FILE).is_file();
    if !same {
        return Ok(None);
    }
    publish(stage, &opts.out)?;
    for leftover in [JOURNAL, PROGRESS] {
        let _ = std::fs::remove_file(opts.out.join(leftover));
    }
    Ok(Some(done))
}

/// Every document's token ids (empty for an empty text), and how many were
/// cut to the encoder's length.
fn tokenize_all(
    encoder: &Encoder,
    docs: &[beir::Document],
) -> Result<(Vec<Vec<u32>>, usize), IndexError> {
    let mut seqs = Vec::with_capacity(docs.len());
    let mut truncated = 0;
    for d in docs {
        let text = d.full_text();
        let ids = if text.trim().is_empty() {
            vec![]
        } else {
            let (ids, dropped) = encoder.tokenize(&text)?;
            truncated += usize::from(dropped > 0);
            ids
        };
        seqs.push(ids);
    }
    Ok((seqs, truncated))
}

/// The documents of shard `i` of `n`: every n-th commit batch of `order`,
/// starting at batch i.
fn shard_order(
    order: &[usize],
    commit: usize,
    i: usize,
    n: usize,
    out: &Path,
) -> Result<Vec<usize>, IndexError> {
    if n == 0 || i >= n {
        return Err(IndexError::Corrupt {
            path: out.to_path_buf(),
            msg: format!("shard {i}/{n}: the shard must be below the count"),
        });
    }
    Ok(order
        .chunks(commit)
        .enumerate()
        .filter(|(k, _)| k % n == i)
        .flat_map(|(_, c)| c.iter().copied())
        .collect())
}

/// The metadata of an index of `documents` documents built by `encoder`.
fn new_meta(
    encoder: &Encoder,
    opts: &BuildOptions,
    documents: usize,
    corpus_fingerprint: String,
    seqs: &[Vec<u32>],
) -> IndexMeta {
    IndexMeta {
        format_version: FORMAT_VERSION,
        model: encoder.model.identity().clone(),
        variant: encoder.config.variant,
        head: encoder.config.head,
        precision: opts.precision.clone(),
        max_len: encoder.config.max_len,
        windows: encoder.config.windows,
        passages: opts.passages,
        vocab_size: encoder.model.vocab_size(),
        scale: opts.scale,
        doc_top_k: opts.doc_top_k,
        documents,
        // Absolute, so the index finds its queries from any directory.
        corpus: std::fs::canonicalize(&opts.corpus)
            .unwrap_or_else(|_| opts.corpus.clone())
            .display()
            .to_string(),
        corpus_fingerprint,
        model_spec: None,
        built_at: 0,
        build_seconds: 0.0,
        encoded_tokens: seqs.iter().map(|s| s.len() as u64).sum(),
    }
}

/// Write a complete index from every document's vector into `stage` and
/// publish it at `out`: vectors.bin, the tantivy impact index, BM25, meta.
pub(super) fn finish(
    stage: &Path,
    out: &Path,
    docs: &[Document],
    vecs: &[SparseVec],
    mut meta: IndexMeta,
    t0: Instant,
    mut progress: impl FnMut(BuildProgress),
) -> Result<IndexMeta, IndexError> {
    vectors::write(&stage.join(VECTORS_FILE), vecs)?;

    progress(BuildProgress::Phase {
        name: "tantivy impact index".into(),
    });
    let tdir = stage.join(TANTIVY_DIR);
    let _ = std::fs::remove_dir_all(&tdir);
    write_tantivy(&tdir, docs, vecs, meta.scale)?;
    progress(BuildProgress::Phase {
        name: "BM25 index".into(),
    });
    let bdir = stage.join(BM25_DIR);
    let _ = std::fs::remove_dir_all(&bdir);
    bm25::Bm25Index::build(&bdir, docs)?;

    let seconds = t0.elapsed().as_secs_f64();
    meta.built_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    meta.build_seconds = seconds;
    meta.write(stage)?;
    for leftover in [JOURNAL, PROGRESS] {
        let p = stage.join(leftover);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| IndexError::io(&p, e))?;
        }
    }
    publish(stage, out)?;
    progress(BuildProgress::Done {
        documents: docs.len(),
        seconds,
        path: out.display().to_string(),
    });
    Ok(meta)
}

/// Keep the `k` heaviest terms (0 = all).
pub fn prune(v: SparseVec, k: usize) -> SparseVec {
    if k == 0 || v.active() <= k {
        return v;
    }
    SparseVec::from_pairs(v.top_k(k))
}

/// Move the complete staging directory into place, replacing an old index.
pub(super) fn publish(stage: &Path, out: &Path) -> Result<(), IndexError> {
    Ok(crate::data::output::publish(stage, out)?)
}

/// The tantivy side: ordinal (fast), id, stored title and text, impacts.
pub fn schema() -> Schema {
    let mut sb = Schema::builder();
    sb.add_u64_field("ordinal", NumericOptions::default().set_stored().set_fast());
    sb.add_text_field("doc_id", STRING | STORED);
    sb.add_text_field("title", STORED);
    sb.add_text_field("text", STORED);
    sb.add_text_field(
        "impact",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(impact::TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs)
                .set_fieldnorms(false),
        ),
    );
    sb.build()
}

fn write_tantivy(
    dir: &Path,
    docs: &[Document],
    vecs: &[SparseVec],
    scale: f32,
) -> Result<(), IndexError> {
    let tv = |e: tantivy::TantivyError| IndexError::Tantivy {
        path: dir.to_path_buf(),
        msg: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
    let schema = schema();
    let index = Index::create_in_dir(dir, schema.clone()).map_err(tv)?;
    index
        .tokenizers()
        .register(impact::TOKENIZER, impact::ImpactTokenizer);
    let f = |n: &str| schema.get_field(n).map_err(&tv);
    let (ordinal, doc_id, title, text, imp) = (
        f("ordinal")?,
        f("doc_id")?,
        f("title")?,
        f("text")?,
        f("impact")?,
    );
    let mut w = index.writer_with_num_threads(1, 400_000_000).map_err(tv)?;
    for (i, (d, v)) in docs.iter().zip(vecs).enumerate() {
        let mut doc = TantivyDocument::default();
        doc.add_u64(ordinal, i as u64);
        doc.add_text(doc_id, &d.id);
        doc.add_text(title, &d.title);
        doc.add_text(text, &d.text);
        doc.add_text(imp, impact::impact_text(v, scale));
        w.add_document(doc).map_err(tv)?;
    }
    w.commit().map_err(tv)?;
    w.wait_merging_threads().map_err(tv)?;
    Ok(())
}
