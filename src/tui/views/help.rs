//! Help popup, generated from the keymap: every binding with its
//! description, the current screen's first, then the query box's editing
//! keys and what each symbol on the screens means; ↑/↓ scroll.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Clear, Row, Table};
use ratatui::Frame;

use crate::tui::app::App;

/// Keys of the query box that are not bindings, and the screens' symbols.
pub const LEGEND: &[(&str, &str, &str)] = &[
    ("input", "←/→ ^A/^E", "Move the cursor (Home/End too)"),
    (
        "input",
        "^U ^K ^W",
        "Delete to the start, to the end, the word before the cursor",
    ),
    (
        "input",
        "^P/^N",
        "Previous / next query you ran (↑/↓ too while the box is empty)",
    ),
    (
        "symbol",
        "●",
        "Expansion term that is one of the text's own tokens",
    ),
    (
        "symbol",
        "○",
        "Expansion term the text does not contain (the model added it)",
    ),
    (
        "symbol",
        "✓ / ·",
        "Hit judged relevant / judged not relevant (blank: unjudged)",
    ),
    (
        "symbol",
        "lsr, bm25",
        "The hit's rank under that system; - : not in its top 1,000",
    ),
    (
        "symbol",
        "idf",
        "Query-prior factor on the term's weight (search --query-prior)",
    ),
    (
        "symbol",
        "+",
        "Term pseudo-relevance feedback lent the query from its first ranking's top documents (search --query-feedback)",
    ),
    (
        "symbol",
        "fb",
        "Weight feedback added to the term, after the prior: (q_w × idf + fb) × d_w",
    ),
    (
        "symbol",
        "- (Compare)",
        "hits@10 and τ need the encoders' rankings: pass --index",
    ),
    (
        "symbol",
        "◆ (Frontier)",
        "Pareto-optimal: no point has a higher nDCG@10 at a lower cost",
    ),
    (
        "symbol",
        "[lo,hi] Δ full",
        "95% bootstrap interval over the pool's queries; pooled − full-index nDCG@10",
    ),
];

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let ctx = {
        // The screen under the popup.
        let mut shown = app.context();
        if shown == "help" {
            shown = match (app.tab, app.focus) {
                (crate::tui::app::Tab::Search, crate::tui::app::Focus::Input) => "input",
                (crate::tui::app::Tab::Search, _) => "results",
                (crate::tui::app::Tab::Compare, _) => "compare",
                (crate::tui::app::Tab::Failures, _) => "failures",
                (crate::tui::app::Tab::Frontier, _) => "frontier",
                (crate::tui::app::Tab::Tasks, _) => "tasks",
            };
        }
        shown
    };
    let mut bindings: Vec<_> = app.keymap.bindings.iter().collect();
    bindings.sort_by_key(|b| match b.context.as_str() {
        c if c == ctx => 0,
        "global" => 1,
        "help" => 3,
        _ => 2,
    });
    let rows: Vec<Row> = bindings
        .iter()
        .map(|b| Row::new(vec![b.context.clone(), b.key.clone(), b.desc.clone()]))
        .chain(
            LEGEND
                .iter()
                .map(|(w, k, d)| Row::new(vec![w.to_string(), k.to_string(), d.to_string()])),
        )
        .skip(app.help_scroll)
        .collect();
    f.render_widget(Clear, area);
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Min(20),
            ],
        )
        .header(
            Row::new(vec!["where", "key", "does"])
                .style(Style::default().fg(t.accent).add_modifier(Modifier::BOLD)),
        )
        .block(Block::default().borders(Borders::ALL).title(format!(
            " Help — {} bindings; ↑/↓ scroll, F1 or Esc closes ",
            bindings.len()
        ))),
        area,
    );
}
