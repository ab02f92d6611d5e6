//! The field's sparse encoders, opened from the files their own libraries
//! write: csplade's expansions match what sentence-transformers'
//! `SparseEncoder.encode` (BERT / DistilBERT SPLADE, max and sum pooling,
//! `log1p_relu`, an inference-free `Router`), OpenSearch's reference code
//! (`idf.json` beside a BertForMaskedLM) and transformers + peft (a
//! bidirectional Llama with a LoRA adapter and a scaled raw head) compute,
//! within 1e-4 per weight with the same active terms. The checkpoints are
//! tiny random-weight models made by `tests/tools/make_sparse_fixtures.py`
//! and committed under `tests/fixtures/families/` with the expected
//! expansions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use csplade::encode::{Encoder, EncoderConfig, Head, Variant};
use csplade::model::family::{self, Family};
use csplade::model::{ModelRef, SparseModel};
use csplade::quant::Precision;

mod common;
use common::copy_dir;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families")
}

/// `name` → [(text, {token id: weight})] from `expected.json`.
fn expected(name: &str) -> Vec<(String, BTreeMap<u32, f32>)> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[name]
        .as_array()
        .unwrap_or_else(|| panic!("no {name} in expected.json"))
        .iter()
        .map(|e| {
            let w = e["weights"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, x)| (k.parse().unwrap(), x.as_f64().unwrap() as f32))
                .collect();
            (e["text"].as_str().unwrap().to_string(), w)
        })
        .collect()
}

fn open(dir: &str) -> SparseModel {
    open_at(&fixtures().join(dir))
}

fn open_at(dir: &Path) -> SparseModel {
    family::open(
        dir.to_str().unwrap(),
        &Device::Cpu,
        Precision::F32,
        false,
        Family::Auto,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn encoder<'m>(m: impl Into<ModelRef<'m>>, inference_free: bool) -> Encoder<'m> {
    let m = m.into();
    let (variant, head) = m.trained_encoding();
    Encoder::new(
        m,
        EncoderConfig {
            variant,
            head,
            max_len: 60,
            batch_size: 2,
            windows: 1,
        },
    )
    .with_inference_free(inference_free)
    .unwrap()
}

/// Every weight within 1e-4, and the same terms above 1e-4.
fn assert_matches(name: &str, enc: &Encoder, cases: &[(String, BTreeMap<u32, f32>)]) {
    // A query's own tokens are few; an expansion has dozens of terms.
    let least = if enc.inference_free { 8 } else { 20 };
    let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let got = enc.encode(&texts).unwrap();
    let mut compared = 0;
    for ((text, want), e) in cases.iter().zip(&got) {
        let ours: BTreeMap<u32, f32> = e.vector.iter().collect();
        for (id, w) in want {
            let o = ours.get(id).copied().unwrap_or(0.0);
            assert!(
                (o - w).abs() <= 1e-4,
                "{name} {text:?}: term {id} weighs {o}, the reference {w}"
            );
            compared += 1;
        }
        for (id, o) in &ours {
            if *o > 1e-4 {
                assert!(
                    want.contains_key(id),
                    "{name} {text:?}: term {id} ({o}) is not in the reference's expansion"
                );
            }
        }
        assert!(
            !want.is_empty(),
            "{name} {text:?}: an empty reference proves nothing"
        );
    }
    assert!(compared > least, "{name}: only {compared} weights compared");
}

#[test]
fn splade_checkpoints_match_sentence_transformers() {
    for (dir, head) in [
        ("bert-splade", "splade:max"),
        ("distilbert-splade-sum", "splade:sum"),
        ("bert-splade-log1p", "splade:max:log1p"),
    ] {
        let m = open(dir);
        assert!(matches!(m, SparseModel::MaskedLm(_)), "{dir}: a masked LM");
        assert_eq!(
            m.trained_encoding(),
            (Variant::Bi, head.parse().unwrap()),
            "{dir}"
        );
        assert!(!m.inference_free_by_default());
        assert_matches(dir, &encoder(&m, false), &expected(dir));
    }
}

#[test]
fn an_inference_free_router_matches_sentence_transformers_on_both_sides() {
    let m = open("inference-free");
    assert!(
        m.inference_free_by_default(),
        "queries go through the table"
    );
    assert_matches(
        "router documents",
        &encoder(&m, false),
        &expected("inference-free/document"),
    );
    let q = encoder(&m, true);
    assert_matches("router queries", &q, &expected("inference-free/query"));
    // A query is its own tokens: nothing beyond them is ever weighted.
    let e = q.encode_one("which command copies files").unwrap();
    let own: std::collections::HashSet<u32> = e.token_ids.iter().copied().collect();
    assert!(e.vector.ids.iter().all(|id| own.contains(id)));
}

#[test]
fn opensearchs_idf_json_layout_matches_its_reference_code() {
    let m = open("opensearch-v1");
    assert_eq!(
        m.trained_encoding().1,
        Head::Splade {
            sum: false,
            double_log: false,
            zero_special: true
        }
    );
    assert_matches(
        "opensearch documents",
        &encoder(&m, false),
        &expected("opensearch-v1/document"),
    );
    assert_matches(
        "opensearch queries",
        &encoder(&m, true),
        &expected("opensearch-v1/query"),
    );
}

