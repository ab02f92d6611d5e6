//! The explorer without a terminal: every view drawn to ratatui's TestBackend
//! and snapshotted with insta (at 120×32, and at 80×24 and 220×60), and the
//! typing, help, task and history flows driven by synthetic keys and
//! injected results and task events.

#[path = "common/tui.rs"]
mod tui_fixture;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use csplade::explore::{DocDetail, FailureRow, QueryResult};
use csplade::tasks::{TaskEvent, TaskSpec};
use csplade::tui::action::{Action, Effect};
use csplade::tui::app::{App, IndexState, Tab};
use tui_fixture::*;

/// Every view also at the smallest terminal it is meant for and a large one.
fn snapshot_sizes(name: &str, a: &App) {
    insta::assert_snapshot!(format!("{name}_80x24"), render_at(a, 80, 24));
    insta::assert_snapshot!(format!("{name}_220x60"), render_at(a, 220, 60));
}

#[test]
fn typing_and_enter_runs_the_query_once_the_model_is_ready() {
    let mut a = app();
    assert_eq!(a.context(), "input");
    assert!(
        type_text(&mut a, "what? q").is_empty(),
        "'?' and 'q' are text in the query box"
    );
    assert_eq!(a.input.text, "what? q");
    a.update(key(KeyCode::Backspace));
    a.update(key(KeyCode::Backspace));
    // Before the model is loaded, Enter queues the query.
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    let fx = a.update(Action::ModelReady(Ok("model ready".into())));
    assert_eq!(fx, vec![Effect::RunQuery("what?".into())]);
    // Results arrive; the first hit's detail is requested.
    let fx = a.update(Action::QueryDone(Ok(sample_result())));
    assert_eq!(fx, vec![Effect::LoadDetail(7)]);
    assert_eq!(a.update(key(KeyCode::Down)), vec![Effect::LoadDetail(3)]);
    assert_eq!(
        a.update(key(KeyCode::Down)),
        vec![Effect::LoadDetail(3)],
        "stays on the last hit"
    );
    assert_eq!(a.update(key(KeyCode::Up)), vec![Effect::LoadDetail(7)]);
    // A stale detail (for another hit) is ignored.
    let mut other = sample_detail();
    other.ordinal = 3;
    a.update(Action::DetailDone(Ok(other)));
    assert!(a.detail.is_none());
    a.update(Action::DetailDone(Ok(sample_detail())));
    assert_eq!(a.detail.as_ref().map(|d| d.ordinal), Some(7));
}

