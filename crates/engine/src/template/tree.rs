//! A value whose strings may be templates, compiled once and rendered per use.

use serde_json::{Map, Value};

use super::{Node, RenderError, Template, TemplateEngine, Vars};

/// A compiled config value (`input:`, `output:`, `context:` …).
#[derive(Debug, Clone)]
pub(crate) enum TemplateTree {
    /// Nothing to render.
    Literal(Value),
    /// A path reference such as `output.items`: the raw value at the path.
    Path(Box<[Box<str>]>),
    /// A template string.
    Template(Template),
    /// An object with something to render inside.
    Map(Vec<(String, TemplateTree)>),
    /// A list with something to render inside.
    List(Vec<TemplateTree>),
}

impl TemplateTree {
    /// Compiles every string in `value`. `location` names the value in errors.
    pub(crate) fn compile(
        value: &Value,
        location: &str,
        engine: &mut TemplateEngine,
    ) -> Result<TemplateTree, (String, String)> {
        let tree = match value {
            Value::String(s) => Self::compile_str(s, location, engine)?,
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (key, value) in map {
                    let location = format!("{location}.{key}");
                    fields.push((key.clone(), Self::compile(value, &location, engine)?));
                }
                if fields
                    .iter()
                    .all(|(_, t)| matches!(t, TemplateTree::Literal(_)))
                {
                    TemplateTree::Literal(value.clone())
                } else {
                    TemplateTree::Map(fields)
                }
            }
            Value::Array(items) => {
                let mut compiled = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let location = format!("{location}[{index}]");
                    compiled.push(Self::compile(item, &location, engine)?);
                }
                if compiled
                    .iter()
                    .all(|t| matches!(t, TemplateTree::Literal(_)))
                {
                    TemplateTree::Literal(value.clone())
                } else {
                    TemplateTree::List(compiled)
                }
            }
            other => TemplateTree::Literal(other.clone()),
        };
        Ok(tree)
    }

    /// Compiles one string.
    pub(crate) fn compile_str(
        source: &str,
        location: &str,
        engine: &mut TemplateEngine,
    ) -> Result<TemplateTree, (String, String)> {
        if source.contains("{{") || source.contains("{%") {
            return engine
                .compile(source, location)
                .map(TemplateTree::Template)
                .map_err(|message| (location.to_owned(), message));
        }
        Ok(match path_reference(source.trim()) {
            Some(path) => TemplateTree::Path(path),
            None => TemplateTree::Literal(Value::String(source.to_owned())),
        })
    }

    /// Compiles an object of templates.
    pub(crate) fn compile_map(
        map: &Map<String, Value>,
        location: &str,
        engine: &mut TemplateEngine,
    ) -> Result<TemplateTree, (String, String)> {
        Self::compile(&Value::Object(map.clone()), location, engine)
    }

    /// Renders the value.
    pub(crate) fn render(
        &self,
        engine: &TemplateEngine,
        vars: &Vars,
    ) -> Result<Value, RenderError> {
        Ok(match self {
            TemplateTree::Literal(value) => value.clone(),
            TemplateTree::Path(path) => resolve_path(path, vars),
            TemplateTree::Template(template) => engine.render(template, vars)?,
            TemplateTree::Map(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (key, tree) in fields {
                    map.insert(key.clone(), tree.render(engine, vars)?);
                }
                Value::Object(map)
            }
            TemplateTree::List(items) => Value::Array(
                items
                    .iter()
                    .map(|item| item.render(engine, vars))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Renders a tree compiled from an object, returning the object.
    pub(crate) fn render_map(
        &self,
        engine: &TemplateEngine,
        vars: &Vars,
    ) -> Result<Map<String, Value>, RenderError> {
        match self.render(engine, vars)? {
            Value::Object(map) => Ok(map),
            // Trees built by `compile_map` always render to objects.
            _ => Ok(Map::new()),
        }
    }
}

/// `output.a.b`, `context.x`, `input.y`: the reference's path-reference pattern.
fn path_reference(text: &str) -> Option<Box<[Box<str>]>> {
    let segments: Vec<Box<str>> = text.split('.').map(Box::from).collect();
    if segments.len() < 2 || !matches!(&*segments[0], "output" | "context" | "input") {
        return None;
    }
    let identifier = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    segments[1..]
        .iter()
        .all(|s| identifier(s))
        .then(|| segments.into_boxed_slice())
}

/// The value at a path reference: null when any step is missing or not an object.
fn resolve_path(path: &[Box<str>], vars: &Vars) -> Value {
    let Some((first, rest)) = path.split_first() else {
        return Value::Null;
    };
    let Some(root) = vars.get(first) else {
        return Value::Null;
    };
    let mut node = root.value();
    for segment in rest {
        match node.get(segment) {
            Some(next) => node = next,
            None => return Value::Null,
        }
    }
    match node {
        Node::Map(map) => Value::Object(map.clone()),
        Node::Other(value) => value.clone(),
    }
}
