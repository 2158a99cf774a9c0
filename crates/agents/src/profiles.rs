//! Model profiles (`spec: flatprofiles`): finding `profiles.yml` and resolving an agent's
//! `model:` against it.
//!
//! Resolution layers four configs, each over the last, field by field (as the reference does):
//!
//! 1. the `default` profile;
//! 2. the profile the agent names (`model: fast`, or `model: {profile: fast, …}`);
//! 3. the agent's inline fields (`model: {profile: fast, temperature: 0.2}`, or a whole inline
//!    config); null values are skipped;
//! 4. the `override` profile, which wins over everything.
//!
//! A named profile that does not exist is a warning when a default was applied (the default
//! stands in), and an error otherwise.

use std::path::{Path, PathBuf};

use serde_json::Value;

use flatmachines_core::config::{Format, ModelConfig, ModelSpec, ProfilesData};
use flatmachines_core::{ConfigError, JsonMap, ProfilesConfig};

use crate::error::ModelError;

/// A loaded profiles document.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    file: PathBuf,
    data: ProfilesData,
}

impl Profiles {
    /// The file name discovery looks for.
    pub const FILE_NAME: &'static str = "profiles.yml";

    /// Reads and checks a profiles file.
    pub fn load(path: &Path) -> Result<Profiles, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        let (config, warnings) = ProfilesConfig::parse(&text, path, Format::from_path(path))?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        Ok(Profiles::from_config(config, path))
    }

    /// Profiles from an already parsed document; `file` names it in messages.
    pub fn from_config(config: ProfilesConfig, file: &Path) -> Profiles {
        Profiles {
            file: file.to_owned(),
            data: config.data,
        }
    }

    /// The first `profiles.yml` found in `dirs`, in order: for an agent, its own directory,
    /// then its machine's, then the root machine's. The nearest file wins whole; files are
    /// never merged.
    pub fn discover<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
        dirs.into_iter()
            .map(|dir| dir.join(Self::FILE_NAME))
            .find(|candidate| candidate.is_file())
    }

    /// The file these profiles came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The profile names, in file order.
    pub fn names(&self) -> Vec<String> {
        self.data.model_profiles.keys().cloned().collect()
    }

    fn get(&self, name: &str) -> Option<&ModelConfig> {
        self.data.model_profiles.get(name)
    }
}

/// Resolves an agent's `model:` against `profiles` (see the module docs for the order).
pub fn resolve_model(
    profiles: Option<&Profiles>,
    model: Option<&ModelSpec>,
) -> Result<ModelConfig, ModelError> {
    let mut merged = JsonMap::new();
    if let Some(profiles) = profiles
        && let Some(default) = &profiles.data.default
    {
        match profiles.get(default) {
            Some(config) => layer(&mut merged, config),
            None => {
                tracing::warn!(file = %profiles.file.display(), "default profile `{default}` is not defined")
            }
        }
    }
    let named = |name: &str, merged: &mut JsonMap| match profiles.and_then(|p| p.get(name)) {
        Some(config) => {
            layer(merged, config);
            Ok(())
        }
        // The reference keeps going on the default profile, with a warning.
        None if !merged.is_empty() => {
            tracing::warn!("model profile `{name}` is not defined; using the default profile");
            Ok(())
        }
        None => Err(ModelError::UnknownProfile {
            profile: name.to_owned(),
            file: profiles.map(|p| p.file.clone()),
            available: profiles.map(Profiles::names).unwrap_or_default(),
        }),
    };
    match model {
        None => {}
        Some(ModelSpec::Profile(name)) => named(name, &mut merged)?,
        Some(ModelSpec::Config(config)) => {
            if let Some(name) = &config.profile {
                named(name, &mut merged)?;
            }
            layer(&mut merged, config);
        }
    }
    if let Some(profiles) = profiles
        && let Some(name) = &profiles.data.override_profile
    {
        match profiles.get(name) {
            Some(config) => layer(&mut merged, config),
            None => {
                tracing::warn!(file = %profiles.file.display(), "override profile `{name}` is not defined")
            }
        }
    }
    if !merged.contains_key("name") {
        return Err(ModelError::NoModel {
            file: profiles.map(|p| p.file.clone()),
        });
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| ModelError::Invalid {
        field: "(resolved config)".to_owned(),
        message: e.to_string(),
    })
}

