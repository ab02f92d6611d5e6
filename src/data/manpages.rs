//! The demo corpus present on every machine: the system's English man pages
//! (`/usr/share/man/man1..8`, roff source, gzip or plain) rendered to plain
//! text and written in BEIR layout with known-item queries. Each page's NAME
//! description ("copy files and directories" for cp) is a query whose one
//! relevant document is that page, with the NAME section removed from it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::beir::{DataError, Document, Query};

pub struct ManpageOptions {
    pub root: PathBuf,
    pub sections: Vec<String>,
    pub max: usize,
    /// Longest document text kept, in characters.
    pub max_chars: usize,
    /// Take everyday commands first (sections 1 and 8, shortest names)
    /// instead of a spread over the alphabet.
    pub common_first: bool,
}

impl Default for ManpageOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/usr/share/man"),
            sections: (1..=8).map(|s| s.to_string()).collect(),
            max: 3000,
            max_chars: 20_000,
            common_first: false,
        }
    }
}

impl ManpageOptions {
    /// The explorer's first-run demo: 300 pages, everyday commands first
    /// (sections 1 and 8, shortest names: ls, cp, tar, ssh, …), small
    /// enough to be searchable within minutes on two cores.
    pub fn demo() -> Self {
        Self {
            max: 300,
            common_first: true,
            ..Self::default()
        }
    }
}

/// One rendered page.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub id: String,
    pub title: String,
    pub description: String,
    pub body: String,
}

/// Summary of a conversion.
#[derive(Debug, Default)]
pub struct ManpageReport {
    pub scanned: usize,
    pub written: usize,
    pub skipped_redirects: usize,
    pub skipped_unreadable: usize,
    pub skipped_no_name: usize,
    pub skipped_family: usize,
    /// Distinct NAME descriptions: the queries (pages sharing one, such as
    /// ls, dir and vdir, are all relevant to it).
    pub queries: usize,
    /// Who typeset the pages: "groff" or "csplade".
    pub renderer: &'static str,
}

/// Pages kept per `prefix_` family.
const FAMILY_CAP: usize = 10;

fn read_page(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    let raw = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out)?;
        out
    } else {
        bytes
    };
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// How pages are turned into text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renderer {
    /// The system's groff (see [`super::groff`]), falling back to csplade's
    /// own renderer for a page groff fails on.
    Groff,
    /// csplade's own roff renderer ([`super::roff::render`]).
    Builtin,
}

impl Renderer {
    /// groff where it is installed, else csplade's own.
    pub fn best() -> Self {
        if super::groff::available() {
            Renderer::Groff
        } else {
            Renderer::Builtin
        }
    }

    fn sections(self, src: &str) -> Vec<(String, String)> {
        if self == Renderer::Groff {
            if let Some(text) = super::groff::typeset(src) {
                let s = super::groff::sections(&text);
                if !s.is_empty() {
                    return s;
                }
            }
        }
        super::roff::render(src).1
    }
}

/// Parse one page with csplade's own renderer; `None` for redirects
/// (`.so`) and pages without a NAME line.
pub fn parse_page(id: &str, src: &str) -> Result<Page, &'static str> {
    parse_page_with(id, src, Renderer::Builtin)
}

/// [`parse_page`] with the given renderer.
pub fn parse_page_with(id: &str, src: &str, renderer: Renderer) -> Result<Page, &'static str> {
    if src
        .lines()
        .find(|l| !l.starts_with(".\\\"") && !l.trim().is_empty())
        .is_some_and(|l| l.starts_with(".so "))
    {
        return Err("redirect");
    }
    let sections = renderer.sections(src);
    let name_sec = sections
        .iter()
        .find(|s| s.0 == "NAME" || s.0 == "NOM" || s.0 == "NAMN")
        .ok_or("no NAME")?;
    let name_text = name_sec.1.split_whitespace().collect::<Vec<_>>().join(" ");
    let (names, desc) = [" - ", " — ", " − ", " – "]
        .iter()
        .find_map(|dash| name_text.split_once(dash))
        .ok_or("no NAME")?;
    let desc = desc.trim().trim_end_matches('.').to_string();
    if desc.is_empty() {
        return Err("no NAME");
    }
    let (stem, section) = id.rsplit_once('.').unwrap_or((id, ""));
    let title = format!(
        "{} ({section})",
        names.trim().split(',').next().unwrap_or(stem).trim()
    );
    let mut body = String::new();
    for (head, text) in &sections {
        if head == "NAME" || head == "NOM" || head == "NAMN" {
            continue;
        }
        if !head.is_empty() {
            body.push_str(head);
            body.push('\n');
        }
        body.push_str(text.trim());
        body.push('\n');
    }
    Ok(Page {
        id: id.to_string(),
        title,
        description: desc,
        body: body.trim().to_string(),
    })
}

