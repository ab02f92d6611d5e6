//! Long documents as passages (`--passages WORDS:STRIDE:FROM`, MaxP) on a
//! tiny random model and a small collection written by the test: every
//! passage is indexed as the encoder reads it on its own, a document scores
//! as the best of its first read and its passages, explanations name that
//! passage and add up to the score, through the library and `search`; the
//! settings that cannot go with passages are refused by name; resumed and
//! sharded builds write what one run does; a split an adapter records is
//! what `index` and `eval` use unless told `none`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use csplade::data::beir;
use csplade::encode::{Encoder, EncoderConfig, SparseVec};
use csplade::explore::{Explorer, Ranking};
use csplade::index::passages::PassageSpec;
use csplade::index::{build, BuildOptions};
use csplade::model::SparseModel;
use csplade::search::{Backend, LsrIndex, QueryPrior};

mod common;
use common::index::*;

/// Passages of 6 words every 4 from the 5th: most test documents (3–23
/// words) have one to four.
fn spec() -> PassageSpec {
    "6:4:5".parse().unwrap()
}

fn with_passages(corpus: &Path, out: &Path) -> BuildOptions {
    BuildOptions {
        passages: Some(spec()),
        ..opts(corpus, out)
    }
}

/// Each document's score: the best of its first read and its passages,
/// all encoded afresh, one text at a time.
fn brute_force(enc: &Encoder, docs: &[beir::Document], q: &SparseVec) -> Vec<f32> {
    docs.iter()
        .map(|d| {
            let first = q.dot(&enc.encode_one(&d.full_text()).unwrap().vector);
            spec()
                .split(d)
                .iter()
                .map(|p| q.dot(&enc.encode_one(&p.full_text()).unwrap().vector))
                .fold(first, f32::max)
        })
        .collect()
}

#[test]
fn documents_rank_by_their_best_passage_and_explanations_name_it() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Arc::new(SparseModel::Causal(Box::new(tiny_model(
        &tmp.path().join("m"),
        5,
    ))));
    let corpus = tmp.path().join("c");
    write_corpus(&corpus, 40);
    let out = tmp.path().join("idx");
    let enc = Encoder::new(m.as_ref(), config());
    let meta = build(&enc, &with_passages(&corpus, &out), |_| {}).unwrap();
    assert_eq!((meta.documents, meta.passages), (40, Some(spec())));
    let idx = Arc::new(LsrIndex::open(&out).unwrap());
    let docs = beir::read_corpus(&corpus).unwrap();
    let passages = idx.passages.as_ref().unwrap();
    let want: usize = docs.iter().map(|d| spec().split(d).len()).sum();
    assert!(
        want > 40,
        "{want} passages: the test needs documents with several"
    );
    assert_eq!(passages.len(), want);
    let mut ranked_by_a_passage = 0;
    for text in ["otter river", "the heat of the stone", "fish night bank"] {
        let q = enc.encode_one(text).unwrap().vector;
        let brute = brute_force(&enc, &docs, &q);
        let hits = idx.search(&q, 40, Backend::Exact).unwrap();
        assert_eq!(hits.len(), brute.iter().filter(|&&s| s > 0.0).count());
        for w in hits.windows(2) {
            assert!(w[0].score >= w[1].score, "{text}: ranked by score");
        }
        for h in &hits {
            let want = brute[h.ordinal];
            assert!(
                (h.score - want).abs() <= 1e-3 * want.max(1.0),
                "{text}: {} scored {} against its best read {want}",
                h.doc_id,
                h.score
            );
            // The explanation is the scoring passage's, and adds up.
            let sum: f32 = idx.explain(&q, h.ordinal).iter().map(|c| c.product).sum();
            assert!((sum - h.score).abs() <= 1e-3 * h.score.max(1.0), "{text}");
            let first = q.dot(&idx.vectors[h.ordinal]);
            match idx.best_passage(&q, QueryPrior::None, &SparseVec::default(), h.ordinal) {
                Some((k, s)) => {
                    ranked_by_a_passage += 1;
                    assert!(s > first && (s - h.score).abs() < 1e-4, "{text}");
                    let doc = idx.document(h.ordinal).unwrap();
                    let words = idx.passage_text(&doc, k).unwrap();
                    assert_eq!(words, spec().split(&docs[h.ordinal])[k - 1].text);
                }
                None => assert!((first - h.score).abs() < 1e-4, "{text}"),
            }
        }
    }
    assert!(
        ranked_by_a_passage > 0,
        "no hit was ranked by a passage: the test checks nothing"
    );
    explorer_names_the_passage(m.clone(), &corpus, idx.clone());
    // Passages are scored by the exact backend alone.
    let q = enc.encode_one("otter").unwrap().vector;
    let e = idx.search(&q, 5, Backend::Tantivy).unwrap_err().to_string();
    assert!(e.contains("only the exact backend"), "{e}");
}

