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
    eprintln!("cranfield judgements naming unknown ids: {}", unknown.len());
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
        eprintln!("SKIP: no man pages on this machine");
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
    assert_eq!((docs.len(), queries.len(), qrels.len()), (40, 40, 40));
    for (d, q) in docs.iter().zip(&queries) {
        assert_eq!(qrels[&q.id].get(&d.id), Some(&1));
        assert!(!q.text.is_empty());
        // The NAME line (the query) is not left in the document.
        assert!(!d.text.starts_with("NAME"), "{}", d.id);
    }
}
