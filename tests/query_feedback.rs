//! Pseudo-relevance feedback (`--query-feedback rocchio…`) on a tiny random
//! model and a small collection written by the test: the terms it adds come
//! from the query's own first ranking, every explanation (library, `search
//! --explain`, the explorer) adds up to the score it explains, `eval` reports
//! it, and an adapter records it (`adapter set-prior --feedback`) so that
//! search and eval use it unless told otherwise.

use std::path::Path;
use std::sync::Arc;

use csplade::data::beir;
use csplade::encode::{Encoder, EncoderConfig};
use csplade::index::build;
use csplade::search::{Backend, LsrIndex, QueryFeedback, QueryPrior};

mod common;
use common::index::*;

const FEEDBACK: QueryFeedback = QueryFeedback::Rocchio {
    docs: 3,
    weight: 0.75,
    terms: 12,
    idf_power: 1.0,
};

#[test]
fn feedback_terms_come_from_the_first_ranking_and_explanations_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(&tmp.path().join("m"), 3);
    let corpus = tmp.path().join("c");
    write_corpus(&corpus, 40);
    let out = tmp.path().join("idx");
    let enc = Encoder::new(&m, config());
    build(&enc, &opts(&corpus, &out), |_| {}).unwrap();
    let idx = LsrIndex::open(&out).unwrap();
    let prior = QueryPrior::Idf { power: 0.5 };
    let mut added_new_terms = false;
    for text in ["otter river", "the heat of the stone", "fish night"] {
        let q = enc.encode_one(text).unwrap().vector;
        let weighed = idx.weigh(&q, prior);
        let first = idx.search(&weighed, 3, Backend::Exact).unwrap();
        let (scored, fb) = idx
            .scored_query(&q, prior, FEEDBACK, Backend::Exact)
            .unwrap();
        assert_eq!(
            fb.docs,
            first.iter().map(|h| h.ordinal).collect::<Vec<_>>(),
            "{text}: the first ranking's top documents"
        );
        assert!(fb.terms.active() <= 12 && fb.terms.weights.iter().all(|&w| w > 0.0));
        // Every added term is in one of those documents.
        for id in &fb.terms.ids {
            assert!(fb.docs.iter().any(|&o| idx.vectors[o].get(*id) > 0.0));
        }
        for id in scored.ids.iter().copied() {
            let want = weighed.get(id) + fb.terms.get(id);
            assert!((scored.get(id) - want).abs() < 1e-5, "{text}: term {id}");
        }
        added_new_terms |= fb.terms.ids.iter().any(|&id| q.get(id) == 0.0);
        for h in idx.search(&scored, 10, Backend::Exact).unwrap() {
            let c = idx.explain_with(&q, prior, &fb.terms, h.ordinal);
            let sum: f32 = c.iter().map(|c| c.product).sum();
            assert!((sum - h.score).abs() < 1e-3 * h.score.max(1.0), "{text}");
        }
        // Without feedback, the query as its prior weighs it.
        let (plain, none) = idx
            .scored_query(&q, prior, QueryFeedback::None, Backend::Exact)
            .unwrap();
        assert_eq!(plain, weighed);
        assert!(none.docs.is_empty() && none.terms.is_empty());
    }
    assert!(added_new_terms, "feedback lends terms the expansion lacks");
    explorer_shows_the_feedback(m, corpus, idx, config(), prior);
}

