//! `CompositeHooks`: several hooks as one.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use flatmachines_core::hooks::HookError;
use flatmachines_core::{
    AgentToolCall, Context, JsonMap, MachineHooks, StateError, ToolCallResult,
};

use super::HookRegistry;

/// Runs hooks in order. Context and output changes flow from one to the next; a transition
/// redirect by one is what the next sees; the first `on_error` that names a recovery state
/// wins; an action is handled if any hook handled it.
#[derive(Debug, Clone, Default)]
pub struct CompositeHooks {
    hooks: Vec<Arc<dyn MachineHooks>>,
}

impl CompositeHooks {
    /// Composes `hooks`, run in this order.
    pub fn new(hooks: Vec<Arc<dyn MachineHooks>>) -> Self {
        CompositeHooks { hooks }
    }

    /// Reads `hooks: [{class, args}, …]`, building each through `registry`.
    pub fn from_args(args: &JsonMap, registry: &HookRegistry) -> Result<Self, String> {
        let Some(Value::Array(entries)) = args.get("hooks") else {
            return Err("CompositeHooks needs `hooks: [{class, args}, …]`".to_owned());
        };
        let mut hooks = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let class = entry
                .get("class")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("hooks[{index}] needs a `class`"))?;
            let args = match entry.get("args") {
                Some(Value::Object(args)) => args.clone(),
                None | Some(Value::Null) => JsonMap::new(),
                Some(_) => return Err(format!("hooks[{index}].args must be a mapping")),
            };
            hooks.push(registry.build(class, &args)?);
        }
        Ok(CompositeHooks { hooks })
    }
}

#[async_trait]
impl MachineHooks for CompositeHooks {
    async fn on_machine_start(&self, context: &mut Context) -> Result<(), HookError> {
        for hook in &self.hooks {
            hook.on_machine_start(context).await?;
        }
        Ok(())
    }

    async fn on_machine_end(
        &self,
        context: &mut Context,
        output: &mut Value,
    ) -> Result<(), HookError> {
        for hook in &self.hooks {
            hook.on_machine_end(context, output).await?;
        }
        Ok(())
    }

    async fn on_state_enter(&self, state: &str, context: &mut Context) -> Result<(), HookError> {
        for hook in &self.hooks {
            hook.on_state_enter(state, context).await?;
        }
        Ok(())
    }

    async fn on_state_exit(
        &self,
        state: &str,
        context: &mut Context,
        output: &mut Option<Value>,
    ) -> Result<(), HookError> {
        for hook in &self.hooks {
            hook.on_state_exit(state, context, output).await?;
        }
        Ok(())
    }

    async fn on_transition(
        &self,
        from: &str,
        to: &str,
        context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        let mut target: Option<String> = None;
        for hook in &self.hooks {
            let current = target.as_deref().unwrap_or(to);
            if let Some(redirect) = hook.on_transition(from, current, context).await? {
                target = Some(redirect);
            }
        }
        Ok(target)
    }

    async fn on_error(
        &self,
        state: &str,
        error: &StateError,
        context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        for hook in &self.hooks {
            if let Some(recovery) = hook.on_error(state, error, context).await? {
                return Ok(Some(recovery));
            }
        }
        Ok(None)
    }

    async fn on_action(&self, action: &str, context: &mut Context) -> Result<bool, HookError> {
        let mut handled = false;
        for hook in &self.hooks {
            handled |= hook.on_action(action, context).await?;
        }
        Ok(handled)
    }

    async fn on_tool_calls(
        &self,
        state: &str,
        calls: &[AgentToolCall],
        context: &mut Context,
    ) -> Result<(), HookError> {
        for hook in &self.hooks {
            hook.on_tool_calls(state, calls, context).await?;
        }
        Ok(())
    }

    async fn on_tool_result(
        &self,
        state: &str,
        result: &ToolCallResult,
        context: &mut Context,
    ) -> Result<(), HookError> {
        for hook in &self.hooks {
            hook.on_tool_result(state, result, context).await?;
        }
        Ok(())
    }
}
