//! Distributed workers over real processes, on every shared backend: 200 jobs, 4
//! `flatmachines worker` processes, one of them SIGKILLed in the middle of a job, the reaper
//! machine returning its job, and every job completed exactly once. Also: the checker machine
//! scales worker.yml processes to min(queue_depth, max_workers) and no further.
//!
//! Redis and PostgreSQL run on 127.0.0.1 (FLATMACHINES_TEST_REDIS_URL /
//! FLATMACHINES_TEST_POSTGRES_URL override); without one the test is skipped, except under
//! `CI=true`, where that fails.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use flatmachines::backends::{Store, open_store};
use flatmachines::core::distributed::status;
use flatmachines::core::{WorkCounts, WorkStatus, WorkerFilter};

const JOBS: u64 = 200;
const WORKERS: usize = 4;
/// Live workers beat every 250 ms; the reaper calls a worker lost after 3 s of silence.
const HEARTBEAT: &str = "0.25";
const STALE_SECONDS: u64 = 3;
/// Everything a test waits for has to happen within this.
const PATIENCE: Duration = Duration::from_secs(120);

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_flatmachines")
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/distributed_worker")
        .join(name)
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn unique(prefix: &str) -> String {
    let id = uuid_ish();
    format!("{prefix}{id}")
}

fn uuid_ish() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff_ffff)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// The Collatz job's expected result: steps down to 1 and the highest value reached.
fn collatz(n: u64) -> Value {
    let (mut value, mut steps, mut peak) = (n, 0u64, n);
    while value != 1 {
        value = if value % 2 == 0 {
            value / 2
        } else {
            3 * value + 1
        };
        peak = peak.max(value);
        steps += 1;
    }
    json!({"n": n, "steps": steps, "peak": peak})
}

/// Runs a `flatmachines` command to the end and returns its stdout.
fn flatmachines(args: &[&str], stdin: Option<&str>) -> String {
    let mut command = Command::new(binary());
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().expect("flatmachines starts");
    if let Some(text) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .expect("stdin takes the jobs");
    }
    let output = child.wait_with_output().expect("flatmachines runs");
    assert!(
        output.status.success(),
        "flatmachines {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {}", child.id());
}

/// One `flatmachines worker` process and the JSON lines it printed.
struct WorkerProcess {
    id: String,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: Option<JoinHandle<()>>,
}

