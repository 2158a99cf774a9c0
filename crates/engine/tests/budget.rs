//! Budgets in the engine: every agent call reserves one call of `max_agent_calls`, a state's
//! `on_error` cannot route around a refusal, and `foreach` children share the tree's budget.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use flatmachines_core::AgentResult;
use flatmachines_engine::{Budget, FnAgent, Machine, RunError, RunOptions, Runtime, error_types};

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: spender
  agents: {echo: {type: test}}
  machines:
    each:
      spec: flatmachine
      spec_version: "1.0.0"
      data:
        name: each
        agents: {echo: {type: test}}
        states:
          ask:
            type: initial
            agent: echo
            input: {item: "{{ input.item }}"}
            transitions: [{to: done}]
          done: {type: final, output: {item: "{{ input.item }}"}}
  states:
    fan:
      type: initial
      foreach: "{{ [1, 2, 3, 4, 5, 6, 7, 8] }}"
      machine: each
      input: {item: "{{ item }}"}
      on_error: {default: rescued}
      transitions: [{to: done}]
    rescued: {type: final, output: {rescued: true}}
    done: {type: final, output: {done: true}}
"#;

fn counting(calls: &Arc<AtomicU64>) -> Arc<FnAgent> {
    let calls = Arc::clone(calls);
    Arc::new(FnAgent::new(move |input, _context| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(AgentResult::with_output(input)) }
    }))
}

#[tokio::test]
async fn parallel_children_share_the_budget_and_on_error_cannot_route_around_it() {
    let calls = Arc::new(AtomicU64::new(0));
    let machine = Machine::from_yaml(MACHINE, ".").unwrap();
    let runner = Runtime::builder()
        .agent("echo", counting(&calls))
        .build()
        .prepare(&machine)
        .unwrap();
    let options = RunOptions {
        budget: Budget {
            max_agent_calls: Some(5),
            max_cost: None,
        },
        ..RunOptions::default()
    };
    let error = runner
        .run(common::object(json!({})), options)
        .await
        .unwrap_err();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "exactly five of eight calls"
    );
    match &error {
        RunError::Failed { error, .. } => {
            assert_eq!(error.error_type, error_types::AGENT_CALL_LIMIT, "{error:?}");
        }
        other => panic!("expected a failed run, got {other}"),
    }

    // Without a budget the same machine makes all eight calls.
    calls.store(0, Ordering::SeqCst);
    let outcome = runner
        .run(common::object(json!({})), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"done": true}));
    assert_eq!(calls.load(Ordering::SeqCst), 8);
}
