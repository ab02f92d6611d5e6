//! BEIR layout: `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl`
//! (`_id`, `text`), `qrels/<split>.tsv` (`query-id corpus-id score`).
//! Corpus and queries may also be gzip-compressed (`corpus.jsonl.gz`,
//! `queries.jsonl.gz`), as the training collections are. Malformed lines are
//! errors naming file and line.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {msg}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    #[error(transparent)]
    Output(#[from] super::output::OutputError),
}

impl From<super::output::OutputRefused> for DataError {
    fn from(e: super::output::OutputRefused) -> Self {
        DataError::Output(e.into())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub text: String,
}

impl Document {
    /// What the encoder and BM25 read: title and text joined by a space.
    pub fn full_text(&self) -> String {
        match (self.title.trim().is_empty(), self.text.trim().is_empty()) {
            (true, _) => self.text.clone(),
            (false, true) => self.title.clone(),
            _ => format!("{} {}", self.title, self.text),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Query {
    #[serde(rename = "_id")]
    pub id: String,
    pub text: String,
}

/// Relevance judgements: query id → (doc id → graded relevance).
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// `dir/name`, or `dir/name.gz` when only the compressed file exists.
pub fn collection_file(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if !plain.exists() && gz.exists() {
        gz
    } else {
        plain
    }
}

fn lines(
    path: &Path,
) -> Result<impl Iterator<Item = (usize, Result<String, DataError>)>, DataError> {
    let f = File::open(path).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let p = path.to_path_buf();
    Ok(BufReader::new(reader)
        .split(b'\n')
        .enumerate()
        .map(move |(i, l)| {
            let line = i + 1;
            let r = l
                .map_err(|e| DataError::Io {
                    path: p.clone(),
                    source: e,
                })
                .and_then(|bytes| {
                    String::from_utf8(bytes).map_err(|e| DataError::Line {
                        path: p.clone(),
                        line,
                        msg: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
                    })
                })
                .map(|s| {
                    let s = s.trim_end_matches('\r');
                    // A UTF-8 byte-order mark at the start of the file is not data.
                    let s = if line == 1 {
                        s.trim_start_matches('\u{feff}')
                    } else {
                        s
                    };
                    s.to_string()
                });
            (line, r)
        }))
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(
    path: &Path,
    id_of: impl Fn(&T) -> &str,
) -> Result<Vec<T>, DataError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (line, text) in lines(path)? {
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let item: T = serde_json::from_str(&text).map_err(|e| DataError::Line {
            path: path.to_path_buf(),
            line,
            msg: format!("malformed JSON record: {e}"),
        })?;
        let id = id_of(&item).to_string();
        if id.is_empty() {
            return Err(DataError::Line {
                path: path.to_path_buf(),
                line,
                msg: "empty _id".into(),
            });
        }
        if !seen.insert(id.clone()) {
            return Err(DataError::Line {
                path: path.to_path_buf(),
                line,
                msg: format!("duplicate _id {id:?}"),
            });
        }
        out.push(item);
    }
    Ok(out)
}

/// `corpus.jsonl` (or `corpus.jsonl.gz`); an empty corpus is an error.
pub fn read_corpus(dir: &Path) -> Result<Vec<Document>, DataError> {
    let path = collection_file(dir, "corpus.jsonl");
    let docs = read_jsonl::<Document>(&path, |d| &d.id)?;
    if docs.is_empty() {
        return Err(DataError::Invalid {
            path,
            msg: "the corpus holds no documents".into(),
        });
    }
    Ok(docs)
}

pub fn read_queries(dir: &Path) -> Result<Vec<Query>, DataError> {
    read_jsonl::<Query>(&collection_file(dir, "queries.jsonl"), |q| &q.id)
}

/// A qrels file as read: the judgements, where each query's first line is
/// (to name it in errors), and notes on harmless oddities (repeated lines).
#[derive(Clone, Debug, Default)]
pub struct QrelsFile {
    pub path: PathBuf,
    pub qrels: Qrels,
    pub first_line: HashMap<String, usize>,
    pub notes: Vec<String>,
}

impl QrelsFile {
    /// Judged query ids missing from `queries`, with the line naming each.
    pub fn unknown_queries(&self, queries: &HashSet<&str>) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .qrels
            .keys()
            .filter(|q| !queries.contains(q.as_str()))
            .map(|q| (q.clone(), self.first_line.get(q).copied().unwrap_or(0)))
            .collect();
        out.sort_by_key(|x| x.1);
        out
    }
}

/// `qrels/<split>.tsv`, with its header line.
pub fn read_qrels(dir: &Path, split: &str) -> Result<Qrels, DataError> {
    Ok(read_qrels_file(dir, split)?.qrels)
}

/// [`read_qrels`] with line numbers and notes. A (query, document) pair
/// judged twice with different grades is an error; twice with the same
/// grade, a note.
pub fn read_qrels_file(dir: &Path, split: &str) -> Result<QrelsFile, DataError> {
    let path = dir.join("qrels").join(format!("{split}.tsv"));
    let mut qrels: Qrels = HashMap::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut notes = Vec::new();
    for (line, text) in lines(&path)? {
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = text.split('\t').collect();
        if line == 1 && cols.first().is_some_and(|c| c.trim() == "query-id") {
            continue;
        }
        let bad = |msg: String| DataError::Line {
            path: path.clone(),
            line,
            msg,
        };
        if cols.len() != 3 {
            return Err(bad(format!(
                "expected 3 tab-separated columns, found {}",
                cols.len()
            )));
        }
        let score: i32 = cols[2]
            .trim()
            .parse()
            .map_err(|_| bad(format!("relevance {:?} is not an integer", cols[2])))?;
        let (q, d) = (cols[0].trim().to_string(), cols[1].trim().to_string());
        first_line.entry(q.clone()).or_insert(line);
        match qrels.entry(q.clone()).or_default().insert(d.clone(), score) {
            Some(prev) if prev != score => {
                return Err(bad(format!(
                    "query {q:?} judges document {d:?} again with grade {score} (earlier: {prev})"
                )))
            }
            Some(_) => notes.push(format!(
                "{}:{line}: query {q:?} judges document {d:?} again with the same grade",
                path.display()
            )),
            None => {}
        }
    }
    Ok(QrelsFile {
        path,
        qrels,
        first_line,
        notes,
    })
}

/// Judgements naming documents or queries that do not exist: `(query, doc)`
/// pairs, reported to the user rather than silently dropped.
pub fn unknown_judgements(
    qrels: &Qrels,
    docs: &HashSet<&str>,
    queries: &HashSet<&str>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (q, judged) in qrels {
        for d in judged.keys() {
            if !docs.contains(d.as_str()) || !queries.contains(q.as_str()) {
                out.push((q.clone(), d.clone()));
            }
        }
    }
    out.sort();
    out
}
