//! Proof with real engines: an index of the SciFact corpus is exported and
//! searched by outside engines, and their top 10 for every SciFact test
//! query must equal csplade's own search on the same quantized impacts,
//! apart from documents tied at the 10th score. All are checked against the
//! exact integer scores Σ round(q × 100) × round(w × 100).
//!
//! - PISA (the pyterrier-pisa wheel, driven by `tests/tools/pisa_search.py`)
//!   reads the CIFF export, exhaustively (ranked_or) and with its default
//!   block-max WAND;
//! - Anserini (the fat jar inside the pyserini 0.22.1 wheel, on Java 17)
//!   indexes the JsonVectorCollection export with `-impact -pretokenized`
//!   and searches it with each query's terms repeated by their weight; and,
//!   over an index with passages exported as documents `ID#K`, keeping each
//!   document's best unit (`-selectMaxPassage`), as csplade's MaxP ranks.
//!
//! The encoder is a tiny random model (the engines are under test, not the
//! model), so the corpus encodes in seconds. Without the shared data or
//! without an engine the test prints SKIP; `CSPLADE_REQUIRE_DATA=1` /
//! `CSPLADE_REQUIRE_TOOLS=1` (set by CI, whose `.ci/run` installs
//! pyterrier-pisa, ciff-toolkit, pyserini's jar and Java) make that a failure.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use candle_core::Device;
use csplade::data::beir;
use csplade::encode::{Encoder, EncoderConfig, Head, SparseVec, Variant};
use csplade::export::{self, ExportFormat};
use csplade::index::passages::PassageSpec;
use csplade::index::{build, BuildOptions};
use csplade::search::LsrIndex;

const SCALE: f32 = 100.0;

fn pisa_python() -> Option<String> {
    let python = std::env::var("CSPLADE_PISA_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import pyterrier_pisa, ciff_toolkit"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var("CSPLADE_REQUIRE_TOOLS").is_err(),
        "{python} cannot import pyterrier_pisa and ciff_toolkit: CSPLADE_REQUIRE_TOOLS is set"
    );
    common::note_skip("PISA over csplade's CIFF: pyterrier-pisa not installed");
    None
}

/// Integer scores of every document: Σ q_int × impact.
fn integer_scores(query: &HashMap<u32, i64>, docs: &[SparseVec]) -> Vec<i64> {
    docs.iter()
        .map(|d| {
            d.iter()
                .map(|(t, w)| {
                    query.get(&t).copied().unwrap_or(0) * export::quantize(w, SCALE) as i64
                })
                .sum()
        })
        .collect()
}

/// `got` (doc ids in rank order) is the top 10 by `score`, apart from ties:
/// every score is the right one for its document, the scores fall, and every
/// document that beats the 10th score is there.
fn is_top10(got: &[String], score: &HashMap<&str, i64>, all: &[i64], what: &str, qid: &str) {
    let mut sorted: Vec<i64> = all.iter().copied().filter(|&s| s > 0).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let want = sorted.len().min(10);
    assert_eq!(got.len(), want, "{what}, query {qid}: {got:?}");
    let scores: Vec<i64> = got.iter().map(|d| score[d.as_str()]).collect();
    assert_eq!(
        scores,
        sorted[..want],
        "{what}, query {qid}: ranks by score"
    );
    if let Some(&tenth) = sorted.get(want.saturating_sub(1)) {
        for (d, &s) in score {
            if s > tenth {
                assert!(
                    got.iter().any(|g| g == d),
                    "{what}, query {qid}: {d} ({s}) missing"
                );
            }
        }
    }
}

/// The SciFact corpus indexed by a tiny model (with passages, or not), and
/// every test query's integer weights (round(q × SCALE)), by query id.
struct Impacts {
    dir: tempfile::TempDir,
    idx: LsrIndex,
    units: export::Units,
    model: csplade::model::LoadedModel,
    terms: Vec<String>,
    queries: BTreeMap<String, HashMap<u32, i64>>,
}

