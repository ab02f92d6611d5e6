//! Fuzzing of what csplade reads models, adapters and run state from (the
//! harness: tests/common/fuzz.rs): HF model directories, causal and masked
//! (`config.json`, `tokenizer.json`, the safetensors header and data, a
//! sentence-transformers layout's module files), PEFT adapter
//! directories, training checkpoints as `--resume` restores them, CIFF
//! files and the explorer's `config.toml`. Each case mutates one file of a
//! valid seed that csplade wrote, and reads the whole directory back.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use csplade::model::tiny::SplitMix;

mod common;
use common::fuzz::{fuzz, mutate, parser_tests, Rng};

/// A directory of seed files, each case mutating one of them (the others
/// kept as written) before `read` opens the directory. Case N mutates
/// `files[N % files.len()]`: a kept failure input is that file.
fn fuzz_directory(
    name: &'static str,
    seed_dir: &Path,
    files: &[&str],
    cases: usize,
    mut read: impl FnMut(&Path),
) {
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(seed_dir.join(f)).unwrap())
        .collect();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    for (f, bytes) in files.iter().zip(&seeds) {
        if let Some(parent) = dir.join(f).parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(dir.join(f), bytes).unwrap();
    }
    // The harness mutates one seed per case, taken in turn: the case's file
    // is the one whose seed it started from.
    let mut case = 0usize;
    fuzz(name, &seeds, cases, |bytes| {
        let which = case % files.len();
        case += 1;
        std::fs::write(dir.join(files[which]), bytes).unwrap();
        read(dir);
        std::fs::write(dir.join(files[which]), &seeds[which]).unwrap();
    });
}

fn hf_model_directory(cases: usize) {
    let m = tempfile::tempdir().unwrap();
    csplade::model::tiny::write_tiny_model(m.path(), 5).unwrap();
    let files = ["config.json", "tokenizer.json", "model.safetensors"];
    fuzz_directory("hf-model-dir", &m.path().join("hf"), &files, cases, |dir| {
        if let Ok(model) = csplade::model::load(dir.to_str().unwrap(), &Device::Cpu) {
            let _ = model.tokenizer.encode("the otter");
        }
    });
}

/// A SPLADE checkpoint as sentence-transformers writes it (the BERT fixture
/// of tests/families.rs), opened by family detection.
fn masked_lm_directory(cases: usize) {
    let seed = common::bert_splade();
    let files = [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "1_SpladePooling/config.json",
    ];
    fuzz_directory("masked-lm-dir", &seed, &files, cases, |dir| {
        let family = csplade::model::Family::Auto;
        let precision = csplade::quant::Precision::F32;
        let spec = dir.to_str().unwrap();
        if let Ok(m) = csplade::model::family::open(spec, &Device::Cpu, precision, false, family) {
            let _ = csplade::encode::Encoder::new(&m, Default::default()).encode_one("the otter");
        }
    });
}

fn peft_directory(cases: usize) {
    let m = tempfile::tempdir().unwrap();
    let d = m.path();
    csplade::model::tiny::write_tiny_model(d, 12).unwrap();
    let file = common::lora_adapter(d);
    let gguf = d.join("tiny.gguf");
    let base = csplade::model::load_unpacked(gguf.to_str().unwrap(), &Device::Cpu).unwrap();
    let adapter = csplade::model::adapter::Adapter::read(&file).unwrap();
    let peft = d.join("peft");
    csplade::model::peft::write(&adapter, &base.llama.config, "tiny", &peft).unwrap();
    let files = [
        "adapter_config.json",
        "adapter_model.safetensors",
        "csplade_encoding.json",
    ];
    let mut target = csplade::model::load_unpacked(gguf.to_str().unwrap(), &Device::Cpu).unwrap();
    fuzz_directory("peft-dir", &peft, &files, cases, |dir| {
        if let Ok((a, _)) = csplade::model::peft::read(dir, &base.llama.config) {
            let _ = a.merge_into(&mut target.llama, dir);
        }
    });
}

