//! Collections on disk: BEIR corpora, queries and qrels, man pages, and where
//! the shared development data lives.

pub mod beir;
pub mod manpages;
pub mod output;

use std::path::PathBuf;

/// The one setting that locates the shared collections: `$CSPLADE_DATA`,
/// else `../shared/data` (relative to the working directory).
pub fn shared_data_dir() -> PathBuf {
    match std::env::var_os("CSPLADE_DATA").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from("../shared/data"),
    }
}
