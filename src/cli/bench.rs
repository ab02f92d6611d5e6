//! `csplade bench`: throughput measurements (never timed tests).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use csplade::data::{beir, shared_data_dir};
use csplade::encode::Encoder;

use super::ModelArgs;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Encoding throughput over a fixed SciFact sample (tokens/s)
    Encode(EncodeBench),
    /// GEMM throughput (GFLOP/s) of the inference kernels, and of the training engine's bf16 products, vs candle's matmul
    Gemm(GemmBench),
    /// Search latency p50/p99 (without and with query encoding), index size,
    /// build throughput
    Search(super::bench_search::SearchBench),
    /// Explorer responsiveness: keystroke → redraw, Enter → expansion on
    /// screen, resident memory with the model and index loaded
    Tui(TuiBench),
    /// Training throughput (forward + backward tokens/s) of a few steps
    Train(super::bench_train::TrainBench),
    /// Seismic vs the exact scorer vs tantivy: latency p50/p99, recall@k
    /// against exact search, memory and build time, on an index's collection
    /// or a synthetic one of N documents with its term statistics
    Seismic(super::bench_seismic::SeismicBench),
    /// A BERT-base-sized SPLADE encoder (random weights, written by
    /// sentence-transformers): csplade f32 and q8_0 against
    /// sentence-transformers' SparseEncoder on CPU, same texts, same run
    Splade(super::bench_splade::SpladeBench),
}

#[derive(Args)]
pub struct TuiBench {
    /// Index the explorer would open
    #[arg(long)]
    pub index: PathBuf,
    /// The model that built it [default: the model the index records, else default]
    #[arg(long)]
    pub model: Option<String>,
    /// Query typed (≈10 tokens by default)
    #[arg(
        long,
        default_value = "which command copies files and directories recursively"
    )]
    pub query: String,
    /// Terminal size drawn
    #[arg(long, default_value_t = 200)]
    pub width: u16,
    #[arg(long, default_value_t = 50)]
    pub height: u16,
    #[arg(long, default_value_t = 200, value_parser = super::within(1, 100_000))]
    pub repeat: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GemmBench {
    /// Rows (tokens in a batch)
    #[arg(long, default_value_t = 2048, value_parser = super::within(1, 65_536))]
    pub m: usize,
    /// Output columns
    #[arg(long, default_value_t = 1536, value_parser = super::within(1, 65_536))]
    pub n: usize,
    /// Inner dimension
    #[arg(long, default_value_t = 576, value_parser = super::within(1, 100_000))]
    pub k: usize,
    #[arg(long, default_value_t = 5, value_parser = super::within(1, 100_000))]
    pub repeat: usize,
}

#[derive(Args)]
pub struct EncodeBench {
    #[command(flatten)]
    pub model: ModelArgs,
    /// BEIR collection to sample (default: $CSPLADE_DATA/scifact)
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Documents encoded (the first N of the corpus)
    #[arg(long, default_value_t = 64, value_parser = super::within(1, 1_000_000))]
    pub docs: usize,
    /// Timed repetitions; the best is reported
    #[arg(long, default_value_t = 2, value_parser = super::within(1, 100_000))]
    pub repeat: usize,
    #[arg(long)]
    pub json: bool,
    /// Time csplade at f32, q8_0 and q8_0 with the quantized head, then a
    /// PyTorch reference of the same encode (transformers on the same model
    /// file, f32 and dynamic int8) on the same texts, as ratios to csplade
    /// f32. Needs torch and transformers; the model must be `base`, a .gguf
    /// or an HF directory
    #[arg(long)]
    pub compare_pytorch: bool,
    /// Python interpreter for --compare-pytorch (default:
    /// $CSPLADE_PYTORCH_PYTHON, else python3)
    #[arg(long, requires = "compare_pytorch")]
    pub python: Option<PathBuf>,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Encode(a) => encode(a),
        BenchCommand::Gemm(a) => gemm(a),
        BenchCommand::Search(a) => super::bench_search::run(a),
        BenchCommand::Tui(a) => tui(a),
        BenchCommand::Train(a) => super::bench_train::run(a),
        BenchCommand::Seismic(a) => super::bench_seismic::run(a),
        BenchCommand::Splade(a) => super::bench_splade::run(a),
    }
}

pub(super) fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

