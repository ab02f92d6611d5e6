//! Fast tests on tiny random-weight models written to disk in the test: GGUF
//! and HF loaders agree (RoPE pairing), masks, echo pooling, padding
//! invariance, GGUF round trip. No download.

use candle_core::{Device, Tensor};
use csplade::encode::{Encoder, EncoderConfig, Head, SparseVec, Variant};
use csplade::model::{self, AttentionMask, LoadedModel};

mod common;

fn tiny() -> (tempfile::TempDir, LoadedModel, LoadedModel) {
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 7).unwrap();
    let g = model::load(dir.path().join("tiny.gguf").to_str().unwrap(), &Device::Cpu).unwrap();
    let h = model::load(dir.path().join("hf").to_str().unwrap(), &Device::Cpu).unwrap();
    (dir, g, h)
}

fn logits(m: &LoadedModel, ids: &[u32], mask: AttentionMask) -> Vec<Vec<f32>> {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    m.llama
        .forward(&t, &[ids.len()], mask)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(a: &SparseVec, b: &SparseVec, tol: f32) {
    assert_eq!(a.ids, b.ids, "active sets differ");
    for (x, y) in a.weights.iter().zip(&b.weights) {
        assert!((x - y).abs() <= tol, "{x} vs {y}");
    }
}

#[test]
fn gguf_and_hf_loaders_agree_with_their_rope_layouts() {
    let (_d, g, h) = tiny();
    assert_eq!(g.config().rope_style, model::RopeStyle::Interleaved);
    assert_eq!(h.config().rope_style, model::RopeStyle::HalfRotation);
    let ids: Vec<u32> = g.tokenizer.encode("the thin otter ran on").unwrap();
    assert_eq!(ids, h.tokenizer.encode("the thin otter ran on").unwrap());
    let a = logits(&g, &ids, AttentionMask::Causal);
    let b = logits(&h, &ids, AttentionMask::Causal);
    assert!(
        max_diff(&a, &b) < 1e-4,
        "GGUF vs HF logits differ by {}",
        max_diff(&a, &b)
    );
    // That the other pairing changes the output: wrong_rope_pairing_changes_logits.
}

#[test]
fn wrong_rope_pairing_changes_logits() {
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 3).unwrap();
    let g = model::load(dir.path().join("tiny.gguf").to_str().unwrap(), &Device::Cpu).unwrap();
    let mut gg = model::gguf::GgufFile::open(&dir.path().join("tiny.gguf")).unwrap();
    let mut cfg = gg.llama_config().unwrap();
    cfg.rope_style = model::RopeStyle::HalfRotation;
    let tensors = gg.hf_tensors(&Device::Cpu).unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
    let wrong = model::Llama::load(vb, &cfg).unwrap();
    let ids: Vec<u32> = g.tokenizer.encode("rotary positions matter here").unwrap();
    let t = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let a: Vec<Vec<f32>> = g
        .llama
        .forward(&t, &[ids.len()], AttentionMask::Causal)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap();
    let b: Vec<Vec<f32>> = wrong
        .forward(&t, &[ids.len()], AttentionMask::Causal)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap();
    // Position 0 has no rotation; later positions must differ.
    assert!(max_diff(&a[..1], &b[..1]) < 1e-4);
    assert!(max_diff(&a[1..], &b[1..]) > 1e-3);
}

#[test]
fn causal_mask_hides_the_future_and_bi_does_not() {
    let (_d, g, _h) = tiny();
    let ids: Vec<u32> = g.tokenizer.encode("the other thing").unwrap();
    let mut changed = ids.clone();
    let last = changed.len() - 1;
    changed[last] = (changed[last] + 5) % 256;
    let n = ids.len();
    let c1 = logits(&g, &ids, AttentionMask::Causal);
    let c2 = logits(&g, &changed, AttentionMask::Causal);
    // Causal: earlier positions do not see the changed last token.
    assert!(max_diff(&c1[..n - 1], &c2[..n - 1]) < 1e-6);
    let b1 = logits(&g, &ids, AttentionMask::Bidirectional);
    let b2 = logits(&g, &changed, AttentionMask::Bidirectional);
    // Bi: position 0 sees the whole text.
    assert!(max_diff(&b1[..1], &b2[..1]) > 1e-4);
    // A one-token text has nothing to hide: both masks agree.
    let one = &ids[..1];
    assert!(
        max_diff(
            &logits(&g, one, AttentionMask::Causal),
            &logits(&g, one, AttentionMask::Bidirectional)
        ) < 1e-6
    );
}

