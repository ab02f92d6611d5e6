//! Index, search, explanations and evaluation on a tiny random model and a
//! small collection written by the test: tantivy's impact ranking equals
//! brute-force dot products, explanations add up, builds resume and publish
//! atomically, mismatched models are refused, bad collections are reported.

use std::path::Path;

use candle_core::Device;
use csplade::data::beir;
use csplade::encode::{Encoder, EncoderConfig, Head};
use csplade::index::{build, BuildOptions, IndexError};
use csplade::model::{self, LoadedModel};
use csplade::search::{Backend, LsrIndex};

const WORDS: &[&str] = &[
    "the", "otter", "river", "thin", "bank", "stone", "water", "fish", "night", "other", "inner",
    "on", "and", "theory", "heat",
];

fn write_corpus(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let mut corpus = String::new();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    let mut rng = model::tiny::SplitMix::new(99);
    for i in 0..n {
        let len = 3 + (rng.next_u64() % 20) as usize;
        let text: Vec<&str> = (0..len)
            .map(|_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize])
            .collect();
        corpus.push_str(&serde_json::json!({"_id": format!("d{i}"), "title": format!("doc {i}"), "text": text.join(" ")}).to_string());
        corpus.push('\n');
        if i % 3 == 0 {
            queries.push_str(
                &serde_json::json!({"_id": format!("q{i}"), "text": text[..3].join(" ")})
                    .to_string(),
            );
            queries.push('\n');
            qrels.push_str(&format!("q{i}\td{i}\t1\n"));
        }
    }
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
    std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
}

fn tiny_model(dir: &Path, seed: u64) -> LoadedModel {
    model::tiny::write_tiny_model(dir, seed).unwrap();
    model::load(dir.join("tiny.gguf").to_str().unwrap(), &Device::Cpu).unwrap()
}

fn opts(corpus: &Path, out: &Path) -> BuildOptions {
    BuildOptions {
        corpus: corpus.to_path_buf(),
        out: out.to_path_buf(),
        scale: 100.0,
        doc_top_k: 0,
        commit_every: 8,
        precision: "f32".into(),
        stop_after_commits: None,
        shard: None,
    }
}

fn config() -> EncoderConfig {
    EncoderConfig {
        head: Head::LogProb { shift: 2.0 },
        ..Default::default()
    }
}

#[test]
fn tantivy_impacts_rank_like_exact_dot_products_and_explanations_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(&tmp.path().join("m"), 1);
    let corpus = tmp.path().join("c");
    write_corpus(&corpus, 60);
    let out = tmp.path().join("idx");
    let enc = Encoder::new(&m, config());
    let meta = build(&enc, &opts(&corpus, &out), |_| {}).unwrap();
    assert_eq!(meta.documents, 60);
    let idx = LsrIndex::open(&out).unwrap();
    let docs = beir::read_corpus(&corpus).unwrap();
    for qtext in ["otter river", "the heat of the stone", "fish"] {
        let q = enc.encode_one(qtext).unwrap().vector;
        // Brute force over freshly encoded documents.
        let mut brute: Vec<(f32, String)> = docs
            .iter()
            .map(|d| {
                (
                    q.dot(&enc.encode_one(&d.full_text()).unwrap().vector),
                    d.id.clone(),
                )
            })
            .collect();
        brute.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let exact = idx.search(&q, 60, Backend::Exact).unwrap();
        let tant = idx.search(&q, 60, Backend::Tantivy).unwrap();
        assert_eq!(exact.len(), brute.iter().filter(|b| b.0 > 0.0).count());
        for (h, b) in exact.iter().zip(&brute) {
            assert!(
                (h.score - b.0).abs() <= 1e-3 * b.0.max(1.0),
                "exact {} vs brute {}",
                h.score,
                b.0
            );
        }
        // Quantized impacts: same ranking up to near-ties.
        let q_l1 = q.l1();
        for (i, h) in tant.iter().enumerate() {
            let exact_score = idx.vectors[h.ordinal].dot(&q);
            assert!(
                (h.score - exact_score).abs() <= q_l1 * 0.5 / 100.0 + 1e-4,
                "quantized score too far"
            );
            if i + 1 < tant.len() {
                let next = idx.vectors[tant[i + 1].ordinal].dot(&q);
                assert!(
                    exact_score + q_l1 / 100.0 + 1e-4 >= next,
                    "tantivy order breaks beyond quantization ties"
                );
            }
        }
        // Explanations add up to the score.
        let top = &exact[0];
        let sum: f32 = idx.explain(&q, top.ordinal).iter().map(|c| c.product).sum();
        assert!((sum - top.score).abs() < 1e-3);
        assert!(idx
            .explain_tantivy(&q, top.ordinal)
            .unwrap()
            .contains("impact sum"));
    }
    // The stored document comes back.
    assert_eq!(idx.document(5).unwrap().doc_id, "d5");
    // BM25 over the same corpus finds an exact-text query's document.
    let d7 = &docs[7];
    let hits = idx.search_bm25(&d7.text, 5).unwrap();
    assert_eq!(hits[0].doc_id, "d7");
}

