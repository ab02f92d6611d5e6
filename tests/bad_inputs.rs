//! Bad input through the real binary: every case ends in one clear error
//! (or a notice), never a panic, a silent zero, or a library backtrace.

use std::path::Path;
use std::process::{Command, Output};

mod common;

fn csplade(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(args)
        .env("CSPLADE_HOME", home)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn out_of_range_numbers_are_refused_by_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let extremes = [
        "0",
        "-1",
        "18446744073709551615",
        "1e30",
        "NaN",
        "inf",
        "1000000000000",
    ];
    for x in extremes {
        for (args, flag) in [
            (vec!["search", "--index", d, "q"], "--k"),
            (vec!["eval", "--dataset", d], "--depth"),
            (vec!["encode", "text"], "--max-len"),
            (vec!["encode", "text"], "--batch"),
            (vec!["index", "--corpus", d, "--out", d], "--commit-every"),
            (vec!["bench", "seismic", "--index", d], "--synthetic"),
            (vec!["train", "contrastive", "--out", d], "--steps"),
        ] {
            let value = format!("{flag}={x}");
            let args: Vec<&str> = args.into_iter().chain([value.as_str()]).collect();
            let o = csplade(&args, dir.path());
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            let e = stderr(&o);
            assert!(
                e.contains("must be a whole number from 1 to"),
                "{args:?}: {e}"
            );
        }
    }
    for x in ["0", "1e-30", "1e30", "NaN", "-inf", "0.5", "1001"] {
        let scale = format!("--scale={x}");
        let args = ["index", "--corpus", d, "--out", d, &scale];
        let o = csplade(&args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("must be a number from 1 to 1000"),
            "{args:?}"
        );
    }
}

