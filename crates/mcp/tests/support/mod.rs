//! What the MCP tests share: the real servers they start, where the test command installed
//! them, and a check that no server process outlives a test.

#![allow(dead_code, unreachable_pub, reason = "each test file uses part of it")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Whether a missing server must fail the test (`CI=true`) rather than skip it.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Where `cargo xtask test` installs the servers (`xtask/src/mcp_servers.rs`).
fn cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("flatmachines-rs")
        .join("mcp")
}

/// `variable`, else `fallback` if it exists; `None` (a skip, said on stderr) only outside
/// CI.
fn installed(variable: &str, fallback: PathBuf, what: &str) -> Option<PathBuf> {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or(fallback);
    if path.exists() {
        return Some(path);
    }
    assert!(
        !in_ci(),
        "{what} is not installed at {} (set {variable}); `cargo xtask test` installs it",
        path.display()
    );
    eprintln!(
        "skipped: {what} is not installed at {} (run `cargo xtask test`, or set {variable})",
        path.display()
    );
    None
}

/// A Python with the `mcp` package.
pub fn python() -> Option<PathBuf> {
    installed(
        "FLATMACHINES_TEST_MCP_PYTHON",
        cache().join("venv").join("bin").join("python"),
        "a Python with the `mcp` package",
    )
}

/// `mcp-server-everything` from npm.
pub fn everything() -> Option<PathBuf> {
    installed(
        "FLATMACHINES_TEST_MCP_EVERYTHING",
        cache()
            .join("npm")
            .join("node_modules")
            .join(".bin")
            .join("mcp-server-everything"),
        "@modelcontextprotocol/server-everything",
    )
}

/// Our own test server, written with the `mcp` package.
pub fn calc_server() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/calc_server.py")
}

/// A mark put in a test's server environments, to find their processes afterwards.
pub fn marker() -> String {
    format!(
        "fm-mcp-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// The processes whose environment holds `FM_TEST_MARKER=marker` (zombies excluded).
pub fn processes_with(marker: &str) -> Vec<u32> {
    let needle = format!("FM_TEST_MARKER={marker}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie
                && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|b| *b == 0)
                        .any(|entry| entry == needle.as_bytes())
                })
        })
        .collect()
}

/// Fails unless every process marked `marker` is gone (they get a few seconds to exit).
pub fn assert_no_process_left(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server processes outlived the test: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The calls a calc server logged, as `(tool, arguments, call_id)`.
pub fn logged_calls(log: &Path) -> Vec<(String, Value, Option<String>)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|entry| {
            (
                entry["tool"].as_str().unwrap_or_default().to_owned(),
                entry["arguments"].clone(),
                entry["call_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The calc server over streamable HTTP, stopped (its group killed) when dropped.
pub struct HttpServer {
    child: std::process::Child,
    pub url: String,
}

impl HttpServer {
    pub fn start(python: &Path, log: &Path, marker: &str) -> HttpServer {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = std::process::Command::new(python)
            .arg(calc_server())
            .args(["http", &port.to_string()])
            .env("CALC_SERVER_LOG", log)
            .env("FM_TEST_MARKER", marker)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("the calc server starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the calc server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
