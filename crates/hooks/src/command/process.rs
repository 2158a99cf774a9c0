//! A running hook process: one request line out, one reply line in, its stderr logged.
//!
//! The process leads its own process group (see `Launch::command`). Whenever it is stopped,
//! the whole group is killed: killing the leader alone would leave what it started in the
//! background (`sleep 300 &`, a server, a worker pool) running, holding its pipes open.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use flatmachines_core::JsonMap;

use crate::error::{DeliveryError, clip};

use super::launch::Launch;

/// The longest reply line read; contexts are big, but not this big.
const MAX_REPLY_LINE: usize = 32 * 1024 * 1024;
/// Stderr lines are cut at this length.
const MAX_STDERR_LINE: usize = 8 * 1024;
/// How many stderr lines an error message quotes.
const STDERR_TAIL_LINES: usize = 20;
/// How long a process that closed its stdout gets to report its exit status.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How long a process gets to exit once its stdin is closed, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// Why an exchange did not give a reply.
pub(super) enum ExchangeError {
    /// The process closed its end (it exited, or is exiting).
    Ended,
    /// It answered with something that is not a reply; the text says what.
    Garbage(String),
}

/// The last lines a process wrote to stderr.
type StderrTail = Arc<Mutex<VecDeque<String>>>;

#[derive(Debug)]
pub(super) struct Live {
    child: Option<Child>,
    /// The process group the child leads (its pid), killed with it.
    group: Option<u32>,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr_tail: StderrTail,
    stderr_task: Option<JoinHandle<()>>,
    /// A request was written and its reply not yet read.
    in_flight: bool,
}

impl Live {
    /// Starts the process `launch` describes, with its environment drawn from this
    /// process's.
    pub(super) fn spawn(launch: &Launch, hook: &str) -> Result<Live, DeliveryError> {
        let mut child =
            launch
                .command(std::env::vars_os())
                .spawn()
                .map_err(|e| DeliveryError::Spawn {
                    hook: hook.to_owned(),
                    message: match &launch.cwd {
                        Some(cwd) => format!("{e} (started in {})", cwd.display()),
                        None => e.to_string(),
                    },
                })?;
        // `process_group(0)` made the child the leader of a group numbered with its pid.
        let group = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill_group(group);
            let _ = child.start_kill();
            return Err(DeliveryError::Spawn {
                hook: hook.to_owned(),
                message: "its standard streams could not be opened".to_owned(),
            });
        };
        let stderr_tail = StderrTail::default();
        let stderr_task = tokio::spawn(forward_stderr(
            BufReader::new(stderr),
            hook.to_owned(),
            Arc::clone(&stderr_tail),
        ));
        Ok(Live {
            child: Some(child),
            group,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            stderr_tail,
            stderr_task: Some(stderr_task),
            in_flight: false,
        })
    }

    /// A guard killing the process group if it is dropped armed: held across an exchange, it
    /// stops the hook when the exchange's future is dropped half-way (a cancelled run).
    pub(super) fn guard(&self) -> GroupGuard {
        GroupGuard(self.group)
    }

    /// Whether an exchange was abandoned after its request was written.
    pub(super) fn interrupted(&self) -> bool {
        self.in_flight
    }

    /// Writes `request` (one line) and reads the reply to request `id`.
    pub(super) async fn exchange(
        &mut self,
        request: &[u8],
        id: u64,
    ) -> Result<Option<JsonMap>, ExchangeError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(ExchangeError::Ended);
        };
        self.in_flight = true;
        // Any write error means the process no longer reads its stdin.
        stdin
            .write_all(request)
            .await
            .map_err(|_| ExchangeError::Ended)?;
        stdin.flush().await.map_err(|_| ExchangeError::Ended)?;
        loop {
            let (line, cut) = match read_line(&mut self.stdout, MAX_REPLY_LINE).await {
                Ok(Some(read)) => read,
                Ok(None) | Err(_) => return Err(ExchangeError::Ended),
            };
            if cut {
                return Err(ExchangeError::Garbage(format!(
                    "a line longer than {MAX_REPLY_LINE} bytes"
                )));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            // Blank lines are tolerated, so `echo` after a reply does no harm.
            if text.is_empty() {
                continue;
            }
            let reply = parse_reply(text, id).map_err(ExchangeError::Garbage)?;
            self.in_flight = false;
            return Ok(reply);
        }
    }

    /// The error for a process that stopped answering: how it exited and what it last said.
    pub(super) async fn ended(&mut self, hook: &str, event: &'static str) -> DeliveryError {
        let status = match self.child.as_mut() {
            Some(child) => match tokio::time::timeout(EXIT_WAIT, child.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                Ok(Err(e)) => format!("its exit status is unknown: {e}"),
                Err(_) => {
                    kill_group(self.group);
                    let _ = child.start_kill();
                    "it closed its stdout but kept running, and was stopped".to_owned()
                }
            },
            None => "already stopped".to_owned(),
        };
        // The stderr reader ends with the process; let it take the last lines first.
        if let Some(task) = self.stderr_task.as_mut() {
            let _ = tokio::time::timeout(EXIT_WAIT, task).await;
        }
        let stderr = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        DeliveryError::Exited {
            hook: hook.to_owned(),
            event,
            status,
            stderr,
        }
    }

    /// Stops the process and its group now (a hung or confused one).
    pub(super) fn kill(&mut self) {
        // The group first, while the unreaped leader keeps its pid (the group's id) reserved.
        kill_group(self.group);
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Kills a process group when dropped armed; see [`Live::guard`].
#[must_use = "the guard kills the group when dropped; disarm it once the exchange is over"]
pub(super) struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// The exchange finished (well or not): the caller decides what happens to the process.
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0.take());
    }
}

