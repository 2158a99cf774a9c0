//! Errors and warnings found while loading and checking configs.

use std::fmt;
use std::path::{Path, PathBuf};

/// A config could not be loaded, or is inconsistent. Every variant names the file and, where
/// there is one, the location inside it (`states.review.transitions[0].to`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed YAML or JSON.
    #[error("{}: invalid {format}{}: {message}", file.display(), at_line(*line, *column))]
    Syntax {
        /// The file.
        file: PathBuf,
        /// `YAML` or `JSON`.
        format: &'static str,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The document's `spec` is not the expected one.
    #[error("{}: expected `spec: {expected}`, found {found}", file.display())]
    WrongSpec {
        /// The file.
        file: PathBuf,
        /// The spec this loader reads.
        expected: &'static str,
        /// What the document has, described.
        found: String,
    },
    /// A required field is absent.
    #[error("{}: missing `{field}`{}", file.display(), hint_suffix(hint))]
    Missing {
        /// The file.
        file: PathBuf,
        /// The field's path.
        field: String,
        /// What to write there.
        hint: Option<String>,
    },
    /// `spec_version` is not a version number.
    #[error(
        "{}: `spec_version` {version:?} is not a version number (expected MAJOR.MINOR.PATCH, for example \"1.0.0\")",
        file.display()
    )]
    BadSpecVersion {
        /// The file.
        file: PathBuf,
        /// The offending value.
        version: String,
    },
    /// A field has the wrong type or value.
    #[error("{}: `{location}`: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Where in the document.
        location: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The machine defines no states.
    #[error("{}: the machine has no states (`data.states` is missing or empty)", file.display())]
    NoStates {
        /// The file.
        file: PathBuf,
    },
    /// More than one state is `type: initial`.
    #[error(
        "{}: states `{first}` and `{second}` are both `type: initial`; a machine has exactly one initial state",
        file.display()
    )]
    MultipleInitial {
        /// The file.
        file: PathBuf,
        /// The first initial state.
        first: String,
        /// The second one.
        second: String,
    },
    /// A transition, `on_error` or similar names a state that does not exist.
    #[error(
        "{}: `{location}` goes to state `{target}`, which does not exist{}",
        file.display(),
        suggestion_suffix(suggestion)
    )]
    UnknownState {
        /// The file.
        file: PathBuf,
        /// Where the reference is.
        location: String,
        /// The missing state.
        target: String,
        /// The closest existing state name.
        suggestion: Option<String>,
    },
    /// A state uses a machine or agent that is not declared.
    #[error(
        "{}: state `{state}` uses {kind} `{name}`, which is not declared under `data.{section}`{}",
        file.display(),
        suggestion_suffix(suggestion)
    )]
    UnknownReference {
        /// The file.
        file: PathBuf,
        /// The state using it.
        state: String,
        /// `machine` or `agent`.
        kind: &'static str,
        /// `machines` or `agents`.
        section: &'static str,
        /// The undeclared name.
        name: String,
        /// The closest declared name.
        suggestion: Option<String>,
    },
    /// A template does not compile.
    #[error("{}: template in `{location}`: {message}", file.display())]
    Template {
        /// The file.
        file: PathBuf,
        /// The field holding the template.
        location: String,
        /// The template engine's message, with line and column.
        message: String,
    },
    /// An expression does not parse or reads an unknown variable.
    #[error("{}: `{location}`: {message}", file.display())]
    Expression {
        /// The file.
        file: PathBuf,
        /// The field holding the expression.
        location: String,
        /// The parser's message, naming the expression and column.
        message: String,
    },
    /// The config asks for something this build cannot do.
    #[error("{}: `{location}`: {message}", file.display())]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// The field asking for it.
        location: String,
        /// What is not supported and what to do instead.
        message: String,
    },
    /// A bound of [`Limits`](crate::Limits) was reached while reading the file.
    #[error("{}{}: {message} ({})", file.display(), at_line(*line, *column), limit.hint(*value))]
    Limit {
        /// The file.
        file: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What was too big or too deep.
        message: String,
        /// The bound.
        limit: crate::Limit,
        /// Its value.
        value: u64,
    },
    /// A referenced config (a child machine) failed to load.
    #[error("{}: `{location}`: {source}", file.display())]
    Reference {
        /// The referencing file.
        file: PathBuf,
        /// The reference's location.
        location: String,
        /// Why the referenced config failed.
        #[source]
        source: Box<ConfigError>,
    },
}

fn at_line(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

fn suggestion_suffix(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

impl ConfigError {
    /// The file the error is about (for a failed reference, the referencing file).
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::WrongSpec { file, .. }
            | ConfigError::Missing { file, .. }
            | ConfigError::BadSpecVersion { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::NoStates { file }
            | ConfigError::MultipleInitial { file, .. }
            | ConfigError::UnknownState { file, .. }
            | ConfigError::UnknownReference { file, .. }
            | ConfigError::Template { file, .. }
            | ConfigError::Expression { file, .. }
            | ConfigError::Unsupported { file, .. }
            | ConfigError::Limit { file, .. }
            | ConfigError::Reference { file, .. } => file,
        }
    }
}

/// Something suspicious that does not stop the config from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file.
    pub file: PathBuf,
    /// Where in the document (empty for the whole document).
    pub location: String,
    /// What looks wrong.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: `{}`: {}",
                self.file.display(),
                self.location,
                self.message
            )
        }
    }
}

/// The candidate closest to `name`, if one is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_owned())
}
