//! The query box's line editing, readline-style: a cursor that moves by
//! character (←/→, Home/End, Ctrl-A/E) and edits where it stands
//! (Backspace, Delete, Ctrl-U, Ctrl-W), and a history of submitted queries
//! (Ctrl-P/Ctrl-N).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A line of text with a cursor (in characters) and its history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineEdit {
    pub text: String,
    /// Characters before the cursor.
    pub cursor: usize,
    history: Vec<String>,
    /// Where Ctrl-P/Ctrl-N stand in the history (None: the line being typed).
    recalled: Option<usize>,
    /// The line being typed when the history was entered.
    draft: String,
}

const HISTORY: usize = 200;

impl LineEdit {
    /// An empty line whose history starts with `history` (oldest first).
    pub fn with_history(mut history: Vec<String>) -> Self {
        history.retain(|l| !l.trim().is_empty());
        let keep = history.len().saturating_sub(HISTORY);
        history.drain(..keep);
        Self {
            history,
            ..Self::default()
        }
    }

    /// Replace the text (cursor at its end).
    pub fn set(&mut self, text: &str) {
        self.text = text.to_string();
        self.cursor = self.text.chars().count();
        self.recalled = None;
    }

    /// Remember a submitted line (not twice in a row, not empty).
    pub fn remember(&mut self) {
        let line = self.text.trim().to_string();
        self.recalled = None;
        if line.is_empty() || self.history.last() == Some(&line) {
            return;
        }
        self.history.push(line);
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }

