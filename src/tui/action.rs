//! Everything that changes the explorer's state arrives as an [`Action`];
//! everything the state asks of the outside world leaves as an [`Effect`].

use crossterm::event::{KeyEvent, MouseEvent};

use crate::explore::{
    Comparison, DocDetail, EncoderSpec, FailureExplanation, FailureRow, Frontier, QueryResult,
};
use crate::tasks::{TaskEvent, TaskId, TaskSpec};

#[derive(Debug)]
pub enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    /// The terminal changed size: redraw at once.
    Resize,
    /// The model finished loading (or failed to).
    ModelReady(Result<String, String>),
    /// An index is open for search (documents in it), or could not be opened.
    IndexReady(Result<usize, String>),
    QueryDone(Result<QueryResult, String>),
    DetailDone(Result<DocDetail, String>),
    FailuresDone(Result<Vec<FailureRow>, String>),
    CompareDone(Result<Comparison, String>),
    ExplanationDone(Result<FailureExplanation, String>),
    /// Where the failure list was exported (or why it could not be).
    ExportDone(Result<String, String>),
    /// Documents searchable while the index is still building (of total).
    PartialReady(usize, usize),
    /// The cached trade-off frontier (`None`: none computed yet).
    FrontierDone(Result<Option<Frontier>, String>),
    Task(TaskEvent),
}

#[derive(Debug, PartialEq)]
pub enum Effect {
    RunQuery(String),
    LoadDetail(usize),
    ComputeFailures,
    /// Explain why LSR loses on this judged query.
    ExplainFailure(String),
    /// Write these rows under the exports directory.
    ExportFailures(Vec<FailureRow>),
    /// Encode this text under every encoder of the named preset.
    RunCompare(String, String),
    /// Encode this text under these encoders (a frontier point beside the
    /// reference).
    RunCompareEncoders(String, Vec<EncoderSpec>),
    /// Read the cached trade-off frontier.
    LoadFrontier,
    /// Remember the chosen comparison preset in the user's config.
    SaveComparePreset(String),
    StartTask(TaskSpec),
    CancelTask(TaskId),
    /// A finished index build: open the index it wrote.
    OpenIndex,
    /// Load what a running build has encoded so far.
    RefreshPartial,
    Quit,
}
