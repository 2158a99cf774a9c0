//! The machine-driven tool loop, against a scripted model server in the OpenAI and Anthropic
//! shapes, streamed and not: turns, tool calls, guardrails, hooks and their replies.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use wiremock::{MockServer, ResponseTemplate};

use common::{Dir, Sequence, agent_yaml, bodies, profiles, server, sse};
use flatmachines_core::hooks::HookError;
use flatmachines_core::{AgentToolCall, Context, JsonMap, MachineHooks, ToolCallResult};
use flatmachines_engine::{Machine, RunOptions, RunOutcome, Runtime, RuntimeBuilder};

/// One scripted model turn.
#[derive(Clone)]
enum Turn {
    /// Tool calls: `(call id, tool, arguments)`, with optional text before them.
    Calls(&'static str, Vec<(&'static str, &'static str, Value)>),
    /// A text answer.
    Text(&'static str),
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    OpenAi,
    Anthropic,
}

#[derive(Clone, Copy, Debug)]
struct Model {
    shape: Shape,
    stream: bool,
}

const MODELS: [Model; 4] = [
    Model {
        shape: Shape::OpenAi,
        stream: false,
    },
    Model {
        shape: Shape::OpenAi,
        stream: true,
    },
    Model {
        shape: Shape::Anthropic,
        stream: false,
    },
    Model {
        shape: Shape::Anthropic,
        stream: true,
    },
];

const OPENAI: Model = MODELS[0];

impl Model {
    fn path(self) -> &'static str {
        match self.shape {
            Shape::OpenAi => "/chat/completions",
            Shape::Anthropic => "/v1/messages",
        }
    }

    fn provider(self) -> &'static str {
        match self.shape {
            Shape::OpenAi => "openai",
            Shape::Anthropic => "anthropic",
        }
    }

    /// The server's answer for `turn`; `cost` is reported as OpenRouter does (OpenAI shape).
    fn answer(self, turn: &Turn, cost: f64) -> ResponseTemplate {
        match (self.shape, self.stream) {
            (Shape::OpenAi, false) => {
                ResponseTemplate::new(200).set_body_json(openai_body(turn, cost))
            }
            (Shape::OpenAi, true) => openai_stream(turn),
            (Shape::Anthropic, false) => {
                ResponseTemplate::new(200).set_body_json(anthropic_body(turn))
            }
            (Shape::Anthropic, true) => anthropic_stream(turn),
        }
    }

