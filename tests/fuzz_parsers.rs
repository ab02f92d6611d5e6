//! Fuzzing of the parsers csplade reads collections, indexes, caches and
//! its own files with (the harness, its seeds and limits: tests/common/fuzz.rs;
//! models, adapters and run state: tests/fuzz_models.rs).

use std::io::Write;
use std::path::Path;

use candle_core::Device;
use csplade::data::beir;
use csplade::model::tiny::SplitMix;

mod common;
use common::fuzz::{fuzz, mutate, parser_tests, Rng};

fn tiny_model_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    csplade::model::tiny::write_tiny_model(d.path(), 3).unwrap();
    d
}

fn gguf(cases: usize) {
    let m = tiny_model_dir();
    let seed = std::fs::read(m.path().join("tiny.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    fuzz("gguf", &[seed], cases, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        if let Ok(mut g) = csplade::model::gguf::GgufFile::open(&path) {
            let _ = g.llama_config();
            let _ = csplade::model::TextTokenizer::from_gguf(&g);
            let _ = g.hf_tensors(&Device::Cpu);
        }
    });
}

fn adapter(cases: usize) {
    let m = tiny_model_dir();
    let spec = m.path().join("tiny.gguf");
    let mut model = csplade::model::load_unpacked(spec.to_str().unwrap(), &Device::Cpu).unwrap();
    let mut fresh = csplade::model::load_unpacked(spec.to_str().unwrap(), &Device::Cpu).unwrap();
    let targets = vec!["q_proj".to_string(), "down_proj".to_string()];
    let vars =
        csplade::model::adapter::attach_low_rank(&mut fresh.llama, 2, 4.0, &targets, 1).unwrap();
    let meta = common::tiny_adapter_meta("");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.safetensors");
    let mut tensors: std::collections::HashMap<_, _> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let vocab = model.config().vocab_size;
    tensors.insert(
        csplade::model::adapter::TERM_SHIFT.to_string(),
        candle_core::Tensor::zeros(vocab, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    csplade::model::adapter::Adapter { meta, tensors }
        .write(&file)
        .unwrap();
    let seed = std::fs::read(&file).unwrap();
    fuzz("adapter", &[seed], cases, |bytes| {
        if let Ok(a) = csplade::model::adapter::Adapter::from_bytes(bytes, Path::new("a")) {
            let _ = a.merge_into(&mut model.llama, Path::new("a"));
        }
    });
}

const CORPUS: &str = "{\"_id\": \"d1\", \"title\": \"Otters\", \"text\": \"otters swim in the river\"}\n{\"_id\": \"d2\", \"title\": \"\", \"text\": \"stones lie on the bank\"}\n{\"_id\": \"d3\", \"text\": \"heat\"}\n";
const QUERIES: &str =
    "{\"_id\": \"q1\", \"text\": \"otters river\"}\n{\"_id\": \"q2\", \"text\": \"bank stones\"}\n";
const QRELS: &str = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq2\td2\t1\nq2\td3\t0\n";

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn beir_corpus_and_queries(cases: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = [CORPUS.as_bytes().to_vec(), QUERIES.as_bytes().to_vec()];
    fuzz("beir-jsonl", &plain, cases, |bytes| {
        std::fs::write(d.join("corpus.jsonl"), bytes).unwrap();
        std::fs::write(d.join("queries.jsonl"), bytes).unwrap();
        let _ = beir::read_corpus(d);
        let _ = beir::read_queries(d);
    });
    // Compressed: mutations of the gzip stream and of the text inside it.
    let gzd = tempfile::tempdir().unwrap();
    let g = gzd.path();
    let seeds = [gz(CORPUS.as_bytes()), gz(QUERIES.as_bytes())];
    let mut rng = Rng(SplitMix::new(77));
    fuzz("beir-jsonl-gz", &seeds, cases, |bytes| {
        let inner = if rng.below(2) == 0 {
            bytes.to_vec()
        } else {
            gz(&mutate(CORPUS.as_bytes(), &mut rng))
        };
        std::fs::write(g.join("corpus.jsonl.gz"), &inner).unwrap();
        std::fs::write(g.join("queries.jsonl.gz"), &inner).unwrap();
        let _ = beir::read_corpus(g);
        let _ = beir::read_queries(g);
    });
}

fn qrels(cases: usize) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("qrels")).unwrap();
    let file = dir.path().join("qrels/test.tsv");
    fuzz("qrels", &[QRELS.as_bytes().to_vec()], cases, |bytes| {
        std::fs::write(&file, bytes).unwrap();
        if let Ok(q) = beir::read_qrels_file(dir.path(), "test") {
            let known = ["q1", "q2"].into_iter().collect();
            let _ = q.unknown_queries(&known);
        }
    });
}

