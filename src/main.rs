//! csplade command line: parse, dispatch; nothing else.

use clap::Parser;

mod cli;

fn main() {
    // Exit quietly when stdout is a closed pipe (`csplade … | head`).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    csplade::tune_allocator();
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("csplade: error: {e:#}");
        std::process::exit(1);
    }
}
