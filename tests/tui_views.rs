//! The explorer without a terminal: every view drawn to ratatui's TestBackend
//! and snapshotted with insta, and app flows driven by synthetic keys and
//! injected results and task events.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use csplade::encode::SparseVec;
use csplade::explore::{DocDetail, ExpansionTerm, FailureRow, HitRow, QueryResult};
use csplade::tasks::{TaskEvent, TaskSpec};
use csplade::tui::action::{Action, Effect};
use csplade::tui::app::{App, IndexState, Tab};
use csplade::tui::keymap::Keymap;
use csplade::tui::theme::Theme;
use csplade::tui::views;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn app() -> App {
    let mut a = App::new(Theme::dark(), Keymap::default_keymap());
    a.index_task = Some(TaskSpec {
        title: "index demo".into(),
        args: vec!["index".into()],
    });
    a
}

fn key(c: KeyCode) -> Action {
    Action::Key(KeyEvent::from(c))
}

fn type_text(a: &mut App, s: &str) -> Vec<Effect> {
    let mut out = vec![];
    for c in s.chars() {
        out.extend(a.update(key(KeyCode::Char(c))));
    }
    out
}

fn render(a: &App) -> String {
    render_at(a, 120, 32)
}

fn render_at(a: &App, width: u16, height: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
    t.draw(|f| views::draw(f, a)).unwrap();
    format!("{}", t.backend())
}

/// Every view also at the smallest terminal it is meant for and a large one.
fn snapshot_sizes(name: &str, a: &App) {
    insta::assert_snapshot!(format!("{name}_80x24"), render_at(a, 80, 24));
    insta::assert_snapshot!(format!("{name}_220x60"), render_at(a, 220, 60));
}

fn sample_result() -> QueryResult {
    let terms = vec![
        ExpansionTerm {
            id: 1,
            token: " hypertension".into(),
            weight: 1.9,
            in_text: true,
        },
        ExpansionTerm {
            id: 2,
            token: " blood".into(),
            weight: 1.4,
            in_text: false,
        },
        ExpansionTerm {
            id: 3,
            token: " pressure".into(),
            weight: 1.2,
            in_text: false,
        },
        ExpansionTerm {
            id: 4,
            token: " adults".into(),
            weight: 0.8,
            in_text: true,
        },
    ];
    let hits = vec![
        HitRow {
            rank: 1,
            ordinal: 7,
            doc_id: "d7".into(),
            title: "High blood pressure in adults".into(),
            score: 12.5,
            lsr_rank: Some(1),
            bm25_rank: Some(2),
            relevance: Some(1),
        },
        HitRow {
            rank: 2,
            ordinal: 3,
            doc_id: "d3".into(),
            title: "Salt intake".into(),
            score: 9.25,
            lsr_rank: Some(2),
            bm25_rank: None,
            relevance: Some(0),
        },
    ];
    QueryResult {
        text: "what causes hypertension in adults".into(),
        query_id: Some("q1".into()),
        vector: SparseVec::from_pairs(vec![(1, 1.9), (2, 1.4), (3, 1.2), (4, 0.8)]),
        terms,
        ranking: csplade::explore::Ranking::Lsr,
        prior: csplade::explore::QueryPrior::None,
        hits,
        encode_ms: 21.0,
        search_ms: 0.3,
        scorer: "exact".into(),
    }
}