/// Sends `SIGKILL` to every process in the group `group` leads: the hook and whatever it
/// started that did not leave the group. A group already gone is no error.
///
/// Killing a group after its leader was reaped is safe enough: the kernel does not reuse a
/// pid while a group of that id has members, and once it has none, only a new group leader
/// given the same pid after the whole pid space wrapped around could be hit.
#[cfg(unix)]
fn kill_group(group: Option<u32>) {
    use rustix::process::{Pid, Signal, kill_process_group};

    // `kill(-1)` would signal every process we may signal; a hook's group is never 0 or 1.
    let Some(pid) = group
        .and_then(|group| i32::try_from(group).ok())
        .filter(|group| *group > 1)
        .and_then(Pid::from_raw)
    else {
        return;
    };
    match kill_process_group(pid, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => {
            tracing::debug!(target: "flatmachines::hooks", group = pid.as_raw_nonzero().get(), error = %e, "cannot kill a hook's process group");
        }
    }
}

/// Without process groups, only the hook itself is killed (by its `Child`).
#[cfg(not(unix))]
fn kill_group(_group: Option<u32>) {}

impl Drop for Live {
    /// Closes the process's stdin, which tells it to finish, and gives it a few seconds to
    /// exit before killing it; then whatever is left of its group is killed too. A plain
    /// thread waits, so this works whether or not an async runtime is still running.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let group = self.group;
        let Some(mut child) = self.child.take() else {
            kill_group(group);
            return;
        };
        let reaper = std::thread::Builder::new()
            .name("flatmachines-hook-reaper".to_owned())
            .spawn(move || {
                let step = Duration::from_millis(50);
                let mut waited = Duration::ZERO;
                while waited < EXIT_GRACE {
                    if !matches!(child.try_wait(), Ok(None)) {
                        // The hook is done; what it left running in its group is not kept.
                        kill_group(group);
                        return;
                    }
                    std::thread::sleep(step);
                    waited += step;
                }
                kill_group(group);
                let _ = child.start_kill();
            });
        if let Err(e) = reaper {
            // No thread to wait with: stop everything now rather than leave it running.
            kill_group(group);
            tracing::debug!(target: "flatmachines::hooks", error = %e, "no thread to wait for a hook process; it was killed");
        }
    }
}