/// Older BERT checkpoints (TensorFlow-era conversions, some SPLADE models
/// published since) name their LayerNorms `gamma` / `beta`; transformers
/// renames them on load, and so does csplade: the same weights under the old
/// names encode exactly as the fixture does.
#[test]
fn layer_norms_named_gamma_and_beta_load_as_transformers_loads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bert-splade-gamma-beta");
    copy_dir(&fixtures().join("bert-splade"), &dir);
    let file = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let mut renamed = 0;
    let old_names: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let old = name
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            renamed += usize::from(old != name);
            (old, t)
        })
        .collect();
    // The embeddings', two per encoder layer and the prediction head's.
    assert!(renamed >= 8, "only {renamed} LayerNorm tensors renamed");
    candle_core::safetensors::save(&old_names, &file).unwrap();
    let m = open_at(&dir);
    assert_matches(
        "bert-splade (gamma/beta)",
        &encoder(&m, false),
        &expected("bert-splade"),
    );
}

/// Opening a model directory writes nothing into it: the cache of its
/// weights' sha256 goes to csplade's own directory.
#[test]
fn opening_a_model_directory_leaves_it_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("user-model");
    copy_dir(&fixtures().join("bert-splade"), &dir);
    let before = common::snapshot(&dir);
    let home = tmp.path().join("home");
    for _ in 0..2 {
        common::succeeds(
            std::process::Command::new(env!("CARGO_BIN_EXE_csplade"))
                .env("CSPLADE_HOME", &home)
                .args([
                    "encode",
                    "--model",
                    dir.to_str().unwrap(),
                    "which command copies files",
                ]),
        );
    }
    assert!(
        common::snapshot(&dir) == before,
        "csplade wrote into the model directory"
    );
    let cached: Vec<_> = std::fs::read_dir(home.join("hashes")).unwrap().collect();
    assert_eq!(
        cached.len(),
        1,
        "one weights file, one cached hash: {cached:?}"
    );
}

#[test]
fn a_bidirectional_llama_with_a_peft_adapter_matches_transformers() {
    let dir = fixtures().join("llama-bi-peft");
    let spec = format!("{}+{}", dir.display(), dir.join("adapter").display());
    let m = family::open(&spec, &Device::Cpu, Precision::F32, false, Family::Auto).unwrap();
    assert!(matches!(m, SparseModel::Causal(_)));
    let enc = Encoder::new(
        &m,
        EncoderConfig {
            variant: Variant::Bi,
            head: "raw:0.5".parse().unwrap(),
            max_len: 60,
            batch_size: 2,
            windows: 1,
        },
    );
    assert_matches("llama bi + peft", &enc, &expected("llama-bi-peft"));
}

#[test]
fn the_splade_family_quantizes_with_the_same_weights_design() {
    let f32m = open("bert-splade");
    let dir = fixtures().join("bert-splade");
    for p in [Precision::F16, Precision::Q8_0] {
        let q = family::open(dir.to_str().unwrap(), &Device::Cpu, p, false, Family::Auto).unwrap();
        let (a, b) = (encoder(&f32m, false), encoder(&q, false));
        let text = "high blood pressure in adults";
        let (va, vb) = (
            a.encode_one(text).unwrap().vector,
            b.encode_one(text).unwrap().vector,
        );
        assert!(va.cosine(&vb) > 0.99, "{p}: cosine {}", va.cosine(&vb));
        assert!(
            q.as_ref().weight_bytes() < f32m.as_ref().weight_bytes(),
            "{p} is smaller"
        );
    }
}

