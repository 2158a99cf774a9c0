//! Tree-walking evaluator.
//!
//! Intermediate results are [`Val`]s that borrow from the expression (`'e`)
//! or from the scope (`'s`) whenever possible; only computed values
//! (arithmetic, concatenation, string indexing) are owned. Keeping the two
//! lifetimes apart lets the public API hand back scope data as
//! `Cow::Borrowed`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::ast::{Accessor, ArithOp, CmpOp, Node, Step};
use crate::error::Fault;
use crate::scope::{Binding, Scope};
use crate::value::{self, View};

static NULL: Value = Value::Null;

/// An evaluated intermediate.
#[derive(Debug)]
pub(crate) enum Val<'e, 's> {
    /// Borrowed from a literal in the expression.
    Lit(&'e Value),
    /// Borrowed from the scope.
    Ref(&'s Value),
    /// A scope object held as a bare map.
    Obj(&'s Map<String, Value>),
    /// A computed bool, kept apart from `Owned` because conditions produce
    /// them constantly and they need no drop glue.
    Bool(bool),
    /// Computed during evaluation.
    Owned(Value),
}

impl<'e, 's> Val<'e, 's> {
    pub(crate) fn view(&self) -> View<'_> {
        match self {
            Self::Lit(v) => View::of(v),
            Self::Ref(v) => View::of(v),
            Self::Obj(map) => View::Object(map),
            Self::Bool(b) => View::Bool(*b),
            Self::Owned(v) => View::of(v),
        }
    }

    pub(crate) fn into_cow(self) -> Cow<'s, Value> {
        match self {
            Self::Ref(v) => Cow::Borrowed(v),
            Self::Lit(v) => Cow::Owned(v.clone()),
            Self::Obj(map) => Cow::Owned(Value::Object(map.clone())),
            Self::Bool(b) => Cow::Owned(Value::Bool(b)),
            Self::Owned(v) => Cow::Owned(v),
        }
    }

    /// `.name`: the key's value on objects, null otherwise or when missing.
    fn field(self, name: &str) -> Self {
        match self {
            Self::Lit(v) => Self::Lit(v.get(name).unwrap_or(&NULL)),
            Self::Ref(v) => Self::Ref(object_field(v.as_object(), name)),
            Self::Obj(map) => Self::Ref(object_field(Some(map), name)),
            Self::Owned(Value::Object(mut map)) => {
                Self::Owned(map.remove(name).unwrap_or(Value::Null))
            }
            Self::Bool(_) | Self::Owned(_) => Self::Lit(&NULL),
        }
    }

    /// `[index]` with Python indexing rules, except that a missing key or an
    /// out-of-range position gives null instead of an error.
    fn index(self, index: View<'_>) -> Result<Self, String> {
        let position = index.as_index();
        let key = match index {
            View::String(key) => Some(key),
            _ => None,
        };
        let container = self.view();
        match (container, key, position) {
            (View::Object(_), Some(key), _) => Ok(self.field(key)),
            (View::List(items), _, Some(position)) => {
                let Some(at) = value::resolve_index(position, items.len()) else {
                    return Ok(Self::Lit(&NULL));
                };
                Ok(match self {
                    Self::Lit(Value::Array(items)) => Self::Lit(items.get(at).unwrap_or(&NULL)),
                    Self::Ref(Value::Array(items)) => Self::Ref(items.get(at).unwrap_or(&NULL)),
                    Self::Owned(Value::Array(mut items)) if at < items.len() => {
                        Self::Owned(items.swap_remove(at))
                    }
                    _ => Self::Lit(&NULL),
                })
            }
            (View::String(text), _, Some(position)) => {
                let len = text.chars().count();
                let found = value::resolve_index(position, len).and_then(|at| text.chars().nth(at));
                Ok(match found {
                    Some(c) => Self::Owned(Value::String(c.to_string())),
                    None => Self::Lit(&NULL),
                })
            }
            _ => Err(format!(
                "cannot index {} with {}",
                container.kind(),
                index.kind()
            )),
        }
    }
}

fn lookup<'s>(scope: &'s dyn Scope, name: &str, column: usize) -> Result<Binding<'s>, Fault> {
    scope
        .lookup(name)
        .ok_or_else(|| Fault::new(column, format!("unknown variable `{name}`")))
}

