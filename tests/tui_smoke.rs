//! End-to-end: the real binary in tmux on the real model — start, type a
//! query, see weighted expansion terms, open help, quit with status 0.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(session: &str, needle: &str, secs: u64) -> String {
    let t0 = Instant::now();
    loop {
        let screen = tmux(&["capture-pane", "-t", session, "-p"]);
        if screen.contains(needle) || t0.elapsed() > Duration::from_secs(secs) {
            return screen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start the explorer command `cmd` in a detached tmux session `width`
/// columns by 40 rows.
fn start(session: &str, cmd: &str, width: u16) {
    let width = width.to_string();
    tmux(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        &width,
        "-y",
        "40",
        cmd,
    ]);
}

/// Wait for the model to be loaded (the status bar says ready).
fn wait_until_ready(session: &str) {
    let screen = wait_for(session, "ready", 60);
    assert!(
        screen.contains("ready"),
        "the model never became ready:\n{screen}"
    );
}

/// Whether tmux is installed; without it the test is skipped (a failure
/// in CI, which installs it).
fn tmux_available(what: &str) -> bool {
    if Command::new("tmux").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CSPLADE_REQUIRE_DATA").is_err(),
        "tmux is required for the explorer smoke test in CI"
    );
    common::note_skip(&format!("{what}: tmux not installed"));
    false
}

const CP: &str = r#"{"_id":"a","title":"cp","text":"copy files and directories"}"#;
const LS: &str = r#"{"_id":"b","title":"ls","text":"list directory contents"}"#;

/// A small collection under `dir/tiny`: `documents` (JSON lines), the
/// query "copy files" judged relevant to `a`.
fn man_pages(dir: &std::path::Path, documents: &[&str]) -> std::path::PathBuf {
    let data = dir.join("tiny");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    let corpus: String = documents.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(data.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(
        data.join("queries.jsonl"),
        "{\"_id\":\"q\",\"text\":\"copy files\"}\n",
    )
    .unwrap();
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq\ta\t1\n",
    )
    .unwrap();
    data
}

