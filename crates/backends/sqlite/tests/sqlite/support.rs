//! Helpers: temporary databases and helper processes re-executing this test binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};

/// A database file in a fresh temporary directory, removed with it.
pub(crate) struct TempDb {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

impl TempDb {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("flatmachines-sqlite-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("db.sqlite");
        TempDb { dir, path }
    }

    pub(crate) fn config(&self) -> SqliteConfig {
        SqliteConfig::new(&self.path)
    }

    pub(crate) async fn open(&self) -> SqliteDatabase {
        SqliteDatabase::connect(self.config()).await.unwrap()
    }
}

/// Names the task a helper process runs; see `faults::fault_helper`.
pub(crate) const HELPER_TASK_ENV: &str = "FLATMACHINES_SQLITE_TEST_TASK";
/// The database file a helper process opens.
pub(crate) const HELPER_DB_ENV: &str = "FLATMACHINES_SQLITE_TEST_DB";

/// A helper process: this test binary again, running only `test_name` with `task` set.
pub(crate) struct HelperProcess {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
}

impl HelperProcess {
    pub(crate) fn spawn(test_name: &str, task: &str, db: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
            .env(HELPER_TASK_ENV, task)
            .env(HELPER_DB_ENV, db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print `test name ... ` before the helper's own words.
                if let Some(at) = line.find("@helper ")
                    && tx.send(line[at + "@helper ".len()..].to_owned()).is_err()
                {
                    break;
                }
            }
        });
        HelperProcess { child, lines }
    }

    /// The next line the helper said, waiting at most a minute.
    pub(crate) fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the helper process said nothing for a minute")
    }

    /// Waits until the helper says a line starting with `prefix`; returns that line.
    pub(crate) fn wait_for(&self, prefix: &str) -> String {
        loop {
            let line = self.next_line();
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for a normal exit.
    pub(crate) fn finish(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "helper process failed: {status}");
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Says a line for the parent test, from inside a helper process.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@helper {line}");
    let _ = out.flush();
}