/// Follows a dotted path from a root binding without leaving borrowed data.
fn walk<'e, 's>(root: Binding<'s>, fields: &[String]) -> Val<'e, 's> {
    let (start, fields) = match root {
        Binding::Value(value) => (value, fields),
        Binding::Object(map) => match fields.split_first() {
            None => return Val::Obj(map),
            Some((first, rest)) => (object_field(Some(map), first), rest),
        },
    };
    let mut current = start;
    for field in fields {
        current = object_field(current.as_object(), field);
    }
    Val::Ref(current)
}

fn object_field<'a>(map: Option<&'a Map<String, Value>>, name: &str) -> &'a Value {
    map.and_then(|m| m.get(name)).unwrap_or(&NULL)
}

/// Evaluates the leaves that dominate real conditions (literals and dotted
/// paths) without a recursive call, falling back to [`eval`] for the rest.
#[inline]
fn operand<'e, 's>(node: &'e Node, scope: &'s dyn Scope) -> Result<Val<'e, 's>, Fault> {
    match node {
        Node::Literal(value) => Ok(Val::Lit(value)),
        Node::Path {
            name,
            column,
            fields,
        } => Ok(walk(lookup(scope, name, *column)?, fields)),
        _ => eval(node, scope),
    }
}

pub(crate) fn eval<'e, 's>(node: &'e Node, scope: &'s dyn Scope) -> Result<Val<'e, 's>, Fault> {
    match node {
        Node::Literal(value) => Ok(Val::Lit(value)),
        Node::Var { name, column } => match lookup(scope, name, *column)? {
            Binding::Value(value) => Ok(Val::Ref(value)),
            Binding::Object(map) => Ok(Val::Obj(map)),
        },
        Node::Path {
            name,
            column,
            fields,
        } => Ok(walk(lookup(scope, name, *column)?, fields)),
        Node::Access { base, accessors } => access(base, accessors, scope),
        Node::Neg { column, operand } => {
            let operand = eval(operand, scope)?;
            value::negate(operand.view())
                .map(Val::Owned)
                .map_err(|message| Fault::new(*column, message))
        }
        Node::Not(operand) => Ok(Val::Bool(!eval(operand, scope)?.view().truthy())),
        Node::Arith { first, rest } => arith(first, rest, scope),
        Node::Compare { first, rest } => compare(first, rest, scope).map(Val::Bool),
        Node::And(operands) => {
            for operand in operands {
                if !eval(operand, scope)?.view().truthy() {
                    return Ok(Val::Bool(false));
                }
            }
            Ok(Val::Bool(true))
        }
        Node::Or(operands) => {
            for operand in operands {
                if eval(operand, scope)?.view().truthy() {
                    return Ok(Val::Bool(true));
                }
            }
            Ok(Val::Bool(false))
        }
    }
}

fn access<'e, 's>(
    base: &'e Node,
    accessors: &'e [Accessor],
    scope: &'s dyn Scope,
) -> Result<Val<'e, 's>, Fault> {
    let mut current = eval(base, scope)?;
    for accessor in accessors {
        current = match accessor {
            Accessor::Field(name) => current.field(name),
            Accessor::Index { column, index } => {
                let index = eval(index, scope)?;
                current
                    .index(index.view())
                    .map_err(|message| Fault::new(*column, message))?
            }
        };
    }
    Ok(current)
}

fn arith<'e, 's>(
    first: &'e Node,
    rest: &'e [Step<ArithOp>],
    scope: &'s dyn Scope,
) -> Result<Val<'e, 's>, Fault> {
    let mut acc = eval(first, scope)?;
    for step in rest {
        let rhs = eval(&step.operand, scope)?;
        let result = value::arith(step.op, acc.view(), rhs.view())
            .map_err(|message| Fault::new(step.column, message))?;
        acc = Val::Owned(result);
    }
    Ok(acc)
}

/// A comparison chain; later operands are only evaluated while it holds.
fn compare(first: &Node, rest: &[Step<CmpOp>], scope: &dyn Scope) -> Result<bool, Fault> {
    let mut left = operand(first, scope)?;
    for step in rest {
        let right = operand(&step.operand, scope)?;
        let holds = value::compare(step.op, left.view(), right.view())
            .map_err(|message| Fault::new(step.column, message))?;
        if !holds {
            return Ok(false);
        }
        left = right;
    }
    Ok(true)
}
