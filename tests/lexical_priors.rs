//! Lexical priors learned in training: per-term shifts that start from
//! the training passages' document frequencies, and the inference-free query
//! table trained against a model's cached document vectors.

use candle_core::{Device, Tensor};
use csplade::encode::{Encoder, EncoderConfig};
use csplade::model::{self, adapter};
use csplade::train::{Phase, Trainer};

mod common;
use common::{tiny, toy_collection, toy_config};

/// `term_shift_init = "df:β"` starts the per-term shifts at
/// `β · (idf_v − max idf)` over the training passages: 0 for the rarest
/// terms and for terms no passage has, lowest for a term in every passage.
#[test]
fn per_term_shifts_can_start_from_document_frequencies() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let m = tiny(&dir.path().join("m"), false);
    let mut cfg = toy_config(dir.path(), 2);
    cfg.learn_term_shift = true;
    cfg.term_shift_init = "df:0.5".into();
    let t = Trainer::new(cfg.clone(), Phase::Contrastive, &dir.path().join("run"), m).unwrap();
    let b: Vec<f32> = t
        .term_shift
        .as_ref()
        .unwrap()
        .as_tensor()
        .to_vec1()
        .unwrap();
    // The tiny vocabulary is bytes: of the 12 passages "notes about the W
    // and other things", every one has "n", only "violin"'s has "v", none "X".
    let tok = &t.model.tokenizer;
    let id = |w: &str| {
        let ids = tok.encode(w).unwrap();
        assert_eq!(ids.len(), 1, "{w:?} is one token");
        ids[0] as usize
    };
    let idf = |df: f32| (13f32 / (df + 0.5)).ln();
    for (w, df) in [("n", 12.0), ("v", 1.0), ("X", 0.0)] {
        let want = 0.5 * (idf(df) - idf(0.0));
        assert!(
            (b[id(w)] - want).abs() < 1e-5,
            "{w}: {} vs {want}",
            b[id(w)]
        );
    }
    assert!(b.iter().all(|&x| x <= 0.0 && x.is_finite()));
    for bad in ["df:0", "df:-1", "df:x", "idf:1"] {
        cfg.term_shift_init = bad.into();
        assert!(cfg.validate().is_err(), "{bad}");
    }
}