#[test]
fn passages_are_refused_beside_windows_and_resumed_or_sharded_builds_match_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(&tmp.path().join("m"), 5);
    let corpus = tmp.path().join("c");
    write_corpus(&corpus, 30);
    let windows = Encoder::new(
        &m,
        EncoderConfig {
            windows: 2,
            ..config()
        },
    );
    let out = tmp.path().join("w");
    let e = build(&windows, &with_passages(&corpus, &out), |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("--windows") && e.contains("choose one"), "{e}");
    assert!(!out.exists() && !tmp.path().join("w.partial").exists());
    let enc = Encoder::new(&m, config());
    // Stopped after two commits, then resumed; or built as three shards and
    // merged: the same index as one run.
    let whole = tmp.path().join("whole");
    build(&enc, &with_passages(&corpus, &whole), |_| {}).unwrap();
    let resumed = tmp.path().join("resumed");
    let stopped = BuildOptions {
        stop_after_commits: Some(2),
        ..with_passages(&corpus, &resumed)
    };
    assert!(build(&enc, &stopped, |_| {}).is_err());
    build(&enc, &with_passages(&corpus, &resumed), |_| {}).unwrap();
    let shards: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let out = tmp.path().join(format!("shard-{i}"));
            let shard = BuildOptions {
                shard: Some((i, 3)),
                ..with_passages(&corpus, &out)
            };
            build(&enc, &shard, |_| {}).unwrap();
            out
        })
        .collect();
    let merged = tmp.path().join("merged");
    let meta = csplade::index::shard::merge(&shards, &merged, |_| {}).unwrap();
    assert_eq!(meta.passages, Some(spec()));
    for dir in [&resumed, &merged] {
        for f in ["vectors.bin", "passages.bin"] {
            assert_eq!(
                std::fs::read(whole.join(f)).unwrap(),
                std::fs::read(dir.join(f)).unwrap(),
                "{}: {f}",
                dir.display()
            );
        }
    }
}

/// The explorer's detail of every hit: the passage it ranked by, its
/// words, and contributions that add up to the hit's score.
fn explorer_names_the_passage(model: Arc<SparseModel>, corpus: &Path, idx: Arc<LsrIndex>) {
    let docs = beir::read_corpus(corpus).unwrap();
    let ex = Explorer {
        model,
        config: config(),
        index: Some(idx),
        partial: None,
        corpus: Arc::new(docs.clone()),
        queries: Arc::new(beir::read_queries(corpus).unwrap()),
        qrels: None,
        backend: Backend::Exact,
        prior: QueryPrior::Idf { power: 0.5 },
        feedback: Default::default(),
        fusion: Default::default(),
        inference_free: false,
    };
    let mut named = 0;
    for text in ["otter river", "the heat of the stone", "fish night bank"] {
        let r = ex.query(text, 40, Ranking::Lsr).unwrap();
        for h in &r.hits {
            let d = ex
                .detail(&r.vector, &r.feedback_terms.terms, h.ordinal)
                .unwrap();
            let sum: f32 = d.contributions.iter().map(|(_, c)| c.product).sum();
            assert!((sum - h.score).abs() <= 1e-3 * h.score.max(1.0), "{text}");
            assert_eq!(d.passages, spec().split(&docs[h.ordinal]).len());
            if let Some((k, words)) = &d.passage {
                named += 1;
                assert_eq!(words, &spec().split(&docs[h.ordinal])[k - 1].text);
            }
        }
    }
    assert!(named > 0, "no detail named a passage");
}

/// A tiny model, a collection and its index with passages `6:4:5`, built
/// through the binary: (the model's GGUF, the collection, the index).
fn cli_passage_index(home: &Path) -> (PathBuf, PathBuf, PathBuf) {
    tiny_model(&home.join("m"), 5);
    let gguf = home.join("m/tiny.gguf");
    let corpus = home.join("c");
    write_corpus(&corpus, 30);
    let index = home.join("idx");
    common::succeeds(
        common::csplade_in(home)
            .args(["index", "--passages", "6:4:5", "--model"])
            .arg(&gguf)
            .arg("--corpus")
            .arg(&corpus)
            .arg("--out")
            .arg(&index),
    );
    (gguf, corpus, index)
}

