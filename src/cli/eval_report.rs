//! What `eval` prints: the systems' metrics side by side (text or JSON),
//! how the documents weigh their terms, the queries where LSR loses most to
//! BM25, and the explained failures.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::json;

use csplade::eval::{document_weights, median, DocumentWeights};

use super::eval::{Collection, EvalArgs, LsrSide, Scored};

/// What `eval` prints.
pub(super) struct Report<'a> {
    pub a: &'a EvalArgs,
    pub c: &'a Collection,
    pub results: &'a [Scored<'a>],
    pub side: Option<&'a LsrSide>,
    pub explained: &'a [csplade::failures::FailureExplanation],
}

impl Report<'_> {
    /// Median active dimensions of the queries and documents.
    fn sparsity(&self) -> Option<(f64, f64)> {
        self.side.map(|s| {
            (
                median(s.expansions.iter().map(|e| e.active() as f64).collect()),
                median(s.index.vectors.iter().map(|d| d.active() as f64).collect()),
            )
        })
    }

    /// With feedback: LSR's metrics without it, and on how many queries
    /// the feedback raised and lowered nDCG@10.
    fn feedback_effect(&self) -> Option<(csplade::eval::Metrics, usize, usize)> {
        let unfed = self.side?.unfed.as_ref()?;
        let (_, _, with) = self.results.iter().find(|r| r.0 == "lsr")?;
        let (mean, without) = super::eval::evaluate(unfed, &self.c.qrels);
        let (mut raised, mut lowered) = (0, 0);
        for (q, m) in &without {
            let fed = with.get(q).map_or(0.0, |x| x.ndcg10);
            raised += usize::from(fed > m.ndcg10);
            lowered += usize::from(fed < m.ndcg10);
        }
        Some((mean, raised, lowered))
    }

    /// How the index's documents weigh their terms.
    fn document_weights(&self) -> Option<DocumentWeights> {
        let s = self.side?;
        document_weights(s.index.vectors.iter().map(|d| d.weights.as_slice()))
    }

    pub fn json(&self) -> Result<()> {
        let mut sys = serde_json::Map::new();
        for (name, m, _) in self.results {
            sys.insert(name.to_string(), serde_json::to_value(m)?);
        }
        let mut out = json!({"dataset": self.c.name, "split": self.a.split,
            "queries": self.c.evaluated.len(), "systems": sys,
            "median_active": self.sparsity().map(|(q, d)| json!({"query": q, "document": d}))});
        if let Some(s) = self.side {
            out["query_prior"] = json!(s.prior.to_string());
            out["query_feedback"] = json!(s.feedback.to_string());
            if let Some(p) = &s.index.passages {
                out["passages"] = json!({"spec": p.spec.to_string(), "count": p.len()});
            }
        }
        if let Some((without, raised, lowered)) = self.feedback_effect() {
            out["feedback_effect"] = json!({"lsr_without": without, "queries_raised": raised, "queries_lowered": lowered});
        }
        if let Some(w) = self.document_weights() {
            out["document_weights"] = serde_json::to_value(w)?;
        }
        if self.a.system.hybrid() {
            out["fusion"] = json!(self.a.fusion.to_string());
        }
        if self.a.explain_failures > 0 {
            out["failures"] = serde_json::to_value(self.explained)?;
        }
        println!("{out}");
        Ok(())
    }

    pub fn text(&self) {
        println!(
            "dataset {}  split {}  queries {}",
            self.c.name,
            self.a.split,
            self.c.evaluated.len()
        );
        if let Some((q, d)) = self.sparsity() {
            println!("LSR median active dimensions: {q} per query, {d} per document");
        }
        if let Some(w) = self.document_weights() {
            println!(
                "LSR documents: median gap {:.3} between the 1st and 10th weight ({:.3} of the largest, median {:.3}), median {} term{} within 0.05 of the largest",
                w.gap,
                w.relative_gap,
                w.largest,
                w.near_largest,
                if w.near_largest == 1.0 { "" } else { "s" }
            );
        }
        if let Some(p) = self.side.and_then(|s| s.index.passages.as_ref()) {
            println!(
                "LSR documents ranked by their best passage: {} passages ({}) beside their first reads",
                p.len(),
                p.spec
            );
        }
        if let Some(s) = self.side.filter(|s| !s.prior.is_none()) {
            println!("LSR query prior: {}", s.prior);
        }
        if let Some(s) = self.side.filter(|s| !s.feedback.is_none()) {
            println!("LSR query feedback: {}", s.feedback);
        }
        if let Some((without, raised, lowered)) = self.feedback_effect() {
            println!(
                "  without it LSR nDCG@10 {:.4}; it raises {raised} queries and lowers {lowered}",
                without.ndcg10
            );
        }
        if self.a.system.hybrid() {
            println!("hybrid: {} of LSR and BM25", self.a.fusion);
        }
        println!(
            "{:<6} {:>8} {:>8} {:>8} {:>8}",
            "system", "nDCG@10", "MRR@10", "R@100", "R@1000"
        );
        for (name, m, _) in self.results {
            println!(
                "{:<6} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
                name, m.ndcg10, m.mrr10, m.recall100, m.recall1000
            );
        }
        self.losses();
        if !self.explained.is_empty() {
            println!(
                "\nWhy LSR loses on the {} worst queries:",
                self.explained.len()
            );
            print_failures(self.explained);
        }
    }

    /// The queries where LSR loses most to BM25.
    fn losses(&self) {
        let find = |n: &str| self.results.iter().find(|r| r.0 == n);
        let (Some(b), Some(l)) = (find("bm25"), find("lsr")) else {
            return;
        };
        let text: HashMap<&str, &str> = self
            .c
            .evaluated
            .iter()
            .map(|q| (q.id.as_str(), q.text.as_str()))
            .collect();
        let mut losses: Vec<(&String, f64, f64)> =
            b.2.iter()
                .map(|(q, m)| (q, m.ndcg10, l.2.get(q).map_or(0.0, |x| x.ndcg10)))
                .filter(|x| x.2 < x.1)
                .collect();
        losses.sort_by(|x, y| (y.1 - y.2).total_cmp(&(x.1 - x.2)).then(x.0.cmp(y.0)));
        let wins =
            b.2.iter()
                .filter(|(q, m)| l.2.get(*q).is_some_and(|x| x.ndcg10 > m.ndcg10))
                .count();
        println!(
            "\nLSR beats BM25 on {wins} queries and loses on {} (nDCG@10); largest losses:",
            losses.len()
        );
        println!(
            "{:<12} {:>7} {:>7} {:>7}  query",
            "query", "bm25", "lsr", "Δ"
        );
        for (q, bv, lv) in losses.iter().take(self.a.losses) {
            let t: String = text
                .get(q.as_str())
                .copied()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect();
            println!("{:<12} {:>7.3} {:>7.3} {:>+7.3}  {t}", q, bv, lv, lv - bv);
        }
    }
}

