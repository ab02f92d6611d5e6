//! The system's groff as the man-page renderer, where it is installed:
//! `groff -T utf8 -mandoc` typesets man and mdoc pages exactly as `man`
//! shows them (roff requests, escapes, conditionals and macros all handled),
//! one paragraph per line. The page's sections are read back from its
//! layout: headings start at the left margin, text is indented. Without
//! groff, csplade's own renderer (`roff::render`) is used.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Whether `groff` runs here (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("groff")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Typeset roff source as plain UTF-8 text: no line filling width limit
/// (paragraphs on one line), no hyphenation, one continuous page, no bold
/// or underline overstriking. `None` when groff fails on it.
pub fn typeset(src: &str) -> Option<String> {
    let mut child = Command::new("groff")
        .args(["-T", "utf8", "-mandoc", "-rLL=2000n", "-rHY=0", "-rcR=1"])
        .args(["-P", "-cbou"])
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let src = src.to_string();
    // Fed from a thread: a large page would otherwise fill both pipes.
    let feeder = std::thread::spawn(move || stdin.write_all(src.as_bytes()));
    let out = child.wait_with_output().ok()?;
    let fed = feeder.join().ok()?.is_ok();
    if !fed || !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).replace('\u{8}', "");
    Some(text)
}

/// The sections of typeset text: `(heading, text)` in order, the running
/// header and footer lines dropped, each text's lines trimmed of their
/// indentation and joined by newlines.
pub fn sections(typeset: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = typeset.lines().collect();
    let first = lines.iter().position(|l| !l.trim().is_empty());
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    // The page header (first line) and footer (last line) are not text.
    for line in lines.iter().take(last).skip(first + 1) {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            out.push((line.trim().to_uppercase(), String::new()));
            continue;
        }
        if out.is_empty() {
            out.push((String::new(), String::new()));
        }
        if let Some((_, text)) = out.last_mut() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line.trim());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_read_from_the_layout() {
        let page = "LS(1)    User Commands    LS(1)\n\n\nNAME\n       ls - list directory contents\n\nDESCRIPTION\n       List information.\n\n       -a, --all\n              do not ignore entries\n\n  Exit status:\n       0 if OK\n\nGNU coreutils 9.1    2022-09    LS(1)\n";
        let s = sections(page);
        assert_eq!(
            s,
            vec![
                (
                    "NAME".to_string(),
                    "ls - list directory contents".to_string()
                ),
                (
                    "DESCRIPTION".to_string(),
                    "List information.\n-a, --all\ndo not ignore entries\nExit status:\n0 if OK"
                        .to_string()
                ),
            ]
        );
    }

    #[test]
    fn groff_typesets_roff_requests_and_escapes_away() {
        if !available() {
            assert!(
                std::env::var("CSPLADE_REQUIRE_DATA").is_err(),
                "groff is required in CI (the demo's renderer)"
            );
            crate::test_skip::note_skip("groff rendering: groff not installed");
            return;
        }
        let src = ".TH T 1\n.SH NAME\nt \\- test a page\n.SH DESCRIPTION\n.if n \\{\\\nShown on terminals.\n.\\}\nUse \\fB\\-\\-all\\fR with \\$1 never shown.\n";
        let text = typeset(src).expect("groff ran");
        let s = sections(&text);
        assert_eq!(s[0], ("NAME".into(), "t - test a page".into()));
        let body = &s[1].1;
        assert!(body.contains("Shown on terminals."), "{body}");
        assert!(
            !body.contains(".if") && !body.contains("\\$1") && !body.contains('{'),
            "{body}"
        );
    }
}
