//! [`FlatAgent`]: one `spec: flatagent` document, ready to call.

use std::path::{Path, PathBuf};
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use flatmachines_core::config::Format;
use flatmachines_core::llm::{Message, ToolDefinition};
use flatmachines_core::{
    AgentConfig, AgentError, AgentExecutor, AgentResult, AgentTurn, DeclaredServers, JsonMap,
};

use crate::error::{BuildError, ModelError};
use crate::profiles::{Profiles, resolve_model};
use crate::prompt::Prompt;
use crate::providers::presets::ApiShape;
use crate::providers::{ChatRequest, Completion, ProviderClient};
use crate::secret::KeySource;
use crate::settings::ModelSettings;
use crate::structured::OutputSchema;

/// An LLM agent: prompts, a resolved model and a provider client. Built once when a machine is
/// prepared; each [`AgentExecutor::execute`] is one provider call.
pub struct FlatAgent {
    name: String,
    origin: String,
    prompt: Prompt,
    schema: Option<OutputSchema>,
    /// `data.tools`, offered to the model on every call.
    tools: Option<Vec<ToolDefinition>>,
    client: ProviderClient,
    metadata: JsonMap,
    /// `data.mcp`, when it names servers.
    servers: Option<DeclaredServers>,
}

impl std::fmt::Debug for FlatAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatAgent")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("client", &self.client)
            .field("structured", &self.schema.is_some())
            .finish_non_exhaustive()
    }
}

impl FlatAgent {
    /// Loads an agent file, with the `profiles.yml` next to it (if any).
    pub fn from_file(path: &Path, keys: &KeySource) -> Result<FlatAgent, BuildError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let config = read_config(&name, path)?;
        let profiles = match path.parent().and_then(|dir| Profiles::discover([dir])) {
            Some(file) => Some(Profiles::load(&file).map_err(|source| BuildError::Config {
                agent: name.clone(),
                source,
            })?),
            None => None,
        };
        let origin = path.display().to_string();
        let agent = FlatAgent::new(&name, &config, &origin, profiles.as_ref(), keys)?;
        Ok(match path.parent() {
            Some(dir) => agent.with_config_dir(dir),
            None => agent,
        })
    }

    /// Builds an agent from a parsed document. `name` is used when the document has no
    /// `data.name`; `origin` (the file, or `inline config`) appears in messages; `profiles`
    /// resolve its `model:`.
    pub fn new(
        name: &str,
        config: &AgentConfig,
        origin: &str,
        profiles: Option<&Profiles>,
        keys: &KeySource,
    ) -> Result<FlatAgent, BuildError> {
        let data = &config.data;
        let model_error = |source| BuildError::Model {
            agent: name.to_owned(),
            origin: origin.to_owned(),
            source,
        };
        let resolved = resolve_model(profiles, data.model.as_ref()).map_err(model_error)?;
        let settings = ModelSettings::from_config(&resolved).map_err(|e| match e {
            ModelError::NoModel { .. } => model_error(ModelError::NoModel {
                file: profiles.map(|p| p.file().to_owned()),
            }),
            other => model_error(other),
        })?;
        warn_dropped_parameters(name, &settings);
        let schema = data
            .output
            .as_ref()
            .filter(|fields| !fields.is_empty())
            .map(|fields| OutputSchema::new(fields.clone()));
        let prompt = Prompt::new(
            data.system.as_deref(),
            data.user.as_deref(),
            data.instruction_suffix.as_deref(),
            data.mcp.as_ref().and_then(|m| m.tool_prompt.as_deref()),
            schema.as_ref().map(OutputSchema::instruction),
            &settings.template_view,
        )
        .map_err(|(field, message)| BuildError::Template {
            agent: name.to_owned(),
            origin: origin.to_owned(),
            field,
            message,
        })?;
        let tools = declared_tools(name, origin, data.tools.as_deref())?;
        let client = ProviderClient::new(settings, keys).map_err(model_error)?;
        Ok(FlatAgent {
            name: data.name.clone().unwrap_or_else(|| name.to_owned()),
            origin: origin.to_owned(),
            prompt,
            schema,
            tools,
            client,
            metadata: config.metadata.clone(),
            servers: data
                .mcp
                .as_ref()
                .filter(|m| !m.servers.is_empty())
                .map(|config| DeclaredServers {
                    config: config.clone(),
                    base_dir: PathBuf::from("."),
                }),
        })
    }

    /// Resolves the `cwd` of the agent's MCP servers against `dir` (its config's directory)
    /// rather than the process's working directory.
    pub fn with_config_dir(mut self, dir: impl Into<PathBuf>) -> FlatAgent {
        if let Some(servers) = &mut self.servers {
            servers.base_dir = dir.into();
        }
        self
    }

    /// The agent's name (`data.name`, else the name it was declared under).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resolved model settings.
    pub fn settings(&self) -> &ModelSettings {
        self.client.settings()
    }

    /// The request body a call with `input` would send (for dry runs and debugging; it holds
    /// no key).
    pub fn request_body(&self, input: &JsonMap) -> Result<Value, AgentError> {
        let messages = self.prompt.render(&self.name, input, &[])?;
        Ok(self.client.body(&self.request(&messages)))
    }

    /// The request for `messages`: JSON output when the agent has a schema, and its tools.
    fn request<'a>(&'a self, messages: &'a [Message]) -> ChatRequest<'a> {
        let mut request = ChatRequest::new(messages, self.schema.is_some());
        request.tools = self.tools.as_deref();
        request
    }

    fn result(&self, completion: Completion) -> AgentResult {
        let settings = self.client.settings();
        let usage = completion.usage;
        let cost = settings
            .priced_cost(usage.prompt_tokens, usage.completion_tokens)
            .or(usage.reported_cost);
        let mut usage_map = JsonMap::new();
        usage_map.insert("prompt_tokens".into(), Value::from(usage.prompt_tokens));
        usage_map.insert(
            "completion_tokens".into(),
            Value::from(usage.completion_tokens),
        );
        usage_map.insert("total_tokens".into(), Value::from(usage.total_tokens));
        usage_map.insert("api_calls".into(), Value::from(1));
        if let Some(cost) = cost {
            usage_map.insert("cost".into(), Value::from(cost));
        }
        let mut metadata = self.metadata.clone();
        if let Some(reason) = &completion.finish_reason {
            metadata.insert("finish_reason".into(), Value::from(reason.as_str()));
        }
        let tool_calls = completion.tool_calls;
        // A turn that only calls tools has no answer to parse yet.
        let schema = self.schema.as_ref().filter(|_| tool_calls.is_empty());
        let output = schema.map(|schema| {
            let parsed = schema.parse(&completion.content);
            if let Some(error) = &parsed.error {
                tracing::warn!(agent = %self.name, "structured output did not parse: {error}; the output is {{\"_raw\": …}}");
                metadata.insert("parse_error".into(), Value::from(error.as_str()));
            }
            if !parsed.missing.is_empty() {
                tracing::warn!(
                    agent = %self.name,
                    missing = %parsed.missing.join(", "),
                    "structured output lacks required fields"
                );
                metadata.insert(
                    "missing_fields".into(),
                    Value::from(parsed.missing.clone()),
                );
            }
            parsed.output
        });
        AgentResult {
            output,
            content: Some(completion.content),
            raw: Some(completion.raw),
            usage: Some(usage_map),
            cost,
            metadata: (!metadata.is_empty()).then_some(metadata),
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        }
    }
}

