//! The source tree reads as the pipeline, and imports only go one way: a
//! module may use the modules before it, never those after it. A cycle (the
//! model importing the quantizer that imports the model, say) fails here
//! with the file and the import that breaks the order. Every file is parsed
//! with `syn`, so grouped (`use crate::{a, b}`), nested and multi-line
//! imports, `super::` paths that climb to the crate root, and paths written
//! inline in the code are all seen.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The pipeline, first to last (analyses that combine earlier stages sit
/// after what they combine).
const ORDER: &[&str] = &[
    "data", "model", "encode", "index", "search", "eval", "failures", "export", "train", "quant",
    "compare", "tradeoff", "tasks", "explore", "tui",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`search/seismic/cache.rs` →
/// `[search, seismic, cache]`; a `mod.rs` is its directory's module).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// Every top-level module a file names, with the line: from `use` trees
/// and from paths in its code, `crate::` and `super::` alike.
struct Uses {
    module: Vec<String>,
    found: Vec<(String, usize)>,
}

impl Uses {
    /// The crate's top-level module a path starting with `segments` names,
    /// if it leaves the crate root.
    fn top_module(&self, segments: &[String]) -> Option<String> {
        match segments.first().map(String::as_str) {
            Some("crate") => segments.get(1).cloned(),
            Some("super") => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let mut at = self.module.clone();
                for _ in 0..ups {
                    at.pop()?;
                }
                at.first().cloned().or_else(|| segments.get(ups).cloned())
            }
            _ => None,
        }
    }

    fn record(&mut self, segments: &[String], line: usize) {
        if let Some(m) = self.top_module(segments) {
            self.found.push((m, line));
        }
    }

    /// Walk a `use` tree, recording each full path it imports.
    fn tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(prefix, &p.tree, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.record(&prefix.clone(), line);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.record(&prefix.clone(), line);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.record(&prefix.clone(), line),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.tree(prefix, t, line);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Uses {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let line = u.use_token.span.start().line;
        self.tree(&mut Vec::new(), &u.tree, line);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = p
            .segments
            .first()
            .map_or(0, |s| s.ident.span().start().line);
        self.record(&segments, line);
        syn::visit::visit_path(self, p);
    }
}

/// Each file under `dir` (relative to `src/`) with the top-level modules it
/// names, parsed.
fn uses_under(dir: &str) -> Vec<(PathBuf, Vec<(String, usize)>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join(dir), &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().to_path_buf();
            let text = std::fs::read_to_string(&f).unwrap();
            let ast = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{}: not parsable: {e}", rel.display()));
            let mut uses = Uses {
                module: module_path(&rel),
                found: Vec::new(),
            };
            uses.visit_file(&ast);
            (rel, uses.found)
        })
        .collect()
}

#[test]
fn modules_import_only_earlier_stages() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for (rel, found) in uses_under("") {
        let top = module_path(&rel).first().cloned().unwrap_or_default();
        let Some(stage) = ORDER.iter().position(|m| *m == top) else {
            continue;
        };
        checked += 1;
        for (used, line) in found {
            if ORDER
                .iter()
                .position(|m| *m == used)
                .is_some_and(|u| u > stage)
            {
                broken.push(format!("{}:{line}: {top} uses {used}", rel.display()));
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
fn the_parser_sees_grouped_nested_and_relative_imports() {
    let text = "use crate::{data, index::{self, build}};\n\
                use super::super::tui::app;\n\
                fn f() { crate::quant::run(); }\n";
    let mut uses = Uses {
        module: vec!["search".into(), "seismic".into()],
        found: Vec::new(),
    };
    uses.visit_file(&syn::parse_file(text).unwrap());
    let mut named: Vec<String> = uses.found.into_iter().map(|(m, _)| m).collect();
    named.sort();
    named.dedup();
    assert_eq!(named, ["data", "index", "quant", "tui"]);
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
    let found = uses_under("tui");
    assert!(found.len() > 5);
    for (rel, uses) in found {
        for (used, line) in uses {
            assert!(
                ["explore", "tasks", "tui"].contains(&used.as_str()),
                "{}:{line}: the explorer uses crate::{used} directly",
                rel.display()
            );
        }
    }
}
