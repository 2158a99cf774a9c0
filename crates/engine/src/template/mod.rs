//! Templates: Jinja syntax rendered by minijinja, with the reference's value rules.
//!
//! - A string without `{{` or `{%` that is a dotted path under `context`, `input` or `output`
//!   (`output.items`) is a *path reference*: it yields the raw value, not text.
//! - Any other string without `{{`/`{%` is a literal.
//! - Everything else is rendered; the text is parsed as JSON when it parses, so
//!   `"{{ context.n + 1 }}"` is a number. Lists and objects print as JSON, booleans as
//!   `true`/`false` and null as `null`.
//!
//! Templates are compiled once, when the config loads.

mod budget;
mod filters;
mod globals;
mod json;
mod methods;
mod numbers;
mod tree;
mod undefined;
mod urlize;
mod wrap;

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use flatmachines_core::limits::{Limit, Limits};

use minijinja::value::{Object, Value as MjValue};
use minijinja::{AutoEscape, Environment, Error as MjError, ErrorKind, Output, State};
use serde_json::Value;

pub(crate) use json::{Node, Root, python_json};
pub(crate) use tree::TemplateTree;

/// Rendering a template failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenderError {
    /// The field holding the template.
    pub(crate) location: Arc<str>,
    /// What went wrong, with the template line.
    pub(crate) message: String,
}

/// The variables a template sees.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    entries: Vec<(Cow<'static, str>, Root)>,
}

impl Vars {
    /// `input` only: the initial context is rendered from the machine input.
    pub(crate) fn input(input: Arc<serde_json::Map<String, Value>>) -> Vars {
        Vars {
            entries: vec![(Cow::Borrowed("input"), Root::Map(input))],
        }
    }

    /// `context`, with `input` as the same object, as inside states.
    pub(crate) fn state(context: Arc<serde_json::Map<String, Value>>) -> Vars {
        Vars {
            entries: vec![
                (Cow::Borrowed("context"), Root::Map(Arc::clone(&context))),
                (Cow::Borrowed("input"), Root::Map(context)),
            ],
        }
    }

    /// Adds (or replaces) a variable.
    pub(crate) fn with(mut self, name: impl Into<Cow<'static, str>>, root: Root) -> Vars {
        let name = name.into();
        self.entries.retain(|(n, _)| *n != name);
        self.entries.push((name, root));
        self
    }

    fn get(&self, name: &str) -> Option<&Root> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, root)| root)
    }
}

#[derive(Debug)]
struct VarsObject(Vars);

impl Object for VarsObject {
    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<MjValue> {
        self.0.get(key).map(json::root_value)
    }
}

/// One compiled template string.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// The template's name in the environment.
    name: Arc<str>,
    /// The field it came from, for messages.
    location: Arc<str>,
    /// `{{ a.b.c }}` and nothing else: resolved without minijinja.
    fast_path: Option<Box<[Box<str>]>>,
}

/// All templates of a set of machines, compiled into one environment.
#[derive(Debug)]
pub(crate) struct TemplateEngine {
    env: Environment<'static>,
    next_id: usize,
    /// `template_fuel`, for messages (the environment holds the value it enforces).
    fuel: u64,
    /// `template_bytes`: the longest text one render may write.
    max_bytes: u64,
}

impl Default for TemplateEngine {
    fn default() -> Self {
        TemplateEngine::new()
    }
}