/// The explorer's result carries the feedback's documents and terms, and a
/// hit's detail adds up to its score with the feedback's column.
fn explorer_shows_the_feedback(
    m: csplade::model::LoadedModel,
    corpus: std::path::PathBuf,
    idx: LsrIndex,
    config: EncoderConfig,
    prior: QueryPrior,
) {
    let ex = csplade::explore::Explorer {
        model: Arc::new(csplade::model::SparseModel::Causal(Box::new(m))),
        config,
        index: Some(Arc::new(idx)),
        partial: None,
        corpus: Arc::new(beir::read_corpus(&corpus).unwrap()),
        queries: Arc::new(beir::read_queries(&corpus).unwrap()),
        qrels: Some(Arc::new(beir::read_qrels(&corpus, "test").unwrap())),
        backend: Backend::Exact,
        prior,
        feedback: FEEDBACK,
        fusion: Default::default(),
        inference_free: false,
    };
    let r = ex
        .query("otter river stone", 10, csplade::explore::Ranking::Lsr)
        .unwrap();
    assert_eq!(r.feedback, FEEDBACK);
    assert_eq!(r.feedback_docs.len(), 3);
    assert_eq!(r.feedback_tokens.len(), r.feedback_terms.terms.active());
    let d = ex
        .detail(&r.vector, &r.feedback_terms.terms, r.hits[0].ordinal)
        .unwrap();
    let sum: f32 = d.contributions.iter().map(|(_, c)| c.product).sum();
    assert!((sum - r.hits[0].score).abs() < 1e-3 * r.hits[0].score.max(1.0));
    assert!(d.contributions.iter().any(|(_, c)| c.feedback > 0.0));
    // Search's `f`: the same query without feedback ranks the expansion
    // under its prior alone.
    let plain = ex
        .without_feedback()
        .query("otter river stone", 10, csplade::explore::Ranking::Lsr)
        .unwrap();
    assert_eq!(plain.feedback, QueryFeedback::None);
    assert!(plain.feedback_terms.terms.is_empty() && plain.feedback_docs.is_empty());
    let idx = ex.index.as_deref().unwrap();
    let want = idx
        .search(&idx.weigh(&plain.vector, prior), 10, Backend::Exact)
        .unwrap();
    let got: Vec<usize> = plain.hits.iter().map(|h| h.ordinal).collect();
    assert_eq!(got, want.iter().map(|h| h.ordinal).collect::<Vec<_>>());
    // The failure list ranks with the same feedback as Search does.
    // Each row also says what LSR scores without the feedback.
    let rows = ex.failures().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.unfed_ndcg10.is_some()));
    let plain_rows = ex.without_feedback().failures().unwrap();
    assert!(plain_rows.iter().all(|r| r.unfed_ndcg10.is_none()));
    for r in &rows {
        let same = plain_rows
            .iter()
            .find(|x| x.query_id == r.query_id)
            .unwrap();
        assert_eq!(r.unfed_ndcg10, Some(same.lsr_ndcg10), "{}", r.query_id);
    }
}

/// `search --explain --json`, `eval` and `adapter set-prior --feedback`
/// through the binary.
#[test]
fn search_eval_and_adapters_carry_the_feedback() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let m = home.join("m");
    tiny_model(&m, 3);
    let lora = common::lora_adapter(&m);
    let gguf = m.join("tiny.gguf");
    let spec = format!("{}+{}", gguf.display(), lora.display());
    let corpus = home.join("c");
    write_corpus(&corpus, 30);
    let index = home.join("idx");
    common::succeeds(
        common::csplade_in(home)
            .args(["index", "--model", &spec, "--commit-every", "8", "--corpus"])
            .arg(&corpus)
            .arg("--out")
            .arg(&index),
    );
    let search = |feedback: &str| {
        common::json_output(
            common::csplade_in(home)
                .args(["search", "--explain", "--explain-terms", "1000", "--json"])
                .args(["--query-feedback", feedback, "--k", "8", "--index"])
                .arg(&index)
                .arg("otter river"),
        )
    };
    let plain = search("none");
    let with = search("rocchio:3:0.75:12");
    assert_eq!(with["query_feedback"], "rocchio:3:0.75:12:1", "{with}");
    let first: Vec<&serde_json::Value> = plain["hits"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|h| &h["doc_id"])
        .collect();
    let docs: Vec<&serde_json::Value> = with["feedback"]["documents"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(docs, first, "feedback from the plain ranking's top 3");
    let terms = with["feedback"]["terms"].as_array().unwrap();
    assert!(!terms.is_empty() && terms.len() <= 12);
    for h in with["hits"].as_array().unwrap() {
        let sum = common::explained_score(h);
        let score = h["score"].as_f64().unwrap();
        assert!((sum - score).abs() < 1e-3 * score.max(1.0), "{h}");
    }
    assert_eq!(plain["query_feedback"], "none");
    assert!(plain.get("feedback").is_none());
    // The text report names the feedback's documents.
    let text = common::succeeds(
        common::csplade_in(home)
            .args([
                "search",
                "--explain",
                "--query-feedback",
                "rocchio:3:0.75:12",
                "--index",
            ])
            .arg(&index)
            .arg("otter river"),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("feedback rocchio:3:0.75:12:1"), "{text}");
    assert!(text.contains("feedback from"), "{text}");
    assert!(
        text.contains(" feedback "),
        "the explanation's column: {text}"
    );
    recorded_in_the_adapter(home, &gguf, &lora, &corpus, &index);
}