fn dense_pool(m: &LoadedModel, ids: &[u32], from: usize, mask: AttentionMask) -> Vec<f32> {
    let l = logits(m, ids, mask);
    let v = l[0].len();
    (0..v)
        .map(|j| {
            let mx = l[from..]
                .iter()
                .map(|r| r[j])
                .fold(f32::NEG_INFINITY, f32::max);
            if mx > 0.0 {
                mx.ln_1p()
            } else {
                0.0
            }
        })
        .collect()
}

#[test]
fn every_variant_pools_the_right_positions() {
    let (_d, g, _h) = tiny();
    let text = "then the otter ran";
    let ids = g.tokenizer.encode(text).unwrap();
    for variant in [Variant::Causal, Variant::Echo, Variant::Bi] {
        let enc = Encoder::new(
            &g,
            EncoderConfig {
                variant,
                ..Default::default()
            },
        );
        let got = enc.encode_one(text).unwrap();
        assert_eq!(got.token_ids, ids);
        let expected = match variant {
            Variant::Causal => dense_pool(&g, &ids, 0, AttentionMask::Causal),
            Variant::Bi => dense_pool(&g, &ids, 0, AttentionMask::Bidirectional),
            Variant::Echo => {
                let twice: Vec<u32> = ids.iter().chain(ids.iter()).copied().collect();
                dense_pool(&g, &twice, ids.len(), AttentionMask::Causal)
            }
        };
        assert_close(&got.vector, &SparseVec::from_dense(&expected), 1e-4);
    }
    // Echo differs from pooling the whole doubled sequence.
    let enc = Encoder::new(
        &g,
        EncoderConfig {
            variant: Variant::Echo,
            ..Default::default()
        },
    );
    let twice: Vec<u32> = ids.iter().chain(ids.iter()).copied().collect();
    let all = SparseVec::from_dense(&dense_pool(&g, &twice, 0, AttentionMask::Causal));
    assert_ne!(enc.encode_one(text).unwrap().vector, all);
}

#[test]
fn a_text_alone_and_in_a_padded_batch_gives_the_same_vector() {
    let (_d, g, _h) = tiny();
    let texts = [
        "a",
        "the thin otter ran on the other bank",
        "inner",
        "on and on and on",
    ];
    for variant in [Variant::Causal, Variant::Echo, Variant::Bi] {
        for head in [Head::RawLogits, Head::LogProb { shift: 4.0 }] {
            let enc = Encoder::new(
                &g,
                EncoderConfig {
                    variant,
                    head,
                    batch_size: 4,
                    ..Default::default()
                },
            );
            let batch = enc.encode(&texts).unwrap();
            for (t, b) in texts.iter().zip(&batch) {
                let alone = enc.encode_one(t).unwrap();
                assert_close(&alone.vector, &b.vector, 1e-4);
            }
        }
    }
}

#[test]
fn empty_and_overlong_text() {
    let (_d, g, _h) = tiny();
    let enc = Encoder::new(
        &g,
        EncoderConfig {
            max_len: 5,
            ..Default::default()
        },
    );
    assert!(matches!(
        enc.encode_one("   "),
        Err(csplade::encode::EncodeError::EmptyText)
    ));
    let e = enc
        .encode_one("the other one then the other two and three")
        .unwrap();
    assert_eq!(e.token_ids.len(), 5);
    assert!(e.truncated_tokens > 0);
}

/// A text longer than `max_len` read as windows: its vector is the
/// term-wise maximum of its windows' vectors, each encoded as a text of its
/// own (echo repeats each window), and only what lies past the last window
/// is dropped.
#[test]
fn windows_pool_a_long_text_by_the_maximum_over_its_windows() {
    let (_d, g, _h) = tiny();
    let text = "the other one then the other two and three and the thin otter";
    let config = |windows| EncoderConfig {
        variant: Variant::Echo,
        head: Head::LogProb { shift: 2.0 },
        max_len: 4,
        batch_size: 3,
        windows,
    };
    let ids = g.tokenizer.encode(text).unwrap();
    assert!(ids.len() > 8, "the text must need more than two windows");
    let two = Encoder::new(&g, config(2)).encode_one(text).unwrap();
    assert_eq!(two.token_ids, ids[..8]);
    assert_eq!(two.truncated_tokens, ids.len() - 8);
    let one = Encoder::new(&g, config(1));
    let halves = one
        .encode_ids(&[ids[..4].to_vec(), ids[4..8].to_vec()])
        .unwrap();
    let mut want = vec![0f32; g.config().vocab_size];
    for v in &halves {
        for (id, w) in v.iter() {
            want[id as usize] = want[id as usize].max(w);
        }
    }
    assert!(halves[1].iter().any(|(id, w)| w > halves[0].get(id)));
    assert_close(&two.vector, &SparseVec::from_dense(&want), 1e-5);
    // One window is the truncated text, as before windows existed.
    let truncated = one.encode_one(text).unwrap();
    assert_eq!(truncated.token_ids, ids[..4]);
    assert_close(&truncated.vector, &halves[0], 1e-5);
}

