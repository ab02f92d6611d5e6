//! Explorer state and its update function: keys and results in, effects out.
//! Nothing here touches the model, the index or the terminal.

use std::collections::VecDeque;

use super::action::{Action, Effect};
use super::keymap::Keymap;
use super::theme::Theme;
use crate::explore::{Comparison, DocDetail, FailureRow, QueryResult, Ranking};
use crate::tasks::{TaskEvent, TaskId, TaskSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Search,
    Compare,
    Failures,
    Frontier,
    Tasks,
}

pub const TABS: [Tab; 5] = [
    Tab::Search,
    Tab::Compare,
    Tab::Failures,
    Tab::Frontier,
    Tab::Tasks,
];

impl Tab {
    pub fn title(self) -> &'static str {
        match self {
            Tab::Search => "Search",
            Tab::Compare => "Compare",
            Tab::Failures => "Failures",
            Tab::Frontier => "Frontier",
            Tab::Tasks => "Tasks",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Input,
    Results,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TaskStatus {
    Running,
    Succeeded,
    Failed(String),
    Canceled,
}

#[derive(Clone, Debug)]
pub struct TaskView {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub status: TaskStatus,
    pub done: f64,
    pub total: f64,
    pub rate: f64,
    pub unit: String,
    pub eta_s: f64,
    pub phase: String,
    pub log: VecDeque<String>,
    pub losses: Vec<(f64, f64)>,
}

/// Whether search can run, and over what.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexState {
    Loading,
    Building,
    /// Building; this many documents (of the total) are already searchable.
    Partial(usize, usize),
    Ready(usize),
    Unavailable(String),
}

pub struct App {
    pub tab: Tab,
    pub focus: Focus,
    pub input: super::line_edit::LineEdit,
    pub result: Option<QueryResult>,
    /// Which system ranks the hits (`h` cycles LSR → hybrid → BM25).
    pub ranking: Ranking,
    /// LSR ranks without its pseudo-relevance feedback (`f` toggles).
    pub feedback_off: bool,
    pub selected: usize,
    pub detail: Option<DocDetail>,
    pub doc_scroll: u16,
    pub failures: Option<Vec<FailureRow>>,
    pub comparison: Option<Comparison>,
    pub compare_pending: bool,
    /// Which of [`crate::explore::COMPARE_PRESETS`] Compare shows.
    pub compare_preset: usize,
    pub failures_pending: bool,
    /// Index into the rows [`App::visible_failures`] shows.
    pub failure_sel: usize,
    /// Which of [`FAILURE_VIEWS`] the Failures list shows.
    pub failure_view: usize,
    pub explanation: Option<crate::explore::FailureExplanation>,
    pub explain_pending: bool,
    pub tasks: Vec<TaskView>,
    pub task_sel: usize,
    pub help: bool,
    pub help_scroll: usize,
    /// Where the last frame drew what a click can select.
    pub clicks: super::mouse::ClickMap,
    pub status: String,
    pub model_ready: bool,
    pub index: IndexState,
    pub query_pending: bool,
    /// The query was opened from Failures: select its first relevant hit
    /// when the result arrives.
    pub select_relevant: bool,
    pub theme: Theme,
    pub keymap: Keymap,
    pub quit: bool,
    /// The build the explorer starts when its index is missing.
    pub index_task: Option<TaskSpec>,
    /// Evaluation and quantization jobs offered in Tasks.
    pub eval_task: Option<TaskSpec>,
    pub quantize_task: Option<TaskSpec>,
    /// Training phases (adapt, contrastive), resumed when rerun.
    pub train_tasks: Option<(TaskSpec, TaskSpec)>,
    pub has_qrels: bool,
    /// The precisions' trade-off over the collection (its own view).
    pub frontier: super::frontier::FrontierState,
    /// Hits listed per query (`--k`).
    pub hits: usize,
}

const LOG_LINES: usize = 200;

/// How the Failures list is sorted and filtered (`s` cycles).
pub const FAILURE_VIEWS: [&str; 6] = [
    "all judged queries, LSR's largest losses first",
    "queries whose relevant documents are all outside LSR's top 100",
    "fusion rescues LSR: LSR loses to BM25 and the hybrid beats LSR",
    "fusion hurts BM25: the hybrid scores below BM25",
    "queries containing the query box's text, A–Z",
    "feedback lowers LSR: LSR scores below LSR without its feedback",
];

impl App {
    /// The comparison preset shown: (name, what it compares).
    pub fn compare_preset(&self) -> (&'static str, &'static str) {
        crate::explore::COMPARE_PRESETS[self.compare_preset % crate::explore::COMPARE_PRESETS.len()]
    }

