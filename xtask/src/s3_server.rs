//! An S3-compatible server on 127.0.0.1 for the S3 tests: the one already answering on port
//! 5000 (a developer's, or CI's `motoserver/moto` service), else a `moto_server` started here
//! on a free port (installed from PyPI into a cached virtualenv when it is not on `PATH`) and
//! stopped when the tests end: after passing or failing tests, and, on Unix, also when xtask
//! itself is interrupted or killed.

use std::env;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Where an already running server is looked for: CI's moto service listens there.
const PORT: u16 = 5000;
/// The bucket the tests use.
const BUCKET: &str = "flatmachines-test";
/// The moto releases the tests are known to work with.
const MOTO: &str = "moto[server]>=5,<6";
/// How long a started server may take to answer (its first start imports a lot of Python).
const STARTUP: Duration = Duration::from_secs(90);
/// How long a stopped server may take to exit before it is killed.
const SHUTDOWN: Duration = Duration::from_secs(10);
/// Starts tried before giving up, each on a new free port (another process may take the
/// port between the check and moto's bind).
const START_ATTEMPTS: usize = 3;

/// Runs moto in the background and stops it when its standard input closes, which happens
/// when xtask drops the pipe, exits, or is killed by any signal (SIGKILL included). Moto runs
/// with SIGINT ignored (a background job of a non-interactive shell), so a Ctrl-C reaches it
/// the same way: xtask dies, the pipe closes, the watcher stops moto. The shell's exit status
/// is moto's, so an early exit is seen.
const WATCHDOG: &str = r#"exec 3<&0
"$0" -H 127.0.0.1 -p "$1" </dev/null &
moto=$!
( read -r line <&3; kill "$moto" 2>/dev/null ) &
wait "$moto""#;

/// The server the tests run against: its environment for them, and the process to stop if
/// this run started it.
pub(crate) struct S3Server {
    env: Vec<(String, String)>,
    started: Option<Started>,
}

/// A server this run started.
struct Started {
    child: Child,
    /// Its log, removed after a clean stop.
    log: PathBuf,
}

impl S3Server {
    /// Finds or starts a server. Without one, S3 tests skip visibly; under CI (`CI=true`)
    /// that is an error instead.
    pub(crate) fn prepare() -> Result<S3Server, String> {
        let ci = env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if env::var("FLATMACHINES_TEST_S3_URL").is_ok_and(|url| !url.is_empty()) {
            eprintln!("xtask: s3: using FLATMACHINES_TEST_S3_URL as given");
            return Ok(S3Server {
                env: Vec::new(),
                started: None,
            });
        }
        match Self::find_or_start() {
            Ok(server) => Ok(server),
            Err(reason) if ci => Err(format!("no S3-compatible server for the tests: {reason}")),
            Err(reason) => {
                eprintln!(
                    "xtask: s3: WARNING: no S3-compatible server ({reason}); the S3 tests will be skipped"
                );
                Ok(S3Server {
                    env: Vec::new(),
                    started: None,
                })
            }
        }
    }