/// Convert the machine's man pages into a BEIR collection at `out`.
pub fn convert(opts: &ManpageOptions, out: &Path) -> Result<ManpageReport, DataError> {
    let mut stage = out.as_os_str().to_owned();
    stage.push(".partial");
    let stage = PathBuf::from(stage);
    let _lock = super::output::lock::acquire(out, "data manpages")?;
    for p in [out, stage.as_path()] {
        super::output::check(p, &super::output::MANPAGES, &[&opts.root])?;
    }
    let files = page_files(opts);
    if files.is_empty() {
        return Err(DataError::Invalid {
            path: opts.root.clone(),
            msg: "no man pages found (install the man-db and manpages packages, or pass --root)"
                .into(),
        });
    }
    let (docs, descriptions, mut report) = read_pages(opts, &files);
    if docs.is_empty() {
        return Err(DataError::Invalid {
            path: opts.root.clone(),
            msg: "no page had a NAME line to turn into a query".into(),
        });
    }
    let (queries, qrels) = known_item_queries(&docs, &descriptions);
    report.queries = queries.len();
    write_collection(opts, &stage, &docs, &queries, &qrels)?;
    super::output::publish(&stage, out)?;
    Ok(report)
}

/// The page files of the chosen sections, keyed in the order they are
/// read: common commands and short names first (`common_first`), else a
/// stable spread over the alphabet.
fn page_files(opts: &ManpageOptions) -> BTreeMap<String, PathBuf> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for s in &opts.sections {
        let dir = opts.root.join(format!("man{s}"));
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !p.is_file() {
                continue;
            }
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let id = name.strip_suffix(".gz").unwrap_or(&name).to_string();
            let key = if opts.common_first {
                // Commands (1) and admin commands (8) first, short names first.
                let rank = match s.as_str() {
                    "1" => 0,
                    "8" => 1,
                    _ => 2,
                };
                format!("{rank}{:04}", id.len().min(9999))
            } else {
                // A stable spread over the alphabet: order by a hash of the name.
                format!("{:x}", Sha256::digest(id.as_bytes()))
            };
            files.insert(format!("{key}{id}"), p);
        }
    }
    files
}

/// One query per distinct NAME description, in first-seen order, with
/// every page that bears it judged relevant: (queries, (query, page) pairs).
fn known_item_queries(
    docs: &[Document],
    descriptions: &[String],
) -> (Vec<Query>, Vec<(String, String)>) {
    let mut by_text: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    let (mut queries, mut qrels) = (Vec::new(), Vec::new());
    for (d, desc) in docs.iter().zip(descriptions) {
        let qid = by_text.entry(desc.as_str()).or_insert_with(|| {
            let id = format!("q-{}", d.id);
            queries.push(Query {
                id: id.clone(),
                text: desc.clone(),
            });
            id
        });
        qrels.push((qid.clone(), d.id.clone()));
    }
    (queries, qrels)
}

