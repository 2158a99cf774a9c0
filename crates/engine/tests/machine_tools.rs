//! Child machines as tools (`tool_loop.machine_tools`): the model calls a machine like any
//! tool, the machine runs as a child with the call's arguments as input and its output as the
//! result, and a call made again after a crash reuses the child's stored output.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use serde_json::{Value, json};

use flatmachines_core::{
    AgentError, AgentExecutor, AgentResult, AgentToolCall, AgentTurn, JsonMap, PersistenceBackend,
};
use flatmachines_engine::{FnAgent, Machine, RunOptions, Runtime};

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: researcher
  agents: {planner: {type: test}}
  machines:
    lookup:
      spec: flatmachine
      spec_version: "1.0.0"
      data:
        name: lookup
        agents: {librarian: {type: test}}
        context: {topic: "{{ input.topic }}"}
        states:
          find:
            type: initial
            agent: librarian
            input: {topic: "{{ context.topic }}"}
            output_to_context: {found: "{{ output.summary }}"}
            transitions: [{to: done}]
          done: {type: final, output: {summary: "{{ context.found }}"}}
  states:
    plan:
      type: initial
      agent: planner
      input: {}
      tool_loop:
        max_turns: 4
        machine_tools:
          lookup:
            description: Looks a topic up.
            parameters: {type: object, properties: {topic: {type: string}}, required: [topic]}
      output_to_context: {answer: "{{ output.content }}"}
      transitions: [{to: end}]
    end: {type: final, output: {answer: "{{ context.answer }}"}}
"#;

/// Asks for `lookup` once, then answers with the result it read. Records what it was offered.
#[derive(Debug, Default)]
struct Planner {
    offered: std::sync::Mutex<Vec<Value>>,
}

#[async_trait]
impl AgentExecutor for Planner {
    async fn execute(&self, _: &JsonMap, _: &JsonMap) -> Result<AgentResult, AgentError> {
        Err(AgentError::new("only tool-loop turns are scripted"))
    }

    fn supports_tool_loop(&self) -> bool {
        true
    }

    async fn execute_turn(
        &self,
        turn: &AgentTurn<'_>,
        _: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        if let Some(result) = turn.conversation.iter().find(|m| m.role == "tool") {
            return Ok(AgentResult {
                content: Some(format!("read {}", result.content)),
                ..AgentResult::default()
            });
        }
        *self.offered.lock().unwrap() = turn
            .tools
            .iter()
            .map(|t| Value::Object(t.function.clone()))
            .collect();
        Ok(AgentResult {
            tool_calls: Some(vec![AgentToolCall {
                id: "call-1".into(),
                name: "lookup".into(),
                arguments: json!({"topic": "tides"}),
            }]),
            ..AgentResult::default()
        })
    }
}

fn librarian(calls: &Arc<AtomicU64>) -> Arc<FnAgent> {
    let calls = Arc::clone(calls);
    Arc::new(FnAgent::new(move |input, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        let topic = input["topic"].as_str().unwrap_or("?").to_owned();
        async move {
            Ok(AgentResult::with_output(common::object(
                json!({"summary": format!("all about {topic}")}),
            )))
        }
    }))
}

fn options(id: &str) -> RunOptions {
    RunOptions {
        execution_id: Some(id.to_owned()),
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn the_model_calls_a_machine_and_reads_its_output() {
    let planner = Arc::new(Planner::default());
    let calls = Arc::new(AtomicU64::new(0));
    let machine = Machine::from_yaml(MACHINE, ".").unwrap();
    let outcome = Runtime::builder()
        .agent("planner", planner.clone())
        .agent("librarian", librarian(&calls))
        .build()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        outcome.output,
        json!({"answer": r#"read {"summary":"all about tides"}"#})
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let offered = planner.offered.lock().unwrap().clone();
    assert_eq!(
        offered,
        [json!({
            "name": "lookup",
            "description": "Looks a topic up.",
            "parameters": {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}
        })]
    );
}

#[tokio::test]
async fn a_machine_tool_called_again_after_a_crash_reuses_the_childs_output() {
    // The second `tool_call` write (the first is the turn; this one, the call's result) dies
    // while `dying` is set.
    let dying = Arc::new(AtomicBool::new(true));
    let switch = Arc::clone(&dying);
    let writes = AtomicU64::new(0);
    let store = common::DyingStore::new(move |key| {
        key.ends_with("_tool_call.json")
            && writes.fetch_add(1, Ordering::SeqCst) == 1
            && switch.load(Ordering::SeqCst)
    });
    let calls = Arc::new(AtomicU64::new(0));
    let machine = Machine::from_yaml(MACHINE, ".").unwrap();
    let runner = Runtime::builder()
        .persistence(store.clone())
        .agent("planner", Arc::new(Planner::default()))
        .agent("librarian", librarian(&calls))
        .build()
        .prepare(&machine)
        .unwrap();
    let error = runner
        .run(JsonMap::new(), options("crashed"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("the process died here"),
        "{error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The child checkpointed on its own, under an id of its own.
    let children: Vec<String> = store
        .inner
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|key| !key.starts_with("crashed/") && key.ends_with("_machine_end.json"))
        .collect();
    assert_eq!(children.len(), 1, "{children:?}");

    dying.store(false, Ordering::SeqCst);
    let outcome = runner.resume("crashed", None).await.unwrap();
    assert_eq!(
        outcome.output,
        json!({"answer": r#"read {"summary":"all about tides"}"#})
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the child machine ran again"
    );
}

#[test]
fn a_machine_tool_must_name_a_declared_machine() {
    let error = Machine::from_yaml(
        &MACHINE.replace(
            "        machine_tools:\n          lookup:",
            "        machine_tools:\n          lookups:",
        ),
        ".",
    )
    .unwrap_err();
    assert!(error.to_string().contains("lookups"), "{error}");
}
