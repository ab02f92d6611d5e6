//! The files of a sparse-encoder directory: sentence-transformers'
//! `modules.json` (a fill-mask Transformer + `SpladePooling`, or a `Router`
//! with a `SparseStaticEmbedding` query route), OpenSearch's `idf.json`
//! beside a masked LM, safetensors weights (pickles refused), the tokenizer,
//! and the inference-free query tables they hold.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::encoding::Head;
use super::family::{format_err, read};
use super::{ModelError, TextTokenizer};

#[derive(Deserialize)]
struct StModule {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct RouterConfig {
    structure: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default = "max")]
    pooling_strategy: String,
    #[serde(default = "relu")]
    activation_function: String,
}

fn max() -> String {
    "max".into()
}
fn relu() -> String {
    "relu".into()
}

/// Where the masked LM, its pooling and its query table live.
pub(super) struct Layout {
    pub mlm_dir: PathBuf,
    pub head: Head,
    pub query: Option<QuerySide>,
}

pub(super) enum QuerySide {
    /// sentence-transformers' `SparseStaticEmbedding` directory.
    Static(PathBuf),
    /// OpenSearch's `idf.json` (token → weight).
    IdfJson(PathBuf),
}

fn splade_head(p: &PoolingConfig, origin: &Path) -> Result<Head, ModelError> {
    let sum = match p.pooling_strategy.as_str() {
        "max" => false,
        "sum" => true,
        other => {
            return Err(format_err(
                origin,
                format!("pooling_strategy {other:?} (max or sum)"),
            ))
        }
    };
    let double_log = match p.activation_function.as_str() {
        "relu" => false,
        "log1p_relu" => true,
        other => {
            return Err(format_err(
                origin,
                format!("activation_function {other:?} (relu or log1p_relu)"),
            ))
        }
    };
    Ok(Head::Splade {
        sum,
        double_log,
        zero_special: false,
    })
}

/// A sentence-transformers module list (`modules.json`, paths relative to
/// `dir`): the masked LM and its pooling.
fn st_modules(
    dir: &Path,
    modules: &[(String, String)],
    origin: &Path,
) -> Result<(PathBuf, Head), ModelError> {
    let mut mlm_dir = None;
    let mut head = None;
    for (path, kind) in modules {
        let d = if path.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(path)
        };
        let name = kind.rsplit('.').next().unwrap_or(kind);
        match name {
            "MLMTransformer" | "Transformer" => mlm_dir = Some(d),
            "SpladePooling" => {
                let p = d.join("config.json");
                let cfg: PoolingConfig = serde_json::from_str(&read(&p)?)
                    .map_err(|e| format_err(&p, format!("line {}: {e}", e.line())))?;
                head = Some(splade_head(&cfg, &p)?);
            }
            other => {
                return Err(ModelError::Unsupported(format!(
                    "{}: module {other} ({kind}); csplade reads a fill-mask Transformer with SpladePooling, or a Router of those and a SparseStaticEmbedding",
                    origin.display()
                )))
            }
        }
    }
    match (mlm_dir, head) {
        (Some(m), Some(h)) => Ok((m, h)),
        _ => Err(format_err(
            origin,
            "a sparse encoder needs a fill-mask Transformer (MLMTransformer) and SpladePooling",
        )),
    }
}

pub(super) fn layout(dir: &Path) -> Result<Layout, ModelError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        // A plain masked-LM directory: SPLADE's max pooling; OpenSearch's
        // layout (idf.json beside it) zeroes special tokens.
        let idf = dir.join("idf.json");
        let inference_free = idf.is_file();
        return Ok(Layout {
            mlm_dir: dir.to_path_buf(),
            head: Head::Splade {
                sum: false,
                double_log: false,
                zero_special: inference_free,
            },
            query: inference_free.then_some(QuerySide::IdfJson(idf)),
        });
    }
    let modules: Vec<StModule> = serde_json::from_str(&read(&modules_path)?)
        .map_err(|e| format_err(&modules_path, format!("line {}: {e}", e.line())))?;
    let list: Vec<(String, String)> = modules.into_iter().map(|m| (m.path, m.kind)).collect();
    let router = list
        .iter()
        .any(|(_, k)| k.ends_with(".Router") || k == "Router");
    if !router {
        let (mlm_dir, head) = st_modules(dir, &list, &modules_path)?;
        return Ok(Layout {
            mlm_dir,
            head,
            query: None,
        });
    }
    let rc_path = dir.join("router_config.json");
    let rc: RouterConfig = serde_json::from_str(&read(&rc_path)?)
        .map_err(|e| format_err(&rc_path, format!("line {}: {e}", e.line())))?;
    let route = |name: &str| -> Result<Vec<(String, String)>, ModelError> {
        let mods = rc
            .structure
            .get(name)
            .ok_or_else(|| format_err(&rc_path, format!("no {name:?} route")))?;
        Ok(mods
            .iter()
            .map(|m| {
                let kind = m.split('_').next_back().unwrap_or(m).to_string();
                (m.clone(), kind)
            })
            .collect())
    };
    let (mlm_dir, head) = st_modules(dir, &route("document")?, &rc_path)?;
    let query = route("query")?;
    let query = match query.as_slice() {
        [(path, kind)] if kind == "SparseStaticEmbedding" => QuerySide::Static(dir.join(path)),
        _ => {
            return Err(ModelError::Unsupported(format!(
                "{}: the query route is {:?}; csplade reads one SparseStaticEmbedding (an inference-free query side)",
                rc_path.display(),
                query.iter().map(|q| q.1.as_str()).collect::<Vec<_>>()
            )))
        }
    };
    Ok(Layout {
        mlm_dir,
        head,
        query: Some(query),
    })
}

