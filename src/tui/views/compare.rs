//! Compare view: the current query under f32 / f16 / int8 / int4 side by
//! side — per precision the active terms, latency, model size and agreement
//! with f32 (term overlap, cosine, largest weight change, ranking overlap and
//! Kendall τ), then the top terms per column: red for a term outside f32's
//! top list, yellow for one at another rank, with its weight change.

use std::collections::HashMap;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use super::show_token;
use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(c) = &app.comparison else {
        let msg = if app.compare_pending {
            "Loading the precision variants and encoding the query under each …"
        } else if app.result.is_some() {
            "Press Enter to compare the current query under f32, f16, q8_0 and q4_0."
        } else {
            "Run a query in Search first, then compare it here."
        };
        f.render_widget(
            Paragraph::new(msg).block(Block::default().borders(Borders::ALL).title(" Compare ")),
            area,
        );
        return;
    };
    let n = c.runs.len() as u16;
    let [summary, terms] =
        Layout::vertical([Constraint::Length(n + 3), Constraint::Min(3)]).areas(area);
    let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    let rows: Vec<Row> = c
        .runs
        .iter()
        .map(|r| {
            Row::new(vec![
                r.precision.to_string(),
                r.active.to_string(),
                format!("{:.1} ms", r.latency_ms),
                format!("{:.0} MB", r.model_bytes as f64 / 1e6),
                fmt(r.vs_f32.map(|d| d.overlap10)),
                fmt(r.vs_f32.map(|d| d.cosine)),
                fmt(r.vs_f32.map(|d| d.max_abs_dw)),
                fmt(r.rank_overlap10),
                fmt(r.kendall_tau),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(6),
                Constraint::Length(7),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(10),
                Constraint::Length(8),
            ],
        )
        .header(
            Row::new(vec![
                "prec", "active", "latency", "model", "terms@10", "cosine", "max|Δw|", "hits@10",
                "τ",
            ])
            .style(Style::default().fg(t.muted)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" Compare: \"{}\" (vs f32) ", c.text)),
        ),
        summary,
    );
    let reference: HashMap<u32, (usize, f32)> = c
        .runs
        .iter()
        .find(|r| r.precision == crate::quant::Precision::F32)
        .map(|r| {
            r.terms
                .iter()
                .enumerate()
                .map(|(i, x)| (x.id, (i, x.weight)))
                .collect()
        })
        .unwrap_or_default();
    let cols = c.runs.len().max(1) as u32;
    let areas = Layout::horizontal((0..cols).map(|_| Constraint::Ratio(1, cols))).split(terms);
    for (r, area) in c.runs.iter().zip(areas.iter()) {
        let lines: Vec<Line> = r
            .terms
            .iter()
            .enumerate()
            .take(area.height.saturating_sub(2) as usize)
            .map(|(i, x)| {
                let (style, delta) = match reference.get(&x.id) {
                    _ if reference.is_empty() => (Style::default(), String::new()),
                    None => (Style::default().fg(t.not_relevant), " new".to_string()),
                    Some(&(ri, w)) => {
                        let s = if ri == i {
                            Style::default()
                        } else {
                            Style::default().fg(t.expansion)
                        };
                        (
                            s,
                            if (x.weight - w).abs() >= 0.005 {
                                format!(" {:+.2}", x.weight - w)
                            } else {
                                String::new()
                            },
                        )
                    }
                };
                Line::from(vec![
                    Span::styled(format!("{:<14}", show_token(&x.token)), style),
                    Span::raw(format!("{:>5.2}", x.weight)),
                    Span::styled(delta, Style::default().fg(t.muted)),
                ])
            })
            .collect();
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {} ", r.precision)),
            ),
            *area,
        );
    }
}
