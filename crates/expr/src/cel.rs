//! The `cel` engine: the Common Expression Language through the `cel` crate (the
//! cel-interpreter project), behind the `cel` feature.
//!
//! Parsing runs on a helper thread with a large stack, and programs nested deeper than
//! [`MAX_DEPTH`] are refused: the parser and the interpreter recurse once per level, and a
//! few dozen levels already exhaust a 2 MiB async worker stack in an unoptimised build.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr};
use cel::objects::{Key, Map};
use cel::{Context, Env, IdedExpr, Program};
use serde_json::Value;

use crate::error::Fault;
use crate::scope::{Binding, Scope};

/// Deepest accepted syntax tree (operators, calls, selections and macro bodies).
pub(crate) const MAX_DEPTH: usize = 32;
/// Longest accepted source text, in bytes.
const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// Deepest bracket nesting looked at before parsing at all.
const MAX_BRACKETS: usize = 64;
/// Stack of the thread that parses: generous, since the parser recurses per bracket.
const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// A compiled CEL program and the root variables it reads.
#[derive(Debug)]
pub(crate) struct CelProgram {
    program: Program,
}

/// The environment every program is compiled and run in: the standard library plus the
/// string extension (`lowerAscii`, `replace`, `split`, …).
fn environment() -> &'static Arc<Env> {
    static ENVIRONMENT: OnceLock<Arc<Env>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut env = Env::stdlib();
        // The string extension only declares functions; it cannot clash with the stdlib.
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    })
}

/// Compiles `source`; returns the program and its free variables with their columns.
pub(crate) fn compile(source: &str) -> Result<(CelProgram, Vec<(String, usize)>), Fault> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(Fault::new(
            1,
            format!("CEL expression is too long (more than {MAX_SOURCE_BYTES} bytes)"),
        ));
    }
    check_brackets(source)?;
    let owned = source.to_owned();
    let parsed = std::thread::Builder::new()
        .name("cel-parser".to_owned())
        .stack_size(PARSER_STACK_BYTES)
        .spawn(move || {
            environment()
                .compile(&owned)
                .map_err(|errors| parse_fault(&owned, &errors))
        })
        .map_err(|e| Fault::new(1, format!("cannot start the CEL parser thread: {e}")))?
        .join()
        .map_err(|_| Fault::new(1, "the CEL parser failed on this input".to_owned()))??;
    let root = parsed.expression();
    let depth = depth(root);
    if depth > MAX_DEPTH {
        return Err(Fault::new(
            1,
            format!("CEL expression nests {depth} levels deep (at most {MAX_DEPTH})"),
        ));
    }
    let variables = free_variables(root)
        .into_iter()
        .map(|(name, id)| {
            let column = parsed
                .source_info()
                .offset_for(id)
                .map_or(1, |(start, _)| column_of(source, start as usize));
            (name, column)
        })
        .collect();
    Ok((CelProgram { program: parsed }, variables))
}

impl CelProgram {
    /// Runs the program with the root variables it reads taken from `scope`.
    pub(crate) fn evaluate(
        &self,
        variables: &[(String, usize)],
        scope: &dyn Scope,
    ) -> Result<Value, Fault> {
        let mut context = Context::with_env(Arc::clone(environment()));
        for (name, column) in variables {
            let value = match scope.lookup(name) {
                Some(Binding::Value(value)) => to_cel(value),
                Some(Binding::Object(object)) => object_to_cel(object),
                None => {
                    return Err(Fault::new(*column, format!("unknown variable `{name}`")));
                }
            };
            context.add_variable_from_value(name.as_str(), value);
        }
        let result = self
            .program
            .execute(&context)
            .map_err(|e| Fault::new(1, e.to_string()))?;
        from_cel(&result).map_err(|message| Fault::new(1, message))
    }
}

/// The first parse error, with its 1-based character column on the expression's line.
fn parse_fault(source: &str, errors: &cel::ParseErrors) -> Fault {
    let Some(first) = errors.errors.first() else {
        return Fault::new(1, "not a valid CEL expression".to_owned());
    };
    let (line, column) = first.pos;
    // Columns of later lines are counted from the start of the whole text, as the simple
    // engine does.
    let preceding: usize = source
        .split_inclusive('\n')
        .take(usize::try_from(line.max(1) - 1).unwrap_or(0))
        .map(|l| l.chars().count())
        .sum();
    let column = preceding + usize::try_from(column).unwrap_or(1).max(1);
    Fault::new(column, first.msg.clone())
}

fn column_of(source: &str, byte_offset: usize) -> usize {
    let end = byte_offset.min(source.len());
    let end = (0..=end)
        .rev()
        .find(|&i| source.is_char_boundary(i))
        .unwrap_or(0);
    source[..end].chars().count() + 1
}