    /// Select the preset called `name`, if there is one.
    pub fn set_compare_preset(&mut self, name: &str) {
        if let Some(i) = crate::explore::COMPARE_PRESETS
            .iter()
            .position(|p| p.0 == name)
        {
            self.compare_preset = i;
        }
    }

    /// The failure rows of the current view, in display order.
    pub fn visible_failures(&self) -> Vec<&FailureRow> {
        let Some(rows) = &self.failures else {
            return Vec::new();
        };
        match self.failure_view {
            1 => rows.iter().filter(|r| !r.relevant_in_lsr_top100).collect(),
            2 => rows
                .iter()
                .filter(|r| r.delta() < 0.0 && r.hybrid_ndcg10 > r.lsr_ndcg10)
                .collect(),
            3 => rows
                .iter()
                .filter(|r| r.hybrid_ndcg10 < r.bm25_ndcg10)
                .collect(),
            4 => {
                let needle = self.input.text.trim().to_lowercase();
                let mut v: Vec<&FailureRow> = rows
                    .iter()
                    .filter(|r| r.text.to_lowercase().contains(&needle))
                    .collect();
                v.sort_by(|a, b| a.text.cmp(&b.text));
                v
            }
            5 => rows
                .iter()
                .filter(|r| r.unfed_ndcg10.is_some_and(|u| r.lsr_ndcg10 < u))
                .collect(),
            _ => rows.iter().collect(),
        }
    }

    pub(super) fn run_compare(&mut self) -> Vec<Effect> {
        let Some(text) = self.result.as_ref().map(|r| r.text.clone()) else {
            self.status = "run a query in Search first, then compare it here".into();
            return vec![];
        };
        if self.compare_pending {
            self.status = "a comparison is already running".into();
            return vec![];
        }
        let (name, about) = self.compare_preset();
        self.compare_pending = true;
        self.comparison = None;
        self.status = format!("encoding under {about} …");
        vec![Effect::RunCompare(text, name.to_string())]
    }

    pub fn new(theme: Theme, keymap: Keymap) -> Self {
        Self {
            tab: Tab::Search,
            focus: Focus::Input,
            input: Default::default(),
            result: None,
            ranking: Ranking::Lsr,
            feedback_off: false,
            selected: 0,
            detail: None,
            doc_scroll: 0,
            failures: None,
            comparison: None,
            compare_pending: false,
            compare_preset: 0,
            failures_pending: false,
            failure_sel: 0,
            failure_view: 0,
            explanation: None,
            explain_pending: false,
            select_relevant: false,
            tasks: Vec::new(),
            task_sel: 0,
            help: false,
            help_scroll: 0,
            clicks: Default::default(),
            status: "loading the model …".into(),
            model_ready: false,
            index: IndexState::Loading,
            query_pending: false,
            theme,
            keymap,
            quit: false,
            index_task: None,
            eval_task: None,
            quantize_task: None,
            train_tasks: None,
            has_qrels: false,
            frontier: Default::default(),
            hits: 200,
        }
    }

