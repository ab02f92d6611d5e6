//! The one way csplade writes a file: into a uniquely named temporary file
//! in the same directory, fsync'd, renamed into place, the directory
//! fsync'd. A crash leaves the old file or the new one, never half of one,
//! and two processes never share a temporary name.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::{OutputError, OutputKind};

/// Write `bytes` to `path` atomically. For files inside an output csplade
/// has already claimed (an index, a run directory, a cache).
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_with(path, |w| w.write_all(bytes))
}

/// Write through `f` to `path` atomically (see [`write_new`]).
pub fn write_with(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| OutputError::io(&dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".csplade-tmp")
        .tempfile_in(&dir)
        .map_err(|e| OutputError::io(&dir, e))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut w = BufWriter::new(file);
    f(&mut w)
        .and_then(|_| w.flush())
        .and_then(|_| w.get_ref().sync_all())
        .map_err(|e| OutputError::io(path, e))?;
    drop(w);
    tmp_path
        .persist(path)
        .map_err(|e| OutputError::io(path, e.error))?;
    // The rename itself is durable only once the directory is.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Write the file output `out` of `kind` through `f`: refused unless the
/// output policy allows it (see [`super::check_file`]), locked while it is
/// written, atomic, then recorded as csplade's.
pub fn write_file(
    out: &Path,
    kind: &OutputKind,
    inputs: &[&Path],
    command: &str,
    f: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    let _lock = super::lock::acquire(out, command)?;
    super::check_file(out, kind, inputs)?;
    write_with(out, f)?;
    super::manifest::record_file(out, kind)
}