/// An adapter that records feedback is searched and evaluated with it
/// unless told otherwise, and keeps the identity its index was built under.
fn recorded_in_the_adapter(home: &Path, gguf: &Path, lora: &Path, corpus: &Path, index: &Path) {
    let with_fb = home.join("with-feedback.safetensors");
    common::succeeds(
        common::csplade_in(home)
            .args([
                "adapter",
                "set-prior",
                "--prior",
                "idf",
                "--feedback",
                "rocchio",
            ])
            .arg("--model")
            .arg(gguf)
            .arg("--adapter")
            .arg(lora)
            .arg("--out")
            .arg(&with_fb),
    );
    let meta = csplade::model::adapter::Adapter::read(&with_fb)
        .unwrap()
        .meta;
    assert_eq!(meta.query_feedback, QueryFeedback::ROCCHIO);
    let eval = |extra: &[&str]| {
        common::json_output(
            common::csplade_in(home)
                .args(["eval", "--system", "lsr", "--json", "--model"])
                .arg(format!("{}+{}", gguf.display(), with_fb.display()))
                .arg("--dataset")
                .arg(corpus)
                .arg("--index")
                .arg(index)
                .args(extra),
        )
    };
    let own = eval(&[]);
    assert_eq!(own["query_feedback"], "rocchio:1:0.1:30:1", "{own}");
    assert_eq!(own["query_prior"], "idf");
    let off = eval(&["--query-feedback", "none"]);
    assert_eq!(off["query_feedback"], "none");
    // With feedback, eval also reports LSR without it: the same figures as
    // the run that turns it off, and how many queries it raised or lowered.
    let effect = &own["feedback_effect"];
    assert_eq!(effect["lsr_without"], off["systems"]["lsr"], "{own}");
    let moved =
        effect["queries_raised"].as_u64().unwrap() + effect["queries_lowered"].as_u64().unwrap();
    assert!(moved <= own["queries"].as_u64().unwrap(), "{own}");
    assert!(off.get("feedback_effect").is_none());
    compare_ranks_as_eval(home, gguf, &with_fb, corpus, index, (&own, &off));
    for bad in ["rocchio:0:1:5", "rocchio:5:1", "rm3"] {
        let o = common::csplade_in(home)
            .args([
                "eval",
                "--system",
                "lsr",
                "--query-feedback",
                bad,
                "--dataset",
            ])
            .arg(corpus)
            .arg("--index")
            .arg(index)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("query feedback"),
            "{bad}: {err}"
        );
    }
}

/// `compare --dataset` ranks each encoder's queries with its model's own
/// prior and feedback, so its nDCG@10 is eval's; `--query-feedback` and
/// `--query-prior` override them for every encoder.
fn compare_ranks_as_eval(
    home: &Path,
    gguf: &Path,
    adapter: &Path,
    corpus: &Path,
    index: &Path,
    (own, off): (&serde_json::Value, &serde_json::Value),
) {
    let compare = |extra: &[&str]| {
        let out = common::json_output(
            common::csplade_in(home)
                .args(["compare", "--json", "--encoder"])
                .arg(format!("{}+{}", gguf.display(), adapter.display()))
                .arg("--dataset")
                .arg(corpus)
                .arg("--index")
                .arg(index)
                .args(extra),
        );
        out["encoders"][0].clone()
    };
    let ndcg = |v: &serde_json::Value| v["systems"]["lsr"]["ndcg@10"].as_f64().unwrap();
    let same = compare(&[]);
    assert_eq!(same["query_prior"], "idf", "{same}");
    assert_eq!(same["query_feedback"], "rocchio:1:0.1:30:1", "{same}");
    assert!(
        (same["ndcg@10"].as_f64().unwrap() - ndcg(own)).abs() < 1e-9,
        "{same} {own}"
    );
    let unfed = compare(&["--query-feedback", "none"]);
    assert_eq!(unfed["query_feedback"], "none", "{unfed}");
    assert!(
        (unfed["ndcg@10"].as_f64().unwrap() - ndcg(off)).abs() < 1e-9,
        "{unfed} {off}"
    );
    let bare = compare(&["--query-feedback", "none", "--query-prior", "none"]);
    assert_eq!(bare["query_prior"], "none", "{bare}");
}
