//! The `simple` expression language of the FlatMachines runtime.
//!
//! Expressions are transition conditions and small computations over the
//! machine's JSON data, for example
//! `context.score >= 8 and context.round < 4`. An [`Expression`] is parsed
//! once and evaluated many times against a [`Scope`] that supplies the root
//! variables (`context`, `input`, `output`, …).
//!
//! ```
//! use flatmachines_expr::{Expression, MapScope};
//! use serde_json::json;
//!
//! let expr = Expression::parse("context.score >= 8 and context.round < 4")?;
//! let context = json!({"score": 9, "round": 2});
//! let scope = MapScope::new().with_value("context", &context);
//! assert!(expr.evaluate_bool(&scope)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The language is the subset of Python expressions that the Python
//! reference runtime's `simple` engine evaluates (it used Python's `ast`
//! module and Python's operators), with the deviations listed at the end.
//!
//! # Grammar
//!
//! From loosest to tightest binding:
//!
//! ```text
//! expression  := or_expr
//! or_expr     := and_expr ( "or" and_expr )*
//! and_expr    := not_expr ( "and" not_expr )*
//! not_expr    := "not" not_expr | comparison
//! comparison  := sum ( ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) sum )*
//! sum         := term ( ( "+" | "-" ) term )*
//! term        := unary ( ( "*" | "/" ) unary )*
//! unary       := "-" unary | postfix
//! postfix     := atom ( "." NAME | "[" expression "]" )*
//! atom        := NUMBER | STRING+ | "true" | "false" | "null"
//!              | "True" | "False" | "None" | NAME | "(" expression ")"
//! ```
//!
//! * `NAME` is `[A-Za-z_][A-Za-z0-9_]*`, excluding Python keywords, which
//!   are reserved (use `x["class"]` for such a key). A `NAME` in atom
//!   position is a root variable, looked up in the [`Scope`]; after a `.`,
//!   `true`/`false`/`null` are ordinary field names.
//! * Numbers are decimal: integers (`42`, which must fit in an `i64`) and
//!   floats (`1.5`, `.5`, `1.`, `1e3`, `2.5E-3`). `-` applied directly to a
//!   number literal is folded, so `-9223372036854775808` is valid.
//! * Strings use single or double quotes and Python escapes:
//!   `\\ \' \" \n \t \r \a \b \f \v`, octal `\0`–`\777`, `\xNN`, `\uNNNN`,
//!   `\UNNNNNNNN`, and backslash-newline as a line continuation. Unknown
//!   escapes keep their backslash (`'\q'` is two characters). Adjacent
//!   string literals are concatenated (`'a' 'b'` is `'ab'`).
//! * Whitespace (including newlines) separates tokens; `#` starts a comment
//!   that runs to the end of the line.
//! * An empty or whitespace-only expression is valid and evaluates to `true`
//!   (the "always" transition).
//!
//! Nesting of parentheses, subscripts, `not` and unary `-` is limited to
//! 64 levels and the source to 64 KiB, so no input can exhaust the stack.
//!
//! Rejected with a [`ParseError`] that names the construct: function calls,
//! `in` / `not in` / `is` / `is not`, `%`, `//`, `**`, bitwise operators,
//! unary `+`, `lambda`, conditional expressions, list / dict / set literals,
//! tuples, slices, f-strings and other prefixed strings, triple-quoted
//! strings, assignment (`=`, `:=`), empty parentheses and trailing tokens.
//!
//! # Semantics
//!
//! Values are JSON values ([`serde_json::Value`]); their types are called
//! null, bool, int, float, string, list and object in messages.
//!
//! * **Access.** `a.b` gives the key's value on an object, or null when the
//!   key is missing or `a` is not an object. `x["k"]` on an object is the
//!   same (missing → null). `x[i]` on a list or string takes the `i`-th item
//!   or character, counting from the end when negative (`x[-1]`); out of
//!   range → null. Bools are valid indexes (`True` is 1), as in Python.
//!   Every other combination (`list["a"]`, `object[1]`, `null[0]`,
//!   `x[1.5]`) is an [`EvalError`].
//! * **Truthiness** is Python's: null, false, 0, 0.0, `""`, `[]` and `{}`
//!   are false, everything else true ([`truthy`]).
//! * **`not`, `and`, `or`** always produce bools; `and` / `or` short-circuit,
//!   so `false and (null > 1)` is `false` without an error.
//! * **Arithmetic** (`+ - * /`) follows Python's numeric tower with bools as
//!   the ints 0 and 1: int with int gives an int (an overflow of the JSON
//!   integer range is an error), anything with a float gives a float, and
//!   `/` always gives a float. Division by zero and non-finite float
//!   results are errors. `+` also concatenates two strings or two lists.
//!   Any other operand types are an error naming the operator and types.
//! * **Equality** (`==`, `!=`) never fails: ints, floats and bools compare
//!   numerically and exactly (`1 == 1.0`, `True == 1`), strings by content,
//!   lists element-wise, objects by key set and values regardless of key
//!   order; values of different kinds are simply unequal.
//! * **Ordering** (`< <= > >=`) is defined between numbers (bools
//!   included), between strings (code-point order) and between lists
//!   (lexicographic, deciding on the first unequal pair of items);
//!   anything else, e.g. null with int, is an error.
//! * **Chained comparisons** mean what they mean in Python: `a < b < c` is
//!   `a < b and b < c` with `b` evaluated once, stopping at the first false
//!   link.
//! * An unknown root variable is an [`EvalError`].
//!
//! # Deviations from the Python reference
//!
//! Each of these is deliberate; where the reference produced an exception
//! or a Python-only object, this crate gives a defined JSON answer or a
//! clear error.
//!
//! * A missing object key in a subscript (`x["k"]`) and an out-of-range list
//!   or string index give null here; the reference raised `KeyError` /
//!   `IndexError`. (Missing `.field`s were already null there.)
//! * `.name` on a non-object is null; the reference returned Python
//!   attributes such as bound methods (`x.count` on a list).
//! * Unary `-` works on numbers (and so negative indexes work); the
//!   reference rejected every unary operator except `not`.
//! * Integers are limited to the JSON range (`i64` literals, `i64`/`u64`
//!   results) and overflow is an error; Python integers are unbounded.
//!   Float literals or results that are not finite are errors rather than
//!   `inf`. Sequence repetition (`'ab' * 2`) is an error. `/` converts both
//!   operands to floats first, so for integers beyond 2^53 the quotient can
//!   differ from Python's correctly rounded one in the last bit.
//! * Leading whitespace and newlines are allowed anywhere between tokens;
//!   Python's eval mode rejected both outside brackets.
//! * Only ASCII identifiers and decimal number literals are accepted
//!   (no `0x10`, `1_000`, `1j`, or non-ASCII names); `\N{...}` escapes,
//!   escapes producing lone surrogates and prefixed strings (`r'..'`,
//!   `u'..'`, `b'..'`, f-strings) are rejected.

