//! Execution locks of runners that died: a lock row whose holding process is gone (killed,
//! exited, or its pid recycled) is taken over at once on the same host, by exactly one of
//! several resumers; a live holder never is, and rows the resumer cannot judge wait for their
//! lease as before.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flatmachines_core::ExecutionLock;
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};
use sqlx::ConnectOptions;

use crate::support::{HelperProcess, TempDb, say};

/// Far longer than any test here waits: a key taken before it passes was taken because its
/// holder is gone, not because its lease ran out.
const LEASE: Duration = Duration::from_secs(30);

/// How soon "at once" must be, on a loaded machine.
const AT_ONCE: Duration = Duration::from_secs(5);

/// The holder columns of a lock row, read from `/proc` independently of the crate.
#[derive(Debug, Clone)]
struct Holder {
    host: String,
    boot_id: String,
    pid_ns: String,
    pid: i64,
    start_time: i64,
}

fn read_line(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().next()?.trim().to_owned())
}

/// Field 22 of `/proc/<pid>/stat`, counted after the command name's last `)`.
fn start_time(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Process `pid` of this host, boot and pid namespace, started at `start_time`; `None` where
/// `/proc` cannot say (the tests then have nothing to check).
fn holder(pid: u32, start_time: i64) -> Option<Holder> {
    Some(Holder {
        host: read_line("/proc/sys/kernel/hostname")?,
        boot_id: read_line("/proc/sys/kernel/random/boot_id")?,
        pid_ns: std::fs::read_link("/proc/self/ns/pid")
            .ok()?
            .to_str()?
            .to_owned(),
        pid: i64::from(pid),
        start_time,
    })
}

/// This process as a lock row records it.
fn me() -> Option<Holder> {
    holder(std::process::id(), start_time(std::process::id())?)
}

/// A child that runs until killed, and the row it would record.
fn live_child() -> (Child, Holder) {
    let child = Command::new("sleep").arg("300").spawn().unwrap();
    let started = start_time(child.id()).expect("a running child has a stat file");
    let recorded = holder(child.id(), started).unwrap();
    (child, recorded)
}

/// The row of a process that ran on this host and has exited: a child killed and reaped.
fn gone_process() -> Holder {
    let (mut child, recorded) = live_child();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!Path::new(&format!("/proc/{}", recorded.pid)).exists());
    recorded
}