#[test]
fn help_tabs_and_quit() {
    let mut a = app();
    a.update(key(KeyCode::F(1)));
    assert!(a.help);
    a.update(key(KeyCode::Down));
    a.update(key(KeyCode::Down));
    a.update(key(KeyCode::Up));
    assert_eq!(a.help_scroll, 1, "arrows scroll the help list");
    a.update(key(KeyCode::Esc));
    assert!(!a.help);
    a.update(key(KeyCode::Esc)); // leave the query box
    a.update(key(KeyCode::Char('?')));
    assert!(a.help, "'?' opens help outside text input");
    a.update(key(KeyCode::Char('?')));
    a.update(key(KeyCode::Tab));
    assert_eq!(a.tab, Tab::Compare);
    a.update(key(KeyCode::BackTab));
    a.update(key(KeyCode::BackTab));
    assert_eq!(a.tab, Tab::Tasks);
    let fx = a.update(Action::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert_eq!(fx, vec![Effect::Quit]);
    assert!(a.quit);
}

#[test]
fn task_events_drive_progress_and_a_finished_build_opens_the_index() {
    let mut a = app();
    let spec = a.index_task.clone().unwrap();
    a.add_task(1, spec);
    assert_eq!(a.index, IndexState::Building);
    let fx = a.update(Action::Task(TaskEvent::Progress {
        id: 1,
        done: 64.0,
        total: 128.0,
        rate: 512.0,
        unit: "tokens/s".into(),
        eta_s: 30.0,
    }));
    assert_eq!(
        fx,
        vec![Effect::RefreshPartial],
        "committed documents become searchable"
    );
    a.update(Action::PartialReady(64, 128));
    assert_eq!(a.index, IndexState::Partial(64, 128));
    a.update(Action::Task(TaskEvent::Log {
        id: 1,
        line: "csplade: encoding".into(),
    }));
    assert_eq!(a.tasks[0].done, 64.0);
    assert_eq!(a.tasks[0].log.len(), 1);
    assert_eq!(
        a.update(Action::Task(TaskEvent::Succeeded { id: 1 })),
        vec![Effect::OpenIndex]
    );
    a.update(Action::IndexReady(Ok(128)));
    assert_eq!(a.index, IndexState::Ready(128));
    // Cancel and resume from the Tasks view.
    a.tab = Tab::Tasks;
    let eval = TaskSpec {
        title: "eval".into(),
        args: vec!["eval".into()],
    };
    a.eval_task = Some(eval.clone());
    assert_eq!(
        a.update(key(KeyCode::Char('e'))),
        vec![Effect::StartTask(eval)]
    );
    a.add_task(
        2,
        TaskSpec {
            title: "other".into(),
            args: vec!["x".into()],
        },
    );
    assert_eq!(
        a.update(key(KeyCode::Char('x'))),
        vec![Effect::CancelTask(2)]
    );
    a.update(Action::Task(TaskEvent::Canceled { id: 2 }));
    assert_eq!(
        a.update(key(KeyCode::Char('r'))),
        vec![Effect::StartTask(TaskSpec {
            title: "other".into(),
            args: vec!["x".into()]
        })]
    );
}

/// Search after the sample query was typed and run, with `result` and the
/// first hit's `detail`.
fn searched(result: QueryResult, detail: DocDetail) -> App {
    let mut a = app();
    type_text(&mut a, "what causes hypertension in adults");
    a.update(Action::ModelReady(Ok("model smollm2 ready".into())));
    a.update(Action::IndexReady(Ok(5183)));
    a.update(Action::QueryDone(Ok(result)));
    a.update(Action::DetailDone(Ok(detail)));
    a
}

#[test]
fn snapshot_search_view() {
    let a = searched(sample_result(), sample_detail());
    insta::assert_snapshot!("search", render(&a));
    snapshot_sizes("search", &a);
}

/// A document ranked by one of its passages names the passage, shows its
/// words, and says the rest of the text was read as passages.
#[test]
fn a_hit_ranked_by_a_passage_names_it() {
    let a = searched(sample_result(), sample_passage_detail());
    let screen = render(&a);
    assert!(
        screen.contains("ranked by passage 2 of 2")
            && screen.contains("read as 2 passages")
            && !screen.contains("not read by the model"),
        "{screen}"
    );
    insta::assert_snapshot!("search_passage", screen);
}

/// A long expansion leaves the lent terms rows of their own.
#[test]
fn lent_terms_stay_in_view_below_a_long_expansion() {
    let mut r = sample_feedback_result();
    let filler = r.terms[3].clone();
    r.terms
        .extend((0..60).map(|i| csplade::explore::ExpansionTerm {
            id: 100 + i,
            weight: 0.5,
            ..filler.clone()
        }));
    let a = searched(r, sample_feedback_detail());
    let screen = render(&a);
    assert!(
        screen.contains("from d7 d3") && screen.contains("+ ·salt"),
        "{screen}"
    );
}

/// With a prior and feedback: the expansion lists the lent terms (+) and
/// names their documents; the explanation gains the idf and fb columns.
#[test]
fn snapshot_search_view_with_feedback() {
    let a = searched(sample_feedback_result(), sample_feedback_detail());
    let screen = render(&a);
    assert!(
        screen.contains("+2 fb") && screen.contains("from d7 d3"),
        "{screen}"
    );
    insta::assert_snapshot!("search_feedback", screen);
}

#[test]
fn snapshot_compare_view() {
    let mut a = app();
    a.set_compare_preset("precisions");
    a.update(Action::QueryDone(Ok(sample_result())));
    a.tab = Tab::Compare;
    a.update(Action::CompareDone(Ok(sample_comparison())));
    insta::assert_snapshot!("compare", render(&a));
    snapshot_sizes("compare", &a);
}

#[test]
fn snapshot_failures_view() {
    let mut a = app();
    a.has_qrels = true;
    a.tab = Tab::Failures;
    a.update(Action::FailuresDone(Ok(vec![
        FailureRow {
            query_id: "q2".into(),
            text: "salt and blood pressure".into(),
            lsr_ndcg10: 0.1,
            bm25_ndcg10: 0.9,
            hybrid_ndcg10: 0.8,
            unfed_ndcg10: None,
            relevant_in_lsr_top100: false,
        },
        FailureRow {
            query_id: "q1".into(),
            text: "hypertension".into(),
            lsr_ndcg10: 0.7,
            bm25_ndcg10: 0.5,
            hybrid_ndcg10: 0.75,
            unfed_ndcg10: None,
            relevant_in_lsr_top100: true,
        },
    ])));
    insta::assert_snapshot!("failures", render(&a));
    // The selected query explained, under the list.
    assert_eq!(
        a.update(key(KeyCode::Char('x'))),
        vec![Effect::ExplainFailure("q2".into())]
    );
    a.update(Action::ExplanationDone(Ok(sample_explanation())));
    insta::assert_snapshot!("failures_explained", render(&a));
    snapshot_sizes("failures_explained", &a);
}

#[test]
fn snapshot_tasks_view() {
    let mut a = app();
    a.tab = Tab::Tasks;
    let spec = a.index_task.clone().unwrap();
    a.add_task(1, spec);
    a.update(Action::Task(TaskEvent::Progress {
        id: 1,
        done: 1200.0,
        total: 3000.0,
        rate: 540.0,
        unit: "tokens/s".into(),
        eta_s: 900.0,
    }));
    a.update(Action::Task(TaskEvent::Log {
        id: 1,
        line: "csplade: encoding 3000 documents".into(),
    }));
    for (s, l) in [(1, 3.0), (2, 2.5), (3, 1.8), (4, 1.2)] {
        a.update(Action::Task(TaskEvent::Loss {
            id: 1,
            step: s,
            loss: l,
        }));
    }
    insta::assert_snapshot!("tasks", render(&a));
    snapshot_sizes("tasks", &a);
}

#[test]
fn snapshot_help_popup() {
    let mut a = app();
    a.update(key(KeyCode::F(1)));
    insta::assert_snapshot!("help", render(&a));
    snapshot_sizes("help", &a);
}

/// Queries run in one explorer run come back with Ctrl-P in the next (the
/// history lives in `$CSPLADE_HOME/query-history`, last 200, no repeats).
#[test]
fn query_history_is_remembered_from_one_run_to_the_next() {
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("CSPLADE_HOME", home.path());
    for q in ["copy files", "copy files", "list\ndirectory"] {
        csplade::explore::session::remember_query(q).unwrap();
    }
    let history = csplade::explore::session::query_history();
    assert_eq!(history, vec!["copy files", "list directory"]);
    let mut a = app();
    a.input = csplade::tui::line_edit::LineEdit::with_history(history);
    a.update(Action::Key(KeyEvent::new(
        KeyCode::Char('p'),
        KeyModifiers::CONTROL,
    )));
    assert_eq!(a.input.text, "list directory");
    a.update(Action::Key(KeyEvent::new(
        KeyCode::Char('p'),
        KeyModifiers::CONTROL,
    )));
    assert_eq!(a.input.text, "copy files");
    // In an empty box ↑/↓ walk the history too; once the line is edited
    // they move through the hits again.
    a.input.set("");
    a.update(key(KeyCode::Up));
    assert_eq!(a.input.text, "list directory");
    a.update(key(KeyCode::Up));
    assert_eq!(a.input.text, "copy files");
    a.update(key(KeyCode::Down));
    assert_eq!(a.input.text, "list directory");
    a.update(key(KeyCode::Char('!')));
    a.update(key(KeyCode::Up));
    assert_eq!(a.input.text, "list directory!");
}

/// A task that reports phases but no progress (quantize) shows its phase
/// alone, not `0/0 … ETA 0s`; once done, only its state.
#[test]
fn a_task_of_phases_alone_shows_no_empty_progress() {
    let mut a = app();
    a.tab = Tab::Tasks;
    a.add_task(
        3,
        TaskSpec {
            title: "quantize q8_0".into(),
            args: vec!["quantize".into()],
        },
    );
    a.update(Action::Task(TaskEvent::Phase {
        id: 3,
        name: "quantizing to q8_0".into(),
    }));
    let screen = render(&a);
    assert!(
        screen.contains("quantize q8_0 — running [quantizing to q8_0]"),
        "{screen}"
    );
    assert!(
        !screen.contains("0/0") && !screen.contains("ETA"),
        "{screen}"
    );
    a.update(Action::Task(TaskEvent::Succeeded { id: 3 }));
    let screen = render(&a);
    assert!(screen.contains("quantize q8_0 — done"), "{screen}");
    assert!(!screen.contains("[quantizing"), "{screen}");
}