/// Sets every non-null field of `config` (except `profile`) on `merged`.
fn layer(merged: &mut JsonMap, config: &ModelConfig) {
    let Ok(Value::Object(fields)) = serde_json::to_value(config) else {
        return;
    };
    for (key, value) in fields {
        if key != "profile" && !value.is_null() {
            merged.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROFILES: &str = r#"
spec: flatprofiles
spec_version: "1.0.0"
data:
  model_profiles:
    base: {provider: openai, name: gpt-4o-mini, temperature: 0.5, max_tokens: 100, base_url: "http://base"}
    fast: {provider: groq, name: llama-3.1-8b-instant, temperature: 0.9}
    pinned: {temperature: 0, seed: 7}
  default: DEFAULT
  override: OVERRIDE
"#;

    fn profiles(default: Option<&str>, override_profile: Option<&str>) -> Profiles {
        let text = PROFILES
            .replace(
                "DEFAULT",
                default.map_or("null".into(), |d| d.to_owned()).as_str(),
            )
            .replace(
                "OVERRIDE",
                override_profile
                    .map_or("null".into(), |o| o.to_owned())
                    .as_str(),
            );
        let path = Path::new("profiles.yml");
        let (config, _) = ProfilesConfig::parse(&text, path, Format::Yaml).unwrap();
        Profiles::from_config(config, path)
    }

    fn spec(value: Value) -> ModelSpec {
        serde_json::from_value(value).unwrap()
    }

    fn resolved(profiles: Option<&Profiles>, model: Option<Value>) -> Value {
        let model = model.map(spec);
        let config = resolve_model(profiles, model.as_ref()).unwrap();
        serde_json::to_value(config).unwrap()
    }

    #[test]
    fn a_string_names_a_profile() {
        let p = profiles(None, None);
        assert_eq!(
            resolved(Some(&p), Some(json!("fast"))),
            json!({"provider": "groq", "name": "llama-3.1-8b-instant", "temperature": 0.9})
        );
    }

    #[test]
    fn the_default_applies_when_the_agent_names_no_model() {
        let p = profiles(Some("base"), None);
        assert_eq!(resolved(Some(&p), None)["name"], json!("gpt-4o-mini"));
    }

    #[test]
    fn a_named_profile_layers_over_the_default_field_by_field() {
        let p = profiles(Some("base"), None);
        // `fast` sets no max_tokens or base_url: the default's stay, as in the reference.
        assert_eq!(
            resolved(Some(&p), Some(json!("fast"))),
            json!({"provider": "groq", "name": "llama-3.1-8b-instant", "temperature": 0.9,
                   "max_tokens": 100, "base_url": "http://base"})
        );
    }

    #[test]
    fn inline_fields_override_the_named_profile() {
        let p = profiles(None, None);
        let config = resolved(
            Some(&p),
            Some(
                json!({"profile": "fast", "temperature": 0.1, "max_tokens": null, "api_key_env": "K"}),
            ),
        );
        assert_eq!(
            config,
            json!({"provider": "groq", "name": "llama-3.1-8b-instant", "temperature": 0.1, "api_key_env": "K"})
        );
    }

    #[test]
    fn an_inline_config_layers_over_the_default() {
        let p = profiles(Some("base"), None);
        let config = resolved(
            Some(&p),
            Some(json!({"provider": "anthropic", "name": "claude-x"})),
        );
        assert_eq!(config["provider"], json!("anthropic"));
        assert_eq!(config["temperature"], json!(0.5));
    }

    #[test]
    fn an_inline_config_needs_no_profiles() {
        let config = resolved(None, Some(json!({"provider": "openai", "name": "gpt-4o"})));
        assert_eq!(config, json!({"provider": "openai", "name": "gpt-4o"}));
    }

    #[test]
    fn the_override_profile_wins_over_everything() {
        let p = profiles(Some("base"), Some("pinned"));
        let config = resolved(
            Some(&p),
            Some(json!({"profile": "fast", "temperature": 0.3, "seed": 1})),
        );
        assert_eq!(config["temperature"], json!(0.0));
        assert_eq!(config["seed"], json!(7));
        assert_eq!(config["name"], json!("llama-3.1-8b-instant"));
    }

    #[test]
    fn an_unknown_profile_falls_back_to_the_default() {
        let p = profiles(Some("base"), None);
        assert_eq!(
            resolved(Some(&p), Some(json!("missing")))["name"],
            json!("gpt-4o-mini")
        );
        assert_eq!(
            resolved(Some(&p), Some(json!({"profile": "missing", "seed": 3})))["seed"],
            json!(3)
        );
    }

    #[test]
    fn an_unknown_profile_without_default_is_an_error() {
        let p = profiles(None, None);
        let error = resolve_model(Some(&p), Some(&spec(json!("missing")))).unwrap_err();
        assert_eq!(
            error,
            ModelError::UnknownProfile {
                profile: "missing".into(),
                file: Some("profiles.yml".into()),
                available: vec!["base".into(), "fast".into(), "pinned".into()],
            }
        );
        let error = resolve_model(None, Some(&spec(json!({"profile": "fast"})))).unwrap_err();
        assert!(matches!(
            error,
            ModelError::UnknownProfile { file: None, .. }
        ));
    }

    #[test]
    fn no_model_at_all_is_an_error() {
        let p = profiles(None, None);
        assert!(matches!(
            resolve_model(Some(&p), None),
            Err(ModelError::NoModel { file: Some(_) })
        ));
        assert!(matches!(
            resolve_model(None, None),
            Err(ModelError::NoModel { file: None })
        ));
        // A profile with only sampling fields gives no name either.
        assert!(matches!(
            resolve_model(Some(&p), Some(&spec(json!("pinned")))),
            Err(ModelError::NoModel { .. })
        ));
    }

    #[test]
    fn discovery_takes_the_nearest_file() {
        let root = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            root.path().join("a"),
            root.path().join("b"),
            root.path().join("c"),
        );
        for dir in [&a, &b, &c] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::write(b.join("profiles.yml"), "x").unwrap();
        std::fs::write(c.join("profiles.yml"), "x").unwrap();
        let found = Profiles::discover([a.as_path(), b.as_path(), c.as_path()]);
        assert_eq!(found, Some(b.join("profiles.yml")));
        assert_eq!(Profiles::discover([a.as_path()]), None);
    }
}