    fn find_or_start() -> Result<S3Server, String> {
        if answers_as_s3(PORT) {
            eprintln!("xtask: s3: an S3-compatible server answers on 127.0.0.1:{PORT}; using it");
            return Ok(Self::ready(PORT, None));
        }
        let moto = moto_server()?;
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            // A port of our own rather than 5000: a concurrent run then cannot come to rely
            // on a server this run stops.
            let port = free_port()?;
            match start(&moto, port) {
                Ok(child) => return Ok(Self::ready(port, Some(child))),
                Err(Start::Exited(reason)) => {
                    eprintln!("xtask: s3: {reason}; trying another port");
                    last_error = reason;
                }
                Err(Start::Failed(reason)) => return Err(reason),
            }
        }
        Err(last_error)
    }

    /// The server on `port`, its bucket created.
    fn ready(port: u16, started: Option<Started>) -> S3Server {
        // Best effort: moto takes unsigned requests; the tests create the bucket themselves
        // (signed) on a loopback server that refused this.
        if let Err(e) = create_bucket(port) {
            eprintln!("xtask: s3: could not create bucket `{BUCKET}` ({e}); the tests will try");
        }
        S3Server {
            env: test_env(port),
            started,
        }
    }

    /// The variables the tests need: where the store is, and the emulator's dummy
    /// credentials (never real ones: the emulator does not need them).
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let Some(Started { child, log }) = &mut self.started else {
            return;
        };
        eprintln!("xtask: s3: stopping moto_server (pid {})", child.id());
        // Closing the pipe tells the watchdog to stop moto; without one, kill it directly.
        let watched = child.stdin.take().is_some();
        if watched {
            let deadline = Instant::now() + SHUTDOWN;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    let _ = fs::remove_file(log);
                    return;
                }
                sleep(Duration::from_millis(100));
            }
            eprintln!("xtask: s3: moto_server did not stop within {SHUTDOWN:?}; killing it");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn test_env(port: u16) -> Vec<(String, String)> {
    let endpoint = format!("http://127.0.0.1:{port}");
    [
        ("FLATMACHINES_TEST_S3_URL", format!("s3://{BUCKET}/")),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        // No instance-metadata lookups: nothing here runs on EC2.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Sends one raw HTTP/1.1 request to 127.0.0.1:`port`; the response as text.
fn http(port: u16, method: &str, path: &str) -> Result<String, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))
        .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
    let timeout = Some(Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // Bounded: an answer larger than this is not one we care about.
    let _ = stream.take(1 << 20).read_to_end(&mut response);
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Whether an S3-compatible server answers on `port` (and not some other web server).
fn answers_as_s3(port: u16) -> bool {
    http(port, "GET", "/").is_ok_and(|response| {
        response.starts_with("HTTP/")
            && (response.contains("ListAllMyBucketsResult")
                || response.to_ascii_lowercase().contains("x-amz"))
    })
}

fn create_bucket(port: u16) -> Result<(), String> {
    let response = http(port, "PUT", &format!("/{BUCKET}"))?;
    let status = response.split(' ').nth(1).unwrap_or_default();
    if status == "200" || response.contains("BucketAlreadyOwnedByYou") {
        Ok(())
    } else {
        Err(format!(
            "HTTP {status}: {}",
            response.lines().last().unwrap_or_default()
        ))
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// Where the installs of `tool` (`moto`, `mcp`) and its servers' logs are kept between runs.
pub(crate) fn cache_dir(tool: &str) -> PathBuf {
    let base = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(env::temp_dir);
    base.join("flatmachines-rs").join(tool)
}

/// Creates `cache` and takes its install lock, held until the file is dropped: one installer
/// at a time, so concurrent runs wait here, then find the install done.
pub(crate) fn install_lock(cache: &Path) -> Result<fs::File, String> {
    fs::create_dir_all(cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let lock_path = cache.join("install.lock");
    let lock = fs::File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    Ok(lock)
}

pub(crate) fn venv_bin(venv: &Path, program: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{program}.exe"))
    } else {
        venv.join("bin").join(program)
    }
}

fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `moto_server` from `PATH`, else from the cached virtualenv, which is (re)created with
/// `python3 -m venv` and filled by pip from PyPI when it has no working `moto_server`.
fn moto_server() -> Result<PathBuf, String> {
    let on_path = PathBuf::from("moto_server");
    if runs(&on_path) {
        return Ok(on_path);
    }
    let cache = cache_dir("moto");
    let venv = cache.join("venv");
    let cached = venv_bin(&venv, "moto_server");
    if runs(&cached) {
        return Ok(cached);
    }
    let _lock = install_lock(&cache)?;
    if runs(&cached) {
        return Ok(cached);
    }
    eprintln!(
        "xtask: s3: moto_server is not on PATH; installing {MOTO} from PyPI into {} (once; this takes a minute)",
        venv.display()
    );
    fresh_venv_with(&venv, &[MOTO])?;
    if runs(&cached) {
        Ok(cached)
    } else {
        Err(format!(
            "{} does not run after installing",
            cached.display()
        ))
    }
}

/// (Re)creates the virtualenv `venv` and installs `requirements` into it from PyPI.
/// `--clear`: an install cut off earlier leaves a venv without a working package.
pub(crate) fn fresh_venv_with(venv: &Path, requirements: &[&str]) -> Result<(), String> {
    let python = if cfg!(windows) { "python" } else { "python3" };
    step(
        Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(venv),
        "python3 -m venv (on Debian and Ubuntu it needs the python3-venv package)",
    )?;
    step(
        Command::new(venv_bin(venv, "python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                // Bounded waits on the network rather than pip's defaults.
                "--timeout",
                "60",
                "--retries",
                "3",
            ])
            .args(requirements),
        &format!("pip install {}", requirements.join(" ")),
    )
}

pub(crate) fn step(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{what}: cannot start it: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Why a start did not give a server.
enum Start {
    /// The server exited before answering (its port may have been taken): worth a retry.
    Exited(String),
    /// Anything else.
    Failed(String),
}

/// Starts moto on 127.0.0.1:`port`, its log in the cache directory, and waits (bounded) until
/// it answers.
fn start(moto: &Path, port: u16) -> Result<Started, Start> {
    let cache = cache_dir("moto");
    let _ = fs::create_dir_all(&cache);
    let log_path = cache.join(format!("moto-{port}.log"));
    let log = fs::File::create(&log_path)
        .map_err(|e| Start::Failed(format!("cannot create {}: {e}", log_path.display())))?;
    let err_log = log.try_clone().map_err(|e| Start::Failed(e.to_string()))?;
    let mut command = if cfg!(unix) {
        let mut command = Command::new("sh");
        command
            .args(["-c", WATCHDOG])
            .arg(moto)
            .arg(port.to_string())
            .stdin(Stdio::piped());
        command
    } else {
        let mut command = Command::new(moto);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null());
        command
    };
    let mut child = command
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| Start::Failed(format!("cannot start {}: {e}", moto.display())))?;
    eprintln!(
        "xtask: s3: started moto_server on 127.0.0.1:{port} (log {})",
        log_path.display()
    );
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        if answers_as_s3(port) {
            return Ok(Started {
                child,
                log: log_path,
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Start::Exited(format!(
                "moto_server exited ({status}) before answering on port {port}; see {}",
                log_path.display()
            )));
        }
        sleep(Duration::from_millis(200));
    }
    // Dropping the pipe stops it through the watchdog; the kill covers the rest.
    drop(child.stdin.take());
    sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    Err(Start::Failed(format!(
        "moto_server did not answer on 127.0.0.1:{port} within {STARTUP:?}; see {}",
        log_path.display()
    )))
}
