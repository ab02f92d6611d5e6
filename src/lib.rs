//! csplade — learned sparse retrieval with causal language models (CSPLADE,
//! Xu et al. 2025): a decoder-only LM's vocabulary logits become a sparse,
//! human-readable bag of weighted terms that an inverted index can serve.
//!
//! The modules follow the pipeline: [`data`] → [`model`] → [`encode`] →
//! [`index`] → [`search`] / [`eval`] → [`train`] → [`quant`] → [`compare`] /
//! [`tradeoff`] → [`tasks`] → [`tui`].

pub mod compare;
pub mod data;
pub mod encode;
pub mod eval;
pub mod explore;
pub mod export;
pub mod failures;
pub mod index;
pub mod model;
pub mod quant;
pub mod rng;
pub mod search;
pub mod tasks;
pub mod tradeoff;
pub mod train;
#[cfg(feature = "explorer")]
pub mod tui;

/// Keep freed activation buffers in the process heap instead of returning
/// them to the OS after every layer: each forward pass allocates tens of MB,
/// and with glibc's defaults page faults for re-mapping them cost ~15% of
/// encoding time.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Hand memory the process has freed back to the operating system (glibc
/// keeps it otherwise), before handing the machine to another process.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
#[path = "../tests/common/skip.rs"]
pub(crate) mod test_skip;
