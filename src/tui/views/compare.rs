//! Compare view: the current query under several encoders side by side (a
//! preset: causal / echo / bi, base vs trained, or f32 / f16 / q8_0 / q4_0)
//! — per encoder the active terms, latency, model size and agreement with the
//! first (term overlap, cosine, largest weight change, ranking overlap and
//! Kendall τ where the open index holds its documents), then the top terms
//! per column: red for a term outside the first's list, yellow for one at
//! another rank, with its weight change. Encoders of different vocabularies
//! (a SPLADE BERT beside a CSPLADE Llama) are lined up by the terms' surface
//! text, and the title says how many top terms have no counterpart.

use std::collections::HashMap;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row};
use ratatui::Frame;

use super::show_token;
use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let (preset, _) = app.compare_preset();
    let Some(c) = &app.comparison else {
        return draw_placeholder(f, area, app);
    };
    // Column labels: the specs without the model when they all share it.
    let same_model = c
        .runs
        .windows(2)
        .all(|w| w[0].encoder.model == w[1].encoder.model);
    let label = |r: &crate::explore::EncoderRun| {
        let full = r.encoder.to_string();
        match full.split_once(':') {
            Some((_, rest)) if same_model => rest.to_string(),
            _ if same_model => "f32".to_string(),
            _ => full,
        }
    };
    // Across vocabularies, a term is its surface text; within one, its id.
    let by_text = c.runs.iter().any(|r| r.alignment.is_some());
    let key = |x: &crate::explore::ExpansionTerm| match by_text {
        true => crate::explore::surface(&x.token),
        false => x.id.to_string(),
    };
    let n = c.runs.len() as u16;
    let [top, terms] =
        Layout::vertical([Constraint::Length((n + 3).max(12)), Constraint::Min(3)]).areas(area);
    let [summary, scatter] =
        Layout::horizontal([Constraint::Min(60), Constraint::Length(34)]).areas(top);
    draw_scatter(f, scatter, c, &label, &key, t);
    let title = format!(
        " Compare {preset}: \"{}\" (vs the first{}; p: next preset) ",
        c.text,
        alignment_note(c)
    );
    draw_summary(f, summary, c, &label, title, t);
    draw_term_columns(f, terms, c, &label, &key, t);
}

/// What Compare shows before a comparison: how to get one.
fn draw_placeholder(f: &mut Frame, area: Rect, app: &App) {
    let (preset, about) = app.compare_preset();
    let msg = if app.compare_pending {
        format!("Loading the encoders of {preset} ({about}) and encoding the query under each …")
    } else if app.result.is_some() {
        format!("Press Enter to compare the current query: {preset} ({about}). p: next preset.")
    } else {
        format!("Run a query in Search first, then compare it here: {preset} ({about}). p: next preset.")
    };
    f.render_widget(
        Paragraph::new(msg).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" Compare: {preset} ")),
        ),
        area,
    );
}

/// One row per encoder: active terms, latency, model size and agreement
/// with the first.
fn draw_summary(
    f: &mut Frame,
    summary: Rect,
    c: &crate::explore::Comparison,
    label: &dyn Fn(&crate::explore::EncoderRun) -> String,
    title: String,
    t: &crate::tui::theme::Theme,
) {
    let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    // Wide enough for the longest encoder label (`base:echo:logprob:5`).
    let label_width = c
        .runs
        .iter()
        .map(|r| label(r).chars().count())
        .max()
        .unwrap_or(7)
        .clamp(7, 40) as u16;
    let rows: Vec<Row> = c
        .runs
        .iter()
        .map(|r| {
            Row::new(vec![
                label(r),
                r.active.to_string(),
                format!("{:.1} ms", r.latency_ms),
                format!("{:.0} MB", r.model_bytes as f64 / 1e6),
                fmt(r.vs_first.map(|d| d.overlap10)),
                fmt(r.vs_first.map(|d| d.cosine)),
                fmt(r.vs_first.map(|d| d.max_abs_dw)),
                fmt(r.rank_overlap10),
                fmt(r.kendall_tau),
            ])
        })
        .collect();
    f.render_widget(
        super::table(
            rows,
            [
                Constraint::Length(label_width),
                Constraint::Length(7),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(10),
                Constraint::Length(8),
            ],
            vec![
                "encoder", "active", "latency", "model", "terms@10", "cosine", "max|Δw|",
                "hits@10", "τ",
            ],
            title,
            t,
        ),
        summary,
    );
}

