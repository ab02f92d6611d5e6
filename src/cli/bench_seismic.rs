//! `csplade bench seismic`: Seismic against the exact scorer and tantivy's
//! impacts on the same queries — p50/p99 latency per query, recall@k against
//! exact search, memory and build time — on an index's own collection, or on
//! a synthetic collection of N documents drawn from its term statistics.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use csplade::data::beir;
use csplade::encode::Encoder;
use csplade::index::synthetic;
use csplade::search::seismic::{SeismicBuild, SeismicIndex, SeismicQuery};
use csplade::search::{Backend, LsrIndex};

use super::bench::{dir_size, peak_rss, percentile};

#[derive(Args)]
pub struct SeismicBench {
    /// Index whose collection is searched (with --synthetic: whose term
    /// statistics the synthetic documents are drawn from)
    #[arg(long)]
    pub index: PathBuf,
    /// The model that built it (encodes the collection's queries)
    /// [default: the model the index records, else default]
    #[arg(long)]
    pub model: Option<String>,
    /// Search a synthetic collection of this many documents instead, drawn
    /// to match the index's active terms per document, document frequencies
    /// and per-term impacts (written once, then reused)
    #[arg(long, value_parser = super::within(1, 10_000_000))]
    pub synthetic: Option<usize>,
    /// Where the synthetic index lives (default: $CSPLADE_HOME/bench/
    /// synthetic-N-<model>-<collection fingerprint>)
    #[arg(long)]
    pub synthetic_out: Option<PathBuf>,
    /// Queries timed (the collection's own, encoded by the model)
    #[arg(long, default_value_t = 300, value_parser = super::within(1, 1_000_000))]
    pub queries: usize,
    /// Hits per query; recall is measured at this depth
    #[arg(long, default_value_t = 10, value_parser = super::within(1, 100_000))]
    pub k: usize,
    /// λ: documents kept per term's posting list
    #[arg(long, default_value_t = SeismicBuild::default().postings_per_term, value_parser = super::within(1, 10_000_000))]
    pub postings_per_term: usize,
    /// Seismic query settings measured, QUERY_TERMS:HEAP_FACTOR each
    #[arg(long = "setting", default_values_t = ["10:0.7".to_string(), "5:0.9".to_string(), "20:0.9".to_string()])]
    pub settings: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

/// Per scorer: exact (p50, p99 ms), tantivy (p50, p99, recall@k), each
/// Seismic setting (name, p50, p99, recall@k).
struct Timings {
    exact: (f64, f64),
    tantivy: (f64, f64, f64),
    seismic: Vec<(String, f64, f64, f64)>,
}

/// What was measured, for either output.
struct Report {
    collection: String,
    documents: usize,
    postings: usize,
    queries: usize,
    k: usize,
    synthetic_seconds: Option<f64>,
    build: SeismicBuild,
    build_seconds: f64,
    blocks: usize,
    postings_kept: usize,
    seismic_bytes: usize,
    tantivy_bytes: u64,
    /// (p50, p99) ms of exact and tantivy; recall of tantivy.
    exact: (f64, f64),
    tantivy: (f64, f64, f64),
    /// Per setting: name, p50, p99, recall.
    seismic: Vec<(String, f64, f64, f64)>,
}

pub fn run(a: SeismicBench) -> Result<()> {
    let (source, model) = super::search::open_with_model(&a.index, a.model.as_deref(), None)?;
    if let Some(p) = &source.passages {
        bail!(
            "{} ranks documents by their best of {} passages, which Seismic does not index; bench an index built with --passages none",
            a.index.display(),
            p.len()
        );
    }
    let queries = beir::read_queries(std::path::Path::new(&source.meta.corpus))
        .with_context(|| format!("reading the queries of {}", source.meta.corpus))?;
    let queries: Vec<_> = queries.into_iter().take(a.queries).collect();
    if queries.is_empty() {
        bail!("no queries to time");
    }
    let settings = parse_settings(&a.settings)?;
    eprintln!("csplade: encoding {} queries", queries.len());
    let enc = Encoder::new(&model, source.meta.encoder_config());
    let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let vectors: Vec<_> = enc.encode(&texts)?.into_iter().map(|e| e.vector).collect();
    drop(model);
    let (idx, collection, synthetic_seconds) = match a.synthetic {
        None => (source, a.index.display().to_string(), None),
        Some(n) => synthetic_index(&a, source, n)?,
    };
    let postings: usize = idx.vectors.iter().map(|v| v.active()).sum();
    eprintln!(
        "csplade: building Seismic over {} documents ({postings} postings)",
        idx.len()
    );
    let build = SeismicBuild {
        postings_per_term: a.postings_per_term.max(1),
        ..SeismicBuild::default()
    };
    let t0 = Instant::now();
    let seismic = SeismicIndex::build(&idx.vectors, idx.meta.vocab_size, build);
    let build_seconds = t0.elapsed().as_secs_f64();
    let t = time_queries(&idx, &seismic, &vectors, &settings, a.k)?;
    let report = Report {
        collection,
        documents: idx.len(),
        postings,
        queries: vectors.len(),
        k: a.k,
        synthetic_seconds,
        build,
        build_seconds,
        blocks: seismic.blocks(),
        postings_kept: seismic.postings(),
        seismic_bytes: seismic.heap_bytes(),
        tantivy_bytes: dir_size(&idx.dir.join("tantivy")),
        exact: t.exact,
        tantivy: t.tantivy,
        seismic: t.seismic,
    };
    if a.json {
        print_json(&report);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// `T:H` settings, each checked as a Seismic backend.
fn parse_settings(settings: &[String]) -> Result<Vec<(String, SeismicQuery)>> {
    settings
        .iter()
        .map(|s| match format!("seismic:{s}").parse::<Backend>() {
            Ok(Backend::Seismic(q)) => Ok((s.clone(), q)),
            Ok(_) => bail!("{s}: not a Seismic setting"),
            Err(e) => bail!("--setting {s}: {e}"),
        })
        .collect()
}

/// The synthetic index of `n` documents drawn from `source`'s statistics:
/// reused when already written, else drawn and written under the output
/// policy. (index, its name, seconds spent writing it).
fn synthetic_index(
    a: &SeismicBench,
    source: LsrIndex,
    n: usize,
) -> Result<(LsrIndex, String, Option<f64>)> {
    let out = a.synthetic_out.clone().unwrap_or_else(|| {
        csplade::model::fetch::data_dir()
            .join("bench")
            .join(format!(
                "synthetic-{n}-{}-{}",
                &source.meta.model.sha256[..12.min(source.meta.model.sha256.len())],
                &source.meta.corpus_fingerprint[..12.min(source.meta.corpus_fingerprint.len())]
            ))
    });
    csplade::data::output::check(&out, &csplade::data::output::SYNTHETIC_INDEX, &[&a.index])?;
    if let Some(i) = LsrIndex::open(&out).ok().filter(|i| i.len() == n) {
        return Ok((i, out.display().to_string(), None));
    }
    eprintln!(
        "csplade: drawing {n} synthetic documents from {}'s term statistics → {}",
        a.index.display(),
        out.display()
    );
    let t0 = Instant::now();
    let stats = synthetic::TermStatistics::of(&source.vectors, source.meta.vocab_size);
    let drawn = synthetic::draw_collection(&stats, &source.vectors, n, 42);
    let description = format!("synthetic, from {}", a.index.display());
    synthetic::write_index(&out, &a.index, &source.meta, &drawn, &description)?;
    drop(drawn);
    drop(source);
    let seconds = t0.elapsed().as_secs_f64();
    let idx = LsrIndex::open(&out).with_context(|| format!("opening {}", out.display()))?;
    Ok((idx, out.display().to_string(), Some(seconds)))
}

/// Time every query under exact search, tantivy and each Seismic setting,
/// one thread: exact (p50, p99), tantivy (p50, p99, recall@k) and per
/// setting (name, p50, p99, recall@k), recall against exact search.
fn time_queries(
    idx: &LsrIndex,
    seismic: &SeismicIndex,
    vectors: &[csplade::encode::SparseVec],
    settings: &[(String, SeismicQuery)],
    k: usize,
) -> Result<Timings> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let (mut exact_ms, mut tantivy_ms) = (Vec::new(), Vec::new());
    let mut seismic_ms = vec![Vec::new(); settings.len()];
    let (mut tantivy_found, mut seismic_found, mut wanted) =
        (0usize, vec![0usize; settings.len()], 0usize);
    for q in vectors {
        let t = Instant::now();
        let exact = idx.search_exact(q, k);
        exact_ms.push(ms(t));
        let truth: HashSet<usize> = exact.iter().map(|h| h.ordinal).collect();
        wanted += truth.len();
        let t = Instant::now();
        let tv = idx.search_tantivy(q, k)?;
        tantivy_ms.push(ms(t));
        tantivy_found += tv.iter().filter(|h| truth.contains(&h.ordinal)).count();
        for (i, (_, setting)) in settings.iter().enumerate() {
            let t = Instant::now();
            let hits = seismic.search(q, k, &idx.vectors, *setting);
            seismic_ms[i].push(ms(t));
            seismic_found[i] += hits.iter().filter(|h| truth.contains(&h.0)).count();
        }
    }
    let recall = |found: usize| found as f64 / wanted.max(1) as f64;
    let row = |v: &mut Vec<f64>| (percentile(v, 0.5), percentile(v, 0.99));
    let exact = row(&mut exact_ms);
    let (t50, t99) = row(&mut tantivy_ms);
    let rows = settings
        .iter()
        .zip(seismic_ms.iter_mut())
        .zip(&seismic_found)
        .map(|(((name, _), times), &found)| {
            let (p50, p99) = row(times);
            (name.clone(), p50, p99, recall(found))
        })
        .collect();
    Ok(Timings {
        exact,
        tantivy: (t50, t99, recall(tantivy_found)),
        seismic: rows,
    })
}

fn print_json(r: &Report) {
    // The exact scorer holds a (document, weight) posting per entry; the
    // forward vectors (8 bytes per entry too) serve both exact and Seismic.
    println!(
        "{}",
        json!({
            "collection": r.collection, "documents": r.documents, "postings": r.postings,
            "queries": r.queries, "k": r.k, "synthetic_build_seconds": r.synthetic_seconds,
            "exact": {"p50_ms": r.exact.0, "p99_ms": r.exact.1, "recall": 1.0, "postings_bytes": 8 * r.postings},
            "tantivy": {"p50_ms": r.tantivy.0, "p99_ms": r.tantivy.1, "recall": r.tantivy.2, "index_bytes_on_disk": r.tantivy_bytes},
            "seismic": {
                "postings_per_term": r.build.postings_per_term, "block_fraction": r.build.block_fraction,
                "summary_energy": r.build.summary_energy, "build_seconds": r.build_seconds,
                "blocks": r.blocks, "postings_kept": r.postings_kept, "bytes": r.seismic_bytes,
                "settings": r.seismic.iter().map(|(n, p50, p99, rc)| json!({"setting": n, "p50_ms": p50, "p99_ms": p99, "recall": rc})).collect::<Vec<_>>(),
            },
            "forward_vectors_bytes": 8 * r.postings, "peak_rss_bytes": peak_rss(),
            "query_threads": 1, "build_threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        })
    );
}

fn print_table(r: &Report) {
    let postings = r.postings;
    println!(
        "{} queries over {} ({} documents, {postings} postings), top {}, one thread:",
        r.queries, r.collection, r.documents, r.k
    );
    if let Some(s) = r.synthetic_seconds {
        println!("  synthetic index written in {s:.1} s");
    }
    let mb = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "  {:<28} {:>9} {:>9} {:>10} {:>10}",
        "scorer", "p50 ms", "p99 ms", "recall@k", "memory MB"
    );
    let (e50, e99) = r.exact;
    println!(
        "  {:<28} {e50:>9.3} {e99:>9.3} {:>10.4} {:>10.1}",
        "exact",
        1.0,
        mb(8 * postings)
    );
    let (t50, t99, tr) = r.tantivy;
    println!(
        "  {:<28} {t50:>9.3} {t99:>9.3} {tr:>10.4} {:>10.1}",
        "tantivy (on disk)",
        mb(r.tantivy_bytes as usize)
    );
    for (name, p50, p99, rc) in &r.seismic {
        println!(
            "  {:<28} {p50:>9.3} {p99:>9.3} {rc:>10.4} {:>10.1}",
            format!("seismic {name}"),
            mb(r.seismic_bytes)
        );
    }
    println!(
        "  Seismic build: {:.1} s (λ {}, {} blocks, {} of {postings} postings kept); forward vectors {:.1} MB; peak RSS {:.0} MB",
        r.build_seconds,
        r.build.postings_per_term,
        r.blocks,
        r.postings_kept,
        mb(8 * postings),
        peak_rss().unwrap_or(0) as f64 / (1 << 20) as f64
    );
}
