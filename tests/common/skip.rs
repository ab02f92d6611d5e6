//! Tests that cannot check anything on this machine say so, the same way
//! in the library's unit tests (which include this file) and in the
//! integration tests: `SKIP: why` on stderr, and a line in
//! `$CSPLADE_SKIP_LOG` when set (CI counts and prints them).

#![allow(dead_code)]

/// Print `SKIP: why` (and log it for CI).
pub fn note_skip(why: &str) {
    eprintln!("SKIP: {why}");
    if let Some(path) = std::env::var_os("CSPLADE_SKIP_LOG").filter(|p| !p.is_empty()) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{why}");
        }
    }
}

/// For tests of the SIMD kernels: on a CPU without them, note the skip and
/// return `true` (the test has nothing to compare); with
/// `CSPLADE_REQUIRE_AVX512=1` (set by CI where the CPU has them) fail instead.
pub fn skip_without(available: bool, what: &str) -> bool {
    if available {
        return false;
    }
    assert!(
        !std::env::var("CSPLADE_REQUIRE_AVX512").is_ok_and(|v| v == "1"),
        "{what} needs instructions this CPU lacks, and CSPLADE_REQUIRE_AVX512=1"
    );
    note_skip(&format!(
        "{what}: this CPU lacks the instructions it needs, nothing to compare the kernels with"
    ));
    true
}
