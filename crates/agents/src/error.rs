//! Errors: what fails while an agent is prepared ([`BuildError`], [`ModelError`]) and the error
//! type names a failed call carries ([`error_types`]).

use std::path::PathBuf;

use flatmachines_core::{AgentError, ConfigError};

/// The `error_type` names of failed agent calls, which `on_error` maps and
/// `context.last_error_type` see.
pub mod error_types {
    /// HTTP 429, or a provider's rate-limit error inside a response or stream.
    pub const RATE_LIMIT: &str = "RateLimitError";
    /// HTTP 401 or 403: the key is missing, wrong or not allowed to use the model.
    pub const AUTHENTICATION: &str = "AuthenticationError";
    /// Another HTTP 4xx: the provider refused the request (unknown model, bad parameter, …).
    pub const BAD_REQUEST: &str = "BadRequestError";
    /// HTTP 5xx (including Anthropic's 529 "overloaded"), or a server error inside a stream.
    pub const SERVER: &str = "ServerError";
    /// The connect or request timeout expired, or the server answered 408. The same name as
    /// the engine's own timeouts, so `on_error: {Timeout: …}` (or `TimeoutError`) catches both.
    pub const TIMEOUT: &str = "Timeout";
    /// The provider could not be reached (refused connection, DNS, TLS, a cut stream).
    pub const CONNECTION: &str = "ConnectionError";
    /// The provider answered 2xx with a body that is not what its API documents.
    pub const INVALID_RESPONSE: &str = "InvalidResponse";
    /// A prompt template failed to render. The same name as the engine's template errors.
    pub const TEMPLATE: &str = "TemplateError";
    /// The agent's input has the wrong shape (a malformed `messages` history).
    pub const INVALID_VALUE: &str = "InvalidValue";
    /// The agent could not be prepared (reported at prepare time, before anything runs).
    pub const CONFIG: &str = "ConfigError";
    /// The agent's file does not exist: a state using it fails when it is reached (unless the
    /// runtime has `strict_references`). The engine's name for a missing file, so `on_error`
    /// also routes it by the reference's `FileNotFoundError`.
    pub const FILE_NOT_FOUND: &str = "FileNotFound";

    /// Every name above, for documentation and tests.
    pub const ALL: [&str; 11] = [
        RATE_LIMIT,
        AUTHENTICATION,
        BAD_REQUEST,
        SERVER,
        TIMEOUT,
        CONNECTION,
        INVALID_RESPONSE,
        TEMPLATE,
        INVALID_VALUE,
        CONFIG,
        FILE_NOT_FOUND,
    ];
}

/// A problem with an agent's resolved model: its profile, provider, parameters or key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// `model:` names a profile that does not exist, and there is no default to fall back on.
    #[error(
        "model profile `{profile}` is not defined {}",
        where_defined(file, available)
    )]
    UnknownProfile {
        /// The profile asked for.
        profile: String,
        /// The profiles file searched, if one was found.
        file: Option<PathBuf>,
        /// The profiles it defines.
        available: Vec<String>,
    },
    /// Nothing gives the agent a model name.
    #[error(
        "no model: `data.model` does not name one and {} (write `model: {{provider: openai, name: gpt-4o-mini}}`, or name a profile)",
        match file {
            Some(file) => format!("`{}` has no `default` profile", file.display()),
            None => "no profiles.yml with a `default` profile was found".to_owned(),
        }
    )]
    NoModel {
        /// The profiles file used, if any.
        file: Option<PathBuf>,
    },
    /// The provider is not one this crate speaks.
    #[error(
        "unknown provider `{provider}` (known: {known}); for another OpenAI-compatible server use `provider: openai` with `base_url`"
    )]
    UnknownProvider {
        /// The provider named.
        provider: String,
        /// The provider names known, comma-separated.
        known: String,
    },
    /// No provider is given and none can be told from the model name.
    #[error(
        "model `{model}` names no provider: set `provider` (openai, anthropic, ollama, …) or write the name as `provider/model`"
    )]
    NoProvider {
        /// The model name.
        model: String,
    },
    /// A field has the wrong type or value.
    #[error("`model.{field}`: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The API key's environment variable is not set.
    #[error(
        "provider `{provider}` needs an API key in the environment variable `{env}`, which is not set (set it, name another variable with `api_key_env`, or write `api_key_env: \"\"` for a server without keys)"
    )]
    MissingApiKey {
        /// The provider.
        provider: String,
        /// The variable read.
        env: String,
    },
    /// The HTTP client could not be built (the TLS backend failed to start).
    #[error("cannot build the HTTP client: {message}")]
    Client {
        /// The reason.
        message: String,
    },
}

