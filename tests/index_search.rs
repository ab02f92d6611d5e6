//! Index, search, explanations and evaluation on a tiny random model and a
//! small collection written by the test: tantivy's impact ranking equals
//! brute-force dot products, explanations add up, builds resume and publish
//! atomically, mismatched models are refused, bad collections are reported.

use csplade::data::beir;
use csplade::encode::{Encoder, EncoderConfig};
use csplade::index::{build, IndexError};
use csplade::search::{Backend, LsrIndex};

mod common;
use common::index::*;

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
    let partial = csplade::index::journal::read_partial(&out).unwrap();
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
    let partial = csplade::index::journal::read_partial(&out).unwrap();
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
        feedback: Default::default(),
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
    let d = ex
        .detail(&r.vector, &r.feedback_terms.terms, r.hits[0].ordinal)
        .unwrap();
    assert_eq!(d.doc_id, docs[r.hits[0].ordinal].id);
    let sum: f32 = d.contributions.iter().map(|(_, c)| c.product).sum();
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
    let d = short
        .detail(&r.vector, &r.feedback_terms.terms, r.hits[0].ordinal)
        .unwrap();
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
