//! OpenTelemetry metrics (feature `otel`).
//!
//! [`OtelMetrics`] is a run observer that records what executions do as OpenTelemetry
//! instruments; [`MetricsPipeline`] sets up a meter provider exporting them over OTLP
//! (HTTP/protobuf), configured by the standard `OTEL_*` variables.
//!
//! | instrument | kind | unit | attributes |
//! |---|---|---|---|
//! | `flatagents.machine.runs` | counter | | `machine`, `status` (`completed`, `step_limit`, `failed`), `error_type` |
//! | `flatagents.machine.steps` | counter | | `machine` |
//! | `flatagents.state.duration` | histogram | ms | `machine`, `state`, `status` (`success`, `error`) |
//! | `flatagents.errors` | counter | | `machine`, `state`, `error_type` |
//! | `flatagents.agent.executions` | counter | | `agent_id`, `machine`, `status`, `error_type` |
//! | `flatagents.agent.duration` | histogram | ms | `agent_id`, `machine`, `status` |
//! | `flatagents.agent.api_calls` | counter | | `agent_id`, `machine` |
//! | `flatagents.agent.tokens` | counter | | `agent_id`, `machine`, `token_type` (`prompt`, `completion`) |
//! | `flatagents.agent.cost` | counter | | `agent_id`, `machine` |
//! | `flatagents.agent.retries` | counter | | `agent_id`, `machine`, `error_type` |
//! | `flatagents.tool.calls` | counter | | `tool`, `machine`, `state`, `status` (`success`, `error`) |
//! | `flatagents.tool.duration` | histogram | ms | `tool`, `machine`, `status` |
//! | `flatagents.checkpoint.write.duration` | histogram | ms | `event`, `status` |
//! | `flatagents.work.claims` | counter | | `pool`, `outcome` (`claimed`, `empty`, `failed`) |
//! | `flatagents.work.claim.duration` | histogram | ms | `pool`, `outcome` |
//!
//! The agent instruments keep the reference's names (`flatagents.agent.*`, `agent_id`), so
//! dashboards built for it read these too. Execution ids are never attributes: they would
//! make every run a new series.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use flatmachines_core::RunObserver;
use flatmachines_core::observe::RunEvent;

/// The instrumentation scope of the instruments.
const SCOPE: &str = "flatmachines";

/// Records run events as OpenTelemetry metrics (see the [module docs](self) for the
/// instruments).
#[derive(Debug, Clone)]
pub struct OtelMetrics {
    runs: Counter<u64>,
    steps: Counter<u64>,
    state_duration: Histogram<f64>,
    errors: Counter<u64>,
    agent_executions: Counter<u64>,
    agent_duration: Histogram<f64>,
    agent_api_calls: Counter<u64>,
    tokens: Counter<u64>,
    cost: Counter<f64>,
    retries: Counter<u64>,
    tool_calls: Counter<u64>,
    tool_duration: Histogram<f64>,
    checkpoint_duration: Histogram<f64>,
    work_claims: Counter<u64>,
    work_claim_duration: Histogram<f64>,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn status(failed: bool) -> &'static str {
    if failed { "error" } else { "success" }
}

