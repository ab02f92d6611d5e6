//! Search view: the query box, its expansion (weight bars; ● in the text,
//! ○ expansion only), ranked hits with BM25 rank and judgement, and for the
//! selected hit the term contributions, its own top terms and its text with
//! matched terms highlighted.

use std::collections::HashSet;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Wrap};
use ratatui::Frame;

use super::{bar, show_token, table};
use crate::explore::{DocDetail, QueryPrior, QueryResult, Ranking};
use crate::tui::app::{App, Focus};
use crate::tui::mouse::Target;
use crate::tui::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let [input, rest] = Layout::vertical([Constraint::Length(3), Constraint::Min(5)]).areas(area);
    draw_query(f, input, app);
    let [left, mid, right] = Layout::horizontal([
        Constraint::Percentage(28),
        Constraint::Percentage(36),
        Constraint::Percentage(36),
    ])
    .areas(rest);
    draw_expansion(f, left, app);
    draw_hits(f, mid, app);
    let [why, text] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
    draw_explanation(f, why, app);
    draw_document(f, text, app);
}

/// The query box, with the cursor while it has the focus.
fn draw_query(f: &mut Frame, input: Rect, app: &App) {
    let t = &app.theme;
    let cursor = if app.focus == Focus::Input { "▏" } else { "" };
    let (before, after) = app.input.split();
    let input_style = if app.focus == Focus::Input {
        Style::default().fg(t.accent)
    } else {
        Style::default().fg(t.muted)
    };
    f.render_widget(
        Paragraph::new(format!("{before}{cursor}{after}")).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Query ")
                .border_style(input_style),
        ),
        input,
    );
    app.clicks.add(input, Target::QueryInput);
}

/// The expansion, with the distribution of its weights underneath.
fn draw_expansion(f: &mut Frame, left: Rect, app: &App) {
    let t = &app.theme;
    let [left, weights] = Layout::vertical([Constraint::Min(5), Constraint::Length(5)]).areas(left);
    if let Some(r) = &app.result {
        draw_weight_histogram(f, weights, r, t);
    }
    let rows = app.result.as_ref().map_or_else(Vec::new, |r| {
        expansion_rows(r, left.height.saturating_sub(3) as usize, t)
    });
    let exp_title = match &app.result {
        Some(r) if !r.feedback_docs.is_empty() => format!(
            " Expansion ({} terms +{} fb) ",
            r.terms.len(),
            r.feedback_tokens.len()
        ),
        Some(r) => format!(" Expansion ({} terms) ", r.terms.len()),
        None => " Expansion ".to_string(),
    };
    f.render_widget(
        table(
            rows,
            [
                Constraint::Length(1),
                Constraint::Min(8),
                Constraint::Length(5),
                Constraint::Length(8),
            ],
            vec!["", "term", "w", ""],
            exp_title,
            t,
        ),
        left,
    );
}

/// How the expansion's weights spread between 0 and the largest.
fn draw_weight_histogram(f: &mut Frame, area: Rect, r: &QueryResult, t: &Theme) {
    const BINS: usize = 24;
    let max = r.terms.first().map_or(1.0, |x| x.weight).max(1e-6);
    let mut hist = [0u64; BINS];
    for term in &r.terms {
        let b = ((term.weight / max) * BINS as f32) as usize;
        hist[b.min(BINS - 1)] += 1;
    }
    f.render_widget(
        Sparkline::default()
            .data(hist)
            .style(Style::default().fg(t.bar))
            .block(Block::default().borders(Borders::ALL).title(format!(
                " {} active terms: weights 0 → {max:.2} ",
                r.terms.len()
            ))),
        area,
    );
}

/// The expansion's terms (● in the text, ○ not), then what feedback added
/// (+, weights as scored) and from where, which keeps up to a third of the
/// `room` rows.
fn expansion_rows(r: &QueryResult, room: usize, t: &Theme) -> Vec<Row<'static>> {
    let max = r.terms.first().map_or(1.0, |x| x.weight);
    let row = |mark: &'static str, color, token: &str, weight: f32| {
        Row::new(vec![
            Cell::from(mark).style(Style::default().fg(color)),
            Cell::from(show_token(token)),
            Cell::from(format!("{weight:.2}")),
            Cell::from(bar(weight, max, 8)).style(Style::default().fg(t.bar)),
        ])
    };
    let lent = match r.feedback_docs.is_empty() {
        true => 0,
        false => (1 + r.feedback_tokens.len()).min(room / 3),
    };
    let mut rows: Vec<Row<'static>> = r
        .terms
        .iter()
        .take(room - lent)
        .map(|term| match term.in_text {
            true => row("●", t.in_text, &term.token, term.weight),
            false => row("○", t.expansion, &term.token, term.weight),
        })
        .collect();
    if lent > 0 {
        rows.push(
            Row::new(vec![
                Cell::from(""),
                Cell::from(format!("from {}", r.feedback_docs.join(" "))),
            ])
            .style(Style::default().fg(t.muted)),
        );
    }
    for (token, weight) in r.feedback_tokens.iter().take(lent.saturating_sub(1)) {
        rows.push(row("+", t.accent, token, *weight));
    }
    rows
}

