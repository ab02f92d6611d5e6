//! csplade — learned sparse retrieval with causal language models (CSPLADE,
//! Xu et al. 2025): a decoder-only LM's vocabulary logits become a sparse,
//! human-readable bag of weighted terms that an inverted index can serve.
//!
//! The modules follow the pipeline: [`data`] → [`model`] → [`encode`].

pub mod data;
pub mod encode;
pub mod model;
