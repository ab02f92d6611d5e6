//! Strict evaluation inputs, through the real binary: judgements of unknown
//! queries, conflicting duplicate judgements, byte-order marks, and an index
//! paired with a collection it was not built from.

use std::path::Path;
use std::process::Command;

mod common;

fn write(dir: &Path, corpus: &[(&str, &str)], queries: &[(&str, &str)], qrels: &str) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let c: String = corpus
        .iter()
        .map(|(id, t)| {
            format!(
                "{}\n",
                serde_json::json!({"_id": id, "title": "", "text": t})
            )
        })
        .collect();
    let q: String = queries
        .iter()
        .map(|(id, t)| format!("{}\n", serde_json::json!({"_id": id, "text": t})))
        .collect();
    std::fs::write(dir.join("corpus.jsonl"), c).unwrap();
    std::fs::write(dir.join("queries.jsonl"), q).unwrap();
    std::fs::write(
        dir.join("qrels/test.tsv"),
        format!("query-id\tcorpus-id\tscore\n{qrels}"),
    )
    .unwrap();
}

const CORPUS: &[(&str, &str)] = &[
    ("d1", "otters swim in the river"),
    ("d2", "stones lie on the bank"),
    ("d3", "heat theory of water"),
];
const QUERIES: &[(&str, &str)] = &[("q1", "otters river"), ("q2", "bank stones")];

fn eval(dataset: &Path, home: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(["eval", "--system", "bm25", "--json", "--dataset"])
        .arg(dataset)
        .args(extra)
        .env("CSPLADE_HOME", home)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn judgements_of_unknown_queries_are_refused_or_dropped_never_averaged() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    write(&ds, CORPUS, QUERIES, "q1\td1\t1\nq2\td2\t1\nq9\td3\t1\n");
    let (ok, _, err) = eval(&ds, dir.path(), &[]);
    assert!(!ok, "a phantom query must be refused");
    assert!(
        err.contains("test.tsv:4") && err.contains("\"q9\""),
        "{err}"
    );
    let (ok, out, err) = eval(&ds, dir.path(), &["--lenient"]);
    assert!(ok, "{err}");
    assert!(err.contains("dropped"), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["queries"], 2);
    // Both real queries are found first by BM25: nothing averaged in at 0.
    assert_eq!(v["systems"]["bm25"]["ndcg@10"], 1.0, "{v}");
}

#[test]
fn conflicting_duplicate_judgements_are_errors_and_repeats_are_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    write(&ds, CORPUS, QUERIES, "q1\td1\t1\nq2\td2\t1\nq1\td1\t2\n");
    let (ok, _, err) = eval(&ds, dir.path(), &[]);
    assert!(!ok);
    assert!(
        err.contains("test.tsv:4") && err.contains("grade 2"),
        "{err}"
    );
    write(&ds, CORPUS, QUERIES, "q1\td1\t1\nq2\td2\t1\nq1\td1\t1\n");
    let (ok, _, err) = eval(&ds, dir.path(), &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning") && err.contains("same grade"),
        "{err}"
    );
}

#[test]
fn a_byte_order_mark_is_read_as_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    write(&ds, CORPUS, QUERIES, "q1\td1\t1\nq2\td2\t1\n");
    for f in ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"] {
        let p = ds.join(f);
        let mut bytes = "\u{feff}".as_bytes().to_vec();
        bytes.extend(std::fs::read(&p).unwrap());
        std::fs::write(&p, bytes).unwrap();
    }
    let (ok, out, err) = eval(&ds, dir.path(), &[]);
    assert!(ok, "{err}");
    assert!(out.contains("\"queries\":2"), "{out}");
}

#[test]
fn an_index_of_another_corpus_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    write(&ds, CORPUS, QUERIES, "q1\td1\t1\nq2\td2\t1\n");
    let mdir = dir.path().join("m");
    csplade::model::tiny::write_tiny_model(&mdir, 5).unwrap();
    let spec = mdir.join("tiny.gguf");
    let index = dir.path().join("index");
    let st = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(["index", "--model"])
        .arg(&spec)
        .arg("--corpus")
        .arg(&ds)
        .arg("--out")
        .arg(&index)
        .env("CSPLADE_HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // The same documents in another order.
    let other = dir.path().join("other");
    let mut shuffled = CORPUS.to_vec();
    shuffled.reverse();
    write(&other, &shuffled, QUERIES, "q1\td1\t1\nq2\td2\t1\n");
    for system in ["bm25", "lsr"] {
        let out = Command::new(env!("CARGO_BIN_EXE_csplade"))
            .args(["eval", "--system", system, "--model"])
            .arg(&spec)
            .arg("--dataset")
            .arg(&other)
            .arg("--index")
            .arg(&index)
            .env("CSPLADE_HOME", dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{system}: accepted an index of another corpus"
        );
        assert!(
            err.contains("differs") && err.contains("rebuild"),
            "{system}: {err}"
        );
    }
}

