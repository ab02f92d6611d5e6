//! The explorer's test fixtures: an app as the explorer starts, keys and
//! mouse events, a frame rendered to ratatui's TestBackend, and sample
//! results, documents, comparisons and failure explanations.

#![allow(dead_code)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use csplade::encode::SparseVec;
use csplade::explore::{DocDetail, ExpansionTerm, HitRow, QueryResult};
use csplade::tasks::TaskSpec;
use csplade::tui::action::{Action, Effect};
use csplade::tui::app::App;
use csplade::tui::keymap::Keymap;
use csplade::tui::theme::Theme;
use csplade::tui::views;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

pub fn app() -> App {
    let mut a = App::new(Theme::dark(), Keymap::default_keymap());
    a.index_task = Some(TaskSpec {
        title: "index demo".into(),
        args: vec!["index".into()],
    });
    a
}

pub fn key(c: KeyCode) -> Action {
    Action::Key(KeyEvent::from(c))
}

pub fn type_text(a: &mut App, s: &str) -> Vec<Effect> {
    let mut out = vec![];
    for c in s.chars() {
        out.extend(a.update(key(KeyCode::Char(c))));
    }
    out
}

pub fn render(a: &App) -> String {
    render_at(a, 120, 32)
}

pub fn render_at(a: &App, width: u16, height: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
    t.draw(|f| views::draw(f, a)).unwrap();
    format!("{}", t.backend())
}

pub fn sample_result() -> QueryResult {
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
        feedback: Default::default(),
        feedback_terms: Default::default(),
        feedback_tokens: Vec::new(),
        feedback_docs: Vec::new(),
        hits,
        encode_ms: 21.0,
        search_ms: 0.3,
        scorer: "exact".into(),
    }
}

/// A term's share of a score without prior or feedback.
fn share(id: u32, query_weight: f32, doc_weight: f32) -> csplade::encode::Contribution {
    csplade::encode::Contribution {
        id,
        query_weight,
        prior: 1.0,
        feedback: 0.0,
        doc_weight,
        product: query_weight * doc_weight,
    }
}

/// `sample_result` searched with the idf prior and Rocchio feedback from
/// its two hits, which lent it " salt" and " sodium".
pub fn sample_feedback_result() -> QueryResult {
    let mut r = sample_result();
    r.prior = csplade::explore::QueryPrior::Idf { power: 0.5 };
    r.feedback = csplade::explore::QueryFeedback::ROCCHIO;
    r.feedback_terms = csplade::explore::Feedback {
        docs: vec![7, 3],
        terms: SparseVec::from_pairs(vec![(5, 0.9), (6, 0.6)]),
    };
    r.feedback_tokens = vec![(" salt".into(), 0.9), (" sodium".into(), 0.6)];
    r.feedback_docs = vec!["d7".into(), "d3".into()];
    r
}

/// `sample_detail` of the feedback result: " salt" matched through the
/// feedback alone.
pub fn sample_feedback_detail() -> DocDetail {
    let mut d = sample_detail();
    let c = |id, q: f32, prior: f32, fb: f32, dw: f32| csplade::encode::Contribution {
        id,
        query_weight: q,
        prior,
        feedback: fb,
        doc_weight: dw,
        product: (q * prior + fb) * dw,
    };
    d.contributions = vec![
        (" hypertension".into(), c(1, 1.9, 1.6, 0.3, 2.0)),
        (" salt".into(), c(5, 0.0, 1.4, 0.9, 1.6)),
        (" blood".into(), c(2, 1.4, 1.2, 0.0, 1.5)),
    ];
    // The feedback lent " salt": no longer missing from the query.
    d.missed_terms.clear();
    d
}

pub fn sample_detail() -> DocDetail {
    DocDetail {
        ordinal: 7,
        doc_id: "d7".into(),
        title: "High blood pressure in adults".into(),
        text: "Hypertension in adults is driven by salt, age and blood pressure regulation.".into(),
        contributions: vec![
            (" hypertension".into(), share(1, 1.9, 2.0)),
            (" blood".into(), share(2, 1.4, 1.5)),
        ],
        top_terms: vec![(" hypertension".into(), 2.0), (" salt".into(), 1.6)],
        missed_terms: vec![(" salt".into(), 1.6)],
        // The model read "Hypertension in adults is driven by salt," only.
        encoded_window: Some((41, 16)),
        beyond_window: vec![" age".into()],
        passages: 0,
        passage: None,
    }
}

/// `sample_detail` from an index with passages: the document ranked by
/// its second passage, whose terms the explanation shows.
pub fn sample_passage_detail() -> DocDetail {
    DocDetail {
        contributions: vec![(" age".into(), share(4, 1.2, 1.8))],
        top_terms: vec![(" age".into(), 1.8), (" blood".into(), 1.1)],
        missed_terms: Vec::new(),
        beyond_window: Vec::new(),
        passages: 2,
        passage: Some((2, "age and blood pressure regulation.".into())),
        ..sample_detail()
    }
}

pub fn sample_comparison() -> csplade::explore::Comparison {
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
        prior: Some("idf:0.5".into()),
        feedback: Some("rocchio:1:0.1:30:1".into()),
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

pub fn sample_explanation() -> csplade::explore::FailureExplanation {
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

/// The cell where `text` first appears in the last rendered frame.
pub fn find(screen: &str, text: &str) -> (u16, u16) {
    for (row, line) in screen.lines().enumerate() {
        // TestBackend's Display quotes each line.
        let line = line.strip_prefix('"').unwrap_or(line);
        if let Some(byte) = line.find(text) {
            return (line[..byte].chars().count() as u16, row as u16);
        }
    }
    panic!("{text:?} is not on screen:\n{screen}");
}

pub fn mouse(kind: crossterm::event::MouseEventKind, (column, row): (u16, u16)) -> Action {
    Action::Mouse(crossterm::event::MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    })
}
