//! What each key action does to the explorer's state: the key map turns
//! keys into [`KeyAction`]s and the mouse module turns clicks and the wheel
//! into the same, so both go through [`App::run`].

use super::action::Effect;
use super::app::*;
use super::keymap::KeyAction;
use crate::explore::FailureRow;
use crate::tasks::TaskSpec;

impl App {
    pub(super) fn run(&mut self, action: KeyAction) -> Vec<Effect> {
        match action {
            KeyAction::Quit => {
                self.quit = true;
                vec![Effect::Quit]
            }
            KeyAction::Help | KeyAction::HelpDown | KeyAction::HelpUp => self.run_help(action),
            KeyAction::NextTab | KeyAction::PrevTab => {
                let i = TABS.iter().position(|t| *t == self.tab).unwrap_or(0);
                let n = TABS.len();
                self.switch_tab(
                    TABS[if action == KeyAction::NextTab {
                        (i + 1) % n
                    } else {
                        (i + n - 1) % n
                    }],
                )
            }
            KeyAction::Submit => self.submit(),
            KeyAction::CycleRanking => self.cycle_ranking(),
            KeyAction::ToggleFeedback => self.toggle_feedback(),
            KeyAction::FocusResults => {
                self.focus = Focus::Results;
                vec![]
            }
            KeyAction::FocusInput => {
                self.focus = Focus::Input;
                vec![]
            }
            // In an empty query box (or one showing a recalled query), ↑/↓
            // walk the query history instead of the hits.
            KeyAction::NextHit | KeyAction::PrevHit
                if self.focus == Focus::Input && self.input.browsing() =>
            {
                self.input.recall(action == KeyAction::PrevHit);
                vec![]
            }
            KeyAction::NextHit => self.select_hit(self.selected + 1),
            KeyAction::FirstHit => self.select_hit(0),
            KeyAction::LastHit => self.select_hit(usize::MAX),
            KeyAction::PrevHit => self.select_hit(self.selected.saturating_sub(1)),
            KeyAction::ScrollDown => {
                self.doc_scroll = self.doc_scroll.saturating_add(10);
                vec![]
            }
            KeyAction::ScrollUp => {
                self.doc_scroll = self.doc_scroll.saturating_sub(10);
                vec![]
            }
            KeyAction::NextRow
            | KeyAction::PrevRow
            | KeyAction::FirstRow
            | KeyAction::LastRow
            | KeyAction::PageDownRows
            | KeyAction::PageUpRows => self.move_row(action),
            KeyAction::RunCompare => self.run_compare(),
            KeyAction::RunFrontier
            | KeyAction::CycleFrontierAxis
            | KeyAction::OpenFrontierPoint => self.run_frontier(action),
            KeyAction::NextComparePreset => self.next_compare_preset(),
            KeyAction::ComputeFailures
            | KeyAction::CycleFailureView
            | KeyAction::ExplainFailure
            | KeyAction::ExportFailures
            | KeyAction::OpenFailure => self.run_failures(action),
            KeyAction::StartIndex
            | KeyAction::StartEval
            | KeyAction::StartQuantize
            | KeyAction::StartAdapt
            | KeyAction::StartContrastive
            | KeyAction::ResumeTask
            | KeyAction::CancelTask => self.run_task(action),
        }
    }

    /// Run the query in the box (as soon as the model is loaded).
    fn submit(&mut self) -> Vec<Effect> {
        let q = self.input.text.trim().to_string();
        self.input.remember();
        if q.is_empty() {
            self.status = "type a query first".into();
            return vec![];
        }
        self.query_pending = true;
        if !self.model_ready {
            self.status = "the query runs as soon as the model is loaded …".into();
            return vec![];
        }
        self.status = "encoding …".into();
        vec![Effect::RunQuery(q)]
    }

