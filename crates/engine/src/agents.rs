//! Agent executors built from closures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use flatmachines_core::{AgentError, AgentExecutor, AgentResult, JsonMap};

type BoxedCall = dyn Fn(JsonMap, JsonMap) -> Pin<Box<dyn Future<Output = Result<AgentResult, AgentError>> + Send>>
    + Send
    + Sync;

/// An [`AgentExecutor`] that calls a closure with the rendered input and the context.
///
/// ```
/// use flatmachines_engine::FnAgent;
/// use flatmachines_core::AgentResult;
///
/// let echo = FnAgent::new(|input, _context| async move { Ok(AgentResult::with_output(input)) });
/// ```
pub struct FnAgent {
    call: Box<BoxedCall>,
    metadata: Option<JsonMap>,
}

impl FnAgent {
    /// Wraps `call`.
    pub fn new<F, Fut>(call: F) -> FnAgent
    where
        F: Fn(JsonMap, JsonMap) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<AgentResult, AgentError>> + Send + 'static,
    {
        FnAgent {
            call: Box::new(move |input, context| Box::pin(call(input, context))),
            metadata: None,
        }
    }

    /// Sets the metadata execution strategies read (for example `mdap` and `parsing`).
    pub fn with_metadata(mut self, metadata: JsonMap) -> FnAgent {
        self.metadata = Some(metadata);
        self
    }

    /// This executor behind an `Arc`, ready to register.
    pub fn shared(self) -> Arc<dyn AgentExecutor> {
        Arc::new(self)
    }
}

impl fmt::Debug for FnAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnAgent")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AgentExecutor for FnAgent {
    async fn execute(&self, input: &JsonMap, context: &JsonMap) -> Result<AgentResult, AgentError> {
        (self.call)(input.clone(), context.clone()).await
    }

    fn metadata(&self) -> Option<&JsonMap> {
        self.metadata.as_ref()
    }
}
