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

pub fn run(a: SeismicBench) -> Result<()> {
    let (source, model) = super::search::open_with_model(&a.index, a.model.as_deref(), None)?;
    let queries = beir::read_queries(std::path::Path::new(&source.meta.corpus))
        .with_context(|| format!("reading the queries of {}", source.meta.corpus))?;
    let queries: Vec<_> = queries.into_iter().take(a.queries).collect();
    if queries.is_empty() {
        bail!("no queries to time");
    }
    let settings = a
        .settings
        .iter()
        .map(|s| match format!("seismic:{s}").parse::<Backend>() {
            Ok(Backend::Seismic(q)) => Ok((s.clone(), q)),
            Ok(_) => bail!("{s}: not a Seismic setting"),
            Err(e) => bail!("--setting {s}: {e}"),
        })
        .collect::<Result<Vec<(String, SeismicQuery)>>>()?;
    eprintln!("csplade: encoding {} queries", queries.len());
    let enc = Encoder::new(&model, source.meta.encoder_config());
    let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let vectors: Vec<_> = enc.encode(&texts)?.into_iter().map(|e| e.vector).collect();
    drop(model);

    let (idx, collection, synthetic_seconds) = match a.synthetic {
        None => (source, a.index.display().to_string(), None),
        Some(n) => {
            let out = a.synthetic_out.clone().unwrap_or_else(|| {
                csplade::model::fetch::data_dir()
                    .join("bench")
                    .join(format!(
                        "synthetic-{n}-{}-{}",
                        &source.meta.model.sha256[..12.min(source.meta.model.sha256.len())],
                        &source.meta.corpus_fingerprint
                            [..12.min(source.meta.corpus_fingerprint.len())]
                    ))
            });
            csplade::data::output::check(
                &out,
                &csplade::data::output::SYNTHETIC_INDEX,
                &[&a.index],
            )?;
            let reuse = LsrIndex::open(&out).ok().filter(|i| i.len() == n);
            let (idx, seconds) = match reuse {
                Some(i) => (i, None),
                None => {
                    eprintln!(
                        "csplade: drawing {n} synthetic documents from {}'s term statistics → {}",
                        a.index.display(),
                        out.display()
                    );
                    let t0 = Instant::now();
                    let stats =
                        synthetic::TermStatistics::of(&source.vectors, source.meta.vocab_size);
                    let drawn = synthetic::draw_collection(&stats, &source.vectors, n, 42);
                    let description = format!("synthetic, from {}", a.index.display());
                    synthetic::write_index(&out, &a.index, &source.meta, &drawn, &description)?;
                    drop(drawn);
                    let seconds = t0.elapsed().as_secs_f64();
                    let idx = LsrIndex::open(&out)
                        .with_context(|| format!("opening {}", out.display()))?;
                    (idx, Some(seconds))
                }
            };
            drop(source);
            (idx, out.display().to_string(), seconds)
        }
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

    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let (mut exact_ms, mut tantivy_ms) = (Vec::new(), Vec::new());
    let mut seismic_ms = vec![Vec::new(); settings.len()];
    let (mut tantivy_found, mut seismic_found, mut wanted) =
        (0usize, vec![0usize; settings.len()], 0usize);
    for q in &vectors {
        let t = Instant::now();
        let exact = idx.search_exact(q, a.k);
        exact_ms.push(ms(t));
        let truth: HashSet<usize> = exact.iter().map(|h| h.ordinal).collect();
        wanted += truth.len();
        let t = Instant::now();
        let tv = idx.search_tantivy(q, a.k)?;
        tantivy_ms.push(ms(t));
        tantivy_found += tv.iter().filter(|h| truth.contains(&h.ordinal)).count();
        for (i, (_, setting)) in settings.iter().enumerate() {
            let t = Instant::now();
            let hits = seismic.search(q, a.k, &idx.vectors, *setting);
            seismic_ms[i].push(ms(t));
            seismic_found[i] += hits.iter().filter(|h| truth.contains(&h.0)).count();
        }
    }
    let recall = |found: usize| found as f64 / wanted.max(1) as f64;
    let row = |v: &mut Vec<f64>| (percentile(v, 0.5), percentile(v, 0.99));
    let (e50, e99) = row(&mut exact_ms);
    let (t50, t99) = row(&mut tantivy_ms);
    // The exact scorer holds a (document, weight) posting per entry; the
    // forward vectors (8 bytes per entry too) serve both exact and Seismic.
    let exact_bytes = 8 * postings;
    let tantivy_bytes = dir_size(&idx.dir.join("tantivy"));
    let seismic_rows: Vec<_> = settings
        .iter()
        .zip(seismic_ms.iter_mut())
        .zip(&seismic_found)
        .map(|(((name, _), times), &found)| {
            let (p50, p99) = row(times);
            (name.clone(), p50, p99, recall(found))
        })
        .collect();
    if a.json {
        println!(
            "{}",
            json!({
                "collection": collection, "documents": idx.len(), "postings": postings,
                "queries": vectors.len(), "k": a.k, "synthetic_build_seconds": synthetic_seconds,
                "exact": {"p50_ms": e50, "p99_ms": e99, "recall": 1.0, "postings_bytes": exact_bytes},
                "tantivy": {"p50_ms": t50, "p99_ms": t99, "recall": recall(tantivy_found), "index_bytes_on_disk": tantivy_bytes},
                "seismic": {
                    "postings_per_term": build.postings_per_term, "block_fraction": build.block_fraction,
                    "summary_energy": build.summary_energy, "build_seconds": build_seconds,
                    "blocks": seismic.blocks(), "postings_kept": seismic.postings(), "bytes": seismic.heap_bytes(),
                    "settings": seismic_rows.iter().map(|(n, p50, p99, r)| json!({"setting": n, "p50_ms": p50, "p99_ms": p99, "recall": r})).collect::<Vec<_>>(),
                },
                "forward_vectors_bytes": 8 * postings, "peak_rss_bytes": peak_rss(),
                "query_threads": 1, "build_threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            })
        );
        return Ok(());
    }
    println!(
        "{} queries over {} ({} documents, {postings} postings), top {}, one thread:",
        vectors.len(),
        collection,
        idx.len(),
        a.k
    );
    if let Some(s) = synthetic_seconds {
        println!("  synthetic index written in {s:.1} s");
    }
    let mb = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "  {:<28} {:>9} {:>9} {:>10} {:>10}",
        "scorer", "p50 ms", "p99 ms", "recall@k", "memory MB"
    );
    println!(
        "  {:<28} {e50:>9.3} {e99:>9.3} {:>10.4} {:>10.1}",
        "exact",
        1.0,
        mb(exact_bytes)
    );
    println!(
        "  {:<28} {t50:>9.3} {t99:>9.3} {:>10.4} {:>10.1}",
        "tantivy (on disk)",
        recall(tantivy_found),
        mb(tantivy_bytes as usize)
    );
    for (name, p50, p99, r) in &seismic_rows {
        println!(
            "  {:<28} {p50:>9.3} {p99:>9.3} {r:>10.4} {:>10.1}",
            format!("seismic {name}"),
            mb(seismic.heap_bytes())
        );
    }
    println!(
        "  Seismic build: {build_seconds:.1} s (λ {}, {} blocks, {} of {postings} postings kept); forward vectors {:.1} MB; peak RSS {:.0} MB",
        build.postings_per_term,
        seismic.blocks(),
        seismic.postings(),
        mb(8 * postings),
        peak_rss().unwrap_or(0) as f64 / (1 << 20) as f64
    );
    Ok(())
}