mod ast;
#[cfg(feature = "cel")]
mod cel;
mod engine;
mod error;
mod eval;
mod lexer;
mod parser;
mod scope;
mod value;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

pub use engine::{ExpressionEngine, UnknownEngine};
pub use error::{EvalError, ParseError};
pub use scope::{Binding, MapScope, Scope};

use ast::Node;
use error::Fault;

/// Longest accepted source text, in bytes.
const MAX_SOURCE_BYTES: usize = 64 * 1024;

/// A parsed expression: parse once, evaluate many times.
///
/// Cheap to share between threads (`Send + Sync`) and to clone.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    body: Body,
    /// Deduplicated root variables with their columns, in source order.
    variables: Vec<(String, usize)>,
}

/// What an [`Expression`] runs.
#[derive(Debug, Clone)]
enum Body {
    /// An empty expression, which is always true.
    Always,
    Simple(Node),
    #[cfg(feature = "cel")]
    Cel(std::sync::Arc<cel::CelProgram>),
}

impl Expression {
    /// Parses `source` in the language of `engine`.
    ///
    /// # Errors
    ///
    /// As [`Expression::parse`] for `simple`. For `cel`: CEL syntax errors, sources over
    /// 16 KiB or nested more than 32 levels deep, and — in a build without the `cel`
    /// feature — the engine being unavailable.
    pub fn parse_with(engine: ExpressionEngine, source: &str) -> Result<Self, ParseError> {
        match engine {
            ExpressionEngine::Simple => Self::parse(source),
            ExpressionEngine::Cel => Self::parse_cel(source),
        }
    }

    #[cfg(feature = "cel")]
    fn parse_cel(source: &str) -> Result<Self, ParseError> {
        if source.trim().is_empty() {
            return Ok(Self {
                source: source.to_owned(),
                body: Body::Always,
                variables: Vec::new(),
            });
        }
        let (program, variables) =
            cel::compile(source).map_err(|fault| fault.into_parse_error(source))?;
        Ok(Self {
            source: source.to_owned(),
            body: Body::Cel(std::sync::Arc::new(program)),
            variables,
        })
    }