    /// Rank the hits by the next system (LSR, hybrid, BM25), re-running the query.
    fn cycle_ranking(&mut self) -> Vec<Effect> {
        self.ranking = self.ranking.next();
        self.status = format!("hits ranked by {}", self.ranking.name());
        self.rerun_query()
    }

    /// LSR with or without its feedback, for the same query.
    fn toggle_feedback(&mut self) -> Vec<Effect> {
        self.feedback_off = !self.feedback_off;
        self.status = match self.feedback_off {
            true => "feedback off: LSR ranks the expansion alone".into(),
            false => "feedback on (where the model or --query-feedback has one)".into(),
        };
        self.rerun_query()
    }

    /// The shown query again, under the current settings.
    fn rerun_query(&mut self) -> Vec<Effect> {
        match &self.result {
            Some(r) if self.model_ready => {
                self.query_pending = true;
                vec![Effect::RunQuery(r.text.clone())]
            }
            _ => vec![],
        }
    }

    /// Open, close and scroll the help popup.
    fn run_help(&mut self, action: KeyAction) -> Vec<Effect> {
        match action {
            KeyAction::Help => {
                self.help = !self.help;
                self.help_scroll = 0;
                vec![]
            }
            KeyAction::HelpDown => {
                self.help_scroll = (self.help_scroll + 1).min(self.help_rows().saturating_sub(1));
                vec![]
            }
            KeyAction::HelpUp => {
                self.help_scroll = self.help_scroll.saturating_sub(1);
                vec![]
            }
            _ => vec![],
        }
    }

    /// Up, down, to either end or ten at a time in the Failures or Tasks list.
    fn move_row(&mut self, action: KeyAction) -> Vec<Effect> {
        match action {
            KeyAction::NextRow
            | KeyAction::PrevRow
            | KeyAction::FirstRow
            | KeyAction::LastRow
            | KeyAction::PageDownRows
            | KeyAction::PageUpRows => {
                let (sel, len) = match self.tab {
                    Tab::Failures => {
                        let n = self.visible_failures().len();
                        (&mut self.failure_sel, n)
                    }
                    Tab::Frontier => {
                        let n = self.frontier_len();
                        (&mut self.frontier.selected, n)
                    }
                    _ => (&mut self.task_sel, self.tasks.len()),
                };
                if len > 0 {
                    *sel = match action {
                        KeyAction::NextRow => *sel + 1,
                        KeyAction::PrevRow => sel.saturating_sub(1),
                        KeyAction::FirstRow => 0,
                        KeyAction::PageDownRows => *sel + 10,
                        KeyAction::PageUpRows => sel.saturating_sub(10),
                        _ => len - 1,
                    }
                    .min(len - 1);
                }
                vec![]
            }
            _ => vec![],
        }
    }

    /// The Compare view's next preset (remembered), re-run on the current query.
    fn next_compare_preset(&mut self) -> Vec<Effect> {
        if self.compare_pending {
            self.status = "a comparison is running; the preset changes when it ends".into();
            return vec![];
        }
        self.compare_preset = (self.compare_preset + 1) % crate::explore::COMPARE_PRESETS.len();
        self.comparison = None;
        let (name, about) = self.compare_preset();
        self.status = format!("compare preset: {name} ({about})");
        let mut effects = vec![Effect::SaveComparePreset(name.to_string())];
        if self.result.is_some() {
            effects.extend(self.run_compare());
        }
        effects
    }

