//! The output policy through the real binary: every flag in
//! tests/output_flags.txt (which the command line's own test keeps equal to
//! its output flags) is pointed at every kind of existing target that
//! csplade did not write there for that purpose — a user's file and
//! directory, a dataset, a FIFO, a symbolic link, the command's own input —
//! and each must be refused with the policy's message, leaving the target
//! exactly as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::snapshot;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn s(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }
}

/// Run csplade with `args`, killed (and failed) after a minute.
fn csplade(home: &Path, args: &[String]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(args)
        .env("CSPLADE_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.code(), err);
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("csplade {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tiny model, a toy collection, an index of it, two shards, a LoRA
/// adapter and an (empty) man-page root.
fn fixture() -> Fixture {
    let f = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    let d = f.dir.path();
    common::tiny(d, false);
    common::toy_collection(&d.join("toy"));
    common::lora_adapter(d);
    std::fs::create_dir(d.join("man")).unwrap();
    let index = |out: &str, shard: Option<&str>| {
        let mut args: Vec<String> = ["index", "--model", &f.s("tiny.gguf"), "--corpus"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([f.s("toy"), "--out".into(), f.s(out)]);
        if let Some(s) = shard {
            args.extend(["--shard".into(), s.into()]);
        }
        let (code, err) = csplade(d, &args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    };
    index("idx", None);
    index("s0", Some("0/2"));
    index("s1", Some("1/2"));
    f
}

/// Each output flag: the arguments around it, and the command's own input.
fn recipes(f: &Fixture) -> Vec<(&'static str, Vec<String>, PathBuf)> {
    let tiny = f.s("tiny.gguf");
    let train_set = |cmd: &'static str| -> Vec<String> {
        let data = format!("data_dir={:?}", f.s(""));
        [
            "train",
            cmd,
            "--set",
            &format!("model={tiny:?}"),
            "--set",
            &data,
            "--set",
            "pairs=[\"toy\"]",
            "--set",
            "corpora=[\"toy\"]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (idx, toy, lora) = (f.s("idx"), f.s("toy"), f.s("lora.safetensors"));
    let mut qt = v(&["train", "query-table", "--model", &tiny, "--set"]);
    qt.extend([
        format!("data_dir={:?}", f.s("")),
        "--set".into(),
        "pairs=[\"toy\"]".into(),
    ]);
    vec![
        (
            "adapter export --out",
            v(&[
                "adapter",
                "export",
                "--to",
                "peft",
                "--adapter",
                &lora,
                "--model",
                &tiny,
            ]),
            f.p("lora.safetensors"),
        ),
        (
            "adapter set-prior --out",
            v(&[
                "adapter",
                "set-prior",
                "--adapter",
                &lora,
                "--model",
                &tiny,
                "--prior",
                "idf",
            ]),
            f.p("lora.safetensors"),
        ),
        (
            "bench seismic --synthetic-out",
            v(&[
                "bench",
                "seismic",
                "--index",
                &idx,
                "--model",
                &tiny,
                "--synthetic",
                "40",
                "--queries",
                "3",
            ]),
            f.p("idx"),
        ),
        (
            "data manpages --out",
            v(&["data", "manpages", "--root", &f.s("man")]),
            f.p("man"),
        ),
        (
            "eval --run",
            v(&[
                "eval",
                "--dataset",
                &toy,
                "--split",
                "train",
                "--index",
                &idx,
                "--model",
                &tiny,
                "--system",
                "lsr",
            ]),
            f.p("toy/corpus.jsonl"),
        ),
        (
            "export --out",
            v(&[
                "export", "--index", &idx, "--format", "anserini", "--model", &tiny,
            ]),
            f.p("idx/vectors.bin"),
        ),
        (
            "index --out",
            v(&["index", "--model", &tiny, "--corpus", &toy]),
            f.p("toy"),
        ),
        (
            "index merge --out",
            v(&["index", "merge", &f.s("s0"), &f.s("s1")]),
            f.p("s0"),
        ),
        (
            "quantize --out",
            v(&["quantize", "--model", &tiny, "--precision", "q8_0"]),
            f.p("tiny.gguf"),
        ),
        ("train adapt --out", train_set("adapt"), f.p("toy")),
        (
            "train contrastive --out",
            train_set("contrastive"),
            f.p("toy"),
        ),
        ("train query-table --out", qt, f.p("toy")),
        (
            "tradeoff --csv",
            v(&[
                "tradeoff",
                "--dataset",
                &toy,
                "--split",
                "train",
                "--index",
                &idx,
                "--model",
                &tiny,
                "--encoder",
                &tiny,
                "--queries",
                "0",
            ]),
            f.p("toy/corpus.jsonl"),
        ),
    ]
}

/// The targets no output may replace, made fresh under `root`.
fn targets(root: &Path, f: &Fixture) -> Vec<(&'static str, PathBuf)> {
    std::fs::create_dir_all(root).unwrap();
    let file = root.join("notes.txt");
    std::fs::write(&file, "a user's notes").unwrap();
    let dir = root.join("thesis");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("chapter1.tex"), "years of work").unwrap();
    std::fs::write(dir.join("meta.json"), "{\"mine\": true}").unwrap();
    let dataset = root.join("dataset");
    common::toy_collection(&dataset);
    let fifo = root.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let link = root.join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let _ = f;
    vec![
        ("a user's file", file),
        ("a user's directory", dir),
        ("a dataset", dataset),
        ("a FIFO", fifo),
        ("a symbolic link", link),
    ]
}

#[test]
fn no_output_flag_replaces_what_csplade_did_not_write_there() {
    let f = fixture();
    let listed: Vec<String> = include_str!("output_flags.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let recipes = recipes(&f);
    let covered: Vec<String> = recipes.iter().map(|r| r.0.to_string()).collect();
    assert_eq!(
        covered, listed,
        "every listed output flag has a recipe here"
    );
    let mut failures = Vec::new();
    for (i, (flag, args, input)) in recipes.iter().enumerate() {
        let flag_name = flag.rsplit(' ').next().unwrap();
        let root = f.p(&format!("targets-{i}"));
        let mut cases = targets(&root, &f);
        cases.push(("the command's own input", input.clone()));
        for (kind, target) in cases {
            let watched = if kind == "a symbolic link" {
                root.clone()
            } else {
                target.clone()
            };
            let before = (snapshot(&watched), snapshot(input));
            let mut a = args.clone();
            a.extend([flag_name.to_string(), target.display().to_string()]);
            let (code, err) = csplade(f.dir.path(), &a);
            let after = (snapshot(&watched), snapshot(input));
            if code == Some(0) || !err.contains("csplade only writes over") || before != after {
                failures.push(format!(
                    "{flag} over {kind}: exit {code:?}, changed {}: {err}",
                    before != after
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn force_replaces_a_users_file_but_never_a_fifo_nor_an_input() {
    let f = fixture();
    let root = f.p("forced");
    let cases = targets(&root, &f);
    let run = |target: &Path, force: bool| {
        let mut a: Vec<String> = ["eval", "--dataset", &f.s("toy"), "--split", "train"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend([
            "--index".into(),
            f.s("idx"),
            "--model".into(),
            f.s("tiny.gguf"),
        ]);
        a.extend(["--system".into(), "lsr".into()]);
        a.extend(["--run".into(), target.display().to_string()]);
        if force {
            a.push("--force".into());
        }
        csplade(f.dir.path(), &a)
    };
    let file = &cases[0].1;
    let (code, err) = run(file, true);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(" Q0 d"), "{text}");
    // Written by csplade as a run, it is replaced without --force.
    let (code, err) = run(file, false);
    assert_eq!(code, Some(0), "{err}");
    for target in [cases[3].1.clone(), f.p("toy/corpus.jsonl")] {
        let before = snapshot(&target);
        let (code, err) = run(&target, true);
        assert_ne!(code, Some(0), "{}", target.display());
        assert!(err.contains("csplade only writes over"), "{err}");
        assert_eq!(before, snapshot(&target));
    }
}