impl WorkerProcess {
    fn start(store: &str, pool: &str, id: &str) -> WorkerProcess {
        let job = example("job.yml");
        let mut child = Command::new(binary())
            .args([
                "worker",
                job.to_str().expect("a UTF-8 path"),
                "--store",
                store,
                "--pool",
                pool,
                "--worker-id",
                id,
                "--heartbeat",
                HEARTBEAT,
                "--poll",
                "0.05",
                "--shutdown-grace",
                "10",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the worker starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("a worker printed a line that is not JSON ({e}): {line}")
                });
                sink.lock().expect("lines").push(value);
            }
        });
        WorkerProcess {
            id: id.to_owned(),
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn completed_count(&self) -> usize {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l["status"] == "completed")
            .count()
    }

    fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.reader.take() {
                    reader.join().expect("the reader thread ends");
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("worker {} did not exit within {within:?}", self.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // A failed assertion must not leave workers behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The pool's backends, opened in the test to look at what the processes did.
struct Probe {
    store: Store,
    pool: String,
}

impl Probe {
    fn counts(&self, rt: &tokio::runtime::Runtime) -> WorkCounts {
        let work = self.store.work.as_ref().expect("a work backend");
        rt.block_on(work.pool(&self.pool).counts())
            .expect("the pool's counts")
    }

    /// The ids of the jobs `worker` holds now.
    fn held_by(&self, rt: &tokio::runtime::Runtime, ids: &[String], worker: &str) -> Vec<String> {
        let pool = self.store.work.as_ref().expect("work").pool(&self.pool);
        rt.block_on(async {
            let mut held = Vec::new();
            for id in ids {
                let item = pool.get(id).await.expect("get").expect("the job exists");
                if item.status == WorkStatus::Claimed && item.claimed_by.as_deref() == Some(worker)
                {
                    held.push(id.clone());
                }
            }
            held
        })
    }

    fn worker_status(&self, rt: &tokio::runtime::Runtime, worker: &str) -> String {
        let registration = self.store.registration.as_ref().expect("registration");
        rt.block_on(registration.get(worker))
            .expect("get worker")
            .map(|w| w.status)
            .unwrap_or_else(|| "unregistered".to_owned())
    }
}

fn run_reaper(store: &str, pool: &str) -> Value {
    let input = json!({"pool_id": pool, "stale_threshold_seconds": STALE_SECONDS}).to_string();
    let reaper = example("reaper.yml");
    let out = flatmachines(
        &[
            "run",
            reaper.to_str().expect("utf-8"),
            "--store",
            store,
            "--input",
            &input,
        ],
        None,
    );
    serde_json::from_str(out.trim()).expect("the reaper prints JSON")
}

/// The scenario itself.
fn kill_one_worker_mid_job(store_url: &str) {
    let rt = runtime();
    let pool = unique("e2e-");
    let probe = Probe {
        store: open_store(store_url).expect("the store opens"),
        pool: pool.clone(),
    };

    // 200 jobs, pushed in one command. n = 27.. gives Collatz runs of 10 to 250 steps.
    let jobs: String = (0..JOBS)
        .map(|i| format!("{{\"n\": {}}}\n", 27 + i))
        .collect();
    let pushed = flatmachines(
        &["pool", "push", &pool, "--store", store_url, "--file", "-"],
        Some(&jobs),
    );
    let ids: Vec<String> = pushed.lines().map(str::to_owned).collect();
    assert_eq!(ids.len() as u64, JOBS, "one id per pushed job");
    let expected: HashMap<String, Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), collatz(27 + i as u64)))
        .collect();

    let run = uuid_ish();
    let mut workers: Vec<WorkerProcess> = (0..WORKERS)
        .map(|i| WorkerProcess::start(store_url, &pool, &format!("w{i}-{run}")))
        .collect();

    // Once the victim has done some work, freeze it; kill it only while it holds a job, so
    // the kill lands mid-job for certain.
    let started = Instant::now();
    while workers[0].completed_count() < 3 {
        assert!(
            started.elapsed() < PATIENCE,
            "the first worker never completed 3 jobs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let victim = workers[0].id.clone();
    let lost_job = loop {
        assert!(
            started.elapsed() < PATIENCE,
            "never caught the victim holding a job"
        );
        signal(&workers[0].child, "STOP");
        // A stopped process sends nothing more, but a statement it had already written to the
        // socket (a claim, a completion's COMMIT) is still carried out by the server. Let those
        // land before reading what the victim holds, or the read can see a job as still
        // claimed that the server is about to mark done.
        std::thread::sleep(Duration::from_millis(150));
        let held = probe.held_by(&rt, &ids, &victim);
        if let [job] = held.as_slice() {
            break job.clone();
        }
        assert!(held.len() < 2, "a worker holds {} jobs at once", held.len());
        signal(&workers[0].child, "CONT");
        std::thread::sleep(Duration::from_millis(3));
    };
    workers[0].child.kill().expect("SIGKILL");
    let killed = workers[0].wait(Duration::from_secs(10));
    assert!(!killed.success(), "the victim was killed");

    // The reaper runs every 300 ms until it has reaped the victim and released its job.
    let mut released = 0;
    let mut reaped = Vec::new();
    while probe.worker_status(&rt, &victim) != status::LOST {
        assert!(
            started.elapsed() < PATIENCE,
            "the reaper never marked {victim} lost"
        );
        std::thread::sleep(Duration::from_millis(300));
        let report = run_reaper(store_url, &pool);
        released += report["jobs_released"].as_u64().expect("jobs_released");
        reaped.extend(
            report["reaped"]
                .as_array()
                .expect("reaped")
                .iter()
                .map(|w| w.as_str().expect("an id").to_owned()),
        );
    }
    assert_eq!(
        reaped,
        vec![victim.clone()],
        "only the killed worker is reaped"
    );
    assert_eq!(
        released, 1,
        "the killed worker's one job went back to the pool"
    );

    // The others finish everything, then stop cleanly on SIGTERM.
    loop {
        let counts = probe.counts(&rt);
        if counts.done == JOBS {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "not every job was done in time: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for worker in &workers[1..] {
        signal(&worker.child, "TERM");
    }
    for worker in &mut workers[1..] {
        let exit = worker.wait(Duration::from_secs(30));
        assert!(exit.success(), "worker {} exited with {exit}", worker.id);
    }

    // Exactly one completion per job, across every worker's output, the victim's included.
    let mut completions: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for worker in &workers {
        for line in worker.lines.lock().expect("lines").iter() {
            if line["status"] == "completed" {
                let job = line["job_id"].as_str().expect("job_id").to_owned();
                completions
                    .entry(job)
                    .or_default()
                    .push((worker.id.clone(), line["output"].clone()));
            }
        }
    }
    assert_eq!(completions.len() as u64, JOBS, "every job completed");
    for (job, done) in &completions {
        assert_eq!(
            done.len(),
            1,
            "job {job} completed {} times: {done:?}",
            done.len()
        );
        assert_eq!(&done[0].1, &expected[job], "job {job}'s result");
    }
    let (finisher, _) = &completions[&lost_job][0];
    assert_ne!(finisher, &victim, "another worker completed the lost job");

    // Nothing left claimed, pending or poisoned; results stored; statuses recorded.
    assert_eq!(
        probe.counts(&rt),
        WorkCounts {
            pending: 0,
            claimed: 0,
            done: JOBS,
            poisoned: 0,
        }
    );
    let work = probe.store.work.as_ref().expect("work").pool(&pool);
    let item = rt
        .block_on(work.get(&lost_job))
        .expect("get")
        .expect("the lost job exists");
    assert_eq!(
        item.attempts, 2,
        "the lost job ran twice: killed, then finished"
    );
    assert_eq!(item.result.as_ref(), Some(&expected[&lost_job]));
    let registration = probe.store.registration.as_ref().expect("registration");
    let records = rt
        .block_on(registration.list(&WorkerFilter {
            pool_id: Some(pool.clone()),
            ..WorkerFilter::default()
        }))
        .expect("list workers");
    let statuses: HashMap<String, String> = records
        .into_iter()
        .map(|w| (w.worker_id, w.status))
        .collect();
    assert_eq!(statuses.len(), WORKERS);
    for worker in &workers {
        let expected = if worker.id == victim {
            status::LOST
        } else {
            status::TERMINATED
        };
        assert_eq!(statuses[&worker.id], expected, "status of {}", worker.id);
    }
    // Every process the test started has been waited for: none is left running.
    for worker in &mut workers {
        assert!(
            worker.child.try_wait().expect("try_wait").is_some(),
            "{} is still running",
            worker.id
        );
    }
}

#[test]
fn sqlite_workers_survive_a_killed_worker_and_complete_every_job_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    kill_one_worker_mid_job(&url);
}

/// A reachable service's URL, or `None` to skip (never under CI).
fn service(env: &str, default: &str, name: &str) -> Option<String> {
    let url = std::env::var(env)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default.to_owned());
    let reachable = runtime().block_on(async {
        let store = open_store(&url).map_err(|e| e.to_string())?;
        let work = store.work.ok_or("no work backend")?;
        tokio::time::timeout(Duration::from_secs(5), work.pool("probe").size())
            .await
            .map_err(|_| "timed out".to_owned())?
            .map(drop)
            .map_err(|e| e.to_string())
    });
    match reachable {
        Ok(()) => Some(url),
        Err(e) => {
            assert!(!is_ci(), "{name} at {url} is not usable under CI: {e}");
            eprintln!("skipped: {name} at {url} is not usable: {e}");
            None
        }
    }
}

