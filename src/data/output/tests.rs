use super::*;

/// Tests that flip `--force` share the process-wide flag: they run one at
/// a time.
static FORCE_GUARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn directories_are_replaced_only_when_their_manifest_says_so() {
    let _g = FORCE_GUARD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(check(&d.join("new/index"), &INDEX, &[]).is_ok());
    std::fs::create_dir(d.join("empty")).unwrap();
    assert!(check(&d.join("empty"), &INDEX, &[]).is_ok());
    std::fs::create_dir(d.join("thesis")).unwrap();
    std::fs::write(d.join("thesis/thesis.txt"), "years of work").unwrap();
    let e = check(&d.join("thesis"), &INDEX, &[]).unwrap_err();
    assert!(e.to_string().contains("thesis.txt"), "{e}");
    assert!(e.to_string().contains("--force"), "{e}");
    // A common file name proves nothing: a user's folder with a meta.json.
    std::fs::create_dir(d.join("notes")).unwrap();
    std::fs::write(d.join("notes/meta.json"), "{}").unwrap();
    assert!(check(&d.join("notes"), &INDEX, &[]).is_err());
    assert!(check(&d.join("notes"), &TRAINING_RUN, &[]).is_err());
    // csplade's manifest does, for its own kind only.
    claim_dir(&d.join("run"), &TRAINING_RUN, &[]).unwrap();
    std::fs::write(d.join("run/progress.jsonl"), "").unwrap();
    assert!(check(&d.join("run"), &TRAINING_RUN, &[]).is_ok());
    let e = check(&d.join("run"), &INDEX, &[]).unwrap_err();
    assert!(e.to_string().contains("training-run"), "{e}");
    // A file where a directory is wanted.
    std::fs::write(d.join("plain"), "x").unwrap();
    assert!(check(&d.join("plain"), &INDEX, &[]).is_err());
}

#[test]
fn inputs_and_special_files_are_refused_even_with_force() {
    let _g = FORCE_GUARD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ds = d.join("ds");
    std::fs::create_dir(&ds).unwrap();
    std::fs::write(ds.join("corpus.jsonl"), "{}").unwrap();
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    set_force(true);
    let outcomes = [
        check(&ds, &INDEX, &[&ds]).is_err(),
        check(&ds.join("idx"), &INDEX, &[&ds]).is_err(),
        check(d, &INDEX, &[&ds]).is_err(),
        check_file(&ds.join("corpus.jsonl"), &TREC_RUN, &[&ds]).is_err(),
        check_file(&fifo, &TREC_RUN, &[]).is_err(),
        check(&fifo, &INDEX, &[]).is_err(),
        check_file(Path::new("/dev/null"), &EXPORT, &[]).is_err(),
        check(&d.join("elsewhere"), &INDEX, &[&ds]).is_ok(),
    ];
    set_force(false);
    assert_eq!(outcomes, [true; 8]);
}

#[test]
fn files_are_replaced_only_when_recorded_and_unchanged() {
    let _g = FORCE_GUARD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = d.join("a.run");
    let write = |text: &'static str| {
        write_file(&run, &TREC_RUN, &[], "eval", |w| {
            std::io::Write::write_all(w, text.as_bytes())
        })
    };
    write("first\n").unwrap();
    write("second\n").unwrap();
    assert_eq!(std::fs::read_to_string(&run).unwrap(), "second\n");
    // Another kind may not replace it.
    assert!(check_file(&run, &EXPORT, &[]).is_err());
    // Edited by the user since: no longer csplade's.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&run, "my edits, longer than before\n").unwrap();
    assert!(write("third\n").is_err());
    assert_eq!(
        std::fs::read_to_string(&run).unwrap(),
        "my edits, longer than before\n"
    );
    // A user's file, and a symbolic link, are refused unless forced.
    std::fs::write(d.join("notes.txt"), "mine").unwrap();
    assert!(check_file(&d.join("notes.txt"), &TREC_RUN, &[]).is_err());
    std::os::unix::fs::symlink(d.join("notes.txt"), d.join("link.run")).unwrap();
    assert!(check_file(&d.join("link.run"), &TREC_RUN, &[]).is_err());
    set_force(true);
    let forced = write("forced\n");
    set_force(false);
    forced.unwrap();
    assert_eq!(std::fs::read_to_string(&run).unwrap(), "forced\n");
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("csplade-tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_second_writer_is_refused_and_told_who_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("idx");
    let held = lock::acquire(&out, "index").unwrap();
    let e = lock::acquire(&out, "index merge").unwrap_err().to_string();
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    assert!(e.contains("csplade index"), "{e}");
    drop(held);
    // Released: free again. (Another test thread that forks a child at this
    // moment holds a copy of the lock's descriptor until the child's exec
    // closes it, so the release is awaited for up to two seconds.)
    let mut again = lock::acquire(&out, "index merge");
    for _ in 0..200 {
        if again.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        again = lock::acquire(&out, "index merge");
    }
    again.unwrap();
}

#[test]
fn stages_are_fresh_and_published_over_own_outputs() {
    let _g = FORCE_GUARD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (stage, out) = (d.join("x.partial"), d.join("x"));
    fresh_stage(&stage, &MANPAGES, &[]).unwrap();
    std::fs::write(stage.join("corpus.jsonl"), "{}").unwrap();
    publish(&stage, &out).unwrap();
    fresh_stage(&stage, &MANPAGES, &[]).unwrap();
    assert!(check(&out, &MANPAGES, &[]).is_ok());
    publish(&stage, &out).unwrap();
    assert!(!out.join("corpus.jsonl").exists() && out.join(DIR_MANIFEST).exists());
    // A user's directory where the stage would go is not removed.
    std::fs::create_dir(d.join("y.partial")).unwrap();
    std::fs::write(d.join("y.partial/keep"), "k").unwrap();
    assert!(fresh_stage(&d.join("y.partial"), &MANPAGES, &[]).is_err());
    assert!(d.join("y.partial/keep").exists());
}

#[test]
fn a_dropped_lock_is_free_while_a_forked_child_still_shares_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let held = lock::acquire(&out, "index").unwrap();
    // As when another thread spawns a process: the child shares the lock's
    // open file until it execs (here, until it exits).
    // SAFETY: the child only sleeps and exits, both async-signal-safe.
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            libc::usleep(500_000);
            libc::_exit(0);
        }
    }
    assert!(child > 0, "fork failed");
    drop(held);
    let again = lock::acquire(&out, "index");
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(child, &mut status, 0) };
    again.expect("the lock was released when its holder dropped it");
}