#[test]
fn an_interrupted_build_resumes_and_publishes_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(&tmp.path().join("m"), 2);
    let corpus = tmp.path().join("c");
    write_corpus(&corpus, 40);
    let enc = Encoder::new(&m, config());
    // Reference: one uninterrupted build.
    let full = tmp.path().join("full");
    build(&enc, &opts(&corpus, &full), |_| {}).unwrap();
    // Interrupted twice, then completed.
    let out = tmp.path().join("idx");
    let mut o = opts(&corpus, &out);
    o.stop_after_commits = Some(2);
    let err = build(&enc, &o, |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::Interrupted {
                done: 16,
                total: 40,
                ..
            }
        ),
        "{err}"
    );
    assert!(!out.exists(), "a half index must not be visible");
    // What is committed so far can already be searched.
    let partial = csplade::index::build::read_partial(&out).unwrap();
    assert_eq!(partial.len(), 16);
    let open_err = LsrIndex::open(&out)
        .err()
        .expect("no index yet")
        .to_string();
    assert!(
        open_err.contains("interrupted") || open_err.contains("in progress"),
        "{open_err}"
    );
    assert!(matches!(
        build(&enc, &o, |_| {}).unwrap_err(),
        IndexError::Interrupted { done: 32, .. }
    ));
    let mut resumed_from = None;
    o.stop_after_commits = None;
    build(&enc, &o, |p| {
        if let csplade::index::BuildProgress::Start {
            resumed_from: r, ..
        } = p
        {
            resumed_from = Some(r);
        }
    })
    .unwrap();
    assert_eq!(resumed_from, Some(32));
    let a = LsrIndex::open(&full).unwrap();
    let b = LsrIndex::open(&out).unwrap();
    assert_eq!(a.vectors, b.vectors);
    for (ordinal, v) in &partial {
        assert_eq!(
            &a.vectors[*ordinal], v,
            "partial vector of document {ordinal}"
        );
    }
    let p = csplade::search::PartialIndex::new(partial, m.config().vocab_size, 40);
    let q = enc.encode_one("otter river").unwrap().vector;
    for (ordinal, score) in p.search(&q, 5) {
        assert!((a.vectors[ordinal].dot(&q) - score).abs() < 1e-4);
    }
    assert!(!csplade::index::build::staging_dir(&out).exists());
}

#[test]
fn an_index_refuses_another_model() {
    let tmp = tempfile::tempdir().unwrap();
    let m1 = tiny_model(&tmp.path().join("m1"), 3);
    let m2 = tiny_model(&tmp.path().join("m2"), 4);
    let corpus = tmp.path().join("c");
    write_corpus(&corpus, 10);
    let out = tmp.path().join("idx");
    build(&Encoder::new(&m1, config()), &opts(&corpus, &out), |_| {}).unwrap();
    let idx = LsrIndex::open(&out).unwrap();
    idx.meta
        .check_model(&m1.identity, m1.config().vocab_size)
        .unwrap();
    let err = idx
        .meta
        .check_model(&m2.identity, m2.config().vocab_size)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("query it with the model that built it"),
        "{err}"
    );
}