/// Parse pages until `opts.max` documents: each page with a NAME line
/// and a body becomes a document; returned with its NAME description.
fn read_pages(
    opts: &ManpageOptions,
    files: &BTreeMap<String, PathBuf>,
) -> (Vec<Document>, Vec<String>, ManpageReport) {
    let renderer = Renderer::best();
    let mut report = ManpageReport {
        renderer: match renderer {
            Renderer::Groff => "groff",
            Renderer::Builtin => "csplade",
        },
        ..Default::default()
    };
    // Families of generated pages (gcloud ships 16,000 of them) would drown
    // the rest: keep at most a few pages per prefix before the first '_'.
    let mut family: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut docs = Vec::new();
    let mut queries = Vec::new();
    for path in files.values() {
        if docs.len() >= opts.max {
            break;
        }
        report.scanned += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let id = name.strip_suffix(".gz").unwrap_or(&name).to_string();
        if let Some((prefix, _)) = id.split_once('_') {
            let n = family.entry(prefix.to_string()).or_default();
            *n += 1;
            if *n > FAMILY_CAP {
                report.skipped_family += 1;
                continue;
            }
        }
        let Ok(src) = read_page(path) else {
            report.skipped_unreadable += 1;
            continue;
        };
        match parse_page_with(&id, &src, renderer) {
            Ok(p) if p.body.len() >= 40 => {
                let mut text = p.body.clone();
                if text.len() > opts.max_chars {
                    let mut cut = opts.max_chars;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                queries.push(p.description.clone());
                docs.push(Document {
                    id,
                    title: p.title,
                    text,
                });
            }
            Ok(_) | Err("no NAME") => report.skipped_no_name += 1,
            Err(_) => report.skipped_redirects += 1,
        }
    }
    report.written = docs.len();
    (docs, queries, report)
}

/// Write the collection (corpus, queries, qrels) into a fresh stage.
fn write_collection(
    opts: &ManpageOptions,
    stage: &Path,
    docs: &[Document],
    queries: &[Query],
    qrels: &[(String, String)],
) -> Result<(), DataError> {
    let io = |p: &Path, e: std::io::Error| DataError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    super::output::fresh_stage(stage, &super::output::MANPAGES, &[&opts.root])?;
    std::fs::create_dir_all(stage.join("qrels")).map_err(|e| io(stage, e))?;
    let write_jsonl = |p: PathBuf, items: Vec<String>| -> Result<(), DataError> {
        let mut text = items.join("\n");
        text.push('\n');
        super::output::write_new(&p, text.as_bytes()).map_err(|e| match e {
            super::output::OutputError::Io { path, source } => DataError::Io { path, source },
            other => DataError::Invalid {
                path: p.clone(),
                msg: other.to_string(),
            },
        })
    };
    write_jsonl(
        stage.join("corpus.jsonl"),
        docs.iter()
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .collect(),
    )?;
    write_jsonl(
        stage.join("queries.jsonl"),
        queries
            .iter()
            .map(|q| serde_json::to_string(q).unwrap_or_default())
            .collect(),
    )?;
    let mut lines = vec!["query-id\tcorpus-id\tscore".to_string()];
    lines.extend(qrels.iter().map(|(q, d)| format!("{q}\t{d}\t1")));
    write_jsonl(stage.join("qrels").join("test.tsv"), lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_man_macros_and_splits_name() {
        let src = ".\\\" comment\n.TH CP \"1\"\n.SH NAME\ncp \\- copy files and directories\n.SH SYNOPSIS\n.B cp\n[\\fI\\,OPTION\\/\\fR]... \\fISOURCE DEST\\fR\n.SH DESCRIPTION\n.PP\nCopy SOURCE to DEST.\n.TP\n\\fB\\-a\\fR, \\fB\\-\\-archive\\fR\nsame as \\fB\\-dR\\fR\n";
        let p = parse_page("cp.1", src).unwrap();
        assert_eq!(p.description, "copy files and directories");
        assert_eq!(p.title, "cp (1)");
        assert!(!p.body.contains("copy files and directories"));
        assert!(p.body.contains("Copy SOURCE to DEST."));
        assert!(p.body.contains("-a, --archive"));
        assert!(p.body.contains("[OPTION]... SOURCE DEST"));
    }

    #[test]
    fn pages_sharing_a_name_line_share_one_query() {
        let doc = |id: &str| Document {
            id: id.into(),
            title: id.into(),
            text: "text".into(),
        };
        let docs = [doc("ls.1"), doc("cp.1"), doc("dir.1"), doc("vdir.1")];
        let desc = ["list directory contents", "copy files and directories"]
            .iter()
            .chain(&["list directory contents"; 2])
            .map(|s| s.to_string())
            .collect::<Vec<_>>();
        let (queries, qrels) = known_item_queries(&docs, &desc);
        let ids: Vec<&str> = queries.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["q-ls.1", "q-cp.1"]);
        let pair = |q: &str, d: &str| (q.to_string(), d.to_string());
        assert_eq!(
            qrels,
            [
                pair("q-ls.1", "ls.1"),
                pair("q-cp.1", "cp.1"),
                pair("q-ls.1", "dir.1"),
                pair("q-ls.1", "vdir.1")
            ]
        );
    }

    #[test]
    fn renders_mdoc_and_skips_redirects() {
        let src = ".Dd May 1\n.Dt LS 1\n.Sh NAME\n.Nm ls\n.Nd list directory contents\n.Sh DESCRIPTION\nFor each operand\n.Fl l\nshows long output, see\n.Xr stat 2 .\n";
        let p = parse_page("ls.1", src).unwrap();
        assert_eq!(p.description, "list directory contents");
        assert!(p.body.contains("-l"), "{}", p.body);
        assert!(p.body.contains("stat(2)"));
        assert_eq!(parse_page("x.1", ".so man1/y.1\n"), Err("redirect"));
        assert_eq!(parse_page("x.1", ".SH SYNOPSIS\nfoo\n"), Err("no NAME"));
    }
}
