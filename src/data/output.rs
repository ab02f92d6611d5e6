//! Where a command may write. An output directory is replaced only when it
//! is absent, empty, or already what the command writes (recognised by its
//! marker files); it is never inside an input collection nor a parent of
//! one. Anything else is refused with what is there, so a mistyped `--out`
//! never deletes a user's files.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}; csplade only writes over {what} — choose another output path", path.display())]
pub struct OutputRefused {
    pub path: PathBuf,
    pub reason: String,
    pub what: &'static str,
}

/// What a command writes, and the files that identify it.
pub struct OutputKind {
    pub what: &'static str,
    pub markers: &'static [&'static str],
}

/// `csplade index` (complete, or a partial build's journal).
pub const INDEX: OutputKind = OutputKind {
    what: "a csplade index or its partial build",
    markers: &["meta.json", "journal.bin", "progress.json"],
};

/// `csplade train --out`.
pub const TRAINING_RUN: OutputKind = OutputKind {
    what: "a csplade training run",
    markers: &[
        "progress.jsonl",
        "checkpoint",
        "checkpoint.old",
        "batches.bin.gz",
        "adapter.safetensors",
    ],
};

/// The file `csplade data manpages` leaves in the collections it writes.
pub const MANPAGES_MARKER: &str = ".csplade-manpages";

/// `csplade data manpages --out`.
pub const MANPAGES: OutputKind = OutputKind {
    what: "a man-page collection csplade wrote",
    markers: &[MANPAGES_MARKER],
};

/// `path` made absolute with symbolic links resolved, also when its last
/// components do not exist yet.
fn resolve(path: &Path) -> PathBuf {
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

/// May a command writing `kind` replace `out`, given it reads `inputs`?
pub fn check(out: &Path, kind: &OutputKind, inputs: &[&Path]) -> Result<(), OutputRefused> {
    let refuse = |reason: String| OutputRefused {
        path: out.to_path_buf(),
        reason,
        what: kind.what,
    };
    let target = resolve(out);
    for input in inputs {
        let input_abs = resolve(input);
        if target.starts_with(&input_abs) {
            return Err(refuse(format!(
                "it is inside the input {}",
                input.display()
            )));
        }
        if input_abs.starts_with(&target) {
            return Err(refuse(format!("it contains the input {}", input.display())));
        }
    }
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if !meta.is_dir() {
        return Err(refuse("it exists and is not a directory".into()));
    }
    let mut names: Vec<String> = std::fs::read_dir(out)
        .map_err(|e| refuse(format!("cannot be listed: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    if names.is_empty() || names.iter().any(|n| kind.markers.contains(&n.as_str())) {
        return Ok(());
    }
    names.sort();
    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    let more = match names.len().saturating_sub(3) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Err(refuse(format!(
        "it holds other files ({}{more})",
        shown.join(", ")
    )))
}

/// May `out` be replaced by a file whose first bytes are `magic`?
pub fn check_file(out: &Path, magic: &[u8], what: &'static str) -> Result<(), OutputRefused> {
    let refuse = |reason: String| OutputRefused {
        path: out.to_path_buf(),
        reason,
        what,
    };
    match std::fs::symlink_metadata(out) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => Err(refuse("it is a directory".into())),
        Ok(_) => {
            let mut head = vec![0u8; magic.len()];
            let read = std::fs::File::open(out)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
            if read.is_ok() && head == magic {
                Ok(())
            } else {
                Err(refuse("it exists and is not one".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absent_empty_or_own_outputs_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(check(&d.join("new/index"), &INDEX, &[]).is_ok());
        std::fs::create_dir(d.join("empty")).unwrap();
        assert!(check(&d.join("empty"), &INDEX, &[]).is_ok());
        std::fs::create_dir(d.join("thesis")).unwrap();
        std::fs::write(d.join("thesis/thesis.txt"), "years of work").unwrap();
        let e = check(&d.join("thesis"), &INDEX, &[]).unwrap_err();
        assert!(e.to_string().contains("thesis.txt"), "{e}");
        std::fs::create_dir(d.join("old")).unwrap();
        std::fs::write(d.join("old/meta.json"), "{}").unwrap();
        assert!(check(&d.join("old"), &INDEX, &[]).is_ok());
        assert!(check(&d.join("old"), &TRAINING_RUN, &[]).is_err());
        // Inside the input, or containing it.
        let ds = d.join("ds");
        std::fs::create_dir(&ds).unwrap();
        assert!(check(&ds, &INDEX, &[&ds]).is_err());
        assert!(check(&ds.join("idx"), &INDEX, &[&ds]).is_err());
        assert!(check(d, &INDEX, &[&ds]).is_err());
        assert!(check(&d.join("elsewhere"), &INDEX, &[&ds]).is_ok());
        // Files: replaced only when they are what is written.
        std::fs::write(d.join("a.gguf"), b"GGUF....").unwrap();
        std::fs::write(d.join("notes.gguf"), b"my notes").unwrap();
        assert!(check_file(&d.join("a.gguf"), b"GGUF", "a GGUF file").is_ok());
        assert!(check_file(&d.join("notes.gguf"), b"GGUF", "a GGUF file").is_err());
        assert!(check_file(&d.join("new.gguf"), b"GGUF", "a GGUF file").is_ok());
    }
}
