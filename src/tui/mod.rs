//! The terminal explorer: ratatui + crossterm on top of the engine. Keys and
//! results become [`action::Action`]s; the [`app::App`] turns them into
//! state and [`action::Effect`]s; this runtime carries effects out — model
//! work on blocking threads, long jobs as child processes through the task
//! runner — so the UI never waits on the model.

pub mod action;
pub mod app;
mod commands;
pub mod frontier;
pub mod keymap;
pub mod line_edit;
pub mod mouse;
pub mod theme;
pub mod views;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use crate::explore::{Explorer, Session};
use crate::tasks::TaskRunner;
use action::{Action, Effect};
use app::App;

/// What the explorer opens.
pub struct TuiOptions {
    pub model: String,
    pub index: Option<PathBuf>,
    pub dataset: Option<PathBuf>,
    pub theme: Option<String>,
    /// The LSR scorer behind every ranking.
    pub backend: crate::explore::Backend,
    /// The query prior (`None`: the model's own).
    pub prior: Option<crate::explore::QueryPrior>,
    /// The pseudo-relevance feedback (`None`: the model's own).
    pub feedback: Option<crate::explore::QueryFeedback>,
    /// How the hybrid ranking fuses LSR and BM25.
    pub fusion: crate::explore::Fusion,
    /// Queries through the model's inference-free query table.
    pub inference_free: bool,
    /// The second model of Compare's `families` preset (else config.toml's).
    pub second_model: Option<String>,
    /// Take mouse clicks and the wheel (off: the terminal keeps them).
    pub mouse: bool,
    /// Hits listed per query in Search.
    pub hits: usize,
}

/// User settings from `<config dir>/csplade/config.toml`; a key it does not
/// know is refused with its line, not ignored.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    theme: Option<String>,
    /// The Compare view's preset (remembered when changed there).
    compare_preset: Option<String>,
    /// The model the `families` preset compares with the open one.
    second_model: Option<String>,
}

impl Config {
    /// Parse config.toml's text; an error names the line and the key.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

fn config_file() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("csplade").join("config.toml"))
}

fn read_config() -> Result<Config> {
    Ok(config_file()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| Config::parse(&t))
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
    crate::explore::session::write_file(&path, toml::to_string(&table)?.as_bytes())?;
    Ok(())
}

fn log_path() -> PathBuf {
    crate::explore::session::log_path()
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

pub fn run(opts: TuiOptions) -> Result<()> {
    let theme = load_theme(opts.theme.as_deref())?;
    let mut session = Session::open(&opts.model, opts.dataset.clone(), opts.index.clone())?;
    session.backend = opts.backend;
    session.prior = opts.prior;
    session.feedback = opts.feedback;
    session.fusion = opts.fusion;
    session.inference_free = opts.inference_free;
    session.second_model = opts
        .second_model
        .clone()
        .or_else(|| read_config().ok().and_then(|c| c.second_model));
    let session = Arc::new(session);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut terminal = ratatui::try_init().context("opening the terminal")?;
    // Clicks and the wheel reach the explorer; `--no-mouse` leaves them to the
    // terminal (for selecting text with the mouse).
    let mouse = opts.mouse
        && crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture).is_ok();
    let result = rt.block_on(event_loop(&mut terminal, theme, session, opts.hits));
    if mouse {
        let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    }
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    theme: theme::Theme,
    session: Arc<Session>,
    hits: usize,
) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    let (task_tx, mut task_rx) = mpsc::unbounded_channel();
    let mut runner = TaskRunner::new(std::env::current_exe()?, task_tx);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    spawn_input(tx.clone(), stop.clone());
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
    let mut app = initial_app(theme, &session);
    app.hits = hits;
    // Load the model off the UI thread.
    {
        let (tx, session) = (tx.clone(), session.clone());
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Action::ModelReady(session.load_model()));
        });
    }
    let mut effects = if session.index_built() {
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
            perform(e, &mut app, &mut runner, &tx, &session);
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

/// Keys, clicks and resizes from the terminal, on a thread of their own
/// (until `stop`).
fn spawn_input(tx: mpsc::UnboundedSender<Action>, stop: Arc<std::sync::atomic::AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if crossterm::event::poll(std::time::Duration::from_millis(100)).unwrap_or(false) {
                let action = match crossterm::event::read() {
                    Ok(crossterm::event::Event::Key(k))
                        if k.kind == crossterm::event::KeyEventKind::Press =>
                    {
                        Some(Action::Key(k))
                    }
                    Ok(crossterm::event::Event::Mouse(m)) => Some(Action::Mouse(m)),
                    Ok(crossterm::event::Event::Resize(..)) => Some(Action::Resize),
                    _ => None,
                };
                if action.is_some_and(|a| tx.send(a).is_err()) {
                    break;
                }
            }
        }
    });
}