impl Impacts {
    fn build(data: &std::path::Path, passages: Option<PassageSpec>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        csplade::model::tiny::write_tiny_model(&d.join("m"), 11).unwrap();
        let spec = d.join("m/tiny.gguf");
        let m = csplade::model::load(spec.to_str().unwrap(), &Device::Cpu).unwrap();
        let enc = Encoder::new(
            &m,
            EncoderConfig {
                variant: Variant::Causal,
                head: Head::LogProb { shift: 3.0 },
                max_len: 64,
                batch_size: 32,
                windows: 1,
            },
        );
        let corpus = data.join("scifact");
        let opts = BuildOptions {
            corpus: corpus.clone(),
            out: d.join("idx"),
            scale: SCALE,
            doc_top_k: 0,
            commit_every: 512,
            precision: "f32".into(),
            stop_after_commits: None,
            shard: None,
            passages,
        };
        build(&enc, &opts, |_| {}).unwrap();
        let idx = LsrIndex::open(&d.join("idx")).unwrap();
        let qrels = beir::read_qrels(&corpus, "test").unwrap();
        let mut queries = BTreeMap::new();
        for q in beir::read_queries(&corpus).unwrap() {
            if !qrels.contains_key(&q.id) {
                continue;
            }
            let v = enc.encode_one(&q.text).unwrap().vector;
            let qi: HashMap<u32, i64> = v
                .iter()
                .map(|(t, w)| (t, export::quantize(w, SCALE) as i64))
                .filter(|&(_, w)| w > 0)
                .collect();
            queries.insert(q.id.clone(), qi);
        }
        assert_eq!(queries.len(), 300);
        let terms = export::vocabulary(&m.tokenizer, m.config().vocab_size);
        let units = match passages {
            Some(_) => export::Units::WithPassages,
            None => export::Units::FirstReads,
        };
        Self {
            dir,
            idx,
            units,
            model: m,
            terms,
            queries,
        }
    }

    fn export(&self, format: ExportFormat, out: &std::path::Path) {
        let tok = &self.model.tokenizer;
        let name = "scifact, tiny model";
        export::export_units(&self.idx, tok, format, out, name, self.units).unwrap();
    }

    /// Every document's integer score for `qid` (with passages, the best
    /// of its first read's and its passages'), and the non-zero ones by id.
    fn scores(&self, qid: &str) -> (Vec<i64>, HashMap<&str, i64>) {
        let query = &self.queries[qid];
        let mut all = integer_scores(query, &self.idx.vectors);
        if let Some(p) = &self.idx.passages {
            for (d, score) in all.iter_mut().enumerate() {
                let vectors: Vec<SparseVec> = p.of(d).map(|(_, v)| v.clone()).collect();
                let best = integer_scores(query, &vectors).into_iter().max();
                *score = (*score).max(best.unwrap_or(0));
            }
        }
        let by_id = all
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s > 0)
            .map(|(o, &s)| (self.idx.doc_id(o), s))
            .collect();
        (all, by_id)
    }

    /// An engine's ranking of `qid`: each score its document's integer
    /// score, and the top 10 apart from ties.
    fn check(&self, engine: &str, qid: &str, hits: &[(String, f64)]) {
        let (all, score) = self.scores(qid);
        for (doc, s) in hits {
            assert_eq!(
                *s as i64,
                score[doc.as_str()],
                "{engine}'s score of {doc} for {qid}"
            );
        }
        let docs: Vec<String> = hits.iter().map(|h| h.0.clone()).collect();
        is_top10(&docs, &score, &all, engine, qid);
    }

    /// csplade's own search on the same quantized impacts and query.
    fn check_csplade(&self, qid: &str) {
        let (all, score) = self.scores(qid);
        let qi = &self.queries[qid];
        let q = SparseVec::from_pairs(qi.iter().map(|(&t, &w)| (t, w as f32 / SCALE)).collect());
        let hits = self.idx.search_tantivy(&q, 10).unwrap();
        let docs: Vec<String> = hits.into_iter().map(|h| h.doc_id).collect();
        is_top10(&docs, &score, &all, "csplade (tantivy impacts)", qid);
    }
}