#[test]
fn training_refuses_non_finite_settings_and_an_empty_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    for (set, name) in [
        ("lr=nan", "lr"),
        ("lambda_q=inf", "lambda_q"),
        ("grad_clip=-1", "grad_clip"),
    ] {
        let o = csplade(
            &["train", "contrastive", "--out", out, "--set", set],
            dir.path(),
        );
        assert!(!o.status.success(), "{set} accepted");
        assert!(stderr(&o).contains(name), "{set}: {}", stderr(&o));
    }
    let o = csplade(
        &["train", "contrastive", "--out", out, "--resume"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no checkpoint"), "{}", stderr(&o));
    assert!(!Path::new(out).exists(), "a refused run wrote {out}");
}

/// Overwrite every tensor byte of a tiny GGUF with noise, keeping its header.
fn noisy_gguf(dir: &Path) -> std::path::PathBuf {
    csplade::model::tiny::write_tiny_model(dir, 9).unwrap();
    let path = dir.join("tiny.gguf");
    let mut f = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let start = content.tensor_data_offset as usize;
    let mut rng = csplade::model::tiny::SplitMix::new(4);
    for b in &mut bytes[start..] {
        *b = (rng.next_u64() & 0xff) as u8;
    }
    let noisy = dir.join("noisy.gguf");
    std::fs::write(&noisy, bytes).unwrap();
    noisy
}

#[test]
fn a_gguf_of_random_tensor_data_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let noisy = noisy_gguf(dir.path());
    let o = csplade(
        &["encode", "--model", noisy.to_str().unwrap(), "hello"],
        dir.path(),
    );
    assert!(!o.status.success(), "random weights were accepted");
    assert!(stderr(&o).contains("probe text"), "{}", stderr(&o));
    // The intact model is accepted: the probe does not refuse sound models.
    let tiny = dir.path().join("tiny.gguf");
    let o = csplade(
        &["encode", "--model", tiny.to_str().unwrap(), "hello"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_diverged_adapter_is_refused_at_load() {
    use csplade::model::adapter::Adapter;
    let dir = tempfile::tempdir().unwrap();
    csplade::model::tiny::write_tiny_model(dir.path(), 9).unwrap();
    let tiny = dir.path().join("tiny.gguf");
    let mut m =
        csplade::model::load_unpacked(tiny.to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
    let targets = vec!["q_proj".to_string(), "down_proj".to_string()];
    let vars = csplade::model::adapter::attach_low_rank(&mut m.llama, 2, 4.0, &targets, 1).unwrap();
    let tensors = vars
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                (v.as_tensor().ones_like().unwrap() * f64::NAN).unwrap(),
            )
        })
        .collect();
    let meta = common::tiny_adapter_meta("diverged");
    let file = dir.path().join("nan.safetensors");
    Adapter { meta, tensors }.write(&file).unwrap();
    let spec = format!("{}+{}", tiny.display(), file.display());
    let o = csplade(&["encode", "--model", &spec, "hello"], dir.path());
    assert!(!o.status.success(), "a NaN adapter was accepted");
    assert!(stderr(&o).contains("adapter diverged"), "{}", stderr(&o));
}

#[test]
fn errors_print_once_and_without_backtraces() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    std::fs::create_dir_all(&ds).unwrap();
    std::fs::write(
        ds.join("corpus.jsonl"),
        "{\"_id\": \"a\", \"text\": \"x\"}\n{bad\n",
    )
    .unwrap();
    csplade::model::tiny::write_tiny_model(dir.path(), 9).unwrap();
    let tiny = dir.path().join("tiny.gguf");
    let out = dir.path().join("idx");
    let o = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(["index", "--model", tiny.to_str().unwrap(), "--corpus"])
        .arg(&ds)
        .arg("--out")
        .arg(&out)
        .env("CSPLADE_HOME", dir.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(
        e.matches("corpus.jsonl:2: malformed JSON record").count(),
        1,
        "{e}"
    );
    let truncated = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&tiny).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(["encode", "--model", truncated.to_str().unwrap(), "x"])
        .env("CSPLADE_HOME", dir.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(e.trim().lines().count(), 1, "one line, no backtrace: {e}");
    assert!(e.contains("cut.gguf"), "{e}");
}

#[test]
fn search_says_when_a_query_is_cut_to_the_indexs_length() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    std::fs::create_dir_all(&ds).unwrap();
    std::fs::write(
        ds.join("corpus.jsonl"),
        "{\"_id\": \"a\", \"text\": \"the otter\"}\n{\"_id\": \"b\", \"text\": \"a stone\"}\n",
    )
    .unwrap();
    csplade::model::tiny::write_tiny_model(dir.path(), 9).unwrap();
    let tiny = dir.path().join("tiny.gguf");
    let idx = dir.path().join("idx");
    let (t, i, d) = (
        tiny.to_str().unwrap(),
        idx.to_str().unwrap(),
        ds.to_str().unwrap(),
    );
    let o = csplade(
        &[
            "index",
            "--model",
            t,
            "--corpus",
            d,
            "--out",
            i,
            "--max-len",
            "8",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let long = "otter ".repeat(200);
    let o = csplade(&["search", "--model", t, "--index", i, &long], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("query truncated to 8 tokens"),
        "{}",
        stderr(&o)
    );
}

/// `quantize` names the input it cannot read, not the output it would write
/// (the default model and `BASE+ADAPTER` are written: tests/quant.rs).
#[test]
fn quantize_says_which_model_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.gguf");
    let o = out.to_str().unwrap();
    csplade::model::tiny::write_tiny_model(dir.path(), 9).unwrap();
    let adapter_missing = format!(
        "{}+missing.safetensors",
        dir.path().join("tiny.gguf").display()
    );
    for (model, says) in [
        ("m.gguf+a.safetensors", "m.gguf does not exist"),
        ("/no/such/model.gguf", "does not exist"),
        (adapter_missing.as_str(), "missing.safetensors"),
    ] {
        let r = csplade(
            &[
                "quantize",
                "--model",
                model,
                "--precision",
                "q8_0",
                "--out",
                o,
            ],
            dir.path(),
        );
        assert_eq!(r.status.code(), Some(1), "{model}");
        let e = stderr(&r);
        assert!(e.contains(says) && e.contains(model), "{model}: {e}");
        assert!(!out.exists());
    }
}

/// A model directory whose config.json or tokenizer.json cannot describe a
/// model is refused naming the file and what is wrong, before anything
/// divides by a head count or encodes through a broken template.
#[test]
fn impossible_model_configs_and_tokenizers_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    csplade::model::tiny::write_tiny_model(dir.path(), 9).unwrap();
    let hf = dir.path().join("hf");
    let config = std::fs::read_to_string(hf.join("config.json")).unwrap();
    let tokenizer = std::fs::read_to_string(hf.join("tokenizer.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&config).unwrap();
    for (key, value, says) in [
        (
            "num_attention_heads",
            0,
            "num_attention_heads 0: must be from 1",
        ),
        ("num_key_value_heads", 3, "cannot share 3 key/value heads"),
        ("hidden_size", 30, "each head needs an even whole size"),
    ] {
        let mut bad = json.clone();
        bad[key] = value.into();
        std::fs::write(hf.join("config.json"), bad.to_string()).unwrap();
        let r = csplade(
            &["encode", "--model", hf.to_str().unwrap(), "otter"],
            dir.path(),
        );
        assert_eq!(r.status.code(), Some(1), "{key} {value}");
        let e = stderr(&r);
        assert!(e.contains("config.json") && e.contains(says), "{key}: {e}");
    }
    std::fs::write(hf.join("config.json"), config).unwrap();
    // A template that places a special token the tokenizer does not define.
    let mut tk: serde_json::Value = serde_json::from_str(&tokenizer).unwrap();
    tk["post_processor"] = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [], "special_tokens": {}
    });
    std::fs::write(hf.join("tokenizer.json"), tk.to_string()).unwrap();
    let r = csplade(
        &["encode", "--model", hf.to_str().unwrap(), "otter"],
        dir.path(),
    );
    assert_eq!(r.status.code(), Some(1));
    let e = stderr(&r);
    assert!(
        e.contains("tokenizer.json") && e.contains("\"[CLS]\""),
        "{e}"
    );
}