#[test]
fn explorer_starts_expands_a_query_shows_help_and_quits_cleanly() {
    if !tmux_available("explorer smoke test") {
        return;
    }
    common::base_model(); // fetch the model first (cached), outside the timed screen waits
    let tmp = tempfile::tempdir().unwrap();
    let data = man_pages(tmp.path(), &[CP, LS]);
    let exit_file = tmp.path().join("exit");
    let session = format!("csplade-smoke-{}", std::process::id());
    // A config directory of its own: the user's remembered settings stay out.
    let cmd = format!(
        "XDG_CONFIG_HOME={} {} tui --dataset {} --index {}; echo $? > {}",
        tmp.path().join("config").display(),
        env!("CARGO_BIN_EXE_csplade"),
        data.display(),
        tmp.path().join("idx").display(),
        exit_file.display()
    );
    start(&session, &cmd, 140);
    let screen = wait_for(&session, "Query", 20);
    assert!(screen.contains("Search"), "{screen}");
    wait_until_ready(&session);
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "what causes hypertension in adults",
        "Enter",
    ]);
    let screen = wait_for(&session, "Expansion (", 60);
    assert!(
        screen.contains("Expansion ("),
        "no expansion on screen:\n{screen}"
    );
    assert!(screen.contains("●"), "no in-text term mark:\n{screen}");
    assert!(screen.contains("█"), "no weight bars:\n{screen}");
    // The query is edited mid-line: to its start, a word typed there, run.
    tmux(&["send-keys", "-t", &session, "C-a"]);
    tmux(&["send-keys", "-t", &session, "-l", "why "]);
    // (▏ is the cursor, left just after the inserted word.)
    let screen = wait_for(&session, "why ▏what causes hypertension in adults", 10);
    assert!(
        screen.contains("why ▏what causes hypertension in adults"),
        "edit at the cursor:\n{screen}"
    );
    tmux(&["send-keys", "-t", &session, "Enter"]);
    // Let the query (and any index work) settle, so that nothing but the
    // resize itself can redraw the screen.
    std::thread::sleep(Duration::from_secs(3));
    // A narrower window is redrawn at once, with no key pressed: the query
    // box's border closes at the new right edge (a clipped old frame would
    // end mid-border).
    tmux(&["resize-window", "-t", &session, "-x", "80", "-y", "24"]);
    let redrawn = |screen: &str| {
        screen
            .lines()
            .any(|l| l.contains("┌ Query") && l.trim_end().ends_with('┐'))
    };
    let t0 = Instant::now();
    let mut screen = tmux(&["capture-pane", "-t", &session, "-p"]);
    while !redrawn(&screen) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        screen = tmux(&["capture-pane", "-t", &session, "-p"]);
    }
    assert!(redrawn(&screen), "not redrawn at 80×24:\n{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    tmux(&["resize-window", "-t", &session, "-x", "140", "-y", "40"]);
    // Compare: the default preset puts causal, echo and bi side by side.
    tmux(&["send-keys", "-t", &session, "Tab"]);
    wait_for(&session, "Compare", 10);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    // The comparison's columns, not its status line: the index build may end
    // meanwhile and re-run the query, whose status then replaces it.
    let screen = wait_for(&session, "┌ bi ", 120);
    assert!(screen.contains("┌ bi "), "no comparison:\n{screen}");
    for column in ["┌ causal ", "┌ echo ", "┌ bi "] {
        assert!(screen.contains(column), "no {column} column:\n{screen}");
    }
    // Echo and Bi weigh the query's terms differently from causal.
    let cosines: Vec<&str> = screen
        .lines()
        .filter(|l| l.starts_with("│echo") || l.starts_with("│bi "))
        .filter_map(|l| l.split_whitespace().nth(7))
        .collect();
    assert_eq!(cosines.len(), 2, "{screen}");
    eprintln!("cosine with causal: {cosines:?}");
    assert!(
        cosines
            .iter()
            .all(|c| c.parse::<f64>().is_ok_and(|x| x < 0.999)),
        "{cosines:?}\n{screen}"
    );
    frontier_flow(&session);
    tmux(&["send-keys", "-t", &session, "F1"]);
    // Wait for the line itself: a capture can catch a frame half written,
    // the popup's title drawn and its rows not yet.
    let screen = wait_for(&session, "Open or close help", 10);
    assert!(screen.contains("Open or close help"), "{screen}");
    tmux(&["send-keys", "-t", &session, "C-c"]);
    let t0 = Instant::now();
    while !exit_file.exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .output();
    let status = std::fs::read_to_string(&exit_file).unwrap_or_default();
    assert_eq!(status.trim(), "0", "explorer exit status");
}

/// Frontier (two tabs on from Compare): `r` computes the precisions'
/// trade-off as a background task (cached under the data home, keyed by
/// corpus and reference, so a rerun reads it back), `a` switches the cost
/// axis, and Enter opens a point in Compare beside the reference.
fn frontier_flow(session: &str) {
    tmux(&["send-keys", "-t", session, "Tab"]);
    wait_for(session, "Failures", 10);
    tmux(&["send-keys", "-t", session, "Tab"]);
    let screen = wait_for(session, "Frontier", 10);
    assert!(screen.contains("Frontier"), "{screen}");
    tmux(&["send-keys", "-t", session, "r"]);
    let screen = wait_for(session, "Pareto-optimal", 240);
    assert!(screen.contains("Pareto-optimal"), "no frontier:\n{screen}");
    for label in ["f32", "f16", "q8_0", "q4_0"] {
        assert!(screen.contains(label), "no {label} point:\n{screen}");
    }
    assert!(screen.contains("1 query · pool depth 10"), "{screen}");
    tmux(&["send-keys", "-t", session, "a"]);
    let screen = wait_for(session, "document encoding", 10);
    assert!(screen.contains("against document encoding"), "{screen}");
    tmux(&["send-keys", "-t", session, "Down"]);
    tmux(&["send-keys", "-t", session, "Enter"]);
    let screen = wait_for(session, "compared 2 encoders", 120);
    // Compare's columns drop the shared model name: f32 (the reference) and f16.
    for column in ["┌ f32 ", "┌ f16 "] {
        assert!(screen.contains(column), "no {column} column:\n{screen}");
    }
}

