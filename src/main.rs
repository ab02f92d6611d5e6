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
    let args = cli::Cli::parse();
    let debug = args.debug;
    if !debug {
        // Errors print as one readable cause chain; libraries capture no
        // backtraces into their messages. Still single-threaded here.
        std::env::remove_var("RUST_BACKTRACE");
        std::env::remove_var("RUST_LIB_BACKTRACE");
    }
    csplade::tune_allocator();
    if let Err(e) = cli::run(args) {
        if debug {
            eprintln!("csplade: error: {e:?}");
        } else {
            eprintln!("csplade: error: {}", cli::describe(&e));
        }
        std::process::exit(1);
    }
}
