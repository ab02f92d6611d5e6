//! The real collections in ../shared/data (through CSPLADE_DATA): counts,
//! graded judgements, and the BM25 baseline against Anserini's published
//! SciFact figure. Plus the man-page demo corpus from this machine.

mod common;

use std::collections::{HashMap, HashSet};

use csplade::data::beir;
use csplade::eval::evaluate_run;
use csplade::index::bm25::Bm25Index;

#[test]
fn scifact_and_cranfield_read_with_the_published_counts() {
    let Some(data) = common::data_dir() else {
        return;
    };
    let sf = data.join("scifact");
    assert_eq!(beir::read_corpus(&sf).unwrap().len(), 5183);
    let test = beir::read_qrels(&sf, "test").unwrap();
    let train = beir::read_qrels(&sf, "train").unwrap();
    assert_eq!(test.len(), 300);
    assert_eq!(train.len(), 809);
    assert_eq!(test.values().map(|j| j.len()).sum::<usize>(), 339);
    let cf = data.join("cranfield");
    let docs = beir::read_corpus(&cf).unwrap();
    assert_eq!(docs.len(), 1400);
    let q = beir::read_qrels(&cf, "test").unwrap();
    assert_eq!(q.len(), 225);
    assert_eq!(q.values().map(|j| j.len()).sum::<usize>(), 1837);
    let grades: HashSet<i32> = q.values().flat_map(|j| j.values().copied()).collect();
    assert!(
        grades.contains(&4) && grades.contains(&1),
        "graded judgements expected, got {grades:?}"
    );
    let doc_ids: HashSet<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    let queries = beir::read_queries(&cf).unwrap();
    let qids: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let unknown = beir::unknown_judgements(&q, &doc_ids, &qids);
    assert!(
        unknown.is_empty(),
        "Cranfield judgements naming unknown ids: {unknown:?}"
    );
}

#[test]
fn bm25_on_scifact_test_is_within_0_015_of_anserini() {
    let Some(data) = common::data_dir() else {
        return;
    };
    let sf = data.join("scifact");
    let docs = beir::read_corpus(&sf).unwrap();
    let queries = beir::read_queries(&sf).unwrap();
    let qrels = beir::read_qrels(&sf, "test").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    Bm25Index::build(&tmp.path().join("bm25"), &docs).unwrap();
    let bm = Bm25Index::open(&tmp.path().join("bm25")).unwrap();
    let mut runs = HashMap::new();
    for q in queries.iter().filter(|q| qrels.contains_key(&q.id)) {
        let hits = bm.search(&q.text, 1000).unwrap();
        runs.insert(
            q.id.clone(),
            hits.iter().map(|h| docs[h.ordinal].id.clone()).collect(),
        );
    }
    let (mean, per) = evaluate_run(&runs, &qrels);
    eprintln!(
        "BM25 SciFact test: nDCG@10 {:.4} MRR@10 {:.4} R@100 {:.4}",
        mean.ndcg10, mean.mrr10, mean.recall100
    );
    assert_eq!(per.len(), 300);
    assert!(
        (mean.ndcg10 - 0.679).abs() <= 0.015,
        "nDCG@10 {}",
        mean.ndcg10
    );
}

