//! Test agents and hooks shared by the engine's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use flatmachines_core::hooks::HookError;
use flatmachines_core::{AgentError, AgentResult, Context, JsonMap, MachineHooks, StateError};
use flatmachines_engine::{FnAgent, Runtime, RuntimeBuilder};

pub fn object(value: Value) -> JsonMap {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn number(input: &JsonMap, key: &str) -> i64 {
    input.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A runtime with the test agents and the `TestHooks` hook type registered.
pub fn test_runtime() -> Runtime {
    with_test_agents(Runtime::builder()).build()
}

pub fn with_test_agents(builder: RuntimeBuilder) -> RuntimeBuilder {
    let flaky_calls = Arc::new(AtomicU64::new(0));
    let vote_calls = Arc::new(AtomicU64::new(0));
    builder
        // Returns its input.
        .agent(
            "echo",
            FnAgent::new(|input, _| async move { Ok(AgentResult::with_output(input)) }).shared(),
        )
        // {value: x * 2}, one API call costing 0.25.
        .agent(
            "double",
            FnAgent::new(|input, _| async move {
                let mut result =
                    AgentResult::with_output(object(json!({"value": number(&input, "x") * 2})));
                result.usage = Some(object(json!({"api_calls": 1})));
                result.cost = Some(0.25);
                Ok(result)
            })
            .shared(),
        )
        // Always fails like a rate-limited provider.
        .agent(
            "fail",
            FnAgent::new(|_, _| async move {
                Err(AgentError::new("rate limited by the provider")
                    .with_type("RateLimitError")
                    .with_status(429)
                    .with_header("Retry-After", "7"))
            })
            .shared(),
        )
        // Fails its first `failures` calls (counted across the runtime), then succeeds.
        .agent(
            "flaky",
            FnAgent::new(move |input, _| {
                let calls = Arc::clone(&flaky_calls);
                async move {
                    let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    if call <= number(&input, "failures") as u64 {
                        return Err(AgentError::new(format!("transient failure {call}")));
                    }
                    let mut result = AgentResult::with_output(object(json!({"attempt": call})));
                    result.usage = Some(object(json!({"requests": 1})));
                    Ok(result)
                }
            })
            .shared(),
        )
        // Sleeps `ms` milliseconds, then returns {name, slept}.
        .agent(
            "sleep",
            FnAgent::new(|input, _| async move {
                let ms = number(&input, "ms").max(0) as u64;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(AgentResult::with_output(object(
                    json!({"name": input.get("name").cloned().unwrap_or(Value::Null), "slept": ms}),
                )))
            })
            .shared(),
        )
        // Answers with `answers[i]` on its i-th call, as text.
        .agent(
            "vote",
            FnAgent::new(move |input, _| {
                let calls = Arc::clone(&vote_calls);
                async move {
                    let call = calls.fetch_add(1, Ordering::SeqCst) as usize;
                    let answers = input
                        .get("answers")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let answer = answers
                        .get(call % answers.len().max(1))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    let mut result = AgentResult::with_content(format!("ANSWER: {answer}"));
                    result.usage = Some(object(json!({"api_calls": 1})));
                    Ok(result)
                }
            })
            .with_metadata(object(json!({
                "parsing": {"answer": {"pattern": "ANSWER: (\\w+)", "type": "str"}}
            })))
            .shared(),
        )
        .hook_type("TestHooks", |args, _| {
            Ok(Arc::new(TestHooks { args: args.clone() }))
        })
}

/// Actions `increment` (context.counter += 1) and `explode` (fails); `on_error` recovers to
/// `args.recover_to`; `on_transition` sends `args.redirect_from` → `args.redirect_to`.
#[derive(Debug)]
pub struct TestHooks {
    args: JsonMap,
}

#[async_trait]
impl MachineHooks for TestHooks {
    async fn on_action(&self, action: &str, context: &mut Context) -> Result<bool, HookError> {
        match action {
            "increment" => {
                let counter = context.get("counter").and_then(Value::as_i64).unwrap_or(0);
                context.insert("counter".into(), json!(counter + 1));
                Ok(true)
            }
            "explode" => Err(HookError::new("the explode action always fails")),
            _ => Ok(false),
        }
    }

    async fn on_error(
        &self,
        _state: &str,
        error: &StateError,
        context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        context.insert("hook_saw".into(), json!(error.error_type));
        Ok(self
            .args
            .get("recover_to")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    async fn on_transition(
        &self,
        from: &str,
        _to: &str,
        _context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        let from_matches = self.args.get("redirect_from").and_then(Value::as_str) == Some(from);
        Ok(from_matches
            .then(|| self.args.get("redirect_to").and_then(Value::as_str))
            .flatten()
            .map(str::to_owned))
    }
}

/// A memory store whose saves fail, as a killed process would write nothing, whenever `dies`
/// says so for the key being written. The rule keeps its own counts and switches.
pub struct DyingStore {
    pub inner: flatmachines_memory::MemoryBackend,
    dies: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for DyingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DyingStore").finish_non_exhaustive()
    }
}

impl DyingStore {
    pub fn new(dies: impl Fn(&str) -> bool + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(DyingStore {
            inner: flatmachines_memory::MemoryBackend::new(),
            dies: Box::new(dies),
        })
    }
}

#[async_trait]
impl flatmachines_core::PersistenceBackend for DyingStore {
    async fn save(&self, key: &str, value: bytes::Bytes) -> Result<(), flatmachines_core::Error> {
        self.save_many(&[(key, value)]).await
    }

    async fn save_many(
        &self,
        entries: &[(&str, bytes::Bytes)],
    ) -> Result<(), flatmachines_core::Error> {
        // Every key is offered to the rule, so that counting rules see every write.
        let mut dies = false;
        for (key, _) in entries {
            dies |= (self.dies)(key);
        }
        if dies {
            return Err(flatmachines_core::Error::backend(
                "test",
                "the process died here",
            ));
        }
        self.inner.save_many(entries).await
    }

    async fn load(&self, key: &str) -> Result<Option<bytes::Bytes>, flatmachines_core::Error> {
        self.inner.load(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), flatmachines_core::Error> {
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, flatmachines_core::Error> {
        self.inner.list(prefix).await
    }
}

/// Runs the ignored test `inner` of this test binary in a child process under `prlimit`
/// (2 GiB of address space, 120 s of CPU) and a kill after 300 s, and fails unless it passes:
/// for properties fed hostile inputs, so that a bound that stops holding kills the child, not
/// the machine.
pub fn run_bounded_child(inner: &str) {
    let exe = std::env::current_exe().expect("the test binary");
    let output = std::process::Command::new("prlimit")
        .arg(format!("--as={}", 2u64 << 30))
        .arg("--cpu=120")
        .arg("--")
        .args(["timeout", "-s", "KILL", "300"])
        .arg(exe)
        .args([
            inner,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("prlimit and timeout run (util-linux, coreutils)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the bounded child failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
}
