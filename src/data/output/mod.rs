//! Where a command may write: the one output policy every path a user names
//! goes through (`--out`, `--run`, `--synthetic-out`, export sidecars,
//! adapter exports, staging directories).
//!
//! A path that exists is replaced only when csplade wrote it there for the
//! same purpose, as a manifest csplade wrote proves: `.csplade-output.json`
//! inside a directory, or the entry of a file in the `.csplade-outputs.json`
//! registry of its directory (kind, length and modification time, so a file
//! the user has since edited is not csplade's any more). Anything else is
//! refused unless `--force` is given; special files (FIFOs, devices,
//! sockets), and paths inside or holding a collection the command reads,
//! are refused even then. Writes are atomic ([`atomic`]) and every output is
//! locked while it is written ([`lock`]).

pub mod atomic;
pub mod lock;
mod manifest;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use atomic::{write_file, write_new, write_with};
pub use lock::OutputLock;
pub use manifest::{mark_dir, DIR_MANIFEST, FILE_REGISTRY};

#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}; csplade only writes over {what}{hint}", path.display())]
pub struct OutputRefused {
    pub path: PathBuf,
    pub reason: String,
    pub what: &'static str,
    /// What the user can do (`--force`, or another path).
    pub hint: &'static str,
}

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Refused(#[from] OutputRefused),
    #[error(transparent)]
    Locked(#[from] lock::Locked),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl OutputError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        OutputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a command writes: the tag its manifest records, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputKind {
    pub tag: &'static str,
    pub what: &'static str,
}

/// `csplade index` (complete, or a partial build), `index merge`, a shard.
pub const INDEX: OutputKind = OutputKind {
    tag: "index",
    what: "a csplade index or its partial build",
};
/// `csplade train … --out`, `train query-table --out`.
pub const TRAINING_RUN: OutputKind = OutputKind {
    tag: "training-run",
    what: "a csplade training run",
};
/// `csplade data manpages --out`.
pub const MANPAGES: OutputKind = OutputKind {
    tag: "manpages",
    what: "a man-page collection csplade wrote",
};
/// `bench seismic --synthetic-out`.
pub const SYNTHETIC_INDEX: OutputKind = OutputKind {
    tag: "synthetic-index",
    what: "a synthetic index csplade wrote",
};
/// `adapter export --to peft --out`.
pub const PEFT_ADAPTER: OutputKind = OutputKind {
    tag: "peft-adapter",
    what: "a PEFT adapter csplade exported",
};
/// `csplade quantize --out`.
pub const GGUF: OutputKind = OutputKind {
    tag: "gguf",
    what: "a GGUF file csplade wrote",
};
/// `adapter set-prior --out`, adapters written beside a run.
pub const ADAPTER: OutputKind = OutputKind {
    tag: "adapter",
    what: "a csplade adapter",
};
/// `eval --run`.
pub const TREC_RUN: OutputKind = OutputKind {
    tag: "trec-run",
    what: "a TREC run file csplade wrote",
};
/// `csplade export --out` (and the OpenSearch mapping beside it).
pub const EXPORT: OutputKind = OutputKind {
    tag: "export",
    what: "an index export csplade wrote",
};

/// `csplade tradeoff --csv`.
pub const TRADEOFF: OutputKind = OutputKind {
    tag: "tradeoff",
    what: "a trade-off table csplade wrote",
};

static FORCE: AtomicBool = AtomicBool::new(false);

/// `--force`: replace what csplade cannot prove it wrote (never a special
/// file, nor a collection being read). Set once by the command line.
pub fn set_force(force: bool) {
    FORCE.store(force, Ordering::SeqCst);
}

fn forced() -> bool {
    FORCE.load(Ordering::SeqCst)
}

const FORCE_HINT: &str = " — choose another path, or pass --force to replace it";
const NO_HINT: &str = " — choose another path";

/// `path` made absolute with symbolic links resolved, also when its last
/// components do not exist yet.
pub fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut missing = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(real) = at.canonicalize() {
            let mut out = real;
            for part in missing.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (at.file_name(), at.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name.to_os_string());
                at = parent;
            }
            _ => return abs,
        }
    }
}

fn refusal(out: &Path, kind: &OutputKind, reason: String, hint: &'static str) -> OutputRefused {
    OutputRefused {
        path: out.to_path_buf(),
        reason,
        what: kind.what,
        hint,
    }
}