    /// The Failures view's actions: rank, filter, explain, export, open.
    fn run_failures(&mut self, action: KeyAction) -> Vec<Effect> {
        match action {
            KeyAction::ComputeFailures => {
                if !self.has_qrels {
                    self.status =
                        "failure analysis needs judged queries (qrels/test.tsv); this collection has none"
                            .into();
                    return vec![];
                }
                if !matches!(self.index, IndexState::Ready(_)) {
                    self.status = "failure analysis needs the complete index: it is not built yet (see the status bar for when)".into();
                    return vec![];
                }
                self.failures_pending = true;
                self.status = "encoding every judged query …".into();
                vec![Effect::ComputeFailures]
            }
            KeyAction::CycleFailureView => {
                if self.failures.is_none() {
                    self.status = "no failure list yet: press r to rank the judged queries".into();
                    return vec![];
                }
                self.failure_view = (self.failure_view + 1) % FAILURE_VIEWS.len();
                self.failure_sel = 0;
                self.explanation = None;
                let n = self.visible_failures().len();
                self.status = format!("{n} {}", FAILURE_VIEWS[self.failure_view]);
                vec![]
            }
            KeyAction::ExplainFailure => {
                let Some(row) = self.visible_failures().get(self.failure_sel).copied() else {
                    self.status = "no failure selected: press r to rank the judged queries".into();
                    return vec![];
                };
                if self.explain_pending {
                    self.status = "an explanation is already being computed".into();
                    return vec![];
                }
                let id = row.query_id.clone();
                self.explain_pending = true;
                self.status = format!("explaining query {id} …");
                vec![Effect::ExplainFailure(id)]
            }
            KeyAction::ExportFailures => {
                if self.failures.is_none() {
                    self.status =
                        "nothing to export yet: press r to rank the judged queries".into();
                    return vec![];
                }
                let rows: Vec<FailureRow> = self.visible_failures().into_iter().cloned().collect();
                self.status = format!("exporting {} rows …", rows.len());
                vec![Effect::ExportFailures(rows)]
            }
            KeyAction::OpenFailure => {
                let Some(row) = self.visible_failures().get(self.failure_sel).copied() else {
                    self.status = "no failure listed: press r to rank the judged queries".into();
                    return vec![];
                };
                let row = row.clone();
                self.input.set(&row.text);
                self.tab = Tab::Search;
                self.focus = Focus::Results;
                self.select_relevant = true;
                self.run(KeyAction::Submit)
            }
            _ => vec![],
        }
    }

    /// Start `spec` unless the same job is running.
    pub(super) fn start_task(&mut self, spec: TaskSpec) -> Vec<Effect> {
        if self
            .tasks
            .iter()
            .any(|t| t.spec == spec && t.status == TaskStatus::Running)
        {
            self.status = "that task is already running".into();
            return vec![];
        }
        vec![Effect::StartTask(spec)]
    }

    /// The Tasks view's actions: start a job (or resume the selected one),
    /// cancel the selected one.
    fn run_task(&mut self, action: KeyAction) -> Vec<Effect> {
        match action {
            KeyAction::StartIndex
            | KeyAction::StartEval
            | KeyAction::StartQuantize
            | KeyAction::StartAdapt
            | KeyAction::StartContrastive
            | KeyAction::ResumeTask => {
                let spec = if action == KeyAction::StartIndex {
                    self.index_task.clone()
                } else if action == KeyAction::StartEval {
                    self.eval_task.clone()
                } else if action == KeyAction::StartQuantize {
                    self.quantize_task.clone()
                } else if action == KeyAction::StartAdapt {
                    self.train_tasks.as_ref().map(|t| t.0.clone())
                } else if action == KeyAction::StartContrastive {
                    self.train_tasks.as_ref().map(|t| t.1.clone())
                } else {
                    self.tasks
                        .get(self.task_sel)
                        .filter(|t| t.status != TaskStatus::Running)
                        .map(|t| t.spec.clone())
                };
                match spec {
                    Some(s) => self.start_task(s),
                    None => {
                        self.status = "that job is not available for this collection".into();
                        vec![]
                    }
                }
            }
            KeyAction::CancelTask => match self.tasks.get(self.task_sel) {
                Some(t) if t.status == TaskStatus::Running => vec![Effect::CancelTask(t.id)],
                Some(_) => {
                    self.status = "the selected task is not running".into();
                    vec![]
                }
                None => {
                    self.status = "no task to cancel".into();
                    vec![]
                }
            },
            _ => vec![],
        }
    }
}
