//! Frontier view: every point of the collection's trade-off as a scatter
//! of nDCG@10 against the chosen cost (query latency, document encoding
//! time, model size, index size), Pareto-optimal points marked ◆ and each
//! labelled; beside it the points' table with their intervals, the pool
//! they were measured on, and the full-index figure where one was given.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Wrap};
use ratatui::Frame;

use crate::explore::{Frontier, FrontierAxis, FrontierPoint};
use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(fr) = &app.frontier.frontier else {
        return draw_empty(f, area, app);
    };
    let [head, body] = Layout::vertical([Constraint::Length(2), Constraint::Min(4)]).areas(area);
    f.render_widget(Paragraph::new(summary(fr)).wrap(Wrap { trim: true }), head);
    let axis = app.frontier.axis;
    let pareto = fr.pareto(axis);
    let (chart, table) = if body.width >= 150 {
        let [c, t] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(body);
        (c, t)
    } else {
        let [c, t] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
        (c, t)
    };
    draw_chart(f, chart, app, fr, &pareto);
    draw_table(f, table, app, fr, &pareto);
}

/// What there is before a frontier is computed.
fn draw_empty(f: &mut Frame, area: Rect, app: &App) {
    let text = if app.frontier.loading {
        "Reading the cached frontier …".to_string()
    } else if app.tasks.iter().any(|t| {
        Some(&t.spec) == app.frontier.task.as_ref()
            && t.status == crate::tui::app::TaskStatus::Running
    }) {
        "Computing the frontier in the background (progress in Tasks) …".to_string()
    } else {
        "No frontier for this collection yet. Press r to compute one in the background: f32, f16, q8_0 \
         and q4_0 of the model re-rank one pool (a sample of judged queries; per query BM25's and the \
         index's top documents and every judged one), so only the pool is encoded. It is cached: the \
         next time it opens at once."
            .to_string()
    };
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" Frontier ")),
        area,
    );
}

/// The pool and the reference, in two lines.
fn summary(fr: &Frontier) -> Vec<Line<'static>> {
    vec![
        Line::from(format!(
            "{} ({}) · {} · pool depth {} → {} of {} documents · reference {}",
            fr.dataset,
            fr.split,
            queries(fr.queries),
            fr.pool.depth,
            fr.pool_documents,
            fr.corpus_documents,
            fr.reference
        )),
        Line::from(format!(
            "pool encoding {:.0}% of full indexes · ◆ Pareto-optimal · nDCG@10 [95% bootstrap CI] · Δ = pooled − full index",
            100.0 * fr.cost.share()
        )),
    ]
}

