//! PEFT LoRA adapters: csplade's adapters written in peft's layout and read
//! back, onto a GGUF base (Q/K rows permuted for interleaved RoPE) and onto
//! the same model in Hugging Face's layout — both must give the logits of
//! csplade's own adapter file.

use candle_core::{Device, Tensor};
use csplade::model::{self, adapter, AttentionMask, LoadedModel};

mod common;

fn logits(m: &LoadedModel, text: &str) -> Vec<f32> {
    let ids = m.tokenizer.encode(text).unwrap();
    let t = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    m.llama
        .forward(&t, &[ids.len()], AttentionMask::Causal)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn peft_export_reads_back_onto_gguf_and_hf_bases_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    model::tiny::write_tiny_model(d, 12).unwrap();
    let file = common::lora_adapter(d);
    let gguf = d.join("tiny.gguf");
    let base = model::load_unpacked(gguf.to_str().unwrap(), &Device::Cpu).unwrap();
    let mut a = adapter::Adapter::read(&file).unwrap();
    // The prior, feedback and passage split it is used with travel too.
    a.meta.query_prior = "idf:0.5".parse().unwrap();
    a.meta.query_feedback = "rocchio:2:0.5:10".parse().unwrap();
    a.meta.passages = Some("80:60:70".parse().unwrap());
    let peft_dir = d.join("peft");
    model::peft::write(&a, &base.llama.config, "tiny", &peft_dir).unwrap();
    assert!(model::peft::is_peft_dir(&peft_dir));
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(peft_dir.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (config["r"].as_u64(), config["lora_alpha"].as_f64()),
        (Some(3), Some(6.0))
    );
    assert_eq!(config["peft_type"], "LORA");
    let names =
        candle_core::safetensors::load(peft_dir.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(names.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert!(names.contains_key("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    // How csplade's adapter encodes comes back from csplade_encoding.json.
    let (back, _) = model::peft::read(&peft_dir, &base.llama.config).unwrap();
    assert_eq!(back.meta.variant, csplade::encode::Variant::Echo);
    assert_eq!(
        back.meta.head,
        csplade::encode::Head::LogProb { shift: 5.0 }
    );
    assert_eq!(
        (back.meta.max_len, back.meta.trained.as_str()),
        (64, "test")
    );
    let searched = |m: &adapter::AdapterMeta| (m.query_prior, m.query_feedback, m.passages);
    assert_eq!(searched(&back.meta), searched(&a.meta));
    let text = "rotary positions matter here";
    let own = model::load_unpacked(
        &format!("{}+{}", gguf.display(), file.display()),
        &Device::Cpu,
    )
    .unwrap();
    let via_peft = model::load_unpacked(
        &format!("{}+{}", gguf.display(), peft_dir.display()),
        &Device::Cpu,
    )
    .unwrap();
    let hf = model::load_unpacked(
        &format!("{}+{}", d.join("hf").display(), peft_dir.display()),
        &Device::Cpu,
    )
    .unwrap();
    let plain = logits(&base, text);
    let (x, y, z) = (
        logits(&own, text),
        logits(&via_peft, text),
        logits(&hf, text),
    );
    assert!(
        max_diff(&plain, &x) > 1e-2,
        "the adapter changes nothing: the check is vacuous"
    );
    assert!(
        max_diff(&x, &y) < 1e-5,
        "GGUF base: PEFT vs csplade adapter differ by {}",
        max_diff(&x, &y)
    );
    assert!(
        max_diff(&x, &z) < 1e-4,
        "HF base: PEFT vs csplade adapter differ by {}",
        max_diff(&x, &z)
    );
    // Without the Q/K row permutation the GGUF base would be wrong.
    assert_ne!(via_peft.identity.sha256, own.identity.sha256);
}

#[test]
fn unsupported_peft_adapters_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    model::tiny::write_tiny_model(d, 12).unwrap();
    let file = common::lora_adapter(d);
    let gguf = d.join("tiny.gguf");
    let base = model::load_unpacked(gguf.to_str().unwrap(), &Device::Cpu).unwrap();
    let peft_dir = d.join("peft");
    model::peft::write(
        &adapter::Adapter::read(&file).unwrap(),
        &base.llama.config,
        "tiny",
        &peft_dir,
    )
    .unwrap();
    let cfg = peft_dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    for (key, value) in [
        ("use_dora", "true"),
        ("peft_type", "\"IA3\""),
        ("bias", "\"all\""),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        std::fs::write(&cfg, v.to_string()).unwrap();
        let e = model::load_unpacked(
            &format!("{}+{}", gguf.display(), peft_dir.display()),
            &Device::Cpu,
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("adapter_config.json"), "{key}: {e}");
    }
    // A directory that is not an adapter says what it should hold.
    let e = model::load_unpacked(&format!("{}+{}", gguf.display(), d.display()), &Device::Cpu)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("adapter_config.json"), "{e}");
}