/// The inference-free query table trains against the model's cached
/// document vectors: its held-out InfoNCE falls below the idf table it
/// starts from, weights stay ≥ 0, a rerun reads the cached documents instead
/// of encoding them again, and an adapter carrying the table encodes a query
/// as its own tokens with the table's weights.
#[test]
fn query_table_learns_against_cached_documents() {
    use csplade::train::query_table::{self, TableOptions, TableProgress};
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let m = tiny(&dir.path().join("m"), false);
    let mut cfg = toy_config(dir.path(), 2);
    cfg.batch = 3;
    cfg.hard_negatives = 1;
    let opts = TableOptions {
        micro_batches: 12,
        epochs: 30,
        lr: 0.05,
        lambda: 0.0,
    };
    let run = dir.path().join("table");
    std::fs::create_dir_all(&run).unwrap();
    let mut held = Vec::new();
    let mut encoded = 0;
    let table = query_table::train(&m, &cfg, &run, &opts, |p| match p {
        TableProgress::Epoch {
            held_out_infonce, ..
        } => held.push(*held_out_infonce),
        TableProgress::Encoding { .. } => encoded += 1,
    })
    .unwrap();
    assert_eq!(encoded, 12, "every micro-batch's documents encoded once");
    assert_eq!(held.len(), 30);
    assert!(table.iter().all(|w| w.is_finite() && *w >= 0.0));
    let best = held.iter().copied().fold(f32::INFINITY, f32::min);
    assert!(best < held[0], "held-out InfoNCE did not fall: {held:?}");
    // A second run finds the documents in the cache.
    let mut again = 0;
    let table2 = query_table::train(&m, &cfg, &run, &opts, |p| {
        if matches!(p, TableProgress::Encoding { .. }) {
            again += 1
        }
    })
    .unwrap();
    assert_eq!(again, 0, "nothing encoded twice");
    assert_eq!(table, table2, "the same data and seed train the same table");
    // An adapter with the table: queries through it, documents unchanged.
    let (variant, head) = m.trained_encoding();
    let mut a = adapter::Adapter {
        meta: adapter::AdapterMeta {
            base_id: m.identity.id.clone(),
            base_sha256: m.identity.sha256.clone(),
            kind: "lora".into(),
            rank: 1,
            alpha: 1.0,
            variant,
            head,
            max_len: 128,
            trained: String::new(),
            query_prior: Default::default(),
            query_feedback: Default::default(),
            passages: None,
            documents_as: Some(m.identity.sha256.clone()),
        },
        tensors: Default::default(),
    };
    let vocab = table.len();
    a.tensors.insert(
        adapter::QUERY_TABLE.into(),
        Tensor::from_vec(table.clone(), vocab, &Device::Cpu).unwrap(),
    );
    let file = dir.path().join("with-table.safetensors");
    a.write(&file).unwrap();
    let spec = format!(
        "{}+{}",
        dir.path().join("m/tiny.gguf").display(),
        file.display()
    );
    let with = model::load(&spec, &Device::Cpu).unwrap();
    assert_eq!(
        with.identity.sha256, m.identity.sha256,
        "its indexes are the model's"
    );
    let cfgq = EncoderConfig {
        variant,
        head,
        max_len: 64,
        batch_size: 4,
        windows: 1,
    };
    let q = Encoder::new(&with, cfgq.clone())
        .with_inference_free(true)
        .unwrap()
        .encode_one("zebra pepper")
        .unwrap();
    let ids = with.tokenizer.encode(" zebra pepper").unwrap();
    assert!(!q.vector.is_empty());
    for (id, w) in q.vector.iter() {
        assert!(ids.contains(&id), "only the query's own tokens");
        let stored = half::f16::from_f32(table[id as usize]).to_f32();
        assert_eq!(w, stored, "weight from the table (stored as f16)");
    }
    assert!(
        Encoder::new(&m, cfgq).with_inference_free(true).is_err(),
        "no table, refused"
    );
    carried_to_another_adapter(dir.path(), &file, &table);
}

/// `adapter set-prior --query-table-from`: another adapter of the same base
/// takes the table (and the prior) and keeps its own documents' identity; an
/// adapter without a table is refused as a source, writing nothing.
fn carried_to_another_adapter(dir: &std::path::Path, with_table: &std::path::Path, table: &[f32]) {
    let m = dir.join("m");
    let lora = common::lora_adapter(&m);
    let gguf = m.join("tiny.gguf");
    let set_prior = |from: &std::path::Path, out: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_csplade"))
            .args(["adapter", "set-prior", "--prior", "idf:0.5"])
            .arg("--model")
            .arg(&gguf)
            .arg("--adapter")
            .arg(&lora)
            .arg("--query-table-from")
            .arg(from)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let out = dir.join("carried.safetensors");
    let o = set_prior(with_table, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let spec = |a: &std::path::Path| format!("{}+{}", gguf.display(), a.display());
    let (own, carried) = (
        model::load(&spec(&lora), &Device::Cpu).unwrap(),
        model::load(&spec(&out), &Device::Cpu).unwrap(),
    );
    assert_eq!(carried.identity.sha256, own.identity.sha256);
    let got = carried
        .query_table
        .as_deref()
        .expect("the table came along");
    let stored = |w: f32| half::f16::from_f32(w).to_f32();
    assert!(got.iter().zip(table).all(|(g, t)| *g == stored(*t)));
    let meta = adapter::Adapter::read(&out).unwrap().meta;
    assert_eq!(meta.query_prior.to_string(), "idf:0.5");
    assert!(meta
        .trained
        .ends_with("query table from with-table.safetensors"));
    let refused = dir.join("refused.safetensors");
    let o = set_prior(&lora, &refused);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("has no inference-free query table"),
        "{err}"
    );
    assert!(!refused.exists(), "nothing written");
}