fn sample_detail() -> DocDetail {
    DocDetail {
        ordinal: 7,
        doc_id: "d7".into(),
        title: "High blood pressure in adults".into(),
        text: "Hypertension in adults is driven by salt, age and blood pressure regulation.".into(),
        contributions: vec![
            (" hypertension".into(), 1.9, 1.0, 2.0, 3.8),
            (" blood".into(), 1.4, 1.0, 1.5, 2.1),
        ],
        top_terms: vec![(" hypertension".into(), 2.0), (" salt".into(), 1.6)],
        missed_terms: vec![(" salt".into(), 1.6)],
        // The model read "Hypertension in adults is driven by salt," only.
        encoded_window: Some((41, 16)),
        beyond_window: vec![" age".into()],
    }
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

#[test]
fn a_failure_opens_in_search() {
    let mut a = app();
    a.model_ready = true;
    a.has_qrels = true;
    a.tab = Tab::Failures;
    assert!(a.update(key(KeyCode::Char('r'))).is_empty(), "no index yet");
    a.update(Action::IndexReady(Ok(10)));
    assert_eq!(
        a.update(key(KeyCode::Char('r'))),
        vec![Effect::ComputeFailures]
    );
    a.update(Action::FailuresDone(Ok(vec![
        FailureRow {
            query_id: "q2".into(),
            text: "salt and blood pressure".into(),
            lsr_ndcg10: 0.1,
            bm25_ndcg10: 0.9,
            hybrid_ndcg10: 0.8,
            relevant_in_lsr_top100: false,
        },
        FailureRow {
            query_id: "q1".into(),
            text: "hypertension".into(),
            lsr_ndcg10: 0.5,
            bm25_ndcg10: 0.5,
            hybrid_ndcg10: 0.5,
            relevant_in_lsr_top100: true,
        },
    ])));
    a.update(key(KeyCode::Down));
    assert_eq!(a.failure_sel, 1);
    a.update(key(KeyCode::Up));
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::RunQuery("salt and blood pressure".into())]
    );
    assert_eq!(a.tab, Tab::Search);
    // Its result: 60 hits, the only relevant one 57th. It is selected, its
    // document loads, and the hit list scrolls down to show it.
    let mut deep = sample_result();
    deep.text = "salt and blood pressure".into();
    let template = deep.hits[1].clone();
    deep.hits = (0..60)
        .map(|i| HitRow {
            rank: i + 1,
            ordinal: 100 + i,
            doc_id: format!("x{i}"),
            relevance: Some(i32::from(i == 56)),
            ..template.clone()
        })
        .collect();
    assert_eq!(
        a.update(Action::QueryDone(Ok(deep))),
        vec![Effect::LoadDetail(156)]
    );
    assert_eq!(a.selected, 56);
    assert!(
        a.status.contains("first relevant document at rank 57"),
        "{}",
        a.status
    );
    let screen = render(&a);
    assert!(
        screen.contains("x56") && !screen.contains("x0 "),
        "{screen}"
    );
    assert!(screen.contains("57 of 60"), "{screen}");
    // End and Home jump to the ends of the list, which scrolls with them.
    a.update(key(KeyCode::End));
    assert_eq!(a.selected, 59);
    assert!(render(&a).contains("x59"));
    a.update(key(KeyCode::Home));
    assert_eq!(a.selected, 0);
    assert!(render(&a).contains("x0 "));
}

#[test]
fn h_ranks_the_hits_by_lsr_hybrid_and_bm25_in_turn() {
    use csplade::explore::Ranking;
    let mut a = app();
    a.update(Action::ModelReady(Ok("ready".into())));
    a.update(Action::IndexReady(Ok(10)));
    assert!(
        a.update(key(KeyCode::Char('h'))).is_empty(),
        "typed into the box"
    );
    a.input.set("");
    a.update(Action::QueryDone(Ok(sample_result())));
    a.update(key(KeyCode::Esc));
    assert_eq!(a.context(), "results");
    for want in [Ranking::Hybrid, Ranking::Bm25, Ranking::Lsr] {
        let fx = a.update(key(KeyCode::Char('h')));
        assert_eq!(a.ranking, want);
        assert_eq!(
            fx,
            vec![Effect::RunQuery(
                "what causes hypertension in adults".into()
            )]
        );
    }
    let mut r = sample_result();
    r.ranking = Ranking::Hybrid;
    a.update(Action::QueryDone(Ok(r)));
    let screen = render(&a);
    assert!(screen.contains("Hits by hybrid"), "{screen}");
    assert!(
        screen.contains("lsr") && screen.contains("bm25"),
        "{screen}"
    );
}

#[test]
fn snapshot_search_view() {
    let mut a = app();
    type_text(&mut a, "what causes hypertension in adults");
    a.update(Action::ModelReady(Ok("model smollm2 ready".into())));
    a.update(Action::IndexReady(Ok(5183)));
    a.update(Action::QueryDone(Ok(sample_result())));
    a.update(Action::DetailDone(Ok(sample_detail())));
    insta::assert_snapshot!("search", render(&a));
    snapshot_sizes("search", &a);
}