/// `index --passages` and `search --explain --json` through the binary: a
/// hit ranked by a passage names it, and its explanation adds up.
#[test]
fn search_names_the_passage_a_document_ranked_by() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (gguf, corpus, index) = cli_passage_index(home);
    let bad = common::csplade_in(home)
        .args(["index", "--passages", "6:9:5", "--model"])
        .arg(&gguf)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(home.join("bad"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && e.contains("STRIDE \"9\""), "{e}");
    // Passages longer than --max-len are cut, and the build says so.
    let short = common::succeeds(
        common::csplade_in(home)
            .args(["index", "--passages", "6:4:5", "--max-len", "4", "--model"])
            .arg(&gguf)
            .arg("--corpus")
            .arg(&corpus)
            .arg("--out")
            .arg(home.join("short")),
    );
    let said = String::from_utf8_lossy(&short.stderr);
    assert!(
        said.contains("passages are longer than 4 tokens")
            && said.contains("passages of their later words"),
        "{said}"
    );
    let mut named = 0;
    for text in ["otter river", "the heat of the stone", "fish night bank"] {
        let out = common::json_output(
            common::csplade_in(home)
                .args(["search", "--explain", "--explain-terms", "1000", "--json"])
                .args(["--query-feedback", "none", "--k", "30", "--index"])
                .arg(&index)
                .arg(text),
        );
        for h in out["hits"].as_array().unwrap() {
            let score = h["score"].as_f64().unwrap();
            assert!((common::explained_score(h) - score).abs() < 1e-3 * score.max(1.0));
            if let Some(p) = h.get("passage") {
                named += 1;
                assert!(p["number"].as_u64().unwrap() >= 1, "{h}");
                assert!(!p["text"].as_str().unwrap().is_empty(), "{h}");
            }
        }
    }
    assert!(named > 0, "no hit named a passage");
}

/// `eval --passages` ranks over a cached index of its own, `bench search`
/// times the exact scorer alone, `bench seismic` refuses, and `index
/// verify` checks `passages.bin`.
#[test]
fn eval_bench_and_verify_take_a_passage_index() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (gguf, corpus, index) = cli_passage_index(home);

    let eval = common::json_output(
        common::csplade_in(home)
            .args(["eval", "--passages", "6:4:5", "--system", "lsr", "--json"])
            .arg("--model")
            .arg(&gguf)
            .arg("--dataset")
            .arg(&corpus),
    );
    assert_eq!(eval["passages"]["spec"], "6:4:5", "{eval}");
    assert!(eval["passages"]["count"].as_u64().unwrap() > 0, "{eval}");
    let both = common::csplade_in(home)
        .args(["eval", "--passages", "6:4:5", "--index"])
        .arg(&index)
        .arg("--dataset")
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(!both.status.success(), "--index records its own passages");
    // `bench search` times the exact scorer alone; `bench seismic` refuses.
    let bench = common::json_output(
        common::csplade_in(home)
            .args(["bench", "search", "--queries", "5", "--json", "--index"])
            .arg(&index),
    );
    assert!(
        bench["lsr_exact_ms"]["p50"].as_f64().unwrap() >= 0.0,
        "{bench}"
    );
    assert!(bench["lsr_tantivy_ms"].is_null() && bench["passages"].as_u64().unwrap() > 0);
    let seismic = common::csplade_in(home)
        .args(["bench", "seismic", "--index"])
        .arg(&index)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&seismic.stderr);
    assert!(
        !seismic.status.success() && e.contains("Seismic does not index"),
        "{e}"
    );
    // `index verify` checks the passages; a changed byte fails it by name.
    let verify = || {
        common::csplade_in(home)
            .args(["index", "verify"])
            .arg(&index)
            .output()
            .unwrap()
    };
    let good = verify();
    let said = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success() && said.contains("passages.bin"),
        "{said}"
    );
    let file = index.join("passages.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    let bad = verify();
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(
        !bad.status.success() && said.contains("checksum mismatch"),
        "{said}"
    );
    let e = LsrIndex::open(&index).err().unwrap().to_string();
    assert!(e.contains("passages.bin") && e.contains("checksum"), "{e}");
}

