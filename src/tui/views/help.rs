//! Help popup, generated from the keymap: every binding with its description.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Clear, Row, Table};
use ratatui::Frame;

use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let rows: Vec<Row> = app
        .keymap
        .bindings
        .iter()
        .map(|b| Row::new(vec![b.context.clone(), b.key.clone(), b.desc.clone()]))
        .collect();
    f.render_widget(Clear, area);
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Min(20),
            ],
        )
        .header(
            Row::new(vec!["where", "key", "does"])
                .style(Style::default().fg(t.accent).add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Help — F1 or Esc closes "),
        ),
        area,
    );
}
