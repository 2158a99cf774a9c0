//! Which language an expression is written in.

use std::fmt;
use std::str::FromStr;

/// The expression languages a machine can choose with `expression_engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ExpressionEngine {
    /// The `simple` language (the default): Python-like comparisons and boolean logic.
    #[default]
    Simple,
    /// The Common Expression Language, with macros, string functions, timestamps and
    /// durations; needs the `cel` feature.
    Cel,
}

impl ExpressionEngine {
    /// Every engine, in the order messages list them.
    pub const ALL: [ExpressionEngine; 2] = [ExpressionEngine::Simple, ExpressionEngine::Cel];

    /// The name configs use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ExpressionEngine::Simple => "simple",
            ExpressionEngine::Cel => "cel",
        }
    }

    /// Whether this build can parse expressions of this engine.
    #[must_use]
    pub fn is_available(self) -> bool {
        match self {
            ExpressionEngine::Simple => true,
            ExpressionEngine::Cel => cfg!(feature = "cel"),
        }
    }
}

impl fmt::Display for ExpressionEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name was not `simple` or `cel`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown expression engine `{0}` (expected `simple` or `cel`)")]
pub struct UnknownEngine(pub String);

impl FromStr for ExpressionEngine {
    type Err = UnknownEngine;

    fn from_str(name: &str) -> Result<Self, UnknownEngine> {
        ExpressionEngine::ALL
            .into_iter()
            .find(|engine| engine.name() == name)
            .ok_or_else(|| UnknownEngine(name.to_owned()))
    }
}