/// Each encoder's top terms in a column of its own: red for a term outside
/// the first's list, yellow for one at another rank, with its weight change.
fn draw_term_columns(
    f: &mut Frame,
    terms: Rect,
    c: &crate::explore::Comparison,
    label: &dyn Fn(&crate::explore::EncoderRun) -> String,
    key: &dyn Fn(&crate::explore::ExpansionTerm) -> String,
    t: &crate::tui::theme::Theme,
) {
    let reference: HashMap<String, (usize, f32)> = c
        .runs
        .first()
        .map(|r| {
            r.terms
                .iter()
                .enumerate()
                .map(|(i, x)| (key(x), (i, x.weight)))
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
                let (style, delta) = match reference.get(&key(x)) {
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
                    .title(format!(" {} ", label(r))),
            ),
            *area,
        );
    }
}

/// Term weights of the first encoder (x) against the second (y): on the
/// diagonal a term kept its weight, on an axis it is one encoder's alone.
fn draw_scatter(
    f: &mut Frame,
    area: Rect,
    c: &crate::explore::Comparison,
    label: &dyn Fn(&crate::explore::EncoderRun) -> String,
    key: &dyn Fn(&crate::explore::ExpansionTerm) -> String,
    t: &crate::tui::theme::Theme,
) {
    use ratatui::symbols::Marker;
    use ratatui::widgets::{Axis, Chart, Dataset, GraphType};
    let (Some(a), Some(b)) = (c.runs.first(), c.runs.get(1)) else {
        return;
    };
    let wa: HashMap<String, f64> = a.terms.iter().map(|x| (key(x), x.weight as f64)).collect();
    let wb: HashMap<String, f64> = b.terms.iter().map(|x| (key(x), x.weight as f64)).collect();
    let mut ids: Vec<String> = wa.keys().chain(wb.keys()).cloned().collect();
    ids.sort_unstable();
    ids.dedup();
    let points: Vec<(f64, f64)> = ids
        .iter()
        .map(|id| {
            (
                wa.get(id).copied().unwrap_or(0.0),
                wb.get(id).copied().unwrap_or(0.0),
            )
        })
        .collect();
    let top = points
        .iter()
        .map(|p| p.0.max(p.1))
        .fold(0.5f64, f64::max)
        .ceil();
    let diagonal = [(0.0, 0.0), (top, top)];
    let datasets = vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(t.muted))
            .data(&diagonal),
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::default().fg(t.accent))
            .data(&points),
    ];
    let axis = |name: String| {
        Axis::default()
            .title(name)
            .style(Style::default().fg(t.muted))
            .bounds([0.0, top])
            .labels(vec![Line::from("0"), Line::from(format!("{top:.0}"))])
    };
    f.render_widget(
        Chart::new(datasets)
            .block(Block::default().borders(Borders::ALL).title(format!(
                " weights: {} (y) vs {} (x) ",
                label(b),
                label(a)
            )))
            .x_axis(axis(label(a)))
            .y_axis(axis(label(b))),
        area,
    );
}

/// `, terms aligned by surface text: 3 of the first's top terms have no
/// counterpart` when vocabularies differ, else nothing.
fn alignment_note(c: &crate::explore::Comparison) -> String {
    let missing: usize = c
        .runs
        .iter()
        .filter_map(|r| r.alignment.as_ref())
        .map(|a| a.first_only.len())
        .max()
        .unwrap_or(0);
    match c.runs.iter().any(|r| r.alignment.is_some()) {
        true => format!(", terms by surface text; {missing} of the first's have no counterpart"),
        false => String::new(),
    }
}
