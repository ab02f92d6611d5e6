//! csplade command line: parse, dispatch; nothing else.

use clap::Parser;

mod cli;

fn main() {
    csplade::tune_allocator();
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("csplade: error: {e:#}");
        std::process::exit(1);
    }
}