/// The hits, scrolled so that the selected one is in view.
fn draw_hits(f: &mut Frame, mid: Rect, app: &App) {
    let t = &app.theme;
    let shown = mid.height.saturating_sub(3) as usize;
    let offset = scroll_offset(app.selected, shown);
    let mut hit_rows = Vec::new();
    if let Some(r) = &app.result {
        for (i, h) in r.hits.iter().enumerate().skip(offset).take(shown) {
            let rel = match h.relevance {
                Some(g) if g > 0 => Span::styled("✓", Style::default().fg(t.relevant)),
                Some(_) => Span::styled("·", Style::default().fg(t.not_relevant)),
                None => Span::raw(" "),
            };
            let style = if i == app.selected {
                Style::default()
                    .bg(t.selection)
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            let rank = |r: Option<usize>| Cell::from(r.map_or("-".to_string(), |b| b.to_string()));
            let mut cells = vec![
                Cell::from(format!("{}", h.rank)),
                Cell::from(Line::from(rel)),
                Cell::from(format!("{:.2}", h.score)),
            ];
            if r.ranking != Ranking::Lsr {
                cells.push(rank(h.lsr_rank));
            }
            if r.ranking != Ranking::Bm25 {
                cells.push(rank(h.bm25_rank));
            }
            cells.push(Cell::from(format!("{} {}", h.doc_id, h.title)));
            hit_rows.push(Row::new(cells).style(style));
        }
    }
    let hits_title = hits_title(app);
    let ranking = app.result.as_ref().map_or(Ranking::Lsr, |r| r.ranking);
    let mut widths = vec![
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(8),
    ];
    let mut header = vec!["#", "", "score"];
    if ranking != Ranking::Lsr {
        widths.push(Constraint::Length(5));
        header.push("lsr");
    }
    if ranking != Ranking::Bm25 {
        widths.push(Constraint::Length(5));
        header.push("bm25");
    }
    widths.push(Constraint::Min(10));
    header.push("document");
    f.render_widget(table(hit_rows, widths, header, hits_title, t), mid);
    // Hit offset + i is drawn on the i-th line under the border and the header.
    let total = app.result.as_ref().map_or(0, |r| r.hits.len());
    for i in 0..total.saturating_sub(offset).min(shown) {
        let row = Rect::new(
            mid.x + 1,
            mid.y + 2 + i as u16,
            mid.width.saturating_sub(2),
            1,
        );
        app.clicks.add(row, Target::Hit(offset + i));
    }
}

/// The hit list's title: the ranking and position, or why it is empty.
fn hits_title(app: &App) -> String {
    match (&app.result, app.query_pending) {
        (_, true) => " Hits (running …) ".to_string(),
        (Some(r), _) if r.hits.is_empty() => match &app.index {
            crate::tui::app::IndexState::Ready(_) => " Hits (none) ".to_string(),
            crate::tui::app::IndexState::Partial(n, total) => {
                format!(" Hits (none among the {n} of {total} documents indexed so far) ")
            }
            _ => {
                " Hits (none yet: the index is not searchable yet, see the status bar) ".to_string()
            }
        },
        (Some(r), _) => format!(
            " Hits by {} ({} of {}, h: rank by {}) ",
            r.ranking.name(),
            (app.selected + 1).min(r.hits.len()),
            r.hits.len(),
            r.ranking.next().name()
        ),
        (None, _) => " Hits ".to_string(),
    }
}

/// Why the selected hit matched: each shared term's q_w, idf factor (with a
/// query prior), feedback weight (with feedback), d_w and product.
fn draw_explanation(f: &mut Frame, why: Rect, app: &App) {
    let prior = app.result.as_ref().map_or(QueryPrior::None, |r| r.prior);
    let feedback = app
        .result
        .as_ref()
        .is_some_and(|r| !r.feedback_terms.terms.is_empty());
    let mut why_rows = Vec::new();
    if let Some(d) = &app.detail {
        for (tok, c) in d
            .contributions
            .iter()
            .take(why.height.saturating_sub(3) as usize)
        {
            let mut cells = vec![show_token(tok), format!("{:.2}", c.query_weight)];
            if !prior.is_none() {
                cells.push(format!("{:.2}", c.prior));
            }
            if feedback {
                cells.push(format!("{:.2}", c.feedback));
            }
            cells.extend([format!("{:.2}", c.doc_weight), format!("{:.2}", c.product)]);
            why_rows.push(Row::new(cells));
        }
    }
    let why_title = match &app.detail {
        Some(d) => format!(
            " Why {} matched ({} shared terms) ",
            d.doc_id,
            d.contributions.len()
        ),
        None => " Why it matched ".to_string(),
    };
    let mut widths = vec![Constraint::Min(8), Constraint::Length(6)];
    let mut header = vec!["term", "q_w"];
    if !prior.is_none() {
        widths.push(Constraint::Length(5));
        header.push("idf");
    }
    if feedback {
        widths.push(Constraint::Length(5));
        header.push("fb");
    }
    widths.extend([Constraint::Length(6), Constraint::Length(7)]);
    header.extend(["d_w", product_header(!prior.is_none(), feedback)]);
    f.render_widget(table(why_rows, widths, header, why_title, &app.theme), why);
}

/// How the product column reads: q×d, times the idf factor with a prior,
/// with the feedback's weight added to the (weighed) q with feedback.
fn product_header(prior: bool, feedback: bool) -> &'static str {
    match (prior, feedback) {
        (false, false) => "q×d",
        (true, false) => "q×i×d",
        (_, true) => "(q+f)d",
    }
}

