//! Background jobs: each runs as a child process of the same binary with
//! `--progress-json`, so a crash or a kill never takes the caller down. The
//! runner turns the child's JSON lines into [`TaskEvent`]s keyed by task id,
//! keeps stderr as log lines, and cancels by killing the child.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

pub type TaskId = u32;

/// What a task reports.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskEvent {
    Started {
        id: TaskId,
        title: String,
    },
    Progress {
        id: TaskId,
        done: f64,
        total: f64,
        rate: f64,
        unit: String,
        eta_s: f64,
    },
    Phase {
        id: TaskId,
        name: String,
    },
    /// A training step's loss (for the live chart).
    Loss {
        id: TaskId,
        step: u64,
        loss: f64,
    },
    Log {
        id: TaskId,
        line: String,
    },
    Succeeded {
        id: TaskId,
    },
    Failed {
        id: TaskId,
        error: String,
    },
    Canceled {
        id: TaskId,
    },
}

impl TaskEvent {
    pub fn id(&self) -> TaskId {
        match self {
            TaskEvent::Started { id, .. }
            | TaskEvent::Progress { id, .. }
            | TaskEvent::Phase { id, .. }
            | TaskEvent::Loss { id, .. }
            | TaskEvent::Log { id, .. }
            | TaskEvent::Succeeded { id }
            | TaskEvent::Failed { id, .. }
            | TaskEvent::Canceled { id } => *id,
        }
    }
}

/// A job to run: a title and the csplade arguments (`--progress-json` is added).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub title: String,
    pub args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Wire {
    Start {},
    Progress {
        done: f64,
        total: f64,
        #[serde(default)]
        tokens_per_s: Option<f64>,
        #[serde(default)]
        docs_per_s: Option<f64>,
        #[serde(default)]
        eta_s: f64,
    },
    Phase {
        name: String,
    },
    Step {
        step: u64,
        loss: f64,
    },
    Done {},
}

/// Parse one JSON progress line of a child.
pub fn parse_line(id: TaskId, line: &str) -> TaskEvent {
    match serde_json::from_str::<Wire>(line) {
        Ok(Wire::Progress {
            done,
            total,
            tokens_per_s,
            docs_per_s,
            eta_s,
        }) => {
            let (rate, unit) = match (tokens_per_s, docs_per_s) {
                (Some(t), _) => (t, "tokens/s".to_string()),
                (None, Some(d)) => (d, "docs/s".to_string()),
                _ => (0.0, String::new()),
            };
            TaskEvent::Progress {
                id,
                done,
                total,
                rate,
                unit,
                eta_s,
            }
        }
        Ok(Wire::Phase { name }) => TaskEvent::Phase { id, name },
        Ok(Wire::Step { step, loss }) => TaskEvent::Loss { id, step, loss },
        Ok(Wire::Start {}) | Ok(Wire::Done {}) | Err(_) => TaskEvent::Log {
            id,
            line: line.to_string(),
        },
    }
}

pub struct TaskRunner {
    exe: PathBuf,
    next: TaskId,
    cancel: HashMap<TaskId, oneshot::Sender<()>>,
    events: mpsc::UnboundedSender<TaskEvent>,
}

impl TaskRunner {
    /// Run children of `exe` (normally `std::env::current_exe()`).
    pub fn new(exe: PathBuf, events: mpsc::UnboundedSender<TaskEvent>) -> Self {
        Self {
            exe,
            next: 1,
            cancel: HashMap::new(),
            events,
        }
    }