/// The safetensors weights of a directory, refusing pickled checkpoints.
pub(super) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let mut weights: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    weights.sort();
    if weights.is_empty() {
        let pickled = dir.join("pytorch_model.bin");
        return Err(format_err(
            dir,
            if pickled.is_file() {
                "only pytorch_model.bin (a pickle, which csplade does not execute); convert it with transformers: AutoModelForMaskedLM.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)".to_string()
            } else {
                "no *.safetensors weights".to_string()
            },
        ));
    }
    Ok(weights)
}

/// A tokenizer: `tokenizer.json`, else a WordPiece one built from `vocab.txt`.
pub(super) fn tokenizer(dir: &Path) -> Result<TextTokenizer, ModelError> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return TextTokenizer::from_file(&json);
    }
    let vocab = dir.join("vocab.txt");
    if vocab.is_file() {
        return TextTokenizer::from_wordpiece_vocab(&vocab);
    }
    Err(ModelError::Tokenizer(format!(
        "{}: neither tokenizer.json nor vocab.txt",
        dir.display()
    )))
}

/// A `SparseStaticEmbedding` directory's `weight` over the vocabulary.
pub(super) fn static_table(
    dir: &Path,
    tok: &TextTokenizer,
    h: &mut Sha256,
) -> Result<Vec<f32>, ModelError> {
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).map_err(|source| ModelError::Io {
        path: file.clone(),
        source,
    })?;
    h.update(&bytes);
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| format_err(&file, format!("reading tensors: {e}")))?;
    let w = tensors
        .get("weight")
        .ok_or_else(|| format_err(&file, "no `weight` tensor"))?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()
        .map_err(|e| format_err(&file, format!("`weight` is not a vector: {e}")))?;
    if w.len() != tok.vocab_size() {
        return Err(format_err(
            &file,
            format!(
                "{} query weights for a vocabulary of {}",
                w.len(),
                tok.vocab_size()
            ),
        ));
    }
    if let Some(i) = w.iter().position(|x| !x.is_finite() || *x < 0.0) {
        return Err(format_err(
            &file,
            format!("weight[{i}] is {}: must be finite and ≥ 0", w[i]),
        ));
    }
    Ok(w)
}

/// OpenSearch's `idf.json`: token → query weight; a token the vocabulary
/// lacks is an error naming it.
pub(super) fn idf_table(
    file: &Path,
    tok: &TextTokenizer,
    h: &mut Sha256,
) -> Result<Vec<f32>, ModelError> {
    let text = read(file)?;
    h.update(text.as_bytes());
    let map: std::collections::BTreeMap<String, f64> =
        serde_json::from_str(&text).map_err(|e| {
            format_err(
                file,
                format!("line {}: {e} (expected {{\"token\": weight}})", e.line()),
            )
        })?;
    let mut w = vec![0f32; tok.vocab_size()];
    for (t, x) in map {
        let id = tok.inner().token_to_id(&t).ok_or_else(|| {
            format_err(
                file,
                format!("token {t:?} is not in the model's vocabulary"),
            )
        })?;
        if !x.is_finite() || x < 0.0 {
            return Err(format_err(
                file,
                format!("{t:?}: weight {x} must be finite and ≥ 0"),
            ));
        }
        w[id as usize] = x as f32;
    }
    Ok(w)
}