#[test]
fn bad_collections_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("corpus.jsonl"), "").unwrap();
    assert!(beir::read_corpus(d)
        .unwrap_err()
        .to_string()
        .contains("no documents"));
    std::fs::write(
        d.join("corpus.jsonl"),
        "{\"_id\":\"a\",\"text\":\"x\"}\n{\"_id\":\"a\",\"text\":\"y\"}\n",
    )
    .unwrap();
    let e = beir::read_corpus(d).unwrap_err().to_string();
    assert!(
        e.contains("corpus.jsonl:2") && e.contains("duplicate"),
        "{e}"
    );
    std::fs::write(
        d.join("corpus.jsonl"),
        b"{\"_id\":\"a\",\"text\":\"x\"}\n{\"_id\":\"b\",\"text\":\"\xff\xfe\"}\n",
    )
    .unwrap();
    let e = beir::read_corpus(d).unwrap_err().to_string();
    assert!(e.contains("corpus.jsonl:2") && e.contains("UTF-8"), "{e}");
    std::fs::write(
        d.join("corpus.jsonl"),
        "{\"_id\":\"a\",\"text\":\"x\"}\n{not json\n",
    )
    .unwrap();
    assert!(beir::read_corpus(d)
        .unwrap_err()
        .to_string()
        .contains("corpus.jsonl:2"));
    std::fs::create_dir_all(d.join("qrels")).unwrap();
    std::fs::write(
        d.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\ta\t1\nq1\tzz\tx\n",
    )
    .unwrap();
    let e = beir::read_qrels(d, "test").unwrap_err().to_string();
    assert!(
        e.contains("test.tsv:3") && e.contains("not an integer"),
        "{e}"
    );
    // Judgements naming unknown documents are reported.
    std::fs::write(
        d.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\ta\t1\nq1\tmissing\t1\n",
    )
    .unwrap();
    let qrels = beir::read_qrels(d, "test").unwrap();
    let docs = ["a"].into_iter().collect();
    let queries = ["q1"].into_iter().collect();
    assert_eq!(
        beir::unknown_judgements(&qrels, &docs, &queries),
        vec![("q1".to_string(), "missing".to_string())]
    );
}

#[test]
fn the_explorer_searches_and_explains_a_build_in_progress() {
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let m = Arc::new(csplade::model::SparseModel::Causal(Box::new(tiny_model(
        &tmp.path().join("m"),
        5,
    ))));
    let corpus = tmp.path().join("c");
    write_corpus(&corpus, 30);
    let out = tmp.path().join("idx");
    let mut o = opts(&corpus, &out);
    o.stop_after_commits = Some(1);
    assert!(build(&Encoder::new(m.as_ref(), config()), &o, |_| {}).is_err());
    let partial = csplade::index::build::read_partial(&out).unwrap();
    assert_eq!(partial.len(), 8);
    let docs = beir::read_corpus(&corpus).unwrap();
    let ex = csplade::explore::Explorer {
        model: m.clone(),
        config: config(),
        index: None,
        partial: Some(Arc::new(csplade::search::PartialIndex::new(
            partial.clone(),
            m.vocab_size(),
            docs.len(),
        ))),
        corpus: Arc::new(docs.clone()),
        queries: Arc::new(beir::read_queries(&corpus).unwrap()),
        qrels: Some(Arc::new(beir::read_qrels(&corpus, "test").unwrap())),
        backend: csplade::search::Backend::Exact,
        prior: Default::default(),
        fusion: Default::default(),
        inference_free: false,
    };
    let r = ex
        .query("otter river stone", 10, csplade::explore::Ranking::Lsr)
        .unwrap();
    assert!(!r.hits.is_empty());
    let encoded: std::collections::HashSet<usize> = partial.iter().map(|p| p.0).collect();
    assert!(
        r.hits.iter().all(|h| encoded.contains(&h.ordinal)),
        "only encoded documents are searched"
    );
    let d = ex.detail(&r.vector, r.hits[0].ordinal).unwrap();
    assert_eq!(d.doc_id, docs[r.hits[0].ordinal].id);
    let sum: f32 = d.contributions.iter().map(|c| c.4).sum();
    assert!((sum - r.hits[0].score).abs() < 1e-3);
    // Short documents are read whole; with a window of the title's tokens
    // and two more, the detail says where in the text the model stopped.
    assert_eq!(d.encoded_window, None);
    let doc = &docs[r.hits[0].ordinal];
    let window = m.tokenizer().encode(&doc.title).unwrap().len() + 2;
    let short = csplade::explore::Explorer {
        config: EncoderConfig {
            max_len: window,
            ..config()
        },
        ..ex
    };
    let d = short.detail(&r.vector, r.hits[0].ordinal).unwrap();
    let (at, tokens) = d.encoded_window.expect("the window cuts the text");
    assert_eq!(tokens, window);
    assert!(at > 0 && at < d.text.len(), "{at} of {:?}", d.text);
    let ids = m.tokenizer().encode(&doc.full_text()).unwrap();
    let read = m.tokenizer().decode(&ids[..window]);
    assert!(
        read.ends_with(&d.text[..at]),
        "{read:?} / {:?}",
        &d.text[..at]
    );
    // Query terms flagged as only beyond the window are in the unread text
    // and nowhere in what was read.
    for t in &d.beyond_window {
        let s = csplade::encode::encoder::surface(t);
        assert!(d.text[at..].to_lowercase().contains(&s), "{t:?}");
        assert!(!read.to_lowercase().contains(&s), "{t:?} was read");
    }
}

