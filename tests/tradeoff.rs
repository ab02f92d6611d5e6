//! `csplade tradeoff` through the binary on a tiny random model: the
//! reference point's pooled nDCG@10 is exactly the full index's (its top
//! documents are all pooled) and `eval`'s, every point carries its sample
//! size, interval and pool, a second run is served from the cache, and the
//! cache of one reference is never served to another.

mod common;

use std::path::Path;
use std::process::Command;

fn csplade(home: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(args)
        .env("CSPLADE_HOME", home)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn json(home: &Path, args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = csplade(home, args);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Index `d/toy` with the tiny model in `d` into `d/out` (`extra` flags
/// added), with `d/home` as csplade's home.
fn index_toy(d: &Path, out: &str, extra: &[&str]) {
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    let (model, corpus, out) = (s("tiny.gguf"), s("toy"), s(out));
    let mut args = vec![
        "index", "--model", &model, "--corpus", &corpus, "--out", &out,
    ];
    args.extend(extra);
    let (ok, _, err) = csplade(&d.join("home"), &args);
    assert!(ok, "{err}");
}

fn cache_dirs(home: &Path) -> usize {
    std::fs::read_dir(home.join("tradeoff")).map_or(0, |d| d.count())
}

#[test]
fn pooled_points_match_the_full_index_and_come_back_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let home = d.join("home");
    common::tiny(d, false);
    common::toy_collection(&d.join("toy"));
    // A document without text is indexed as an empty vector; pooled
    // encoding must take it too (judged, so it is always in the pool).
    let corpus = d.join("toy/corpus.jsonl");
    let mut text = std::fs::read_to_string(&corpus).unwrap();
    text.push_str("{\"_id\":\"blank\",\"title\":\"\",\"text\":\"  \"}\n");
    std::fs::write(&corpus, text).unwrap();
    let qrels = d.join("toy/qrels/train.tsv");
    let mut judged = std::fs::read_to_string(&qrels).unwrap();
    judged.push_str("q0\tblank\t0\n");
    std::fs::write(&qrels, judged).unwrap();
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    let tiny = s("tiny.gguf");
    index_toy(d, "idx", &[]);
    let q8 = format!("{tiny}:q8_0");
    let args = [
        "tradeoff",
        "--dataset",
        &s("toy"),
        "--split",
        "train",
        "--index",
        &s("idx"),
        "--encoder",
        &tiny,
        "--encoder",
        &q8,
        "--mixed",
        "--doc-top-k",
        "4",
        "--scale",
        "10",
        "--seismic",
        "5:0.7",
        "--queries",
        "0",
        "--depth",
        "10",
        "--speed-sample",
        "3",
        "--json",
    ];
    let args: Vec<&str> = args.to_vec();
    let f = json(&home, &args);
    let points = f["points"].as_array().unwrap();
    // 2 encoders + 2 mixed, each also pruned, scaled and through Seismic
    assert_eq!(points.len(), 16, "{points:#?}");
    let labels: Vec<&str> = points
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels[0], tiny, "the reference comes first");
    assert!(
        labels.contains(&format!("q {tiny} / d {q8}").as_str()),
        "{labels:?}"
    );
    assert!(
        labels.contains(&format!("{q8} top4").as_str()),
        "{labels:?}"
    );
    for p in points {
        assert_eq!(p["queries"], 12, "{p}");
        assert_eq!(p["pool_depth"], 10);
        let (lo, hi, m) = (
            p["ndcg10_ci"][0].as_f64().unwrap(),
            p["ndcg10_ci"][1].as_f64().unwrap(),
            p["ndcg10"].as_f64().unwrap(),
        );
        assert!(lo <= m && m <= hi, "{p}");
        assert_eq!(p["per_query_ndcg10"].as_array().unwrap().len(), 12);
        assert!(p["index_bytes"].as_u64().unwrap() > 0);
        assert!(p["query_p50_ms"].as_f64().unwrap() <= p["query_p99_ms"].as_f64().unwrap());
    }
    // The reference's top 10 are all pooled: its pooled nDCG@10 is the
    // full index's, and eval's over the same (all) queries.
    let reference = &points[0];
    assert_eq!(reference["full_ndcg10"], reference["ndcg10"]);
    assert_eq!(reference["overlap10"], 1.0);
    let e = json(
        &home,
        &[
            "eval",
            "--dataset",
            &s("toy"),
            "--split",
            "train",
            "--index",
            &s("idx"),
            "--system",
            "lsr",
            "--json",
        ],
    );
    let eval_ndcg = e["systems"]["lsr"]["ndcg@10"].as_f64().unwrap();
    assert!(
        (reference["ndcg10"].as_f64().unwrap() - eval_ndcg).abs() < 1e-9,
        "{eval_ndcg}"
    );
    assert!(f["pool_documents"].as_u64().unwrap() <= 13);
    // One document encoding beyond the reference (q8_0), costed.
    assert_eq!(f["cost"]["encoders"], 1);
    assert!(f["cost"]["pool_tokens"].as_u64().unwrap() > 0);

    // Again: everything from the cache, the same figures.
    let g = json(&home, &args);
    let strip = |mut v: serde_json::Value| {
        v["cost"]["wall_seconds"] = 0.into();
        v
    };
    assert_eq!(strip(f.clone()), strip(g));
    assert_eq!(cache_dirs(&home), 1);
    let leftovers: Vec<_> =
        std::fs::read_dir(home.join("tradeoff").join(f["pool_key"].as_str().unwrap()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".part") || n.contains("csplade-tmp"))
            .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Adding an encoder encodes its pool only: the cached vectors stay as
    // they were written.
    let pool_dir = home.join("tradeoff").join(f["pool_key"].as_str().unwrap());
    let encodings = || -> Vec<(String, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(&pool_dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".vec"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().to_string(),
                    e.metadata().unwrap().modified().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = encodings();
    let q4 = format!("{tiny}:q4_0");
    let mut more = args.clone();
    more.extend(["--encoder", &q4]);
    let g = json(&home, &more);
    let after = encodings();
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(
        before.iter().all(|b| after.contains(b)),
        "{before:?} → {after:?}"
    );
    assert_eq!(g["cost"]["encoders"], 2);

    // Another reference (another model's index): another pool, never this one.
    let other = d.join("other");
    csplade::model::tiny::write_tiny_model(&other, 99).unwrap();
    let other_model = other.join("tiny.gguf").to_str().unwrap().to_string();
    let (ok, _, err) = csplade(
        &home,
        &[
            "index",
            "--model",
            &other_model,
            "--corpus",
            &s("toy"),
            "--out",
            &s("idx2"),
        ],
    );
    assert!(ok, "{err}");
    let h = json(
        &home,
        &[
            "tradeoff",
            "--dataset",
            &s("toy"),
            "--split",
            "train",
            "--index",
            &s("idx2"),
            "--encoder",
            &other_model,
            "--queries",
            "0",
            "--json",
        ],
    );
    assert_ne!(h["pool_key"], f["pool_key"]);
    assert_eq!(cache_dirs(&home), 2);

    // The CSV has a header and a row per point.
    let csv = d.join("points.csv");
    let mut with_csv = args.clone();
    with_csv.pop();
    with_csv.extend(["--csv", csv.to_str().unwrap()]);
    let (ok, out, err) = csplade(&home, &with_csv);
    assert!(ok, "{err}");
    assert!(out.contains("Pareto-optimal"), "{out}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 17);
    assert!(text.starts_with("label,query_encoder,document_encoder"));

    // An index that is not the reference's own encoder is refused by name.
    let (ok, _, err) = csplade(
        &home,
        &[
            "tradeoff",
            "--dataset",
            &s("toy"),
            "--split",
            "train",
            "--index",
            &s("idx"),
            "--model",
            &other_model,
            "--queries",
            "0",
        ],
    );
    assert!(!ok);
    assert!(err.contains("did not build"), "{err}");
}

/// An index that ranks by passages serves as the pool's reference, but the
/// points score documents' first reads: with every document pooled, the
/// same figures as over an index of first reads only, and no full-index
/// check against an index that ranks otherwise.
#[test]
fn a_passage_index_pools_candidates_and_points_score_first_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let home = d.join("home");
    common::tiny(d, false);
    common::toy_collection(&d.join("toy"));
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    let tiny = s("tiny.gguf");
    index_toy(d, "idx", &["--passages", "none"]);
    index_toy(d, "pidx", &["--passages", "3:2:2"]);
    let tradeoff = |index: &str| {
        csplade(
            &home,
            &[
                "tradeoff",
                "--dataset",
                &s("toy"),
                "--split",
                "train",
                "--index",
                &s(index),
                "--encoder",
                &tiny,
                "--queries",
                "0",
                "--depth",
                "100",
                "--json",
            ],
        )
    };
    let (ok, out, err) = tradeoff("idx");
    assert!(ok && !err.contains("passages"), "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let (ok, out, err) = tradeoff("pidx");
    assert!(ok, "{err}");
    assert!(
        err.contains("best of 24 passages (3:2:2)") && err.contains("first reads"),
        "{err}"
    );
    let pooled: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let (a, b) = (&first["points"][0], &pooled["points"][0]);
    assert!(
        a["full_ndcg10"].is_number() && b["full_ndcg10"].is_null(),
        "{b}"
    );
    assert_eq!(a["per_query_ndcg10"], b["per_query_ndcg10"]);
    assert_ne!(first["pool_key"], pooled["pool_key"]);
}