    /// The tool results a request carries, as `(call id, content)`.
    fn tool_results(self, body: &Value) -> Vec<(String, String)> {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        match self.shape {
            Shape::OpenAi => messages
                .iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| {
                    (
                        m["tool_call_id"].as_str().unwrap_or("").to_owned(),
                        m["content"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect(),
            Shape::Anthropic => messages
                .iter()
                .filter_map(|m| m["content"].as_array())
                .flatten()
                .filter(|block| block["type"] == "tool_result")
                .map(|block| {
                    (
                        block["tool_use_id"].as_str().unwrap_or("").to_owned(),
                        block["content"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect(),
        }
    }

    /// The names of the tools a request offers.
    fn offered(self, body: &Value) -> Vec<String> {
        let tools = body["tools"].as_array().cloned().unwrap_or_default();
        tools
            .iter()
            .map(|tool| {
                let name = match self.shape {
                    Shape::OpenAi => &tool["function"]["name"],
                    Shape::Anthropic => &tool["name"],
                };
                name.as_str().unwrap_or("").to_owned()
            })
            .collect()
    }
}

fn openai_body(turn: &Turn, cost: f64) -> Value {
    let (message, finish) = match turn {
        Turn::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
        Turn::Calls(text, calls) => {
            let calls: Vec<Value> = calls
                .iter()
                .map(|(id, name, args)| {
                    json!({"id": id, "type": "function",
                           "function": {"name": name, "arguments": args.to_string()}})
                })
                .collect();
            let content = if text.is_empty() {
                Value::Null
            } else {
                json!(text)
            };
            (
                json!({"role": "assistant", "content": content, "tool_calls": calls}),
                "tool_calls",
            )
        }
    };
    json!({
        "id": "c", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": cost}
    })
}

fn openai_stream(turn: &Turn) -> ResponseTemplate {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}",
            json!({"id": "c", "object": "chat.completion.chunk", "model": "test-model",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut events = vec![chunk(json!({"role": "assistant"}), Value::Null)];
    match turn {
        Turn::Text(text) => {
            events.push(chunk(json!({"content": text}), Value::Null));
            events.push(chunk(json!({}), json!("stop")));
        }
        Turn::Calls(text, calls) => {
            if !text.is_empty() {
                events.push(chunk(json!({"content": text}), Value::Null));
            }
            for (index, (id, name, args)) in calls.iter().enumerate() {
                events.push(chunk(
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                                           "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                // The arguments arrive in two pieces.
                let text = args.to_string();
                let (head, tail) = text.split_at(text.len() / 2);
                for part in [head, tail] {
                    events.push(chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": part}}]}),
                        Value::Null,
                    ));
                }
            }
            events.push(chunk(json!({}), json!("tool_calls")));
        }
    }
    events.push("data: [DONE]".to_owned());
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    sse(&events)
}

fn anthropic_blocks(turn: &Turn) -> (Vec<Value>, &'static str) {
    match turn {
        Turn::Text(text) => (vec![json!({"type": "text", "text": text})], "end_turn"),
        Turn::Calls(text, calls) => {
            let mut blocks = Vec::new();
            if !text.is_empty() {
                blocks.push(json!({"type": "text", "text": text}));
            }
            for (id, name, args) in calls {
                blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": args}));
            }
            (blocks, "tool_use")
        }
    }
}

fn anthropic_body(turn: &Turn) -> Value {
    let (blocks, stop) = anthropic_blocks(turn);
    json!({
        "id": "msg", "type": "message", "role": "assistant", "model": "test-model",
        "content": blocks, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    })
}

fn anthropic_stream(turn: &Turn) -> ResponseTemplate {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}");
    let (blocks, stop) = anthropic_blocks(turn);
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg", "type": "message", "role": "assistant", "model": "test-model",
            "content": [], "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let start = match block["type"].as_str() {
            Some("text") => json!({"type": "text", "text": ""}),
            _ => json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
        };
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        let delta = match block["type"].as_str() {
            Some("text") => json!({"type": "text_delta", "text": block["text"]}),
            _ => json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
        };
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    sse(&events)
}

const AGENT: &str = r#"  name: planner
  user: "Plan a trip to {{ input.city }}."
  tools:
    - type: function
      function:
        name: weather
        description: The forecast for a city
        parameters: {type: object, properties: {city: {type: string}}, required: [city]}
"#;

/// A machine whose `plan` state runs `planner` in a tool loop with `tool_loop` (a YAML flow
/// value) and the extra `transitions` lines before its normal exit.
fn machine(tool_loop: &str, transitions: &str) -> String {
    format!(
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: trip
  context: {{turns: 2}}
  agents: {{planner: ./planner.yml}}
  states:
    plan:
      type: initial
      agent: planner
      input: {{city: Lisbon}}
      tool_loop: {tool_loop}
      output_to_context: {{result: "{{{{ output }}}}"}}
      transitions:{transitions}
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

struct Trip {
    mock: MockServer,
    _dir: Dir,
    machine: Machine,
    model: Model,
}

/// The configs and a model server that answers `turns` in order (the last one repeats).
async fn trip(model: Model, turns: &[Turn], tool_loop: &str, transitions: &str) -> Trip {
    let answers = turns.iter().map(|turn| model.answer(turn, 0.0)).collect();
    trip_answering(model, answers, tool_loop, transitions).await
}

async fn trip_answering(
    model: Model,
    answers: Vec<ResponseTemplate>,
    tool_loop: &str,
    transitions: &str,
) -> Trip {
    let (answers, _) = Sequence::new(answers);
    let mock = server(model.path(), answers).await;
    let dir = Dir::new();
    let stream = if model.stream { ", stream: true" } else { "" };
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: {}, name: test-model, base_url: '{}', api_key_env: LOOP_KEY{stream}",
            model.provider(),
            mock.uri()
        )),
    );
    dir.write("planner.yml", &agent_yaml(AGENT));
    let file = dir.write("machine.yml", &machine(tool_loop, transitions));
    let machine = Machine::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    Trip {
        mock,
        _dir: dir,
        machine,
        model,
    }
}

/// A runtime with the flatagent adapter and two tools: `weather` (answers at once) and
/// `hotels` (answers after `hotel_delay`, or fails for the city `Nowhere`).
fn runtime_with(hotel_delay: Duration) -> RuntimeBuilder {
    Runtime::builder()
        .agent_adapter(Arc::new(common::adapter()))
        .tool(
            "weather",
            "The forecast for a city",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            |args, _id| async move {
                let city = args["city"].as_str().unwrap_or("?").to_owned();
                Ok::<_, String>(json!(format!("sunny in {city}")))
            },
        )
        .tool(
            "hotels",
            "Hotels with rooms free",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            move |args, id| async move {
                tokio::time::sleep(hotel_delay).await;
                match args["city"].as_str() {
                    Some("Nowhere") => Err("no such city".to_owned()),
                    _ => Ok(json!({"hotels": ["Tivoli"], "call": id.key()})),
                }
            },
        )
}

async fn run(trip: &Trip, runtime: Runtime) -> RunOutcome {
    runtime
        .run(&trip.machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn calls(list: &[(&'static str, &'static str, Value)]) -> Vec<(&'static str, &'static str, Value)> {
    list.to_vec()
}

/// The output's loop keys: `(content, calls, turns, stop)`.
fn summary(outcome: &RunOutcome) -> (Value, Value, Value, Value) {
    let result = &outcome.output["result"];
    (
        result["content"].clone(),
        result["_tool_calls_count"].clone(),
        result["_tool_loop_turns"].clone(),
        result["_tool_loop_stop"].clone(),
    )
}

#[tokio::test]
async fn a_three_turn_loop_with_two_calls_in_one_turn_in_every_shape() {
    for model in MODELS {
        let turns = [
            Turn::Calls(
                "Checking.",
                calls(&[
                    ("call_1", "weather", json!({"city": "Lisbon"})),
                    ("call_2", "hotels", json!({"city": "Lisbon"})),
                ]),
            ),
            Turn::Calls(
                "",
                calls(&[("call_3", "weather", json!({"city": "Porto"}))]),
            ),
            Turn::Text("Go to Lisbon; it is sunny."),
        ];
        let trip = trip(model, &turns, "true", "").await;
        let outcome = run(&trip, runtime_with(Duration::ZERO).build()).await;
        assert_eq!(
            summary(&outcome),
            (
                json!("Go to Lisbon; it is sunny."),
                json!(3),
                json!(3),
                json!("complete")
            ),
            "{model:?}"
        );
        assert_eq!(outcome.total_api_calls, 3, "{model:?}");
        let sent = bodies(&trip.mock).await;
        assert_eq!(sent.len(), 3, "{model:?}");
        // Provider tools come first, then the agent's own declarations they do not replace.
        assert_eq!(
            trip.model.offered(&sent[0]),
            ["weather", "hotels"],
            "{model:?}"
        );
        assert!(trip.model.tool_results(&sent[0]).is_empty());
        let results = trip.model.tool_results(&sent[1]);
        assert_eq!(results.len(), 2, "{model:?}");
        assert_eq!(
            results[0],
            ("call_1".to_owned(), "sunny in Lisbon".to_owned())
        );
        assert_eq!(results[1].0, "call_2");
        let hotels: Value = serde_json::from_str(&results[1].1).unwrap();
        // The call's id: execution, step 1, turn 1, second call.
        assert!(
            hotels["call"].as_str().unwrap().ends_with("/1/1/1"),
            "{hotels}"
        );
        let results = trip.model.tool_results(&sent[2]);
        assert_eq!(results.len(), 3, "{model:?}");
        assert_eq!(
            results[2],
            ("call_3".to_owned(), "sunny in Porto".to_owned())
        );
    }
}

/// A model that calls `weather` on every turn.
fn always_calling() -> Vec<Turn> {
    vec![
        Turn::Calls(
            "",
            calls(&[("call_1", "weather", json!({"city": "Lisbon"}))]),
        ),
        Turn::Calls(
            "",
            calls(&[("call_2", "weather", json!({"city": "Porto"}))]),
        ),
        Turn::Calls("", calls(&[("call_3", "weather", json!({"city": "Faro"}))])),
    ]
}

#[tokio::test]
async fn max_turns_stops_the_loop_and_a_last_call_without_tools_gets_an_answer() {
    for model in [MODELS[0], MODELS[3]] {
        let mut turns = always_calling();
        turns.truncate(2);
        turns.push(Turn::Text("Lisbon and Porto are sunny."));
        // The bound is a template: the context says 2.
        let trip = trip(model, &turns, "{max_turns: '{{ context.turns }}'}", "").await;
        let outcome = run(&trip, runtime_with(Duration::ZERO).build()).await;
        assert_eq!(
            summary(&outcome),
            (
                json!("Lisbon and Porto are sunny."),
                json!(2),
                json!(2),
                json!("max_turns")
            ),
            "{model:?}"
        );
        let sent = bodies(&trip.mock).await;
        assert_eq!(sent.len(), 3, "{model:?}");
        // The last call lets the model call no tool.
        let choice = match model.shape {
            Shape::OpenAi => json!("none"),
            Shape::Anthropic => json!({"type": "none"}),
        };
        assert_eq!(sent[2]["tool_choice"], choice, "{}", sent[2]);
        assert!(sent[1].get("tool_choice").is_none());
        assert_eq!(trip.model.tool_results(&sent[2]).len(), 2);
    }
}

#[tokio::test]
async fn max_tool_calls_refuses_a_turn_asking_for_too_many() {
    let turns = [
        Turn::Calls(
            "",
            calls(&[
                ("call_1", "weather", json!({"city": "Lisbon"})),
                ("call_2", "hotels", json!({"city": "Lisbon"})),
            ]),
        ),
        Turn::Text("I could not look anything up."),
    ];
    let trip = trip(OPENAI, &turns, "{max_tool_calls: 1}", "").await;
    let outcome = run(&trip, runtime_with(Duration::ZERO).build()).await;
    assert_eq!(
        summary(&outcome),
        (
            json!("I could not look anything up."),
            json!(0),
            json!(1),
            json!("max_tool_calls")
        )
    );
    let sent = bodies(&trip.mock).await;
    // Every call of the refused turn is answered, so the conversation stays valid.
    let results = trip.model.tool_results(&sent[1]);
    assert_eq!(results.len(), 2);
    assert!(results[0].1.contains("at most 1 tool calls"), "{results:?}");
}

#[tokio::test]
async fn total_timeout_stops_before_the_next_turn() {
    let turns = [
        Turn::Calls(
            "",
            calls(&[("call_1", "hotels", json!({"city": "Lisbon"}))]),
        ),
        Turn::Text("Out of time."),
    ];
    let trip = trip(OPENAI, &turns, "{total_timeout: 0.2}", "").await;
    let outcome = run(&trip, runtime_with(Duration::from_millis(300)).build()).await;
    assert_eq!(
        summary(&outcome),
        (json!("Out of time."), json!(1), json!(1), json!("timeout"))
    );
}

#[tokio::test]
async fn max_cost_stops_once_the_turns_cost_that_much() {
    let answers = always_calling()
        .iter()
        .map(|turn| OPENAI.answer(turn, 0.5))
        .chain([OPENAI.answer(&Turn::Text("Budget spent."), 0.5)])
        .collect::<Vec<_>>();
    // Turn 1 costs 0.5, turn 2 brings it to 1.0, which reaches the bound.
    let answers = vec![answers[0].clone(), answers[1].clone(), answers[3].clone()];
    let trip = trip_answering(OPENAI, answers, "{max_cost: 0.9}", "").await;
    let outcome = run(&trip, runtime_with(Duration::ZERO).build()).await;
    assert_eq!(
        summary(&outcome),
        (
            json!("Budget spent."),
            json!(2),
            json!(2),
            json!("cost_limit")
        )
    );
    assert_eq!(outcome.output["result"]["_tool_loop_cost"], json!(1.5));
}

#[tokio::test]
async fn a_failing_a_slow_and_an_unknown_tool_reach_the_model_as_tool_errors() {
    let turns = [
        Turn::Calls(
            "",
            calls(&[
                ("call_1", "hotels", json!({"city": "Nowhere"})),
                ("call_2", "nope", json!({})),
            ]),
        ),
        Turn::Calls(
            "",
            calls(&[("call_3", "hotels", json!({"city": "Lisbon"}))]),
        ),
        Turn::Text("Nothing worked."),
    ];
    let trip = trip(OPENAI, &turns, "{tool_timeout: 0.1}", "").await;
    // Every `hotels` call takes 150 ms: over the 0.1 s bound.
    let outcome = run(&trip, runtime_with(Duration::from_millis(150)).build()).await;
    assert_eq!(
        summary(&outcome),
        (
            json!("Nothing worked."),
            json!(3),
            json!(3),
            json!("complete")
        )
    );
    let sent = bodies(&trip.mock).await;
    let results = trip.model.tool_results(&sent[2]);
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].1, "Tool 'hotels' timed out after 0.1s");
    assert_eq!(results[1].1, "Tool 'nope' does not exist.");
    assert_eq!(results[2].1, "Tool 'hotels' timed out after 0.1s");

    let trip = trip_answering(
        OPENAI,
        turns.iter().map(|t| OPENAI.answer(t, 0.0)).collect(),
        "true",
        "",
    )
    .await;
    run(&trip, runtime_with(Duration::ZERO).build()).await;
    let sent = bodies(&trip.mock).await;
    let results = trip.model.tool_results(&sent[1]);
    assert_eq!(results[0].1, "Error executing 'hotels': no such city");
}

#[tokio::test]
async fn a_denied_tool_is_never_offered_and_a_call_to_it_is_refused() {
    let turns = [
        Turn::Calls(
            "",
            calls(&[("call_1", "hotels", json!({"city": "Lisbon"}))]),
        ),
        Turn::Text("Fine."),
    ];
    let trip = trip(OPENAI, &turns, "{denied_tools: [hotels]}", "").await;
    let outcome = run(&trip, runtime_with(Duration::ZERO).build()).await;
    assert_eq!(
        summary(&outcome),
        (json!("Fine."), json!(0), json!(2), json!("complete"))
    );
    let sent = bodies(&trip.mock).await;
    for body in &sent {
        assert_eq!(trip.model.offered(body), ["weather"]);
    }
    assert_eq!(
        trip.model.tool_results(&sent[1])[0].1,
        "Tool 'hotels' is not allowed."
    );

    let trip = trip_answering(
        OPENAI,
        turns.iter().map(|t| OPENAI.answer(t, 0.0)).collect(),
        "{allowed_tools: [weather]}",
        "",
    )
    .await;
    run(&trip, runtime_with(Duration::ZERO).build()).await;
    assert_eq!(
        trip.model.offered(&bodies(&trip.mock).await[0]),
        ["weather"]
    );
}

#[tokio::test]
async fn a_conditional_transition_fires_after_a_tool_call() {
    let turns = [
        Turn::Calls(
            "",
            calls(&[
                ("call_1", "weather", json!({"city": "Lisbon"})),
                ("call_2", "weather", json!({"city": "Porto"})),
            ]),
        ),
        Turn::Text("never asked"),
    ];
    let transitions =
        "\n        - condition: \"context._tool_calls_count >= 1\"\n          to: escalate";
    let trip = trip(OPENAI, &turns, "true", transitions).await;
    let outcome = run(&trip, runtime_with(Duration::ZERO).build()).await;
    assert_eq!(outcome.output["via"], json!("escalate"));
    let context = &outcome.output["result"];
    assert_eq!(context["_tool_loop_stop"], json!("transition"));
    assert_eq!(context["_tool_calls_count"], json!(1));
    assert_eq!(bodies(&trip.mock).await.len(), 1);
}

/// Hooks that steer the loop through the context, as a user's hooks would.
#[derive(Debug, Default)]
struct Steering {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl MachineHooks for Steering {
    async fn on_tool_calls(
        &self,
        state: &str,
        calls: &[AgentToolCall],
        context: &mut Context,
    ) -> Result<(), HookError> {
        let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
        self.seen
            .lock()
            .unwrap()
            .push(format!("{state}: calls {}", names.join(",")));
        let turn = context.as_map()["_tool_loop_turns"].as_u64().unwrap_or(0);
        let map = context.make_mut();
        match turn {
            1 => {
                map.insert("_skip_tools".into(), json!(["hotels"]));
            }
            3 => {
                map.insert("_abort_tool_loop".into(), json!(true));
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_tool_result(
        &self,
        _state: &str,
        result: &ToolCallResult,
        context: &mut Context,
    ) -> Result<(), HookError> {
        self.seen.lock().unwrap().push(format!(
            "result {} error={}: {}",
            result.name, result.is_error, result.content
        ));
        if result.name == "weather" {
            context.make_mut().insert(
                "_steering_messages".into(),
                json!([{"role": "user", "content": "Keep it short."}]),
            );
        }
        Ok(())
    }
}

#[tokio::test]
async fn rust_hooks_skip_tools_steer_the_model_and_abort_the_loop() {
    let turns = [
        Turn::Calls(
            "",
            calls(&[
                ("call_1", "weather", json!({"city": "Lisbon"})),
                ("call_2", "hotels", json!({"city": "Lisbon"})),
            ]),
        ),
        Turn::Calls("", calls(&[("call_3", "hotels", json!({"city": "Porto"}))])),
        Turn::Calls(
            "Still looking.",
            calls(&[("call_4", "weather", json!({"city": "Faro"}))]),
        ),
    ];
    let trip = trip(OPENAI, &turns, "true", "").await;
    let hooks = Arc::new(Steering::default());
    let outcome = run(
        &trip,
        runtime_with(Duration::ZERO).hooks(hooks.clone()).build(),
    )
    .await;
    assert_eq!(
        summary(&outcome),
        (
            json!("Still looking."),
            json!(2),
            json!(3),
            json!("aborted")
        )
    );
    let seen = hooks.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "plan: calls weather,hotels",
            "result weather error=false: sunny in Lisbon",
            "result hotels error=true: Tool 'hotels' was skipped by policy.",
            "plan: calls hotels",
            format!(
                "result hotels error=false: {{\"hotels\":[\"Tivoli\"],\"call\":\"{}/1/2/0\"}}",
                outcome.execution_id
            )
            .as_str(),
            "plan: calls weather",
        ]
    );
    let sent = bodies(&trip.mock).await;
    assert_eq!(sent.len(), 3);
    let last = sent[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last, json!({"role": "user", "content": "Keep it short."}));
    // The reply keys are consumed: none is left in the context.
    let context = &outcome.output["result"];
    assert!(context.get("_skip_tools").is_none());
}

#[path = "../../../examples/tools/tools.rs"]
mod example_tools;

/// `examples/tools` runs its loop with the program's tools, against the scripted model.
#[tokio::test]
async fn the_tools_example_plans_a_trip_with_its_tools() {
    let turns = [
        Turn::Calls(
            "",
            calls(&[
                ("call_1", "weather", json!({"city": "Lisbon"})),
                (
                    "call_2",
                    "convert",
                    json!({"amount": 600, "currency": "USD"}),
                ),
            ]),
        ),
        Turn::Text("Three sunny days in Lisbon; 600 EUR is 648 USD."),
    ];
    let (answers, _) = Sequence::new(turns.iter().map(|t| OPENAI.answer(t, 0.0)).collect());
    let mock = server(OPENAI.path(), answers).await;
    let dir = Dir::new();
    let profiles_file = dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: test-model, base_url: '{}', api_key_env: LOOP_KEY",
            mock.uri()
        )),
    );
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tools");
    let machine = Machine::from_file(example.join("machine.yml")).unwrap_or_else(|e| panic!("{e}"));
    let runtime = example_tools::with_tools(
        Runtime::builder()
            .agent_adapter(Arc::new(common::adapter()))
            .profiles_file(profiles_file),
    )
    .build();
    let outcome = runtime
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcome.output,
        json!({"plan": "Three sunny days in Lisbon; 600 EUR is 648 USD.",
               "stop": "complete", "tool_calls": 2})
    );
    let sent = bodies(&mock).await;
    assert_eq!(OPENAI.offered(&sent[0]), ["weather", "convert"]);
    let results = OPENAI.tool_results(&sent[1]);
    assert_eq!(
        results[0].1,
        json!({"city": "Lisbon", "forecast": "sunny, 24 °C"}).to_string()
    );
    assert_eq!(results[1].1, "648.0");
}
