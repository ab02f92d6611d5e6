//! The Python references the benches time csplade against (PyTorch,
//! transformers, peft, sentence-transformers): checking that an interpreter
//! can import them, and running a reference script offline on a request
//! file.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Fail with what to install unless `py` can `import {modules}`; `needs`
/// names them for the message.
pub fn require(py: &Path, modules: &str, needs: &str) -> Result<()> {
    let probe = Command::new(py)
        .args(["-c", &format!("import {modules}")])
        .output()
        .with_context(|| format!("running {} for the PyTorch reference", py.display()))?;
    if !probe.status.success() {
        let err = String::from_utf8_lossy(&probe.stderr);
        bail!(
            "the PyTorch reference needs {needs} importable by {}: {}; install them with pip, or name another interpreter with --python",
            py.display(),
            err.trim().lines().last().unwrap_or("import failed")
        );
    }
    Ok(())
}

/// `program script request result`, with the hub and its progress bars off:
/// every model a reference reads is a local file.
pub fn offline(program: &Path, script: &Path, request: &Path, result: &Path) -> Command {
    let mut c = Command::new(program);
    hub_off(&mut c).arg(script).arg(request).arg(result);
    c
}

/// The environment that keeps transformers off the hub and quiet.
pub fn hub_off(c: &mut Command) -> &mut Command {
    c.env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("TQDM_DISABLE", "1")
}