pub(super) fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn best_of(repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        f()?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn gemm(a: GemmBench) -> Result<()> {
    use candle_core::{Device, Tensor};
    use csplade::model::linear::Weights;
    use csplade::quant::Precision;
    let x = Tensor::randn(0f32, 1.0, (a.m, a.k), &Device::Cpu)?;
    let w = Tensor::randn(0f32, 1.0, (a.n, a.k), &Device::Cpu)?;
    let flop = 2.0 * (a.m * a.n * a.k) as f64;
    let candle = best_of(a.repeat, || {
        x.matmul(&w.t()?)?;
        Ok(())
    })?;
    println!(
        "{}x{}x{}: candle f32 matmul {:.1} GFLOP/s",
        a.m,
        a.n,
        a.k,
        flop / candle / 1e9
    );
    let row = |label: String, t: f64| {
        println!(
            "{}x{}x{}: {label} {:.1} GFLOP/s ({:.2}x candle f32)",
            a.m,
            a.n,
            a.k,
            flop / t / 1e9,
            candle / t
        )
    };
    for p in csplade::quant::ALL {
        let weights = Weights::new(&w, p)?;
        let kind = match (&weights, p) {
            (Weights::Packed(_), _) => "packed",
            (Weights::Int8(_), _) => {
                csplade::model::gemm_i8::Int8Kernel::detect().map_or("int8", |k| k.name())
            }
            (_, Precision::Q8_0 | Precision::Q4_0) => "candle QMatMul",
            _ => "candle",
        };
        let t = best_of(a.repeat, || {
            weights.matmul(&x)?;
            Ok(())
        })?;
        row(format!("{p} ({kind})"), t);
    }
    if csplade::model::gemm::bf16_available() {
        // The training engine's mixed-precision products for frozen weights.
        let packed = csplade::model::linear::with_f32_slice(&w, |d| {
            csplade::model::gemm::PackedWeight::pack_bf16(d, a.n, a.k)
        })?;
        let kind = match csplade::model::gemm::bf16_native() {
            true => "vdpbf16ps",
            false => "widened to f32",
        };
        let t = best_of(a.repeat, || {
            csplade::model::linear::matmul_packed(&x, &packed)?;
            Ok(())
        })?;
        row(format!("bf16 training products ({kind})"), t);
    }
    Ok(())
}

fn encode(a: EncodeBench) -> Result<()> {
    let dir = a
        .dataset
        .clone()
        .unwrap_or_else(|| shared_data_dir().join("scifact"));
    let docs = beir::read_corpus(&dir)
        .with_context(|| format!("reading the benchmark sample from {}", dir.display()))?;
    if a.docs == 0 {
        bail!("--docs must be at least 1");
    }
    let model = a.model.load()?;
    let enc = Encoder::new(&model, a.model.encoder_config(&model));
    let seqs: Vec<Vec<u32>> = docs
        .iter()
        .take(a.docs)
        .map(|d| enc.tokenize(&d.full_text()).map(|t| t.0))
        .collect::<Result<_, _>>()?;
    if a.compare_pytorch {
        let (variant, head) = (enc.config.variant, enc.config.head.to_string());
        // Free this model's weights before the three configurations load theirs.
        drop(model);
        return super::bench_pytorch::run(&a, &seqs, variant, head);
    }
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let (best, _) = time_encode(&enc, &seqs, a.repeat)?;
    let tps = tokens as f64 / best;
    let threads = candle_core::utils::get_num_threads();
    if a.json {
        println!(
            "{}",
            json!({"precision": a.model.precision.to_string(), "tokens_per_s": tps, "threads": threads, "variant": enc.config.variant.to_string(), "docs": seqs.len(), "tokens": tokens})
        );
    } else {
        println!(
            "encode: {} docs, {tokens} tokens (≤ {} each), batch {}, variant {}, precision {}: {tps:.0} tokens/s ({:.1} docs/s) on {threads} threads",
            seqs.len(),
            enc.max_tokens(),
            enc.config.batch_size,
            enc.config.variant,
            a.model.precision,
            seqs.len() as f64 / best
        );
    }
    Ok(())
}

/// One warm-up batch, then the best seconds of `repeat` passes over
/// `seqs`, with the last pass's vectors.
pub(super) fn time_encode(
    enc: &Encoder,
    seqs: &[Vec<u32>],
    repeat: usize,
) -> Result<(f64, Vec<csplade::encode::SparseVec>)> {
    enc.encode_ids(&seqs[..enc.config.batch_size.min(seqs.len())])?;
    let mut best = f64::INFINITY;
    let mut vecs = Vec::new();
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        vecs = enc.encode_ids(seqs)?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok((best, vecs))
}

/// Peak resident memory of this process, from /proc (Linux), in bytes.
pub(super) fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(not(feature = "explorer"))]
fn tui(_: TuiBench) -> Result<()> {
    bail!("this csplade was built without the explorer (cargo feature `explorer`)")
}

