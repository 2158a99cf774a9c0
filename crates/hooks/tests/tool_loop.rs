//! A command hook steers a tool loop: it receives `tool_calls` and `tool_result` events and
//! replies with `_skip_tools`, `_steering_messages` and `_abort_tool_loop`.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use common::{builder, run_yaml};
use flatmachines_core::llm::Message;
use flatmachines_core::{
    AgentError, AgentExecutor, AgentResult, AgentToolCall, AgentTurn, JsonMap,
};

/// A scripted model: one answer per turn (the last repeats); it keeps what each turn was sent.
#[derive(Debug)]
struct ScriptedModel {
    turns: Vec<AgentResult>,
    sent: Mutex<Vec<Vec<Message>>>,
}

#[async_trait]
impl AgentExecutor for ScriptedModel {
    async fn execute(&self, _: &JsonMap, _: &JsonMap) -> Result<AgentResult, AgentError> {
        Err(AgentError::new("only tool loop turns are scripted"))
    }

    fn supports_tool_loop(&self) -> bool {
        true
    }

    async fn execute_turn(
        &self,
        turn: &AgentTurn<'_>,
        _context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        let mut sent = self.sent.lock().unwrap();
        sent.push(turn.conversation.to_vec());
        let index = (sent.len() - 1).min(self.turns.len() - 1);
        Ok(self.turns[index].clone())
    }
}

fn calls(list: &[(&str, &str)]) -> AgentResult {
    AgentResult {
        content: Some(String::new()),
        tool_calls: Some(
            list.iter()
                .map(|(id, name)| AgentToolCall {
                    id: (*id).to_owned(),
                    name: (*name).to_owned(),
                    arguments: json!({"city": "Lisbon"}),
                })
                .collect(),
        ),
        usage: Some(common::object(json!({"api_calls": 1}))),
        ..AgentResult::default()
    }
}

const HOOK: &str = r#"
import json, sys

log = open(sys.argv[1], "a")
for line in sys.stdin:
    request = json.loads(line)
    event = request["event"]
    reply = {"id": request["id"]}
    if event == "tool_calls":
        names = [c["name"] for c in request["tool_calls"]]
        turn = request["context"].get("_tool_loop_turns")
        log.write(json.dumps({"event": event, "names": names, "turn": turn}) + "\n")
        if turn == 1:
            reply["_skip_tools"] = ["hotels"]
        if turn == 3:
            reply["_abort_tool_loop"] = True
    elif event == "tool_result":
        result = request["tool_result"]
        log.write(json.dumps({"event": event, "name": result["name"],
                              "is_error": result["is_error"], "content": result["content"]}) + "\n")
        if result["name"] == "weather":
            reply["_steering_messages"] = [{"role": "user", "content": "Keep it short."}]
    log.flush()
    print(json.dumps(reply), flush=True)
"#;

#[tokio::test]
async fn a_command_hook_skips_steers_and_aborts_a_tool_loop() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("hook.py"), HOOK).unwrap();
    let log = dir.path().join("events.jsonl");
    let yaml = format!(
        r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: steered
  hooks:
    class: command
    args:
      command: [python3, hook.py, "{log}"]
      events: [tool_calls, tool_result]
  agents: {{planner: {{spec: flatagent, spec_version: "1.0.0", data: {{}}}}}}
  states:
    plan:
      type: initial
      agent: planner
      tool_loop: true
      output_to_context: {{loop: "{{{{ output }}}}"}}
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{loop: "{{{{ context.loop }}}}"}}
"#,
        log = log.display()
    );
    let model = Arc::new(ScriptedModel {
        turns: vec![
            calls(&[("c1", "weather"), ("c2", "hotels")]),
            calls(&[("c3", "hotels")]),
            calls(&[("c4", "weather")]),
        ],
        sent: Mutex::new(Vec::new()),
    });
    let runtime = builder()
        .agent("planner", model.clone())
        .tool(
            "weather",
            "forecast",
            json!({"type": "object"}),
            |_, _| async { Ok::<_, String>(json!("sunny")) },
        )
        .tool("hotels", "rooms", json!({"type": "object"}), |_, _| async {
            Ok::<_, String>(json!("Tivoli"))
        })
        .build();
    let outcome = run_yaml(&runtime, &yaml, dir.path(), json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = &outcome.output["loop"];
    assert_eq!(result["_tool_loop_stop"], json!("aborted"));
    assert_eq!(result["_tool_calls_count"], json!(2));
    assert_eq!(result["_tool_loop_turns"], json!(3));

    let events: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        events,
        [
            json!({"event": "tool_calls", "names": ["weather", "hotels"], "turn": 1}),
            json!({"event": "tool_result", "name": "weather", "is_error": false, "content": "sunny"}),
            json!({"event": "tool_result", "name": "hotels", "is_error": true,
                   "content": "Tool 'hotels' was skipped by policy."}),
            json!({"event": "tool_calls", "names": ["hotels"], "turn": 2}),
            json!({"event": "tool_result", "name": "hotels", "is_error": false, "content": "Tivoli"}),
            json!({"event": "tool_calls", "names": ["weather"], "turn": 3}),
        ]
    );
    let sent = model.sent.lock().unwrap();
    assert_eq!(sent.len(), 3);
    let steering = sent[1].last().unwrap();
    assert_eq!(
        (steering.role.as_str(), steering.content.as_str()),
        ("user", "Keep it short.")
    );
}