/// Two parameters and AdamW after one step, saved as a checkpoint.
fn checkpoint_seed(out: &Path) -> Vec<(String, Var)> {
    use csplade::train::{checkpoint, optim::AdamW};
    let dev = Device::Cpu;
    let params = vec![
        (
            "w".to_string(),
            Var::new(&[[0.5f32, -1.0], [2.0, 0.25]], &dev).unwrap(),
        ),
        (
            "b".to_string(),
            Var::new(&[0.1f32, 0.2, 0.3], &dev).unwrap(),
        ),
    ];
    let mut opt = AdamW::new(&params, 0.01).unwrap();
    let grads: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.as_tensor().ones_like().unwrap())
        .collect();
    opt.step(&params, &grads, &[1e-3, 1e-3]).unwrap();
    let state = checkpoint::RunState {
        phase: "contrastive".into(),
        step: 1,
        tokens_seen: 64,
        elapsed_s: 1.5,
        config: csplade::train::TrainConfig::default(),
        inputs: [("init_adapter".to_string(), "0".repeat(64))].into(),
    };
    checkpoint::save(out, &params, &opt, &state).unwrap();
    params
}

/// `state.json` with the checksum of the tensors file as it is now, so a
/// mutated tensors file is parsed, not only refused by its checksum.
fn recheck(dir: &Path) {
    let tensors = csplade::model::fetch::sha256_file(&dir.join("state.safetensors")).unwrap();
    let path = dir.join("state.json");
    let text = std::fs::read(&path).unwrap();
    if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&text) {
        if json.is_object() {
            json["tensors_sha256"] = tensors.into();
            std::fs::write(&path, json.to_string()).unwrap();
        }
    }
}

fn training_checkpoint(cases: usize) {
    use csplade::train::{checkpoint, optim::AdamW};
    let out = tempfile::tempdir().unwrap();
    let params = checkpoint_seed(out.path());
    let seed_dir = checkpoint::dir(out.path());
    let mut rng = Rng(SplitMix::new(91));
    let files = ["state.json", "state.safetensors"];
    fuzz_directory("checkpoint", &seed_dir, &files, cases, |dir| {
        // Half the cases carry a checksum that matches the mutated tensors.
        if rng.below(2) == 0 {
            recheck(dir);
        }
        let mut opt = AdamW::new(&params, 0.01).unwrap();
        let _ = checkpoint::restore(dir, &params, &mut opt);
    });
}

fn ciff_file(cases: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::index::write_corpus(&d.join("ds"), 30);
    let m = common::index::tiny_model(d, 6);
    let opts = common::build_options(&d.join("ds"), &d.join("idx"));
    let enc = csplade::encode::Encoder::new(&m, common::index::config());
    csplade::index::build(&enc, &opts, |_| {}).unwrap();
    let idx = csplade::search::LsrIndex::open(&d.join("idx")).unwrap();
    let seed_file = d.join("seed.ciff");
    let format = csplade::export::ExportFormat::Ciff;
    csplade::export::export(&idx, &m.tokenizer, format, &seed_file, "x").unwrap();
    let seed = std::fs::read(&seed_file).unwrap();
    let file: PathBuf = d.join("x.ciff");
    fuzz("ciff", &[seed], cases, |bytes| {
        std::fs::write(&file, bytes).unwrap();
        let _ = csplade::export::read_ciff(&file);
    });
}

#[cfg(feature = "explorer")]
fn explorer_config(cases: usize) {
    let seed = b"theme = \"light\"\ncompare_preset = \"families\"\nsecond_model = \"base\"\n";
    let mut rng = Rng(SplitMix::new(5));
    fuzz("explorer-config-toml", &[seed.to_vec()], cases, |bytes| {
        // Mutated bytes, and text mutated after decoding (the reader takes text).
        let text = String::from_utf8_lossy(bytes).into_owned();
        let again = mutate(text.as_bytes(), &mut rng);
        let _ = csplade::tui::Config::parse(&text);
        let _ = csplade::tui::Config::parse(&String::from_utf8_lossy(&again));
    });
}

#[cfg(not(feature = "explorer"))]
fn explorer_config(_cases: usize) {}

parser_tests! {
    hf_config_tokenizer_and_safetensors => hf_model_directory,
    masked_lm_config_tokenizer_and_safetensors => masked_lm_directory,
    peft_adapter_directories => peft_directory,
    training_checkpoints_on_resume => training_checkpoint,
    ciff_files => ciff_file,
    explorer_config_toml => explorer_config,
}
