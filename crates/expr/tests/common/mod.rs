//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use flatmachines_expr::{EvalError, Expression, ParseError};
use serde_json::Value;

/// Parses `source`, panicking with the parse error if it is invalid.
pub fn expr(source: &str) -> Expression {
    Expression::parse(source).unwrap_or_else(|e| panic!("{e}"))
}

/// Evaluates `source` against `scope`, whose top-level keys are the roots.
pub fn eval_in(source: &str, scope: &Value) -> Result<Value, EvalError> {
    expr(source)
        .evaluate(scope)
        .map(std::borrow::Cow::into_owned)
}

/// Evaluates a valid expression that must not fail.
pub fn value_in(source: &str, scope: &Value) -> Value {
    eval_in(source, scope).unwrap_or_else(|e| panic!("{e}"))
}

/// Evaluates a literal-only expression.
pub fn value(source: &str) -> Value {
    value_in(source, &Value::Null)
}

/// Evaluation error of a valid expression that must fail.
pub fn eval_error_in(source: &str, scope: &Value) -> EvalError {
    match eval_in(source, scope) {
        Ok(v) => panic!("`{source}` evaluated to {v} instead of failing"),
        Err(e) => e,
    }
}

/// Parse error of an invalid expression.
pub fn parse_error(source: &str) -> ParseError {
    match Expression::parse(source) {
        Ok(e) => panic!("`{source}` parsed unexpectedly: {e:?}"),
        Err(e) => e,
    }
}
