//! Drawing: the tab bar, the active view, the status line and key hints, and
//! the help popup. Views read the App; they never change it.

pub mod compare;
pub mod failures;
pub mod frontier;
pub mod help;
pub mod search;
pub mod tasks;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Tabs};
use ratatui::Frame;

use super::app::{App, IndexState, Tab, TABS};
use super::mouse::Target;
use super::theme::Theme;

pub fn draw(f: &mut Frame, app: &App) {
    let [tabs, body, status, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let t = &app.theme;
    app.clicks.clear();
    // Tabs draws " title " cells joined by a one-cell divider.
    let mut x = tabs.x;
    for tab in TABS {
        let w = tab.title().chars().count() as u16 + 2;
        app.clicks.add(
            Rect::new(x, tabs.y, w.min(tabs.right().saturating_sub(x)), 1),
            Target::Tab(tab),
        );
        x = x.saturating_add(w + 1);
    }
    let titles: Vec<Line> = TABS.iter().map(|x| Line::from(x.title())).collect();
    let sel = TABS.iter().position(|x| *x == app.tab).unwrap_or(0);
    f.render_widget(
        Tabs::new(titles)
            .select(sel)
            .style(Style::default().fg(t.muted))
            .highlight_style(Style::default().fg(t.accent).add_modifier(Modifier::BOLD)),
        tabs,
    );
    match app.tab {
        Tab::Search => search::draw(f, body, app),
        Tab::Compare => compare::draw(f, body, app),
        Tab::Failures => failures::draw(f, body, app),
        Tab::Frontier => frontier::draw(f, body, app),
        Tab::Tasks => tasks::draw(f, body, app),
    }
    // When the index build will end, from its task's rate.
    let build = app
        .tasks
        .iter()
        .rev()
        .find(|t| Some(&t.spec) == app.index_task.as_ref());
    let ready_in = match build {
        Some(p) if p.total > 0.0 && p.eta_s > 0.0 => {
            format!(", complete in {}", duration(p.eta_s))
        }
        _ => String::new(),
    };
    let index = match &app.index {
        IndexState::Loading => "index: opening …".to_string(),
        IndexState::Building => match build {
            Some(p) if p.total > 0.0 => {
                format!("index: building {:.0}%{ready_in}", 100.0 * p.done / p.total)
            }
            _ => "index: starting the build …".to_string(),
        },
        IndexState::Ready(n) => format!("index: {n} docs"),
        IndexState::Partial(n, total) => {
            format!("index: building, {n}/{total} docs searchable{ready_in}")
        }
        IndexState::Unavailable(why) => format!("index: none — {why}"),
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {index} │ "), Style::default().fg(t.accent)),
            Span::raw(app.status.clone()),
        ])),
        status,
    );
    f.render_widget(hint_bar(app, hints.width), hints);
    if app.help {
        help::draw(f, centered(f.area(), 80, 80), app);
    }
}

/// The key hints that fit whole in `width` columns; when some do not, the
/// bar ends by pointing at help.
fn hint_bar(app: &App, width: u16) -> Paragraph<'static> {
    let t = &app.theme;
    let more = " f1 all keys ";
    let hints = app.keymap.hints(app.context());
    let mut spans = Vec::new();
    let mut used = 0usize;
    for (i, b) in hints.iter().enumerate() {
        let (key, desc) = (format!(" {} ", b.key), format!("{} ", b.desc));
        let len = key.chars().count() + desc.chars().count();
        let room = match i + 1 == hints.len() {
            true => width as usize,
            false => (width as usize).saturating_sub(more.len()),
        };
        if used + len > room {
            spans.push(Span::styled(more, Style::default().fg(t.accent)));
            break;
        }
        used += len;
        spans.push(Span::styled(
            key,
            Style::default().fg(t.accent).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::styled(desc, Style::default().fg(t.muted)));
    }
    Paragraph::new(Line::from(spans))
}

/// How every list in the explorer looks: a bordered, titled table whose
/// header row is muted.
pub fn table<'a>(
    rows: Vec<Row<'a>>,
    widths: impl IntoIterator<Item = Constraint>,
    header: Vec<&'a str>,
    title: impl Into<Line<'a>>,
    theme: &Theme,
) -> Table<'a> {
    Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().fg(theme.muted)))
        .block(Block::default().borders(Borders::ALL).title(title))
}

/// A rectangle of `pw`% × `ph`% in the middle of `r`.
pub fn centered(r: Rect, pw: u16, ph: u16) -> Rect {
    let w = r.width * pw / 100;
    let h = r.height * ph / 100;
    Rect::new(r.x + (r.width - w) / 2, r.y + (r.height - h) / 2, w, h)
}

/// A weight bar of `width` cells for `w` out of `max`.
pub fn bar(w: f32, max: f32, width: usize) -> String {
    let n = if max > 0.0 {
        ((w / max) * width as f32).round() as usize
    } else {
        0
    };
    "█".repeat(n.min(width)) + &" ".repeat(width - n.min(width))
}

/// A token as shown in tables: visible spaces and escapes.
pub fn show_token(s: &str) -> String {
    s.replace(' ', "·").replace('\n', "↵").replace('\t', "⇥")
}

/// Seconds as a short human duration: "45 s", "3 min", "1 h 20 min".
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}
