//! Sharded encoding on a real Slurm: the test starts munged, slurmctld and
//! slurmd (Debian's slurm-wlm) on loopback with a minimal slurm.conf in a
//! temporary directory, submits the README's job array (`index --shard
//! $SLURM_ARRAY_TASK_ID/3`) over a small collection with a tiny model, merges
//! the three shards and compares the result with a one-process build: the
//! same vectors bit for bit and the same rankings. The daemons are stopped
//! and their files removed when the test ends, whatever happens.
//!
//! Without Slurm installed the test prints SKIP; `CSPLADE_REQUIRE_TOOLS=1`
//! (set by CI, which installs slurm-wlm and munge) makes that a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csplade::search::{Backend, LsrIndex};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_csplade");

fn installed(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

/// The daemons of one test cluster, stopped on drop.
struct Cluster {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Cluster {
    fn env(&self, c: &mut Command) {
        c.env("SLURM_CONF", self.dir.join("slurm.conf"));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM first, so that slurmctld stops its script helper itself.
        for c in self.children.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let t0 = Instant::now();
            while matches!(c.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(cmd: &str, args: &[&str], conf: Option<&Path>, log: &Path) -> Child {
    let mut c = Command::new(cmd);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    if let Some(conf) = conf {
        c.env("SLURM_CONF", conf);
    }
    c.spawn().unwrap_or_else(|e| panic!("starting {cmd}: {e}"))
}

fn start_cluster(dir: &Path) -> Cluster {
    for sub in ["munge", "state", "spool", "log"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("munge"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // A fresh key for this cluster alone.
    let key = dir.join("munge/munge.key");
    let mut bytes = vec![0u8; 128];
    let mut rng = csplade::model::tiny::SplitMix::new(std::process::id() as u64);
    for b in &mut bytes {
        *b = rng.next_u64() as u8;
    }
    std::fs::write(&key, bytes).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket = dir.join("munge/socket");
    let d = dir.display();
    let (ctld_port, d_port) = (free_port(), free_port());
    let conf = dir.join("slurm.conf");
    std::fs::write(
        &conf,
        format!(
            "ClusterName=cspladetest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge/socket
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
"
        ),
    )
    .unwrap();
    let mut cluster = Cluster {
        dir: dir.to_path_buf(),
        children: Vec::new(),
    };
    let s = socket.display().to_string();
    let k = key.display().to_string();
    let munge_args = [
        "--foreground",
        "--force",
        "--socket",
        s.as_str(),
        "--key-file",
        k.as_str(),
        "--log-file",
        &format!("{d}/log/munged.log"),
        "--pid-file",
        &format!("{d}/munge/pid"),
        "--seed-file",
        &format!("{d}/munge/seed"),
    ];
    cluster
        .children
        .push(spawn("munged", &munge_args, None, &dir.join("log/munged")));
    let t0 = Instant::now();
    while !socket.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "munged did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.children.push(spawn(
        "slurmctld",
        &["-D", "-c"],
        Some(&conf),
        &dir.join("log/slurmctld"),
    ));
    cluster.children.push(spawn(
        "slurmd",
        &["-D", "-N", "localhost"],
        Some(&conf),
        &dir.join("log/slurmd"),
    ));
    // Wait for the node to come up idle.
    let t0 = Instant::now();
    loop {
        let mut c = Command::new("sinfo");
        c.args(["-h", "-o", "%T"]);
        cluster.env(&mut c);
        let state = c
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if state == "idle" {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(dir.join("log/slurmctld.log")).unwrap_or_default();
            panic!("the Slurm node is {state:?}, not idle, after 60 s; slurmctld log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    cluster
}

fn write_corpus(dir: &Path, n: usize) {
    const WORDS: &[&str] = &[
        "wing",
        "flow",
        "shock",
        "boundary",
        "layer",
        "heat",
        "transfer",
        "plate",
        "pressure",
        "supersonic",
        "the",
        "of",
        "and",
        "laminar",
    ];
    common::RandomCorpus {
        words: WORDS,
        seed: 5,
        min_words: 4,
        spread: 24,
        query_every: 5,
        titled: false,
    }
    .write(dir, n)
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_slurm_job_array_encodes_shards_that_merge_into_the_one_process_index() {
    let tools = ["munged", "slurmctld", "slurmd", "sbatch", "sinfo"];
    if let Some(missing) = tools.iter().find(|t| !installed(t)) {
        assert!(
            std::env::var("CSPLADE_REQUIRE_TOOLS").is_err(),
            "{missing} is required (slurm-wlm and munge): CSPLADE_REQUIRE_TOOLS is set"
        );
        common::note_skip(&format!("Slurm job array: {missing} not installed"));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cluster = start_cluster(&root.join("slurm"));
    let model_dir = root.join("model");
    csplade::model::tiny::write_tiny_model(&model_dir, 3).unwrap();
    let model = model_dir.join("tiny.gguf");
    let corpus = root.join("corpus");
    write_corpus(&corpus, 40);
    let common = |c: &mut Command| {
        c.args(["--model", model.to_str().unwrap(), "--head", "logprob:2"]);
        c.args(["--commit-every", "4"]);
    };

    // The README's array script, three tasks.
    let script = root.join("encode.sbatch");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\n#SBATCH --array=0-2 --cpus-per-task=1\n\
             {BIN} index --corpus {c} --out {s}/$SLURM_ARRAY_TASK_ID \
             --shard $SLURM_ARRAY_TASK_ID/3 --model {m} --head logprob:2 --commit-every 4\n",
            c = corpus.display(),
            s = root.join("shards").display(),
            m = model.display(),
        ),
    )
    .unwrap();
    let mut sbatch = Command::new("sbatch");
    sbatch
        .args(["--wait", "--parsable", "-o"])
        .arg(root.join("slurm/log/task-%a.log"))
        .arg(&script)
        .current_dir(root);
    cluster.env(&mut sbatch);
    let job = run_ok(&mut sbatch);
    let logs: Vec<String> = (0..3)
        .map(|i| std::fs::read_to_string(root.join(format!("slurm/log/task-{i}.log"))).unwrap())
        .collect();
    for (i, log) in logs.iter().enumerate() {
        assert!(
            root.join(format!("shards/{i}/shard.json")).is_file(),
            "array task {i} of job {job} wrote no shard:\n{log}"
        );
    }

    let merged = root.join("merged");
    let mut merge = Command::new(BIN);
    merge.args(["index", "merge", "--out"]).arg(&merged);
    for i in 0..3 {
        merge.arg(root.join(format!("shards/{i}")));
    }
    run_ok(&mut merge);
    let whole = root.join("whole");
    let mut one = Command::new(BIN);
    one.args(["index", "--corpus"])
        .arg(&corpus)
        .arg("--out")
        .arg(&whole);
    common(&mut one);
    run_ok(&mut one);

    assert_eq!(
        std::fs::read(merged.join("vectors.bin")).unwrap(),
        std::fs::read(whole.join("vectors.bin")).unwrap(),
        "merged shards differ from the one-process build"
    );
    let (a, b) = (
        LsrIndex::open(&merged).unwrap(),
        LsrIndex::open(&whole).unwrap(),
    );
    for q in a.vectors.iter().take(8) {
        assert_eq!(
            a.search(q, 10, Backend::Tantivy).unwrap(),
            b.search(q, 10, Backend::Tantivy).unwrap()
        );
    }
    drop(cluster);
}