impl TemplateEngine {
    pub(crate) fn new() -> TemplateEngine {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_formatter(format_value);
        env.set_unknown_method_callback(budget::python_method);
        env.add_filter("fromjson", fromjson);
        env.add_filter("replace", budget::replace);
        env.add_filter("indent", budget::indent);
        // Jinja2's own, where minijinja's are missing or answer otherwise.
        env.add_filter("join", filters::join);
        env.add_filter("int", numbers::int);
        env.add_filter("float", numbers::float);
        env.add_filter("round", numbers::round);
        env.add_filter("sum", filters::sum);
        env.add_filter("min", filters::min);
        env.add_filter("max", filters::max);
        env.add_filter("title", filters::title);
        env.add_filter("capitalize", filters::capitalize);
        env.add_filter("dictsort", filters::dictsort);
        env.add_filter("wordcount", filters::wordcount);
        env.add_filter("center", filters::center);
        env.add_filter("truncate", filters::truncate);
        env.add_filter("striptags", filters::striptags);
        env.add_filter("filesizeformat", numbers::filesizeformat);
        env.add_filter("xmlattr", filters::xmlattr);
        env.add_filter("forceescape", filters::forceescape);
        env.add_filter("urlencode", filters::urlencode);
        env.add_filter("tojson", filters::tojson);
        env.add_filter("wordwrap", wrap::wordwrap);
        env.add_filter("urlize", urlize::urlize);
        env.add_filter("length", undefined::length);
        env.add_filter("count", undefined::length);
        env.add_filter("first", undefined::first);
        env.add_filter("last", undefined::last);
        env.add_filter("items", undefined::items);
        env.add_filter("pprint", undefined::pprint);
        env.add_filter("reverse", undefined::reverse);
        env.add_test("sequence", undefined::is_sequence);
        env.add_test("even", undefined::is_even);
        env.add_test("odd", undefined::is_odd);
        env.add_test("divisibleby", undefined::is_divisibleby);
        env.add_function("cycler", globals::cycler);
        env.add_function("joiner", globals::joiner);
        env.add_function("lipsum", globals::lipsum);
        env.add_test("callable", globals::is_callable);
        let defaults = Limits::default();
        let mut engine = TemplateEngine {
            env,
            next_id: 0,
            fuel: 0,
            max_bytes: 0,
        };
        engine.set_limits(&defaults);
        engine
    }

    /// Applies `template_fuel` and `template_bytes` to every later render.
    pub(crate) fn set_limits(&mut self, limits: &Limits) {
        self.fuel = limits.get(Limit::TemplateFuel);
        self.max_bytes = limits.get(Limit::TemplateBytes);
        self.env.set_fuel(Some(self.fuel));
    }

    /// Compiles `source`. `location` names the field in errors.
    pub(crate) fn compile(&mut self, source: &str, location: &str) -> Result<Template, String> {
        let name: Arc<str> = format!("t{}:{location}", self.next_id).into();
        self.next_id += 1;
        let env = &mut self.env;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            env.add_template_owned(name.to_string(), source.to_owned())
        }))
        .map_err(|panic| renderer_panicked(&panic))?
        .map_err(|e| describe(&e))?;
        Ok(Template {
            name,
            location: location.into(),
            fast_path: fast_path(source),
        })
    }

    /// Renders `template` with `vars`, applying the JSON rule.
    pub(crate) fn render(&self, template: &Template, vars: &Vars) -> Result<Value, RenderError> {
        if let Some(value) = template
            .fast_path
            .as_deref()
            .and_then(|p| resolve_fast(p, vars))
        {
            return Ok(value);
        }
        self.render_with_minijinja(template, vars)
    }

    fn render_with_minijinja(
        &self,
        template: &Template,
        vars: &Vars,
    ) -> Result<Value, RenderError> {
        let error = |message| RenderError {
            location: Arc::clone(&template.location),
            message,
        };
        let compiled = self
            .env
            .get_template(&template.name)
            .map_err(|e| error(describe(&e)))?;
        let overflowed = Rc::new(Cell::new(false));
        let max = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        let mut out = budget::CappedText::new(max, Rc::clone(&overflowed));
        let root = MjValue::from_object(VarsObject(vars.clone()));
        // A panic inside the renderer is a bug there, and it fails this one field, not the
        // process.
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            compiled.render_captured_to(root, &mut out)
        }))
        .map_err(|panic| error(renderer_panicked(&panic)))?;
        if let Err(e) = rendered {
            return Err(error(if overflowed.get() {
                format!(
                    "the template's output is too long ({})",
                    Limit::TemplateBytes.hint(self.max_bytes)
                )
            } else if e.kind() == ErrorKind::OutOfFuel {
                format!(
                    "the template does too much work ({}){}",
                    Limit::TemplateFuel.hint(self.fuel),
                    e.line().map(|l| format!(" (line {l})")).unwrap_or_default()
                )
            } else {
                describe(&e)
            }));
        }
        let text = String::from_utf8(out.text)
            .map_err(|_| error("the template wrote text that is not valid UTF-8".to_owned()))?;
        Ok(json::parse_rendered(text))
    }
}

