//! The explorer's engine session: the collection it opened (the man-page
//! demo by default), the model and index it loads off the UI thread, the
//! part of an index a running build has encoded, the models Compare loads on
//! first use, and the background jobs the explorer offers. The terminal UI
//! holds a session and asks it for an [`Explorer`] to answer queries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::{Comparison, Explorer};
use crate::data::beir;
use crate::model::{fetch::data_dir, SparseModel};
use crate::search::{LsrIndex, PartialIndex};
use crate::tasks::TaskSpec;

/// What changes while the explorer runs.
struct State {
    model: Option<Arc<SparseModel>>,
    partial: Option<Arc<PartialIndex>>,
    index: Option<Arc<LsrIndex>>,
    /// Models of Compare's encoders, by model spec and precision, loaded on
    /// first use (encoders differing only in variant or head share one).
    compare_models: Vec<(String, Arc<SparseModel>)>,
}

pub struct Session {
    pub model_spec: String,
    pub dataset: PathBuf,
    pub index_dir: PathBuf,
    /// Document length of the index the explorer builds (`None`: the
    /// command's default); the demo's is [`DEMO_MAX_LEN`].
    pub max_len: Option<usize>,
    /// The LSR scorer behind every ranking (`--backend`).
    pub backend: crate::search::Backend,
    /// The query prior (`--query-prior`; `None`: the model's own).
    pub prior: Option<crate::search::QueryPrior>,
    /// The pseudo-relevance feedback (`--query-feedback`; `None`: the
    /// model's own).
    pub feedback: Option<crate::search::QueryFeedback>,
    /// How the hybrid ranking fuses LSR and BM25 (`--fusion`).
    pub fusion: crate::search::Fusion,
    /// Queries through the model's inference-free table (`--inference-free`).
    pub inference_free: bool,
    /// The model Compare's `families` preset sets beside the open one.
    pub second_model: Option<String>,
    corpus: Arc<Vec<beir::Document>>,
    queries: Arc<Vec<beir::Query>>,
    qrels: Option<Arc<beir::Qrels>>,
    state: Mutex<State>,
}

/// The background jobs the explorer offers for its collection and model.
pub struct SessionTasks {
    pub index: TaskSpec,
    /// The precisions' trade-off frontier over the collection's pool.
    pub frontier: TaskSpec,
    pub eval: TaskSpec,
    pub quantize: TaskSpec,
    pub adapt: TaskSpec,
    pub contrastive: TaskSpec,
}

/// Tokens kept per demo document: what the shipped model was trained on,
/// and short enough for the demo to be searchable within minutes.
pub const DEMO_MAX_LEN: usize = 128;

/// The demo collection (300 man pages), created on first use. Its name
/// changes with the way it is made (`-2`: typeset by groff, one query per
/// NAME description), so an older demo is not reused.
pub fn demo_dataset() -> Result<PathBuf> {
    let dir = data_dir().join("demo").join("manpages-300-2");
    if !dir.join("corpus.jsonl").is_file() {
        let opts = crate::data::manpages::ManpageOptions::demo();
        crate::data::manpages::convert(&opts, &dir).context("building the man-page demo corpus")?;
    }
    Ok(dir)
}

/// The `csplade index` arguments of the explorer's index task: a dataset's
/// index reads as the model says (its length and passages); the man-page
/// demo (its own length, `demo_max_len`) indexes first reads only, as its
/// long pages would take several times as long as passages.
fn index_task_args(
    dataset: &str,
    index: &str,
    model: &str,
    demo_max_len: Option<usize>,
) -> Vec<String> {
    let mut args = vec![
        "index", "--corpus", dataset, "--out", index, "--model", model,
    ];
    let max_len = demo_max_len.map(|n| n.to_string());
    if let Some(n) = &max_len {
        args.extend(["--max-len", n, "--passages", "none"]);
    }
    args.into_iter().map(String::from).collect()
}

/// Where the explorer keeps its log.
pub fn log_path() -> PathBuf {
    data_dir().join("logs").join("explorer.log")
}

