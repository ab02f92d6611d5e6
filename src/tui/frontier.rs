//! The Frontier view's state: the collection's cached trade-off (quality
//! against speed or size for the precisions of the model), which point is
//! selected, which cost axis is drawn, computing it in the background and
//! opening a point's encoder in Compare beside the reference.

use super::action::Effect;
use super::app::{App, IndexState, Tab};
use super::keymap::KeyAction;
use crate::explore::{EncoderSpec, Frontier, FrontierAxis};
use crate::tasks::TaskSpec;

#[derive(Debug)]
pub struct FrontierState {
    pub frontier: Option<Frontier>,
    /// The cache has been read (once per session, and after each run).
    pub loaded: bool,
    pub loading: bool,
    pub selected: usize,
    pub axis: FrontierAxis,
    /// The background job that computes it.
    pub task: Option<TaskSpec>,
}

impl Default for FrontierState {
    fn default() -> Self {
        Self {
            frontier: None,
            loaded: false,
            loading: false,
            selected: 0,
            axis: FrontierAxis::QueryLatency,
            task: None,
        }
    }
}

impl App {
    /// Show `tab`; the Frontier tab reads its cache the first time.
    pub(super) fn switch_tab(&mut self, tab: Tab) -> Vec<Effect> {
        self.tab = tab;
        if tab == Tab::Frontier && !self.frontier.loaded && !self.frontier.loading {
            return self.load_frontier();
        }
        vec![]
    }

    fn load_frontier(&mut self) -> Vec<Effect> {
        if !matches!(self.index, IndexState::Ready(_)) {
            return vec![];
        }
        self.frontier.loading = true;
        vec![Effect::LoadFrontier]
    }

    /// The cache was read (or computing it finished).
    pub(super) fn frontier_done(&mut self, r: Result<Option<Frontier>, String>) -> Vec<Effect> {
        self.frontier.loading = false;
        self.frontier.loaded = true;
        match r {
            Ok(Some(f)) => {
                self.status = format!(
                    "frontier: {} points over {} queries (pool depth {})",
                    f.points.len(),
                    f.queries,
                    f.pool.depth
                );
                self.frontier.selected =
                    self.frontier.selected.min(f.points.len().saturating_sub(1));
                self.frontier.frontier = Some(f);
            }
            Ok(None) => {}
            Err(e) => self.status = format!("frontier: {e}"),
        }
        vec![]
    }

    /// A frontier task finished: read what it cached.
    pub(super) fn frontier_task_done(&mut self, spec: &TaskSpec) -> Vec<Effect> {
        if Some(spec) == self.frontier.task.as_ref() {
            self.frontier.loading = true;
            return vec![Effect::LoadFrontier];
        }
        vec![]
    }

    /// The Frontier view's keys: compute, switch axis, move, open in Compare.
    pub(super) fn run_frontier(&mut self, action: KeyAction) -> Vec<Effect> {
        match action {
            KeyAction::RunFrontier => self.start_frontier(),
            KeyAction::CycleFrontierAxis => {
                self.frontier.axis = self.frontier.axis.next();
                self.status = format!("frontier against {}", self.frontier.axis.name());
                vec![]
            }
            KeyAction::OpenFrontierPoint => self.open_frontier_point(),
            _ => vec![],
        }
    }

    fn start_frontier(&mut self) -> Vec<Effect> {
        if !self.has_qrels {
            self.status =
                "the frontier needs judged queries (qrels/test.tsv); this collection has none"
                    .into();
            return vec![];
        }
        if !matches!(self.index, IndexState::Ready(_)) {
            self.status =
                "the frontier needs the complete index as its reference: it is not built yet"
                    .into();
            return vec![];
        }
        match self.frontier.task.clone() {
            Some(spec) => self.start_task(spec),
            None => {
                self.status = "the frontier is not available for this collection".into();
                vec![]
            }
        }
    }

    /// Compare the current query under the reference and the selected
    /// point's encoders (queries, and documents where they differ).
    fn open_frontier_point(&mut self) -> Vec<Effect> {
        let Some(f) = &self.frontier.frontier else {
            self.status = "no frontier yet: press r to compute it".into();
            return vec![];
        };
        let text = self
            .result
            .as_ref()
            .map(|r| r.text.clone())
            .unwrap_or_else(|| self.input.text.trim().to_string());
        if text.is_empty() {
            self.status = "run a query in Search first; its expansion is compared".into();
            return vec![];
        }
        let (Some(reference), Some(point)) =
            (f.points.first(), f.points.get(self.frontier.selected))
        else {
            return vec![];
        };
        let mut specs: Vec<EncoderSpec> = Vec::new();
        for s in [
            &reference.query_encoder,
            &point.query_encoder,
            &point.document_encoder,
        ] {
            match s.parse::<EncoderSpec>() {
                Ok(spec) if !specs.contains(&spec) => specs.push(spec),
                Ok(_) => {}
                Err(e) => {
                    self.status = format!("frontier point: {e}");
                    return vec![];
                }
            }
        }
        if self.compare_pending {
            self.status = "a comparison is already running".into();
            return vec![];
        }
        self.compare_pending = true;
        self.comparison = None;
        self.tab = Tab::Compare;
        self.status = format!("comparing {} beside the reference …", point.label);
        vec![Effect::RunCompareEncoders(text, specs)]
    }

    /// Points in the frontier, for row movement.
    pub(super) fn frontier_len(&self) -> usize {
        self.frontier
            .frontier
            .as_ref()
            .map_or(0, |f| f.points.len())
    }
}