/// The scatter: nDCG@10 up, cost along, each point labelled.
fn draw_chart(f: &mut Frame, area: Rect, app: &App, fr: &Frontier, pareto: &[bool]) {
    let t = &app.theme;
    let axis = app.frontier.axis;
    let xs: Vec<f64> = fr.points.iter().map(|p| axis.cost(p)).collect();
    let ys: Vec<f64> = fr.points.iter().map(|p| p.ndcg10).collect();
    let (x0, x1) = padded(&xs);
    let (y0, y1) = padded(&ys);
    let title = format!(" nDCG@10 ↑ against {} → · a: axis ", axis.name());
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height < 3 || inner.width < 10 {
        return;
    }
    // The last row holds the x-axis range; the plot is above it.
    let (w, h) = (inner.width as usize, inner.height as usize - 1);
    // Placed last, placed first: the selection over all, the front over the rest.
    let mut order: Vec<usize> = (0..fr.points.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((i == app.frontier.selected, pareto[i])));
    let marks: Vec<(f64, f64, String)> = order
        .iter()
        .map(|&i| {
            let mark = if pareto[i] { "◆" } else { "●" };
            (
                (xs[i] - x0) / (x1 - x0),
                (ys[i] - y0) / (y1 - y0),
                format!("{mark} {}", short_label(&fr.points[i])),
            )
        })
        .collect();
    let lines = label_rows(app, pareto, &order, &marks, w, h);
    let mut text: Vec<Line> = lines.into_iter().map(Line::from).collect();
    let lo = format!("{x0:.1}");
    let hi = format!("{x1:.1}");
    let gap = w.saturating_sub(lo.chars().count() + hi.chars().count());
    text.push(Line::from(Span::styled(
        format!("{lo}{}{hi}", " ".repeat(gap)),
        Style::default().fg(t.muted),
    )));
    f.render_widget(Paragraph::new(text), inner);
    let y_range = format!("{y1:.3}");
    if inner.width as usize > y_range.len() + 2 {
        let r = Rect::new(
            inner.right() - y_range.len() as u16,
            inner.y,
            y_range.len() as u16,
            1,
        );
        f.render_widget(
            Paragraph::new(Span::styled(y_range, Style::default().fg(t.muted))),
            r,
        );
        let lo = format!("{y0:.3}");
        let r = Rect::new(
            inner.right() - lo.len() as u16,
            inner.y + h as u16 - 1,
            lo.len() as u16,
            1,
        );
        f.render_widget(
            Paragraph::new(Span::styled(lo, Style::default().fg(t.muted))),
            r,
        );
    }
}

/// The plot's rows: every label at its placed cell, styled as a front
/// point, another point or the selection.
fn label_rows(
    app: &App,
    pareto: &[bool],
    order: &[usize],
    marks: &[(f64, f64, String)],
    w: usize,
    h: usize,
) -> Vec<Vec<Span<'static>>> {
    let t = &app.theme;
    let placed = place_labels(marks, w, h);
    let mut lines: Vec<Vec<Span>> = vec![Vec::new(); h];
    let mut rows: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); h];
    for (k, &(row, col)) in placed.iter().enumerate() {
        rows[row].push((col, marks[k].2.chars().count(), order[k]));
    }
    for (row, items) in rows.iter_mut().enumerate() {
        items.sort();
        let mut at = 0;
        for &(col, len, i) in items.iter() {
            lines[row].push(Span::raw(" ".repeat(col - at)));
            let mut style = Style::default().fg(if pareto[i] { t.accent } else { t.muted });
            if i == app.frontier.selected {
                style = Style::default()
                    .fg(t.selection)
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED);
            }
            let label = marks[order.iter().position(|&o| o == i).unwrap_or(0)]
                .2
                .clone();
            lines[row].push(Span::styled(label, style));
            at = col + len;
        }
    }
    lines
}

/// Cells for labels at fractional positions (x right, y up, 0–1) in a
/// `w` × `h` grid, in order: each at its point's cell, moved left to fit
/// the width, and moved to the nearest free row (up, down, further) when
/// an earlier label holds its cells. `(row, column)` per label.
pub fn place_labels(marks: &[(f64, f64, String)], w: usize, h: usize) -> Vec<(usize, usize)> {
    let mut taken: Vec<Vec<(usize, usize)>> = vec![Vec::new(); h];
    let free = |taken: &Vec<Vec<(usize, usize)>>, row: usize, a: usize, b: usize| {
        taken[row].iter().all(|&(s, e)| b <= s || a >= e)
    };
    marks
        .iter()
        .map(|(x, y, label)| {
            let len = label.chars().count().min(w);
            let col = ((x.clamp(0.0, 1.0) * (w - 1) as f64).round() as usize).min(w - len);
            let row = (h - 1) - (y.clamp(0.0, 1.0) * (h - 1) as f64).round() as usize;
            let candidates = (0..h)
                .flat_map(|d| [row.checked_sub(d), Some(row + d)])
                .flatten();
            let row = candidates
                .filter(|&r| r < h)
                .find(|&r| free(&taken, r, col, col + len))
                .unwrap_or(row);
            taken[row].push((col, col + len));
            (row, col)
        })
        .collect()
}

