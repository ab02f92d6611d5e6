//! The source tree reads as the pipeline, and imports only go one way: a
//! module may use the modules before it, never those after it. A cycle (the
//! model importing the quantizer that imports the model, say) fails here
//! with the file and the import that breaks the order.

use std::path::Path;

/// The pipeline, first to last (analyses that combine earlier stages sit
/// after what they combine).
const ORDER: &[&str] = &[
    "data", "model", "encode", "index", "search", "eval", "failures", "export", "train", "quant",
    "compare", "tradeoff", "tasks", "explore", "tui",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_import_only_earlier_stages() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(stage) = ORDER.iter().position(|m| *m == top) else {
            continue;
        };
        checked += 1;
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(u) = ORDER.iter().position(|m| *m == used) {
                    if u > stage {
                        broken.push(format!("{}:{}: {top} uses {used}", rel.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} files checked");
    assert!(
        broken.is_empty(),
        "imports against the pipeline:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_engine_never_names_the_terminal() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        if rel.starts_with("tui") || rel.starts_with("cli") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for word in ["ratatui", "crossterm"] {
            assert!(!text.contains(word), "{} names {word}", rel.display());
        }
    }
}

#[test]
fn the_explorer_reaches_the_engine_only_through_explore_and_the_task_runner() {
    let tui = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tui");
    let mut files = Vec::new();
    rust_files(&tui, &mut files);
    assert!(files.len() > 5);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    ["explore", "tasks", "tui"].contains(&used.as_str()),
                    "{}:{}: the explorer uses crate::{used} directly",
                    f.display(),
                    n + 1
                );
            }
        }
    }
}
