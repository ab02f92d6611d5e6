//! Long documents as passages (MaxP): a document is indexed as it is read
//! (its first `max_len` tokens) and, past word FROM of its text, as
//! passages of the title plus WORDS words every STRIDE words, each encoded
//! on its own. Search scores a document by the best of its first read and
//! its passages. This module holds the split, its setting and the
//! `passages.bin` file: every passage's document and vector.
//!
//! ```text
//! PassagesHeader  magic "CSPP", version u32, passages u32
//! passages × (JournalEntry document u32, RecordHead terms u32, ids, weights)
//! sha256 of everything before it (32 bytes)
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zerocopy::FromBytes;

use super::vectors::{self, VectorsHeader};
use super::IndexError;
use crate::data::beir::Document;
use crate::encode::SparseVec;

pub const PASSAGES_FILE: &str = "passages.bin";
const MAGIC: [u8; 4] = *b"CSPP";
const VERSION: u32 = 1;

/// How a document's later words become passages: the title plus `words`
/// words, every `stride` words, starting at word `from` of the text (the
/// words before it are left to the document's first read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSpec")]
pub struct PassageSpec {
    pub words: usize,
    pub stride: usize,
    pub from: usize,
}

/// A [`PassageSpec`] as stored, checked by [`PassageSpec::from_str`]'s
/// rules before it is trusted.
#[derive(Deserialize)]
struct RawSpec {
    words: usize,
    stride: usize,
    from: usize,
}

impl TryFrom<RawSpec> for PassageSpec {
    type Error = String;
    fn try_from(r: RawSpec) -> Result<Self, String> {
        format!("{}:{}:{}", r.words, r.stride, r.from).parse()
    }
}

impl std::str::FromStr for PassageSpec {
    type Err = String;
    /// `WORDS:STRIDE:FROM`, e.g. `80:60:70`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [words, stride, from] = parts[..] else {
            return Err(format!(
                "passages {s:?}: expected WORDS:STRIDE:FROM (e.g. 80:60:70)"
            ));
        };
        let number = |what: &str, v: &str, lo: usize, hi: usize| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| {
                    format!("passages {s:?}: {what} {v:?} must be a whole number from {lo} to {hi}")
                })
        };
        let words = number("WORDS", words, 1, 4096)?;
        Ok(Self {
            words,
            stride: number("STRIDE", stride, 1, words)?,
            from: number("FROM", from, 0, 1_000_000)?,
        })
    }
}

impl std::fmt::Display for PassageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.words, self.stride, self.from)
    }
}

impl PassageSpec {
    /// The word ranges of `text`'s passages, in order: none for a text of
    /// at most `from` words; the last one reaches the text's end.
    pub fn ranges(&self, words: usize) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut start = self.from;
        // A spec is checked when parsed; a zero here would never advance.
        if self.words == 0 || self.stride == 0 {
            return out;
        }
        while start < words {
            let end = (start + self.words).min(words);
            out.push(start..end);
            if end == words {
                break;
            }
            start += self.stride;
        }
        out
    }

    /// The words of passage `k` (1-based) of a document whose text is
    /// `text` (without its title), as [`PassageSpec::split`] cuts them.
    pub fn passage_words(&self, text: &str, k: usize) -> Option<String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let range = self
            .ranges(words.len())
            .into_iter()
            .nth(k.checked_sub(1)?)?;
        Some(words[range].join(" "))
    }

    /// `doc`'s passages as documents of their own: its title and a range
    /// of its words (read with [`Document::full_text`], as documents are).
    pub fn split(&self, doc: &Document) -> Vec<Document> {
        let words: Vec<&str> = doc.text.split_whitespace().collect();
        self.ranges(words.len())
            .into_iter()
            .map(|r| Document {
                id: doc.id.clone(),
                title: doc.title.clone(),
                text: words[r].join(" "),
            })
            .collect()
    }
}

/// Write every passage's document ordinal and vector (document order)
/// atomically.
pub fn write(path: &Path, passages: &[(usize, SparseVec)]) -> Result<(), IndexError> {
    vectors::write_summed(path, MAGIC, VERSION, passages, |(doc, v), buf| {
        vectors::encode_journal_entry(*doc, v, buf)
    })
}

