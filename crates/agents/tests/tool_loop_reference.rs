//! The tool loop scenarios of `reference/tool_loop_scenarios.json`, run here against a scripted
//! model and compared with what flatmachines 4.2.1 did on the same scenarios
//! (`reference/tool_loop_421.json`, written by `reference/tool_loop_421.py`). Every
//! difference is listed in `docs/divergences.md` (Tools) and asserted below as such.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use common::{Dir, Sequence, agent_yaml, bodies, profiles, server};
use flatmachines_core::JsonMap;
use flatmachines_engine::{Machine, RunOptions, Runtime};

fn reference(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The scripted answer for one turn of a scenario.
fn answer(turn: &Value) -> ResponseTemplate {
    let message = match turn.get("text") {
        Some(text) => json!({"role": "assistant", "content": text}),
        None => {
            let calls: Vec<Value> = turn["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|call| {
                    json!({"id": call[0], "type": "function",
                           "function": {"name": call[1], "arguments": call[2].to_string()}})
                })
                .collect();
            json!({"role": "assistant", "content": null, "tool_calls": calls})
        }
    };
    let finish = if turn.get("text").is_some() {
        "stop"
    } else {
        "tool_calls"
    };
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "c", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
}

const AGENT: &str = r#"  name: planner
  user: "Plan a trip to {{ input.city }}."
  tools:
    - type: function
      function: {name: weather, description: The forecast, parameters: {type: object, properties: {city: {type: string}}}}
    - type: function
      function: {name: hotels, description: Hotels, parameters: {type: object, properties: {city: {type: string}}}}
"#;

fn machine(scenario: &Value) -> String {
    let tool_loop = scenario["tool_loop"].to_string();
    let condition = match scenario.get("condition") {
        Some(condition) => format!("\n        - condition: {condition}\n          to: escalate"),
        None => String::new(),
    };
    format!(
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: trip
  agents: {{planner: ./planner.yml}}
  states:
    plan:
      type: initial
      agent: planner
      input: {{city: Lisbon}}
      tool_loop: {tool_loop}
      output_to_context: {{result: "{{{{ output }}}}"}}
      transitions:{condition}
        - to: done
    escalate:
      type: final
      output: {{result: "{{{{ context }}}}", via: escalate}}
    done:
      type: final
      output: {{result: "{{{{ context.result }}}}"}}
"#
    )
}

/// The tools of the scenarios, as `tool_loop_421.py` serves them.
fn runtime() -> Runtime {
    Runtime::builder()
        .agent_adapter(Arc::new(common::adapter()))
        .tool(
            "weather",
            "The forecast",
            json!({"type": "object"}),
            |args, _| async move {
                let city = args["city"].as_str().unwrap_or("?").to_owned();
                Ok::<_, String>(json!(format!("sunny in {city}")))
            },
        )
        .tool(
            "hotels",
            "Hotels",
            json!({"type": "object"}),
            |args, _| async move {
                match args["city"].as_str() {
                    Some("Nowhere") => Err("no such city".to_owned()),
                    _ => Ok(json!(r#"{"hotels": ["Tivoli"]}"#)),
                }
            },
        )
        .build()
}

/// What is compared: the state's output without the cost (the reference estimates one from
/// token counts; here it is unknown without prices), and the model requests.
struct Observed {
    output: JsonMap,
    requests: usize,
    /// The tool messages of the last request, `(call id, content)`.
    tool_messages: Vec<(String, String)>,
    /// Whether the last request offered tools.
    last_offers_tools: bool,
}

fn loop_output(mut output: JsonMap) -> JsonMap {
    output.remove("_tool_loop_cost");
    output
}

fn tool_messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn ours(scenario: &Value) -> Observed {
    let answers = scenario["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(answer)
        .collect();
    let (answers, _) = Sequence::new(answers);
    let mock = server("/chat/completions", answers).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: test-model, base_url: '{}', api_key_env: LOOP_REF_KEY",
            mock.uri()
        )),
    );
    dir.write("planner.yml", &agent_yaml(AGENT));
    let file = dir.write("machine.yml", &machine(scenario));
    let machine = Machine::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let outcome = runtime()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = outcome.output["result"].as_object().cloned().unwrap();
    // Mid-loop transitions go to `escalate`, whose result is the whole context.
    let output = match result.get("result") {
        Some(Value::Object(state_output)) => state_output.clone(),
        _ => result,
    };
    let sent = bodies(&mock).await;
    let last = sent.last().unwrap();
    Observed {
        output: loop_output(output),
        requests: sent.len(),
        tool_messages: tool_messages(last),
        last_offers_tools: last.get("tools").is_some(),
    }
}

#[tokio::test]
async fn the_scenarios_give_the_reference_keys_and_counts() {
    let scenarios = reference("tool_loop_scenarios.json");
    let recorded = reference("tool_loop_421.json");
    for scenario in scenarios["scenarios"].as_array().unwrap() {
        let name = scenario["name"].as_str().unwrap();
        let theirs = &recorded["scenarios"][name];
        let ours = ours(scenario).await;
        let their_output = loop_output(theirs["plan_state_output"].as_object().cloned().unwrap());

        let keys = |map: &JsonMap| map.keys().cloned().collect::<BTreeSet<_>>();
        assert_eq!(
            keys(&ours.output),
            keys(&their_output),
            "{name}: output keys"
        );
        assert_eq!(ours.output, their_output, "{name}: output");
        assert_eq!(
            ours.requests as u64,
            theirs["request_count"].as_u64().unwrap(),
            "{name}: model requests"
        );

        let last_request = theirs["requests"].as_array().unwrap().last().unwrap();
        let their_messages: Vec<(String, String)> = last_request["tool_messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m[0].as_str().unwrap().to_owned(),
                    m[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let their_last_offers_tools = !last_request["tools"].is_null();
        match name {
            // Difference: here the refused turn's calls are each answered, and the last,
            // answer-only request keeps the tools with `tool_choice: none`; the reference
            // sends calls without results and no tools.
            "max_tool_calls" => {
                assert!(their_messages.is_empty());
                assert_eq!(ours.tool_messages.len(), 2, "{name}");
                assert!(ours.tool_messages[0].1.contains("was not called"), "{name}");
                assert!(!their_last_offers_tools && ours.last_offers_tools, "{name}");
            }
            // Difference: the answer-only request keeps the tools (`tool_choice: none`).
            "max_turns" => {
                assert_eq!(ours.tool_messages, their_messages, "{name}");
                assert!(!their_last_offers_tools && ours.last_offers_tools, "{name}");
            }
            _ => {
                assert_eq!(ours.tool_messages, their_messages, "{name}: tool messages");
                assert_eq!(ours.last_offers_tools, their_last_offers_tools, "{name}");
            }
        }
    }
}