/// Reads a reply line: a JSON object (or `null`, no changes), with the request's id if any.
fn parse_reply(text: &str, id: u64) -> Result<Option<JsonMap>, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("a line that is not JSON ({e}): `{}`", clip(text, 120)))?;
    let mut map = match value {
        Value::Object(map) => map,
        Value::Null => return Ok(None),
        other => {
            return Err(format!(
                "{}, where a JSON object was expected: `{}`",
                flatmachines_core::config::describe(&other),
                clip(text, 120)
            ));
        }
    };
    match map.remove("id") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64() == Some(id) => {}
        Some(other) => {
            return Err(format!(
                "a reply to request {other}, while the reply to request {id} was awaited"
            ));
        }
    }
    Ok(Some(map))
}

/// One line of at most `limit` bytes, without reading further; `None` at the end of the
/// stream. The flag tells whether the line was longer and cut.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    let cut = line.len() > limit;
    if cut {
        line.truncate(limit);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some((line, cut)))
}

/// Logs each stderr line of the hook and keeps the last ones for error messages.
async fn forward_stderr<R: AsyncBufRead + Unpin>(mut reader: R, hook: String, tail: StderrTail) {
    loop {
        let (line, cut) = match read_line(&mut reader, MAX_STDERR_LINE).await {
            Ok(Some(read)) => read,
            Ok(None) | Err(_) => return,
        };
        if cut {
            // Drop the rest of an overlong line.
            let mut rest = Vec::new();
            if reader.read_until(b'\n', &mut rest).await.is_err() {
                return;
            }
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        tracing::info!(target: "flatmachines::hooks", hook = %hook, "{text}");
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_objects_with_the_awaited_id() {
        assert_eq!(parse_reply("{}", 1), Ok(Some(JsonMap::new())));
        assert_eq!(parse_reply("null", 1), Ok(None));
        let reply = parse_reply(r#"{"id": 4, "to_state": "b"}"#, 4)
            .unwrap()
            .unwrap();
        assert_eq!(reply.get("to_state"), Some(&Value::from("b")));
        assert!(!reply.contains_key("id"));
        assert_eq!(
            parse_reply(r#"{"id": 3}"#, 4),
            Err("a reply to request 3, while the reply to request 4 was awaited".into())
        );
        let garbage = parse_reply("hello from the hook", 1).unwrap_err();
        assert!(
            garbage.starts_with("a line that is not JSON ("),
            "{garbage}"
        );
        assert!(garbage.ends_with("`hello from the hook`"), "{garbage}");
        assert_eq!(
            parse_reply("[1]", 1),
            Err("a list, where a JSON object was expected: `[1]`".into())
        );
    }

    proptest::proptest! {
        /// Any line a hook prints is either a reply or a message saying what is wrong with it.
        #[test]
        fn any_line_is_a_reply_or_an_error(text in ".{0,200}", id in 1u64..1000) {
            let _ = parse_reply(&text, id);
        }

        /// An object's keys come back as the reply, without its `id`.
        #[test]
        fn object_replies_keep_their_keys(
            keys in proptest::collection::btree_map("[a-z_]{1,12}", proptest::num::i64::ANY, 0..6),
            id in 1u64..1000,
        ) {
            let expected: JsonMap = keys
                .iter()
                .filter(|(key, _)| key.as_str() != "id")
                .map(|(key, value)| (key.clone(), Value::from(*value)))
                .collect();
            let mut line = expected.clone();
            line.insert("id".to_owned(), Value::from(id));
            let text = Value::Object(line).to_string();
            proptest::prop_assert_eq!(parse_reply(&text, id), Ok(Some(expected)));
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut input: &[u8] = b"short\nlonger line\n\nlast";
        assert_eq!(
            read_line(&mut input, 64).await.unwrap(),
            Some((b"short".to_vec(), false))
        );
        assert_eq!(
            read_line(&mut input, 6).await.unwrap(),
            Some((b"longer".to_vec(), true))
        );
        // The byte that showed the line was too long is consumed with it.
        assert_eq!(
            read_line(&mut input, 64).await.unwrap(),
            Some((b"line".to_vec(), false))
        );
        assert_eq!(
            read_line(&mut input, 64).await.unwrap(),
            Some((Vec::new(), false))
        );
        assert_eq!(
            read_line(&mut input, 64).await.unwrap(),
            Some((b"last".to_vec(), false))
        );
        assert_eq!(read_line(&mut input, 64).await.unwrap(), None);
    }
}
