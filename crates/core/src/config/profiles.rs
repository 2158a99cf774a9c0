//! The `spec: flatprofiles` document: named model configurations.

use std::path::Path;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ConfigError, ConfigWarning, Envelope, Format, ModelConfig, parse_envelope, parse_text,
};
use crate::JsonMap;

/// A parsed `spec: flatprofiles` document.
#[derive(Debug, Clone)]
pub struct ProfilesConfig {
    /// `spec_version`.
    pub spec_version: String,
    /// The profiles.
    pub data: ProfilesData,
    /// Free-form metadata.
    pub metadata: JsonMap,
}

impl ProfilesConfig {
    /// The `spec` value of profiles documents.
    pub const SPEC: &'static str = "flatprofiles";

    /// Parses profiles text. `file` names the source in errors.
    pub fn parse(
        text: &str,
        file: &Path,
        format: Format,
    ) -> Result<(ProfilesConfig, Vec<ConfigWarning>), ConfigError> {
        Self::from_value(parse_text(text, file, format)?, file)
    }

    /// Reads profiles from an already parsed document.
    pub fn from_value(
        document: Value,
        file: &Path,
    ) -> Result<(ProfilesConfig, Vec<ConfigWarning>), ConfigError> {
        let envelope: Envelope<ProfilesData> = parse_envelope(document, file, Self::SPEC)?;
        for (field, name) in [
            ("default", &envelope.data.default),
            ("override", &envelope.data.override_profile),
        ] {
            if let Some(name) = name
                && !envelope.data.model_profiles.contains_key(name)
            {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    location: format!("data.{field}"),
                    message: format!("names profile `{name}`, which is not under `model_profiles`"),
                });
            }
        }
        let config = ProfilesConfig {
            spec_version: envelope.spec_version,
            data: envelope.data,
            metadata: envelope.metadata,
        };
        Ok((config, envelope.warnings))
    }
}

/// The `data` of a profiles document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProfilesData {
    /// Profiles by name.
    #[serde(default)]
    pub model_profiles: IndexMap<String, ModelConfig>,
    /// Used when an agent names no model.
    #[serde(default)]
    pub default: Option<String>,
    /// Applied over every agent's model.
    #[serde(rename = "override", default)]
    pub override_profile: Option<String>,
}