fn sample_comparison() -> csplade::explore::Comparison {
    use csplade::compare::EncoderSpec;
    use csplade::encode::{Head, Variant};
    use csplade::explore::EncoderRun;
    use csplade::quant::{self, Precision};
    let base = sample_result();
    let f32v = base.vector.clone();
    let q4v = SparseVec::from_pairs(vec![(1, 1.7), (3, 1.3), (2, 1.0), (9, 0.6)]);
    let mk = |p: Precision,
              v: &SparseVec,
              terms: Vec<ExpansionTerm>,
              ms: f64,
              bytes: usize,
              rank: Vec<&str>| EncoderRun {
        encoder: EncoderSpec {
            precision: p,
            ..EncoderSpec::new("default")
        },
        variant: Variant::Echo,
        head: Head::LogProb { shift: 5.0 },
        terms,
        active: v.active(),
        latency_ms: ms,
        model_bytes: bytes,
        vs_first: (p != Precision::F32).then(|| quant::diff(&f32v, v)),
        alignment: None,
        ranking: Some(rank.iter().map(|s| s.to_string()).collect()),
        rank_overlap10: (p != Precision::F32).then_some(0.5),
        kendall_tau: (p != Precision::F32).then_some(1.0),
    };
    let q4_terms = vec![
        ExpansionTerm {
            id: 1,
            token: " hypertension".into(),
            weight: 1.7,
            in_text: true,
        },
        ExpansionTerm {
            id: 3,
            token: " pressure".into(),
            weight: 1.3,
            in_text: false,
        },
        ExpansionTerm {
            id: 2,
            token: " blood".into(),
            weight: 1.0,
            in_text: false,
        },
        ExpansionTerm {
            id: 9,
            token: " salt".into(),
            weight: 0.6,
            in_text: false,
        },
    ];
    csplade::explore::Comparison {
        text: base.text.clone(),
        runs: vec![
            mk(
                Precision::F32,
                &f32v,
                base.terms.clone(),
                110.0,
                651_000_000,
                vec!["d7", "d3"],
            ),
            mk(
                Precision::Q4_0,
                &q4v,
                q4_terms,
                34.0,
                359_000_000,
                vec!["d7", "d9"],
            ),
        ],
    }
}

