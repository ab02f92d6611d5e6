//! The end of a run: `adapter.safetensors` with the trained tensors and how
//! the model encodes; an adapter a run started from is either continued in
//! place (same LoRA layout) or stacked under the new one by concatenating
//! ranks.

use anyhow::{bail, Context, Result};
use candle_core::Tensor;

use super::config::TrainConfig;
use super::run::Trainer;
use crate::model::adapter::{Adapter, AdapterMeta};

/// Whether `a` is a LoRA adapter this recipe trains further in place (same
/// rank and alpha) rather than merging it into the base.
pub fn continues_adapter(cfg: &TrainConfig, a: &Adapter) -> bool {
    a.meta.kind == "lora"
        && cfg.adapter == "lora"
        && a.meta.rank == cfg.lora_rank
        && a.meta.alpha == cfg.lora_alpha
}

/// `out/adapter.safetensors`: the trained tensors (plus what `init_adapter`
/// contributed, folded in) and how the model encodes.
pub fn write_adapter(t: &Trainer, steps: usize, seconds: f64, tokens: u64) -> Result<()> {
    let mut tensors = std::collections::HashMap::new();
    for (name, p) in &t.params {
        tensors.insert(name.clone(), p.as_tensor().clone());
    }
    let mut meta = AdapterMeta {
        base_id: t.model.identity.id.clone(),
        base_sha256: t.model.identity.sha256.clone(),
        kind: t.cfg.adapter.clone(),
        rank: t.cfg.lora_rank,
        alpha: t.cfg.lora_alpha,
        variant: t.cfg.variant,
        head: t.head()?,
        // The document length it was trained on.
        max_len: t.cfg.doc_max_len,
        trained: format!(
            "{} phase, {steps} steps, {tokens} tokens, {seconds:.0} s",
            t.phase.name()
        ),
        query_prior: t.cfg.query_prior(),
        query_feedback: Default::default(),
        passages: None,
        documents_as: None,
    };
    let stacked = match &t.init {
        Some(a) if continues_adapter(&t.cfg, a) => {
            meta.trained = format!("{}; then {}", a.meta.trained, meta.trained);
            None
        }
        other => other.as_ref(),
    };
    if let Some(first) = stacked {
        // The starting adapter was merged into the base weights: store the
        // sum as full weights is too large, so fold the new pairs on top
        // by concatenating ranks (ΔW = B₁A₁ + B₂A₂ = [B₁ B₂][A₁; A₂]).
        if first.meta.kind != "lora" || t.cfg.adapter != "lora" {
            bail!("chaining adapters needs LoRA in both phases");
        }
        let (s1, s2) = (
            first.meta.alpha / first.meta.rank as f32,
            t.cfg.lora_alpha / t.cfg.lora_rank as f32,
        );
        let names: Vec<String> = tensors
            .keys()
            .filter(|k| k.ends_with(".lora_a"))
            .cloned()
            .collect();
        for a_name in names {
            let base = a_name.trim_end_matches(".lora_a");
            let b_name = format!("{base}.lora_b");
            let (Some(a1), Some(b1)) = (first.tensors.get(&a_name), first.tensors.get(&b_name))
            else {
                continue;
            };
            let (a2, b2) = (&tensors[&a_name], &tensors[&b_name]);
            // Scales folded into B so the merged pair uses scale 1 × (alpha/rank).
            let r = first.meta.rank + t.cfg.lora_rank;
            let unit = 1.0 / r as f64;
            let b = Tensor::cat(&[(b1 * (s1 as f64 / unit))?, (b2 * (s2 as f64 / unit))?], 1)?;
            let a = Tensor::cat(&[a1, a2], 0)?;
            tensors.insert(a_name.clone(), a);
            tensors.insert(b_name, b);
        }
        meta.rank = first.meta.rank + t.cfg.lora_rank;
        meta.alpha = 1.0;
        meta.trained = format!("{}; then {}", first.meta.trained, meta.trained);
    }
    let path = t.out.join("adapter.safetensors");
    Adapter { meta, tensors }
        .write(&path)
        .with_context(|| path.display().to_string())?;
    Ok(())
}
