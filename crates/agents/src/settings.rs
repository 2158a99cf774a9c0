//! A resolved model config turned into what a provider call needs, with the extension fields
//! this crate reads (documented in `docs/agents.md`).

use std::time::Duration;

use serde_json::Value;

use flatmachines_core::JsonMap;
use flatmachines_core::config::ModelConfig;

use crate::error::ModelError;
use crate::providers::presets::{self, ApiShape, Preset};

/// Temperature sent when none is configured: the reference always sends one, and this is its
/// default.
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
/// Anthropic requires `max_tokens`; this is sent when none is configured.
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 4096;
/// The `anthropic-version` header sent unless `anthropic_version` says otherwise.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
/// Whole-request timeout (connect, send, and reading the full answer or stream), seconds.
pub const DEFAULT_TIMEOUT_SECS: f64 = 600.0;
/// Connect timeout, seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: f64 = 10.0;

/// Everything a provider call needs, checked once when the agent is prepared.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// The provider.
    pub preset: &'static Preset,
    /// The model name sent to the API.
    pub model: String,
    /// `temperature` (default [`DEFAULT_TEMPERATURE`]).
    pub temperature: f64,
    /// `max_tokens`.
    pub max_tokens: Option<u64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `top_k`.
    pub top_k: Option<u64>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f64>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f64>,
    /// `seed`.
    pub seed: Option<i64>,
    /// The URL requests go to.
    pub endpoint: String,
    /// `stream`.
    pub stream: bool,
    /// `stream_options` (OpenAI-compatible only; default `{include_usage: true}`).
    pub stream_options: Option<Value>,
    /// The variable holding the API key; `None` sends no key.
    pub api_key_env: Option<String>,
    /// `timeout`.
    pub timeout: Duration,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// `input_cost_per_million`: price of a million prompt tokens.
    pub input_cost_per_million: Option<f64>,
    /// `output_cost_per_million`: price of a million completion tokens.
    pub output_cost_per_million: Option<f64>,
    /// `json_mode`: send `response_format: {type: json_object}` when the agent has an output
    /// schema (OpenAI-compatible only; default true).
    pub json_mode: bool,
    /// `anthropic_version` header.
    pub anthropic_version: String,
    /// `extra_body`: merged into the request body last.
    pub extra_body: JsonMap,
    /// The resolved config as prompts see it (`{{ model.name }}`, …).
    pub template_view: JsonMap,
}

impl ModelSettings {
    /// Checks a resolved model config (see [`resolve_model`](crate::resolve_model)).
    pub fn from_config(config: &ModelConfig) -> Result<ModelSettings, ModelError> {
        let name = config
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or(ModelError::NoModel { file: None })?;
        let (preset, model) = match config.provider.as_deref().map(str::trim) {
            Some(provider) if !provider.is_empty() => {
                let preset =
                    presets::preset(provider).ok_or_else(|| ModelError::UnknownProvider {
                        provider: provider.to_owned(),
                        known: presets::known_names(),
                    })?;
                // `openai/gpt-4o` with `provider: openai` means gpt-4o, as in LiteLLM.
                let model = match name.split_once('/') {
                    Some((prefix, rest))
                        if presets::preset(prefix).is_some_and(|p| p.name == preset.name) =>
                    {
                        rest
                    }
                    _ => name,
                };
                (preset, model.to_owned())
            }
            _ => {
                let (preset, model) =
                    presets::infer_provider(name).ok_or_else(|| ModelError::NoProvider {
                        model: name.to_owned(),
                    })?;
                (preset, model.to_owned())
            }
        };
        let extra = &config.extra;
        let endpoint = endpoint(preset, config.base_url.as_deref())?;
        let api_key_env = match extra.get("api_key_env") {
            None | Some(Value::Null) => preset.api_key_env.map(str::to_owned),
            Some(Value::String(name)) if name.trim().is_empty() => None,
            Some(Value::String(name)) => Some(name.trim().to_owned()),
            Some(_) => {
                return Err(invalid(
                    "api_key_env",
                    "expected the name of an environment variable, or \"\" for no key",
                ));
            }
        };
        let temperature = config.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        if !temperature.is_finite() || temperature < 0.0 {
            return Err(invalid("temperature", "expected a number ≥ 0"));
        }
        if config.max_tokens == Some(0) {
            return Err(invalid("max_tokens", "expected at least 1"));
        }
        let stream_options = match extra.get("stream_options") {
            None | Some(Value::Null) => None,
            Some(value @ Value::Object(_)) => Some(value.clone()),
            Some(_) => return Err(invalid("stream_options", "expected a mapping")),
        };
        let extra_body = match extra.get("extra_body") {
            None | Some(Value::Null) => JsonMap::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => {
                return Err(invalid(
                    "extra_body",
                    "expected a mapping of request fields",
                ));
            }
        };
        let anthropic_version = match extra.get("anthropic_version") {
            None | Some(Value::Null) => DEFAULT_ANTHROPIC_VERSION.to_owned(),
            Some(Value::String(v)) if !v.trim().is_empty() => v.trim().to_owned(),
            Some(_) => {
                return Err(invalid(
                    "anthropic_version",
                    "expected a version string such as \"2023-06-01\"",
                ));
            }
        };
        let json_mode = match extra.get("json_mode") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("json_mode", "expected true or false")),
        };
        Ok(ModelSettings {
            preset,
            model,
            temperature,
            max_tokens: config.max_tokens,
            top_p: config.top_p,
            top_k: config.top_k,
            frequency_penalty: config.frequency_penalty,
            presence_penalty: config.presence_penalty,
            seed: config.seed,
            endpoint,
            stream: config.stream.unwrap_or(false),
            stream_options,
            api_key_env,
            timeout: seconds(extra, "timeout", DEFAULT_TIMEOUT_SECS)?,
            connect_timeout: seconds(extra, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECS)?,
            input_cost_per_million: price(extra, "input_cost_per_million")?,
            output_cost_per_million: price(extra, "output_cost_per_million")?,
            json_mode,
            anthropic_version,
            extra_body,
            template_view: template_view(config, name, temperature),
        })
    }

    /// The cost of a call from the configured prices, when any price is configured.
    pub fn priced_cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        if self.input_cost_per_million.is_none() && self.output_cost_per_million.is_none() {
            return None;
        }
        let input = self.input_cost_per_million.unwrap_or(0.0) * prompt_tokens as f64;
        let output = self.output_cost_per_million.unwrap_or(0.0) * completion_tokens as f64;
        Some((input + output) / 1_000_000.0)
    }
}