#[test]
fn compare_runs_for_the_current_query() {
    let mut a = app();
    a.tab = Tab::Compare;
    assert!(
        a.update(key(KeyCode::Enter)).is_empty(),
        "nothing to compare yet"
    );
    a.update(Action::QueryDone(Ok(sample_result())));
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::RunCompare(
            "what causes hypertension in adults".into(),
            "variants".into()
        )]
    );
    assert!(
        a.update(key(KeyCode::Enter)).is_empty(),
        "one comparison at a time"
    );
    a.update(Action::CompareDone(Ok(sample_comparison())));
    assert!(!a.compare_pending);
    assert_eq!(a.comparison.as_ref().map(|c| c.runs.len()), Some(2));
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
            relevant_in_lsr_top100: false,
        },
        FailureRow {
            query_id: "q1".into(),
            text: "hypertension".into(),
            lsr_ndcg10: 0.7,
            bm25_ndcg10: 0.5,
            hybrid_ndcg10: 0.75,
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

fn sample_explanation() -> csplade::explore::FailureExplanation {
    use csplade::failures::*;
    FailureExplanation {
        query_id: "q2".into(),
        text: "salt and blood pressure".into(),
        ndcg_lsr: 0.1,
        ndcg_bm25: 0.9,
        expansion: vec![(" blood".into(), 1.7), (" pressure".into(), 1.5)],
        missed: vec![MissedDocument {
            doc_id: "d9".into(),
            grade: 1,
            lsr_rank: None,
            bm25_rank: Some(1),
            bm25_words: vec![WordEvidence {
                word: "salt".into(),
                term: "salt".into(),
                bm25: 4.2,
                tokens: vec![" salt".into()],
                query_weight: 0.0,
                doc_weight: 1.3,
                missing_from_expansion: true,
            }],
            shared_terms: vec![],
            ordinal: 9,
            beyond_window: vec![" sodium".into()],
        }],
        wrong_hits: vec![WrongHit {
            doc_id: "d3".into(),
            rank: 1,
            score: 4.0,
            lifted_by: vec![TermEvidence {
                token: " blood".into(),
                query_weight: 1.7,
                doc_weight: 1.6,
                product: 2.72,
            }],
        }],
    }
}

/// `s` cycles the Failures views (all by Δ, relevant missed entirely, by
/// the query box's text) and `e` exports the rows shown.
#[test]
fn failure_views_filter_and_export_what_they_show() {
    let mut a = app();
    a.has_qrels = true;
    a.tab = Tab::Failures;
    let row = |id: &str, text: &str, l: f64, b: f64, h: f64, top: bool| FailureRow {
        query_id: id.into(),
        text: text.into(),
        lsr_ndcg10: l,
        bm25_ndcg10: b,
        hybrid_ndcg10: h,
        relevant_in_lsr_top100: top,
    };
    a.update(Action::FailuresDone(Ok(vec![
        row("q3", "zinc", 0.0, 1.0, 0.0, false),
        row("q2", "salt and blood pressure", 0.1, 0.9, 0.6, true),
        row("q1", "blood sugar", 0.7, 0.5, 0.6, true),
    ])));
    let ids = |a: &App| -> Vec<String> {
        a.visible_failures()
            .iter()
            .map(|r| r.query_id.clone())
            .collect()
    };
    assert_eq!(ids(&a), ["q3", "q2", "q1"]);
    a.update(key(KeyCode::Char('s')));
    assert_eq!(
        ids(&a),
        ["q3"],
        "relevant documents all outside the top 100"
    );
    a.update(key(KeyCode::Char('s')));
    assert_eq!(
        ids(&a),
        ["q2"],
        "LSR loses to BM25 and the hybrid beats LSR"
    );
    a.update(key(KeyCode::Char('s')));
    assert_eq!(ids(&a), ["q3", "q2"], "the hybrid scores below BM25");
    a.input.set("blood");
    a.update(key(KeyCode::Char('s')));
    assert_eq!(ids(&a), ["q1", "q2"], "matching the query box, A–Z");
    match a.update(key(KeyCode::Char('e'))).as_slice() {
        [Effect::ExportFailures(rows)] => assert_eq!(rows.len(), 2),
        other => panic!("{other:?}"),
    }
    a.update(Action::ExportDone(Ok(
        "/x/failures.tsv and /x/failures.json".into(),
    )));
    assert!(a.status.contains("/x/failures.tsv"), "{}", a.status);
    a.update(key(KeyCode::Char('s')));
    assert_eq!(ids(&a).len(), 3, "back to all queries");
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

/// `p` in Compare cycles the presets, remembers the choice, and reruns the
/// comparison of the current query under the new preset.
#[test]
fn compare_presets_cycle_and_are_remembered() {
    let mut a = app();
    a.tab = Tab::Compare;
    assert_eq!(a.compare_preset().0, "variants");
    let e = a.update(key(KeyCode::Char('p')));
    assert_eq!(e, vec![Effect::SaveComparePreset("base-vs-trained".into())]);
    assert!(a.status.contains("base-vs-trained"), "{}", a.status);
    a.update(Action::QueryDone(Ok(sample_result())));
    let e = a.update(key(KeyCode::Char('p')));
    assert_eq!(
        e,
        vec![
            Effect::SaveComparePreset("precisions".into()),
            Effect::RunCompare(
                "what causes hypertension in adults".into(),
                "precisions".into()
            )
        ]
    );
    a.update(Action::CompareDone(Ok(sample_comparison())));
    a.update(key(KeyCode::Char('p')));
    assert_eq!(a.compare_preset().0, "query-sides");
    a.update(Action::CompareDone(Ok(sample_comparison())));
    a.update(key(KeyCode::Char('p')));
    assert_eq!(a.compare_preset().0, "families");
    a.update(Action::CompareDone(Ok(sample_comparison())));
    a.update(key(KeyCode::Char('p')));
    assert_eq!(a.compare_preset().0, "variants", "cycles back");
}

/// The cell where `text` first appears in the last rendered frame.
fn find(screen: &str, text: &str) -> (u16, u16) {
    for (row, line) in screen.lines().enumerate() {
        // TestBackend's Display quotes each line.
        let line = line.strip_prefix('"').unwrap_or(line);
        if let Some(byte) = line.find(text) {
            return (line[..byte].chars().count() as u16, row as u16);
        }
    }
    panic!("{text:?} is not on screen:\n{screen}");
}

fn mouse(kind: crossterm::event::MouseEventKind, (column, row): (u16, u16)) -> Action {
    Action::Mouse(crossterm::event::MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    })
}

#[test]
fn clicks_and_the_wheel_select_what_is_under_the_pointer() {
    use crossterm::event::{MouseButton, MouseEventKind};
    let click = MouseEventKind::Down(MouseButton::Left);
    let mut a = app();
    type_text(&mut a, "what causes hypertension in adults");
    a.update(Action::ModelReady(Ok("model smollm2 ready".into())));
    a.update(Action::IndexReady(Ok(5183)));
    a.update(Action::QueryDone(Ok(sample_result())));
    let screen = render(&a);
    // The second hit, clicked, is selected and its explanation loaded.
    assert_eq!(
        a.update(mouse(click, find(&screen, "d3 Salt intake"))),
        vec![Effect::LoadDetail(3)]
    );
    assert_eq!(a.selected, 1);
    // The wheel over the hits moves the selection back up.
    let screen = render(&a);
    assert_eq!(
        a.update(mouse(
            MouseEventKind::ScrollUp,
            find(&screen, "d3 Salt intake")
        )),
        vec![Effect::LoadDetail(7)]
    );
    assert_eq!(a.selected, 0);
    // The wheel over the document scrolls it.
    a.update(Action::DetailDone(Ok(sample_detail())));
    let screen = render(&a);
    let (x, y) = find(&screen, " Document ");
    a.update(mouse(MouseEventKind::ScrollDown, (x, y + 1)));
    assert_eq!(a.doc_scroll, 3);
    // A click in the query box focuses it; a tab title switches views.
    let screen = render(&a);
    a.update(mouse(click, find(&screen, "what causes")));
    assert_eq!(a.focus, csplade::tui::app::Focus::Input);
    a.update(mouse(click, find(&screen, "Failures")));
    assert_eq!(a.tab, Tab::Failures);
    // Outside every target, nothing happens.
    assert!(a.update(mouse(click, (119, 20))).is_empty());
    // With help open, a click closes it.
    a.update(key(KeyCode::F(1)));
    assert!(a.help);
    render(&a);
    a.update(mouse(click, (0, 0)));
    assert!(!a.help);
}

#[test]
fn a_clicked_failure_is_selected_and_a_second_click_opens_it() {
    use crossterm::event::{MouseButton, MouseEventKind};
    let click = MouseEventKind::Down(MouseButton::Left);
    let mut a = app();
    a.has_qrels = true;
    a.update(Action::ModelReady(Ok("ready".into())));
    a.update(Action::IndexReady(Ok(10)));
    a.tab = Tab::Failures;
    let row = |id: &str, text: &str, lsr: f64| FailureRow {
        query_id: id.into(),
        text: text.into(),
        lsr_ndcg10: lsr,
        bm25_ndcg10: 0.9,
        hybrid_ndcg10: 0.9,
        relevant_in_lsr_top100: true,
    };
    a.update(Action::FailuresDone(Ok(vec![
        row("q1", "first query", 0.1),
        row("q2", "second query", 0.2),
    ])));
    let screen = render(&a);
    let at = find(&screen, "second query");
    assert!(a.update(mouse(click, at)).is_empty());
    assert_eq!(a.failure_sel, 1);
    assert_eq!(
        a.update(mouse(click, at)),
        vec![Effect::RunQuery("second query".into())]
    );
    assert_eq!(a.tab, Tab::Search);
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