impl Session {
    /// Open `dataset` (default: the man-page demo) for `model`; the index is
    /// `index`, else one cached per collection and model.
    pub fn open(model: &str, dataset: Option<PathBuf>, index: Option<PathBuf>) -> Result<Self> {
        let (dataset, max_len) = match dataset {
            Some(d) => (d, None),
            None => (demo_dataset()?, Some(DEMO_MAX_LEN)),
        };
        let index_dir = match index {
            Some(i) => i,
            None => {
                let name = dataset
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let corpus = beir::collection_file(&dataset, "corpus.jsonl");
                let fp = crate::index::build::fingerprint(&corpus)?;
                data_dir().join("indexes").join(format!(
                    "explorer-{name}-{}-{}",
                    &fp[..12],
                    crate::model::spec_tag(model)
                ))
            }
        };
        Ok(Self {
            model_spec: model.to_string(),
            corpus: Arc::new(beir::read_corpus(&dataset).unwrap_or_default()),
            queries: Arc::new(beir::read_queries(&dataset).unwrap_or_default()),
            qrels: beir::read_qrels(&dataset, "test").ok().map(Arc::new),
            dataset,
            index_dir,
            max_len,
            backend: crate::search::Backend::Exact,
            prior: None,
            feedback: None,
            fusion: crate::search::Fusion::default(),
            inference_free: false,
            second_model: None,
            state: Mutex::new(State {
                model: None,
                partial: None,
                index: None,
                compare_models: Vec::new(),
            }),
        })
    }

    pub fn has_qrels(&self) -> bool {
        self.qrels.is_some()
    }

    /// Whether a complete index is on disk to open.
    pub fn index_built(&self) -> bool {
        self.index_dir.join(crate::index::meta::META_FILE).is_file()
    }

    pub fn tasks(&self) -> SessionTasks {
        let name = self
            .dataset
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let (dataset, index) = (
            self.dataset.display().to_string(),
            self.index_dir.display().to_string(),
        );
        let model = self.model_spec.clone();
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let train = |phase: &str, steps: &str| TaskSpec {
            title: format!("train {phase}"),
            args: args(&[
                "train",
                phase,
                "--out",
                &data_dir()
                    .join("runs")
                    .join(format!("explorer-{phase}"))
                    .display()
                    .to_string(),
                "--steps",
                steps,
                "--resume-or-start",
            ]),
        };
        let index_args = index_task_args(&dataset, &index, &model, self.max_len);
        SessionTasks {
            frontier: self.frontier_task(&dataset, &index),
            index: TaskSpec {
                title: format!("index {name}"),
                args: index_args,
            },
            eval: TaskSpec {
                title: "eval LSR vs BM25".into(),
                args: args(&[
                    "eval",
                    "--dataset",
                    &dataset,
                    "--index",
                    &index,
                    "--model",
                    &model,
                ]),
            },
            quantize: TaskSpec {
                title: "quantize q8_0".into(),
                args: args(&[
                    "quantize",
                    "--model",
                    &model,
                    "--precision",
                    "q8_0",
                    "--out",
                    &data_dir()
                        .join("models")
                        .join("variant-q8_0.gguf")
                        .display()
                        .to_string(),
                ]),
            },
            adapt: train("adapt", "50"),
            contrastive: train("contrastive", "100"),
        }
    }