#[cfg(feature = "explorer")]
fn tui(a: TuiBench) -> Result<()> {
    use csplade::tui::action::Action;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    let ex = tui_explorer(&a)?;
    let mut app = csplade::tui::app::App::new(
        csplade::tui::theme::Theme::dark(),
        csplade::tui::keymap::Keymap::default_keymap(),
    );
    app.update(Action::ModelReady(Ok("ready".into())));
    app.update(Action::IndexReady(Ok(ex
        .index
        .as_ref()
        .map_or(0, |i| i.len()))));
    let mut term = Terminal::new(TestBackend::new(a.width, a.height))?;
    // Enter → expansion and hits on screen (encode + search + one redraw).
    let tokens = ex.model.tokenizer().encode(&a.query)?.len();
    let mut enter_ms = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let r = ex.query(&a.query, 50, csplade::explore::Ranking::Lsr)?;
        app.update(Action::QueryDone(Ok(r)));
        term.draw(|f| csplade::tui::views::draw(f, &app))?;
        enter_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    if let Some(h) = app.result.as_ref().and_then(|r| r.hits.first()) {
        let (q, fb) = app
            .result
            .as_ref()
            .map(|r| (r.vector.clone(), r.feedback_terms.terms.clone()))
            .unwrap_or_default();
        app.update(Action::DetailDone(
            ex.detail(&q, &fb, h.ordinal).map_err(|e| e.to_string()),
        ));
    }
    let mut key_ms = time_keystrokes(&mut app, &mut term, a.repeat)?;
    let timings = TuiTimings {
        keys: (percentile(&mut key_ms, 0.5), percentile(&mut key_ms, 0.99)),
        enter: (
            percentile(&mut enter_ms, 0.5),
            percentile(&mut enter_ms, 0.99),
        ),
        tokens,
    };
    report_tui(&a, &timings);
    Ok(())
}

/// The explorer over the bench's index, with the model the index records
/// and the prior and feedback it is searched with.
#[cfg(feature = "explorer")]
fn tui_explorer(a: &TuiBench) -> Result<csplade::explore::Explorer> {
    use std::sync::Arc;
    let (idx, model) = super::search::open_with_model(&a.index, a.model.as_deref(), None)?;
    let config = idx.meta.encoder_config();
    let corpus = std::path::Path::new(&idx.meta.corpus).to_path_buf();
    let (prior, feedback) = (model.query_prior(), model.query_feedback());
    Ok(csplade::explore::Explorer {
        model: Arc::new(model),
        config,
        index: Some(Arc::new(idx)),
        partial: None,
        corpus: Arc::new(Vec::new()),
        queries: Arc::new(beir::read_queries(&corpus).unwrap_or_default()),
        qrels: beir::read_qrels(&corpus, "test").ok().map(Arc::new),
        backend: csplade::search::Backend::Exact,
        prior,
        feedback,
        fusion: Default::default(),
        inference_free: false,
    })
}

/// Keystrokes that do not touch the model (move through hits, switch
/// tabs), each timed to the end of its redraw, in milliseconds.
#[cfg(feature = "explorer")]
fn time_keystrokes(
    app: &mut csplade::tui::app::App,
    term: &mut ratatui::Terminal<ratatui::backend::TestBackend>,
    repeat: usize,
) -> Result<Vec<f64>> {
    use crossterm::event::{KeyCode, KeyEvent};
    use csplade::tui::action::Action;
    let keys = [
        KeyCode::Esc,
        KeyCode::Down,
        KeyCode::Down,
        KeyCode::Up,
        KeyCode::Tab,
        KeyCode::BackTab,
        KeyCode::PageDown,
    ];
    let mut key_ms = Vec::new();
    for i in 0..repeat.max(1) {
        let t0 = Instant::now();
        app.update(Action::Key(KeyEvent::from(keys[i % keys.len()])));
        term.draw(|f| csplade::tui::views::draw(f, app))?;
        key_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(key_ms)
}

/// The explorer's latencies, p50 and p99 (of five, for Enter: the max).
#[cfg(feature = "explorer")]
struct TuiTimings {
    keys: (f64, f64),
    enter: (f64, f64),
    tokens: usize,
}

#[cfg(feature = "explorer")]
fn report_tui(a: &TuiBench, t: &TuiTimings) {
    let ((k50, k99), (e50, e99), tokens) = (t.keys, t.enter, t.tokens);
    let rss = peak_rss().unwrap_or(0);
    if a.json {
        println!(
            "{}",
            json!({"keystroke_to_redraw_ms": {"p50": k50, "p99": k99}, "enter_to_expansion_ms": {"p50": e50, "max": e99}, "query_tokens": tokens, "peak_rss_bytes": rss, "terminal": [a.width, a.height]})
        );
    } else {
        println!(
            "keystroke → redraw ({}×{}): p50 {k50:.2} ms, p99 {k99:.2} ms",
            a.width, a.height
        );
        println!("Enter → expansion + hits on screen ({tokens}-token query): p50 {e50:.1} ms, max {e99:.1} ms");
        println!(
            "peak resident memory with model and index: {:.0} MB",
            rss as f64 / 1e6
        );
    }
}