/// A SPLADE checkpoint (sentence-transformers' layout) beside the default
/// CSPLADE model in Compare's `families` preset, both chosen in config.toml:
/// two vocabularies side by side, lined up by surface text.
#[test]
fn compare_sets_a_splade_model_beside_the_default() {
    if !tmux_available("explorer families test") {
        return;
    }
    common::base_model();
    let tmp = tempfile::tempdir().unwrap();
    let data = man_pages(tmp.path(), &[CP]);
    let splade = common::bert_splade();
    let config = tmp.path().join("config/csplade");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        format!(
            "compare_preset = \"families\"\nsecond_model = {:?}\n",
            splade.to_str().unwrap()
        ),
    )
    .unwrap();
    let exit_file = tmp.path().join("exit");
    let session = format!("csplade-families-{}", std::process::id());
    let cmd = format!(
        "XDG_CONFIG_HOME={} {} tui --dataset {} --index {}; echo $? > {}",
        tmp.path().join("config").display(),
        env!("CARGO_BIN_EXE_csplade"),
        data.display(),
        tmp.path().join("idx").display(),
        exit_file.display()
    );
    start(&session, &cmd, 160);
    wait_until_ready(&session);
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "high blood pressure in adults",
        "Enter",
    ]);
    let screen = wait_for(&session, "Expansion (", 60);
    assert!(screen.contains("Expansion ("), "{screen}");
    tmux(&["send-keys", "-t", &session, "Tab"]);
    wait_for(&session, "families", 10);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let screen = wait_for(&session, "by surface text", 60);
    assert!(
        screen.contains("by surface text"),
        "no cross-vocabulary comparison:\n{screen}"
    );
    assert!(
        screen.contains("bert-splade"),
        "no SPLADE column:\n{screen}"
    );
    assert!(screen.contains("default"), "no CSPLADE column:\n{screen}");
    tmux(&["send-keys", "-t", &session, "C-c"]);
    let t0 = Instant::now();
    while !exit_file.exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .output();
    assert_eq!(
        std::fs::read_to_string(&exit_file)
            .unwrap_or_default()
            .trim(),
        "0"
    );
}

