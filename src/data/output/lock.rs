//! Advisory locks on outputs: a build, merge, training run or export holds
//! one on its output path while it writes, and a second writer is refused
//! at once, told who holds it. The lock files live in csplade's own data
//! directory (one per output path, named by the hash of its resolved path), so nothing is left
//! beside the user's files; the operating system releases a lock when its
//! process dies, so a dead holder's lock is simply taken over.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::OutputError;

#[derive(Debug, thiserror::Error)]
#[error("{}: another csplade is writing it ({holder}); wait for it to finish or stop it", path.display())]
pub struct Locked {
    pub path: PathBuf,
    pub holder: String,
}

/// Held while an output is written; dropping it releases the lock.
#[derive(Debug)]
pub struct OutputLock {
    file: std::fs::File,
}

impl Drop for OutputLock {
    /// Unlock before the file closes: a child process forked meanwhile by
    /// another thread shares the lock's open file until it execs, and
    /// closing only this descriptor would leave the output locked until then.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// `locks/` in csplade's own directory.
fn lock_dir() -> PathBuf {
    crate::data::home_dir().join("locks")
}

/// Lock the output `out` for `command` (e.g. `index`), or say who holds it.
pub fn acquire(out: &Path, command: &str) -> Result<OutputLock, OutputError> {
    let target = super::resolve(out);
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).map_err(|e| OutputError::io(&dir, e))?;
    let hash = Sha256::digest(target.as_os_str().as_encoded_bytes());
    let path = dir.join(format!("{:x}.lock", hash));
    let io = |e| OutputError::io(&path, e);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "a process that has not said who it is".to_string(),
                h => h.to_string(),
            };
            return Err(Locked {
                path: out.to_path_buf(),
                holder,
            }
            .into());
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let who = format!(
        "pid {}, csplade {command}, started at unix time {started}, writing {}",
        std::process::id(),
        target.display()
    );
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    f.write_all(who.as_bytes()).map_err(io)?;
    Ok(OutputLock { file: f })
}
