//! The explorer's Frontier view without a terminal: drawn to ratatui's
//! TestBackend and snapshotted, and its keys driven with synthetic events —
//! read from the cache on first view, computed as a background task, axes
//! switched, a point opened in Compare beside the reference.

#[path = "common/frontier.rs"]
mod frontier_fixture;
#[path = "common/tui.rs"]
mod tui_fixture;

use crossterm::event::KeyCode;
use csplade::explore::{EncoderSpec, FrontierAxis};
use csplade::tasks::{TaskEvent, TaskSpec};
use csplade::tui::action::{Action, Effect};
use csplade::tui::app::{App, IndexState, Tab};
use csplade::tui::keymap::Keymap;
use csplade::tui::theme::Theme;
use frontier_fixture::sample_frontier;
use tui_fixture::{key, render_at};

fn frontier_task() -> TaskSpec {
    TaskSpec {
        title: "frontier f32/f16/q8_0/q4_0".into(),
        args: vec!["tradeoff".into()],
    }
}

fn app() -> App {
    let mut a = App::new(Theme::dark(), Keymap::default_keymap());
    a.has_qrels = true;
    a.index = IndexState::Ready(5183);
    a.frontier.task = Some(frontier_task());
    a
}

/// Tab to the Frontier view (Search → Compare → Failures → Frontier).
fn open_frontier(a: &mut App) -> Vec<Effect> {
    a.update(key(KeyCode::Tab));
    a.update(key(KeyCode::Tab));
    a.update(key(KeyCode::Tab))
}

#[test]
fn the_frontier_is_read_from_the_cache_once_then_computed_in_the_background() {
    let mut a = app();
    a.focus = csplade::tui::app::Focus::Results;
    assert_eq!(open_frontier(&mut a), vec![Effect::LoadFrontier]);
    assert_eq!(a.tab, Tab::Frontier);
    a.update(Action::FrontierDone(Ok(None)));
    assert!(render_at(&a, 120, 32).contains("No frontier for this collection yet"));
    // Leaving and coming back does not read the cache again.
    a.update(key(KeyCode::Tab));
    assert!(a.update(key(KeyCode::BackTab)).is_empty());
    // r computes it as a task; its success reads the cache.
    assert_eq!(
        a.update(key(KeyCode::Char('r'))),
        vec![Effect::StartTask(frontier_task())]
    );
    a.add_task(7, frontier_task());
    assert!(
        a.update(key(KeyCode::Char('r'))).is_empty(),
        "one at a time"
    );
    assert!(render_at(&a, 120, 32).contains("Computing the frontier"));
    let effects = a.update(Action::Task(TaskEvent::Succeeded { id: 7 }));
    assert_eq!(effects, vec![Effect::LoadFrontier]);
    a.update(Action::FrontierDone(Ok(Some(sample_frontier()))));
    assert!(
        a.status.contains("5 points over 80 queries"),
        "{}",
        a.status
    );
}

#[test]
fn without_a_built_index_or_judgements_the_frontier_says_why() {
    let mut a = app();
    a.index = IndexState::Building;
    a.tab = Tab::Frontier;
    a.update(key(KeyCode::Char('r')));
    assert!(a.status.contains("not built yet"), "{}", a.status);
    a.has_qrels = false;
    a.update(key(KeyCode::Char('r')));
    assert!(a.status.contains("judged queries"), "{}", a.status);
}

#[test]
fn axes_cycle_points_move_and_enter_compares_a_point_beside_the_reference() {
    let mut a = app();
    a.tab = Tab::Frontier;
    a.update(Action::FrontierDone(Ok(Some(sample_frontier()))));
    assert_eq!(a.frontier.axis, FrontierAxis::QueryLatency);
    for want in [
        FrontierAxis::DocSpeed,
        FrontierAxis::ModelBytes,
        FrontierAxis::IndexBytes,
        FrontierAxis::QueryLatency,
    ] {
        a.update(key(KeyCode::Char('a')));
        assert_eq!(a.frontier.axis, want);
    }
    a.update(key(KeyCode::Down));
    a.update(key(KeyCode::Down));
    assert_eq!(a.frontier.selected, 2);
    a.update(key(KeyCode::End));
    assert_eq!(a.frontier.selected, 4);
    a.update(key(KeyCode::Up));
    a.update(key(KeyCode::Up));
    // No query yet: nothing to compare.
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert!(a.status.contains("run a query"), "{}", a.status);
    a.input.set("what causes hypertension");
    let spec = |s: &str| s.parse::<EncoderSpec>().unwrap();
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::RunCompareEncoders(
            "what causes hypertension".into(),
            vec![spec("default"), spec("default:q8_0")]
        )]
    );
    assert_eq!(a.tab, Tab::Compare);
    // A mixed point brings both of its encoders.
    a.compare_pending = false;
    a.tab = Tab::Frontier;
    a.update(key(KeyCode::End));
    let effects = a.update(key(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![Effect::RunCompareEncoders(
            "what causes hypertension".into(),
            vec![spec("default"), spec("default:q8_0")]
        )]
    );
}

#[test]
fn snapshot_frontier_view() {
    let mut a = app();
    a.tab = Tab::Frontier;
    a.update(Action::FrontierDone(Ok(Some(sample_frontier()))));
    a.update(key(KeyCode::Down));
    a.update(key(KeyCode::Down));
    let screen = render_at(&a, 120, 32);
    // Pareto-optimal against query latency: f32 (0.487 at 64 ms) is beaten by
    // q8_0 (0.489 at 40 ms); q8_0 and q4_0 (cheapest) are on the front.
    assert!(screen.contains("◆ q8_0"), "{screen}");
    assert!(screen.contains("◆ q4_0"), "{screen}");
    assert!(screen.contains("● f32"), "{screen}");
    assert!(
        screen.contains("80 queries · pool depth 10 → 1152 of 5183 documents"),
        "{screen}"
    );
    insta::assert_snapshot!("frontier", screen);
    insta::assert_snapshot!("frontier_80x24", render_at(&a, 80, 24));
    insta::assert_snapshot!("frontier_220x60", render_at(&a, 220, 60));
    a.update(key(KeyCode::Char('a')));
    a.update(key(KeyCode::Char('a')));
    insta::assert_snapshot!("frontier_model_size", render_at(&a, 120, 32));
}
