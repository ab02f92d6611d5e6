//! `csplade index verify` through the binary: a fresh index passes every
//! check; a flipped byte in its vectors, a lost tantivy file or a missing
//! metadata file each fail by name, say what fixes them, and exit 1.

mod common;

use std::path::Path;
use std::process::Command;

fn verify(index: &Path) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(["index", "verify"])
        .arg(index)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn build(d: &Path, out: &str) -> std::path::PathBuf {
    let out = d.join(out);
    let o = Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(["index", "--model"])
        .arg(d.join("tiny.gguf"))
        .arg("--corpus")
        .arg(d.join("toy"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn verify_passes_a_fresh_index_and_names_what_is_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    common::tiny(d, false);
    common::toy_collection(&d.join("toy"));
    let idx = build(d, "idx");
    let (ok, out) = verify(&idx);
    assert!(ok, "{out}");
    assert!(out.contains("checksum verified"), "{out}");
    assert!(out.contains("12 distinct"), "{out}");
    assert!(out.contains("tantivy agrees with the vectors on"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");

    // One weight changed in place: the records still parse, the sum does not.
    let v = idx.join("vectors.bin");
    let mut bytes = std::fs::read(&v).unwrap();
    bytes[12 + 8] ^= 0x10;
    std::fs::write(&v, &bytes).unwrap();
    let (ok, out) = verify(&idx);
    assert!(!ok);
    assert!(
        out.contains("FAIL  vectors.bin") && out.contains("checksum mismatch"),
        "{out}"
    );
    assert!(out.contains("fix: rebuild the index"), "{out}");
    assert!(out.contains("checks failed"), "{out}");

    // A tantivy file lost.
    let idx = build(d, "idx2");
    let seg = std::fs::read_dir(idx.join("tantivy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .expect("a segment's postings");
    std::fs::remove_file(seg).unwrap();
    let (ok, out) = verify(&idx);
    assert!(!ok);
    assert!(out.contains("FAIL  tantivy, BM25"), "{out}");
    assert!(
        out.contains("ok    vectors.bin"),
        "the vectors themselves are fine: {out}"
    );

    // No metadata: not an index (or a build that has not finished).
    let (ok, out) = verify(&d.join("toy"));
    assert!(!ok);
    assert!(out.contains("FAIL  meta.json"), "{out}");
}
