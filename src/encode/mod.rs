//! Encoding text into sparse expansions: the sparse vector type and the
//! CSPLADE encoder (causal / echo / bi variants, batching, pooling).

pub mod encoder;
pub mod sparse;

pub use encoder::{Encoded, EncodeError, Encoder, EncoderConfig, Head, Variant};
pub use sparse::{Contribution, SparseVec};
