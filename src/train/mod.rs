//! Training CSPLADE (paper §3): the adaptation phase (causal-LM loss plus the
//! same loss on log(1 + ReLU(logits))) and the contrastive phase (InfoNCE with
//! BM25 hard negatives and FLOPS regularization), with LoRA or full
//! fine-tuning, AdamW, checkpoints that resume exactly, and progress reports;
//! and the inference-free query side's table (`query_table`).

pub mod adapt;
pub mod batches;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod export;
pub mod graph;
pub mod groups;
pub mod lexical;
pub mod loss;
pub mod optim;
pub mod pooling;
pub mod query_table;
pub mod run;
pub mod teacher;

pub use config::TrainConfig;
pub use run::{Engine, Phase, StepReport, Trainer};
