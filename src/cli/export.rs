//! `csplade export`: an index for PISA and Anserini (CIFF), Anserini's
//! JsonVectorCollection, or OpenSearch/Elasticsearch `rank_features`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use csplade::export::{self, ExportFormat};
use csplade::search::LsrIndex;

#[derive(Args)]
pub struct ExportArgs {
    /// Index built by `csplade index`
    #[arg(long)]
    pub index: PathBuf,
    /// ciff (PISA, Anserini), anserini (JsonVectorCollection, one JSON
    /// document per line) or opensearch (bulk NDJSON + OUT.mapping.json)
    #[arg(long)]
    pub format: ExportFormat,
    /// The file written (replaced atomically)
    #[arg(long)]
    pub out: PathBuf,
    /// The model that built the index (for its vocabulary's term strings)
    /// [default: the model the index records, else default]
    #[arg(long)]
    pub model: Option<String>,
    /// OpenSearch index name in the bulk file's actions
    #[arg(long, default_value = "csplade")]
    pub name: String,
    /// Also export each passage of an index with passages as a document of
    /// its own, id ID#K (K from 1), after its document: an engine that keeps
    /// each document's best unit then ranks as csplade does (Anserini:
    /// -selectMaxPassage -selectMaxPassage.delimiter '#')
    #[arg(long)]
    pub passages: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let idx =
        LsrIndex::open(&a.index).with_context(|| format!("opening index {}", a.index.display()))?;
    let kind = csplade::data::output::EXPORT;
    csplade::data::output::check_file(&a.out, &kind, &[&a.index])?;
    let units = match (&idx.passages, a.passages) {
        (Some(_), true) => export::Units::WithPassages,
        (None, true) => anyhow::bail!(
            "{} holds no passages (it was built with --passages none): drop --passages",
            a.index.display()
        ),
        (Some(p), false) => {
            eprintln!(
                "csplade: notice: this index ranks documents by their best passage; the export holds each document's first read only ({} passages left out; --passages exports them as ID#K documents)",
                p.len()
            );
            export::Units::FirstReads
        }
        (None, false) => export::Units::FirstReads,
    };
    let spec = a
        .model
        .as_deref()
        .or(idx.meta.model_spec.as_deref())
        .unwrap_or("default");
    let model = csplade::model::family::open(
        spec,
        &candle_core::Device::Cpu,
        csplade::quant::Precision::F32,
        false,
        csplade::model::Family::Auto,
    )
    .with_context(|| format!("loading model {spec:?}"))?;
    idx.meta.check_model(model.identity(), model.vocab_size())?;
    let r = export::export_units(&idx, model.tokenizer(), a.format, &a.out, &a.name, units)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let files: Vec<String> = r.files.iter().map(|f| f.display().to_string()).collect();
        let of_which = match r.passages {
            0 => String::new(),
            n => format!(" ({n} of them passages, ID#K)"),
        };
        println!(
            "exported {} documents{of_which}, {} terms, {} postings (impacts round(w × {})) → {}",
            r.documents,
            r.terms,
            r.postings,
            idx.meta.scale,
            files.join(", ")
        );
    }
    Ok(())
}