async fn connection(path: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

/// Writes the row a holder named `owner` leaves for `key`, its lease `expires_in` from now
/// (negative: passed), as if that holder had acquired it and stopped.
async fn leave_row(path: &Path, key: &str, owner: &str, expires_in_ms: i64, by: Option<&Holder>) {
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query(
        "INSERT OR REPLACE INTO execution_locks (key, owner, expires_at, acquired_at, \
             holder_host, holder_boot_id, holder_pid_ns, holder_pid, holder_start_time) \
         VALUES (?1, ?2, ?3, '2024-05-01T12:00:00+00:00', ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(key)
    .bind(owner)
    .bind(now + expires_in_ms)
    .bind(by.map(|h| h.host.clone()))
    .bind(by.map(|h| h.boot_id.clone()))
    .bind(by.map(|h| h.pid_ns.clone()))
    .bind(by.map(|h| h.pid))
    .bind(by.map(|h| h.start_time))
    .execute(&mut connection(path).await)
    .await
    .unwrap();
}

/// The owner and holder pid of the row of `key`.
async fn row(path: &Path, key: &str) -> (String, Option<i64>) {
    sqlx::query_as("SELECT owner, holder_pid FROM execution_locks WHERE key = ?1")
        .bind(key)
        .fetch_one(&mut connection(path).await)
        .await
        .unwrap()
}

async fn open(tmp: &TempDb) -> SqliteDatabase {
    SqliteDatabase::connect(tmp.config().lock_lease(LEASE))
        .await
        .unwrap()
}

/// Acquires `key`, failing the test if that took longer than [`AT_ONCE`].
async fn acquire_now(lock: &impl ExecutionLock, key: &str) -> bool {
    let started = Instant::now();
    let acquired = lock.acquire(key).await.unwrap();
    assert!(started.elapsed() < AT_ONCE, "{:?}", started.elapsed());
    acquired
}

/// `true` where `/proc` identifies this process; otherwise the tests say so and pass.
fn proc_available() -> bool {
    let available = cfg!(target_os = "linux") && me().is_some();
    if !available {
        eprintln!("skipped: no Linux /proc here, locks wait for their lease only");
    }
    available
}

#[tokio::test]
async fn a_lock_left_by_a_process_that_is_gone_is_taken_over_at_once() {
    if !proc_available() {
        return;
    }
    let tmp = TempDb::new();
    let db = open(&tmp).await;
    let gone = gone_process();
    leave_row(&tmp.path, "exec-1", "dead-runner", 30_000, Some(&gone)).await;
    let lock = db.lock();
    assert!(
        acquire_now(&lock, "exec-1").await,
        "the gone holder kept it"
    );
    lock.ensure_held("exec-1").unwrap();
    // The row now names this holder and this process, so the next resumer sees it alive.
    let (owner, pid) = row(&tmp.path, "exec-1").await;
    assert_eq!(owner, lock.owner());
    assert_eq!(pid, Some(i64::from(std::process::id())));
    assert!(!acquire_now(&db.lock(), "exec-1").await);
    lock.release("exec-1").await.unwrap();
}

#[tokio::test]
async fn a_lock_of_a_process_that_still_runs_is_not_taken_over() {
    if !proc_available() {
        return;
    }
    let tmp = TempDb::new();
    let db = open(&tmp).await;
    // Another holder of this very process, through the lock API.
    let holder = db.lock();
    assert!(holder.acquire("exec-own").await.unwrap());
    assert!(!acquire_now(&db.lock(), "exec-own").await);
    // A row naming this process under another owner id.
    leave_row(&tmp.path, "exec-me", "other-owner", 30_000, me().as_ref()).await;
    assert!(!acquire_now(&db.lock(), "exec-me").await);
    // A row naming a live child; once the child is killed, the same row is taken.
    let (mut child, recorded) = live_child();
    leave_row(&tmp.path, "exec-child", "child", 30_000, Some(&recorded)).await;
    let lock = db.lock();
    assert!(
        !acquire_now(&lock, "exec-child").await,
        "a live holder lost its key"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acquire_now(&lock, "exec-child").await);
    assert_eq!(row(&tmp.path, "exec-own").await.0, holder.owner());
    assert_eq!(row(&tmp.path, "exec-me").await.0, "other-owner");
}

#[tokio::test]
async fn a_recycled_pid_with_another_start_time_counts_as_gone() {
    if !proc_available() {
        return;
    }
    let tmp = TempDb::new();
    let db = open(&tmp).await;
    let mut recycled = me().unwrap();
    // This process has the pid now; the holder that recorded it started earlier.
    recycled.start_time -= 1;
    leave_row(&tmp.path, "exec-1", "old-runner", 30_000, Some(&recycled)).await;
    assert!(acquire_now(&db.lock(), "exec-1").await);
    // A live child that got the pid of a holder that started later.
    let (mut child, mut recorded) = live_child();
    recorded.start_time += 1;
    leave_row(&tmp.path, "exec-2", "old-runner", 30_000, Some(&recorded)).await;
    assert!(acquire_now(&db.lock(), "exec-2").await);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn rows_of_other_hosts_boots_and_namespaces_or_without_a_holder_wait_for_their_lease() {
    if !proc_available() {
        return;
    }
    let tmp = TempDb::new();
    let db = open(&tmp).await;
    let gone = gone_process();
    let elsewhere = [
        Holder {
            host: "another-host".into(),
            ..gone.clone()
        },
        Holder {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..gone.clone()
        },
        Holder {
            pid_ns: "pid:[1]".into(),
            ..gone.clone()
        },
    ];
    for (n, by) in elsewhere.iter().enumerate() {
        leave_row(&tmp.path, &format!("exec-{n}"), "far", 30_000, Some(by)).await;
        assert!(
            !acquire_now(&db.lock(), &format!("exec-{n}")).await,
            "{by:?}"
        );
    }
    leave_row(&tmp.path, "exec-old", "old-build", 30_000, None).await;
    assert!(!acquire_now(&db.lock(), "exec-old").await);
    // Once their lease has passed, they are free as before.
    leave_row(&tmp.path, "exec-old", "old-build", -1, None).await;
    assert!(acquire_now(&db.lock(), "exec-old").await);
    leave_row(&tmp.path, "exec-0", "far", -1, Some(&elsewhere[0])).await;
    assert!(acquire_now(&db.lock(), "exec-0").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_resumers_racing_for_a_gone_holders_lock_exactly_one_wins() {
    if !proc_available() {
        return;
    }
    const RESUMERS: usize = 8;
    let tmp = TempDb::new();
    // One handle each: their own write connections, so they race inside SQLite too.
    let mut handles = Vec::new();
    for _ in 0..RESUMERS {
        handles.push(open(&tmp).await);
    }
    for round in 0..10 {
        let key = format!("exec-{round}");
        leave_row(
            &tmp.path,
            &key,
            "dead-runner",
            30_000,
            Some(&gone_process()),
        )
        .await;
        let start = Arc::new(tokio::sync::Barrier::new(RESUMERS));
        let racers: Vec<_> = handles
            .iter()
            .map(|db| {
                let (lock, key, start) = (db.lock(), key.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    let won = lock.acquire(&key).await.unwrap();
                    (won, lock)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            let (won, lock) = racer.await.unwrap();
            if won {
                winners.push(lock);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(row(&tmp.path, &key).await.0, winners[0].owner());
    }
}

/// The helper side of [`a_runner_killed_with_sigkill_leaves_its_lock_to_the_next_acquire`].
pub(crate) async fn hold_lock(path: &Path) {
    let db = SqliteDatabase::connect(SqliteConfig::new(path).lock_lease(LEASE))
        .await
        .unwrap();
    let lock = db.lock();
    assert!(lock.acquire("exec-killed").await.unwrap());
    say(&format!("HELD {}", lock.owner()));
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_with_sigkill_leaves_its_lock_to_the_next_acquire() {
    if !proc_available() {
        return;
    }
    let tmp = TempDb::new();
    let db = open(&tmp).await;
    let helper = HelperProcess::spawn("faults::fault_helper", "hold-lock", &tmp.path);
    let line = helper.wait_for("HELD ");
    let helper_owner = &line["HELD ".len()..];
    let helper_pid = i64::from(helper.child.id());
    assert_eq!(
        row(&tmp.path, "exec-killed").await,
        (helper_owner.to_owned(), Some(helper_pid))
    );
    let lock = db.lock();
    // While it runs, another process's holder keeps the key.
    assert!(!acquire_now(&lock, "exec-killed").await);
    helper.kill();
    assert!(acquire_now(&lock, "exec-killed").await, "resume refused");
    lock.ensure_held("exec-killed").unwrap();
    lock.release("exec-killed").await.unwrap();
}
