//! Killed for real: the release binary is stopped with SIGKILL in the middle
//! of an index build and of a training run, then rerun. The results must equal
//! an uninterrupted run's — the index's vectors byte for byte, the training's
//! f32 parameters and AdamW moments bit for bit — also after a torn journal
//! write and after a kill between finishing a build and publishing it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csplade"))
}

/// A collection of `n` random-word documents, a tiny model, and the
/// directory they live in.
struct Setup {
    dir: tempfile::TempDir,
    corpus: PathBuf,
    model: PathBuf,
}

fn setup(n: usize) -> Setup {
    const WORDS: &[&str] = &[
        "otter", "river", "stone", "bank", "heat", "theory", "water", "night", "fish", "thin",
    ];
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("ds");
    common::RandomCorpus {
        words: WORDS,
        seed: 5,
        min_words: 4,
        spread: 30,
        query_every: n,
        titled: false,
    }
    .write(&corpus, n);
    csplade::model::tiny::write_tiny_model(&dir.path().join("m"), 4).unwrap();
    let model = dir.path().join("m/tiny.gguf");
    Setup { dir, corpus, model }
}

impl Setup {
    /// An uninterrupted build into `name`: the reference.
    fn whole(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        assert!(index_cmd(&self.model, &self.corpus, &out)
            .status()
            .unwrap()
            .success());
        out
    }
}