/// The explorer's state at start: remembered history and preset, and the
/// jobs it offers for this collection.
fn initial_app(theme: theme::Theme, session: &Session) -> App {
    let mut app = App::new(theme, keymap::Keymap::default_keymap());
    app.input = line_edit::LineEdit::with_history(crate::explore::session::query_history());
    if let Some(p) = read_config().ok().and_then(|c| c.compare_preset) {
        app.set_compare_preset(&p);
    }
    app.has_qrels = session.has_qrels();
    let tasks = session.tasks();
    app.index_task = Some(tasks.index);
    app.eval_task = Some(tasks.eval);
    app.quantize_task = Some(tasks.quantize);
    app.train_tasks = Some((tasks.adapt, tasks.contrastive));
    app.frontier.task = Some(tasks.frontier);
    log(&format!(
        "explorer: dataset {} index {}",
        session.dataset.display(),
        session.index_dir.display()
    ));
    app
}

/// Carry out one effect: start or cancel a job, or run engine work off the
/// UI thread (its result comes back as an action).
fn perform(
    e: Effect,
    app: &mut App,
    runner: &mut TaskRunner,
    tx: &mpsc::UnboundedSender<Action>,
    session: &Arc<Session>,
) {
    let blocking = |f: Box<dyn FnOnce(&Session) -> Action + Send>| {
        let (tx, session) = (tx.clone(), session.clone());
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(f(&session));
        });
    };
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
        Effect::OpenIndex => blocking(Box::new(|s| Action::IndexReady(s.open_index()))),
        Effect::RunQuery(text) => {
            if let Err(e) = crate::explore::session::remember_query(&text) {
                log(&format!("query history: {e:#}"));
            }
            let (ranking, hits, feedback_off) = (app.ranking, app.hits, app.feedback_off);
            spawn_engine(tx, session, move |ex| {
                let result = match feedback_off {
                    true => ex.without_feedback().query(&text, hits, ranking),
                    false => ex.query(&text, hits, ranking),
                };
                Action::QueryDone(result.map_err(|e| e.to_string()))
            })
        }
        Effect::LoadDetail(ordinal) => {
            let (q, fb) = app
                .result
                .as_ref()
                .map(|r| (r.vector.clone(), r.feedback_terms.terms.clone()))
                .unwrap_or_default();
            spawn_engine(tx, session, move |ex| {
                Action::DetailDone(ex.detail(&q, &fb, ordinal).map_err(|e| e.to_string()))
            });
        }
        Effect::ComputeFailures => spawn_engine(tx, session, |ex| {
            Action::FailuresDone(ex.failures().map_err(|e| e.to_string()))
        }),
        Effect::ExplainFailure(id) => spawn_engine(tx, session, move |ex| {
            Action::ExplanationDone(ex.explain_failure(&id).map_err(|e| e.to_string()))
        }),
        Effect::ExportFailures(rows) => blocking(Box::new(move |s| {
            Action::ExportDone(export_message(s.export_failures(&rows)))
        })),
        Effect::RefreshPartial => {
            let (tx, session) = (tx.clone(), session.clone());
            tokio::task::spawn_blocking(move || {
                if let Some((n, total)) = session.refresh_partial() {
                    let _ = tx.send(Action::PartialReady(n, total));
                }
            });
        }
        Effect::RunCompare(text, preset) => blocking(Box::new(move |s| {
            Action::CompareDone(s.compare(&text, &preset))
        })),
        Effect::RunCompareEncoders(text, specs) => blocking(Box::new(move |s| {
            Action::CompareDone(s.compare_specs(&text, specs))
        })),
        Effect::LoadFrontier => blocking(Box::new(|s| Action::FrontierDone(s.frontier()))),
        Effect::SaveComparePreset(name) => {
            if let Err(e) = save_config_value("compare_preset", &name) {
                log(&format!("saving the compare preset: {e:#}"));
            }
        }
    }
}

/// The status line for an export: the file names first (a narrow status
/// bar cuts the directory).
fn export_message(r: Result<(PathBuf, PathBuf)>) -> Result<String, String> {
    r.map(|(t, j)| {
        let name = |p: &std::path::Path| {
            p.file_name()
                .map_or(String::new(), |n| n.to_string_lossy().to_string())
        };
        let dir = t
            .parent()
            .map_or(String::new(), |d| d.display().to_string());
        format!("{} and {} in {dir}", name(&t), name(&j))
    })
    .map_err(|e| format!("{e:#}"))
}

/// Run engine work on a blocking thread and send its result back.
fn spawn_engine(
    tx: &mpsc::UnboundedSender<Action>,
    session: &Session,
    f: impl FnOnce(&Explorer) -> Action + Send + 'static,
) {
    let ex = session.explorer();
    let tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let action = match ex {
            Some(ex) => f(&ex),
            None => Action::QueryDone(Err("the model is still loading".into())),
        };
        let _ = tx.send(action);
    });
}
