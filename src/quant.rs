//! Precision variants from one set of (merged) weights: f32, f16, q8_0
//! (int8, GGML blocks of 32 with an f16 scale) and q4_0 (int4), and the
//! measures that compare an expansion under two precisions.

use candle_core::quantized::GgmlDType;
use serde::Serialize;

use crate::encode::SparseVec;
pub use crate::model::precision::{label, parse_label, Precision, ALL};

/// How an expansion under one precision differs from a reference expansion.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct VectorDiff {
    #[serde(rename = "overlap@10")]
    pub overlap10: f64,
    #[serde(rename = "overlap@50")]
    pub overlap50: f64,
    pub jaccard: f64,
    pub cosine: f64,
    pub max_abs_dw: f64,
    pub mean_abs_dw: f64,
}

/// Fraction of the reference's top-k terms among the other's top-k.
pub fn overlap_at(reference: &SparseVec, other: &SparseVec, k: usize) -> f64 {
    let a: std::collections::HashSet<u32> = reference.top_k(k).into_iter().map(|t| t.0).collect();
    if a.is_empty() {
        return 1.0;
    }
    let hits = other
        .top_k(k)
        .into_iter()
        .filter(|t| a.contains(&t.0))
        .count();
    hits as f64 / a.len() as f64
}

pub fn diff(reference: &SparseVec, other: &SparseVec) -> VectorDiff {
    let a: std::collections::HashSet<u32> = reference.ids.iter().copied().collect();
    let b: std::collections::HashSet<u32> = other.ids.iter().copied().collect();
    let union = a.union(&b).count();
    let jaccard = if union == 0 {
        1.0
    } else {
        a.intersection(&b).count() as f64 / union as f64
    };
    let mut max = 0f64;
    let mut sum = 0f64;
    for id in a.union(&b) {
        let d = (reference.get(*id) - other.get(*id)).abs() as f64;
        max = max.max(d);
        sum += d;
    }
    VectorDiff {
        overlap10: overlap_at(reference, other, 10),
        overlap50: overlap_at(reference, other, 50),
        jaccard,
        cosine: reference.cosine(other) as f64,
        max_abs_dw: max,
        mean_abs_dw: if union == 0 { 0.0 } else { sum / union as f64 },
    }
}

/// Kendall's τ-a between two rankings over the documents both contain.
pub fn kendall_tau(a: &[String], b: &[String]) -> f64 {
    let pos: std::collections::HashMap<&str, usize> =
        b.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
    let common: Vec<usize> = a
        .iter()
        .filter_map(|d| pos.get(d.as_str()).copied())
        .collect();
    let n = common.len();
    if n < 2 {
        return 1.0;
    }
    let (mut conc, mut disc) = (0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            if common[i] < common[j] {
                conc += 1;
            } else {
                disc += 1;
            }
        }
    }
    (conc - disc) as f64 / (conc + disc) as f64
}

/// Save a precision variant of a GGUF model as a new GGUF file: every
/// projection at `precision` (and the embeddings too with `quantize_head`),
/// norms in f32, tokenizer metadata copied, `csplade.precision` recorded.
/// With `adapted` (the source with an adapter merged, unpacked) its merged
/// projections, per-term shifts, query table and encoding are written
/// instead, so the variant encodes as the adapted model does. Written
/// atomically. HF directories are not supported as sources.
pub fn write_variant(
    source: &std::path::Path,
    adapted: Option<crate::model::LoadedModel>,
    out: &std::path::Path,
    precision: Precision,
    quantize_head: bool,
) -> Result<(), crate::model::ModelError> {
    use candle_core::quantized::gguf_file::Value;
    use candle_core::quantized::QTensor;
    // Refused before the work, not after it.
    crate::data::output::check_file(out, &crate::data::output::GGUF, &[source])?;
    let mut g = crate::model::gguf::GgufFile::open(source)?;
    let cfg = g.llama_config()?;
    let mut tensors = g.hf_tensors(&candle_core::Device::Cpu)?;
    let mut meta = g.metadata_with_prefix("tokenizer.");
    if let Some(m) = adapted {
        meta.extend(adaptation(m, &mut tensors)?);
    }
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut q = Vec::with_capacity(names.len());
    for name in names {
        let t = &tensors[name];
        let is_matrix = t.rank() == 2;
        let is_embedding = name == "model.embed_tokens.weight" || name == "lm_head.weight";
        let dtype = if !is_matrix || (is_embedding && !quantize_head) {
            GgmlDType::F32
        } else {
            precision.ggml_dtype()
        };
        q.push((name.clone(), QTensor::quantize(t, dtype)?));
    }
    meta.push((
        "general.name".into(),
        Value::String(format!("csplade {}", label(precision, quantize_head))),
    ));
    meta.push((
        "csplade.precision".into(),
        Value::String(label(precision, quantize_head)),
    ));
    crate::model::gguf::write_llama(out, &cfg, &meta, &q, &[source])
}

