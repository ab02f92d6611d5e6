//! The terminal explorer: ratatui + crossterm on top of the engine. Keys and
//! results become [`action::Action`]s; the [`app::App`] turns them into
//! state and [`action::Effect`]s; this runtime carries effects out — model
//! work on blocking threads, long jobs as child processes through the task
//! runner — so the UI never waits on the model.

pub mod action;
pub mod app;
pub mod keymap;
pub mod theme;
pub mod views;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use crate::data::beir;
use crate::explore::Explorer;
use crate::model::{fetch::data_dir, LoadedModel};
use crate::search::LsrIndex;
use crate::tasks::{TaskRunner, TaskSpec};
use action::{Action, Effect};
use app::App;

/// What the explorer opens.
pub struct TuiOptions {
    pub model: String,
    pub index: Option<PathBuf>,
    pub dataset: Option<PathBuf>,
    pub theme: Option<String>,
}

/// User settings from `<config dir>/csplade/config.toml`.
#[derive(serde::Deserialize, Default)]
struct Config {
    theme: Option<String>,
    /// The Compare view's preset (remembered when changed there).
    compare_preset: Option<String>,
}

fn config_file() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("csplade").join("config.toml"))
}

fn read_config() -> Result<Config> {
    Ok(config_file()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| toml::from_str(&t))
        .transpose()
        .context("reading config.toml")?
        .unwrap_or_default())
}

/// Set one key of config.toml, keeping the rest (written atomically).
fn save_config_value(key: &str, value: &str) -> Result<()> {
    let Some(path) = config_file() else {
        return Ok(());
    };
    let mut table: toml::Table = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.parse())
        .transpose()
        .context("reading config.toml")?
        .unwrap_or_default();
    table.insert(key.to_string(), toml::Value::String(value.to_string()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, toml::to_string(&table)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

fn log_path() -> PathBuf {
    data_dir().join("logs").join("explorer.log")
}

/// Append a line to the explorer's log file (never the terminal).
pub fn log(line: &str) {
    static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);
    let Ok(mut f) = FILE.lock() else { return };
    if f.is_none() {
        let p = log_path();
        if let Some(d) = p.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        *f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok();
    }
    if let Some(f) = f.as_mut() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let _ = writeln!(f, "{t} {line}");
    }
}

/// The theme: `--theme`, else config.toml's, else dark; then the user's
/// `theme.toml` overrides the fields it sets.
fn load_theme(cli: Option<&str>) -> Result<theme::Theme> {
    let cfg_dir = dirs::config_dir().map(|d| d.join("csplade"));
    let cfg = read_config()?;
    let name = cli
        .map(str::to_string)
        .or(cfg.theme)
        .unwrap_or_else(|| "dark".into());
    let mut th = theme::Theme::named(&name)?;
    if let Some(user) = cfg_dir
        .map(|d| d.join("theme.toml"))
        .filter(|p| p.is_file())
    {
        let text = std::fs::read_to_string(&user)?;
        th = th
            .overlay(&text)
            .with_context(|| format!("reading {}", user.display()))?;
    }
    Ok(th)
}

/// The demo collection (man pages), created on first use.
pub fn demo_dataset() -> Result<PathBuf> {
    let dir = data_dir().join("demo").join("manpages");
    if !dir.join("corpus.jsonl").is_file() {
        let opts = crate::data::manpages::ManpageOptions::default();
        crate::data::manpages::convert(&opts, &dir).context("building the man-page demo corpus")?;
    }
    Ok(dir)
}

struct Shared {
    model: Option<Arc<LoadedModel>>,
    partial: Option<Arc<crate::search::PartialIndex>>,
    corpus: Arc<Vec<beir::Document>>,
    /// Models of Compare's encoders, by model spec and precision, loaded on
    /// first use (encoders differing only in variant or head share one).
    compare_models: Vec<(String, Arc<LoadedModel>)>,
    spec: String,
    index: Option<Arc<LsrIndex>>,
    queries: Arc<Vec<beir::Query>>,
    qrels: Option<Arc<beir::Qrels>>,
}

impl Shared {
    fn explorer(&self) -> Option<Explorer> {
        let model = self.model.clone()?;
        Some(Explorer {
            config: self
                .index
                .as_ref()
                .map(|i| i.meta.encoder_config())
                .unwrap_or_else(|| {
                    // No index yet: encode the way the model was trained.
                    let (variant, head) = model.trained_encoding();
                    crate::encode::EncoderConfig {
                        variant,
                        head,
                        ..Default::default()
                    }
                }),
            index: self.index.clone(),
            partial: self.partial.clone(),
            corpus: self.corpus.clone(),
            queries: self.queries.clone(),
            qrels: self.qrels.clone(),
            model,
        })
    }
}