    fn byte(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(b, _)| b)
    }

    /// The text before and after the cursor.
    pub fn split(&self) -> (&str, &str) {
        self.text.split_at(self.byte(self.cursor))
    }

    /// Apply an editing key; false when the key is not an editing key.
    pub fn key(&mut self, k: &KeyEvent) -> bool {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if k.modifiers.contains(KeyModifiers::ALT) {
            return false;
        }
        let len = self.text.chars().count();
        let before = self.text.len();
        let recalled = self.recalled;
        let handled = self.edit(k.code, ctrl, len);
        // An edited line is the user's own, no longer a recalled one.
        let edited =
            self.text.len() != before || matches!((k.code, ctrl), (KeyCode::Char(_), false));
        if edited && self.recalled == recalled {
            self.recalled = None;
        }
        handled
    }

    fn edit(&mut self, code: KeyCode, ctrl: bool, len: usize) -> bool {
        match (code, ctrl) {
            (KeyCode::Char('a'), true) | (KeyCode::Home, _) => self.cursor = 0,
            (KeyCode::Char('e'), true) | (KeyCode::End, _) => self.cursor = len,
            (KeyCode::Char('b'), true) | (KeyCode::Left, false) => {
                self.cursor = self.cursor.saturating_sub(1)
            }
            (KeyCode::Char('f'), true) | (KeyCode::Right, false) => {
                self.cursor = (self.cursor + 1).min(len)
            }
            (KeyCode::Char('u'), true) => {
                let at = self.byte(self.cursor);
                self.text.replace_range(..at, "");
                self.cursor = 0;
            }
            (KeyCode::Char('k'), true) => {
                let at = self.byte(self.cursor);
                self.text.truncate(at);
            }
            (KeyCode::Char('w'), true) => self.delete_word(),
            (KeyCode::Char('p'), true) => self.recall(true),
            (KeyCode::Char('n'), true) => self.recall(false),
            (KeyCode::Backspace, _) if self.cursor > 0 => {
                let (from, to) = (self.byte(self.cursor - 1), self.byte(self.cursor));
                self.text.replace_range(from..to, "");
                self.cursor -= 1;
            }
            (KeyCode::Delete, _) | (KeyCode::Char('d'), true) if self.cursor < len => {
                let (from, to) = (self.byte(self.cursor), self.byte(self.cursor + 1));
                self.text.replace_range(from..to, "");
            }
            (KeyCode::Backspace | KeyCode::Delete, _) | (KeyCode::Char('d'), true) => {}
            (KeyCode::Char(c), false) => {
                let at = self.byte(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            _ => return false,
        }
        true
    }

    /// Ctrl-W: the word before the cursor (and the spaces after it).
    fn delete_word(&mut self) {
        let chars: Vec<char> = self.text.chars().collect();
        let mut from = self.cursor;
        while from > 0 && chars[from - 1].is_whitespace() {
            from -= 1;
        }
        while from > 0 && !chars[from - 1].is_whitespace() {
            from -= 1;
        }
        let (a, b) = (self.byte(from), self.byte(self.cursor));
        self.text.replace_range(a..b, "");
        self.cursor = from;
    }

    /// Whether ↑/↓ walk the history rather than the hits: the line is
    /// empty, or is a line the history recalled.
    pub fn browsing(&self) -> bool {
        self.text.is_empty() || self.recalled.is_some()
    }

    /// Step back (`older`) or forward through the history.
    pub fn recall(&mut self, older: bool) {
        if self.history.is_empty() {
            return;
        }
        let last = self.history.len() - 1;
        let next = match (self.recalled, older) {
            (None, true) => {
                self.draft = self.text.clone();
                Some(last)
            }
            (None, false) => return,
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i < last => Some(i + 1),
            (Some(_), false) => None,
        };
        let text = match next {
            Some(i) => self.history[i].clone(),
            None => std::mem::take(&mut self.draft),
        };
        self.set(&text);
        self.recalled = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(e: &mut LineEdit, code: KeyCode, ctrl: bool) {
        let m = if ctrl {
            KeyModifiers::CONTROL
        } else {
            KeyModifiers::NONE
        };
        assert!(e.key(&KeyEvent::new(code, m)), "{code:?}");
    }

    fn typed(e: &mut LineEdit, s: &str) {
        for c in s.chars() {
            press(e, KeyCode::Char(c), false);
        }
    }

    #[test]
    fn edits_happen_at_the_cursor() {
        let mut e = LineEdit::default();
        typed(&mut e, "transfer files");
        press(&mut e, KeyCode::Home, false);
        typed(&mut e, "ssh ");
        assert_eq!(e.text, "ssh transfer files");
        press(&mut e, KeyCode::End, false);
        press(&mut e, KeyCode::Char('w'), true);
        assert_eq!((e.text.as_str(), e.cursor), ("ssh transfer ", 13));
        press(&mut e, KeyCode::Left, false);
        press(&mut e, KeyCode::Left, false);
        press(&mut e, KeyCode::Backspace, false);
        assert_eq!((e.text.as_str(), e.cursor), ("ssh transfr ", 10));
        press(&mut e, KeyCode::Delete, false);
        assert_eq!(e.split(), ("ssh transf", " "));
        press(&mut e, KeyCode::Char('u'), true);
        assert_eq!((e.text.as_str(), e.cursor), (" ", 0));
        press(&mut e, KeyCode::Char('e'), true);
        assert_eq!(e.cursor, 1);
        // Multi-byte characters move as one.
        e.set("café");
        press(&mut e, KeyCode::Left, false);
        press(&mut e, KeyCode::Backspace, false);
        assert_eq!(e.text, "caé");
    }

    #[test]
    fn history_recalls_submitted_queries_and_the_draft() {
        let mut e = LineEdit::default();
        for q in ["first", "second", "second"] {
            e.set(q);
            e.remember();
        }
        e.set("draft");
        press(&mut e, KeyCode::Char('p'), true);
        assert_eq!(e.text, "second");
        press(&mut e, KeyCode::Char('p'), true);
        assert_eq!(e.text, "first");
        press(&mut e, KeyCode::Char('p'), true);
        assert_eq!(e.text, "first");
        press(&mut e, KeyCode::Char('n'), true);
        press(&mut e, KeyCode::Char('n'), true);
        assert_eq!(e.text, "draft");
    }
}