fn invalid(field: &str, message: &str) -> ModelError {
    ModelError::Invalid {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn number(extra: &JsonMap, field: &str) -> Result<Option<f64>, ModelError> {
    match extra.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(invalid(field, "expected a number")),
    }
}

fn seconds(extra: &JsonMap, field: &str, default: f64) -> Result<Duration, ModelError> {
    let value = number(extra, field)?.unwrap_or(default);
    if !value.is_finite() || value <= 0.0 || value > 86_400.0 {
        return Err(invalid(
            field,
            "expected seconds, more than 0 and at most 86400",
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn price(extra: &JsonMap, field: &str) -> Result<Option<f64>, ModelError> {
    match number(extra, field)? {
        Some(p) if !p.is_finite() || p < 0.0 => Err(invalid(field, "expected a price ≥ 0")),
        other => Ok(other),
    }
}

/// The URL to POST to: the profile's `base_url` (else the preset's) plus the API's path.
fn endpoint(preset: &Preset, base_url: Option<&str>) -> Result<String, ModelError> {
    let configured = base_url.map(str::trim).filter(|b| !b.is_empty());
    let base = configured.unwrap_or(preset.base_url).trim_end_matches('/');
    let url = reqwest::Url::parse(base).map_err(|e| {
        invalid(
            "base_url",
            &format!("`{base}` is not a URL ({e}); expected for example http://localhost:11434/v1"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("base_url", "expected an http:// or https:// URL"));
    }
    let bare_host = url.path().trim_matches('/').is_empty();
    Ok(match preset.shape {
        ApiShape::OpenAi if base.ends_with("/chat/completions") => base.to_owned(),
        // Ollama's own docs give the server root (http://localhost:11434); its OpenAI API
        // lives under /v1.
        ApiShape::OpenAi if preset.name == "ollama" && bare_host => {
            format!("{base}/v1/chat/completions")
        }
        ApiShape::OpenAi => format!("{base}/chat/completions"),
        ApiShape::Anthropic if base.ends_with("/v1/messages") => base.to_owned(),
        ApiShape::Anthropic if base.ends_with("/v1") => format!("{base}/messages"),
        ApiShape::Anthropic => format!("{base}/v1/messages"),
    })
}

/// What `{{ model }}` shows: the merged config with the effective sampling values, and the
/// name as `provider/name`, as the reference passes it to LiteLLM.
fn template_view(config: &ModelConfig, name: &str, temperature: f64) -> JsonMap {
    let mut view = match serde_json::to_value(config) {
        Ok(Value::Object(map)) => map,
        _ => JsonMap::new(),
    };
    let full_name = match config.provider.as_deref() {
        Some(provider) if !name.contains('/') => format!("{provider}/{name}"),
        _ => name.to_owned(),
    };
    view.insert("name".into(), Value::String(full_name));
    view.insert("temperature".into(), Value::from(temperature));
    let optional = |v: Option<Value>| v.unwrap_or(Value::Null);
    view.insert(
        "max_tokens".into(),
        optional(config.max_tokens.map(Value::from)),
    );
    view.insert("top_p".into(), optional(config.top_p.map(Value::from)));
    view.insert("top_k".into(), optional(config.top_k.map(Value::from)));
    view.insert(
        "frequency_penalty".into(),
        optional(config.frequency_penalty.map(Value::from)),
    );
    view.insert(
        "presence_penalty".into(),
        optional(config.presence_penalty.map(Value::from)),
    );
    view.insert("seed".into(), optional(config.seed.map(Value::from)));
    view.insert(
        "base_url".into(),
        optional(config.base_url.clone().map(Value::from)),
    );
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: Value) -> Result<ModelSettings, ModelError> {
        let config: ModelConfig = serde_json::from_value(value).unwrap();
        ModelSettings::from_config(&config)
    }

    #[test]
    fn defaults_follow_the_preset() {
        let s = settings(json!({"provider": "openai", "name": "gpt-4o-mini"})).unwrap();
        assert_eq!(s.endpoint, "https://api.openai.com/v1/chat/completions");
        assert_eq!(s.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(s.temperature, 0.7);
        assert_eq!(s.timeout, Duration::from_secs(600));
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert!(s.json_mode);
        assert_eq!(s.template_view["name"], json!("openai/gpt-4o-mini"));
    }

    #[test]
    fn base_url_overrides_the_preset() {
        let s =
            settings(json!({"provider": "groq", "name": "m", "base_url": "http://127.0.0.1:9/x/"}))
                .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:9/x/chat/completions");
        let s =
            settings(json!({"provider": "ollama", "name": "m", "base_url": "http://box:11434"}))
                .unwrap();
        assert_eq!(s.endpoint, "http://box:11434/v1/chat/completions");
        assert_eq!(s.api_key_env, None);
        let s = settings(json!({"provider": "anthropic", "name": "claude-x"})).unwrap();
        assert_eq!(s.endpoint, "https://api.anthropic.com/v1/messages");
        let s = settings(json!({"provider": "anthropic", "name": "c", "base_url": "http://h/v1"}))
            .unwrap();
        assert_eq!(s.endpoint, "http://h/v1/messages");
    }

    #[test]
    fn extension_fields_are_read_and_checked() {
        let s = settings(json!({
            "provider": "openai", "name": "m", "api_key_env": "MY_KEY", "timeout": 2.5,
            "connect_timeout": 1, "input_cost_per_million": 3, "output_cost_per_million": 15,
            "json_mode": false, "extra_body": {"reasoning_effort": "low"}
        }))
        .unwrap();
        assert_eq!(s.api_key_env.as_deref(), Some("MY_KEY"));
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert_eq!(s.priced_cost(1_000_000, 100_000), Some(4.5));
        assert!(!s.json_mode);
        let s = settings(json!({"provider": "openai", "name": "m", "api_key_env": ""})).unwrap();
        assert_eq!(s.api_key_env, None);
        assert_eq!(s.priced_cost(10, 10), None);
        for (field, value) in [
            ("timeout", json!(0)),
            ("timeout", json!("fast")),
            ("api_key_env", json!(3)),
            ("input_cost_per_million", json!(-1)),
            ("extra_body", json!([1])),
            ("json_mode", json!("yes")),
        ] {
            let mut config = json!({"provider": "openai", "name": "m"});
            config[field] = value;
            let error = settings(config).unwrap_err();
            assert!(
                matches!(&error, ModelError::Invalid { field: f, .. } if f == field),
                "{error}"
            );
        }
    }

    #[test]
    fn providers_and_names_are_required_and_known() {
        assert!(matches!(
            settings(json!({"provider": "watsonx", "name": "m"})),
            Err(ModelError::UnknownProvider { .. })
        ));
        assert!(matches!(
            settings(json!({"name": "llama3"})),
            Err(ModelError::NoProvider { .. })
        ));
        assert!(matches!(
            settings(json!({"provider": "openai"})),
            Err(ModelError::NoModel { .. })
        ));
        let s = settings(json!({"name": "claude-3-5-haiku-latest"})).unwrap();
        assert_eq!(s.preset.name, "anthropic");
        let s = settings(json!({"provider": "openai", "name": "openai/gpt-4o"})).unwrap();
        assert_eq!(s.model, "gpt-4o");
        let s = settings(json!({"provider": "openrouter", "name": "openai/gpt-4o"})).unwrap();
        assert_eq!(s.model, "openai/gpt-4o");
        assert!(matches!(
            settings(json!({"provider": "openai", "name": "m", "base_url": "ftp://x"})),
            Err(ModelError::Invalid { .. })
        ));
    }
}