/// `z` in Tasks saves a q8_0 GGUF variant of the default model (base with
/// its trained adapter merged, shifts and encoding included) into the data
/// directory; the variant then loads on its own and encodes with Echo.
#[test]
fn z_saves_a_q8_0_variant_of_the_default_model() {
    if !tmux_available("explorer quantize test") {
        return;
    }
    common::base_model();
    let tmp = tempfile::tempdir().unwrap();
    // A data directory of its own, holding only the fetched base model.
    let home = tmp.path().join("home");
    let models = home.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let base = csplade::model::fetch::base_model_path().unwrap();
    let name = base.file_name().unwrap().to_string_lossy().to_string();
    std::os::unix::fs::symlink(&base, models.join(&name)).unwrap();
    std::fs::copy(
        base.with_file_name(format!("{name}.sha256")),
        models.join(format!("{name}.sha256")),
    )
    .unwrap();
    let data = man_pages(tmp.path(), &[CP, LS]);
    let session = format!("csplade-quantize-{}", std::process::id());
    let cmd = format!(
        "CSPLADE_HOME={} XDG_CONFIG_HOME={} {} tui --dataset {} --index {}",
        home.display(),
        tmp.path().join("config").display(),
        env!("CARGO_BIN_EXE_csplade"),
        data.display(),
        tmp.path().join("idx").display(),
    );
    start(&session, &cmd, 140);
    wait_until_ready(&session);
    // Tasks is the last view: one step back from Search.
    tmux(&["send-keys", "-t", &session, "BTab"]);
    wait_for(&session, "Tasks", 10);
    tmux(&["send-keys", "-t", &session, "z"]);
    let variant = models.join("variant-q8_0.gguf");
    let t0 = Instant::now();
    let mut screen = String::new();
    while t0.elapsed() < Duration::from_secs(120) {
        screen = tmux(&["capture-pane", "-t", &session, "-p"]);
        if screen.contains("quantize q8_0 — done") || screen.contains("failed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux(&["kill-session", "-t", &session]);
    assert!(
        !screen.contains("failed") && variant.is_file(),
        "no variant written:\n{screen}"
    );
    let m = csplade::model::load(variant.to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
    let meta = m.adapter.clone().expect("the variant records its encoding");
    assert_eq!(meta.variant, csplade::encode::Variant::Echo);
    assert!(m.llama.term_shift.is_some(), "the shifts were dropped");
}

/// A result list longer than the screen scrolls to its last hit with End,
/// and a failure opened from Failures lands on its relevant document, here
/// ranked 45th by LSR, scrolled into view.
#[test]
fn a_long_hit_list_scrolls_to_its_end_and_a_failure_opens_at_its_relevant_document() {
    if !tmux_available("explorer scrolling test") {
        return;
    }
    common::base_model();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("words");
    const WORDS: &[&str] = &[
        "the", "otter", "river", "thin", "bank", "stone", "water", "fish", "night", "other",
        "inner", "on", "and", "theory", "heat",
    ];
    common::RandomCorpus {
        words: WORDS,
        seed: 3,
        min_words: 3,
        spread: 20,
        query_every: 1000,
        titled: false,
    }
    .write(&data, 90);
    let query = "otter river stone";
    std::fs::write(
        data.join("queries.jsonl"),
        format!("{{\"_id\":\"q0\",\"text\":\"{query}\"}}\n"),
    )
    .unwrap();
    let idx = tmp.path().join("idx");
    let bin = env!("CARGO_BIN_EXE_csplade");
    let built = Command::new(bin)
        .args(["index", "--model", "default", "--corpus"])
        .arg(&data)
        .arg("--out")
        .arg(&idx)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    // LSR's own ranking, from the command line: the 45th hit is judged the
    // one relevant document, so LSR misses it and Failures lists the query.
    let v = common::json_output(
        Command::new(bin)
            .args(["search", "--k", "200", "--json", "--index"])
            .arg(&idx)
            .arg(query),
    );
    let hits: Vec<String> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["doc_id"].as_str().unwrap().to_string())
        .collect();
    assert!(hits.len() > 45, "only {} hits", hits.len());
    let (n, relevant) = (hits.len(), hits[44].clone());
    std::fs::write(
        data.join("qrels/test.tsv"),
        format!("query-id\tcorpus-id\tscore\nq0\t{relevant}\t1\n"),
    )
    .unwrap();
    let session = format!("csplade-scroll-{}", std::process::id());
    let cmd = format!(
        "XDG_CONFIG_HOME={} {bin} tui --dataset {} --index {}",
        tmp.path().join("config").display(),
        data.display(),
        idx.display(),
    );
    start(&session, &cmd, 140);
    wait_until_ready(&session);
    tmux(&["send-keys", "-t", &session, query, "Enter"]);
    let first = format!("(1 of {n},");
    let screen = wait_for(&session, &first, 60);
    assert!(screen.contains(&first), "no hits:\n{screen}");
    // Out of the query box, End selects the last hit and scrolls to it.
    tmux(&["send-keys", "-t", &session, "Escape"]);
    tmux(&["send-keys", "-t", &session, "End"]);
    let last = format!("Why {} matched", hits[n - 1]);
    let screen = wait_for(&session, &last, 20);
    let closing = tmux(&["capture-pane", "-t", &session, "-p"]);
    assert!(
        screen.contains(&format!("({n} of {n},")) && screen.contains(&last),
        "not at the last hit:\n{closing}"
    );
    assert!(
        screen.lines().any(|l| l.contains(&format!("│{n} "))),
        "the last hit's row is not on screen:\n{screen}"
    );
    // Failures (Search → Compare → Failures), computed with r, lists the
    // query; Enter opens it in Search with its relevant document, 45th,
    // selected and shown.
    tmux(&["send-keys", "-t", &session, "Tab"]);
    tmux(&["send-keys", "-t", &session, "Tab"]);
    wait_for(&session, "Press r", 10);
    tmux(&["send-keys", "-t", &session, "r"]);
    let screen = wait_for(&session, "q0", 60);
    assert!(screen.contains(query), "no failure listed:\n{screen}");
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let opened = format!("Why {relevant} matched");
    let screen = wait_for(&session, &opened, 60);
    tmux(&["kill-session", "-t", &session]);
    assert!(
        screen.contains(&opened) && screen.contains(&format!("(45 of {n},")),
        "the relevant document is not selected:\n{screen}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.contains("│45 ") && l.contains(&relevant)),
        "its row is not on screen:\n{screen}"
    );
}
