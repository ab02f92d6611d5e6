//! Checkpoints of a training run: trainable parameters, AdamW moments, the
//! step reached and the run's configuration, written atomically (a fresh
//! directory renamed into place) so a killed run never leaves a half-written
//! checkpoint, and `--resume` continues bit-for-bit. `state.json` records
//! the sha256 of `state.safetensors`, checked before it is restored: a
//! checkpoint changed on disk is refused, never trained on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::optim::AdamW;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// What a checkpoint records besides tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub phase: String,
    /// Optimizer steps completed.
    pub step: usize,
    pub tokens_seen: u64,
    pub elapsed_s: f64,
    pub config: TrainConfig,
    /// What the run started from besides the base, by sha256: `init_adapter`
    /// and `teacher` (the recipe names them by path only), so that a resume
    /// whose input was replaced at the same path is refused.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub inputs: std::collections::BTreeMap<String, String>,
}

pub fn dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `params`, the optimizer and `state` under `out/checkpoint`.
pub fn save(
    out: &Path,
    params: &[(String, Var)],
    opt: &AdamW,
    state: &RunState,
) -> Result<(), CheckpointError> {
    let fresh = out.join("checkpoint.tmp");
    let target = dir(out);
    let old = out.join("checkpoint.old");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(io(&fresh))?;
    }
    std::fs::create_dir_all(&fresh).map_err(io(&fresh))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (i, (name, p)) in params.iter().enumerate() {
        let cpu = |t: &Tensor| t.to_device(&Device::Cpu);
        tensors.insert(format!("param.{name}"), cpu(p.as_tensor())?);
        tensors.insert(format!("adam_m.{name}"), cpu(&opt.m[i])?);
        tensors.insert(format!("adam_v.{name}"), cpu(&opt.v[i])?);
    }
    let tensor_file = fresh.join("state.safetensors");
    candle_core::safetensors::save(&tensors, &tensor_file)?;
    let mut json = serde_json::to_value(state).map_err(|e| CheckpointError::Invalid {
        path: fresh.clone(),
        msg: e.to_string(),
    })?;
    json["adam_t"] = opt.t.into();
    json["tensors_sha256"] = crate::model::fetch::sha256_file(&tensor_file)
        .map_err(|e| CheckpointError::Invalid {
            path: tensor_file.clone(),
            msg: e.to_string(),
        })?
        .into();
    let state_file = fresh.join("state.json");
    std::fs::write(&state_file, json.to_string()).map_err(io(&state_file))?;
    for f in [&tensor_file, &state_file] {
        std::fs::File::open(f)
            .and_then(|h| h.sync_all())
            .map_err(io(f))?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if target.exists() {
        std::fs::rename(&target, &old).map_err(io(&target))?;
    }
    std::fs::rename(&fresh, &target).map_err(io(&fresh))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// The newest complete checkpoint under `out`, if any (a crash between the
/// two renames of [`save`] leaves the previous one as `checkpoint.old`).
pub fn latest(out: &Path) -> Option<PathBuf> {
    [dir(out), out.join("checkpoint.old")]
        .into_iter()
        .find(|d| d.join("state.json").is_file() && d.join("state.safetensors").is_file())
}

/// Restore parameters and optimizer from checkpoint directory `ckpt`; returns its state.
pub fn restore(
    ckpt: &Path,
    params: &[(String, Var)],
    opt: &mut AdamW,
) -> Result<RunState, CheckpointError> {
    let invalid = |msg: String| CheckpointError::Invalid {
        path: ckpt.to_path_buf(),
        msg,
    };
    let state_file = ckpt.join("state.json");
    let text = std::fs::read_to_string(&state_file).map_err(io(&state_file))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("state.json: {e}")))?;
    let state: RunState =
        serde_json::from_value(json.clone()).map_err(|e| invalid(format!("state.json: {e}")))?;
    let tensor_file = ckpt.join("state.safetensors");
    // Read once: hashed, then parsed from the same bytes.
    let bytes = std::fs::read(&tensor_file).map_err(io(&tensor_file))?;
    // Checkpoints of earlier csplade record no checksum and are taken as they are.
    if let Some(expected) = json["tensors_sha256"].as_str() {
        use sha2::Digest;
        let actual = format!("{:x}", sha2::Sha256::digest(&bytes));
        if actual != expected {
            return Err(invalid(
                "state.safetensors changed after it was written (checksum mismatch): delete the checkpoint directory to start over, or restore it from a copy".into(),
            ));
        }
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    for (i, (name, p)) in params.iter().enumerate() {
        let get = |k: String| {
            tensors.get(&k).cloned().ok_or_else(|| {
                invalid(format!(
                    "no tensor {k}: the checkpoint belongs to a different adapter layout"
                ))
            })
        };
        let value = get(format!("param.{name}"))?;
        if value.dims() != p.as_tensor().dims() {
            return Err(invalid(format!(
                "{name}: shape {:?}, expected {:?}",
                value.dims(),
                p.as_tensor().dims()
            )));
        }
        let dev = p.as_tensor().device().clone();
        p.set(&value.to_device(&dev)?)?;
        opt.m[i] = get(format!("adam_m.{name}"))?.to_device(&dev)?;
        opt.v[i] = get(format!("adam_v.{name}"))?.to_device(&dev)?;
    }
    opt.t = json["adam_t"].as_u64().unwrap_or(state.step as u64) as usize;
    Ok(state)
}