#[async_trait]
impl AgentExecutor for FlatAgent {
    async fn execute(
        &self,
        input: &JsonMap,
        _context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        let messages = self.prompt.render(&self.name, input, &[])?;
        let request = self.request(&messages);
        let started = Instant::now();
        let completion = self.client.complete(&request).await?;
        tracing::debug!(
            agent = %self.name,
            provider = self.client.settings().preset.name,
            model = %self.client.settings().model,
            prompt_tokens = completion.usage.prompt_tokens,
            completion_tokens = completion.usage.completion_tokens,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "agent call finished"
        );
        Ok(self.result(completion))
    }

    fn metadata(&self) -> Option<&JsonMap> {
        Some(&self.metadata)
    }

    fn declared_tools(&self) -> &[ToolDefinition] {
        self.tools.as_deref().unwrap_or_default()
    }

    fn tool_servers(&self) -> Option<&DeclaredServers> {
        self.servers.as_ref()
    }

    fn supports_tool_loop(&self) -> bool {
        true
    }

    async fn execute_turn(
        &self,
        turn: &AgentTurn<'_>,
        _context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        let mut messages = self.prompt.render(&self.name, turn.input, turn.catalog)?;
        messages.extend_from_slice(turn.conversation);
        let mut request = ChatRequest::new(&messages, self.schema.is_some());
        request.tools = (!turn.tools.is_empty()).then_some(turn.tools);
        request.answer_only = turn.answer_only;
        let completion = self.client.complete(&request).await?;
        tracing::debug!(
            agent = %self.name,
            tool_calls = completion.tool_calls.len(),
            "tool loop turn finished"
        );
        Ok(self.result(completion))
    }
}

/// Reads and parses an agent file.
pub(crate) fn read_config(agent: &str, path: &Path) -> Result<AgentConfig, BuildError> {
    let text = std::fs::read_to_string(path).map_err(|source| BuildError::Read {
        agent: agent.to_owned(),
        file: path.to_owned(),
        source,
    })?;
    let (config, warnings) =
        AgentConfig::parse(&text, path, Format::from_path(path)).map_err(|source| {
            BuildError::Config {
                agent: agent.to_owned(),
                source,
            }
        })?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

/// Says once, at prepare time, which configured parameters the provider does not take.
fn warn_dropped_parameters(agent: &str, settings: &ModelSettings) {
    let preset = settings.preset;
    let mut dropped = Vec::new();
    if settings.top_k.is_some() && !preset.top_k {
        dropped.push("top_k");
    }
    if !preset.penalties {
        if settings.frequency_penalty.is_some() {
            dropped.push("frequency_penalty");
        }
        if settings.presence_penalty.is_some() {
            dropped.push("presence_penalty");
        }
    }
    if settings.seed.is_some() && !preset.seed {
        dropped.push("seed");
    }
    if settings.stream_options.is_some() && preset.shape == ApiShape::Anthropic {
        dropped.push("stream_options");
    }
    if !dropped.is_empty() {
        tracing::warn!(
            agent,
            provider = preset.name,
            "provider `{}` does not take {}; they are not sent (use `extra_body` to force a field)",
            preset.name,
            dropped.join(", ")
        );
    }
}

/// `data.tools`, checked (see [`ToolDefinition::check_all`]).
fn declared_tools(
    agent: &str,
    origin: &str,
    tools: Option<&[ToolDefinition]>,
) -> Result<Option<Vec<ToolDefinition>>, BuildError> {
    let Some(tools) = tools.filter(|tools| !tools.is_empty()) else {
        return Ok(None);
    };
    ToolDefinition::check_all(tools).map_err(|source| BuildError::Tools {
        agent: agent.to_owned(),
        origin: origin.to_owned(),
        source,
    })?;
    Ok(Some(tools.to_vec()))
}
