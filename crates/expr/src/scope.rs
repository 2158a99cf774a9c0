//! Where root variables (`context`, `input`, `output`, …) come from.

use std::collections::HashMap;
use std::hash::BuildHasher;

use serde_json::{Map, Value};

/// What a root identifier resolves to.
///
/// Both forms are borrowed, so evaluation never copies the caller's data;
/// `Object` exists because engines often hold their context as a bare
/// [`Map`] rather than a [`Value`].
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// Any JSON value.
    Value(&'a Value),
    /// A JSON object held as a bare map.
    Object(&'a Map<String, Value>),
}

/// Supplies root variables (`context`, `input`, `output`, …) to an evaluation.
///
/// Ready-made implementations:
///
/// * [`MapScope`]: a small list of named bindings, built with
///   [`MapScope::with_value`] / [`MapScope::with_object`];
/// * `[(&str, &Value); N]` arrays, e.g. `&[("context", &ctx)]`, and slices
///   of the same pairs (pass a `&&[..]`, since a bare slice is unsized);
/// * `Map<String, Value>` and `HashMap<String, Value>`: each key is a root;
/// * `Value`: the keys of an object are roots (any other value has none);
/// * `()`: no variables at all, for expressions made only of literals.
///
/// ```
/// use flatmachines_expr::{Expression, MapScope};
/// use serde_json::json;
///
/// let context = json!({"score": 9});
/// let scope = MapScope::new().with_value("context", &context);
/// let expr = Expression::parse("context.score >= 8").unwrap();
/// assert!(expr.evaluate_bool(&scope).unwrap());
/// assert!(expr.evaluate_bool(&[("context", &context)]).unwrap());
/// ```
pub trait Scope {
    /// Resolves a root identifier, or `None` when it is not defined.
    fn lookup(&self, name: &str) -> Option<Binding<'_>>;
}

/// A scope made of a few named bindings, searched in order.
///
/// Meant for the handful of roots an engine exposes, where a linear scan
/// beats hashing.
#[derive(Debug, Clone, Default)]
pub struct MapScope<'a> {
    entries: Vec<(&'a str, Binding<'a>)>,
}

impl<'a> MapScope<'a> {
    /// An empty scope.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a root bound to a JSON value.
    #[must_use]
    pub fn with_value(mut self, name: &'a str, value: &'a Value) -> Self {
        self.set(name, Binding::Value(value));
        self
    }

    /// Adds (or replaces) a root bound to a JSON object held as a map.
    #[must_use]
    pub fn with_object(mut self, name: &'a str, object: &'a Map<String, Value>) -> Self {
        self.set(name, Binding::Object(object));
        self
    }

    /// Adds a root, replacing any existing binding of the same name.
    pub fn set(&mut self, name: &'a str, binding: Binding<'a>) {
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = binding,
            None => self.entries.push((name, binding)),
        }
    }
}

impl Scope for MapScope<'_> {
    fn lookup(&self, name: &str) -> Option<Binding<'_>> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, binding)| *binding)
    }
}

impl Scope for [(&str, &Value)] {
    fn lookup(&self, name: &str) -> Option<Binding<'_>> {
        self.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| Binding::Value(value))
    }
}

impl<const N: usize> Scope for [(&str, &Value); N] {
    fn lookup(&self, name: &str) -> Option<Binding<'_>> {
        self.as_slice().lookup(name)
    }
}

impl Scope for Map<String, Value> {
    fn lookup(&self, name: &str) -> Option<Binding<'_>> {
        self.get(name).map(Binding::Value)
    }
}

impl<H: BuildHasher> Scope for HashMap<String, Value, H> {
    fn lookup(&self, name: &str) -> Option<Binding<'_>> {
        self.get(name).map(Binding::Value)
    }
}

impl Scope for Value {
    fn lookup(&self, name: &str) -> Option<Binding<'_>> {
        self.as_object()?.get(name).map(Binding::Value)
    }
}

impl Scope for () {
    fn lookup(&self, _name: &str) -> Option<Binding<'_>> {
        None
    }
}

impl<S: Scope + ?Sized> Scope for &S {
    fn lookup(&self, name: &str) -> Option<Binding<'_>> {
        (**self).lookup(name)
    }
}
