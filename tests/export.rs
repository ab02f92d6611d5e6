//! Exports for other engines, read back: CIFF (by csplade's reader and by
//! ciff-toolkit's `ciff_dump` when installed), Anserini's
//! JsonVectorCollection and OpenSearch rank_features, whose query body
//! scores documents exactly as csplade does; passages exported as
//! documents `ID#K` of their own.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use csplade::encode::{Encoder, EncoderConfig, Head, SparseVec, Variant};
use csplade::export::{self, ExportFormat};
use csplade::index::passages::PassageSpec;
use csplade::index::{build, BuildOptions};
use csplade::search::{Backend, LsrIndex};

mod common;

fn tiny_index(dir: &Path) -> (csplade::model::LoadedModel, LsrIndex) {
    tiny_index_with(dir, None)
}

/// 40 documents of 6 words (titles `t0`…), indexed by a tiny model, with
/// `passages` or without.
fn tiny_index_with(
    dir: &Path,
    passages: Option<PassageSpec>,
) -> (csplade::model::LoadedModel, LsrIndex) {
    let corpus = dir.join("ds");
    std::fs::create_dir_all(&corpus).unwrap();
    let words = [
        "otter", "river", "stone", "bank", "heat", "theory", "water", "fish",
    ];
    let mut c = String::new();
    for i in 0..40 {
        let text: Vec<&str> = (0..6)
            .map(|j| words[(i * 7 + j * 3) % words.len()])
            .collect();
        c.push_str(&format!(
            "{}\n",
            serde_json::json!({"_id": format!("doc-{i}"), "title": format!("t{i}"), "text": text.join(" ")})
        ));
    }
    std::fs::write(corpus.join("corpus.jsonl"), c).unwrap();
    csplade::model::tiny::write_tiny_model(&dir.join("m"), 6).unwrap();
    let m = csplade::model::load(dir.join("m/tiny.gguf").to_str().unwrap(), &Device::Cpu).unwrap();
    let cfg = EncoderConfig {
        variant: Variant::Echo,
        head: Head::LogProb { shift: 3.0 },
        max_len: 64,
        batch_size: 4,
        windows: 1,
    };
    let opts = BuildOptions {
        passages,
        ..common::build_options(&corpus, &dir.join("idx"))
    };
    build(&Encoder::new(&m, cfg), &opts, |_| {}).unwrap();
    let idx = LsrIndex::open(&dir.join("idx")).unwrap();
    (m, idx)
}

/// Every document's impacts as the index quantizes them, by term string.
fn quantized(idx: &LsrIndex, terms: &[String]) -> Vec<HashMap<String, i32>> {
    idx.vectors
        .iter()
        .map(|v| {
            v.iter()
                .map(|(id, w)| {
                    (
                        terms[id as usize].clone(),
                        export::quantize(w, idx.meta.scale),
                    )
                })
                .filter(|(_, q)| *q > 0)
                .collect()
        })
        .collect()
}

#[test]
fn ciff_holds_the_indexs_quantized_impacts() {
    let dir = tempfile::tempdir().unwrap();
    let (m, idx) = tiny_index(dir.path());
    let out = dir.path().join("x.ciff");
    let r = export::export(&idx, &m.tokenizer, ExportFormat::Ciff, &out, "x").unwrap();
    assert_eq!(r.documents, 40);
    let (header, lists, docs) = export::read_ciff(&out).unwrap();
    assert_eq!(
        (
            header.version,
            header.num_docs,
            header.num_postings_lists as usize
        ),
        (1, 40, lists.len())
    );
    assert!(header.description.contains("round(weight x 100)"));
    let terms = export::vocabulary(&m.tokenizer, m.config().vocab_size);
    let want = quantized(&idx, &terms);
    let mut got: Vec<HashMap<String, i32>> = vec![HashMap::new(); 40];
    let mut previous_term = String::new();
    for l in &lists {
        assert!(
            l.term > previous_term,
            "terms sorted and unique: {:?} after {previous_term:?}",
            l.term
        );
        previous_term = l.term.clone();
        assert!(!l.term.chars().any(char::is_whitespace), "{:?}", l.term);
        let mut d = 0;
        for (i, p) in l.postings.iter().enumerate() {
            assert!(i == 0 || p.docid > 0, "gaps are positive");
            d += p.docid;
            got[d as usize].insert(l.term.clone(), p.tf);
        }
        assert_eq!(l.df as usize, l.postings.len());
        assert_eq!(l.cf, l.postings.iter().map(|p| p.tf as i64).sum::<i64>());
    }
    assert_eq!(got, want);
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(
            (d.docid as usize, d.collection_docid.as_str()),
            (i, idx.doc_id(i))
        );
        assert_eq!(
            d.doclength as i64,
            want[i].values().map(|&q| q as i64).sum::<i64>()
        );
    }
    // An outside reader: ciff-toolkit's ciff_dump (installed by .ci/run).
    let dump = std::env::var("CSPLADE_CIFF_DUMP").unwrap_or_else(|_| "ciff_dump".into());
    match std::process::Command::new(&dump).arg(&out).output() {
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("num_docs: 40"), "{text}");
            assert!(
                text.contains(&format!("num_postings_lists: {}", lists.len())),
                "{text}"
            );
            let first = &lists[0];
            assert!(
                text.contains(&format!(
                    "{}\tdf: {}\tcf: {}",
                    first.term, first.df, first.cf
                )),
                "{text}"
            );
        }
        Err(_) => {
            assert!(
                std::env::var("CSPLADE_REQUIRE_TOOLS").is_err(),
                "ciff_dump ({dump}) is required: CSPLADE_REQUIRE_TOOLS is set"
            );
            common::note_skip("CIFF read by ciff-toolkit: ciff_dump not installed");
        }
    }
}