/// An adapted model's weights in place of its base's (`tensors`, HF
/// names): every projection as merged, the per-term shifts and the query
/// table as csplade's own tensors; returns the metadata that says how it
/// encodes.
fn adaptation(
    mut m: crate::model::LoadedModel,
    tensors: &mut std::collections::HashMap<String, candle_core::Tensor>,
) -> Result<Vec<(String, candle_core::quantized::gguf_file::Value)>, crate::model::ModelError> {
    use crate::model::gguf;
    for (name, lin) in m.llama.linears_mut() {
        let hf = format!("model.{name}.weight");
        if !tensors.contains_key(&hf) {
            return Err(crate::model::ModelError::Unsupported(format!(
                "{hf}: the adapted model has a projection its base GGUF lacks"
            )));
        }
        tensors.insert(hf, lin.weight.to_device(&candle_core::Device::Cpu)?);
    }
    if let Some(t) = &m.llama.term_shift {
        tensors.insert(
            gguf::TERM_SHIFT_TENSOR.into(),
            t.to_device(&candle_core::Device::Cpu)?,
        );
    }
    if let Some(q) = m.query_table.take() {
        let n = q.len();
        tensors.insert(
            gguf::QUERY_TABLE_TENSOR.into(),
            candle_core::Tensor::from_vec(q, n, &candle_core::Device::Cpu)?,
        );
    }
    let mut meta = m.adapter.take().ok_or_else(|| {
        crate::model::ModelError::Unsupported("the adapted model records no adapter".into())
    })?;
    // The variant's documents are its own, not another model's.
    meta.documents_as = None;
    let json = serde_json::to_string(&meta)
        .map_err(|e| crate::model::ModelError::Unsupported(e.to_string()))?;
    Ok(vec![(
        gguf::ADAPTER_META_KEY.into(),
        candle_core::quantized::gguf_file::Value::String(json),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_measures() {
        let a = SparseVec::from_pairs(vec![(1, 2.0), (2, 1.0), (3, 0.5)]);
        let same = diff(&a, &a);
        assert_eq!(
            (same.overlap10, same.jaccard, same.max_abs_dw),
            (1.0, 1.0, 0.0)
        );
        assert!((same.cosine - 1.0).abs() < 1e-6);
        let b = SparseVec::from_pairs(vec![(1, 1.5), (2, 1.0), (4, 0.5)]);
        let d = diff(&a, &b);
        assert_eq!(d.jaccard, 2.0 / 4.0);
        assert_eq!(d.max_abs_dw, 0.5);
        assert!((d.mean_abs_dw - (0.5 + 0.0 + 0.5 + 0.5) / 4.0).abs() < 1e-9);
        assert!((overlap_at(&a, &b, 2) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn kendall() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(kendall_tau(&s(&["a", "b", "c"]), &s(&["a", "b", "c"])), 1.0);
        assert_eq!(
            kendall_tau(&s(&["a", "b", "c"]), &s(&["c", "b", "a"])),
            -1.0
        );
        assert!((kendall_tau(&s(&["a", "b", "c"]), &s(&["b", "a", "c"])) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!("int8".parse::<Precision>().unwrap(), Precision::Q8_0);
    }
}