/// Refused whatever `--force` says: inside or holding an input, or not a
/// regular file, directory or symbolic link.
fn check_always(out: &Path, kind: &OutputKind, inputs: &[&Path]) -> Result<(), OutputRefused> {
    let target = resolve(out);
    for input in inputs {
        let input_abs = resolve(input);
        let reason = if target.starts_with(&input_abs) {
            format!("it is inside the input {}", input.display())
        } else if input_abs.starts_with(&target) {
            format!("it contains the input {}", input.display())
        } else {
            continue;
        };
        return Err(refusal(out, kind, reason, NO_HINT));
    }
    if let Ok(meta) = std::fs::symlink_metadata(out) {
        let t = meta.file_type();
        if !(t.is_file() || t.is_dir() || t.is_symlink()) {
            let reason = "it is a special file (a FIFO, device or socket)".to_string();
            return Err(refusal(out, kind, reason, NO_HINT));
        }
    }
    Ok(())
}

/// May a command writing the directory output `kind` replace `out`, given
/// it reads `inputs`? Absent, empty, or marked by csplade as `kind`.
pub fn check(out: &Path, kind: &OutputKind, inputs: &[&Path]) -> Result<(), OutputRefused> {
    check_always(out, kind, inputs)?;
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let reason = if meta.file_type().is_symlink() {
        "it is a symbolic link".to_string()
    } else if !meta.is_dir() {
        "it exists and is not a directory".to_string()
    } else {
        let names = listing(out)
            .map_err(|e| refusal(out, kind, format!("it cannot be listed: {e}"), NO_HINT))?;
        let own: Vec<&String> = names
            .iter()
            .filter(|n| n.as_str() != DIR_MANIFEST)
            .collect();
        if own.is_empty() {
            return Ok(());
        }
        match manifest::dir_kind(out) {
            Some(tag) if tag == kind.tag => return Ok(()),
            Some(tag) => format!("csplade wrote it as a {tag} output, not this one"),
            None => format!(
                "it holds files csplade did not write there ({})",
                shown(&names)
            ),
        }
    };
    if forced() {
        return Ok(());
    }
    Err(refusal(out, kind, reason, FORCE_HINT))
}

/// May the file output `kind` replace `out`? Absent, or recorded in its
/// directory's registry as `kind` and unchanged since.
pub fn check_file(out: &Path, kind: &OutputKind, inputs: &[&Path]) -> Result<(), OutputRefused> {
    check_always(out, kind, inputs)?;
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let reason = if meta.file_type().is_symlink() {
        "it is a symbolic link"
    } else if meta.is_dir() {
        "it is a directory"
    } else if manifest::file_is(out, kind, &meta) {
        return Ok(());
    } else {
        "it exists and csplade did not write it there (or it changed since)"
    };
    if forced() && !meta.is_dir() {
        return Ok(());
    }
    let hint = if meta.is_dir() { NO_HINT } else { FORCE_HINT };
    Err(refusal(out, kind, reason.into(), hint))
}

fn listing(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    Ok(names)
}

fn shown(names: &[String]) -> String {
    let first: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    match names.len().saturating_sub(3) {
        0 => first.join(", "),
        n => format!("{} and {n} more", first.join(", ")),
    }
}

/// A fresh staging directory for `kind` at `stage`: what an earlier run of
/// the same command left there is removed; anything else is refused.
pub fn fresh_stage(stage: &Path, kind: &OutputKind, inputs: &[&Path]) -> Result<(), OutputError> {
    check(stage, kind, inputs)?;
    if std::fs::symlink_metadata(stage).is_ok() {
        remove_output(stage)?;
    }
    std::fs::create_dir_all(stage).map_err(|e| OutputError::io(stage, e))?;
    mark_dir(stage, kind)
}

fn remove_output(path: &Path) -> Result<(), OutputError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| OutputError::io(path, e))?;
    let done = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    done.map_err(|e| OutputError::io(path, e))
}

/// Move the complete staging directory `stage` into place at `out`,
/// replacing what [`check`] allowed there.
pub fn publish(stage: &Path, out: &Path) -> Result<(), OutputError> {
    if std::fs::symlink_metadata(out).is_ok() {
        let mut old = out.as_os_str().to_owned();
        old.push(format!(".old-{}", std::process::id()));
        let old = PathBuf::from(old);
        std::fs::rename(out, &old).map_err(|e| OutputError::io(out, e))?;
        std::fs::rename(stage, out).map_err(|e| OutputError::io(out, e))?;
        let _ = remove_output(&old);
    } else {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| OutputError::io(parent, e))?;
        }
        std::fs::rename(stage, out).map_err(|e| OutputError::io(out, e))?;
    }
    Ok(())
}

/// Check `out`, create it if needed and mark it as `kind`: a directory
/// output written in place (a training run, say).
pub fn claim_dir(out: &Path, kind: &OutputKind, inputs: &[&Path]) -> Result<(), OutputError> {
    check(out, kind, inputs)?;
    std::fs::create_dir_all(out).map_err(|e| OutputError::io(out, e))?;
    mark_dir(out, kind)
}

#[cfg(test)]
mod tests;