    /// Start a job on the current tokio runtime; returns its id.
    pub fn spawn(&mut self, spec: TaskSpec) -> TaskId {
        let id = self.next;
        self.next += 1;
        let (cancel_tx, mut cancel_rx) = oneshot::channel();
        self.cancel.insert(id, cancel_tx);
        let tx = self.events.clone();
        let exe = self.exe.clone();
        tokio::spawn(async move {
            let _ = tx.send(TaskEvent::Started {
                id,
                title: spec.title.clone(),
            });
            let child = tokio::process::Command::new(&exe)
                .args(&spec.args)
                .arg("--progress-json")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(TaskEvent::Failed {
                        id,
                        error: format!("could not start {}: {e}", exe.display()),
                    });
                    return;
                }
            };
            if let Some(out) = child.stdout.take() {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(out).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        let _ = tx.send(parse_line(id, &l));
                    }
                });
            }
            let mut last_err = String::new();
            if let Some(err) = child.stderr.take() {
                let tx = tx.clone();
                let mut lines = BufReader::new(err).lines();
                loop {
                    tokio::select! {
                        l = lines.next_line() => match l {
                            Ok(Some(l)) => {
                                last_err = l.clone();
                                let _ = tx.send(TaskEvent::Log { id, line: l });
                            }
                            _ => break,
                        },
                        _ = &mut cancel_rx => {
                            let _ = child.kill().await;
                            let _ = tx.send(TaskEvent::Canceled { id });
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                status = child.wait() => {
                    let ev = match status {
                        Ok(s) if s.success() => TaskEvent::Succeeded { id },
                        Ok(s) => TaskEvent::Failed { id, error: if last_err.is_empty() { format!("exited with {s}") } else { last_err } },
                        Err(e) => TaskEvent::Failed { id, error: e.to_string() },
                    };
                    let _ = tx.send(ev);
                }
                _ = &mut cancel_rx => {
                    let _ = child.kill().await;
                    let _ = tx.send(TaskEvent::Canceled { id });
                }
            }
        });
        id
    }

    /// Kill a running job (it reports `Canceled`).
    pub fn cancel(&mut self, id: TaskId) -> bool {
        self.cancel.remove(&id).is_some_and(|c| c.send(()).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_build_progress_lines() {
        let e = parse_line(
            3,
            r#"{"event":"progress","done":64,"total":100,"tokens_done":1,"tokens_total":2,"docs_per_s":1.5,"tokens_per_s":400.0,"eta_s":12.0}"#,
        );
        assert_eq!(
            e,
            TaskEvent::Progress {
                id: 3,
                done: 64.0,
                total: 100.0,
                rate: 400.0,
                unit: "tokens/s".into(),
                eta_s: 12.0
            }
        );
        assert_eq!(
            parse_line(3, r#"{"event":"phase","name":"BM25 index"}"#),
            TaskEvent::Phase {
                id: 3,
                name: "BM25 index".into()
            }
        );
        assert!(matches!(parse_line(3, "not json"), TaskEvent::Log { .. }));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_child_reports_success_failure_and_cancel() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut r = TaskRunner::new(PathBuf::from("/bin/sh"), tx);
        let ok = r.spawn(TaskSpec {
            title: "ok".into(),
            args: vec![
                "-c".into(),
                "echo '{\"event\":\"phase\",\"name\":\"x\"}'; exit 0".into(),
                "sh".into(),
            ],
        });
        let bad = r.spawn(TaskSpec {
            title: "bad".into(),
            args: vec!["-c".into(), "echo boom >&2; exit 3".into(), "sh".into()],
        });
        let slow = r.spawn(TaskSpec {
            title: "slow".into(),
            args: vec!["-c".into(), "sleep 30".into(), "sh".into()],
        });
        let mut finished = HashMap::new();
        let mut saw_phase = false;
        let mut canceled = false;
        while finished.len() < 3 {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
                .await
                .expect("event")
                .expect("open");
            match &ev {
                TaskEvent::Phase { id, .. } if *id == ok => saw_phase = true,
                TaskEvent::Started { id, .. } if *id == slow && !canceled => {
                    canceled = r.cancel(slow);
                }
                TaskEvent::Succeeded { id }
                | TaskEvent::Failed { id, .. }
                | TaskEvent::Canceled { id } => {
                    finished.insert(*id, ev.clone());
                }
                _ => {}
            }
        }
        assert!(saw_phase);
        assert_eq!(finished[&ok], TaskEvent::Succeeded { id: ok });
        assert_eq!(
            finished[&bad],
            TaskEvent::Failed {
                id: bad,
                error: "boom".into()
            }
        );
        assert_eq!(finished[&slow], TaskEvent::Canceled { id: slow });
    }
}
