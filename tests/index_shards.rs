//! Indexes in parts and beside them, on a tiny random model and a small
//! collection written by the test: shards merged into the one-process index
//! (and refused when missing, repeated, foreign or changed), and Seismic
//! answering from its cached structure.

use csplade::encode::Encoder;
use csplade::index::build;
use csplade::model;
use csplade::search::{Backend, LsrIndex};

mod common;
use common::index::*;

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
