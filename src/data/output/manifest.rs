//! The proof that csplade wrote an output: a manifest inside each directory
//! output, and a registry of the file outputs in each directory that holds
//! some (kind, length, modification time).

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{OutputError, OutputKind};

/// Inside every directory csplade writes.
pub const DIR_MANIFEST: &str = ".csplade-output.json";
/// Beside the files csplade writes, one per directory.
pub const FILE_REGISTRY: &str = ".csplade-outputs.json";

#[derive(Serialize, Deserialize)]
struct DirManifest {
    kind: String,
    csplade: String,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
struct FileEntry {
    kind: String,
    len: u64,
    modified_ns: u128,
}

/// The kind recorded in `dir`'s manifest, if csplade wrote one.
pub(super) fn dir_kind(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(DIR_MANIFEST)).ok()?;
    serde_json::from_str::<DirManifest>(&text)
        .ok()
        .map(|m| m.kind)
}

/// Record `dir` as csplade's `kind` output.
pub fn mark_dir(dir: &Path, kind: &OutputKind) -> Result<(), OutputError> {
    let m = DirManifest {
        kind: kind.tag.into(),
        csplade: env!("CARGO_PKG_VERSION").into(),
    };
    let text = serde_json::to_string(&m).unwrap_or_default();
    super::write_new(&dir.join(DIR_MANIFEST), text.as_bytes())
}

fn entry_of(meta: &std::fs::Metadata, kind: &OutputKind) -> FileEntry {
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    FileEntry {
        kind: kind.tag.into(),
        len: meta.len(),
        modified_ns,
    }
}

fn registry_path(file: &Path) -> Option<(std::path::PathBuf, String)> {
    let name = file.file_name()?.to_string_lossy().to_string();
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    Some((dir.join(FILE_REGISTRY), name))
}

/// Is `file` (whose metadata is `meta`) recorded as csplade's `kind`
/// output, unchanged since it was written?
pub(super) fn file_is(file: &Path, kind: &OutputKind, meta: &std::fs::Metadata) -> bool {
    let Some((registry, name)) = registry_path(file) else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(registry) else {
        return false;
    };
    let Ok(entries) = serde_json::from_str::<BTreeMap<String, FileEntry>>(&text) else {
        return false;
    };
    entries.get(&name) == Some(&entry_of(meta, kind))
}

/// Record `file`, just written, as csplade's `kind` output. The registry is
/// read, updated and rewritten under an exclusive lock, so two commands
/// writing into one directory do not lose each other's entries.
pub(super) fn record_file(file: &Path, kind: &OutputKind) -> Result<(), OutputError> {
    let Some((registry, name)) = registry_path(file) else {
        return Ok(());
    };
    let meta = std::fs::metadata(file).map_err(|e| OutputError::io(file, e))?;
    let io = |e| OutputError::io(&registry, e);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&registry)
        .map_err(io)?;
    f.lock().map_err(io)?;
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(io)?;
    // A registry that no longer parses proves nothing: start it again.
    let mut entries: BTreeMap<String, FileEntry> = serde_json::from_str(&text).unwrap_or_default();
    entries.retain(|n, _| n == &name || registry.with_file_name(n).exists());
    entries.insert(name, entry_of(&meta, kind));
    let json = serde_json::to_string_pretty(&entries).unwrap_or_default();
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    f.write_all(json.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}