    #[cfg(not(feature = "cel"))]
    fn parse_cel(source: &str) -> Result<Self, ParseError> {
        Err(Fault::new(
            1,
            "the `cel` expression engine is not in this build (enable the `cel` feature)",
        )
        .into_parse_error(source))
    }

    /// The engine this expression was parsed for.
    #[must_use]
    pub fn engine(&self) -> ExpressionEngine {
        match &self.body {
            #[cfg(feature = "cel")]
            Body::Cel(_) => ExpressionEngine::Cel,
            _ => ExpressionEngine::Simple,
        }
    }

    /// Parses `source` in the `simple` language.
    ///
    /// # Errors
    ///
    /// Returns a [`ParseError`] with the 1-based character column of the
    /// first problem when `source` is not a valid expression, is longer than
    /// 64 KiB, or nests more than 64 levels deep.
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        if source.len() > MAX_SOURCE_BYTES {
            // Only a prefix goes into the error, so printing it stays sensible.
            let mut prefix: String = source.chars().take(40).collect();
            prefix.push('…');
            return Err(Fault::new(
                1,
                format!("expression is too long (more than {MAX_SOURCE_BYTES} bytes)"),
            )
            .into_parse_error(&prefix));
        }
        if source.trim().is_empty() {
            return Ok(Self {
                source: source.to_owned(),
                body: Body::Always,
                variables: Vec::new(),
            });
        }
        let parsed = parser::parse(source).map_err(|fault| fault.into_parse_error(source))?;
        let mut seen = HashSet::new();
        let variables = parsed
            .variables
            .into_iter()
            .filter(|(name, _)| seen.insert(name.clone()))
            .collect();
        Ok(Self {
            source: source.to_owned(),
            body: Body::Simple(parsed.root),
            variables,
        })
    }

    /// The source text this expression was parsed from.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Root identifiers the expression reads, each with the 1-based column of
    /// its first occurrence, in source order and without duplicates.
    ///
    /// The literals `true`, `false`, `null`, `True`, `False` and `None` are
    /// not variables, and neither are field names after a `.`.
    #[must_use]
    pub fn root_variables(&self) -> Vec<(&str, usize)> {
        self.variables
            .iter()
            .map(|(name, column)| (name.as_str(), *column))
            .collect()
    }

    /// Evaluates the expression to a JSON value.
    ///
    /// Values taken straight from the scope are returned borrowed; computed
    /// values, literals and map bindings ([`Binding::Object`]) are owned.
    /// An empty expression evaluates to `true`.
    ///
    /// # Errors
    ///
    /// Returns an [`EvalError`] for an unknown root variable, an operator
    /// applied to unsupported types, an invalid subscript, integer overflow,
    /// division by zero or a non-finite float result.
    pub fn evaluate<'s>(&self, scope: &'s dyn Scope) -> Result<Cow<'s, Value>, EvalError> {
        match &self.body {
            Body::Always => Ok(Cow::Owned(Value::Bool(true))),
            Body::Simple(root) => eval::eval(root, scope)
                .map(eval::Val::into_cow)
                .map_err(|fault| fault.into_eval_error(&self.source)),
            #[cfg(feature = "cel")]
            Body::Cel(program) => program
                .evaluate(&self.variables, scope)
                .map(Cow::Owned)
                .map_err(|fault| fault.into_eval_error(&self.source)),
        }
    }

    /// Evaluates the expression and applies Python truthiness ([`truthy`]).
    /// An empty expression is `true`.
    ///
    /// # Errors
    ///
    /// The same as [`Expression::evaluate`].
    pub fn evaluate_bool(&self, scope: &dyn Scope) -> Result<bool, EvalError> {
        match &self.body {
            Body::Always => Ok(true),
            Body::Simple(root) => eval::eval(root, scope)
                .map(|value| value.view().truthy())
                .map_err(|fault| fault.into_eval_error(&self.source)),
            #[cfg(feature = "cel")]
            Body::Cel(program) => program
                .evaluate(&self.variables, scope)
                .map(|value| truthy(&value))
                .map_err(|fault| fault.into_eval_error(&self.source)),
        }
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Expression {
    type Err = ParseError;

    fn from_str(source: &str) -> Result<Self, ParseError> {
        Self::parse(source)
    }
}

/// Python truthiness of a JSON value: null, false, 0, 0.0, `""`, `[]` and
/// `{}` are false; everything else is true.
#[must_use]
pub fn truthy(value: &Value) -> bool {
    value::View::of(value).truthy()
}