impl OtelMetrics {
    /// Creates the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let histogram = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("ms")
                .with_description(description)
                .build()
        };
        OtelMetrics {
            runs: counter("flatagents.machine.runs", "Machine executions by outcome"),
            steps: counter("flatagents.machine.steps", "States entered"),
            state_duration: histogram("flatagents.state.duration", "Time a state's work took"),
            errors: counter("flatagents.errors", "States that failed, by error type"),
            agent_executions: counter(
                "flatagents.agent.executions",
                "Agent execution count by status",
            ),
            agent_duration: histogram("flatagents.agent.duration", "Agent execution duration"),
            agent_api_calls: counter("flatagents.agent.api_calls", "API calls made by agents"),
            tokens: counter("flatagents.agent.tokens", "Tokens used by agent"),
            cost: meter
                .f64_counter("flatagents.agent.cost")
                .with_description("Estimated cost of agent execution")
                .build(),
            retries: counter("flatagents.agent.retries", "Agent calls tried again"),
            tool_calls: counter(
                "flatagents.tool.calls",
                "Tool calls of tool loops, by tool and outcome",
            ),
            tool_duration: histogram("flatagents.tool.duration", "Time a tool call took"),
            checkpoint_duration: histogram(
                "flatagents.checkpoint.write.duration",
                "Time to write a checkpoint",
            ),
            work_claims: counter("flatagents.work.claims", "Work pool claims by outcome"),
            work_claim_duration: histogram(
                "flatagents.work.claim.duration",
                "Time a work pool claim took",
            ),
        }
    }

    /// Creates the instruments on `provider`'s meter for this crate.
    pub fn from_provider(provider: &impl MeterProvider) -> Self {
        OtelMetrics::new(&provider.meter(SCOPE))
    }
}

impl RunObserver for OtelMetrics {
    fn on_event(&self, event: &RunEvent<'_>) {
        match *event {
            RunEvent::MachineFinished {
                execution,
                completed,
                error,
                ..
            } => {
                let mut attributes = vec![KeyValue::new("machine", execution.machine.to_owned())];
                match error {
                    Some(error) => {
                        attributes.push(KeyValue::new("status", "failed"));
                        attributes.push(KeyValue::new("error_type", error.error_type.clone()));
                    }
                    None if completed => attributes.push(KeyValue::new("status", "completed")),
                    None => attributes.push(KeyValue::new("status", "step_limit")),
                }
                self.runs.add(1, &attributes);
            }
            RunEvent::StateEntered { execution, .. } => {
                self.steps
                    .add(1, &[KeyValue::new("machine", execution.machine.to_owned())]);
            }
            RunEvent::StateFinished {
                execution,
                state,
                elapsed,
                error,
                ..
            } => {
                let machine = KeyValue::new("machine", execution.machine.to_owned());
                let state = KeyValue::new("state", state.to_owned());
                self.state_duration.record(
                    millis(elapsed),
                    &[
                        machine.clone(),
                        state.clone(),
                        KeyValue::new("status", status(error.is_some())),
                    ],
                );
                if let Some(error) = error {
                    self.errors.add(
                        1,
                        &[
                            machine,
                            state,
                            KeyValue::new("error_type", error.error_type.clone()),
                        ],
                    );
                }
            }
            RunEvent::AgentCalled {
                execution,
                agent,
                elapsed,
                api_calls,
                tokens,
                cost,
                error_type,
                ..
            } => {
                let agent = KeyValue::new("agent_id", agent.to_owned());
                let machine = KeyValue::new("machine", execution.machine.to_owned());
                let outcome = KeyValue::new("status", status(error_type.is_some()));
                let mut attributes = vec![agent.clone(), machine.clone(), outcome];
                self.agent_duration.record(millis(elapsed), &attributes);
                if let Some(error_type) = error_type {
                    attributes.push(KeyValue::new("error_type", error_type.to_owned()));
                }
                self.agent_executions.add(1, &attributes);
                let base = [agent, machine];
                if api_calls > 0 {
                    self.agent_api_calls.add(api_calls, &base);
                }
                for (count, kind) in [(tokens.prompt, "prompt"), (tokens.completion, "completion")]
                {
                    if count > 0 {
                        let mut attributes = base.to_vec();
                        attributes.push(KeyValue::new("token_type", kind));
                        self.tokens.add(count, &attributes);
                    }
                }
                if cost > 0.0 && cost.is_finite() {
                    self.cost.add(cost, &base);
                }
            }
            RunEvent::AgentRetry {
                execution,
                agent,
                error_type,
                ..
            } => {
                self.retries.add(
                    1,
                    &[
                        KeyValue::new("agent_id", agent.to_owned()),
                        KeyValue::new("machine", execution.machine.to_owned()),
                        KeyValue::new("error_type", error_type.to_owned()),
                    ],
                );
            }
            RunEvent::ToolCalled {
                execution,
                state,
                tool,
                elapsed,
                is_error,
                ..
            } => {
                self.tool_calls.add(
                    1,
                    &[
                        KeyValue::new("tool", tool.to_owned()),
                        KeyValue::new("machine", execution.machine.to_owned()),
                        KeyValue::new("state", state.to_owned()),
                        KeyValue::new("status", status(is_error)),
                    ],
                );
                self.tool_duration.record(
                    millis(elapsed),
                    &[
                        KeyValue::new("tool", tool.to_owned()),
                        KeyValue::new("machine", execution.machine.to_owned()),
                        KeyValue::new("status", status(is_error)),
                    ],
                );
            }
            RunEvent::CheckpointWritten {
                event, elapsed, ok, ..
            } => {
                self.checkpoint_duration.record(
                    millis(elapsed),
                    &[
                        KeyValue::new("event", event.as_str()),
                        KeyValue::new("status", status(!ok)),
                    ],
                );
            }
            RunEvent::WorkClaimed {
                pool,
                outcome,
                elapsed,
                ..
            } => {
                let attributes = [
                    KeyValue::new("pool", pool.to_owned()),
                    KeyValue::new("outcome", outcome.as_str()),
                ];
                self.work_claims.add(1, &attributes);
                self.work_claim_duration
                    .record(millis(elapsed), &attributes);
            }
            _ => {}
        }
    }
}

