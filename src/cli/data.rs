//! `csplade data`: building collections (the man-page demo corpus).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use csplade::data::manpages::{convert, ManpageOptions};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Convert the machine's man pages into a BEIR collection with known-item queries
    Manpages(ManpagesArgs),
}

#[derive(Args)]
pub struct ManpagesArgs {
    /// Output directory (corpus.jsonl, queries.jsonl, qrels/test.tsv)
    #[arg(long)]
    pub out: PathBuf,
    /// Man sections to read, comma separated
    #[arg(long, default_value = "1,2,3,4,5,6,7,8", value_delimiter = ',')]
    pub sections: Vec<String>,
    /// Most pages converted
    #[arg(long, default_value_t = 3000, value_parser = super::within(1, 10_000_000))]
    pub max: usize,
    /// Man page root
    #[arg(long, default_value = "/usr/share/man")]
    pub root: PathBuf,
    /// Everyday commands first (sections 1 and 8, shortest names) instead of
    /// a spread over the alphabet, as the explorer's 300-page demo does
    #[arg(long)]
    pub common_first: bool,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Manpages(a) => {
            let opts = ManpageOptions {
                root: a.root,
                sections: a.sections,
                max: a.max,
                common_first: a.common_first,
                ..Default::default()
            };
            let r = convert(&opts, &a.out)?;
            println!(
                "wrote {} pages and {} queries to {} (typeset by {}; {} scanned; skipped {} redirects, {} without a NAME description, {} unreadable, {} beyond the per-family cap)",
                r.written,
                r.queries,
                a.out.display(),
                r.renderer,
                r.scanned,
                r.skipped_redirects,
                r.skipped_no_name,
                r.skipped_unreadable,
                r.skipped_family
            );
            Ok(())
        }
    }
}