#[test]
fn man_pages_become_a_known_item_collection() {
    let root = std::path::Path::new("/usr/share/man/man1");
    if !root.is_dir() {
        common::note_skip("man pages: none on this machine");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("man");
    let opts = csplade::data::manpages::ManpageOptions {
        max: 40,
        ..Default::default()
    };
    let r = csplade::data::manpages::convert(&opts, &out).unwrap();
    assert_eq!(r.written, 40);
    let docs = beir::read_corpus(&out).unwrap();
    let queries = beir::read_queries(&out).unwrap();
    let qrels = beir::read_qrels(&out, "test").unwrap();
    // One query per distinct NAME description: pages that share one are
    // all relevant to it, and every page is relevant to exactly one query.
    assert_eq!((docs.len(), queries.len()), (40, r.queries));
    assert_eq!(qrels.len(), queries.len());
    for q in &queries {
        assert!(!q.text.is_empty() && !qrels[&q.id].is_empty(), "{}", q.id);
    }
    for d in &docs {
        let judged = qrels.values().filter(|j| j.get(&d.id) == Some(&1)).count();
        assert_eq!(judged, 1, "{}", d.id);
        // The NAME line (the query) is not left in the document.
        assert!(!d.text.starts_with("NAME"), "{}", d.id);
    }
}

/// The training collections under train/ are gzip-compressed BEIR
/// collections; they read with the counts of their README, and every
/// qrels line becomes one training pair.
#[test]
fn training_collections_read_compressed_with_the_published_counts() {
    let Some(data) = common::data_dir() else {
        return;
    };
    // (name, passages, queries, pairs) from ../shared/data/README.md.
    let expected = [
        ("squad", 18_891, 87_341, 87_423),
        ("nq-qed", 8_096, 8_522, 8_522),
        ("medquad", 15_809, 14_979, 16_359),
        ("debian", 58_227, 57_176, 58_227),
    ];
    for (name, passages, queries, pairs) in expected {
        let dir = data.join("train").join(name);
        assert!(
            dir.join("corpus.jsonl.gz").is_file(),
            "{name}: no corpus.jsonl.gz"
        );
        assert_eq!(beir::read_corpus(&dir).unwrap().len(), passages, "{name}");
        assert_eq!(beir::read_queries(&dir).unwrap().len(), queries, "{name}");
        let qrels = beir::read_qrels(&dir, "train").unwrap();
        assert_eq!(
            qrels.values().map(|j| j.len()).sum::<usize>(),
            pairs,
            "{name}"
        );
        let sizes = csplade::train::data::source_sizes(&data, &[name.to_string()]).unwrap();
        assert_eq!(sizes, vec![pairs], "{name}: training pairs by name");
    }
}

/// Debian's -dev/-doc siblings are near-copies of their package's passage:
/// BM25 ranks them first, and the miner must skip them.
#[test]
fn mined_negatives_are_never_near_copies_of_the_positive() {
    let Some(data) = common::data_dir() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let picks: Vec<usize> = (0..400).map(|i| i * 131 % 58_227).collect();
    let mined =
        csplade::train::data::mined_pairs(&data, "debian", &picks, 30, work.path()).unwrap();
    let mut with_negatives = 0;
    for m in &mined {
        for n in &m.negatives {
            assert!(
                !csplade::train::data::near_copies(n, &m.positive),
                "negative of {:?} is a near-copy of its positive",
                m.query
            );
        }
        with_negatives += usize::from(!m.negatives.is_empty());
    }
    assert!(
        with_negatives > 350,
        "only {with_negatives} of 400 pairs got negatives"
    );
    // Not vacuous: plain BM25 would have handed out near-copies.
    let bm = Bm25Index::open(&work.path().join("bm25-debian")).unwrap();
    let docs = beir::read_corpus(&data.join("train/debian")).unwrap();
    let raw_copies = mined
        .iter()
        .filter(|m| {
            bm.search(&m.query, 30).unwrap().iter().any(|h| {
                let body = &docs[h.ordinal].text;
                *body != m.positive && csplade::train::data::near_copies(body, &m.positive)
            })
        })
        .count();
    assert!(
        raw_copies > 0,
        "no near-copy among BM25's top 30: the check proves nothing"
    );
    eprintln!(
        "{raw_copies} of 400 Debian queries had a near-copy of their positive in BM25's top 30"
    );
}

/// The first-run demo takes everyday commands: section 1 first, short names
/// first (ls, cp, tar, …), so its 300 pages are the ones users know.
#[test]
fn the_demo_picks_everyday_commands_first() {
    let root = std::path::Path::new("/usr/share/man/man1");
    if !root.is_dir() {
        common::note_skip("man pages: none on this machine");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let opts = csplade::data::manpages::ManpageOptions {
        max: 25,
        ..csplade::data::manpages::ManpageOptions::demo()
    };
    assert_eq!(csplade::data::manpages::ManpageOptions::demo().max, 300);
    csplade::data::manpages::convert(&opts, &out).unwrap();
    let docs = beir::read_corpus(&out).unwrap();
    assert_eq!(docs.len(), 25);
    let names: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert!(names.iter().all(|n| n.ends_with(".1")), "{names:?}");
    let lengths: Vec<usize> = names.iter().map(|n| n.len()).collect();
    assert!(
        lengths.iter().all(|&l| l <= 8),
        "short names first: {names:?}"
    );
    assert!(out.join(csplade::data::output::DIR_MANIFEST).is_file());
}
