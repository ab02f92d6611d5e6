//! How long documents are read as passages (MaxP): past word FROM of its
//! text, a document becomes passages of its title plus WORDS words every
//! STRIDE words, each encoded on its own beside the document's first read
//! (`index::passages` stores them; search ranks a document by the best).
//! A model's adapter may record the split it is indexed with by default;
//! commands take `--passages none|WORDS:STRIDE:FROM` to override it.

use serde::{Deserialize, Serialize};

use crate::data::beir::Document;

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

/// What a command is told about passages: `none` (first reads only, even
/// for a model that records a split) or a split; a command told nothing
/// uses the model's recorded split ([`PassagesSetting::or_recorded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassagesSetting {
    None,
    Split(PassageSpec),
}

impl std::str::FromStr for PassagesSetting {
    type Err = String;
    /// `none` or `WORDS:STRIDE:FROM`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            _ => s
                .parse()
                .map(Self::Split)
                .map_err(|e| format!("{e}, or none")),
        }
    }
}

impl std::fmt::Display for PassagesSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Split(s) => s.fmt(f),
        }
    }
}

impl PassagesSetting {
    /// The split a command uses: what it was told, else what the model
    /// records (`recorded`).
    pub fn or_recorded(told: Option<Self>, recorded: Option<PassageSpec>) -> Option<PassageSpec> {
        match told {
            Some(Self::None) => None,
            Some(Self::Split(s)) => Some(s),
            None => recorded,
        }
    }
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
    fn a_setting_is_none_or_a_split_and_overrides_the_recorded_one() {
        let split: PassageSpec = "80:60:70".parse().unwrap();
        let other: PassageSpec = "60:40:50".parse().unwrap();
        assert_eq!("none".parse(), Ok(PassagesSetting::None));
        assert_eq!("60:40:50".parse(), Ok(PassagesSetting::Split(other)));
        assert_eq!(PassagesSetting::Split(other).to_string(), "60:40:50");
        let e = "nope".parse::<PassagesSetting>().unwrap_err();
        assert!(
            e.contains("WORDS:STRIDE:FROM") && e.ends_with("or none"),
            "{e}"
        );
        let or = PassagesSetting::or_recorded;
        assert_eq!(or(None, Some(split)), Some(split));
        assert_eq!(or(None, None), None);
        assert_eq!(or(Some(PassagesSetting::None), Some(split)), None);
        assert_eq!(
            or(Some(PassagesSetting::Split(other)), Some(split)),
            Some(other)
        );
        assert_eq!(or(Some(PassagesSetting::Split(other)), None), Some(other));
    }
}