#[test]
fn anserini_vectors_are_the_quantized_impacts() {
    let dir = tempfile::tempdir().unwrap();
    let (m, idx) = tiny_index(dir.path());
    let out = dir.path().join("anserini/docs.jsonl");
    export::export(&idx, &m.tokenizer, ExportFormat::Anserini, &out, "x").unwrap();
    let terms = export::vocabulary(&m.tokenizer, m.config().vocab_size);
    let want = quantized(&idx, &terms);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 40);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["id"], idx.doc_id(i));
        assert!(l["contents"]
            .as_str()
            .unwrap()
            .starts_with(&format!("t{i} ")));
        let v: HashMap<String, i32> = l["vector"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().unwrap() as i32))
            .collect();
        assert_eq!(v, want[i]);
    }
}

#[test]
fn opensearch_query_bodies_score_like_csplade() {
    let dir = tempfile::tempdir().unwrap();
    let (m, idx) = tiny_index(dir.path());
    let out = dir.path().join("os.ndjson");
    let r = export::export(&idx, &m.tokenizer, ExportFormat::OpenSearch, &out, "sparse").unwrap();
    assert_eq!(r.files.len(), 2);
    let mapping: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(export::mapping_path(&out)).unwrap())
            .unwrap();
    assert_eq!(
        mapping["mappings"]["properties"]["terms"]["type"],
        "rank_features"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 80);
    let mut features: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for pair in lines.chunks(2) {
        assert_eq!(pair[0]["index"]["_index"], "sparse");
        let id = pair[0]["index"]["_id"].as_str().unwrap().to_string();
        let f = pair[1]["terms"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        features.insert(id, f);
    }
    // The query body, evaluated as OpenSearch would: Σ boost × feature.
    let enc = Encoder::new(&m, idx.meta.encoder_config());
    let q: SparseVec = enc.encode_one("otter river stone").unwrap().vector;
    let body = export::opensearch_query(&q, &m.tokenizer, 10);
    let clauses = body["query"]["bool"]["should"].as_array().unwrap();
    assert_eq!(clauses.len(), q.active());
    for h in idx.search(&q, 10, Backend::Exact).unwrap() {
        let f = &features[&h.doc_id];
        let score: f64 = clauses
            .iter()
            .map(|c| {
                let field = c["rank_feature"]["field"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("terms.");
                c["rank_feature"]["boost"].as_f64().unwrap() * f.get(field).copied().unwrap_or(0.0)
            })
            .sum();
        assert!(
            (score - h.score as f64).abs() < 1e-3 * h.score.abs().max(1.0) as f64,
            "{}: {score} vs {}",
            h.doc_id,
            h.score
        );
    }
}

#[test]
fn terms_are_safe_and_distinct() {
    assert_eq!(export::safe_term(" copy"), "%20copy");
    assert_eq!(export::safe_term(" Copy"), "%20%43opy");
    assert_eq!(export::safe_term("É"), "%c3%89");
    assert_eq!(export::safe_term("é"), "é");
    assert_eq!(export::safe_term("a.b"), "a%2eb");
    assert_eq!(export::safe_term("\n"), "%0a");
    assert_eq!(export::safe_term("%"), "%25");
    assert_eq!(export::safe_term(""), "%00");
    assert_ne!(export::safe_term(" x"), export::safe_term("%20x"));
    // Lowercasing (as PISA does to query terms) changes no term of a
    // byte-level vocabulary (the tiny model's: all 256 bytes and merges),
    // and the terms stay distinct.
    let dir = tempfile::tempdir().unwrap();
    csplade::model::tiny::write_tiny_model(dir.path(), 1).unwrap();
    let m =
        csplade::model::load(dir.path().join("tiny.gguf").to_str().unwrap(), &Device::Cpu).unwrap();
    let terms = export::vocabulary(&m.tokenizer, m.config().vocab_size);
    let distinct: std::collections::HashSet<&String> = terms.iter().collect();
    assert_eq!(distinct.len(), terms.len());
    for t in &terms {
        assert_eq!(&t.to_lowercase(), t);
        assert_eq!(&t.to_ascii_lowercase(), t);
    }
}

/// With passages, every format holds each document's first read and then
/// its passages as documents `ID#K`, each with its own impacts and text.
#[test]
fn passages_export_as_documents_of_their_own_after_their_document() {
    let dir = tempfile::tempdir().unwrap();
    let (m, idx) = tiny_index_with(dir.path(), Some("2:2:2".parse().unwrap()));
    let p = idx.passages.as_ref().unwrap();
    assert_eq!(p.len(), 80, "two passages of each 6-word document");
    let mut want_ids = Vec::new();
    for d in 0..idx.len() {
        want_ids.push(idx.doc_id(d).to_string());
        want_ids.extend(p.of(d).map(|(k, _)| format!("{}#{k}", idx.doc_id(d))));
    }
    let units = export::Units::WithPassages;
    let anserini = dir.path().join("docs.jsonl");
    let r = export::export_units(
        &idx,
        &m.tokenizer,
        ExportFormat::Anserini,
        &anserini,
        "x",
        units,
    )
    .unwrap();
    assert_eq!((r.documents, r.passages), (120, 80));
    let terms = export::vocabulary(&m.tokenizer, m.config().vocab_size);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&anserini)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, want_ids);
    // doc-3's second passage: its title and words 4–5, its own impacts.
    let second = &lines[3 * 3 + 2];
    let doc = idx.document(3).unwrap();
    let words: Vec<&str> = doc.text.split_whitespace().collect();
    assert_eq!(second["contents"], format!("t3 {} {}", words[4], words[5]));
    let impacts: HashMap<String, i32> = p
        .vector(3, 2)
        .unwrap()
        .iter()
        .map(|(id, w)| {
            (
                terms[id as usize].clone(),
                export::quantize(w, idx.meta.scale),
            )
        })
        .filter(|(_, q)| *q > 0)
        .collect();
    let got: HashMap<String, i32> = second["vector"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap() as i32))
        .collect();
    assert_eq!(got, impacts);
    let ciff = dir.path().join("idx.ciff");
    export::export_units(&idx, &m.tokenizer, ExportFormat::Ciff, &ciff, "x", units).unwrap();
    let (header, _, docs) = export::read_ciff(&ciff).unwrap();
    assert_eq!(header.num_docs, 120);
    let ciff_ids: Vec<String> = docs.into_iter().map(|d| d.collection_docid).collect();
    assert_eq!(ciff_ids, want_ids);
    let os = dir.path().join("os.ndjson");
    export::export_units(
        &idx,
        &m.tokenizer,
        ExportFormat::OpenSearch,
        &os,
        "x",
        units,
    )
    .unwrap();
    let actions = std::fs::read_to_string(&os).unwrap();
    let os_ids: Vec<String> = actions
        .lines()
        .step_by(2)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]["_id"].to_string())
        .map(|id| id.trim_matches('"').to_string())
        .collect();
    assert_eq!(os_ids, want_ids);
}