    /// The keymap context of the current screen.
    pub fn context(&self) -> &'static str {
        if self.help {
            return "help";
        }
        match (self.tab, self.focus) {
            (Tab::Search, Focus::Input) => "input",
            (Tab::Search, Focus::Results) => "results",
            (Tab::Compare, _) => "compare",
            (Tab::Failures, _) => "failures",
            (Tab::Frontier, _) => "frontier",
            (Tab::Tasks, _) => "tasks",
        }
    }

    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Key(k) => self.on_key(k),
            Action::Mouse(m) => self.on_mouse(m),
            // Nothing changes but the frame, which every action redraws.
            Action::Resize => vec![],
            Action::ModelReady(r) => self.model_ready(r),
            Action::IndexReady(r) => self.index_ready(r),
            Action::PartialReady(n, total) => {
                if matches!(self.index, IndexState::Building | IndexState::Partial(..)) {
                    self.index = IndexState::Partial(n, total);
                }
                vec![]
            }
            Action::QueryDone(Ok(r)) => self.query_done(r),
            Action::QueryDone(Err(e)) => {
                self.query_pending = false;
                self.select_relevant = false;
                self.status = format!("query failed: {e}");
                vec![]
            }
            Action::DetailDone(Ok(d)) => {
                if self.current_hit_ordinal() == Some(d.ordinal) {
                    self.detail = Some(d);
                }
                vec![]
            }
            Action::DetailDone(Err(e)) => {
                self.status = format!("document failed: {e}");
                vec![]
            }
            Action::FailuresDone(r) => self.failures_done(r),
            Action::CompareDone(r) => self.compare_done(r),
            Action::ExplanationDone(r) => self.explanation_done(r),
            Action::ExportDone(r) => {
                self.status = match r {
                    Ok(paths) => format!("exported to {paths}"),
                    Err(e) => format!("export failed: {e}"),
                };
                vec![]
            }
            Action::FrontierDone(r) => self.frontier_done(r),
            Action::Task(ev) => self.on_task(ev),
        }
    }

    /// The model loaded (or not): a query typed meanwhile runs now.
    fn model_ready(&mut self, r: Result<String, String>) -> Vec<Effect> {
        match r {
            Ok(msg) => {
                self.model_ready = true;
                self.status = msg;
                if !self.input.text.trim().is_empty() && self.query_pending {
                    return vec![Effect::RunQuery(self.input.text.clone())];
                }
            }
            Err(e) => self.status = format!("model failed to load: {e}"),
        }
        vec![]
    }

    /// The index opened (or not): the current query re-runs so hits appear.
    fn index_ready(&mut self, r: Result<usize, String>) -> Vec<Effect> {
        match r {
            Ok(n) => {
                self.index = IndexState::Ready(n);
                self.status = format!("index ready: {n} documents");
                if self.model_ready && !self.input.text.trim().is_empty() {
                    self.query_pending = true;
                    return vec![Effect::RunQuery(self.input.text.clone())];
                }
            }
            Err(e) => {
                self.index = IndexState::Unavailable(e.clone());
                self.status = format!("no index: {e}");
            }
        }
        vec![]
    }

    fn failures_done(&mut self, r: Result<Vec<FailureRow>, String>) -> Vec<Effect> {
        self.failures_pending = false;
        match r {
            Ok(rows) => {
                self.status = format!("{} judged queries compared", rows.len());
                self.failures = Some(rows);
                self.failure_sel = 0;
                self.explanation = None;
            }
            Err(e) => self.status = format!("failure analysis failed: {e}"),
        }
        vec![]
    }

    fn compare_done(&mut self, r: Result<Comparison, String>) -> Vec<Effect> {
        self.compare_pending = false;
        match r {
            Ok(c) => {
                self.status = format!("compared {} encoders", c.runs.len());
                self.comparison = Some(c);
            }
            Err(e) => self.status = format!("comparison failed: {e}"),
        }
        vec![]
    }

    /// A query's result: keep the selected document where the same query
    /// was re-run, select the first relevant hit for a query opened from
    /// Failures, and load the selected document.
    fn query_done(&mut self, r: QueryResult) -> Vec<Effect> {
        self.query_pending = false;
        self.status = format!(
            "{} terms, {} hits ({:.0} ms encode, {:.1} ms search, {})",
            r.terms.len(),
            r.hits.len(),
            r.encode_ms,
            r.search_ms,
            r.scorer
        );
        // The same query again (re-run when the index grew, or under
        // another ranking) keeps the selected document where it can.
        let same_query = self.result.as_ref().is_some_and(|old| old.text == r.text);
        let kept = self
            .current_hit_ordinal()
            .filter(|_| same_query)
            .and_then(|o| r.hits.iter().position(|h| h.ordinal == o));
        if kept.is_none() || kept != Some(self.selected) {
            self.doc_scroll = 0;
            self.detail = None;
        }
        // Opened from Failures: the first relevant document, however deep.
        let relevant = std::mem::take(&mut self.select_relevant)
            .then(|| {
                r.hits
                    .iter()
                    .position(|h| h.relevance.is_some_and(|g| g > 0))
            })
            .flatten();
        if let Some(i) = relevant {
            self.doc_scroll = 0;
            self.detail = None;
            self.status
                .push_str(&format!("; first relevant document at rank {}", i + 1));
        }
        self.selected = relevant.or(kept).unwrap_or(0);
        let shown = r.hits.get(self.selected).map(|h| h.ordinal);
        let reload = self.detail.is_none();
        self.result = Some(r);
        shown
            .filter(|_| reload)
            .map(Effect::LoadDetail)
            .into_iter()
            .collect()
    }

    /// Why LSR loses on a judged query, or why that could not be computed.
    fn explanation_done(
        &mut self,
        r: Result<crate::explore::FailureExplanation, String>,
    ) -> Vec<Effect> {
        self.explain_pending = false;
        match r {
            Ok(e) => {
                self.status = format!(
                    "query {}: {}, {} explained",
                    e.query_id,
                    count(
                        e.missed.len(),
                        "relevant document missed",
                        "relevant documents missed"
                    ),
                    count(e.wrong_hits.len(), "wrong hit", "wrong hits")
                );
                self.explanation = Some(e);
            }
            Err(e) => self.status = format!("explanation failed: {e}"),
        }
        vec![]
    }

    pub(super) fn current_hit_ordinal(&self) -> Option<usize> {
        self.result
            .as_ref()
            .and_then(|r| r.hits.get(self.selected))
            .map(|h| h.ordinal)
    }

    fn on_task(&mut self, ev: TaskEvent) -> Vec<Effect> {
        let id = ev.id();
        let Some(t) = self.tasks.iter_mut().find(|t| t.id == id) else {
            return vec![];
        };
        let mut effects = vec![];
        match ev {
            TaskEvent::Started { .. } => t.status = TaskStatus::Running,
            TaskEvent::Progress {
                done,
                total,
                rate,
                unit,
                eta_s,
                ..
            } => {
                (t.done, t.total, t.rate, t.unit, t.eta_s) = (done, total, rate, unit, eta_s);
                if Some(&t.spec) == self.index_task.as_ref() {
                    effects.push(Effect::RefreshPartial);
                }
            }
            TaskEvent::Phase { name, .. } => t.phase = name,
            TaskEvent::Loss { step, loss, .. } => t.losses.push((step as f64, loss)),
            TaskEvent::Log { line, .. } => {
                t.log.push_back(line);
                while t.log.len() > LOG_LINES {
                    t.log.pop_front();
                }
            }
            TaskEvent::Succeeded { .. } => {
                t.status = TaskStatus::Succeeded;
                t.done = t.total;
                if Some(&t.spec) == self.index_task.as_ref() {
                    effects.push(Effect::OpenIndex);
                }
                let spec = t.spec.clone();
                effects.extend(self.frontier_task_done(&spec));
            }
            TaskEvent::Failed { error, .. } => {
                t.status = TaskStatus::Failed(error.clone());
                self.status = format!("task {} failed: {error}", t.spec.title);
                if Some(&t.spec) == self.index_task.as_ref() {
                    self.index = IndexState::Unavailable(error);
                }
            }
            TaskEvent::Canceled { .. } => {
                t.status = TaskStatus::Canceled;
                if Some(&t.spec) == self.index_task.as_ref() {
                    self.index = IndexState::Unavailable(
                        "index build canceled (press r on it in Tasks to resume)".into(),
                    );
                }
            }
        }
        effects
    }

    /// Register a task the runtime started under `id`.
    pub fn add_task(&mut self, id: TaskId, spec: TaskSpec) {
        if Some(&spec) == self.index_task.as_ref() {
            self.index = IndexState::Building;
        }
        self.tasks.push(TaskView {
            id,
            spec,
            status: TaskStatus::Running,
            done: 0.0,
            total: 0.0,
            rate: 0.0,
            unit: String::new(),
            eta_s: 0.0,
            phase: String::new(),
            log: VecDeque::new(),
            losses: Vec::new(),
        });
        self.task_sel = self.tasks.len() - 1;
    }

    /// Rows of the help popup: the bindings, then the legend.
    pub(super) fn help_rows(&self) -> usize {
        self.keymap.bindings.len() + super::views::help::LEGEND.len()
    }

    pub(super) fn hits_len(&self) -> usize {
        self.result.as_ref().map_or(0, |r| r.hits.len())
    }

    pub(super) fn select_hit(&mut self, i: usize) -> Vec<Effect> {
        if self.hits_len() == 0 {
            self.status = match &self.index {
                IndexState::Ready(_) | IndexState::Partial(..) => {
                    "no hits to select: run a query first".into()
                }
                _ => "no hits yet: the index is not searchable yet".into(),
            };
            return vec![];
        }
        self.selected = i.min(self.hits_len() - 1);
        self.doc_scroll = 0;
        self.detail = None;
        self.current_hit_ordinal()
            .map(Effect::LoadDetail)
            .into_iter()
            .collect()
    }

    fn on_key(&mut self, k: crossterm::event::KeyEvent) -> Vec<Effect> {
        let ctx = self.context();
        if let Some(action) = self.keymap.lookup(ctx, &k) {
            return self.run(action);
        }
        if self.help {
            self.help = false;
            return vec![];
        }
        // Text entry and line editing in the query box.
        if ctx == "input" {
            self.input.key(&k);
        }
        vec![]
    }
}

/// `n` and the noun in the number it takes.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
