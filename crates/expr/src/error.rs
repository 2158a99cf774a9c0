//! Error types reported by parsing and evaluation.

use thiserror::Error;

/// The expression text could not be parsed.
///
/// `column` is 1-based and counts characters, not bytes, so it lines up with
/// what a person sees in an editor or a YAML file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid expression `{expression}` at column {column}: {message}")]
pub struct ParseError {
    /// The source text that was being parsed (only its first 40 characters
    /// followed by `…` when it was rejected for exceeding 64 KiB).
    pub expression: String,
    /// 1-based character column where the problem was found.
    pub column: usize,
    /// Short lowercase description of what was expected or is unsupported.
    pub message: String,
}

/// A parsed expression failed while being evaluated against a scope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot evaluate `{expression}` (column {column}): {message}")]
pub struct EvalError {
    /// The full source text of the expression.
    pub expression: String,
    /// 1-based character column of the operator, subscript or name that failed.
    pub column: usize,
    /// Short lowercase description of the failure.
    pub message: String,
}

/// Position and message of a failure, before the source text is attached.
///
/// Lexer, parser and evaluator all report this so that the (allocating)
/// public error is only built once, at the API boundary.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fault {
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl Fault {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> Self {
        Self {
            column,
            message: message.into(),
        }
    }

    pub(crate) fn into_parse_error(self, source: &str) -> ParseError {
        ParseError {
            expression: source.to_owned(),
            column: self.column,
            message: self.message,
        }
    }

    pub(crate) fn into_eval_error(self, source: &str) -> EvalError {
        EvalError {
            expression: source.to_owned(),
            column: self.column,
            message: self.message,
        }
    }
}