/// Refuses bracket nesting the parser would need an unbounded stack for.
fn check_brackets(source: &str) -> Result<(), Fault> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (index, c) in source.chars().enumerate() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_BRACKETS {
                    return Err(Fault::new(
                        index + 1,
                        format!("CEL expression nests brackets more than {MAX_BRACKETS} deep"),
                    ));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Children of a node, in source order.
fn children(node: &IdedExpr) -> Vec<&IdedExpr> {
    match &node.expr {
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(call.args.iter())
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => entries(&map.entries),
        Expr::Struct(s) => entries(&s.entries),
        Expr::Select(select) => vec![&select.operand],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
        #[allow(
            unreachable_patterns,
            reason = "future node kinds have no children we know of"
        )]
        _ => Vec::new(),
    }
}

fn entries(entries: &[cel::common::ast::IdedEntryExpr]) -> Vec<&IdedExpr> {
    entries
        .iter()
        .flat_map(|entry| match &entry.expr {
            EntryExpr::StructField(field) => vec![&field.value],
            EntryExpr::MapEntry(pair) => vec![&pair.key, &pair.value],
        })
        .collect()
}

/// Height of the tree, walked without recursion.
fn depth(root: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(root, 1usize)];
    while let Some((node, level)) = pending.pop() {
        deepest = deepest.max(level);
        // Past the limit the exact height no longer matters.
        if level <= MAX_DEPTH {
            pending.extend(children(node).into_iter().map(|child| (child, level + 1)));
        }
    }
    deepest
}

/// Identifiers not bound by a macro, each with the id of its first use, in source order.
fn free_variables(root: &IdedExpr) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = Vec::new();
    let mut pending: Vec<(&IdedExpr, Vec<&str>)> = vec![(root, Vec::new())];
    while let Some((node, bound)) = pending.pop() {
        match &node.expr {
            Expr::Ident(name) => {
                if !name.starts_with('@')
                    && !bound.contains(&name.as_str())
                    && !found.iter().any(|(seen, _)| seen == name)
                {
                    found.push((name.clone(), node.id));
                }
            }
            Expr::Comprehension(c) => {
                let mut inner = bound.clone();
                inner.push(&c.iter_var);
                if let Some(second) = &c.iter_var2 {
                    inner.push(second);
                }
                inner.push(&c.accu_var);
                pending.push((&c.iter_range, bound.clone()));
                pending.push((&c.accu_init, bound));
                for body in [&c.loop_cond, &c.loop_step, &c.result] {
                    pending.push((body, inner.clone()));
                }
            }
            _ => {
                for child in children(node) {
                    pending.push((child, bound.clone()));
                }
            }
        }
    }
    found.sort_by_key(|(_, id)| *id);
    found
}

fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(object) => object_to_cel(object),
    }
}

fn object_to_cel(object: &serde_json::Map<String, Value>) -> cel::Value {
    let map: HashMap<Key, cel::Value> = object
        .iter()
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
        .collect();
    cel::Value::Map(Map { map: Arc::new(map) })
}

/// A CEL result as JSON: timestamps as RFC 3339 strings, durations as seconds with an `s`
/// (CEL's own notation), bytes refused.
fn from_cel(value: &cel::Value) -> Result<Value, String> {
    Ok(match value {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Int(i) => Value::from(*i),
        cel::Value::UInt(u) => Value::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("the result {f} is not a finite number"))?,
        cel::Value::String(s) => Value::String(s.as_ref().clone()),
        cel::Value::List(items) => {
            Value::Array(items.iter().map(from_cel).collect::<Result<Vec<_>, _>>()?)
        }
        cel::Value::Map(map) => {
            let mut entries: Vec<(String, Value)> = map
                .map
                .iter()
                .map(|(key, v)| Ok((key_text(key), from_cel(v)?)))
                .collect::<Result<_, String>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        cel::Value::Timestamp(t) => Value::String(t.to_rfc3339()),
        cel::Value::Duration(d) => {
            let seconds = d.num_milliseconds() as f64 / 1000.0;
            Value::String(format!("{seconds}s"))
        }
        other => {
            return Err(format!(
                "the result has type {}, which has no JSON form",
                type_name(other)
            ));
        }
    })
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => s.as_ref().clone(),
    }
}

fn type_name(value: &cel::Value) -> Cow<'static, str> {
    match value {
        cel::Value::Bytes(_) => "bytes".into(),
        cel::Value::Function(name, _) => format!("function `{name}`").into(),
        _ => "opaque value".into(),
    }
}

#[cfg(test)]
mod tests;