/// A document id holding the delimiter would read as a passage of another
/// document: exporting its passages is refused by name, first reads are not.
#[test]
fn a_document_id_holding_the_passage_delimiter_is_refused_with_passages() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("ds");
    std::fs::create_dir_all(&corpus).unwrap();
    let doc = |id: &str| serde_json::json!({"_id": id, "title": "t", "text": "a b c d e f"});
    std::fs::write(
        corpus.join("corpus.jsonl"),
        format!("{}\n{}\n", doc("plain"), doc("x#1")),
    )
    .unwrap();
    csplade::model::tiny::write_tiny_model(&dir.path().join("m"), 6).unwrap();
    let m = csplade::model::load(
        dir.path().join("m/tiny.gguf").to_str().unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let opts = BuildOptions {
        passages: Some("2:2:2".parse().unwrap()),
        ..common::build_options(&corpus, &dir.path().join("idx"))
    };
    build(&Encoder::new(&m, EncoderConfig::default()), &opts, |_| {}).unwrap();
    let idx = LsrIndex::open(&dir.path().join("idx")).unwrap();
    let out = dir.path().join("docs.jsonl");
    let units = export::Units::WithPassages;
    let e = export::export_units(&idx, &m.tokenizer, ExportFormat::Anserini, &out, "x", units)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"x#1\" holds '#'"), "{e}");
    assert!(!out.exists(), "a refused export wrote {}", out.display());
    export::export(&idx, &m.tokenizer, ExportFormat::Anserini, &out, "x").unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
}

/// `csplade export --passages` needs an index that has passages.
#[test]
fn export_passages_is_refused_for_an_index_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, plain) = tiny_index(dir.path());
    let out = dir.path().join("plain.jsonl");
    let refused = common::csplade_in(dir.path())
        .args(["export", "--format", "anserini", "--passages", "--index"])
        .arg(&plain.dir)
        .arg("--model")
        .arg(dir.path().join("m/tiny.gguf"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && e.contains("holds no passages"),
        "{e}"
    );
    assert!(!out.exists(), "a refused export wrote {}", out.display());
}
