//! Compare view: the same query under several precisions. Quantized
//! variants are not built yet, so this view says so instead of pretending.

use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let mut text = String::from(
        "Precision comparison (f32 / f16 / int8 / int4) needs the quantized variants, which this build of csplade does not have yet.\n\n",
    );
    if let Some(r) = &app.result {
        text.push_str(&format!(
            "f32 expansion of \"{}\": {} active terms.",
            r.text,
            r.terms.len()
        ));
    }
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" Compare ")),
        area,
    );
}