/// `--out` never destroys what is not csplade's: a directory of the user's
/// files and the input collection itself are refused, and left as they were.
#[test]
fn an_index_is_never_written_over_the_users_files_or_its_collection() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("ds");
    write_corpus(&corpus, 12);
    let m = tiny_model(&dir.path().join("m"), 3);
    let enc = Encoder::new(&m, config());
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("thesis.txt"), "years of work").unwrap();
    let before = std::fs::read(corpus.join("corpus.jsonl")).unwrap();
    for out in [mine.clone(), corpus.clone(), corpus.join("index")] {
        let e = build(&enc, &opts(&corpus, &out), |_| {}).expect_err("refused");
        assert!(
            matches!(
                e,
                IndexError::Output(csplade::data::output::OutputError::Refused(_))
            ),
            "{out:?}: {e}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(mine.join("thesis.txt")).unwrap(),
        "years of work"
    );
    assert_eq!(std::fs::read(corpus.join("corpus.jsonl")).unwrap(), before);
    assert!(corpus.join("queries.jsonl").is_file() && corpus.join("qrels/test.tsv").is_file());
    // An index (or nothing) at --out is fine, and is replaced.
    let out = dir.path().join("index");
    build(&enc, &opts(&corpus, &out), |_| {}).unwrap();
    build(&enc, &opts(&corpus, &out), |_| {}).unwrap();
    assert!(out.join("meta.json").is_file());
    // Damaged tantivy files: the error says to rebuild, not to upgrade tantivy.
    let tmeta = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("meta.json"))
        .find(|p| p.is_file() && !p.starts_with(out.join("meta.json")))
        .expect("a tantivy directory");
    let bytes = std::fs::read(&tmeta).unwrap();
    std::fs::write(&tmeta, &bytes[..bytes.len() / 2]).unwrap();
    let e = LsrIndex::open(&out).err().expect("refused").to_string();
    assert!(e.contains("rebuild the index"), "{e}");
    assert!(!e.to_lowercase().contains("upgrad"), "{e}");
}

/// A seeded failure: the relevant document shares the query's word "zebra"
/// (BM25 ranks it first) but no term with the query's expansion; the
/// explanation lists it with "zebra" missing from the expansion, and names
/// the terms that lifted the documents LSR ranked instead.
#[test]
fn a_seeded_failure_is_explained_by_its_missing_terms() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("ds");
    write_corpus(&corpus, 15);
    // One more document: the only one with "zebra".
    let mut text = std::fs::read_to_string(corpus.join("corpus.jsonl")).unwrap();
    text.push_str("{\"_id\": \"z\", \"title\": \"\", \"text\": \"zebra zebra grazing\"}\n");
    std::fs::write(corpus.join("corpus.jsonl"), text).unwrap();
    let m = tiny_model(&dir.path().join("m"), 3);
    let out = dir.path().join("idx");
    build(&Encoder::new(&m, config()), &opts(&corpus, &out), |_| {}).unwrap();
    let idx = LsrIndex::open(&out).unwrap();
    let z = (0..idx.len()).find(|&o| idx.doc_id(o) == "z").unwrap();
    // An expansion of one term the relevant document does not have, and
    // that some other documents do.
    let zv = &idx.vectors[z];
    let term = (0..m.config().vocab_size as u32)
        .find(|&t| zv.get(t) == 0.0 && idx.vectors.iter().filter(|v| v.get(t) > 0.0).count() >= 3)
        .expect("a term absent from z");
    let expansion = csplade::encode::SparseVec::from_pairs(vec![(term, 1.0)]);
    let lsr = idx.search(&expansion, 100, Backend::Exact).unwrap();
    let query = "zebra grazing";
    let bm25 = idx.search_bm25(query, 100).unwrap();
    assert_eq!(bm25[0].doc_id, "z", "BM25 finds the zebra document first");
    let judged: std::collections::HashMap<String, i32> = [("z".to_string(), 1)].into();
    let case = csplade::failures::FailureCase {
        query_id: "qz",
        text: query,
        expansion: &expansion,
        judged: &judged,
        lsr: &lsr,
        bm25: &bm25,
        ndcg_lsr: 0.0,
        ndcg_bm25: 1.0,
    };
    let f = csplade::failures::explain(&idx, &m.tokenizer, &case).unwrap();
    assert_eq!(f.missed.len(), 1);
    let missed = &f.missed[0];
    assert_eq!((missed.doc_id.as_str(), missed.bm25_rank), ("z", Some(1)));
    assert!(missed.lsr_rank.is_none_or(|r| r > 10), "{missed:?}");
    assert!(missed.shared_terms.is_empty(), "{missed:?}");
    let zebra = missed
        .bm25_words
        .iter()
        .find(|w| w.word == "zebra")
        .expect("zebra scores under BM25");
    assert!(zebra.bm25 > 0.0 && zebra.missing_from_expansion && zebra.query_weight == 0.0);
    assert!(
        zebra.doc_weight > 0.0,
        "the document's vector has zebra's tokens"
    );
    assert!(!f.wrong_hits.is_empty());
    let tok = m.tokenizer.token(term).to_string();
    for h in &f.wrong_hits {
        assert_eq!(h.lifted_by[0].token, tok, "{h:?}");
    }
}

