//! csplade against an outside reference: expansions of five texts (causal
//! and Echo, log-probability and raw heads, top 200 terms) computed from the
//! same GGUF by gguf-py and a NumPy port of Hugging Face's Llama
//! (tests/reference/make_reference.py, which documents how to rerun it).
//! Needs the real base model (fetched with pip on first use).

mod common;

use csplade::encode::{Encoder, EncoderConfig, Head, Variant};

#[test]
fn expansions_match_the_numpy_reference_to_1e_3() {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("reference/smollm2_expansions.json")).unwrap();
    let m = common::base_model();
    let vocab = m.config().vocab_size;
    let mut compared = 0;
    for entry in reference["texts"].as_array().unwrap() {
        let text = entry["text"].as_str().unwrap();
        let ids: Vec<u32> = entry["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(m.tokenizer.encode(text).unwrap(), ids, "tokens of {text:?}");
        for (variant, key) in [(Variant::Causal, "causal"), (Variant::Echo, "echo")] {
            for (head, hkey) in [
                (Head::LogProb { shift: 6.0 }, "logprob:6"),
                (Head::RawLogits, "raw"),
            ] {
                let enc = Encoder::new(
                    m,
                    EncoderConfig {
                        variant,
                        head,
                        max_len: 256,
                        batch_size: 1,
                        windows: 1,
                    },
                );
                let got = enc.encode_ids(std::slice::from_ref(&ids)).unwrap()[0].to_dense(vocab);
                let want = entry[key][hkey].as_array().unwrap();
                assert!(
                    want.len() > 20,
                    "{text:?} {key} {hkey}: a vacuous reference"
                );
                let mut worst = 0f32;
                for term in want {
                    let (id, w) = (
                        term[0].as_u64().unwrap() as usize,
                        term[1].as_f64().unwrap() as f32,
                    );
                    worst = worst.max((got[id] - w).abs());
                }
                assert!(worst < 1e-3, "{text:?} {key} {hkey}: off by {worst}");
                // csplade's own heaviest terms are the reference's (ties at
                // the cut-off aside).
                let smallest = want.last().unwrap()[1].as_f64().unwrap() as f32;
                let listed: std::collections::HashSet<usize> = want
                    .iter()
                    .map(|t| t[0].as_u64().unwrap() as usize)
                    .collect();
                for (id, &w) in got.iter().enumerate() {
                    if w > smallest + 1e-3 {
                        assert!(
                            listed.contains(&id),
                            "{text:?} {key} {hkey}: term {id} ({w}) not in the reference"
                        );
                    }
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 5 * 2 * 2);
}