/// Read `passages.bin`: each passage's document and vector, checked to
/// run in document order with every document below `documents` and every
/// term within a vocabulary of `vocab`.
pub fn read(
    path: &Path,
    documents: usize,
    vocab: usize,
) -> Result<Vec<(usize, SparseVec)>, IndexError> {
    let buf = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    let corrupt = |msg: String| IndexError::Corrupt {
        path: path.to_path_buf(),
        msg,
    };
    let head = match VectorsHeader::read_from_prefix(&buf) {
        Ok((head, _)) if head.magic == MAGIC && head.version.get() == VERSION => head,
        _ => return Err(corrupt("not a csplade passages file".into())),
    };
    if buf.len() < vectors::HEADER + vectors::SUM {
        return Err(corrupt("truncated: no checksum".into()));
    }
    let (body, sum) = buf.split_at(buf.len() - vectors::SUM);
    if Sha256::digest(body).as_slice() != sum {
        return Err(corrupt(
            "checksum mismatch: the file changed after csplade wrote it; rebuild the index".into(),
        ));
    }
    let n = head.documents.get() as usize;
    let mut out = Vec::with_capacity(n.min(body.len() / 8));
    let mut pos = vectors::HEADER;
    for i in 0..n {
        let (doc, v, next) = vectors::decode_journal_entry(body, pos)
            .ok_or_else(|| corrupt(format!("passage {i} is truncated or malformed")))?;
        let in_order = out.last().is_none_or(|&(prev, _)| prev <= doc);
        if doc >= documents || !in_order {
            return Err(corrupt(format!(
                "passage {i} belongs to document {doc}: out of order or beyond the {documents} documents"
            )));
        }
        if let Some(&id) = v.ids.last().filter(|&&id| id as usize >= vocab) {
            return Err(corrupt(format!(
                "passage {i} has term {id}, beyond the vocabulary of {vocab}"
            )));
        }
        out.push((doc, v));
        pos = next;
    }
    if pos != body.len() {
        return Err(corrupt("trailing bytes after the last passage".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_print_and_refuse_by_name() {
        let s: PassageSpec = "80:60:70".parse().unwrap();
        assert_eq!(
            s,
            PassageSpec {
                words: 80,
                stride: 60,
                from: 70
            }
        );
        assert_eq!(s.to_string(), "80:60:70");
        for (bad, says) in [
            ("80:60", "WORDS:STRIDE:FROM"),
            ("0:1:0", "WORDS \"0\""),
            (
                "80:90:0",
                "STRIDE \"90\" must be a whole number from 1 to 80",
            ),
            ("80:60:-1", "FROM"),
        ] {
            let e = bad.parse::<PassageSpec>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_stored_spec_is_checked_as_a_parsed_one() {
        let ok: PassageSpec =
            serde_json::from_str(r#"{"words": 80, "stride": 60, "from": 70}"#).unwrap();
        assert_eq!(ok.to_string(), "80:60:70");
        let e = serde_json::from_str::<PassageSpec>(r#"{"words": 8, "stride": 0, "from": 0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("STRIDE \"0\""), "{e}");
    }

    #[test]
    fn passages_cover_the_words_after_from_and_end_at_the_text_end() {
        let s = PassageSpec {
            words: 4,
            stride: 3,
            from: 2,
        };
        assert!(s.ranges(2).is_empty());
        assert_eq!(s.ranges(3), vec![2..3]);
        assert_eq!(s.ranges(6), vec![2..6]);
        assert_eq!(s.ranges(9), vec![2..6, 5..9]);
        assert_eq!(s.ranges(10), vec![2..6, 5..9, 8..10]);
        let doc = Document {
            id: "d".into(),
            title: "T".into(),
            text: "a b  c\nd e f g".into(),
        };
        let texts: Vec<String> = s.split(&doc).iter().map(|p| p.full_text()).collect();
        assert_eq!(texts, vec!["T c d e f", "T f g"]);
        assert_eq!(s.passage_words(&doc.text, 2).as_deref(), Some("f g"));
        assert_eq!(s.passage_words(&doc.text, 0), None);
        assert_eq!(s.passage_words(&doc.text, 3), None);
    }

    #[test]
    fn the_file_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PASSAGES_FILE);
        let ps = vec![
            (0, SparseVec::from_pairs(vec![(3, 1.5)])),
            (0, SparseVec::default()),
            (2, SparseVec::from_pairs(vec![(7, 0.5), (9, 2.0)])),
        ];
        write(&p, &ps).unwrap();
        assert_eq!(read(&p, 3, 10).unwrap(), ps);
        let e = read(&p, 2, 10).unwrap_err().to_string();
        assert!(e.contains("beyond the 2 documents"), "{e}");
        let e = read(&p, 3, 9).unwrap_err().to_string();
        assert!(e.contains("term 9, beyond the vocabulary of 9"), "{e}");
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let e = read(&p, 3, 10).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
    }
}