pub fn run(opts: TuiOptions) -> Result<()> {
    let theme = load_theme(opts.theme.as_deref())?;
    let dataset = match &opts.dataset {
        Some(d) => d.clone(),
        None => demo_dataset()?,
    };
    let index_dir = match &opts.index {
        Some(i) => i.clone(),
        None => {
            let name = dataset
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let fp = crate::index::build::fingerprint(&dataset.join("corpus.jsonl"))?;
            data_dir().join("indexes").join(format!(
                "explorer-{name}-{}-{}",
                &fp[..12],
                crate::model::spec_tag(&opts.model)
            ))
        }
    };
    let queries = beir::read_queries(&dataset).unwrap_or_default();
    let qrels = beir::read_qrels(&dataset, "test").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut terminal = ratatui::try_init().context("opening the terminal")?;
    let result = rt.block_on(event_loop(
        &mut terminal,
        opts,
        theme,
        dataset,
        index_dir,
        queries,
        qrels,
    ));
    ratatui::restore();
    result
}

#[allow(clippy::too_many_arguments)]
async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    opts: TuiOptions,
    theme: theme::Theme,
    dataset: PathBuf,
    index_dir: PathBuf,
    queries: Vec<beir::Query>,
    qrels: Option<beir::Qrels>,
) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    let (task_tx, mut task_rx) = mpsc::unbounded_channel();
    let mut runner = TaskRunner::new(std::env::current_exe()?, task_tx);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let tx = tx.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if crossterm::event::poll(std::time::Duration::from_millis(100)).unwrap_or(false) {
                    if let Ok(crossterm::event::Event::Key(k)) = crossterm::event::read() {
                        if k.kind == crossterm::event::KeyEventKind::Press
                            && tx.send(Action::Key(k)).is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
    }
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = task_rx.recv().await {
                if tx.send(Action::Task(ev)).is_err() {
                    break;
                }
            }
        });
    }
    let shared = Arc::new(Mutex::new(Shared {
        model: None,
        compare_models: Vec::new(),
        spec: opts.model.clone(),
        partial: None,
        corpus: Arc::new(beir::read_corpus(&dataset).unwrap_or_default()),
        index: None,
        queries: Arc::new(queries),
        qrels: qrels.clone().map(Arc::new),
    }));
    let mut app = App::new(theme, keymap::Keymap::default_keymap());
    if let Some(p) = read_config().ok().and_then(|c| c.compare_preset) {
        app.set_compare_preset(&p);
    }
    app.has_qrels = qrels.is_some();
    app.index_task = Some(TaskSpec {
        title: format!(
            "index {}",
            dataset
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        ),
        args: vec![
            "index".into(),
            "--corpus".into(),
            dataset.display().to_string(),
            "--out".into(),
            index_dir.display().to_string(),
            "--model".into(),
            opts.model.clone(),
        ],
    });
    app.eval_task = Some(TaskSpec {
        title: "eval LSR vs BM25".into(),
        args: vec![
            "eval".into(),
            "--dataset".into(),
            dataset.display().to_string(),
            "--index".into(),
            index_dir.display().to_string(),
            "--model".into(),
            opts.model.clone(),
        ],
    });
    app.quantize_task = Some(TaskSpec {
        title: "quantize q8_0".into(),
        args: vec![
            "quantize".into(),
            "--model".into(),
            opts.model.clone(),
            "--precision".into(),
            "q8_0".into(),
            "--out".into(),
            data_dir()
                .join("models")
                .join("variant-q8_0.gguf")
                .display()
                .to_string(),
        ],
    });
    let train = |phase: &str, steps: &str| TaskSpec {
        title: format!("train {phase}"),
        args: vec![
            "train".into(),
            phase.into(),
            "--out".into(),
            data_dir()
                .join("runs")
                .join(format!("explorer-{phase}"))
                .display()
                .to_string(),
            "--steps".into(),
            steps.into(),
            "--resume-or-start".into(),
        ],
    };
    app.train_tasks = Some((train("adapt", "50"), train("contrastive", "100")));
    log(&format!(
        "explorer: dataset {} index {}",
        dataset.display(),
        index_dir.display()
    ));
    // Load the model off the UI thread.
    {
        let (tx, shared, spec) = (tx.clone(), shared.clone(), opts.model.clone());
        tokio::task::spawn_blocking(move || {
            let r = crate::model::load(&spec, &candle_core::Device::Cpu);
            let msg = match r {
                Ok(m) => {
                    let desc = format!(
                        "model {} ready ({} layers, vocabulary {})",
                        m.identity.id,
                        m.config().num_hidden_layers,
                        m.config().vocab_size
                    );
                    if let Ok(mut s) = shared.lock() {
                        s.model = Some(Arc::new(m));
                    }
                    Ok(desc)
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(Action::ModelReady(msg));
        });
    }
    let mut effects = if index_dir.join(crate::index::meta::META_FILE).is_file() {
        vec![Effect::OpenIndex]
    } else {
        app.index_task
            .clone()
            .map(Effect::StartTask)
            .into_iter()
            .collect()
    };
    loop {
        for e in effects.drain(..) {
            match e {
                Effect::Quit => {}
                Effect::StartTask(spec) => {
                    log(&format!("task start: {}", spec.args.join(" ")));
                    let id = runner.spawn(spec.clone());
                    app.add_task(id, spec);
                }
                Effect::CancelTask(id) => {
                    runner.cancel(id);
                }
                Effect::OpenIndex => {
                    let (tx, shared, dir) = (tx.clone(), shared.clone(), index_dir.clone());
                    let data = dataset.clone();
                    tokio::task::spawn_blocking(move || {
                        // An index of another corpus would name the wrong documents.
                        let r = LsrIndex::open(&dir)
                            .and_then(|i| i.meta.check_corpus(&dir, &data).map(|_| i))
                            .map(|i| {
                                let n = i.len();
                                if let Ok(mut s) = shared.lock() {
                                    s.index = Some(Arc::new(i));
                                    s.partial = None;
                                }
                                n
                            });
                        let _ = tx.send(Action::IndexReady(r.map_err(|e| e.to_string())));
                    });
                }
                Effect::RunQuery(text) => spawn_engine(&tx, &shared, move |ex| {
                    Action::QueryDone(ex.query(&text, 50).map_err(|e| e.to_string()))
                }),
                Effect::LoadDetail(ordinal) => {
                    let q = app
                        .result
                        .as_ref()
                        .map(|r| r.vector.clone())
                        .unwrap_or_default();
                    spawn_engine(&tx, &shared, move |ex| {
                        Action::DetailDone(ex.detail(&q, ordinal).map_err(|e| e.to_string()))
                    });
                }
                Effect::ComputeFailures => spawn_engine(&tx, &shared, |ex| {
                    Action::FailuresDone(ex.failures().map_err(|e| e.to_string()))
                }),
                Effect::RefreshPartial => {
                    let (tx, shared, dir) = (tx.clone(), shared.clone(), index_dir.clone());
                    tokio::task::spawn_blocking(move || {
                        let Ok(vectors) = crate::index::build::read_partial(&dir) else {
                            return;
                        };
                        let Ok(mut s) = shared.lock() else { return };
                        let (Some(vocab), total) = (
                            s.model.as_ref().map(|m| m.config().vocab_size),
                            s.corpus.len(),
                        ) else {
                            return;
                        };
                        let p = crate::search::PartialIndex::new(vectors, vocab, total);
                        let n = p.len();
                        s.partial = Some(Arc::new(p));
                        let _ = tx.send(Action::PartialReady(n, total));
                    });
                }
                Effect::RunCompare(text, preset) => {
                    let (tx, shared) = (tx.clone(), shared.clone());
                    tokio::task::spawn_blocking(move || {
                        let _ = tx.send(Action::CompareDone(compare(&shared, &text, &preset)));
                    });
                }
                Effect::SaveComparePreset(name) => {
                    if let Err(e) = save_config_value("compare_preset", &name) {
                        log(&format!("saving the compare preset: {e:#}"));
                    }
                }
            }
        }
        if app.quit {
            break;
        }
        terminal.draw(|f| views::draw(f, &app))?;
        let Some(action) = rx.recv().await else { break };
        if let Action::Task(ev) = &action {
            log(&format!("task event: {ev:?}"));
        }
        effects = app.update(action);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Load any missing model of the preset's encoders, then compare `text`
/// across them.
fn compare(
    shared: &Arc<Mutex<Shared>>,
    text: &str,
    preset: &str,
) -> Result<crate::explore::Comparison, String> {
    let (spec, main, cached) = {
        let s = shared.lock().map_err(|e| e.to_string())?;
        (s.spec.clone(), s.model.clone(), s.compare_models.clone())
    };
    let main = main.ok_or("the model is still loading")?;
    let specs = crate::compare::preset(preset, &spec, main.trained_encoding())
        .ok_or_else(|| format!("unknown compare preset {preset:?}"))?;
    let key = |s: &crate::compare::EncoderSpec| format!("{} {}", s.model, s.precision);
    let mut models = cached;
    let mut encoders = Vec::new();
    for s in specs {
        let k = key(&s);
        let m = match models.iter().find(|(mk, _)| *mk == k) {
            Some((_, m)) => m.clone(),
            None if s.model == spec && s.precision == crate::quant::Precision::F32 => main.clone(),
            None => {
                let m = Arc::new(
                    crate::compare::load(&s, &candle_core::Device::Cpu)
                        .map_err(|e| e.to_string())?,
                );
                models.push((k, m.clone()));
                m
            }
        };
        encoders.push((s, m));
    }
    let ex = {
        let mut s = shared.lock().map_err(|e| e.to_string())?;
        s.compare_models = models;
        s.explorer()
    };
    let ex = ex.ok_or("the model is still loading")?;
    ex.compare(text, &encoders).map_err(|e| e.to_string())
}

/// Run engine work on a blocking thread and send its result back.
fn spawn_engine(
    tx: &mpsc::UnboundedSender<Action>,
    shared: &Arc<Mutex<Shared>>,
    f: impl FnOnce(&Explorer) -> Action + Send + 'static,
) {
    let ex = shared.lock().ok().and_then(|s| s.explorer());
    let tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let action = match ex {
            Some(ex) => f(&ex),
            None => Action::QueryDone(Err("the model is still loading".into())),
        };
        let _ = tx.send(action);
    });
}