fn where_defined(file: &Option<PathBuf>, available: &[String]) -> String {
    let listed = if available.is_empty() {
        "none".to_owned()
    } else {
        available.join(", ")
    };
    match file {
        Some(file) => format!(
            "in `{}` (profiles: {listed}), and it has no `default` profile to fall back on",
            file.display()
        ),
        None => {
            "anywhere: no profiles.yml was found next to the agent, its machine or the root machine"
                .to_owned()
        }
    }
}

/// An agent could not be prepared. Every variant names the agent and, where there is one, its
/// file; the engine adds the machine file and `data.agents.<name>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The agent file could not be read.
    #[error("agent `{agent}`: cannot read `{}`: {source}", file.display())]
    Read {
        /// The agent.
        agent: String,
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The agent document (or the profiles file) is not valid.
    #[error("agent `{agent}`: {source}")]
    Config {
        /// The agent.
        agent: String,
        /// What the config loader found; it names the file and location.
        #[source]
        source: ConfigError,
    },
    /// The agent reference cannot be served by this adapter.
    #[error("agent `{agent}`: {message}")]
    Reference {
        /// The agent.
        agent: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The model could not be resolved or configured.
    #[error("agent `{agent}` ({origin}): {source}")]
    Model {
        /// The agent.
        agent: String,
        /// The agent file, or `inline config`.
        origin: String,
        /// The problem.
        #[source]
        source: ModelError,
    },
    /// A tool of `data.tools` is not a usable function declaration.
    #[error("agent `{agent}` ({origin}): {source}")]
    Tools {
        /// The agent.
        agent: String,
        /// The agent file, or `inline config`.
        origin: String,
        /// Which declaration, and what is wrong with it.
        #[source]
        source: flatmachines_core::llm::ToolDeclarationError,
    },
    /// A prompt template does not compile.
    #[error("agent `{agent}` ({origin}): template `data.{field}`: {message}")]
    Template {
        /// The agent.
        agent: String,
        /// The agent file, or `inline config`.
        origin: String,
        /// `system`, `user` or `instruction_suffix`.
        field: &'static str,
        /// The compiler's message.
        message: String,
    },
}

impl From<BuildError> for AgentError {
    fn from(error: BuildError) -> Self {
        let error_type = match &error {
            BuildError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                error_types::FILE_NOT_FOUND
            }
            _ => error_types::CONFIG,
        };
        AgentError::new(error.to_string()).with_type(error_type)
    }
}

/// `text` cut to at most `max` characters (on a character boundary), marked when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((index, _)) => format!("{}… ({} bytes in all)", &text[..index], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééééé", 2);
        assert!(cut.starts_with("éé…"), "{cut}");
        assert!(cut.ends_with("(10 bytes in all)"), "{cut}");
    }

    #[test]
    fn messages_name_what_to_do() {
        let error = ModelError::UnknownProfile {
            profile: "fast".into(),
            file: Some("p/profiles.yml".into()),
            available: vec!["slow".into()],
        };
        assert_eq!(
            error.to_string(),
            "model profile `fast` is not defined in `p/profiles.yml` (profiles: slow), and it has no `default` profile to fall back on"
        );
        let error = BuildError::Model {
            agent: "writer".into(),
            origin: "writer.yml".into(),
            source: ModelError::MissingApiKey {
                provider: "openai".into(),
                env: "OPENAI_API_KEY".into(),
            },
        };
        let agent_error = AgentError::from(error);
        assert_eq!(agent_error.error_type, "ConfigError");
        assert!(agent_error.message.starts_with("agent `writer` (writer.yml): provider `openai` needs an API key in the environment variable `OPENAI_API_KEY`"));
    }
}
