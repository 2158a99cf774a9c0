//! Run observers: the events of a run tree, in order, and `HookRegistry::config_dir`.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use flatmachines_core::observe::RunEvent;
use flatmachines_core::{AgentError, AgentResult, JsonMap, MachineHooks, RunObserver};
use flatmachines_engine::hooks::LoggingHooks;
use flatmachines_engine::{FnAgent, Machine, RunOptions, Runtime};

/// Writes each event as one line, without durations (which vary).
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl RunObserver for Recorder {
    fn on_event(&self, event: &RunEvent<'_>) {
        let line = match *event {
            RunEvent::MachineStarted { execution } => format!("start {}", execution.machine),
            RunEvent::MachineFinished {
                execution,
                steps,
                completed,
                error,
            } => format!(
                "finish {} steps={steps:?} completed={completed} error={:?}",
                execution.machine,
                error.map(|e| &e.error_type)
            ),
            RunEvent::StateEntered {
                execution,
                state,
                step,
            } => format!("enter {}.{state} #{step}", execution.machine),
            RunEvent::StateFinished {
                execution,
                state,
                error,
                ..
            } => format!(
                "done {}.{state} error={:?}",
                execution.machine,
                error.map(|e| &e.error_type)
            ),
            RunEvent::AgentCalled {
                agent,
                api_calls,
                tokens,
                cost,
                error_type,
                ..
            } => format!(
                "agent {agent} calls={api_calls} tokens={} cost={cost} error={error_type:?}",
                tokens.total()
            ),
            RunEvent::AgentRetry {
                agent,
                attempt,
                error_type,
                ..
            } => format!("retry {agent} attempt={attempt} error={error_type}"),
            RunEvent::FanOutStarted {
                execution,
                state,
                children,
            } => format!("fan-out {}.{state} children={children}", execution.machine),
            RunEvent::ChildFinished {
                state,
                error,
                child_execution_id,
                ..
            } => format!(
                "child of {state} error={:?} id_given={}",
                error.map(|e| &e.error_type),
                !child_execution_id.is_empty()
            ),
            RunEvent::CheckpointWritten { event, ok, .. } => format!("checkpoint {event} ok={ok}"),
            _ => "other".to_owned(),
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}

fn object(value: Value) -> JsonMap {
    value.as_object().cloned().unwrap_or_default()
}

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: root
  agents: {flaky: {type: test}, doubler: {type: test}}
  persistence: {enabled: true, checkpoint_on: [machine_end]}
  machines:
    child:
      spec: flatmachine
      spec_version: "1.0.0"
      data:
        name: kid
        agents: {doubler: {type: test}}
        persistence: {enabled: false}
        context: {x: "{{ input.x }}"}
        states:
          double:
            type: initial
            agent: doubler
            input: {x: "{{ context.x }}"}
            transitions: [{to: end}]
          end: {type: final, output: {x: "{{ context.x }}"}}
  context: {xs: "{{ input.xs }}"}
  states:
    ask:
      type: initial
      agent: flaky
      execution: {type: retry, backoffs: [0], jitter: 0}
      transitions: [{to: fan}]
    fan:
      foreach: "{{ context.xs }}"
      as: x
      machine: child
      input: {x: "{{ x }}"}
      transitions: [{to: done}]
    done: {type: final, output: {ok: true}}
"#;

#[tokio::test(flavor = "current_thread")]
async fn observers_hear_every_execution_in_order() {
    let recorder = Arc::new(Recorder::default());
    let flaky = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let runtime = Runtime::builder()
        .observer(Arc::clone(&recorder) as Arc<dyn RunObserver>)
        .agent(
            "flaky",
            FnAgent::new(move |_, _| {
                let first = flaky.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                async move {
                    if first {
                        Err(AgentError::new("busy").with_type("RateLimit"))
                    } else {
                        Ok(AgentResult::with_output(object(json!({"ok": true}))))
                    }
                }
            })
            .shared(),
        )
        .agent(
            "doubler",
            FnAgent::new(|input, _| async move {
                if input.get("x") == Some(&json!(2)) {
                    return Err(AgentError::new("no twos").with_type("Refused"));
                }
                Ok(AgentResult {
                    output: Some(input),
                    usage: Some(object(json!({"prompt_tokens": 3, "completion_tokens": 1}))),
                    cost: Some(0.5),
                    ..AgentResult::default()
                })
            })
            .shared(),
        )
        .build();
    let machine = Machine::from_yaml(MACHINE, ".").expect("loads");
    let outcome = runtime
        .run(
            &machine,
            object(json!({"xs": [1, 2]})),
            RunOptions::default(),
        )
        .await
        .expect("runs");
    assert_eq!(outcome.output, json!({"ok": true}));

    let lines = recorder.lines();
    let mut root: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|line| !line.contains("kid") && !line.starts_with("agent doubler"))
        .filter(|line| *line != "checkpoint agent_result ok=true")
        .collect();
    // An answer is checkpointed whatever `checkpoint_on` says (the children here keep no
    // checkpoints).
    let answers = lines
        .iter()
        .filter(|line| *line == "checkpoint agent_result ok=true")
        .count();
    assert_eq!(answers, 1, "{lines:?}");
    // The two children finish in either order; each is reported once.
    let children: Vec<&str> = root.drain(7..9).collect();
    assert!(
        children.contains(&"child of fan error=None id_given=true"),
        "{children:?}"
    );
    assert!(
        children.contains(&"child of fan error=Some(\"Refused\") id_given=true"),
        "{children:?}"
    );
    assert_eq!(
        root,
        [
            "start root",
            "enter root.ask #1",
            "retry flaky attempt=1 error=RateLimit",
            "agent flaky calls=0 tokens=0 cost=0 error=None",
            "done root.ask error=None",
            "enter root.fan #2",
            "fan-out root.fan children=2",
            "done root.fan error=None",
            "enter root.done #3",
            "done root.done error=None",
            "checkpoint machine_end ok=true",
            "finish root steps=Some(3) completed=true error=None",
        ]
    );
    let kids: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|line| line.contains("kid") || line.starts_with("agent doubler"))
        .collect();
    for (expected, times) in [
        ("start kid", 2),
        ("enter kid.double #1", 2),
        ("agent doubler calls=0 tokens=4 cost=0.5 error=None", 1),
        (
            "agent doubler calls=0 tokens=0 cost=0 error=Some(\"Refused\")",
            1,
        ),
        ("done kid.double error=Some(\"Refused\")", 1),
        ("finish kid steps=Some(2) completed=true error=None", 1),
        (
            "finish kid steps=None completed=false error=Some(\"Refused\")",
            1,
        ),
    ] {
        assert_eq!(
            kids.iter().filter(|line| **line == expected).count(),
            times,
            "{expected} in {kids:#?}"
        );
    }
}

#[test]
fn hook_factories_see_the_directory_of_the_config() {
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let runtime = Runtime::builder()
        .hook_type("where", move |_, registry| {
            *record.lock().unwrap_or_else(PoisonError::into_inner) =
                registry.config_dir().map(Path::to_path_buf);
            Ok(Arc::new(LoggingHooks::default()) as Arc<dyn MachineHooks>)
        })
        .build();
    let machine = Machine::from_yaml(
        "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  hooks: {class: where}\n  states:\n    a: {type: initial, transitions: [{to: b}]}\n    b: {type: final}\n",
        "/srv/machines",
    )
    .expect("loads");
    runtime.prepare(&machine).expect("prepares");
    assert_eq!(
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref(),
        Some(Path::new("/srv/machines"))
    );
}
