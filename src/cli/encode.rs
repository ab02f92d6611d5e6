//! `csplade encode`: the expansion of each text — top terms, weights, whether
//! each term occurs in the input, active dimensions.

use std::collections::HashSet;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use csplade::encode::Encoder;

use super::ModelArgs;

#[derive(Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Terms shown per text (0 = every active term)
    #[arg(long, default_value_t = 20, value_parser = super::within(0, 1_000_000))]
    pub top_k: usize,
    /// One JSON object per text
    #[arg(long)]
    pub json: bool,
    /// Texts to encode
    #[arg(required = true)]
    pub texts: Vec<String>,
}

pub fn run(a: EncodeArgs) -> Result<()> {
    let model = a.model.load()?;
    let encoder = Encoder::new(&model, a.model.encoder_config(&model))
        .with_inference_free(a.model.queries_inference_free(&model))?;
    let texts: Vec<&str> = a.texts.iter().map(String::as_str).collect();
    let encoded = encoder.encode(&texts)?;
    for (text, e) in texts.iter().zip(&encoded) {
        if e.truncated_tokens > 0 {
            eprintln!(
                "csplade: notice: text truncated to {} tokens ({} dropped; raise --max-len or --windows to keep more)",
                e.token_ids.len(),
                e.truncated_tokens
            );
        }
        let input: HashSet<u32> = e.token_ids.iter().copied().collect();
        let top = e.vector.top_k(a.top_k);
        if a.json {
            let terms: Vec<_> = top
                .iter()
                .map(|&(id, w)| {
                    json!({"id": id, "token": model.tokenizer().token(id), "weight": w, "in_input": input.contains(&id)})
                })
                .collect();
            let obj = json!({"text": text, "token_ids": e.token_ids, "active": e.vector.active(), "terms": terms});
            println!("{obj}");
        } else {
            println!("text: {text}");
            println!(
                "tokens: {}   active dimensions: {} of {}   variant: {}",
                e.token_ids.len(),
                e.vector.active(),
                model.vocab_size(),
                encoder.config.variant
            );
            println!(
                "{:>4}  {:>8}  {:>6}  {:<5}  token",
                "rank", "weight", "id", "input"
            );
            for (r, &(id, w)) in top.iter().enumerate() {
                let mark = if input.contains(&id) { "yes" } else { "" };
                println!(
                    "{:>4}  {:>8.4}  {:>6}  {:<5}  {:?}",
                    r + 1,
                    w,
                    id,
                    mark,
                    model.tokenizer().token(id)
                );
            }
            println!();
        }
    }
    Ok(())
}
