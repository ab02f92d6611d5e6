//! Seeded mutation fuzzing on stable Rust, shared by the fuzz tests: valid
//! seed files written by csplade itself are mutated (bit flips, random
//! bytes, insertions, deletions, duplications, cuts, boundary integers,
//! format tokens) and parsed; a parser may refuse the input but must never
//! panic. Each test runs `CSPLADE_FUZZ_CASES` cases (default 10,000); the
//! ignored `deep::*` tests run 1,000,000 per parser. A failure names the
//! parser, the case and its seed, and keeps the input under
//! target/fuzz-failures/. A case that runs past `CSPLADE_FUZZ_CASE_SECONDS`
//! (default 10) is a hang: a watchdog keeps its input the same way and ends
//! the run, so a hang fails instead of sticking.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use csplade::model::tiny::SplitMix;

pub struct Rng(pub SplitMix);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\n",
    b"\t",
    b"\\",
    b":",
    b",",
    b"=",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"nan",
    b"inf",
    b"-1",
    b"1e309",
    b"0",
    b"\0",
    b"\"_id\"",
    b"\r\n",
];
const INTEGERS: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
    1 << 40,
];

/// 1–4 random mutations of `seed`.
pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        let at = rng.below(len + 1);
        match rng.below(8) {
            0 if len > 0 => v[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => v[at.min(len - 1)] = rng.below(256) as u8,
            2 => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
                v.splice(at..at, bytes);
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(len);
                v.drain(at.min(end)..end);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let piece = v[start..end].to_vec();
                v.splice(at..at, piece);
            }
            5 => v.truncate(at),
            6 => {
                let x = INTEGERS[rng.below(INTEGERS.len())].to_le_bytes();
                let width = [1, 2, 4, 8][rng.below(4)];
                for (i, b) in x.iter().take(width).enumerate() {
                    if let Some(slot) = v.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v
}

pub fn cases() -> usize {
    std::env::var("CSPLADE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Seconds one case may take (`CSPLADE_FUZZ_CASE_SECONDS`, default 10).
fn case_limit() -> std::time::Duration {
    let secs = std::env::var("CSPLADE_FUZZ_CASE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    std::time::Duration::from_secs_f64(secs)
}

/// The case being parsed: when it started, its number and its input.
type Running = std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, usize, Vec<u8>)>>>;

/// A watchdog over the case being parsed: one that runs past the limit is
/// a hang, which keeps its input under target/fuzz-failures/ and ends the
/// test binary with the case named (a stuck parser cannot be unwound).
fn watchdog(
    name: &'static str,
    running: Running,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let limit = case_limit();
    std::thread::spawn(move || {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let Ok(guard) = running.lock() else { return };
            let Some((started, case, input)) = guard.as_ref() else {
                continue;
            };
            if started.elapsed() > limit {
                let file = keep_failure(name, *case, input);
                // Straight to stderr: the test harness's capture would be
                // lost with the process.
                let _ = writeln!(
                    std::io::stderr(),
                    "{name}: case {case} hung (over {} s); input kept at {}",
                    limit.as_secs_f64(),
                    file.display()
                );
                std::process::abort();
            }
        }
    });
}

fn keep_failure(name: &str, case: usize, input: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{name}-{case}.bin"));
    let _ = std::fs::write(&file, input);
    file
}

/// Run `parse` on `cases` mutations of the seeds; panics and cases over the
/// time limit are failures.
pub fn fuzz(name: &'static str, seeds: &[Vec<u8>], cases: usize, mut parse: impl FnMut(&[u8])) {
    let mut rng = Rng(SplitMix::new(0xF022 ^ name.len() as u64));
    let (mut accepted, mut refused) = (0usize, 0usize);
    let started = std::time::Instant::now();
    let running: Running = Default::default();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    watchdog(name, running.clone(), done.clone());
    for case in 0..cases {
        let seed = &seeds[case % seeds.len()];
        let input = mutate(seed, &mut rng);
        if let Ok(mut r) = running.lock() {
            *r = Some((std::time::Instant::now(), case, input.clone()));
        }
        let r = catch_unwind(AssertUnwindSafe(|| parse(&input)));
        if let Ok(mut r) = running.lock() {
            *r = None;
        }
        if r.is_err() {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let file = keep_failure(name, case, &input);
            let what = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
            let _ = std::panic::take_hook();
            panic!(
                "{name}: case {case} panicked ({what}); input kept at {}",
                file.display()
            );
        }
        if input == *seed {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "fuzz {name}: {cases} cases without a panic ({accepted} unmutated, {refused} mutated) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

pub fn quiet_panics() {
    // Panics are reported by `fuzz` itself, with the input that caused them.
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut m) = LAST_PANIC.lock() {
            *m = info.to_string();
        }
    }));
}

/// One fast test and one ignored deep test per parser.
#[allow(unused_macros)]
macro_rules! parser_tests {
    ($($name:ident => $run:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            $crate::common::fuzz::quiet_panics();
            $run($crate::common::fuzz::cases());
        })*

        /// ≥ 1,000,000 cases per parser (run with `--ignored`; one test
        /// per parser, so `deep::NAME` runs one).
        mod deep {
            use super::*;
            $(#[test]
            #[ignore]
            fn $name() {
                $crate::common::fuzz::quiet_panics();
                $run(1_000_000);
            })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use parser_tests;