/// Metrics could not be set up or flushed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A variable asks for something this build does not do.
    #[error("{variable}={value} is not supported: {hint}")]
    Unsupported {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What to use instead.
        hint: &'static str,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot set up the OTLP metrics exporter: {0}")]
    Exporter(String),
    /// Flushing or shutting down failed.
    #[error("cannot flush metrics: {0}")]
    Flush(String),
}

/// A meter provider and the observer recording into it. Keep it for the life of the process
/// and call [`MetricsPipeline::shutdown`] at the end, which exports what is left.
#[derive(Debug)]
pub struct MetricsPipeline {
    provider: SdkMeterProvider,
    metrics: Arc<OtelMetrics>,
}

impl MetricsPipeline {
    /// Records into `provider` (an in-memory exporter in tests, a custom pipeline in an
    /// embedding application).
    pub fn with_provider(provider: SdkMeterProvider) -> Self {
        let metrics = Arc::new(OtelMetrics::from_provider(&provider));
        MetricsPipeline { provider, metrics }
    }

    /// The pipeline the environment asks for, or `None` when metrics are off.
    ///
    /// Metrics are on when `FLATAGENTS_METRICS_ENABLED` is true (`true`, `1`, `yes`, `on`) or
    /// an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), and off when `FLATAGENTS_METRICS_ENABLED` is
    /// false, `OTEL_SDK_DISABLED=true` or `OTEL_METRICS_EXPORTER=none`. The exporter speaks
    /// OTLP over HTTP/protobuf and reads the other `OTEL_EXPORTER_OTLP_*` variables (headers,
    /// timeout); `OTEL_METRIC_EXPORT_INTERVAL` sets the export period (default 60 s) and
    /// `OTEL_SERVICE_NAME` the service (default `flatmachines`).
    ///
    /// Build it outside an async runtime (the exporter's blocking HTTP client may not be
    /// created or dropped inside one).
    pub fn from_env() -> Result<Option<Self>, MetricsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`MetricsPipeline::from_env`] with the variables looked up by `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, MetricsError> {
        let flag = |name: &str| lookup(name).map(|value| value.trim().to_ascii_lowercase());
        let truthy = |value: &str| matches!(value, "true" | "1" | "yes" | "on");
        let falsy = |value: &str| matches!(value, "false" | "0" | "no" | "off");
        let enabled = flag("FLATAGENTS_METRICS_ENABLED");
        if enabled.as_deref().is_some_and(falsy)
            || flag("OTEL_SDK_DISABLED").as_deref().is_some_and(truthy)
        {
            return Ok(None);
        }
        match flag("OTEL_METRICS_EXPORTER").as_deref() {
            None | Some("" | "otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(MetricsError::Unsupported {
                    variable: "OTEL_METRICS_EXPORTER",
                    value: other.to_owned(),
                    hint: "this build exports with `otlp` (or `none`)",
                });
            }
        }
        let endpoint_set = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ]
        .iter()
        .any(|name| lookup(name).is_some_and(|value| !value.trim().is_empty()));
        if !(enabled.as_deref().is_some_and(truthy) || endpoint_set) {
            return Ok(None);
        }
        for name in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        ] {
            if let Some(protocol) = flag(name)
                && !matches!(protocol.as_str(), "" | "http/protobuf")
            {
                return Err(MetricsError::Unsupported {
                    variable: if name.contains("METRICS") {
                        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
                    } else {
                        "OTEL_EXPORTER_OTLP_PROTOCOL"
                    },
                    value: protocol,
                    hint: "this build exports OTLP over `http/protobuf`",
                });
            }
        }
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .build()
            .map_err(|e| MetricsError::Exporter(e.to_string()))?;
        let mut resource = Resource::builder();
        if lookup("OTEL_SERVICE_NAME").is_none_or(|name| name.trim().is_empty()) {
            resource = resource.with_service_name("flatmachines");
        }
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter).build())
            .with_resource(resource.build())
            .build();
        Ok(Some(MetricsPipeline::with_provider(provider)))
    }

    /// The observer to register with the runtime
    /// (`RuntimeBuilder::observer(pipeline.observer())`).
    pub fn observer(&self) -> Arc<dyn RunObserver> {
        Arc::clone(&self.metrics) as Arc<dyn RunObserver>
    }

    /// The instruments, to record from elsewhere too (an [`crate::ObservedWorkPool`] takes
    /// [`MetricsPipeline::observer`]).
    pub fn metrics(&self) -> &Arc<OtelMetrics> {
        &self.metrics
    }

    /// Exports what was recorded so far.
    pub fn flush(&self) -> Result<(), MetricsError> {
        self.provider
            .force_flush()
            .map_err(|e| MetricsError::Flush(e.to_string()))
    }

    /// Exports what is left and stops the exporter.
    pub fn shutdown(self) -> Result<(), MetricsError> {
        self.provider
            .shutdown()
            .map_err(|e| MetricsError::Flush(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(vars: &[(&str, &str)]) -> Result<Option<MetricsPipeline>, MetricsError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        MetricsPipeline::from_lookup(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_environment_turns_metrics_on_and_off() {
        assert!(pipeline(&[]).unwrap().is_none());
        assert!(
            pipeline(&[
                ("FLATAGENTS_METRICS_ENABLED", "false"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            ])
            .unwrap()
            .is_none()
        );
        assert!(
            pipeline(&[
                ("OTEL_SDK_DISABLED", "true"),
                ("FLATAGENTS_METRICS_ENABLED", "1")
            ])
            .unwrap()
            .is_none()
        );
        assert!(
            pipeline(&[
                ("OTEL_METRICS_EXPORTER", "none"),
                ("FLATAGENTS_METRICS_ENABLED", "1")
            ])
            .unwrap()
            .is_none()
        );
        let error = pipeline(&[
            ("OTEL_METRICS_EXPORTER", "console"),
            ("FLATAGENTS_METRICS_ENABLED", "1"),
        ])
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_METRICS_EXPORTER=console is not supported: this build exports with `otlp` (or `none`)"
        );
        let error = pipeline(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("FLATAGENTS_METRICS_ENABLED", "yes"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("http/protobuf"), "{error}");
    }
}
