//! TREC run files: `qid Q0 docid rank score tag`, one line per retrieved document.

use std::io::Write;
use std::path::Path;

use crate::search::Hit;

/// Write a run atomically (temp file, then rename).
pub fn write_run(path: &Path, tag: &str, runs: &[(String, Vec<Hit>)]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-run");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for (qid, hits) in runs {
            for (rank, h) in hits.iter().enumerate() {
                writeln!(w, "{qid} Q0 {} {} {:.6} {tag}", h.doc_id, rank + 1, h.score)?;
            }
        }
        w.flush()?;
    }
    std::fs::rename(tmp, path)
}
