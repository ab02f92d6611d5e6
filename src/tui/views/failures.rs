//! Failures view: per judged query, nDCG@10 of LSR and BM25, sorted by how
//! much LSR loses; Enter opens the query in Search with its judgements.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(rows) = &app.failures else {
        let msg = if app.failures_pending {
            "Encoding every judged query and ranking it with LSR and BM25 …"
        } else if !app.has_qrels {
            "No judgements loaded: open a collection with qrels (csplade tui --dataset DIR)."
        } else if !matches!(app.index, crate::tui::app::IndexState::Ready(_)) {
            "The index is not complete yet (the status bar says when it will be); then press r to compare LSR with BM25 on every judged query."
        } else {
            "Press r to compare LSR with BM25 on every judged query."
        };
        f.render_widget(
            Paragraph::new(msg).block(Block::default().borders(Borders::ALL).title(" Failures ")),
            area,
        );
        return;
    };
    let losses = rows.iter().filter(|r| r.lsr_ndcg10 < r.bm25_ndcg10).count();
    let visible = area.height.saturating_sub(3) as usize;
    let start = app.failure_sel.saturating_sub(visible.saturating_sub(1));
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .skip(start)
        .take(visible)
        .map(|(i, r)| {
            let d = r.lsr_ndcg10 - r.bm25_ndcg10;
            let color = if d < 0.0 {
                t.not_relevant
            } else if d > 0.0 {
                t.relevant
            } else {
                t.muted
            };
            let style = if i == app.failure_sel {
                Style::default()
                    .bg(t.selection)
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            Row::new(vec![
                r.query_id.clone(),
                format!("{:.3}", r.bm25_ndcg10),
                format!("{:.3}", r.lsr_ndcg10),
                format!("{d:+.3}"),
                r.text.clone(),
            ])
            .style(style.fg(color))
        })
        .collect();
    f.render_widget(
        Table::new(
            body,
            [
                Constraint::Length(14),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Min(20),
            ],
        )
        .header(
            Row::new(vec!["query", "bm25", "lsr", "Δ", "text"]).style(Style::default().fg(t.muted)),
        )
        .block(Block::default().borders(Borders::ALL).title(format!(
            " Failures: LSR loses on {losses} of {} queries (nDCG@10) ",
            rows.len()
        ))),
        area,
    );
}