fn index_cmd(model: &Path, corpus: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.arg("index")
        .arg("--model")
        .arg(model)
        .arg("--corpus")
        .arg(corpus)
        .arg("--out")
        .arg(out)
        .args(["--commit-every", "1", "--batch", "1", "--variant", "echo"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Wait until `ready()` or the process ends; then SIGKILL it. Returns
/// whether it was still running when killed.
fn kill_when(mut child: Child, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    panic!("the process never reached the kill point");
}

fn documents_done(stage: &Path) -> usize {
    std::fs::read_to_string(stage.join("progress.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["done"].as_u64())
        .unwrap_or(0) as usize
}

#[test]
fn index_builds_killed_at_any_point_resume_to_the_same_vectors() {
    let set = setup(300);
    let (dir, corpus, model) = (&set.dir, &set.corpus, &set.model);
    let whole = set.whole("whole");
    let reference = std::fs::read(whole.join("vectors.bin")).unwrap();
    let mut killed_mid_build = 0;
    for (trial, at) in [5usize, 60, 150, 299].into_iter().enumerate() {
        let out = dir.path().join(format!("killed-{trial}"));
        let stage = csplade::index::build::staging_dir(&out);
        let child = index_cmd(model, corpus, &out).spawn().unwrap();
        if kill_when(child, || documents_done(&stage) >= at) {
            killed_mid_build += 1;
            assert!(
                !out.join("meta.json").exists(),
                "a killed build published an index"
            );
            if trial == 1 {
                // A write torn by the kill: half a record after the last commit.
                let mut j = std::fs::OpenOptions::new()
                    .append(true)
                    .open(stage.join("journal.bin"))
                    .unwrap();
                std::io::Write::write_all(&mut j, &[7, 0, 0, 0, 200, 1]).unwrap();
            }
        }
        assert!(index_cmd(model, corpus, &out).status().unwrap().success());
        assert_eq!(
            std::fs::read(out.join("vectors.bin")).unwrap(),
            reference,
            "trial {trial}: resumed vectors differ"
        );
        assert!(!stage.exists());
    }
    assert!(
        killed_mid_build >= 3,
        "only {killed_mid_build} kills landed mid-build"
    );
}

/// `--stop-after N` ends a run after N commits, exit 0, nothing published;
/// each rerun goes N further, and the last one publishes the index an
/// uninterrupted build writes.
#[test]
fn builds_stopped_by_stop_after_resume_to_the_same_vectors() {
    let set = setup(40);
    let (dir, corpus, model) = (&set.dir, &set.corpus, &set.model);
    let whole = set.whole("whole");
    let out = dir.path().join("stopped");
    let stage = csplade::index::build::staging_dir(&out);
    let mut runs = 0;
    while !out.join("meta.json").exists() {
        let o = index_cmd(model, corpus, &out)
            .args(["--stop-after", "15"])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        runs += 1;
        if !out.join("meta.json").exists() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("stopped after 15 commits as asked"), "{err}");
            assert_eq!(documents_done(&stage), 15 * runs);
        }
        assert!(runs <= 3, "40 documents at 15 a run take three runs");
    }
    assert_eq!(runs, 3);
    assert_eq!(
        std::fs::read(out.join("vectors.bin")).unwrap(),
        std::fs::read(whole.join("vectors.bin")).unwrap()
    );
}

/// A journal changed after it was committed (a disk error, an edit) fails
/// its checksum on resume: the build says so and starts over, and the
/// index it publishes is the uninterrupted build's.
#[test]
fn a_damaged_journal_is_detected_on_resume_and_the_build_starts_over() {
    let set = setup(30);
    let (dir, corpus, model) = (&set.dir, &set.corpus, &set.model);
    let whole = set.whole("whole");
    let out = dir.path().join("damaged");
    let stage = csplade::index::build::staging_dir(&out);
    assert!(index_cmd(model, corpus, &out)
        .args(["--stop-after", "10"])
        .status()
        .unwrap()
        .success());
    assert_eq!(documents_done(&stage), 10);
    // A weight inside the first committed record, changed in place.
    let journal = stage.join("journal.bin");
    let mut bytes = std::fs::read(&journal).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x04;
    std::fs::write(&journal, &bytes).unwrap();
    let o = index_cmd(model, corpus, &out)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("damaged (checksum mismatch); starting over"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out.join("vectors.bin")).unwrap(),
        std::fs::read(whole.join("vectors.bin")).unwrap()
    );
}

#[test]
fn a_build_killed_between_finishing_and_publishing_is_published_not_redone() {
    let set = setup(40);
    let (dir, corpus, model) = (&set.dir, &set.corpus, &set.model);
    let out = dir.path().join("index");
    assert!(index_cmd(model, corpus, &out).status().unwrap().success());
    let reference = std::fs::read(out.join("vectors.bin")).unwrap();
    // The state a kill leaves after the journal is deleted and before the
    // rename: a complete staging directory and no index.
    let stage = csplade::index::build::staging_dir(&out);
    std::fs::rename(&out, &stage).unwrap();
    let o = index_cmd(model, corpus, &out)
        .arg("--progress-json")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(o.status.success());
    let events = String::from_utf8_lossy(&o.stdout);
    assert!(
        !events.contains("\"start\""),
        "the build started over: {events}"
    );
    assert!(events.contains("\"done\""), "{events}");
    assert_eq!(std::fs::read(out.join("vectors.bin")).unwrap(), reference);
    assert!(!stage.exists());
}

fn train_cmd(data: &Path, model: &Path, out: &Path, resume: bool) -> Command {
    let mut c = bin();
    c.args(["train", "contrastive", "--out"])
        .arg(out)
        .args([
            "--steps", "12", "--set", "batch=4", "--set", "lr=0.01", "--set",
        ])
        .arg("head=\"logprob:3\"")
        .args([
            "--set",
            "lora_rank=4",
            "--set",
            "checkpoint_every=1",
            "--set",
        ])
        .arg("pairs=[\"toy\"]")
        .args(["--set", "learn_term_shift=true", "--set"])
        .arg(format!("model={:?}", model.to_str().unwrap()))
        .arg("--set")
        .arg(format!("data_dir={:?}", data.to_str().unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if resume {
        c.arg("--resume");
    }
    c
}

fn checkpoint_state(run: &Path) -> Vec<(String, Vec<f32>)> {
    let t = candle_core::safetensors::load(
        run.join("checkpoint/state.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn steps_logged(run: &Path) -> usize {
    std::fs::read_to_string(run.join("progress.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn training_runs_killed_mid_run_resume_to_the_same_parameters_and_moments() {
    let dir = tempfile::tempdir().unwrap();
    common::toy_collection(&dir.path().join("toy"));
    csplade::model::tiny::write_tiny_model(&dir.path().join("m"), 11).unwrap();
    let model = dir.path().join("m/tiny.gguf");
    let data = dir.path().to_path_buf();
    let whole = dir.path().join("whole");
    assert!(train_cmd(&data, &model, &whole, false)
        .status()
        .unwrap()
        .success());
    let reference = checkpoint_state(&whole);
    assert!(reference.iter().any(|(k, _)| k.starts_with("adam_v.")));
    let mut landed = 0;
    for (trial, at) in [2usize, 7].into_iter().enumerate() {
        let run: PathBuf = dir.path().join(format!("killed-{trial}"));
        let child = train_cmd(&data, &model, &run, false).spawn().unwrap();
        if kill_when(child, || steps_logged(&run) >= at) {
            landed += 1;
            assert!(!run.join("adapter.safetensors").exists());
        }
        assert!(train_cmd(&data, &model, &run, true)
            .status()
            .unwrap()
            .success());
        let resumed = checkpoint_state(&run);
        assert_eq!(resumed.len(), reference.len());
        for ((ka, va), (kb, vb)) in reference.iter().zip(&resumed) {
            assert_eq!(ka, kb);
            assert!(
                va.iter().zip(vb).all(|(a, b)| a.to_bits() == b.to_bits()),
                "trial {trial}: {ka} differs after the kill and resume"
            );
        }
    }
    assert_eq!(landed, 2, "a kill missed the run");
}
