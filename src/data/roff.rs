//! csplade's own roff renderer, for machines without groff and pages groff
//! fails on: man and mdoc macros (sections, paragraphs, fonts, tagged
//! lists, mdoc's semantic macros) and roff escapes rendered to sections of
//! plain text, with the page name `.Nm` gives.

/// Consume the name after `\f` or `\*`: one character, `(xx`, or `[name]`.
fn escape_name(chars: &mut std::iter::Peekable<std::str::Chars>) {
    match chars.next() {
        Some('(') => {
            chars.next();
            chars.next();
        }
        Some('[') => {
            for c in chars.by_ref() {
                if c == ']' {
                    break;
                }
            }
        }
        _ => {}
    }
}

/// The text of a roff special character (`em`, `bu`, …); unknown ones vanish.
fn special_char(name: &str) -> &'static str {
    match name {
        "em" => "—",
        "en" | "hy" | "mi" => "-",
        "aq" | "oq" | "cq" => "'",
        "dq" | "lq" | "rq" => "\"",
        "bu" => "•",
        "co" => "©",
        "<=" => "<=",
        ">=" => ">=",
        "tm" => "™",
        _ => "",
    }
}

/// Replace roff escapes in running text.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // Font changes and string interpolations: dropped.
            Some('f') | Some('*') => {
                escape_name(&mut chars);
            }
            // Special characters: \(xx and \[name].
            Some('(') => {
                let name: String = [chars.next().unwrap_or(' '), chars.next().unwrap_or(' ')]
                    .iter()
                    .collect();
                out.push_str(special_char(&name));
            }
            Some('[') => {
                let mut name = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    name.push(c);
                }
                out.push_str(special_char(&name));
            }
            Some('s') => {
                if matches!(chars.peek(), Some('+') | Some('-')) {
                    chars.next();
                }
                while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                    chars.next();
                }
            }
            Some('-') => out.push('-'),
            Some('e') | Some('\\') => out.push('\\'),
            Some(' ') | Some('~') | Some('0') => out.push(' '),
            Some('&') | Some('c') | Some(',') | Some('/') | Some('|') | Some('^') | Some(')') => {}
            Some('"') => break, // comment to end of line
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Split a macro line's arguments, honouring double quotes.
fn macro_args(s: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' | '\t' if !quoted => {
                if any || !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            _ => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        args.push(cur);
    }
    args
}

/// Render roff source (man or mdoc macros) to sections of plain text.
/// Returns `(page name from .Nm, [(section heading, text)])`.
pub fn render(src: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut out = Rendered {
        sections: vec![(String::new(), String::new())],
        nm: None,
    };
    for line in src.lines() {
        if line.starts_with(".\\\"") || line.starts_with("'\\\"") || line.starts_with("\\\"") {
            continue;
        }
        if let Some(rest) = line.strip_prefix('.').or_else(|| line.strip_prefix('\'')) {
            let rest = rest.trim_start();
            let (name, args) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            out.apply(name, &macro_args(args));
            continue;
        }
        let t = unescape(line);
        if t.trim().is_empty() {
            out.brk();
        } else {
            out.push(&t);
        }
    }
    let sections = out
        .sections
        .into_iter()
        .filter(|s| !s.1.trim().is_empty() || !s.0.is_empty())
        .collect();
    (out.nm, sections)
}

/// A page being rendered: its sections so far and the name `.Nm` gave.
struct Rendered {
    sections: Vec<(String, String)>,
    nm: Option<String>,
}

impl Rendered {
    /// Append text to the current section, a space apart.
    fn push(&mut self, text: &str) {
        if let Some(last) = self.sections.last_mut() {
            if !last.1.is_empty() && !last.1.ends_with('\n') && !last.1.ends_with(' ') {
                last.1.push(' ');
            }
            last.1.push_str(text.trim());
        }
    }

    /// End the current line.
    fn brk(&mut self) {
        if let Some(last) = self.sections.last_mut() {
            if !last.1.is_empty() && !last.1.ends_with('\n') {
                last.1.push('\n');
            }
        }
    }

    /// One macro line: the text it shows, or the break or section it starts.
    fn apply(&mut self, name: &str, args: &[String]) {
        let text = || unescape(&args.join(" "));
        match name {
            "SH" | "Sh" => self.sections.push((text().to_uppercase(), String::new())),
            "SS" | "Ss" => {
                self.brk();
                self.push(&text());
                self.brk();
            }
            "B" | "I" | "SM" | "SB" | "Em" | "Sy" | "Ar" | "Pa" | "Ev" | "Cm" | "Dv" | "Er"
            | "Ic" | "Li" | "Va" | "Ad" | "Ms" | "Tn" | "Lk" | "Mt" | "Ql" => self.push(&text()),
            "BR" | "RB" | "IR" | "RI" | "BI" | "IB" => self.push(&unescape(&args.concat())),
            "TP" | "PP" | "LP" | "P" | "HP" | "br" | "sp" | "Pp" | "Lp" | "Bl" | "El" | "Bd"
            | "Ed" => self.brk(),
            "IP" | "It" => {
                self.brk();
                self.push(&text());
            }
            "Nm" => {
                if self.nm.is_none() {
                    self.nm = args.first().cloned();
                }
                let shown = args
                    .first()
                    .cloned()
                    .or_else(|| self.nm.clone())
                    .unwrap_or_default();
                self.push(&unescape(&shown));
            }
            "Nd" => self.push(&format!("- {}", text())),
            "Fl" => {
                let flags: Vec<String> = args.iter().map(|a| format!("-{}", unescape(a))).collect();
                self.push(&flags.join(" "))
            }
            "Xr" => self.push(&format!(
                "{}({})",
                unescape(args.first().map_or("", |s| s)),
                args.get(1).map_or("", |s| s)
            )),
            "Op" | "Oo" => self.push(&format!("[{}]", text())),
            "Dq" | "Qq" | "Sq" | "Pq" | "D1" | "Dl" => self.push(&text()),
            _ => {} // layout and definitions: no text
        }
    }
}
