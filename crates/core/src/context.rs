//! The machine context: a JSON object shared cheaply and encoded once per change.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The context of a running machine: a JSON object.
///
/// Cloning is `O(1)`: the map sits behind an [`Arc`] and is copied only when a shared context is
/// written to. The JSON encoding is cached, so checkpointing an unchanged context costs a
/// memory copy rather than a re-serialization. Any mutable access (through [`DerefMut`] or
/// [`Context::make_mut`]) drops the cached encoding.
#[derive(Clone, Default)]
pub struct Context {
    map: Arc<Map<String, Value>>,
    encoded: OnceLock<Arc<RawValue>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The map, for reading.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// The map, for writing. Copies it first if another clone shares it.
    pub fn make_mut(&mut self) -> &mut Map<String, Value> {
        self.encoded.take();
        Arc::make_mut(&mut self.map)
    }

    /// A shared handle to the current map, for readers that must outlive a borrow
    /// (template variables).
    pub fn shared(&self) -> Arc<Map<String, Value>> {
        Arc::clone(&self.map)
    }

    /// Takes the map out, copying only if it is shared.
    pub fn into_map(self) -> Map<String, Value> {
        Arc::unwrap_or_clone(self.map)
    }

    /// The context encoded as compact JSON, computed once per change.
    pub fn encoded(&self) -> Result<&RawValue, serde_json::Error> {
        if let Some(raw) = self.encoded.get() {
            return Ok(raw);
        }
        let raw: Arc<RawValue> = Arc::from(serde_json::value::to_raw_value(&*self.map)?);
        Ok(self.encoded.get_or_init(|| raw))
    }
}

impl From<Map<String, Value>> for Context {
    fn from(map: Map<String, Value>) -> Self {
        Context {
            map: Arc::new(map),
            encoded: OnceLock::new(),
        }
    }
}

impl From<Arc<Map<String, Value>>> for Context {
    fn from(map: Arc<Map<String, Value>>) -> Self {
        Context {
            map,
            encoded: OnceLock::new(),
        }
    }
}

impl From<Context> for Value {
    fn from(context: Context) -> Self {
        Value::Object(context.into_map())
    }
}

impl Deref for Context {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl DerefMut for Context {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.make_mut()
    }
}

impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.map, f)
    }
}

impl Serialize for Context {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The cached encoding is JSON-only, so generic serializers always walk the map.
        self.map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Context::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(value: Value) -> Context {
        match value {
            Value::Object(map) => Context::from(map),
            _ => Context::new(),
        }
    }

    #[test]
    fn encoding_is_cached_until_a_write() {
        let mut context = ctx(json!({"a": 1}));
        assert_eq!(context.encoded().unwrap().get(), r#"{"a":1}"#);
        context.insert("b".into(), json!(2));
        assert_eq!(context.encoded().unwrap().get(), r#"{"a":1,"b":2}"#);
    }

    #[test]
    fn reads_do_not_drop_the_cache() {
        let context = ctx(json!({"a": 1}));
        let first = context.encoded().unwrap() as *const RawValue;
        assert_eq!(context.get("a"), Some(&json!(1)));
        assert!(std::ptr::eq(first, context.encoded().unwrap()));
    }

    #[test]
    fn clones_are_independent_after_a_write() {
        let original = ctx(json!({"a": 1}));
        let mut copy = original.clone();
        copy.insert("a".into(), json!(2));
        assert_eq!(original.get("a"), Some(&json!(1)));
        assert_eq!(copy.get("a"), Some(&json!(2)));
    }

    #[test]
    fn serializes_like_its_map() {
        let context = ctx(json!({"x": [1, 2], "y": {"z": null}}));
        let plain = serde_json::to_string(&context).unwrap();
        context.encoded().unwrap();
        let cached = serde_json::to_string(&context).unwrap();
        assert_eq!(plain, cached);
        let back: Context = serde_json::from_str(&plain).unwrap();
        assert_eq!(back, context);
    }
}
