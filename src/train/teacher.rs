//! A teacher for contrastive training (distillation, as SPLADE++ distils a
//! stronger ranker into its encoder): another sparse encoder csplade opens —
//! a SPLADE checkpoint, an inference-free model, another csplade model —
//! scores every query–document pair of each micro-batch, and the student
//! learns to match the teacher's distribution over the batch's documents
//! besides the positive label (see `loss::Distill`).
//!
//! The micro-batches hold the student's token ids; the teacher reads the
//! same text, decoded from them (so it sees what the student saw, truncation
//! included), through its own tokenizer and its own trained encoding. With
//! `teacher_bm25` the teacher is its hybrid with BM25 (see `lexical`).

use anyhow::{Context, Result};
use candle_core::Device;

use crate::encode::{Encoder, EncoderConfig};
use crate::model::family::{self, Family};
use crate::model::precision::Precision;
use crate::model::{SparseModel, TextTokenizer};
use crate::train::data::MicroBatch;
use crate::train::lexical::{self, Bm25Stats};

/// Longest text (in the teacher's tokens) the teacher reads; the student's
/// documents are at most `doc_max_len` of its own tokens, well under this.
const TEACHER_MAX_LEN: usize = 512;

pub struct Teacher {
    model: SparseModel,
    /// Queries through the model's inference-free side when that is how it
    /// was trained to read them.
    inference_free: bool,
    /// BM25 over the run's training documents and its weight in the hybrid.
    bm25: Option<(Bm25Stats, f32)>,
}

impl Teacher {
    /// Open the teacher `spec` (a model directory or anything `--model` takes).
    pub fn open(spec: &str) -> Result<Self> {
        let model = family::open(spec, &Device::Cpu, Precision::F32, false, Family::Auto)
            .with_context(|| format!("opening the teacher {spec:?}"))?;
        let inference_free = model.inference_free_by_default();
        Ok(Self {
            model,
            inference_free,
            bm25: None,
        })
    }

    /// Make the teacher its hybrid with BM25 (weight `weight`), document
    /// frequencies and lengths counted over every document of `data`.
    pub fn fuse_bm25(&mut self, weight: f32, student: &TextTokenizer, data: &[MicroBatch]) {
        let texts: Vec<String> = data
            .iter()
            .flat_map(|mb| mb.positives.iter().chain(mb.negatives.iter().flatten()))
            .map(|ids| student.decode(ids))
            .collect();
        let stats = Bm25Stats::count(texts.iter().map(String::as_str));
        self.bm25 = Some((stats, weight));
    }

    /// The teacher's identity: the sha256 over its weights and head.
    pub fn sha256(&self) -> &str {
        &self.model.identity().sha256
    }

    fn encoder(&self, inference_free: bool) -> Result<Encoder<'_>> {
        let (variant, head) = self.model.trained_encoding();
        let config = EncoderConfig {
            variant,
            head,
            max_len: TEACHER_MAX_LEN,
            batch_size: 8,
            windows: 1,
        };
        Ok(Encoder::new(&self.model, config).with_inference_free(inference_free)?)
    }

    /// The teacher's score of every (query, document) pair, row-major
    /// `[queries × documents]`; texts are decoded from the student's ids.
    pub fn scores(
        &self,
        student: &TextTokenizer,
        queries: &[&[u32]],
        docs: &[&[u32]],
    ) -> Result<Vec<f32>> {
        let decode = |seqs: &[&[u32]]| -> Vec<String> {
            seqs.iter().map(|ids| student.decode(ids)).collect()
        };
        let (q_text, d_text) = (decode(queries), decode(docs));
        let q_refs: Vec<&str> = q_text.iter().map(String::as_str).collect();
        let d_refs: Vec<&str> = d_text.iter().map(String::as_str).collect();
        let q = self
            .encoder(self.inference_free)?
            .encode(&q_refs)
            .context("the teacher encoding the batch's queries")?;
        let d = self
            .encoder(false)?
            .encode(&d_refs)
            .context("the teacher encoding the batch's documents")?;
        let mut scores: Vec<f32> = q
            .iter()
            .flat_map(|qe| d.iter().map(|de| qe.vector.dot(&de.vector)))
            .collect();
        if let Some((stats, weight)) = &self.bm25 {
            let bm25 = stats.scores(&q_refs, &d_refs);
            lexical::fuse(&mut scores, &bm25, d_refs.len(), *weight);
        }
        Ok(scores)
    }
}