/// Three shards (every third commit batch each) merged give the index a
/// one-process build writes: the same vectors, bit for bit, and the same
/// rankings — through the real binary, as job-array tasks would run it.
#[test]
fn shards_merge_into_the_one_process_index() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("ds");
    write_corpus(&corpus, 37);
    model::tiny::write_tiny_model(&dir.path().join("m"), 8).unwrap();
    let spec = dir.path().join("m/tiny.gguf");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_csplade"))
            .args(args)
            .env("CSPLADE_HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let s = spec.to_str().unwrap();
    let c = corpus.to_str().unwrap();
    let common = [
        "--model",
        s,
        "--corpus",
        c,
        "--commit-every",
        "4",
        "--batch",
        "3",
        "--variant",
        "echo",
    ];
    let whole = dir.path().join("whole");
    let mut a = vec!["index", "--out", whole.to_str().unwrap()];
    a.extend(common);
    run(&a);
    // The index records its model: search, eval and export need no --model
    // (the default model would be refused as not the one that built it).
    let w = whole.to_str().unwrap();
    run(&["search", "--index", w, "otter river"]);
    run(&["eval", "--dataset", c, "--index", w, "--system", "lsr"]);
    let export = dir.path().join("whole.jsonl");
    run(&[
        "export",
        "--index",
        w,
        "--format",
        "anserini",
        "--out",
        export.to_str().unwrap(),
    ]);
    let mut shards = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("shard-{i}"));
        let spec = format!("{i}/3");
        let mut a = vec![
            "index",
            "--out",
            out.to_str().unwrap(),
            "--shard",
            spec.as_str(),
        ];
        a.extend(common);
        run(&a);
        assert!(out.join("shard.json").is_file() && !out.join("meta.json").exists());
        shards.push(out);
    }
    let merged = dir.path().join("merged");
    let mut a = vec!["index", "merge", "--out", merged.to_str().unwrap()];
    // Any order.
    for p in shards.iter().rev() {
        a.push(p.to_str().unwrap());
    }
    run(&a);
    assert_eq!(
        std::fs::read(whole.join("vectors.bin")).unwrap(),
        std::fs::read(merged.join("vectors.bin")).unwrap(),
        "merged vectors differ from the one-process build"
    );
    let (x, y) = (
        LsrIndex::open(&whole).unwrap(),
        LsrIndex::open(&merged).unwrap(),
    );
    for q in ["otter river", "heat theory", "stone bank water"] {
        let v = Encoder::new(&tiny_model_at(&spec), x.meta.encoder_config())
            .encode_one(q)
            .unwrap()
            .vector;
        for backend in [Backend::Exact, Backend::Tantivy] {
            assert_eq!(
                x.search(&v, 10, backend).unwrap(),
                y.search(&v, 10, backend).unwrap(),
                "{q}"
            );
        }
        assert_eq!(x.search_bm25(q, 10).unwrap(), y.search_bm25(q, 10).unwrap());
    }
    // Missing or repeated shards are refused.
    let out = dir.path().join("bad");
    for bad in [
        vec![&shards[0], &shards[1]],
        vec![&shards[0], &shards[0], &shards[2]],
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_csplade"))
            .args(["index", "merge", "--out", out.to_str().unwrap()])
            .args(bad.iter().map(|p| p.to_str().unwrap()))
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("shards 0..3"));
    }
    // A complete index, or a directory that is no shard, is named as such.
    for (not_a_shard, says) in [
        (&whole, "complete index, not a shard"),
        (&dir.path().to_path_buf(), "not a shard (no shard.json)"),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_csplade"))
            .args(["index", "merge", "--out", out.to_str().unwrap()])
            .arg(not_a_shard)
            .args([&shards[1], &shards[2]])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(says), "{e}");
    }
    // A shard's journal changed after it was finished: the merge says which
    // shard and how to rebuild it, and writes nothing.
    let journal = shards[1].join("journal.bin");
    let mut bytes = std::fs::read(&journal).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&journal, &bytes).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(["index", "merge", "--out", out.to_str().unwrap()])
        .args(shards.iter().map(|p| p.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("shard 1/3's journal changed") && e.contains("--shard 1/3"),
        "{e}"
    );
    assert!(!out.exists(), "a refused merge left {}", out.display());
}

