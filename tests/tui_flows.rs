//! The explorer's flows without a terminal, driven by synthetic keys, mouse
//! events and injected results: a failure opened in Search, ranking by LSR,
//! hybrid and BM25, Compare and its presets, the failure views' filters and
//! exports, clicks and the wheel.

#[path = "common/tui.rs"]
mod tui_fixture;

use crossterm::event::KeyCode;
use csplade::explore::{FailureRow, HitRow};
use csplade::tui::action::{Action, Effect};
use csplade::tui::app::{App, Tab};
use tui_fixture::*;

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
            unfed_ndcg10: None,
            relevant_in_lsr_top100: false,
        },
        FailureRow {
            query_id: "q1".into(),
            text: "hypertension".into(),
            lsr_ndcg10: 0.5,
            bm25_ndcg10: 0.5,
            hybrid_ndcg10: 0.5,
            unfed_ndcg10: None,
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

/// `f` turns the feedback off and on again for the shown query; the
/// expansion lists the lent terms only while it is on.
#[test]
fn f_toggles_the_feedback_for_the_shown_query() {
    let mut a = app();
    a.update(Action::ModelReady(Ok("ready".into())));
    a.update(Action::IndexReady(Ok(10)));
    a.update(Action::QueryDone(Ok(sample_feedback_result())));
    a.update(key(KeyCode::Esc));
    assert_eq!(a.context(), "results");
    assert!(render(&a).contains("from d7 d3"));
    let rerun = vec![Effect::RunQuery(
        "what causes hypertension in adults".into(),
    )];
    assert_eq!(a.update(key(KeyCode::Char('f'))), rerun);
    assert!(a.feedback_off);
    assert!(a.status.contains("feedback off"), "{}", a.status);
    a.update(Action::QueryDone(Ok(sample_result())));
    let screen = render(&a);
    assert!(
        !screen.contains("from d7 d3") && !screen.contains("+ ·salt"),
        "{screen}"
    );
    assert_eq!(a.update(key(KeyCode::Char('f'))), rerun);
    assert!(!a.feedback_off);
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

/// `s` cycles the Failures views (all by Δ, relevant missed entirely, the
/// two fusion views, by the query box's text, the queries the feedback
/// lowered) and `e` exports the rows shown.
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
        unfed_ndcg10: None,
        relevant_in_lsr_top100: top,
    };
    // Searched with feedback: it raised q2 (0.05 → 0.1) and lowered q1.
    let fed = |mut r: FailureRow, without: f64| {
        r.unfed_ndcg10 = Some(without);
        r
    };
    a.update(Action::FailuresDone(Ok(vec![
        fed(row("q3", "zinc", 0.0, 1.0, 0.0, false), 0.0),
        fed(
            row("q2", "salt and blood pressure", 0.1, 0.9, 0.6, true),
            0.05,
        ),
        fed(row("q1", "blood sugar", 0.7, 0.5, 0.6, true), 0.8),
    ])));
    let screen = render(&a);
    assert!(
        screen.contains("fb Δ") && screen.contains("-0.100"),
        "{screen}"
    );
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
    assert_eq!(ids(&a), ["q1"], "the feedback lowered LSR");
    a.update(key(KeyCode::Char('s')));
    assert_eq!(ids(&a).len(), 3, "back to all queries");
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
        unfed_ndcg10: None,
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