#[test]
fn redis_workers_survive_a_killed_worker_and_complete_every_job_once() {
    let Some(base) = service(
        "FLATMACHINES_TEST_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "Redis",
    ) else {
        return;
    };
    let namespace = unique("fmtest-dist-");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}namespace={namespace}");
    let outcome = std::panic::catch_unwind(|| kill_one_worker_mid_job(&url));
    let client = flatmachines::backends::redis::RedisClient::open(&url).expect("the client");
    runtime()
        .block_on(client.purge())
        .expect("the test namespace is removed");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn postgres_workers_survive_a_killed_worker_and_complete_every_job_once() {
    let Some(base) = service(
        "FLATMACHINES_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
        "PostgreSQL",
    ) else {
        return;
    };
    let schema = unique("fmtest_dist_");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}schema={schema}");
    let outcome = std::panic::catch_unwind(|| kill_one_worker_mid_job(&url));
    let store = flatmachines::backends::postgres::PostgresStore::open(&url).expect("the store");
    runtime()
        .block_on(store.drop_schema())
        .expect("the test schema is dropped");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Whether process `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesized command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The checker starts min(queue_depth, max_workers) worker.yml processes, counts the ones
/// already active, and starts no more than that.
#[test]
fn the_checker_scales_workers_to_the_queue_and_no_further() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let rt = runtime();
    let store = open_store(&url).expect("the store opens");
    let registration = store.registration.as_ref().expect("registration");
    let checker = example("checker.yml");
    let check = |pool: &str, max_workers: u64| -> Value {
        let input = json!({"pool_id": pool, "max_workers": max_workers}).to_string();
        let out = flatmachines(
            &[
                "run",
                checker.to_str().expect("utf-8"),
                "--store",
                &url,
                "--input",
                &input,
            ],
            None,
        );
        serde_json::from_str(out.trim()).expect("the checker prints JSON")
    };
    let registered = |pool: &str| -> Vec<(String, String)> {
        rt.block_on(registration.list(&WorkerFilter {
            pool_id: Some(pool.to_owned()),
            ..WorkerFilter::default()
        }))
        .expect("list")
        .into_iter()
        .map(|w| (w.worker_id, w.status))
        .collect()
    };
    let drained = |pool: &str, jobs: u64| {
        let started = Instant::now();
        loop {
            let counts = rt
                .block_on(store.work.as_ref().expect("work").pool(pool).counts())
                .expect("counts");
            let workers = registered(pool);
            if counts.done == jobs && workers.iter().all(|(_, s)| s == status::TERMINATED) {
                return workers;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "pool {pool} never drained: {counts:?} {workers:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    for (jobs, max_workers) in [(2u64, 4u64), (10, 3)] {
        let pool = unique("scale-");
        let lines: String = (0..jobs)
            .map(|i| format!("{{\"n\": {}}}\n", 97 + i))
            .collect();
        flatmachines(
            &["pool", "push", &pool, "--store", &url, "--file", "-"],
            Some(&lines),
        );
        let first = check(&pool, max_workers);
        let wanted = jobs.min(max_workers);
        assert_eq!(first["queue_depth"], jobs);
        assert_eq!(first["active_workers"], 0);
        assert_eq!(first["workers_needed"], wanted);
        let spawned: HashSet<String> = first["spawned"]
            .as_array()
            .expect("spawned ids")
            .iter()
            .map(|id| id.as_str().expect("an id").to_owned())
            .collect();
        assert_eq!(spawned.len() as u64, wanted, "{first}");
        // Checked again at once: spawned workers are registered before they start, so they
        // count (or the queue is already empty) and no more are started.
        let second = check(&pool, max_workers);
        assert_eq!(second["spawned"], json!([]), "{second}");
        let workers = drained(&pool, jobs);
        let ids: HashSet<String> = workers.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            ids, spawned,
            "exactly the spawned workers ran, and all ended cleanly"
        );
        // And their processes are gone (or dead, waiting for whoever adopted them to reap).
        let pids: Vec<u32> = rt
            .block_on(registration.list(&WorkerFilter {
                pool_id: Some(pool.clone()),
                ..WorkerFilter::default()
            }))
            .expect("list")
            .iter()
            .map(|w| w.pid.expect("a started worker records its pid"))
            .collect();
        let started = Instant::now();
        while let Some(pid) = pids.iter().find(|pid| running(**pid)) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "worker process {pid} is still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `examples/distributed_worker/run.sh`, the example's one command, drains its pool on SQLite.
#[test]
fn the_example_runs_with_one_command() {
    let output = Command::new("bash")
        .arg(example("run.sh"))
        .env("FLATMACHINES", binary())
        .env("JOBS", "12")
        .env_remove("STORE")
        .env_remove("FLATMACHINES_STORE")
        .output()
        .expect("bash runs the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(": 0 pending, 0 claimed, 12 done, 0 poisoned"),
        "{stdout}"
    );
    assert!(stdout.contains("0 active, 0 lost"), "{stdout}");
}

/// Bad input to `pool` and `worker` gets one clear line and exit 2, and pushes nothing.
#[test]
fn pool_and_worker_commands_refuse_bad_input_clearly() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let job = example("job.yml");
    let job = job.to_str().expect("utf-8");
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env_remove("FLATMACHINES_STORE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starts");
        {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(stdin.unwrap_or("").as_bytes())
                .expect("write stdin");
        }
        let output = child.wait_with_output().expect("runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    };
    let cases: [(&[&str], Option<&str>, &str); 6] = [
        (
            &["pool", "status", "p", "--store", "memory://"],
            None,
            "cannot hold a pool that workers share",
        ),
        (
            &["pool", "status", "p", "--store", "file:///tmp/x"],
            None,
            "has no worker registry or work pools",
        ),
        (
            &["pool", "push", "p", "--store", &url],
            None,
            "no jobs given",
        ),
        (
            &["pool", "push", "p", "--store", &url, "--file", "-"],
            Some("{\"n\": 1}\n{oops\n"),
            "stdin line 2: not valid JSON",
        ),
        (
            &["pool", "push", "p", "--store", &url, "--data", "[1"],
            None,
            "--data #1 is not valid JSON",
        ),
        (
            &["worker", job, "--store", "memory://", "--pool", "p"],
            None,
            "cannot hold a pool that workers share",
        ),
    ];
    for (args, stdin, expected) in cases {
        let (code, stderr) = run(args, stdin);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    }
    // The bad push pushed nothing, not even the good first line.
    let store = open_store(&url).expect("store");
    let counts = runtime()
        .block_on(store.work.expect("work").pool("p").counts())
        .expect("counts");
    assert_eq!(counts.total(), 0);
}