    /// The trade-off frontier of the model's precisions (each also per
    /// side) over this collection, with the explorer's query prior.
    fn frontier_task(&self, dataset: &str, index: &str) -> TaskSpec {
        let mut args: Vec<String> = [
            "tradeoff",
            "--dataset",
            dataset,
            "--index",
            index,
            "--model",
            &self.model_spec,
            "--mixed",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(p) = self.prior {
            args.extend(["--query-prior".to_string(), p.to_string()]);
        }
        TaskSpec {
            title: "frontier f32/f16/q8_0/q4_0, per side".into(),
            args,
        }
    }

    /// Load the model (blocking); a line describing it.
    pub fn load_model(&self) -> Result<String, String> {
        let m = crate::model::family::open(
            &self.model_spec,
            &candle_core::Device::Cpu,
            crate::model::precision::Precision::F32,
            false,
            crate::model::Family::Auto,
        )
        .map_err(|e| e.to_string())?;
        let desc = format!(
            "model {} ready ({}, vocabulary {})",
            m.identity().id,
            m.as_ref().family_name(),
            m.vocab_size()
        );
        self.state.lock().map_err(|e| e.to_string())?.model = Some(Arc::new(m));
        Ok(desc)
    }

    /// Open the finished index (blocking): its document count. An index of
    /// another corpus is refused: it would name the wrong documents.
    pub fn open_index(&self) -> Result<usize, String> {
        let i = LsrIndex::open(&self.index_dir)
            .and_then(|i| {
                i.meta
                    .check_corpus(&self.index_dir, &self.dataset)
                    .map(|_| i)
            })
            .map_err(|e| e.to_string())?;
        let n = i.len();
        let mut s = self.state.lock().map_err(|e| e.to_string())?;
        s.index = Some(Arc::new(i));
        s.partial = None;
        Ok(n)
    }

    /// Load what a running build has encoded so far (blocking):
    /// `(searchable documents, total)`, or `None` when nothing is readable yet.
    pub fn refresh_partial(&self) -> Option<(usize, usize)> {
        let vectors = crate::index::journal::read_partial(&self.index_dir).ok()?;
        let mut s = self.state.lock().ok()?;
        let vocab = s.model.as_ref()?.vocab_size();
        let total = self.corpus.len();
        let p = PartialIndex::new(vectors, vocab, total);
        let n = p.len();
        s.partial = Some(Arc::new(p));
        Some((n, total))
    }

    /// The engine for queries, once the model is loaded.
    pub fn explorer(&self) -> Option<Explorer> {
        let s = self.state.lock().ok()?;
        let model = s.model.clone()?;
        // An inference-free checkpoint's queries go through its table.
        let inference_free = self.inference_free || model.inference_free_by_default();
        let scoring = crate::search::QueryScoring {
            prior: self.prior,
            feedback: self.feedback,
        };
        let (prior, feedback) = scoring.resolve(model.as_ref().as_ref(), inference_free);
        Some(Explorer {
            config: s
                .index
                .as_ref()
                .map(|i| i.meta.encoder_config())
                .unwrap_or_else(|| {
                    // No index yet: encode the way the model was trained.
                    let (variant, head) = model.trained_encoding();
                    crate::encode::EncoderConfig {
                        variant,
                        head,
                        max_len: model.max_len(),
                        ..Default::default()
                    }
                }),
            index: s.index.clone(),
            partial: s.partial.clone(),
            corpus: self.corpus.clone(),
            queries: self.queries.clone(),
            qrels: self.qrels.clone(),
            backend: self.backend,
            prior,
            feedback,
            fusion: self.fusion,
            inference_free,
            model,
        })
    }

    /// The open model, once loaded.
    fn loaded_model(&self) -> Result<Arc<SparseModel>, String> {
        self.state
            .lock()
            .map_err(|e| e.to_string())?
            .model
            .clone()
            .ok_or_else(|| "the model is still loading".to_string())
    }

    /// Compare `text` under the encoders of `preset` (blocking), loading
    /// the models it lacks.
    pub fn compare(&self, text: &str, preset: &str) -> Result<Comparison, String> {
        let main = self.loaded_model()?;
        let specs = crate::compare::preset(
            preset,
            &self.model_spec,
            main.trained_encoding(),
            self.second_model.as_deref(),
        )
        .ok_or_else(|| match preset {
            "families" => "the families preset compares the open model with a second one: set second_model = \"DIR\" in config.toml, or open the explorer with --second DIR".to_string(),
            _ => format!("unknown compare preset {preset:?}"),
        })?;
        self.compare_specs(text, specs)
    }

    /// Compare `text` under these encoders (blocking), loading the models
    /// it lacks.
    pub fn compare_specs(
        &self,
        text: &str,
        specs: Vec<crate::compare::EncoderSpec>,
    ) -> Result<Comparison, String> {
        let (main, mut models) = {
            let s = self.state.lock().map_err(|e| e.to_string())?;
            (s.model.clone(), s.compare_models.clone())
        };
        let main = main.ok_or("the model is still loading")?;
        let mut encoders = Vec::new();
        for s in specs {
            let key = format!("{} {}", s.model, s.precision);
            let m = match models.iter().find(|(k, _)| *k == key) {
                Some((_, m)) => m.clone(),
                None if s.model == self.model_spec
                    && s.precision == crate::quant::Precision::F32 =>
                {
                    main.clone()
                }
                None => {
                    let m = Arc::new(
                        crate::compare::load(&s, &candle_core::Device::Cpu)
                            .map_err(|e| e.to_string())?,
                    );
                    models.push((key, m.clone()));
                    m
                }
            };
            encoders.push((s, m));
        }
        self.state.lock().map_err(|e| e.to_string())?.compare_models = models;
        let ex = self.explorer().ok_or("the model is still loading")?;
        ex.compare(text, &encoders).map_err(|e| e.to_string())
    }

    /// The latest trade-off frontier computed over this collection's
    /// default pool with the open index as reference (`None`: none yet).
    pub fn frontier(&self) -> Result<Option<crate::tradeoff::Frontier>, String> {
        let index = self
            .state
            .lock()
            .map_err(|e| e.to_string())?
            .index
            .clone()
            .ok_or("the frontier needs the complete index: it is not built yet")?;
        let prior = match self.prior {
            Some(p) => p,
            None => self.loaded_model()?.query_prior(),
        };
        let identity = crate::tradeoff::PoolIdentity::new(
            &index,
            "test",
            crate::tradeoff::PoolSpec::default(),
            prior,
        );
        Ok(crate::tradeoff::store::PoolCache::new(&identity).frontier("latest"))
    }

    /// Write the failure list as TSV and JSON under `$CSPLADE_HOME/exports/`
    /// (each atomically, see [`crate::data::output::atomic`]); the two paths.
    pub fn export_failures(&self, rows: &[super::FailureRow]) -> Result<(PathBuf, PathBuf)> {
        let dir = data_dir().join("exports");
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        let name = self
            .dataset
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "collection".into());
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base = dir.join(format!("failures-{name}-{stamp}"));
        let (tsv, json) = (base.with_extension("tsv"), base.with_extension("json"));
        let mut text = String::from(
            "query_id\tbm25_ndcg10\tlsr_ndcg10\tdelta\thybrid_ndcg10\tlsr_ndcg10_without_feedback\trelevant_in_lsr_top100\ttext\n",
        );
        for r in rows {
            text.push_str(&format!(
                "{}\t{:.4}\t{:.4}\t{:+.4}\t{:.4}\t{}\t{}\t{}\n",
                r.query_id,
                r.bm25_ndcg10,
                r.lsr_ndcg10,
                r.delta(),
                r.hybrid_ndcg10,
                r.unfed_ndcg10.map_or(String::new(), |u| format!("{u:.4}")),
                r.relevant_in_lsr_top100,
                r.text.replace(['\t', '\n'], " ")
            ));
        }
        let write = |path: &PathBuf, bytes: &[u8]| -> Result<()> {
            Ok(crate::data::output::write_new(path, bytes)?)
        };
        write(&tsv, text.as_bytes())?;
        write(&json, serde_json::to_string_pretty(rows)?.as_bytes())?;
        Ok((tsv, json))
    }
}