#[test]
fn pisa_ranks_csplades_ciff_like_csplade_on_the_scifact_test_queries() {
    let Some(data) = common::data_dir() else {
        return;
    };
    let Some(python) = pisa_python() else {
        return;
    };
    let fx = Impacts::build(&data, None);
    let d = fx.dir.path();
    let ciff = d.join("scifact.ciff");
    fx.export(ExportFormat::Ciff, &ciff);
    let mut as_json = serde_json::Map::new();
    for (qid, qi) in &fx.queries {
        let weights: serde_json::Map<_, _> = qi
            .iter()
            .map(|(&t, &w)| (fx.terms[t as usize].clone(), serde_json::json!(w)))
            .collect();
        as_json.insert(qid.clone(), weights.into());
    }
    let qfile = d.join("queries.json");
    std::fs::write(&qfile, serde_json::Value::Object(as_json).to_string()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/pisa_search.py");
    let pisa_run = |algorithm: &str| -> HashMap<String, Vec<(String, f64)>> {
        let rfile = d.join(format!("results-{algorithm}.json"));
        let out = Command::new(&python)
            .arg(&script)
            .arg(&ciff)
            .arg(d.join("pisa"))
            .arg(&qfile)
            .arg(&rfile)
            .arg("10")
            .arg(algorithm)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PISA ({algorithm}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&std::fs::read_to_string(&rfile).unwrap()).unwrap()
    };
    // Exhaustive OR: the reference engine behaviour; then PISA's default,
    // block-max WAND, which is safe: the same top 10.
    let pisa = pisa_run("ranked_or");
    let bmw = pisa_run("block_max_wand");
    for qid in fx.queries.keys() {
        fx.check("PISA", qid, &pisa[qid]);
        fx.check("PISA block-max WAND", qid, &bmw[qid]);
        fx.check_csplade(qid);
    }
}

/// Anserini's fat jar and the Java that runs it, else a SKIP (a failure
/// under `CSPLADE_REQUIRE_TOOLS`).
fn anserini() -> Option<(String, String)> {
    let jar = std::env::var("CSPLADE_ANSERINI_JAR").unwrap_or_default();
    let java = std::env::var("CSPLADE_JAVA").unwrap_or_else(|_| "java".into());
    let runs = Command::new(&java)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs && std::path::Path::new(&jar).is_file() {
        return Some((java, jar));
    }
    assert!(
        std::env::var("CSPLADE_REQUIRE_TOOLS").is_err(),
        "no Anserini jar at CSPLADE_ANSERINI_JAR={jar:?} or no {java}: CSPLADE_REQUIRE_TOOLS is set"
    );
    common::note_skip("Anserini over csplade's JsonVectorCollection: no jar or no Java");
    None
}

/// Run one of Anserini's main classes; its log is shown when it fails.
fn run_anserini(java: &str, jar: &str, class: &str, args: &[&str]) {
    let out = Command::new(java)
        .args(["-cp", jar, class])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{class} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn anserini_ranks_csplades_json_vectors_like_csplade_on_the_scifact_test_queries() {
    let Some(data) = common::data_dir() else {
        return;
    };
    let Some((java, jar)) = anserini() else {
        return;
    };
    let fx = Impacts::build(&data, None);
    anserini_agrees(&fx, &java, &jar, &["-hits", "10"]);
}

/// Passages exported as documents `ID#K`: Anserini keeping each document's
/// best unit (`-selectMaxPassage`) ranks as csplade's MaxP does.
#[test]
fn anserini_keeping_the_best_passage_ranks_like_csplade_on_the_scifact_test_queries() {
    let Some(data) = common::data_dir() else {
        return;
    };
    let Some((java, jar)) = anserini() else {
        return;
    };
    let fx = Impacts::build(&data, Some("100:100:60".parse().unwrap()));
    let passages = fx.idx.passages.as_ref().map_or(0, |p| p.len());
    assert!(passages > 5_000, "{passages} passages");
    let max_passage = ["-selectMaxPassage", "-selectMaxPassage.delimiter", "#"];
    let mut search = vec!["-hits", "1000", "-selectMaxPassage.hits", "10"];
    search.extend(max_passage);
    anserini_agrees(&fx, &java, &jar, &search);
}

/// Anserini indexes `fx`'s JsonVectorCollection export and searches every
/// test query (`search`: the hit flags); its top 10 must be csplade's.
fn anserini_agrees(fx: &Impacts, java: &str, jar: &str, search: &[&str]) {
    let d = fx.dir.path();
    std::fs::create_dir_all(d.join("anserini")).unwrap();
    fx.export(ExportFormat::Anserini, &d.join("anserini/docs.jsonl"));
    // A pretokenized query weighs each term by how often it occurs.
    let mut topics = String::new();
    for (qid, qi) in &fx.queries {
        let words: Vec<&str> = qi
            .iter()
            .flat_map(|(&t, &w)| std::iter::repeat_n(fx.terms[t as usize].as_str(), w as usize))
            .collect();
        topics.push_str(&format!("{qid}\t{}\n", words.join(" ")));
    }
    std::fs::write(d.join("topics.tsv"), topics).unwrap();
    let path = |p: &str| d.join(p).to_str().unwrap().to_string();
    let index = path("anserini-index");
    let (input, topics, run) = (path("anserini"), path("topics.tsv"), path("anserini.run"));
    run_anserini(
        java,
        jar,
        "io.anserini.index.IndexCollection",
        &[
            "-collection",
            "JsonVectorCollection",
            "-input",
            &input,
            "-index",
            &index,
            "-generator",
            "DefaultLuceneDocumentGenerator",
            "-impact",
            "-pretokenized",
            "-threads",
            "1",
        ],
    );
    let mut args = vec![
        "-index",
        &index,
        "-topics",
        &topics,
        "-topicreader",
        "TsvString",
        "-output",
        &run,
        "-impact",
        "-pretokenized",
    ];
    args.extend(search);
    run_anserini(java, jar, "io.anserini.search.SearchCollection", &args);
    let mut hits: HashMap<String, Vec<(String, f64)>> = HashMap::new();
    for line in std::fs::read_to_string(&run).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let score: f64 = f[4].parse().unwrap();
        hits.entry(f[0].to_string())
            .or_default()
            .push((f[2].to_string(), score));
    }
    for qid in fx.queries.keys() {
        let got = hits.remove(qid.as_str()).unwrap_or_default();
        fx.check("Anserini", qid, &got);
    }
    assert!(
        hits.is_empty(),
        "Anserini answered queries never asked: {:?}",
        hits.keys()
    );
}
