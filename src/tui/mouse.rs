//! Mouse input: a click selects what is under the pointer — a tab, the query
//! box, a hit, a failure row (a second click on it opens the query in
//! Search), a task — and the wheel moves through the list, the document or
//! the help under it. Views record where they drew each target in the
//! frame's [`ClickMap`]; this module turns a pointer event into the same
//! state changes and effects as the keys do.

use std::cell::RefCell;

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::action::Effect;
use super::app::{App, Focus, Tab};
use super::keymap::KeyAction;

/// Something a click can land on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Tab(Tab),
    QueryInput,
    /// The n-th hit of the current result.
    Hit(usize),
    /// The selected hit's text.
    Document,
    /// The n-th row of the failures as currently viewed.
    FailureRow(usize),
    Task(usize),
}

/// Where the last frame drew each target; later entries lie on top.
#[derive(Debug, Default)]
pub struct ClickMap(RefCell<Vec<(Rect, Target)>>);

impl ClickMap {
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }

    pub fn add(&self, area: Rect, target: Target) {
        if area.width > 0 && area.height > 0 {
            self.0.borrow_mut().push((area, target));
        }
    }

    /// The topmost target at a cell.
    pub fn at(&self, column: u16, row: u16) -> Option<Target> {
        let p = Position::new(column, row);
        self.0
            .borrow()
            .iter()
            .rev()
            .find(|(r, _)| r.contains(p))
            .map(|(_, t)| *t)
    }
}

impl App {
    pub fn on_mouse(&mut self, ev: MouseEvent) -> Vec<Effect> {
        let click = matches!(ev.kind, MouseEventKind::Down(MouseButton::Left));
        let down = match ev.kind {
            MouseEventKind::ScrollDown => Some(true),
            MouseEventKind::ScrollUp => Some(false),
            _ => None,
        };
        if self.help {
            return match (click, down) {
                (true, _) => self.run(KeyAction::Help),
                (_, Some(true)) => self.run(KeyAction::HelpDown),
                (_, Some(false)) => self.run(KeyAction::HelpUp),
                _ => vec![],
            };
        }
        let Some(target) = self.clicks.at(ev.column, ev.row) else {
            return vec![];
        };
        match (target, click, down) {
            (Target::Tab(t), true, _) => self.switch_tab(t),
            (Target::QueryInput, true, _) => self.run(KeyAction::FocusInput),
            (Target::Hit(i), true, _) => {
                self.focus = Focus::Results;
                self.select_hit(i)
            }
            (Target::Hit(_), _, Some(d)) => self.run(if d {
                KeyAction::NextHit
            } else {
                KeyAction::PrevHit
            }),
            (Target::Document, _, Some(d)) => {
                self.doc_scroll = if d {
                    self.doc_scroll.saturating_add(3)
                } else {
                    self.doc_scroll.saturating_sub(3)
                };
                vec![]
            }
            (Target::FailureRow(i), true, _) => {
                if i == self.failure_sel {
                    self.run(KeyAction::OpenFailure)
                } else {
                    self.failure_sel = i;
                    vec![]
                }
            }
            (Target::Task(i), true, _) => {
                self.task_sel = i;
                vec![]
            }
            (Target::FailureRow(_) | Target::Task(_), _, Some(d)) => self.run(if d {
                KeyAction::NextRow
            } else {
                KeyAction::PrevRow
            }),
            _ => vec![],
        }
    }
}
