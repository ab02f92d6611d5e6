//! Themes as TOML (themes/dark.toml, themes/light.toml, embedded); a user
//! theme file overrides only the fields it sets.

use std::str::FromStr;

use ratatui::style::Color;
use serde::Deserialize;

pub const DARK: &str = include_str!("../../themes/dark.toml");
pub const LIGHT: &str = include_str!("../../themes/light.toml");

#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    pub foreground: Color,
    pub muted: Color,
    pub accent: Color,
    pub selection: Color,
    pub in_text: Color,
    pub expansion: Color,
    pub relevant: Color,
    pub not_relevant: Color,
    pub bar: Color,
    pub error: Color,
}

/// Every field optional: a partial theme.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    name: Option<String>,
    foreground: Option<String>,
    muted: Option<String>,
    accent: Option<String>,
    selection: Option<String>,
    in_text: Option<String>,
    expansion: Option<String>,
    relevant: Option<String>,
    not_relevant: Option<String>,
    bar: Option<String>,
    error: Option<String>,
}

impl Theme {
    fn base() -> Self {
        Theme {
            name: "base".into(),
            foreground: Color::Reset,
            muted: Color::DarkGray,
            accent: Color::Cyan,
            selection: Color::Blue,
            in_text: Color::Green,
            expansion: Color::Yellow,
            relevant: Color::Green,
            not_relevant: Color::Red,
            bar: Color::Cyan,
            error: Color::Red,
        }
    }

    /// Apply the fields a TOML text sets.
    pub fn overlay(mut self, text: &str) -> anyhow::Result<Self> {
        let o: Overrides = toml::from_str(text)?;
        let c = |v: Option<String>, cur: Color| -> anyhow::Result<Color> {
            match v {
                Some(s) => Color::from_str(&s).map_err(|_| anyhow::anyhow!("unknown colour {s:?}")),
                None => Ok(cur),
            }
        };
        if let Some(n) = o.name {
            self.name = n;
        }
        self.foreground = c(o.foreground, self.foreground)?;
        self.muted = c(o.muted, self.muted)?;
        self.accent = c(o.accent, self.accent)?;
        self.selection = c(o.selection, self.selection)?;
        self.in_text = c(o.in_text, self.in_text)?;
        self.expansion = c(o.expansion, self.expansion)?;
        self.relevant = c(o.relevant, self.relevant)?;
        self.not_relevant = c(o.not_relevant, self.not_relevant)?;
        self.bar = c(o.bar, self.bar)?;
        self.error = c(o.error, self.error)?;
        Ok(self)
    }

    pub fn named(name: &str) -> anyhow::Result<Self> {
        match name {
            "dark" => Self::base().overlay(DARK),
            "light" => Self::base().overlay(LIGHT),
            other => anyhow::bail!("unknown theme {other:?} (dark, light)"),
        }
    }

    pub fn dark() -> Self {
        Self::named("dark").unwrap_or_else(|_| Self::base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_theme_overrides_only_what_it_sets() {
        let dark = Theme::dark();
        assert_eq!(dark.accent, Color::Cyan);
        let mine = dark.clone().overlay("accent = \"magenta\"\n").unwrap();
        assert_eq!(mine.accent, Color::Magenta);
        assert_eq!(mine.bar, dark.bar);
        assert_eq!(mine.name, "dark");
        assert!(Theme::dark()
            .overlay("accent = \"no-such-colour\"")
            .is_err());
        assert_eq!(Theme::named("light").unwrap().foreground, Color::Black);
        // A misspelt key is refused with its name, not ignored.
        let e = Theme::dark()
            .overlay("acent = \"magenta\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("acent"), "{e}");
    }
}
