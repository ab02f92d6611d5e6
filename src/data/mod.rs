//! Collections on disk: BEIR corpora, queries and qrels, man pages, where
//! csplade keeps its own files, and where it looks for collections.

pub mod beir;
pub mod groff;
pub mod manpages;
pub mod output;
pub mod passages;
pub mod roff;

use std::path::PathBuf;

/// csplade's own directory (models, caches, runs, locks): `$CSPLADE_HOME`,
/// else `csplade/` in the platform's data directory.
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CSPLADE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("csplade")
}

/// The one setting that locates collections named by name (training
/// pairs, `bench encode`'s default): `$CSPLADE_DATA`, else `data/` in
/// csplade's own directory ([`home_dir`]).
pub fn shared_data_dir() -> PathBuf {
    match std::env::var_os("CSPLADE_DATA").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => home_dir().join("data"),
    }
}
