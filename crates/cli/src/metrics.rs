//! OpenTelemetry metrics for `flatmachines run`, switched on by the environment (see
//! `flatmachines::metrics::MetricsPipeline::from_env`).

use flatmachines::metrics::MetricsPipeline;

/// The pipeline the environment asks for. A bad setting is a warning: metrics are never a
/// reason for a run to fail. Call before the async runtime starts (the exporter's blocking
/// HTTP client cannot be created inside one).
pub(crate) fn start() -> Option<MetricsPipeline> {
    match MetricsPipeline::from_env() {
        Ok(pipeline) => pipeline,
        Err(e) => {
            tracing::warn!("metrics are off: {e}");
            None
        }
    }
}

/// Exports what is left; call after the async runtime has stopped.
pub(crate) fn stop(pipeline: MetricsPipeline) {
    if let Err(e) = pipeline.shutdown() {
        tracing::warn!("{e}");
    }
}