/// Write one of the explorer's own files (config.toml, say) atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(crate::data::output::write_new(path, bytes)?)
}

fn history_path() -> PathBuf {
    data_dir().join("query-history")
}

/// The queries run in the explorer before, oldest first (at most 200).
pub fn query_history() -> Vec<String> {
    let text = std::fs::read_to_string(history_path()).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let keep = lines.len().saturating_sub(200);
    lines[keep..].to_vec()
}

/// Remember a query run in the explorer (not twice in a row), for the next
/// time the explorer opens (Ctrl-P); the file keeps the last 200.
pub fn remember_query(query: &str) -> Result<()> {
    let query = query.replace(['\n', '\r'], " ");
    let query = query.trim();
    let mut lines = query_history();
    if query.is_empty() || lines.last().map(String::as_str) == Some(query) {
        return Ok(());
    }
    lines.push(query.to_string());
    let keep = lines.len().saturating_sub(200);
    let text = lines[keep..].join("\n") + "\n";
    write_file(&history_path(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_indexes_first_reads_and_a_dataset_reads_as_the_model_says() {
        let demo = index_task_args("D", "I", "default", Some(DEMO_MAX_LEN));
        assert_eq!(
            demo[6..],
            ["default", "--max-len", "128", "--passages", "none"]
        );
        let dataset = index_task_args("D", "I", "default", None);
        assert_eq!(
            dataset,
            ["index", "--corpus", "D", "--out", "I", "--model", "default"]
        );
    }
}
