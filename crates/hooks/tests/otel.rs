//! OpenTelemetry metrics, read back from an in-memory exporter after a run with agents,
//! retries, a fan-out with a failing child, checkpoints and work-pool claims.
#![cfg(feature = "otel")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use serde_json::{Value, json};

use common::{object, repo, run_yaml};
use flatmachines_core::{AgentError, AgentResult, PushOptions, WorkPool};
use flatmachines_engine::{FnAgent, Runtime};
use flatmachines_hooks::ObservedWorkPool;
use flatmachines_hooks::otel::MetricsPipeline;
use flatmachines_memory::MemoryWorkPool;

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: metered
  agents: {writer: {type: test}, flaky: {type: test}}
  machines:
    child:
      spec: flatmachine
      spec_version: "1.0.0"
      data:
        name: metered-child
        agents: {writer: {type: test}}
        context: {n: "{{ input.n }}"}
        states:
          work:
            type: initial
            agent: writer
            input: {n: "{{ context.n }}"}
            transitions: [{to: end}]
          end:
            type: final
            output: {n: "{{ context.n }}"}
  context: {items: "{{ input.items }}"}
  states:
    start:
      type: initial
      agent: writer
      input: {n: 0}
      transitions: [{to: flaky_state}]
    flaky_state:
      agent: flaky
      execution: {type: retry, backoffs: [0], jitter: 0}
      transitions: [{to: fan}]
    fan:
      foreach: "{{ context.items }}"
      as: item
      machine: child
      input: {n: "{{ item }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {ok: true}
"#;

fn usage() -> AgentResult {
    AgentResult {
        output: Some(object(json!({"text": "hi"}))),
        usage: Some(object(
            json!({"prompt_tokens": 10, "completion_tokens": 5, "api_calls": 1}),
        )),
        cost: Some(0.25),
        ..AgentResult::default()
    }
}

fn attributes_match(attributes: Vec<&KeyValue>, wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(key, value)| {
        attributes
            .iter()
            .any(|kv| kv.key.as_str() == *key && kv.value.as_str() == *value)
    })
}

/// The sum of the counter `name` over the points whose attributes include `wanted`.
fn counter(metrics: &ResourceMetrics, name: &str, wanted: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for metric in metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == name)
    {
        match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                for point in sum.data_points() {
                    if attributes_match(point.attributes().collect(), wanted) {
                        total += point.value() as f64;
                    }
                }
            }
            AggregatedMetrics::F64(MetricData::Sum(sum)) => {
                for point in sum.data_points() {
                    if attributes_match(point.attributes().collect(), wanted) {
                        total += point.value();
                    }
                }
            }
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }
    total
}

/// How many values the histogram `name` recorded with attributes including `wanted`.
fn recorded(metrics: &ResourceMetrics, name: &str, wanted: &[(&str, &str)]) -> u64 {
    metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == name)
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => histogram
                .data_points()
                .filter(|point| attributes_match(point.attributes().collect(), wanted))
                .map(|point| point.count())
                .sum::<u64>(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum::<u64>()
}

#[tokio::test]
async fn a_run_is_recorded_as_metrics() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let pipeline = MetricsPipeline::with_provider(provider);

    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&flaky_calls);
    let runtime = Runtime::builder()
        .observer(pipeline.observer())
        .agent(
            "writer",
            FnAgent::new(|input, _| async move {
                if input.get("n") == Some(&Value::from(2)) {
                    return Err(AgentError::new("two is not allowed").with_type("Boom"));
                }
                Ok(usage())
            })
            .shared(),
        )
        .agent(
            "flaky",
            FnAgent::new(move |_, _| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        Err(AgentError::new("slow down").with_type("RateLimit"))
                    } else {
                        Ok(AgentResult::with_output(object(json!({"ok": true}))))
                    }
                }
            })
            .shared(),
        )
        .build();
    let outcome = run_yaml(&runtime, MACHINE, &repo(), json!({"items": [1, 2, 3]}))
        .await
        .expect("the run completes (the failed child becomes an error entry)");
    assert_eq!(outcome.output, json!({"ok": true}));

    let pool = ObservedWorkPool::new(
        Arc::new(MemoryWorkPool::new("jobs")),
        "jobs",
        pipeline.observer(),
    );
    pool.push(json!({"job": 1}), PushOptions::default())
        .await
        .expect("push");
    assert!(pool.claim("w1").await.expect("claim").is_some());
    assert!(pool.claim("w1").await.expect("claim").is_none());

    pipeline.flush().expect("flush");
    let exported = exporter
        .get_finished_metrics()
        .expect("metrics were exported");
    let metrics = exported.last().expect("one export");

    assert_eq!(
        counter(
            metrics,
            "flatagents.machine.steps",
            &[("machine", "metered")]
        ),
        4.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.machine.steps",
            &[("machine", "metered-child")]
        ),
        5.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.machine.runs",
            &[("machine", "metered"), ("status", "completed")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.machine.runs",
            &[("machine", "metered-child"), ("status", "completed")]
        ),
        2.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.machine.runs",
            &[
                ("machine", "metered-child"),
                ("status", "failed"),
                ("error_type", "Boom")
            ]
        ),
        1.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.agent.executions",
            &[("agent_id", "writer"), ("status", "success")]
        ),
        3.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.agent.executions",
            &[
                ("agent_id", "writer"),
                ("status", "error"),
                ("error_type", "Boom")
            ]
        ),
        1.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.agent.executions",
            &[("agent_id", "flaky"), ("status", "success")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.agent.retries",
            &[("agent_id", "flaky"), ("error_type", "RateLimit")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.agent.tokens",
            &[("token_type", "prompt")]
        ),
        30.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.agent.tokens",
            &[("token_type", "completion")]
        ),
        15.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.agent.api_calls",
            &[("agent_id", "writer")]
        ),
        3.0
    );
    assert!(
        (counter(metrics, "flatagents.agent.cost", &[("agent_id", "writer")]) - 0.75).abs() < 1e-9
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.errors",
            &[
                ("machine", "metered-child"),
                ("state", "work"),
                ("error_type", "Boom")
            ]
        ),
        1.0
    );
    assert_eq!(
        recorded(
            metrics,
            "flatagents.agent.duration",
            &[("agent_id", "writer")]
        ),
        4
    );
    assert_eq!(
        recorded(
            metrics,
            "flatagents.state.duration",
            &[("machine", "metered")]
        ),
        4
    );
    // Every checkpoint the default policy writes: machine_start, then state_enter, execute
    // and state_exit per step, then machine_end; for the root and each child. And one
    // agent_result per answer of the writer (four).
    assert_eq!(
        recorded(
            metrics,
            "flatagents.checkpoint.write.duration",
            &[("status", "success")]
        ),
        (1 + 3 * 4 + 1) + 2 * (1 + 3 * 2 + 1) + (1 + 2) + 4
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.work.claims",
            &[("pool", "jobs"), ("outcome", "claimed")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.work.claims",
            &[("pool", "jobs"), ("outcome", "empty")]
        ),
        1.0
    );
    assert_eq!(
        recorded(
            metrics,
            "flatagents.work.claim.duration",
            &[("pool", "jobs")]
        ),
        2
    );
    pipeline.shutdown().expect("shutdown");
}

