//! Key bindings from TOML (assets/keymap.toml, embedded): every binding has a
//! context, a key, an action and a description, so help and the hint bar are
//! generated from one list.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

pub const DEFAULT_KEYMAP: &str = include_str!("../../assets/keymap.toml");

/// What a key does. Key maps name these in snake_case; a name that is not
/// one of them is refused when the key map is read, with its line.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    CancelTask,
    ComputeFailures,
    CycleRanking,
    CycleFailureView,
    CycleFrontierAxis,
    ExplainFailure,
    ExportFailures,
    FirstHit,
    FirstRow,
    FocusInput,
    FocusResults,
    Help,
    HelpDown,
    HelpUp,
    LastHit,
    LastRow,
    NextComparePreset,
    NextHit,
    NextRow,
    NextTab,
    OpenFailure,
    OpenFrontierPoint,
    PageDownRows,
    PageUpRows,
    PrevHit,
    PrevRow,
    PrevTab,
    Quit,
    ResumeTask,
    RunCompare,
    RunFrontier,
    ScrollDown,
    ScrollUp,
    StartAdapt,
    StartContrastive,
    StartEval,
    StartIndex,
    StartQuantize,
    Submit,
    ToggleFeedback,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Binding {
    pub context: String,
    pub key: String,
    pub action: KeyAction,
    pub desc: String,
}

#[derive(Deserialize)]
struct File {
    binding: Vec<Binding>,
}

#[derive(Clone, Debug)]
pub struct Keymap {
    pub bindings: Vec<Binding>,
}

/// The canonical text of a key event (`ctrl-c`, `f1`, `enter`, `?`, `q`).
pub fn key_name(k: &KeyEvent) -> String {
    let base = match k.code {
        KeyCode::Char(c) => c.to_string(),
        KeyCode::F(n) => format!("f{n}"),
        KeyCode::Enter => "enter".into(),
        KeyCode::Esc => "esc".into(),
        KeyCode::Tab => "tab".into(),
        KeyCode::BackTab => "backtab".into(),
        KeyCode::Up => "up".into(),
        KeyCode::Down => "down".into(),
        KeyCode::Left => "left".into(),
        KeyCode::Right => "right".into(),
        KeyCode::PageUp => "pageup".into(),
        KeyCode::PageDown => "pagedown".into(),
        KeyCode::Home => "home".into(),
        KeyCode::End => "end".into(),
        KeyCode::Backspace => "backspace".into(),
        KeyCode::Delete => "delete".into(),
        _ => "?unknown".into(),
    };
    let mut s = String::new();
    if k.modifiers.contains(KeyModifiers::CONTROL) {
        s.push_str("ctrl-");
    }
    if k.modifiers.contains(KeyModifiers::ALT) {
        s.push_str("alt-");
    }
    s.push_str(&base);
    s
}

impl Keymap {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let f: File = toml::from_str(text)?;
        for b in &f.binding {
            if b.desc.trim().is_empty() {
                anyhow::bail!("binding {} in {} has no description", b.key, b.context);
            }
        }
        Ok(Self {
            bindings: f.binding,
        })
    }

    pub fn default_keymap() -> Self {
        Self::parse(DEFAULT_KEYMAP).unwrap_or(Self {
            bindings: Vec::new(),
        })
    }

    /// The action bound to `key` in `context` (then globally).
    pub fn lookup(&self, context: &str, key: &KeyEvent) -> Option<KeyAction> {
        let name = key_name(key);
        let find = |ctx: &str| {
            self.bindings
                .iter()
                .find(|b| b.context == ctx && b.key == name)
                .map(|b| b.action)
        };
        find(context).or_else(|| find("global"))
    }

    /// Bindings of a context, then the global ones (for the hint bar, which
    /// shows as many as fit).
    pub fn hints(&self, context: &str) -> Vec<&Binding> {
        let mut hints: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| b.context == context)
            .collect();
        hints.extend(self.bindings.iter().filter(|b| b.context == "global"));
        hints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keymap_parses_and_every_binding_has_a_description() {
        let k = Keymap::default_keymap();
        assert!(k.bindings.len() > 10);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(k.lookup("input", &ctrl_c), Some(KeyAction::Quit));
        assert_eq!(
            k.lookup("results", &KeyEvent::from(KeyCode::Char('?'))),
            Some(KeyAction::Help)
        );
        // In the query box '?' is text, not help.
        assert_eq!(k.lookup("input", &KeyEvent::from(KeyCode::Char('?'))), None);
        assert!(
            Keymap::parse("[[binding]]\ncontext='global'\nkey='x'\naction='quit'\ndesc=''\n")
                .is_err()
        );
        // A misspelt action is refused with its line, not ignored at run time.
        let e =
            Keymap::parse("[[binding]]\ncontext='global'\nkey='x'\naction='quitt'\ndesc='Quit'\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("quitt") && e.contains("line 4"), "{e}");
    }
}
