//! Failures view: a histogram of per-query Δ nDCG@10 (LSR − BM25) over the
//! collection; the judged queries by how much LSR loses (or only those whose
//! relevant documents LSR misses entirely, or those matching the query box);
//! (`s` also filters where fusing LSR with BM25 rescues LSR or hurts BM25,
//! the hybrid column giving the fusion's nDCG@10);
//! and, for the selected query, why: the missed relevant documents with the
//! words BM25 matches that the expansion lacks, and the terms that lifted
//! the wrong hits. Enter opens the query in Search.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Paragraph, Row, Wrap};
use ratatui::Frame;

use super::show_token;
use crate::explore::{FailureExplanation, FailureRow, MissedDocument};
use crate::tui::app::{App, FAILURE_VIEWS};
use crate::tui::mouse::Target;
use crate::tui::theme::Theme;

/// Δ nDCG@10 buckets of the histogram: (label, upper bound).
const BUCKETS: [(&str, f64); 8] = [
    ("≤-.75", -0.75),
    ("-.5", -0.5),
    ("-.25", -0.25),
    ("<0", -1e-9),
    ("0", 1e-9),
    ("<.25", 0.25),
    ("<.5", 0.5),
    ("≥.5", f64::INFINITY),
];

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(all) = &app.failures else {
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
    let explain_height = if app.explanation.is_some() { 14 } else { 0 };
    let [chart, table, explain] = Layout::vertical([
        Constraint::Length(8),
        Constraint::Min(5),
        Constraint::Length(explain_height),
    ])
    .areas(area);

    draw_chart(f, chart, app, all);
    draw_table(f, table, app, all.len());
    if let Some(e) = &app.explanation {
        draw_explanation(f, explain, app, e);
    }
}

/// The collection at a glance: how many queries LSR loses or wins, by how much.
fn draw_chart(f: &mut Frame, chart: Rect, app: &App, all: &[FailureRow]) {
    let t = &app.theme;
    // The collection at a glance: how many queries LSR loses or wins, by how much.
    let mut counts = [0u64; BUCKETS.len()];
    for r in all {
        let d = r.delta();
        let b = BUCKETS
            .iter()
            .position(|(_, hi)| d < *hi)
            .unwrap_or(BUCKETS.len() - 1);
        counts[b] += 1;
    }
    let bars: Vec<Bar> = BUCKETS
        .iter()
        .zip(counts)
        .enumerate()
        .map(|(i, ((label, _), n))| {
            let color = match i {
                0..=3 => t.not_relevant,
                4 => t.muted,
                _ => t.relevant,
            };
            Bar::default()
                .value(n)
                .label(Line::from(*label))
                .style(Style::default().fg(color))
        })
        .collect();
    let losses = all.iter().filter(|r| r.delta() < 0.0).count();
    let wins = all.iter().filter(|r| r.delta() > 0.0).count();
    f.render_widget(
        BarChart::default()
            .block(Block::default().borders(Borders::ALL).title(format!(
                " Δ nDCG@10 (LSR − BM25) over {} judged queries: LSR loses {losses}, wins {wins} ",
                all.len()
            )))
            .data(BarGroup::default().bars(&bars))
            .bar_width(7)
            .bar_gap(2),
        chart,
    );
}

/// The Failures table's column widths; `fb` (feedback's Δ) only with feedback.
fn failure_columns(with_fb: bool) -> Vec<Constraint> {
    let mut w = vec![
        Constraint::Length(14),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    if with_fb {
        w.push(Constraint::Length(7));
    }
    w.extend([Constraint::Length(4), Constraint::Min(20)]);
    w
}

fn failure_headers(with_fb: bool) -> Vec<&'static str> {
    let mut h = vec!["query", "bm25", "lsr", "Δ", "hybrid"];
    if with_fb {
        h.push("fb Δ");
    }
    h.extend(["100", "text"]);
    h
}