/// The selected hit's title, its own and missed terms, and its text: what
/// the model read (matched words highlighted), then, after a rule, what it
/// did not, dimmed.
fn draw_document(f: &mut Frame, text: Rect, app: &App) {
    let doc_lines = app
        .detail
        .as_ref()
        .map_or_else(Vec::new, |d| document_lines(d, &app.theme));
    f.render_widget(
        Paragraph::new(doc_lines)
            .wrap(Wrap { trim: true })
            .scroll((app.doc_scroll, 0))
            .block(Block::default().borders(Borders::ALL).title(" Document ")),
        text,
    );
    app.clicks.add(text, Target::Document);
}

fn terms_line(terms: &[(String, f32)], take: usize) -> String {
    terms
        .iter()
        .take(take)
        .map(|(tok, w)| format!("{}:{w:.1}", show_token(tok)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn document_lines(d: &DocDetail, t: &Theme) -> Vec<Line<'static>> {
    let mut lines = vec![
        Line::from(Span::styled(
            d.title.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Line::from(Span::styled(
            format!("top terms: {}", terms_line(&d.top_terms, 12)),
            Style::default().fg(t.muted),
        )),
    ];
    if !d.missed_terms.is_empty() {
        lines.push(Line::from(Span::styled(
            format!(
                "not in the query's expansion: {}",
                terms_line(&d.missed_terms, 10)
            ),
            Style::default().fg(t.not_relevant),
        )));
    }
    let matched: HashSet<String> = d
        .contributions
        .iter()
        .map(|(tok, _)| tok.trim().to_lowercase())
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect();
    if let Some((k, words)) = &d.passage {
        lines.push(Line::from(Span::styled(
            format!(
                "── ranked by passage {k} of {}, whose terms are above ──",
                d.passages
            ),
            Style::default().fg(t.accent),
        )));
        lines.push(highlighted(words, &matched, t));
        lines.push(Line::from(Span::styled(
            "── the whole document ──".to_string(),
            Style::default().fg(t.accent),
        )));
    }
    let (read, unread) = match d.encoded_window {
        Some((at, _)) => d.text.split_at(at.min(d.text.len())),
        None => (d.text.as_str(), ""),
    };
    lines.extend(read.lines().map(|para| highlighted(para, &matched, t)));
    if let (Some((_, tokens)), false) = (d.encoded_window, unread.trim().is_empty()) {
        let rule = match d.passages {
            0 => format!(
                "── not read by the model: it encodes the first {tokens} tokens (--max-len) ──"
            ),
            n => format!("── past {tokens} tokens: read as {n} passages ──"),
        };
        lines.push(Line::from(Span::styled(
            rule,
            Style::default().fg(t.accent),
        )));
        if !d.beyond_window.is_empty() {
            let shown: Vec<String> = d.beyond_window.iter().map(|x| show_token(x)).collect();
            lines.push(Line::from(Span::styled(
                format!(
                    "query terms only beyond the encoded window: {}",
                    shown.join(" ")
                ),
                Style::default().fg(t.not_relevant),
            )));
        }
        lines.extend(
            unread.lines().map(|para| {
                Line::from(Span::styled(para.to_string(), Style::default().fg(t.muted)))
            }),
        );
    }
    lines
}

/// A paragraph with the words the query matched in bold.
fn highlighted(para: &str, matched: &HashSet<String>, t: &Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, word) in para.split(' ').enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        let key: String = word
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if !key.is_empty() && matched.contains(&key) {
            spans.push(Span::styled(
                word.to_string(),
                Style::default().fg(t.in_text).add_modifier(Modifier::BOLD),
            ));
        } else {
            spans.push(Span::raw(word.to_string()));
        }
    }
    Line::from(spans)
}

/// The first row shown of a list whose `selected` row must be visible in
/// `shown` rows (the selection stays on the last line while it moves down).
pub fn scroll_offset(selected: usize, shown: usize) -> usize {
    if shown == 0 {
        0
    } else {
        (selected + 1).saturating_sub(shown)
    }
}