/// The whole pipeline with a SPLADE checkpoint, through the binary: index a
/// collection, search it with explanations, evaluate LSR, BM25 and their
/// fusion, export for Anserini; an inference-free checkpoint's queries go
/// through its table; a causal flag on a masked LM is refused by name.
#[test]
fn a_splade_checkpoint_indexes_searches_evaluates_and_exports() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    std::fs::create_dir_all(ds.join("qrels")).unwrap();
    let docs = [
        "salt and heart disease: high blood pressure in adults",
        "the otter swims in the river near a stone",
        "boundary layer flow over a wing with a shock",
        "which command copies files and directories recursively",
    ];
    let corpus: String = docs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "{}\n",
                serde_json::json!({"_id": format!("d{i}"), "title": "", "text": t})
            )
        })
        .collect();
    std::fs::write(ds.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(
        ds.join("queries.jsonl"),
        "{\"_id\":\"q1\",\"text\":\"high blood pressure\"}\n{\"_id\":\"q2\",\"text\":\"copies files\"}\n",
    )
    .unwrap();
    std::fs::write(
        ds.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td3\t1\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_csplade"))
            .args(args)
            .env("CSPLADE_HOME", tmp.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for name in ["bert-splade", "inference-free"] {
        let model = fixtures().join(name);
        let model = model.to_str().unwrap();
        let index = tmp.path().join(format!("index-{name}"));
        let index = index.to_str().unwrap();
        let (ok, _, err) = run(&[
            "index",
            "--model",
            model,
            "--corpus",
            ds.to_str().unwrap(),
            "--out",
            index,
        ]);
        assert!(ok, "{name}: index: {err}");
        let (ok, out, err) = run(&[
            "search",
            "--index",
            index,
            "--model",
            model,
            "--explain",
            "--json",
            "high blood pressure",
        ]);
        assert!(ok, "{name}: search: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let hits = v["hits"].as_array().unwrap();
        assert!(!hits.is_empty(), "{name}: {v}");
        for h in hits {
            let sum = common::explained_score(h);
            assert!(
                (sum - h["score"].as_f64().unwrap()).abs() < 1e-3,
                "{name}: {h}"
            );
        }
        let (ok, out, err) = run(&[
            "eval",
            "--dataset",
            ds.to_str().unwrap(),
            "--index",
            index,
            "--model",
            model,
            "--system",
            "all",
            "--json",
        ]);
        assert!(ok, "{name}: eval: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v["systems"]["hybrid"]["ndcg@10"].is_number(), "{name}: {v}");
        let export = tmp.path().join(format!("{name}.jsonl"));
        let (ok, _, err) = run(&[
            "export",
            "--index",
            index,
            "--model",
            model,
            "--format",
            "anserini",
            "--out",
            export.to_str().unwrap(),
        ]);
        assert!(ok, "{name}: export: {err}");
        assert_eq!(
            std::fs::read_to_string(&export).unwrap().lines().count(),
            docs.len()
        );
    }
    let model = fixtures().join("bert-splade");
    let (ok, _, err) = run(&[
        "encode",
        "--model",
        model.to_str().unwrap(),
        "--variant",
        "echo",
        "salt",
    ]);
    assert!(!ok && err.contains("bidirectionally"), "{err}");
    let (ok, _, err) = run(&[
        "encode",
        "--model",
        model.to_str().unwrap(),
        "--inference-free",
        "salt",
    ]);
    assert!(
        !ok && err.contains("no inference-free query table"),
        "{err}"
    );
}

fn open_err(dir: &Path) -> String {
    match family::open(
        dir.to_str().unwrap(),
        &Device::Cpu,
        Precision::F32,
        false,
        Family::Auto,
    ) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Broken checkpoints are refused with the file and what is wrong, never
/// with a panic: missing weights, a pickle only, a tokenizer of another
/// vocabulary size, an unknown architecture, idf.json tokens the vocabulary
/// lacks, a query table of the wrong length.
#[test]
fn broken_checkpoints_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let case = |name: &str, from: &str| {
        let d = tmp.path().join(name);
        copy_dir(&fixtures().join(from), &d);
        d
    };
    let d = case("no-weights", "opensearch-v1");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = open_err(&d);
    assert!(e.contains("no *.safetensors"), "{e}");
    std::fs::write(d.join("pytorch_model.bin"), b"pickle").unwrap();
    let e = open_err(&d);
    assert!(
        e.contains("pytorch_model.bin") && e.contains("save_pretrained"),
        "{e}"
    );

    let d = case("vocab", "opensearch-v1");
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let n = v["vocab_size"].as_u64().unwrap();
    std::fs::write(
        d.join("config.json"),
        cfg.replace(
            &format!("\"vocab_size\": {n}"),
            &format!("\"vocab_size\": {}", n + 5),
        ),
    )
    .unwrap();
    let e = open_err(&d);
    assert!(e.contains("config.json") && e.contains("tokenizer"), "{e}");

    let d = case("arch", "opensearch-v1");
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
    std::fs::write(d.join("config.json"), cfg.replace("\"gelu\"", "\"swish\"")).unwrap();
    let e = open_err(&d);
    assert!(e.contains("config.json") && e.contains("swish"), "{e}");

    let d = case("idf", "opensearch-v1");
    std::fs::write(d.join("idf.json"), "{\"zzzunknownzzz\": 1.5}").unwrap();
    let e = open_err(&d);
    assert!(e.contains("idf.json") && e.contains("zzzunknownzzz"), "{e}");
    std::fs::write(d.join("idf.json"), "{\"salt\": ").unwrap();
    let e = open_err(&d);
    assert!(e.contains("idf.json") && e.contains("line"), "{e}");

    let d = case("router", "inference-free");
    let m = std::fs::read_to_string(d.join("modules.json")).unwrap();
    std::fs::write(d.join("modules.json"), m.replace("Router", "Wormhole")).unwrap();
    let e = open_err(&d);
    assert!(e.contains("Wormhole"), "{e}");

    let d = case("pooling", "bert-splade");
    std::fs::write(
        d.join("1_SpladePooling/config.json"),
        "{\"pooling_strategy\": \"mean\"}",
    )
    .unwrap();
    let e = open_err(&d);
    assert!(e.contains("1_SpladePooling") && e.contains("mean"), "{e}");
}
