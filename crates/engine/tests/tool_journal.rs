//! The tool loop's journal: a run interrupted at any of its `tool_call` checkpoints resumes
//! without making a recorded model turn or tool call again, repeats only the one in flight
//! (with the same call id), and ends with the uninterrupted run's output.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use flatmachines_core::{
    AgentError, AgentExecutor, AgentResult, AgentToolCall, AgentTurn, JsonMap, ToolCallId,
};
use flatmachines_engine::{Machine, RunOptions, Runtime, load_latest};

/// Three turns of two calls each, then an answer.
const TURNS_WITH_CALLS: u64 = 3;
const CALLS_PER_TURN: u64 = 2;
/// Every turn and every answered call is journaled: 4 turns and 6 calls.
const JOURNAL_WRITES: u64 = TURNS_WITH_CALLS + 1 + TURNS_WITH_CALLS * CALLS_PER_TURN;

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: journaled
  agents: {adder: {type: test}}
  context: {seen: 0}
  states:
    work:
      type: initial
      agent: adder
      input: {start: 10}
      tool_loop: {max_turns: 10}
      output_to_context: {answer: "{{ output.content }}", calls: "{{ output._tool_calls_count }}"}
      transitions: [{to: end}]
    end:
      type: final
      output: {answer: "{{ context.answer }}", calls: "{{ context.calls }}", seen: "{{ context.seen }}"}
"#;

/// A model that asks for two `add` calls on each of its first three turns, then answers with
/// the sum of the results it was given. It counts the turns it is asked for.
#[derive(Debug, Default)]
struct ScriptedModel {
    turns: AtomicU64,
}

#[async_trait]
impl AgentExecutor for ScriptedModel {
    async fn execute(
        &self,
        _input: &JsonMap,
        _context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        Err(AgentError::new("only tool-loop turns are scripted"))
    }

    fn supports_tool_loop(&self) -> bool {
        true
    }

    async fn execute_turn(
        &self,
        turn: &AgentTurn<'_>,
        _context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        self.turns.fetch_add(1, Ordering::SeqCst);
        let made = turn
            .conversation
            .iter()
            .filter(|m| m.role == "assistant")
            .count() as u64;
        let start = turn.input["start"].as_u64().unwrap_or(0);
        let mut result = AgentResult {
            cost: Some(0.5),
            ..AgentResult::default()
        };
        if made < TURNS_WITH_CALLS {
            result.tool_calls = Some(
                (0..CALLS_PER_TURN)
                    .map(|i| AgentToolCall {
                        id: format!("call-{made}-{i}"),
                        name: "add".into(),
                        arguments: json!({"n": start + made * CALLS_PER_TURN + i}),
                    })
                    .collect(),
            );
            return Ok(result);
        }
        let sum: u64 = turn
            .conversation
            .iter()
            .filter(|m| m.role == "tool")
            .map(|m| m.content.parse::<u64>().unwrap_or(1_000_000))
            .sum();
        result.content = Some(format!("sum {sum}"));
        Ok(result)
    }
}

struct Rig {
    model: Arc<ScriptedModel>,
    store: Arc<common::DyingStore>,
    /// The `tool_call` snapshots written (or tried).
    journal_writes: Arc<AtomicU64>,
    /// Every call the `add` tool got, as `(stable call id, n)`.
    calls: Arc<Mutex<Vec<(ToolCallId, u64)>>>,
    runner: flatmachines_engine::Runner,
}

fn rig(die_at: u64) -> Rig {
    let model = Arc::new(ScriptedModel::default());
    // The `die_at`-th `tool_call` write dies, once (0: none does).
    let journal_writes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&journal_writes);
    let died = AtomicBool::new(false);
    let store = common::DyingStore::new(move |key| {
        if !key.ends_with("_tool_call.json") {
            return false;
        }
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        n == die_at && !died.swap(true, Ordering::SeqCst)
    });
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let machine = Machine::from_yaml(MACHINE, ".").unwrap();
    let runner = Runtime::builder()
        .persistence(store.clone())
        .agent("adder", model.clone())
        .tool(
            "add",
            "Adds one to n.",
            json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
            move |arguments: Value, id: ToolCallId| {
                let seen = Arc::clone(&seen);
                async move {
                    let n = arguments["n"].as_u64().unwrap_or(0);
                    seen.lock().unwrap().push((id, n));
                    Ok::<_, String>(Value::from(n + 1))
                }
            },
        )
        .build()
        .prepare(&machine)
        .unwrap();
    Rig {
        model,
        store,
        journal_writes,
        calls,
        runner,
    }
}