/// A tiny model, a LoRA adapter of it that records the split `6:4:5` (as
/// `adapter set-prior --passages` writes it: recorded, kept when not told,
/// cleared by `none`), and a collection; returns the model spec of base +
/// that adapter, the bare GGUF and the collection.
fn recording_adapter(home: &Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    tiny_model(&home.join("m"), 5);
    let gguf = home.join("m/tiny.gguf");
    let lora = common::lora_adapter(&home.join("m"));
    let recorded = home.join("recorded.safetensors");
    let set_prior = |adapter: &Path, out: &Path, extra: &[&str]| {
        common::succeeds(
            common::csplade_in(home)
                .args(["adapter", "set-prior", "--prior", "none", "--model"])
                .arg(&gguf)
                .arg("--adapter")
                .arg(adapter)
                .arg("--out")
                .arg(out)
                .args(extra),
        );
        csplade::model::adapter::Adapter::read(out).unwrap().meta
    };
    let split = |extra: &[&str], from: &Path, to: &str| set_prior(from, &home.join(to), extra);
    assert_eq!(
        split(&["--passages", "6:4:5"], &lora, "recorded.safetensors").passages,
        Some(spec())
    );
    assert_eq!(
        split(&[], &recorded, "kept.safetensors").passages,
        Some(spec())
    );
    assert_eq!(
        split(&["--passages", "none"], &recorded, "cleared.safetensors").passages,
        None
    );
    let corpus = home.join("c");
    write_corpus(&corpus, 30);
    (
        format!("{}+{}", gguf.display(), recorded.display()),
        gguf,
        corpus,
    )
}

/// `csplade index --model MODEL` of `corpus` into `home/out`, with `extra`.
fn index_with(
    home: &Path,
    model: &str,
    corpus: &Path,
    out: &str,
    extra: &[&str],
) -> std::process::Output {
    common::csplade_in(home)
        .args(["index", "--model", model, "--corpus"])
        .arg(corpus)
        .arg("--out")
        .arg(home.join(out))
        .args(extra)
        .output()
        .unwrap()
}

fn built(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `index` uses the split and length an adapter records unless told
/// another or `none`; a model without an adapter reads 256 tokens.
#[test]
fn builds_follow_the_split_and_length_an_adapter_records_unless_told() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (model, gguf, corpus) = recording_adapter(home);
    let meta_of = |out: &str| LsrIndex::open(&home.join(out)).unwrap().meta;
    for (out, extra, split, max_len) in [
        ("recorded", &[][..], Some(spec()), 64),
        ("none", &["--passages", "none"][..], None, 64),
        (
            "told",
            &["--passages", "8:4:5", "--max-len", "20"][..],
            Some("8:4:5".parse().unwrap()),
            20,
        ),
    ] {
        built(&index_with(home, &model, &corpus, out, extra));
        let meta = meta_of(out);
        assert_eq!((meta.passages, meta.max_len), (split, max_len), "{out}");
    }
    built(&index_with(
        home,
        gguf.to_str().unwrap(),
        &corpus,
        "bare",
        &[],
    ));
    assert_eq!(meta_of("bare").max_len, 256);
    let read = |out: &str| std::fs::read(home.join(out).join("vectors.bin")).unwrap();
    assert_eq!(
        read("recorded"),
        read("none"),
        "first reads are the same either way"
    );
}

/// A recorded split goes with shards and with `eval`'s cached index, and is
/// refused beside --windows with the way out.
#[test]
fn a_recorded_split_shards_and_evaluates_and_is_refused_beside_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (model, _, corpus) = recording_adapter(home);
    built(&index_with(
        home,
        &model,
        &corpus,
        "shard",
        &["--shard", "0/2"],
    ));
    let recorded_shard = csplade::index::shard::read_shard(&home.join("shard")).unwrap();
    assert_eq!(recorded_shard.index.passages, Some(spec()));
    let refused = index_with(home, &model, &corpus, "windows", &["--windows", "2"]);
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "built with --windows");
    assert!(
        e.contains("records passages 6:4:5") && e.contains("--passages none"),
        "{e}"
    );
    assert!(!home.join("windows").exists(), "left an index behind");
    let with_none = ["--windows", "2", "--passages", "none"];
    built(&index_with(home, &model, &corpus, "windows", &with_none));
    // `eval` builds its cached index with the recorded split, or without.
    let eval = |extra: &[&str]| {
        common::json_output(
            common::csplade_in(home)
                .args(["eval", "--system", "lsr", "--json", "--model", &model])
                .arg("--dataset")
                .arg(&corpus)
                .args(extra),
        )
    };
    let own = eval(&[]);
    assert_eq!(own["passages"]["spec"], "6:4:5", "{own}");
    let first_reads = eval(&["--passages", "none"]);
    assert!(first_reads.get("passages").is_none(), "{first_reads}");
}