#[test]
fn logprob_head_is_sparser_than_raw() {
    let (_d, g, _h) = tiny();
    let raw = Encoder::new(&g, EncoderConfig::default())
        .encode_one("the otter")
        .unwrap();
    let lp = Encoder::new(
        &g,
        EncoderConfig {
            head: Head::LogProb { shift: 2.0 },
            ..Default::default()
        },
    )
    .encode_one("the otter")
    .unwrap();
    assert!(lp.vector.active() > 0 && lp.vector.active() < raw.vector.active());
    // log_softmax ≤ 0, so every weight is at most log(1 + shift).
    assert!(lp.vector.weights.iter().all(|&w| w <= 3f32.ln() + 1e-5));
    // And each is the head's formula, from the model's own logits:
    // w_v = log(1 + ReLU(max over positions of log_softmax(logits)_v + 2)).
    let ids = g.tokenizer.encode("the otter").unwrap();
    let t = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits: Vec<Vec<f32>> = g
        .llama
        .forward(&t, &[ids.len()], AttentionMask::Causal)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap();
    let vocab = logits[0].len();
    let mut best = vec![f32::NEG_INFINITY; vocab];
    for row in &logits {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
        for (b, x) in best.iter_mut().zip(row) {
            *b = b.max(x - lse);
        }
    }
    for (v, b) in best.iter().enumerate() {
        let want = (1.0 + (b + 2.0).max(0.0)).ln();
        let got = lp.vector.get(v as u32);
        assert!((got - want).abs() < 1e-4, "term {v}: {got} vs {want}");
    }
}

#[test]
fn gguf_written_and_read_back_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 11).unwrap();
    let path = dir.path().join("tiny.gguf");
    let mut a = model::gguf::GgufFile::open(&path).unwrap();
    let cfg = a.llama_config().unwrap();
    let ta = a.hf_tensors(&Device::Cpu).unwrap();
    // Rewrite from what was read (back to HF layout first), then compare.
    let mut q = Vec::new();
    let mut names: Vec<&String> = ta.keys().collect();
    names.sort();
    for n in names {
        let hf = match n.as_str() {
            x if x.ends_with("q_proj.weight") => {
                model::gguf::unpermute_from_interleaved(&ta[n], cfg.num_attention_heads).unwrap()
            }
            x if x.ends_with("k_proj.weight") => {
                model::gguf::unpermute_from_interleaved(&ta[n], cfg.num_key_value_heads).unwrap()
            }
            _ => ta[n].clone(),
        };
        let g = model::gguf::to_gguf_layout(n, &hf, &cfg).unwrap();
        q.push((
            n.clone(),
            candle_core::quantized::QTensor::quantize(&g, candle_core::quantized::GgmlDType::F32)
                .unwrap(),
        ));
    }
    let (tokens, merges, types) = model::tiny::tiny_vocab();
    let out = dir.path().join("again.gguf");
    model::gguf::write_llama(
        &out,
        &cfg,
        &model::tiny::tokenizer_metadata(&tokens, &merges, &types),
        &q,
        &[],
    )
    .unwrap();
    let mut b = model::gguf::GgufFile::open(&out).unwrap();
    assert_eq!(b.llama_config().unwrap(), cfg);
    let tb = b.hf_tensors(&Device::Cpu).unwrap();
    assert_eq!(ta.len(), tb.len());
    for (k, v) in &ta {
        let x: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = tb[k].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(x, y, "tensor {k}");
    }
}

#[test]
fn corrupt_and_truncated_gguf_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 5).unwrap();
    let path = dir.path().join("tiny.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = model::load(cut.to_str().unwrap(), &Device::Cpu)
        .err()
        .expect("truncated file must fail");
    assert!(err.to_string().contains("cut.gguf"), "{err}");
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"definitely not a model file at all").unwrap();
    let err = model::load(junk.to_str().unwrap(), &Device::Cpu)
        .err()
        .expect("junk must fail");
    assert!(err.to_string().contains("GGUF"), "{err}");
    let err = model::load(
        dir.path().join("missing.gguf").to_str().unwrap(),
        &Device::Cpu,
    )
    .err()
    .expect("missing must fail");
    assert!(err.to_string().contains("no such model"), "{err}");
    // HF dir without tokenizer.json
    std::fs::remove_file(dir.path().join("hf/tokenizer.json")).unwrap();
    let err = model::load(dir.path().join("hf").to_str().unwrap(), &Device::Cpu)
        .err()
        .expect("no tokenizer must fail");
    assert!(err.to_string().contains("tokenizer"), "{err}");
}