#[test]
fn eval_explains_the_queries_lsr_loses() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let corpus: Vec<(String, String)> = (0..30)
        .map(|i| {
            let w = ["otter", "river", "stone", "bank", "heat", "theory"];
            (
                format!("d{i}"),
                format!("{} {} {}", w[i % 6], w[(i / 6) % 6], w[(i * 7) % 6]),
            )
        })
        .collect();
    let c: Vec<(&str, &str)> = corpus
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let queries = [
        ("q1", "otter river"),
        ("q2", "stone bank"),
        ("q3", "heat theory"),
    ];
    write(&ds, &c, &queries, "q1\td0\t1\nq2\td9\t1\nq3\td22\t1\n");
    csplade::model::tiny::write_tiny_model(&dir.path().join("m"), 5).unwrap();
    let spec = dir.path().join("m/tiny.gguf");
    let mut eval = Command::new(env!("CARGO_BIN_EXE_csplade"));
    eval.args([
        "eval",
        "--system",
        "both",
        "--json",
        "--explain-failures",
        "2",
        "--model",
    ])
    .arg(&spec)
    .arg("--dataset")
    .arg(&ds)
    .env("CSPLADE_HOME", dir.path());
    let v = common::json_output(&mut eval);
    let failures = v["failures"].as_array().expect("failures listed");
    assert!(!failures.is_empty() && failures.len() <= 2, "{v}");
    for f in failures {
        assert!(
            f["ndcg_bm25"].as_f64().unwrap() > f["ndcg_lsr"].as_f64().unwrap(),
            "{f}"
        );
        for m in f["missed"].as_array().unwrap() {
            assert!(
                m["lsr_rank"].is_null() || m["lsr_rank"].as_u64().unwrap() > 10,
                "{m}"
            );
        }
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args([
            "eval",
            "--system",
            "lsr",
            "--explain-failures",
            "2",
            "--model",
        ])
        .arg(&spec)
        .arg("--dataset")
        .arg(&ds)
        .env("CSPLADE_HOME", dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

/// `--system all` reports LSR, BM25 and their fusion; the hybrid's TREC run
/// is the reciprocal-rank fusion of the other two runs, recomputed here from
/// the files eval wrote; the query prior is reported and changes LSR's scores.
#[test]
fn eval_fuses_lsr_with_bm25_and_reports_the_query_prior() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let w = ["otter", "river", "stone", "bank", "heat", "theory"];
    let corpus: Vec<(String, String)> = (0..24)
        .map(|i| {
            let text = format!("{} {} {}", w[i % 6], w[(i / 6) % 6], w[(i * 5) % 6]);
            (format!("d{i}"), text)
        })
        .collect();
    let c: Vec<(&str, &str)> = corpus
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let queries = [("q1", "otter river"), ("q2", "stone bank theory")];
    write(&ds, &c, &queries, "q1\td0\t1\nq2\td9\t1\n");
    csplade::model::tiny::write_tiny_model(&dir.path().join("m"), 5).unwrap();
    let spec = dir.path().join("m/tiny.gguf");
    let run = |prior: &str| {
        let runs = dir.path().join(format!("run-{prior}"));
        let mut eval = Command::new(env!("CARGO_BIN_EXE_csplade"));
        eval.args(["eval", "--system", "all", "--fusion", "rrf:60", "--json"])
            .args(["--query-prior", prior, "--model"])
            .arg(&spec)
            .arg("--dataset")
            .arg(&ds)
            .arg("--run")
            .arg(&runs)
            .env("CSPLADE_HOME", dir.path());
        let v = common::json_output(&mut eval);
        (v, runs)
    };
    let read = |p: std::path::PathBuf| -> Vec<(String, String, usize, f64)> {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[0].into(),
                    f[2].into(),
                    f[3].parse().unwrap(),
                    f[4].parse().unwrap(),
                )
            })
            .collect()
    };
    let (v, runs) = run("idf");
    assert_eq!(v["query_prior"], "idf", "{v}");
    assert_eq!(v["fusion"], "rrf:60", "{v}");
    for s in ["lsr", "bm25", "hybrid"] {
        assert!(v["systems"][s]["ndcg@10"].is_number(), "{s}: {v}");
    }
    let with = |ext: &str| {
        let mut p = runs.as_os_str().to_owned();
        p.push(ext);
        std::path::PathBuf::from(p)
    };
    let (lsr, bm25, hybrid) = (
        read(with(".lsr")),
        read(with(".bm25")),
        read(with(".hybrid")),
    );
    for q in ["q1", "q2"] {
        let mut fused: std::collections::HashMap<&str, f64> = Default::default();
        for run in [&lsr, &bm25] {
            for (_, d, rank, _) in run.iter().filter(|r| r.0 == q) {
                *fused.entry(d.as_str()).or_default() += 1.0 / (60.0 + *rank as f64);
            }
        }
        let got: Vec<&(String, String, usize, f64)> = hybrid.iter().filter(|r| r.0 == q).collect();
        assert_eq!(got.len(), fused.len(), "{q}: every document of either run");
        for (_, d, _, score) in got {
            assert!((score - fused[d.as_str()]).abs() < 1e-5, "{q} {d}: {score}");
        }
    }
    let (plain, plain_runs) = run("none");
    assert_eq!(plain["query_prior"], "none");
    let mut p = plain_runs.as_os_str().to_owned();
    p.push(".lsr");
    let unweighted = read(p.into());
    assert_ne!(
        unweighted.iter().map(|r| r.3).collect::<Vec<_>>(),
        lsr.iter().map(|r| r.3).collect::<Vec<_>>(),
        "the idf prior changes LSR's scores"
    );
}
