//! Live progress on stderr while `flatmachines run` runs: the current state and step, the
//! progress of fan-outs (done/total, failures), and agent calls, tool calls, tokens and cost
//! so far.
//!
//! It is drawn only when stderr is a terminal and `--quiet` is not given. It hears the run
//! through a run observer (`RuntimeBuilder::observer`) rather than through machine hooks:
//! hooks see neither agent calls nor the children of a fan-out, and hooks given to the runtime
//! would replace the machine's own `hooks:`.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use flatmachines::{RunEvent, RunObserver};

/// At most this many fan-out bars are drawn at once; the rest are counted but not drawn.
const MAX_FAN_OUT_BARS: usize = 4;

/// The progress display of one command, or nothing.
#[derive(Clone, Default)]
pub(crate) struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// A display on stderr when `enabled`, else one that draws nothing.
    pub(crate) fn new(enabled: bool) -> Progress {
        Progress {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// The observer feeding the display, when it draws.
    pub(crate) fn observer(&self) -> Option<Arc<dyn RunObserver>> {
        let multi = self.multi.clone()?;
        Some(Arc::new(ProgressObserver {
            multi,
            state: Mutex::default(),
        }))
    }

    /// Clears the display and stops drawing, so that what follows (an error) starts on a
    /// clean line.
    pub(crate) fn clear(&self) {
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
    }

    /// Writes `bytes` to stderr with the display out of the way (for log lines).
    pub(crate) fn write_stderr(&self, bytes: &[u8]) -> std::io::Result<()> {
        match &self.multi {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(bytes)),
            None => std::io::stderr().write_all(bytes),
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("drawn", &self.multi.is_some())
            .finish()
    }
}

/// One fan-out being waited for.
struct FanOut {
    bar: Option<ProgressBar>,
    done: u64,
    failed: u64,
}

/// What the display shows, updated by events.
#[derive(Default)]
struct Shown {
    /// The spinner line, from the root's start to its end.
    main: Option<ProgressBar>,
    machine: String,
    state: String,
    step: u64,
    agent_calls: u64,
    tool_calls: u64,
    /// The last tool called, and whether it failed.
    last_tool: Option<(String, bool)>,
    tokens: u64,
    cost: f64,
    /// By parent execution id and state.
    fan_outs: HashMap<(String, String), FanOut>,
}

impl Shown {
    fn headline(&self) -> String {
        let mut line = if self.state.is_empty() {
            self.machine.clone()
        } else {
            format!("{} · step {} · {}", self.machine, self.step, self.state)
        };
        if self.agent_calls > 0 {
            line.push_str(&format!(
                " · {} agent call{}",
                self.agent_calls,
                if self.agent_calls == 1 { "" } else { "s" }
            ));
        }
        if self.tool_calls > 0 {
            line.push_str(&format!(
                " · {} tool call{}",
                self.tool_calls,
                if self.tool_calls == 1 { "" } else { "s" }
            ));
            if let Some((tool, failed)) = &self.last_tool {
                line.push_str(&format!(
                    " (last: {tool}{})",
                    if *failed { ", failed" } else { "" }
                ));
            }
        }
        if self.tokens > 0 {
            line.push_str(&format!(" · {} tokens", grouped(self.tokens)));
        }
        if self.cost > 0.0 {
            line.push_str(&format!(" · ${:.4}", self.cost));
        }
        line
    }

    fn drawn_bars(&self) -> usize {
        self.fan_outs.values().filter(|f| f.bar.is_some()).count()
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn fan_out_message(fan_out: &FanOut) -> String {
    if fan_out.failed > 0 {
        format!(" · {} failed", fan_out.failed)
    } else {
        String::new()
    }
}

struct ProgressObserver {
    multi: MultiProgress,
    state: Mutex<Shown>,
}

impl fmt::Debug for ProgressObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressObserver").finish_non_exhaustive()
    }
}

impl ProgressObserver {
    fn fan_out_bar(&self, label: &str, total: usize) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("  {prefix} [{bar:30}] {pos}/{len}{msg}")
                .map(|style| style.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(label.to_owned());
        bar
    }
}

impl RunObserver for ProgressObserver {
    fn on_event(&self, event: &RunEvent<'_>) {
        let mut shown = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *event {
            RunEvent::MachineStarted { execution } if execution.is_root() => {
                shown.machine = execution.machine.to_owned();
                let main = self.multi.add(ProgressBar::new_spinner());
                main.set_style(
                    ProgressStyle::with_template("{spinner} {msg} · {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                main.enable_steady_tick(Duration::from_millis(120));
                shown.main = Some(main);
            }
            RunEvent::StateEntered {
                execution,
                state,
                step,
            } if execution.is_root() => {
                shown.state = state.to_owned();
                shown.step = step;
            }
            RunEvent::AgentCalled { tokens, cost, .. } => {
                shown.agent_calls += 1;
                shown.tokens = shown.tokens.saturating_add(tokens.total());
                if cost.is_finite() && cost > 0.0 {
                    shown.cost += cost;
                }
            }
            RunEvent::ToolCalled { tool, is_error, .. } => {
                shown.tool_calls += 1;
                shown.last_tool = Some((tool.to_owned(), is_error));
            }
            RunEvent::FanOutStarted {
                execution,
                state,
                children,
            } => {
                let bar = (shown.drawn_bars() < MAX_FAN_OUT_BARS).then(|| {
                    let label = if execution.is_root() {
                        state.to_owned()
                    } else {
                        format!("{} › {state}", execution.machine)
                    };
                    self.fan_out_bar(&label, children)
                });
                shown.fan_outs.insert(
                    (execution.execution_id.to_owned(), state.to_owned()),
                    FanOut {
                        bar,
                        done: 0,
                        failed: 0,
                    },
                );
            }
            RunEvent::ChildFinished {
                execution,
                state,
                error,
                ..
            } => {
                let key = (execution.execution_id.to_owned(), state.to_owned());
                if let Some(fan_out) = shown.fan_outs.get_mut(&key) {
                    fan_out.done += 1;
                    fan_out.failed += u64::from(error.is_some());
                    if let Some(bar) = &fan_out.bar {
                        bar.set_position(fan_out.done);
                        bar.set_message(fan_out_message(fan_out));
                    }
                }
            }
            RunEvent::StateFinished {
                execution, state, ..
            } => {
                let key = (execution.execution_id.to_owned(), state.to_owned());
                if let Some(FanOut { bar: Some(bar), .. }) = shown.fan_outs.remove(&key) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            RunEvent::MachineFinished { execution, .. } if execution.is_root() => {
                if let Some(main) = shown.main.take() {
                    main.finish_and_clear();
                }
                for (_, fan_out) in shown.fan_outs.drain() {
                    if let Some(bar) = fan_out.bar {
                        bar.finish_and_clear();
                    }
                }
                return;
            }
            _ => return,
        }
        if let Some(main) = &shown.main {
            main.set_message(shown.headline());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn the_headline_shows_what_is_known() {
        let mut shown = Shown {
            machine: "report".into(),
            ..Shown::default()
        };
        assert_eq!(shown.headline(), "report");
        shown.state = "fan_out".into();
        shown.step = 3;
        assert_eq!(shown.headline(), "report · step 3 · fan_out");
        shown.agent_calls = 12;
        shown.tokens = 34_567;
        shown.cost = 0.01234;
        assert_eq!(
            shown.headline(),
            "report · step 3 · fan_out · 12 agent calls · 34,567 tokens · $0.0123"
        );
        shown.tool_calls = 2;
        shown.last_tool = Some(("search".into(), true));
        assert_eq!(
            shown.headline(),
            "report · step 3 · fan_out · 12 agent calls · 2 tool calls (last: search, failed) · 34,567 tokens · $0.0123"
        );
    }
}
