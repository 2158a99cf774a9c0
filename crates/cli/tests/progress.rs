//! Live progress, seen the way a person sees it: the CLI runs in a pseudo-terminal and a
//! terminal emulator (vt100) turns what it writes into a screen, which the tests read.

mod support;

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, PtySize, native_pty_system};

use support::{API_KEY, binary, command, llm, machines, output, text};

/// The CLI running in a 24×100 pseudo-terminal, and the screen it draws.
struct Terminal {
    child: Box<dyn Child + Send + Sync>,
    screen: Arc<Mutex<vt100::Parser>>,
    // Kept open while the reader runs.
    _master: Mutex<Box<dyn portable_pty::MasterPty + Send>>,
}

impl Terminal {
    fn run(dir: &Path, args: &[&str]) -> Terminal {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 100,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(binary());
        command.args(args);
        command.cwd(dir);
        command.env("TERM", "xterm-256color");
        command.env("FLATMACHINES_TEST_API_KEY", API_KEY);
        for variable in [
            "FLATMACHINES_LOG",
            "RUST_LOG",
            "FLATAGENTS_LOG_LEVEL",
            "FLATAGENTS_LOG_FORMAT",
        ] {
            command.env_remove(variable);
        }
        let child = pty.slave.spawn_command(command).expect("the CLI starts");
        drop(pty.slave);
        let size = |n| std::num::NonZeroU16::new(n).expect("not zero");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(size(24), size(100), 0)));
        let mut reader = pty.master.try_clone_reader().expect("a reader");
        let parser = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends when the CLI exits and the terminal closes.
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                parser
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .process(&buffer[..read]);
            }
        });
        Terminal {
            child,
            screen,
            _master: Mutex::new(pty.master),
        }
    }

    /// The screen's text, row by row, trailing blanks dropped.
    fn screen(&self) -> String {
        let parser = self.screen.lock().unwrap_or_else(PoisonError::into_inner);
        let rows: Vec<String> = parser
            .screen()
            .rows(0, 100)
            .map(|row| row.trim_end().to_owned())
            .collect();
        rows.join("\n").trim_end().to_owned()
    }

    /// Waits (at most 60 s) until the screen shows every one of `texts`, and returns it.
    async fn wait_for(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if texts.iter().all(|text| screen.contains(text)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {texts:?}; it shows:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most 60 s) for the CLI to exit.
    async fn wait_exit(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("status") {
                return status.exit_code();
            }
            assert!(
                Instant::now() < deadline,
                "the CLI did not exit:\n{}",
                self.screen()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spinner glyph and the elapsed time change from frame to frame.
fn steady(screen: &str) -> String {
    screen
        .lines()
        .map(|line| {
            let line = match line.strip_prefix(|c: char| ('\u{2800}'..='\u{28ff}').contains(&c)) {
                Some(rest) => format!("*{rest}"),
                None => line.to_owned(),
            };
            match line.rsplit_once(" · ") {
                Some((head, elapsed))
                    if elapsed.ends_with('s')
                        && elapsed[..elapsed.len() - 1].parse::<u64>().is_ok() =>
                {
                    format!("{head} · [elapsed]")
                }
                _ => line.clone(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_shows_the_state_the_fan_out_tokens_and_cost() {
    let server = llm().await;
    let dir = machines(&server.uri(), "");
    let terminal = Terminal::run(
        dir.path(),
        &[
            "run",
            "parent.yml",
            "--input",
            r#"{"items": ["a", "slow", "bad", "c"]}"#,
        ],
    );
    // Three children end at once, `bad` failing; `slow` keeps the fan-out open. Five calls
    // started, four ended: the first state's, a's and c's of 17 tokens at $0.017 each, and
    // bad's, which failed.
    let screen = terminal
        .wait_for(&["3/4 · 1 failed", "4 agent calls · 51 tokens · $0.0510"])
        .await;
    println!("{screen}");
    insta::assert_snapshot!("fan_out_in_progress", steady(&screen));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_leaves_only_its_output_on_the_screen() {
    let server = llm().await;
    let dir = machines(&server.uri(), "");
    let mut terminal = Terminal::run(
        dir.path(),
        &[
            "run",
            "parent.yml",
            "--input",
            r#"{"items": ["a", "b", "c"]}"#,
        ],
    );
    assert_eq!(terminal.wait_exit().await, 0);
    let screen = terminal.wait_for(&["{\"count\": 3}"]).await;
    assert_eq!(screen, "{\"count\": 3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_draws_nothing_even_on_a_terminal() {
    let server = llm().await;
    let dir = machines(&server.uri(), "");
    let terminal = Terminal::run(
        dir.path(),
        &[
            "run",
            "--quiet",
            "parent.yml",
            "--input",
            r#"{"items": ["a", "slow"]}"#,
        ],
    );
    // Once the slow call is in flight the run has drawn all it would have drawn.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.received_requests().await.unwrap_or_default().len() < 3 {
        assert!(Instant::now() < deadline, "the calls were not made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let a progress display, were there one, tick a few times (it redraws every 120 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(terminal.screen(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_that_is_not_a_terminal_gets_no_progress() {
    let server = llm().await;
    let dir = machines(&server.uri(), "");
    let mut run = command(dir.path());
    run.args(["run", "parent.yml", "--input", r#"{"items": ["a", "b"]}"#]);
    let result = output(run).await;
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(text(&result.stdout), "{\"count\": 2}\n");
    assert_eq!(text(&result.stderr), "", "nothing but logs goes to a pipe");
}