fn toml_files(cases: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    #[cfg(feature = "explorer")]
    {
        let keymap = std::fs::read(root.join("assets/keymap.toml")).unwrap();
        fuzz("keymap-toml", &[keymap], cases, |bytes| {
            let _ = csplade::tui::keymap::Keymap::parse(&String::from_utf8_lossy(bytes));
        });
        let theme = std::fs::read(root.join("themes/dark.toml")).unwrap();
        fuzz("theme-toml", &[theme], cases, |bytes| {
            let _ = csplade::tui::theme::Theme::dark().overlay(&String::from_utf8_lossy(bytes));
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    let recipes = ["csplade-gpu.toml", "csplade-echo-2.toml"]
        .map(|r| std::fs::read(root.join("assets/recipes").join(r)).unwrap());
    fuzz("recipe-toml", &recipes, cases, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let _ = csplade::train::TrainConfig::load(Some(&path), &[]);
    });
}

fn index_files(cases: usize) {
    use csplade::encode::SparseVec;
    use csplade::index::vectors;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vs = vec![
        SparseVec::from_pairs(vec![(3, 1.5), (10, 0.25), (400, 2.0)]),
        SparseVec::default(),
        SparseVec::from_pairs(vec![(7, 0.5)]),
    ];
    vectors::write(&d.join("v.bin"), &vs).unwrap();
    let seed = std::fs::read(d.join("v.bin")).unwrap();
    let file = d.join("x.bin");
    fuzz("vectors-bin", &[seed], cases, |bytes| {
        std::fs::write(&file, bytes).unwrap();
        let _ = vectors::read(&file);
    });
    let passages: Vec<(usize, SparseVec)> = vec![(0, vs[0].clone()), (2, vs[2].clone())];
    csplade::index::passages::write(&d.join("p.bin"), &passages).unwrap();
    let seed = std::fs::read(d.join("p.bin")).unwrap();
    fuzz("passages-bin", &[seed], cases, |bytes| {
        std::fs::write(&file, bytes).unwrap();
        let _ = csplade::index::passages::read(&file, 3, 49_152);
    });
    let mut journal = Vec::new();
    for (i, v) in vs.iter().enumerate().rev() {
        vectors::encode_journal_entry(i, v, &mut journal);
    }
    fuzz("journal", &[journal], cases, |bytes| {
        let _ = csplade::index::journal::read_journal(bytes, 3, Path::new("journal.bin"));
    });
    let meta = index_meta();
    let seed = serde_json::to_vec_pretty(&meta).unwrap();
    assert!(csplade::index::IndexMeta::read(&{
        std::fs::write(d.join("meta.json"), &seed).unwrap();
        d.to_path_buf()
    })
    .is_ok());
    let mut with_passages = meta.clone();
    with_passages["passages"] = serde_json::json!({"words": 80, "stride": 60, "from": 70});
    let seeds = [seed, serde_json::to_vec_pretty(&with_passages).unwrap()];
    fuzz("meta-json", &seeds, cases, |bytes| {
        std::fs::write(d.join("meta.json"), bytes).unwrap();
        let _ = csplade::index::IndexMeta::read(d);
    });
}

/// A build in progress as the explorer reads it: `progress.json` (mutated)
/// beside a valid journal, and the journal (mutated) beside a valid record.
fn build_in_progress(cases: usize) {
    use csplade::encode::SparseVec;
    use csplade::index::{build, vectors};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let stage = build::staging_dir(&out);
    std::fs::create_dir_all(&stage).unwrap();
    let mut journal = Vec::new();
    for (i, v) in [
        SparseVec::from_pairs(vec![(3, 1.5), (10, 0.25)]),
        SparseVec::from_pairs(vec![(7, 0.5)]),
    ]
    .iter()
    .enumerate()
    {
        journal.extend_from_slice(&(i as u32).to_le_bytes());
        vectors::encode_record(v, &mut journal);
    }
    std::fs::write(stage.join("journal.bin"), &journal).unwrap();
    let progress = serde_json::json!({
        "settings": "{\"corpus\":\"ab\",\"max_len\":128}", "done": 2,
        "bytes": journal.len(), "tokens": 40, "seconds": 1.5
    });
    let seed = serde_json::to_vec(&progress).unwrap();
    std::fs::write(stage.join("progress.json"), &seed).unwrap();
    assert_eq!(
        csplade::index::journal::read_partial(&out).unwrap().len(),
        2,
        "the seed build reads back"
    );
    // A record that claims far more documents than its journal holds (a
    // reservation sized by it aborted the process before).
    let claims_too_much = serde_json::to_vec(&serde_json::json!({
        "settings": "x", "done": 1_000_000_000_000_000u64, "bytes": journal.len(),
        "tokens": 40, "seconds": 1.5
    }))
    .unwrap();
    std::fs::write(stage.join("progress.json"), &claims_too_much).unwrap();
    assert_eq!(
        csplade::index::journal::read_partial(&out).unwrap().len(),
        2
    );
    fuzz(
        "progress-json",
        &[seed.clone(), claims_too_much],
        cases,
        |bytes| {
            std::fs::write(stage.join("progress.json"), bytes).unwrap();
            let _ = csplade::index::journal::read_partial(&out);
        },
    );
    std::fs::write(stage.join("progress.json"), &seed).unwrap();
    fuzz("partial-journal", &[journal], cases, |bytes| {
        std::fs::write(stage.join("journal.bin"), bytes).unwrap();
        let _ = csplade::index::journal::read_partial(&out);
    });
}

/// The JSON progress lines a background task's child prints.
fn task_progress_lines(cases: usize) {
    let seeds: Vec<Vec<u8>> = [
        r#"{"event":"progress","done":3,"total":10,"tokens_per_s":512.5,"eta_s":12.0}"#,
        r#"{"event":"step","step":4,"loss":1.25}"#,
        r#"{"event":"done"}"#,
    ]
    .iter()
    .map(|l| l.as_bytes().to_vec())
    .collect();
    fuzz("task-progress-line", &seeds, cases, |bytes| {
        let _ = csplade::tasks::parse_line(1, &String::from_utf8_lossy(bytes));
    });
}

fn batches_file(cases: usize) {
    use csplade::train::batches;
    use csplade::train::data::MicroBatch;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(batches::FILE);
    let mb = MicroBatch {
        queries: vec![vec![1, 2], vec![3]],
        positives: vec![vec![4, 5, 6], vec![7]],
        negatives: vec![vec![vec![8]], vec![vec![9, 10]]],
    };
    batches::write(&path, "k", &[mb.clone(), mb], 49_152).unwrap();
    let seed = std::fs::read(&path).unwrap();
    fuzz("batches-gz", &[seed], cases, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let _ = batches::read(&path, "k", 2);
    });
}

/// A valid `meta.json` of a three-document index.
fn index_meta() -> serde_json::Value {
    serde_json::json!({
        "format_version": 1, "model": {"id": "m", "sha256": "ab"}, "variant": "echo",
        "head": {"kind": "log_prob", "shift": 5.0}, "precision": "f32", "max_len": 256,
        "vocab_size": 49152, "scale": 100.0, "doc_top_k": 0, "documents": 3,
        "corpus": "/c", "corpus_fingerprint": "ff", "built_at": 1, "build_seconds": 1.0,
        "encoded_tokens": 10
    })
}

fn seismic_cache(cases: usize) {
    use csplade::encode::SparseVec;
    use csplade::search::seismic::{CacheKey, SeismicBuild, SeismicIndex};
    let vs: Vec<SparseVec> = (0..40u32)
        .map(|d| {
            SparseVec::from_pairs(
                (0..5)
                    .map(|t| ((d * 7 + t * 13) % 90, 1.0 + t as f32))
                    .collect(),
            )
        })
        .collect();
    let build = SeismicBuild::default();
    let key = CacheKey {
        documents: 40,
        vocab: 90,
        vectors_bytes: 1,
        built_at: 2,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seismic.bin");
    SeismicIndex::build(&vs, 90, build)
        .save(&path, key)
        .unwrap();
    let seed = std::fs::read(&path).unwrap();
    // The checksum would refuse almost every mutation before the structure
    // is read: mutations are also resealed, so the structure checks run.
    let mut n = 0usize;
    fuzz("seismic-bin", &[seed], cases, |bytes| {
        let mut b = bytes.to_vec();
        n += 1;
        if b.len() > 32 && n.is_multiple_of(2) {
            use sha2::Digest;
            let n = b.len() - 32;
            let sum = sha2::Sha256::digest(&b[..n]);
            b[n..].copy_from_slice(&sum);
        }
        std::fs::write(&path, &b).unwrap();
        let _ = SeismicIndex::load(&path, key, build);
    });
}

fn shard_json(cases: usize) {
    let dir = tempfile::tempdir().unwrap();
    let meta = index_meta();
    let shard = serde_json::json!({"shard": 1, "of": 3, "commit_every": 8,
        "settings": "{}", "documents": 2, "index": meta, "journal_crc": 7});
    let seed = serde_json::to_vec_pretty(&shard).unwrap();
    std::fs::write(dir.path().join("shard.json"), &seed).unwrap();
    csplade::index::shard::read_shard(dir.path()).expect("the seed is a valid shard record");
    fuzz("shard-json", &[seed], cases, |bytes| {
        std::fs::write(dir.path().join("shard.json"), bytes).unwrap();
        let _ = csplade::index::shard::read_shard(dir.path());
    });
}

fn man_page_roff(cases: usize) {
    let seeds = [
        ".\\\" comment\n.TH CP \"1\"\n.SH NAME\ncp \\- copy files\n.SH SYNOPSIS\n.B cp\n[\\fI\\,OPTION\\/\\fR]... \\fISOURCE DEST\\fR\n.SH DESCRIPTION\n.TP\n\\fB\\-a\\fR, \\fB\\-\\-archive\\fR\nsame as \\(aq\\-dR\\(aq\n.if n \\{\\\nshown\n.\\}\n",
        ".Dd May 1\n.Dt LS 1\n.Sh NAME\n.Nm ls\n.Nd list directory contents\n.Sh DESCRIPTION\n.Bl -tag\n.It Fl l\nlong, see\n.Xr stat 2 .\n.El\n",
    ];
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    fuzz("man-roff", &seeds, cases, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let _ = csplade::data::manpages::parse_page("x.1", &text);
    });
}

parser_tests! {
    gguf_header_tensor_table_and_tokenizer => gguf,
    safetensors_adapters => adapter,
    beir_corpus_and_queries_plain_and_gz => beir_corpus_and_queries,
    qrels_files => qrels,
    keymap_theme_and_recipe_toml => toml_files,
    index_vectors_journal_and_meta => index_files,
    training_batches_files => batches_file,
    build_in_progress_progress_and_journal => build_in_progress,
    background_task_progress_lines => task_progress_lines,
    seismic_cache_file => seismic_cache,
    shard_records => shard_json,
    man_page_roff_sources => man_page_roff,
}