/// Print explained failures for a reader.
fn print_failures(explained: &[csplade::failures::FailureExplanation]) {
    let rank = |r: Option<usize>| r.map_or("—".to_string(), |r| r.to_string());
    for f in explained {
        println!(
            "\n{}  {}\n  nDCG@10 LSR {:.3}  BM25 {:.3}",
            f.query_id, f.text, f.ndcg_lsr, f.ndcg_bm25
        );
        let exp: Vec<String> = f
            .expansion
            .iter()
            .map(|(t, w)| format!("{t:?} {w:.2}"))
            .collect();
        println!("  expansion: {}", exp.join(", "));
        for m in &f.missed {
            println!(
                "  missed {} (grade {}): LSR rank {}, BM25 rank {}",
                m.doc_id,
                m.grade,
                rank(m.lsr_rank),
                rank(m.bm25_rank)
            );
            for w in &m.bm25_words {
                println!(
                    "    BM25 {:>5.2}  {:<16} query weight {:.2} doc weight {:.2}{}",
                    w.bm25,
                    w.word,
                    w.query_weight,
                    w.doc_weight,
                    if w.missing_from_expansion {
                        "  ← missing from the expansion"
                    } else {
                        ""
                    }
                );
            }
        }
        for h in &f.wrong_hits {
            let terms: Vec<String> = h
                .lifted_by
                .iter()
                .take(5)
                .map(|t| format!("{:?} {:.2}", t.token, t.product))
                .collect();
            println!(
                "  not relevant at rank {}: {} lifted by {}",
                h.rank,
                h.doc_id,
                terms.join(", ")
            );
        }
    }
}
