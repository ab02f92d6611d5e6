//! Encoding text into sparse expansions: the sparse vector type and the
//! encoder over any model family — a causal LM (CSPLADE: causal / echo / bi
//! variants), a masked LM (SPLADE pooling), or an inference-free query
//! table — with batching and pooling.

pub mod causal;
pub mod encoder;
pub mod head;
pub mod masked;
pub mod sparse;

pub use encoder::{EncodeError, Encoded, Encoder, EncoderConfig, ExpansionTerm, Head, Variant};
pub use sparse::{Contribution, SparseVec};
