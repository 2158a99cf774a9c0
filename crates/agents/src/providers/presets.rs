//! The providers this crate knows: their API shape, default base URL, key variable and which
//! optional sampling parameters they accept.

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiShape {
    /// OpenAI's chat-completions API (`POST {base_url}/chat/completions`).
    OpenAi,
    /// Anthropic's Messages API (`POST {base_url}/v1/messages`).
    Anthropic,
}

/// A named provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// `provider:` value.
    pub name: &'static str,
    /// Wire protocol.
    pub shape: ApiShape,
    /// Documented base URL; a profile's `base_url` replaces it.
    pub base_url: &'static str,
    /// Environment variable holding the key; `None` for local servers that need none.
    pub api_key_env: Option<&'static str>,
    /// Accepts `top_k`.
    pub top_k: bool,
    /// Accepts `frequency_penalty` and `presence_penalty`.
    pub penalties: bool,
    /// Accepts `seed`.
    pub seed: bool,
}

const fn openai_like(
    name: &'static str,
    base_url: &'static str,
    api_key_env: Option<&'static str>,
    top_k: bool,
) -> Preset {
    Preset {
        name,
        shape: ApiShape::OpenAi,
        base_url,
        api_key_env,
        top_k,
        penalties: true,
        seed: true,
    }
}

/// Every provider, in documentation order. `top_k` goes only to servers documented to accept
/// it: OpenAI itself and several strict compatibles reject unknown request fields.
pub const PRESETS: &[Preset] = &[
    openai_like(
        "openai",
        "https://api.openai.com/v1",
        Some("OPENAI_API_KEY"),
        false,
    ),
    Preset {
        name: "anthropic",
        shape: ApiShape::Anthropic,
        base_url: "https://api.anthropic.com",
        api_key_env: Some("ANTHROPIC_API_KEY"),
        top_k: true,
        penalties: false,
        seed: false,
    },
    openai_like(
        "cerebras",
        "https://api.cerebras.ai/v1",
        Some("CEREBRAS_API_KEY"),
        false,
    ),
    openai_like(
        "groq",
        "https://api.groq.com/openai/v1",
        Some("GROQ_API_KEY"),
        false,
    ),
    openai_like(
        "together",
        "https://api.together.ai/v1",
        Some("TOGETHER_API_KEY"),
        true,
    ),
    openai_like(
        "openrouter",
        "https://openrouter.ai/api/v1",
        Some("OPENROUTER_API_KEY"),
        true,
    ),
    openai_like(
        "deepseek",
        "https://api.deepseek.com",
        Some("DEEPSEEK_API_KEY"),
        false,
    ),
    openai_like(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        Some("FIREWORKS_API_KEY"),
        true,
    ),
    openai_like("ollama", "http://localhost:11434/v1", None, true),
    openai_like("vllm", "http://localhost:8000/v1", None, true),
    openai_like("lmstudio", "http://localhost:1234/v1", None, true),
];

/// Other spellings accepted for `provider:` (LiteLLM's names, used by reference configs).
const ALIASES: &[(&str, &str)] = &[
    ("together_ai", "together"),
    ("togetherai", "together"),
    ("hosted_vllm", "vllm"),
    ("lm_studio", "lmstudio"),
    ("fireworks_ai", "fireworks"),
    ("claude", "anthropic"),
];

/// The preset called `name` (case-insensitive, aliases included).
pub fn preset(name: &str) -> Option<&'static Preset> {
    let lower = name.trim().to_ascii_lowercase();
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower.as_str(), |(_, target)| target);
    PRESETS.iter().find(|p| p.name == canonical)
}

/// The preset names, comma-separated, for messages.
pub fn known_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The provider a model name implies when `provider` is absent: a known `provider/` prefix,
/// else OpenAI's and Anthropic's model families (as LiteLLM infers them).
pub(crate) fn infer_provider(model: &str) -> Option<(&'static Preset, &str)> {
    if let Some((prefix, rest)) = model.split_once('/')
        && let Some(preset) = preset(prefix)
    {
        return Some((preset, rest));
    }
    let lower = model.to_ascii_lowercase();
    let family = if lower.starts_with("claude") {
        "anthropic"
    } else if ["gpt-", "chatgpt", "o1", "o3", "o4"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        "openai"
    } else {
        return None;
    };
    preset(family).map(|p| (p, model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_found_by_name_and_alias() {
        assert_eq!(preset("OpenAI").map(|p| p.name), Some("openai"));
        assert_eq!(preset("together_ai").map(|p| p.name), Some("together"));
        assert_eq!(preset("hosted_vllm").map(|p| p.name), Some("vllm"));
        assert!(preset("watsonx").is_none());
        for required in [
            "openai",
            "anthropic",
            "cerebras",
            "groq",
            "together",
            "openrouter",
            "deepseek",
            "ollama",
            "vllm",
        ] {
            assert!(preset(required).is_some(), "{required}");
        }
    }

    #[test]
    fn local_servers_need_no_key() {
        for local in ["ollama", "vllm", "lmstudio"] {
            let preset = preset(local).unwrap();
            assert_eq!(preset.api_key_env, None);
            assert!(preset.base_url.starts_with("http://localhost:"));
        }
    }

    #[test]
    fn providers_are_inferred_from_model_names() {
        let name = |m: &str| infer_provider(m).map(|(p, rest)| (p.name, rest.to_owned()));
        assert_eq!(name("gpt-4o-mini"), Some(("openai", "gpt-4o-mini".into())));
        assert_eq!(
            name("claude-3-5-haiku-latest"),
            Some(("anthropic", "claude-3-5-haiku-latest".into()))
        );
        assert_eq!(name("ollama/llama3.2"), Some(("ollama", "llama3.2".into())));
        assert_eq!(name("meta-llama/llama-3-8b"), None);
        assert_eq!(name("llama3"), None);
    }
}