#[test]
fn inference_kernels_match_the_autograd_path() {
    if common::skip_without(model::gemm::available(), "packed inference kernels") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 13).unwrap();
    for path in [dir.path().join("tiny.gguf"), dir.path().join("hf")] {
        let spec = path.to_str().unwrap();
        let fast = model::load(spec, &Device::Cpu).unwrap();
        let plain = model::load_unpacked(spec, &Device::Cpu).unwrap();
        let texts: Vec<Vec<u32>> = ["the thin otter", "a", "on and on in the inner other bank"]
            .iter()
            .map(|t| fast.tokenizer.encode(t).unwrap())
            .collect();
        let lengths: Vec<usize> = texts.iter().map(Vec::len).collect();
        let t = *lengths.iter().max().unwrap();
        let flat: Vec<u32> = texts
            .iter()
            .flat_map(|s| s.iter().copied().chain(std::iter::repeat_n(0, t - s.len())))
            .collect();
        let ids = Tensor::from_vec(flat, (texts.len(), t), &Device::Cpu).unwrap();
        for mask in [AttentionMask::Causal, AttentionMask::Bidirectional] {
            let a = fast.llama.forward(&ids, &lengths, mask).unwrap();
            let b = plain.llama.forward(&ids, &lengths, mask).unwrap();
            for (s, &len) in lengths.iter().enumerate() {
                let x: Vec<Vec<f32>> = a
                    .get(s)
                    .unwrap()
                    .narrow(0, 0, len)
                    .unwrap()
                    .to_vec2()
                    .unwrap();
                let y: Vec<Vec<f32>> = b
                    .get(s)
                    .unwrap()
                    .narrow(0, 0, len)
                    .unwrap()
                    .to_vec2()
                    .unwrap();
                assert!(
                    max_diff(&x, &y) < 1e-4,
                    "{spec} {mask:?}: {}",
                    max_diff(&x, &y)
                );
            }
        }
    }
}

/// The device-generic encoder (the GPU's code: dense weights, candle's
/// attention, the tensor-op sparse head) run on the CPU gives the vectors of
/// the packed CPU encoder, for every variant and head, with and without
/// learned per-term shifts.
#[test]
fn generic_encoder_matches_the_packed_cpu_encoder() {
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 17).unwrap();
    let spec = dir.path().join("tiny.gguf");
    let spec = spec.to_str().unwrap();
    let mut packed = model::load(spec, &Device::Cpu).unwrap();
    let mut plain = model::load_unpacked(spec, &Device::Cpu).unwrap();
    let texts = [
        "the thin otter",
        "a",
        "on and on in the inner other bank of the river",
    ];
    let vocab = packed.config().vocab_size;
    let shifts = Tensor::from_vec(
        csplade::model::adapter::uniform(3, vocab, 1.5),
        vocab,
        &Device::Cpu,
    )
    .unwrap();
    let mut compared = 0;
    for with_shifts in [false, true] {
        if with_shifts {
            packed.llama.term_shift = Some(shifts.clone());
            plain.llama.term_shift = Some(shifts.clone());
        }
        for variant in [Variant::Causal, Variant::Echo, Variant::Bi] {
            for head in [Head::RawLogits, Head::LogProb { shift: 4.0 }] {
                let cfg = EncoderConfig {
                    variant,
                    head,
                    max_len: 64,
                    batch_size: 2,
                    windows: 1,
                };
                let fused = Encoder::new(&packed, cfg.clone());
                assert!(!fused.generic);
                let mut generic = Encoder::new(&plain, cfg);
                generic.generic = true;
                let a = fused.encode(&texts).unwrap();
                let b = generic.encode(&texts).unwrap();
                for (x, y) in a.iter().zip(&b) {
                    assert!(x.vector.active() > 0);
                    let (dx, dy) = (x.vector.to_dense(vocab), y.vector.to_dense(vocab));
                    let worst = dx
                        .iter()
                        .zip(&dy)
                        .map(|(p, q)| (p - q).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst < 1e-3,
                        "{variant} {head} shifts={with_shifts}: differ by {worst}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 2 * 3 * 2 * texts.len());
}
