//! Encoding text into sparse expansions: the sparse vector type and the
//! CSPLADE encoder (causal / echo / bi variants, batching, pooling).

pub mod encoder;
pub mod head;
pub mod sparse;

pub use encoder::{EncodeError, Encoded, Encoder, EncoderConfig, ExpansionTerm, Head, Variant};
pub use sparse::{Contribution, SparseVec};