fn options(id: &str) -> RunOptions {
    RunOptions {
        execution_id: Some(id.to_owned()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_loop_interrupted_at_any_journal_write_resumes_repeating_only_the_call_in_flight() {
    let clean = rig(0);
    let expected = clean
        .runner
        .run(common::object(json!({})), options("clean"))
        .await
        .unwrap();
    // 10+1, 11+1, … 15+1.
    assert_eq!(
        expected.output,
        json!({"answer": "sum 81", "calls": 6, "seen": 0})
    );
    assert_eq!(
        clean.model.turns.load(Ordering::SeqCst),
        TURNS_WITH_CALLS + 1
    );
    assert_eq!(clean.journal_writes.load(Ordering::SeqCst), JOURNAL_WRITES);
    let clean_calls = clean.calls.lock().unwrap().clone();

    // The journal's writes, in order: a turn, then its two calls; the fourth turn answers.
    let turn_writes = [1, 4, 7, 10];
    for die_at in 1..=JOURNAL_WRITES {
        let rig = rig(die_at);
        let id = format!("dies-at-{die_at}");
        let error = rig
            .runner
            .run(common::object(json!({})), options(&id))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("the process died here"),
            "{error}"
        );
        let resumed = rig.runner.resume(&id, None).await.unwrap();
        assert_eq!(resumed.output, expected.output, "died at write {die_at}");

        let in_flight_turn = turn_writes.contains(&die_at);
        let turns = rig.model.turns.load(Ordering::SeqCst);
        assert_eq!(
            turns,
            TURNS_WITH_CALLS + 1 + u64::from(in_flight_turn),
            "model turns when write {die_at} died"
        );
        let calls = rig.calls.lock().unwrap().clone();
        let repeats = calls.len() - clean_calls.len();
        assert_eq!(
            repeats,
            usize::from(!in_flight_turn),
            "tool calls repeated when write {die_at} died: {calls:?}"
        );
        // The calls are the uninterrupted run's, each with its stable id (but for the
        // execution's); a repeat is the call in flight, under the same id.
        let positions = |list: &[(ToolCallId, u64)]| -> Vec<(u64, u32, u32, u64)> {
            list.iter()
                .map(|(id, n)| (id.step, id.turn, id.index, *n))
                .collect()
        };
        let mut distinct = positions(&calls);
        distinct.dedup();
        assert_eq!(distinct, positions(&clean_calls), "died at write {die_at}");
        assert!(calls.iter().all(|(call, _)| call.execution_id == id));
    }
}

#[tokio::test]
async fn the_journal_is_a_tool_loop_state_upstream_reads() {
    let rig = rig(4);
    rig.runner
        .run(common::object(json!({})), options("read"))
        .await
        .unwrap_err();
    // Write 4 died: the latest snapshot is the journal after turn 1's second call.
    let latest = load_latest(&rig.store.inner, "read")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.event.as_deref(), Some("tool_call"));
    assert_eq!(latest.current_state, "work");
    let state = latest.tool_loop_state.expect("a tool_loop_state");
    assert_eq!(
        (state.turns, state.tool_calls_count, state.loop_cost),
        (1, 2, 0.5)
    );
    let roles: Vec<&str> = state
        .chain
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["assistant", "tool", "tool"]);
    assert_eq!(state.chain[0]["tool_calls"][1]["function"]["name"], "add");
    assert_eq!(state.chain[2]["tool_call_id"], "call-0-1");
    let journal = state.journal.expect("our journal");
    assert_eq!(journal.agent, "adder");
    assert_eq!(journal.answered, Some(2));
    assert_eq!(journal.calls.len(), 2);
    assert_eq!(journal.input, common::object(json!({"start": 10})));
}