/// `{{ a.b }}` with nothing around it: the path's segments.
fn fast_path(source: &str) -> Option<Box<[Box<str>]>> {
    let inner = source.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let segments: Vec<Box<str>> = inner.split('.').map(Box::from).collect();
    let valid = segments.iter().all(|s| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    let keyword = matches!(
        segments.first().map(|s| &**s),
        Some("true" | "false" | "none" | "True" | "False" | "None" | "loop" | "self")
    );
    (valid && !keyword).then(|| segments.into_boxed_slice())
}

/// What minijinja would produce for a plain path, when that is certain; `None` sends the
/// template down the general path (missing roots and non-object intermediates, whose
/// errors minijinja words).
fn resolve_fast(path: &[Box<str>], vars: &Vars) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let mut node = vars.get(first)?.value();
    for (index, segment) in rest.iter().enumerate() {
        match node {
            Node::Map(map) => match map.get(&**segment) {
                Some(value) => node = Node::of(value),
                // A missing last key is undefined, which prints as "".
                None if index + 1 == rest.len() => return Some(Value::String(String::new())),
                None => return None,
            },
            Node::Other(_) => return None,
        }
    }
    Some(match node {
        Node::Other(Value::String(s)) => json::parse_rendered(s.clone()),
        other => other.to_value(),
    })
}

fn format_value(out: &mut Output, state: &State, value: &MjValue) -> Result<(), MjError> {
    use minijinja::value::ValueKind;
    let write = |out: &mut Output, text: &str| {
        out.write_str(text)
            .map_err(|e| MjError::new(ErrorKind::WriteFailure, e.to_string()))
    };
    if let Some(view) = value.downcast_object_ref::<json::JsonView>() {
        return write(out, &view.python_json());
    }
    match value.kind() {
        ValueKind::Undefined => Ok(()),
        ValueKind::None => write(out, "null"),
        ValueKind::Bool => write(out, if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(float) => write(out, &numbers::python_float(float)),
            Err(_) => write(out, &value.to_string()),
        },
        ValueKind::Number => write(out, &serde_json::to_string(value).unwrap_or_default()),
        ValueKind::Seq | ValueKind::Map => {
            undefined::require_deep(value, "printing a list or mapping")?;
            write(out, &python_json(value))
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn fromjson(value: MjValue) -> Result<MjValue, MjError> {
    let Some(text) = value.as_str() else {
        // Already structured (the reference would fail; passing it through is kinder).
        return Ok(value);
    };
    flatmachines_core::json::from_str_exact(text)
        .map(MjValue::from_serialize)
        .map_err(|e| {
            MjError::new(
                ErrorKind::InvalidOperation,
                format!("fromjson: the text is not valid JSON ({e})"),
            )
        })
}

/// What a panic inside minijinja is reported as, with its message when it has one.
fn renderer_panicked(panic: &Box<dyn std::any::Any + Send>) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the template renderer failed inside (a bug in it, please report it): {detail}")
}

/// A one-line description of a minijinja error, with its line.
fn describe(error: &MjError) -> String {
    let mut message = match (error.detail(), error.kind()) {
        (Some(detail), kind) => format!("{}: {detail}", kind_name(kind)),
        (None, ErrorKind::UndefinedError) => {
            "undefined value: a field was read from something that does not exist".to_owned()
        }
        (None, kind) => kind_name(kind).to_owned(),
    };
    if let Some(line) = error.line() {
        message.push_str(&format!(" (line {line})"));
    }
    message
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::SyntaxError => "syntax error",
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownMethod => "unknown method",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::BadEscape => "bad string escape",
        ErrorKind::TooManyArguments => "too many arguments",
        ErrorKind::MissingArgument => "missing argument",
        ErrorKind::NonKey => "not a valid key",
        ErrorKind::NonPrimitive => "not a primitive value",
        ErrorKind::CannotUnpack => "cannot unpack",
        _ => "template error",
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod jinja2_facts;
