//! Tasks view: background jobs with progress gauges, rate and ETA, a live
//! loss chart for training, the selected task's log tail, cancel and resume.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, Gauge, Paragraph};
use ratatui::Frame;

use crate::tui::app::{App, TaskStatus};
use crate::tui::mouse::Target;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    if app.tasks.is_empty() {
        f.render_widget(
            Paragraph::new("No tasks yet. Press i to build (or resume) the index.")
                .block(Block::default().borders(Borders::ALL).title(" Tasks ")),
            area,
        );
        return;
    }
    let n = app.tasks.len().min(6) as u16;
    let [list, detail] =
        Layout::vertical([Constraint::Length(n * 2 + 2), Constraint::Min(4)]).areas(area);
    draw_list(f, list, app);
    let Some(sel) = app.tasks.get(app.task_sel) else {
        return;
    };
    draw_detail(f, detail, app, sel);
}

/// Six tasks at a time, each a gauge with its state, phase, rate and ETA,
/// scrolled so that the selected one is in view.
fn draw_list(f: &mut Frame, list: Rect, app: &App) {
    let t = &app.theme;
    let block = Block::default().borders(Borders::ALL).title(" Tasks ");
    let inner = block.inner(list);
    f.render_widget(block, list);
    // Six at a time, scrolled so that the selected task is in view.
    let offset = super::search::scroll_offset(app.task_sel, 6);
    for (line, (i, task)) in app
        .tasks
        .iter()
        .enumerate()
        .skip(offset)
        .take(6)
        .enumerate()
    {
        let row = Rect::new(
            inner.x,
            inner.y + 2 * line as u16,
            inner.width,
            2.min(inner.height.saturating_sub(2 * line as u16)),
        );
        if row.height == 0 {
            break;
        }
        app.clicks.add(row, Target::Task(i));
        let status = match &task.status {
            TaskStatus::Running => "running".to_string(),
            TaskStatus::Succeeded => "done".to_string(),
            TaskStatus::Failed(e) => format!("failed: {e}"),
            TaskStatus::Canceled => "canceled".to_string(),
        };
        let ratio = if task.total > 0.0 {
            (task.done / task.total).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let label = match task.status {
            // Progress, phase and ETA mean something only while it runs.
            TaskStatus::Running => running_label(task),
            _ => format!("{} — {status}", task.spec.title),
        };
        let style = if i == app.task_sel {
            Style::default().fg(t.accent).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(t.bar)
        };
        f.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(label)
                .gauge_style(style),
            row,
        );
    }
}

/// A running task: its phase, and its progress, rate and ETA once it
/// reports any (a task of phases alone shows no `0/0`).
fn running_label(task: &crate::tui::app::TaskView) -> String {
    let phase = if task.phase.is_empty() {
        String::new()
    } else {
        format!(" [{}]", task.phase)
    };
    let progress = if task.total > 0.0 {
        format!(
            " {:.0}/{:.0} {:.0} {} ETA {:.0}s",
            task.done, task.total, task.rate, task.unit, task.eta_s
        )
    } else {
        String::new()
    };
    format!("{} — running{phase}{progress}", task.spec.title)
}

/// The selected task's loss chart (training) and log tail.
fn draw_detail(f: &mut Frame, detail: Rect, app: &App, sel: &crate::tui::app::TaskView) {
    let t = &app.theme;
    let (chart_area, log_area) = if sel.losses.is_empty() {
        (None, detail)
    } else {
        let [c, l] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(detail);
        (Some(c), l)
    };
    if let Some(c) = chart_area {
        let max_x = sel.losses.last().map_or(1.0, |p| p.0).max(1.0);
        let max_y = sel.losses.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-6);
        let ds = Dataset::default()
            .marker(symbols::Marker::Braille)
            .style(Style::default().fg(t.accent))
            .data(&sel.losses);
        f.render_widget(
            Chart::new(vec![ds])
                .block(Block::default().borders(Borders::ALL).title(" Loss "))
                .x_axis(Axis::default().bounds([0.0, max_x]))
                .y_axis(
                    Axis::default()
                        .bounds([0.0, max_y])
                        .labels(vec![Line::from("0"), Line::from(format!("{max_y:.2}"))]),
                ),
            c,
        );
    }
    let tail = log_area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = sel
        .log
        .iter()
        .skip(sel.log.len().saturating_sub(tail))
        .map(|l| Line::from(l.clone()))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" Log: {} ", sel.spec.title)),
        ),
        log_area,
    );
}