const TOOL_MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: tooled
  agents: {caller: {type: test}}
  states:
    work:
      type: initial
      agent: caller
      input: {}
      tool_loop: {max_turns: 3}
      transitions: [{to: done}]
    done:
      type: final
      output: {ok: true}
"#;

/// A model that asks for `add` twice and for a tool nobody serves once, then answers.
#[derive(Debug)]
struct ToolCaller;

#[async_trait::async_trait]
impl flatmachines_core::AgentExecutor for ToolCaller {
    async fn execute(
        &self,
        _input: &flatmachines_core::JsonMap,
        _context: &flatmachines_core::JsonMap,
    ) -> Result<AgentResult, AgentError> {
        Err(AgentError::new("only tool-loop turns are scripted"))
    }

    fn supports_tool_loop(&self) -> bool {
        true
    }

    async fn execute_turn(
        &self,
        turn: &flatmachines_core::AgentTurn<'_>,
        _context: &flatmachines_core::JsonMap,
    ) -> Result<AgentResult, AgentError> {
        if !turn.conversation.is_empty() {
            return Ok(AgentResult {
                content: Some("done".into()),
                ..AgentResult::default()
            });
        }
        let call = |id: &str, name: &str| flatmachines_core::AgentToolCall {
            id: id.into(),
            name: name.into(),
            arguments: json!({}),
        };
        Ok(AgentResult {
            tool_calls: Some(vec![
                call("a", "add"),
                call("b", "add"),
                call("c", "missing"),
            ]),
            ..AgentResult::default()
        })
    }
}

#[tokio::test]
async fn tool_calls_are_counted_and_timed_per_tool_and_outcome() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let pipeline = MetricsPipeline::with_provider(provider);
    let runtime = Runtime::builder()
        .observer(pipeline.observer())
        .agent("caller", Arc::new(ToolCaller))
        .tool("add", "Adds.", json!({"type": "object"}), |_, _| async {
            Ok::<_, String>(json!(2))
        })
        .build();
    let outcome = run_yaml(&runtime, TOOL_MACHINE, &repo(), json!({}))
        .await
        .expect("the run completes");
    assert_eq!(outcome.output, json!({"ok": true}));

    pipeline.flush().expect("flush");
    let exported = exporter
        .get_finished_metrics()
        .expect("metrics were exported");
    let metrics = exported.last().expect("one export");
    let add = [("tool", "add"), ("machine", "tooled"), ("state", "work")];
    assert_eq!(
        counter(
            metrics,
            "flatagents.tool.calls",
            &[add[0], add[1], add[2], ("status", "success")]
        ),
        2.0
    );
    assert_eq!(
        counter(
            metrics,
            "flatagents.tool.calls",
            &[("tool", "missing"), ("status", "error")]
        ),
        1.0
    );
    assert_eq!(
        recorded(metrics, "flatagents.tool.duration", &[("tool", "add")]),
        2
    );
    assert_eq!(
        recorded(metrics, "flatagents.tool.duration", &[("status", "error")]),
        1
    );
    pipeline.shutdown().expect("shutdown");
}