fn tiny_model_at(spec: &Path) -> LoadedModel {
    model::load(spec.to_str().unwrap(), &Device::Cpu).unwrap()
}

#[test]
fn seismic_answers_from_a_cached_structure_and_synthetic_collections_are_indexes() {
    use csplade::index::synthetic;
    use csplade::search::seismic::SeismicQuery;
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(&tmp.path().join("m"), 4);
    let corpus = tmp.path().join("c");
    write_corpus(&corpus, 60);
    let out = tmp.path().join("idx");
    let enc = Encoder::new(&m, config());
    build(&enc, &opts(&corpus, &out), |_| {}).unwrap();
    let idx = LsrIndex::open(&out).unwrap();
    let every_block = Backend::Seismic(SeismicQuery {
        query_terms: usize::MAX,
        heap_factor: 0.0,
    });
    let cache = out.join(csplade::search::SEISMIC_FILE);
    assert!(!cache.exists());
    for qtext in ["otter river", "the heat of the stone", "fish"] {
        let q = enc.encode_one(qtext).unwrap().vector;
        let exact = idx.search(&q, 10, Backend::Exact).unwrap();
        let seismic = idx.search(&q, 10, every_block).unwrap();
        // Visiting every block of every query term, Seismic is exact.
        assert_eq!(seismic.len(), exact.len());
        for (s, e) in seismic.iter().zip(&exact) {
            assert!((s.score - e.score).abs() < 1e-4, "{s:?} vs {e:?}");
        }
        // With the default pruning, its scores are still exact dot products.
        for h in idx
            .search(&q, 10, Backend::Seismic(SeismicQuery::default()))
            .unwrap()
        {
            assert!((h.score - idx.vectors[h.ordinal].dot(&q)).abs() < 1e-4);
        }
    }
    assert!(cache.is_file(), "the structure is cached next to the index");
    let written = std::fs::metadata(&cache).unwrap().modified().unwrap();
    let again = LsrIndex::open(&out).unwrap();
    let q = enc.encode_one("otter river").unwrap().vector;
    again.search(&q, 10, every_block).unwrap();
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        written
    );
    // A damaged cache is an error naming the file, never a wrong answer.
    let bytes = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &bytes[..bytes.len() / 2]).unwrap();
    let err = LsrIndex::open(&out)
        .unwrap()
        .search(&q, 10, every_block)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("seismic.bin") && err.contains("truncated"),
        "{err}"
    );

    // A synthetic collection drawn from the index is itself an index.
    let stats = synthetic::TermStatistics::of(&idx.vectors, idx.meta.vocab_size);
    let drawn = synthetic::draw_collection(&stats, &idx.vectors, 500, 3);
    let syn = tmp.path().join("synthetic");
    synthetic::write_index(
        &syn,
        &out,
        &idx.meta,
        &drawn,
        "synthetic, from the test index",
    )
    .unwrap();
    // Never over the very index it reads.
    let err = synthetic::write_index(&out, &out, &idx.meta, &drawn, "over itself").unwrap_err();
    assert!(err.to_string().contains("input"), "{err}");
    assert!(LsrIndex::open(&out).is_ok());
    let s = LsrIndex::open(&syn).unwrap();
    assert_eq!(s.len(), 500);
    assert_eq!(s.vectors, drawn);
    let exact = s.search(&q, 10, Backend::Exact).unwrap();
    let tantivy = s.search(&q, 10, Backend::Tantivy).unwrap();
    assert_eq!(exact.len(), tantivy.len());
    assert_eq!(s.doc_id(exact[0].ordinal), format!("s{}", exact[0].ordinal));
}