/// The judged queries of the current view, scrolled to the selection.
fn draw_table(f: &mut Frame, table: Rect, app: &App, judged: usize) {
    let t = &app.theme;
    let rows = app.visible_failures();
    // With feedback, what it did to LSR's nDCG@10 (LSR − LSR without it).
    let with_fb = rows.iter().any(|r| r.unfed_ndcg10.is_some());
    let visible = table.height.saturating_sub(3) as usize;
    let start = app.failure_sel.saturating_sub(visible.saturating_sub(1));
    for (line, i) in (start..rows.len().min(start + visible)).enumerate() {
        let y = table.y + 2 + line as u16;
        let row = Rect::new(table.x + 1, y, table.width.saturating_sub(2), 1);
        app.clicks.add(row, Target::FailureRow(i));
    }
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .skip(start)
        .take(visible)
        .map(|(i, r)| {
            let d = r.delta();
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
            let mut cells = vec![
                r.query_id.clone(),
                format!("{:.3}", r.bm25_ndcg10),
                format!("{:.3}", r.lsr_ndcg10),
                format!("{d:+.3}"),
                format!("{:.3}", r.hybrid_ndcg10),
            ];
            if with_fb {
                cells.push(
                    r.unfed_ndcg10
                        .map_or(String::new(), |u| format!("{:+.3}", r.lsr_ndcg10 - u)),
                );
            }
            cells.extend([
                if r.relevant_in_lsr_top100 { "" } else { "✗" }.to_string(),
                r.text.clone(),
            ]);
            Row::new(cells).style(style.fg(color))
        })
        .collect();
    f.render_widget(
        super::table(
            body,
            failure_columns(with_fb),
            failure_headers(with_fb),
            format!(
                " {} of {}: {} (s: next view, x: explain, e: export; ✗: no relevant document in LSR's top 100) ",
                rows.len(),
                judged,
                FAILURE_VIEWS[app.failure_view % FAILURE_VIEWS.len()]
            ),
            t,
        ),
        table,
    );
}

/// A missed relevant document: its ranks, the BM25 words that find it
/// (red where the expansion lacks them) and the terms it holds only beyond
/// the encoded window.
fn missed_lines(t: &Theme, m: &MissedDocument) -> Vec<Line<'static>> {
    let muted = Style::default().fg(t.muted);
    let rank = |r: Option<usize>| r.map_or("beyond 100".to_string(), |r| r.to_string());
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("missed {} ", m.doc_id),
            Style::default().fg(t.relevant),
        ),
        Span::styled(
            format!(
                "(grade {}): LSR rank {}, BM25 rank {}",
                m.grade,
                rank(m.lsr_rank),
                rank(m.bm25_rank)
            ),
            muted,
        ),
    ])];
    let words: Vec<Span> = m
        .bm25_words
        .iter()
        .take(6)
        .map(|w| {
            let style = if w.missing_from_expansion {
                Style::default().fg(t.not_relevant)
            } else {
                Style::default()
            };
            Span::styled(
                format!(
                    "  {} bm25 {:.1} q {:.2} d {:.2}",
                    w.word, w.bm25, w.query_weight, w.doc_weight
                ),
                style,
            )
        })
        .collect();
    lines.push(Line::from(words));
    if !m.beyond_window.is_empty() {
        let terms: Vec<String> = m.beyond_window.iter().map(|t| show_token(t)).collect();
        lines.push(Line::from(Span::styled(
            format!(
                "  only beyond the encoded window (the model never read them): {}",
                terms.join(" ")
            ),
            muted,
        )));
    }
    lines
}

/// Why LSR loses on the selected query: missed relevant documents with the
/// BM25 words that find them, and the expansion terms behind wrong hits.
fn draw_explanation(f: &mut Frame, explain: Rect, app: &App, e: &FailureExplanation) {
    let t = &app.theme;
    let muted = Style::default().fg(t.muted);
    let mut lines = vec![Line::from(vec![
        Span::styled("expansion ", muted),
        Span::raw(
            e.expansion
                .iter()
                .take(10)
                .map(|(tok, w)| format!("{} {w:.2}", show_token(tok)))
                .collect::<Vec<_>>()
                .join("  "),
        ),
    ])];
    for m in &e.missed {
        lines.extend(missed_lines(t, m));
    }
    for h in &e.wrong_hits {
        lines.push(Line::from(vec![
            Span::styled(
                format!("rank {} {} ", h.rank, h.doc_id),
                Style::default().fg(t.not_relevant),
            ),
            Span::styled("lifted by ", muted),
            Span::raw(
                h.lifted_by
                    .iter()
                    .take(5)
                    .map(|c| format!("{} {:.2}", show_token(&c.token), c.product))
                    .collect::<Vec<_>>()
                    .join("  "),
            ),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(format!(
                " Why LSR loses on {} ({:.3} vs BM25 {:.3}): red words score under BM25 but are missing from the expansion ",
                e.query_id, e.ndcg_lsr, e.ndcg_bm25
            ))),
        explain,
    );
}