/// The table of points: quality with its interval, the full-index check,
/// the cost on the drawn axis.
fn draw_table(f: &mut Frame, area: Rect, app: &App, fr: &Frontier, pareto: &[bool]) {
    let t = &app.theme;
    let axis = app.frontier.axis;
    let visible = area.height.saturating_sub(3) as usize;
    let offset = super::search::scroll_offset(app.frontier.selected, visible.max(1));
    let rows: Vec<Row> = fr
        .points
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible.max(1))
        .map(|(i, p)| {
            let style = if i == app.frontier.selected {
                Style::default()
                    .fg(t.selection)
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            Row::new(vec![
                if pareto[i] {
                    "◆".to_string()
                } else {
                    " ".to_string()
                },
                p.label.clone(),
                format!("{:.3}", p.ndcg10),
                format!("[{:.3},{:.3}]", p.ndcg10_ci[0], p.ndcg10_ci[1]),
                p.full_ndcg10
                    .map_or("-".into(), |x| format!("{:+.3}", p.ndcg10 - x)),
                format!("{:.1}", axis.cost(p)),
            ])
            .style(style)
        })
        .collect();
    let widths = [
        Constraint::Length(1),
        Constraint::Min(14),
        Constraint::Length(6),
        Constraint::Length(13),
        Constraint::Length(6),
        Constraint::Length(8),
    ];
    let title = format!(
        " {} points · {} each ",
        fr.points.len(),
        queries(fr.queries)
    );
    f.render_widget(
        super::table(
            rows,
            widths,
            vec!["", "point", "nDCG", "95% CI", "Δ full", cost_header(axis)],
            title,
            t,
        ),
        area,
    );
}

/// "1 query", "80 queries".
fn queries(n: usize) -> String {
    format!("{n} {}", if n == 1 { "query" } else { "queries" })
}

fn cost_header(axis: FrontierAxis) -> &'static str {
    match axis {
        FrontierAxis::QueryLatency => "q ms",
        FrontierAxis::DocSpeed => "s/1k tok",
        FrontierAxis::ModelBytes => "model MB",
        FrontierAxis::IndexBytes => "index MB",
    }
}

/// A point's label without the model's name when it is the reference's
/// (`default:q8_0` → `q8_0`), so labels fit beside their marks.
fn short_label(p: &FrontierPoint) -> String {
    let l = p.label.replace("default:", "").replace("default", "f32");
    if l.chars().count() > 28 {
        l.chars().take(27).collect::<String>() + "…"
    } else {
        l
    }
}

/// Bounds around `v` with 8% room either side (a unit around one value).
fn padded(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-3);
    (lo - pad, hi + pad * 3.0)
}

#[cfg(test)]
mod tests {
    use super::place_labels;

    #[test]
    fn labels_land_at_their_points_and_never_overlap() {
        let m = |x: f64, y: f64, s: &str| (x, y, s.to_string());
        // top-left, bottom-right (moved left to fit), and two on one spot
        let marks = [
            m(0.0, 1.0, "a"),
            m(1.0, 0.0, "right"),
            m(0.5, 0.5, "one"),
            m(0.5, 0.5, "two"),
        ];
        let p = place_labels(&marks, 20, 5);
        assert_eq!(p[0], (0, 0));
        assert_eq!(p[1], (4, 15));
        assert_eq!(p[2], (2, 10));
        assert_eq!(p[3], (1, 10), "the second moves to the row above");
        // A full column of collisions still places every label somewhere.
        let many: Vec<_> = (0..5).map(|i| m(0.5, 0.5, &format!("p{i}"))).collect();
        let p = place_labels(&many, 20, 5);
        let mut rows: Vec<usize> = p.iter().map(|r| r.0).collect();
        rows.sort();
        rows.dedup();
        assert_eq!(rows.len(), 5);
    }
}
