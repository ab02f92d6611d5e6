//! The index tests' fixtures: a small collection of random words, a tiny
//! model, the build settings and the encoder configuration.

use std::path::Path;

use candle_core::Device;
use csplade::encode::{EncoderConfig, Head};
use csplade::index::BuildOptions;
use csplade::model::{self, LoadedModel};

pub const WORDS: &[&str] = &[
    "the", "otter", "river", "thin", "bank", "stone", "water", "fish", "night", "other", "inner",
    "on", "and", "theory", "heat",
];

pub fn write_corpus(dir: &Path, n: usize) {
    super::RandomCorpus {
        words: WORDS,
        seed: 99,
        min_words: 3,
        spread: 20,
        query_every: 3,
        titled: true,
    }
    .write(dir, n)
}

pub fn tiny_model(dir: &Path, seed: u64) -> LoadedModel {
    model::tiny::write_tiny_model(dir, seed).unwrap();
    model::load(dir.join("tiny.gguf").to_str().unwrap(), &Device::Cpu).unwrap()
}

pub fn opts(corpus: &Path, out: &Path) -> BuildOptions {
    super::build_options(corpus, out)
}

pub fn config() -> EncoderConfig {
    EncoderConfig {
        head: Head::LogProb { shift: 2.0 },
        ..Default::default()
    }
}

pub fn tiny_model_at(spec: &Path) -> LoadedModel {
    model::load(spec.to_str().unwrap(), &Device::Cpu).unwrap()
}
