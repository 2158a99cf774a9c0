//! Templates against Jinja2 as the reference renders them: `jinja2_facts.json` holds what
//! Jinja2 3.1.6, in the environment flatmachines 1.0.0 builds (`finalize` printing lists and
//! dicts as JSON, `fromjson`, its JSON-or-text rule), gave for each case. `jinja2_facts.py`
//! regenerates the file; the facts are never edited by hand.
//!
//! Every case must give the reference's value, or the reference's error, except those listed
//! in [`DIFFERENT`], each with why. A listed case that starts to agree fails the test too, so
//! the list only ever says what is true.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::*;

/// Cases we knowingly answer differently, by reason. Deliberate differences are in
/// `docs/divergences.md`.
const DIFFERENT: &[(&str, &[&str])] = &[
    (
        "deliberate (docs/divergences.md): booleans print as `true`/`false`, not `True`/`False`",
        &[
            r#"{{ 'Hello World'.istitle() }}"#,
            r#"{{ '12'.isdecimal() }}"#,
            r#"{{ 'ab'.isidentifier() }}"#,
            r#"{{ 'ab'.startswith(('x','a')) }}"#,
            r#"{{ d.copy() is mapping }}"#,
            r#"{{ lipsum is defined }}"#,
            r#"{{ lipsum is callable }}"#,
            r#"{{ cycler is defined }}|{{ joiner is defined }}|{{ namespace is defined }}|{{ range is defined }}|{{ dict is defined }}"#,
            r#"{{ lipsum()|length > 0 }}|{{ lipsum().count('<p>') }}"#,
            r#"{{ lipsum(1, false, 7, 8)[0] is upper }}|{{ lipsum(1, false, 7, 8)[-1] }}"#,
            r#"{{ (lipsum(1, false)|wordcount >= 20) and (lipsum(1, false)|wordcount < 100) }}"#,
            r#"{{ 1 == 1.0 }}"#,
            r#"{{ 0.1 + 0.2 == 0.3 }}"#,
            r#"{{ (5|float) is integer }}"#,
            r#"{{ 5.0 is float }}"#,
            r#"{{ 0.0 == -0.0 }}"#,
            r#"{{ 'ä' > 'b' }}"#,
            r#"x{{ true }}"#,
            r#"{{ true }}"#,
            r#"{{ context.r == context.r }}"#,
            r#"{{ context.r != 1 }}"#,
            r#"{{ context.r in [1] }}"#,
            r#"{{ 1 in context.r }}"#,
            r#"{{ not context.r }}"#,
            r#"{{ context.r is defined }}"#,
            r#"{{ context.r is none }}"#,
            r#"{{ context.r is number }}"#,
            r#"{{ context.r is string }}"#,
            r#"{{ context.r is sequence }}"#,
            r#"{{ context.r is iterable }}"#,
            r#"{{ context.r is mapping }}"#,
        ],
    ),
    (
        "deliberate (docs/divergences.md): null prints as `null`, not `None`",
        &[
            r#"x{{ none }}"#,
            r#"{{ none }}"#,
            r#"{{ context.r | default(3) }}"#,
        ],
    ),
    (
        "deliberate (docs/divergences.md): lists and dicts print as JSON everywhere, not as Python reprs in `~` and `string`; `range` is a list",
        &[
            r#"x{{ d|string }}"#,
            r#"x{{ range(3) }}"#,
            r#"{{ 'a' ~ [1, 'b'] }}"#,
            r#"{{ 'a' ~ {'k': 'v'} }}"#,
            r#"{{ [1, 'b']|string }}"#,
        ],
    ),
    (
        "deliberate (docs/divergences.md): there is no tuple type, so a tuple (and `partition`) is a list",
        &[
            r#"{{ 'a=b=c'.partition('=') }}"#,
            r#"{{ 'abc'.partition('x') }}"#,
            r#"{{ 'a=b=c'.rpartition('=') }}"#,
            r#"{{ 'abc'.rpartition('x') }}"#,
            r#"x{{ (1, 2) }}"#,
            r#"{{ (1, 2) }}"#,
        ],
    ),
    (
        "deliberate (docs/divergences.md): integers are 128-bit, not unbounded; text past 64 bits stays text",
        &[
            r#"{{ 1e20|int }}"#,
            r#"{{ '99999999999999999999'|int }}"#,
            r#"{{ 2 ** 64 }}"#,
            r#"{{ 2 ** 100 }}"#,
            r#"{{ 10 ** 20 }}"#,
            r#"{{ -170141183460469231731687303715884105728 // -1 }}"#,
        ],
    ),
    (
        "deliberate (docs/divergences.md): no complex numbers; a negative number to a fractional power is NaN",
        &[r#"{{ (-8) ** 0.5 }}"#],
    ),
    (
        "deliberate (docs/divergences.md): values are immutable, so `update`, `setdefault` and `pop` are unknown methods",
        &[
            r#"{% set e = d.copy() %}{% set _ = e.update({'z': 1}) %}{{ d }}|{{ e }}"#,
            r#"{{ d.setdefault('a', 9) }}"#,
            r#"{{ d.pop('a') }}"#,
        ],
    ),
    (
        "deliberate (docs/divergences.md): no bytes type, so no `encode`",
        &[r#"{{ 'hello'.encode('utf-8') }}"#],
    ),
    (
        "a reference bug not copied (docs/divergences.md): the text `NaN`/`Infinity` stays text",
        &[
            r#"{{ 'NaN' }}"#,
            r#"{{ 'Infinity' }}"#,
            r#"{{ '-Infinity' }}"#,
            r#"{{ s }}"#,
        ],
    ),
];

#[derive(Debug, serde::Deserialize)]
struct Fact {
    template: String,
    vars: serde_json::Map<String, Value>,
    /// The reference's error, as `Type: message`.
    error: Option<String>,
    /// The value the reference gives the field (`null` is a value, hence the wrapper).
    #[serde(default, deserialize_with = "present")]
    native: Option<Value>,
    /// The value, when JSON cannot hold it (`nan`, `inf`).
    native_repr: Option<String>,
}

/// A field that is there, whatever its value, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(deserializer).map(Some)
}

fn vars_of(fact: &Fact) -> Vars {
    fact.vars
        .iter()
        .fold(Vars::default(), |vars, (name, value)| {
            let root = match value {
                Value::Object(map) => Root::Map(Arc::new(map.clone())),
                other => Root::Value(Arc::new(other.clone())),
            };
            vars.with(name.clone(), root)
        })
}

/// What we give for `fact`: `Ok(value)` or `Err(message)`.
fn ours(fact: &Fact) -> Result<Value, String> {
    let mut engine = TemplateEngine::new();
    let tree = TemplateTree::compile_str(&fact.template, "fact", &mut engine).map_err(|e| e.1)?;
    tree.render(&engine, &vars_of(fact)).map_err(|e| e.message)
}

fn agrees(fact: &Fact, ours: &Result<Value, String>) -> bool {
    match (ours, &fact.error, &fact.native) {
        (Err(_), Some(_), _) => true,
        (Ok(value), None, Some(native)) => value == native,
        _ => false,
    }
}

fn expected(fact: &Fact) -> String {
    match (&fact.error, &fact.native, &fact.native_repr) {
        (Some(error), ..) => format!("error {error}"),
        (None, Some(native), _) => native.to_string(),
        (None, None, Some(repr)) => format!("(not JSON) {repr}"),
        _ => "?".to_owned(),
    }
}

#[test]
fn templates_render_as_jinja2_renders_them() {
    let facts: Vec<Fact> =
        serde_json::from_str(include_str!("jinja2_facts.json")).expect("the facts are JSON");
    let listed: BTreeMap<&str, &str> = DIFFERENT
        .iter()
        .flat_map(|(reason, templates)| templates.iter().map(move |t| (*t, *reason)))
        .collect();
    let mut wrong = Vec::new();
    let mut agreed = 0;
    // A listed template differs in at least one of its cases (they differ by their variables).
    let mut listed_differs: BTreeMap<&str, bool> = BTreeMap::new();
    for fact in &facts {
        let got = ours(fact);
        let same = agrees(fact, &got);
        let line = format!(
            "{:?} with {}: Jinja2 {}, ours {}",
            fact.template,
            Value::Object(fact.vars.clone()),
            expected(fact),
            match &got {
                Ok(value) => value.to_string(),
                Err(message) => format!("error {message}"),
            }
        );
        match listed.get(fact.template.as_str()) {
            Some(_) => *listed_differs.entry(fact.template.as_str()).or_default() |= !same,
            None if same => agreed += 1,
            None => wrong.push(line),
        }
    }
    let now_agree: Vec<String> = listed
        .iter()
        .filter(|(template, _)| !listed_differs.get(*template).copied().unwrap_or(false))
        .map(|(template, reason)| format!("{template:?} (listed: {reason})"))
        .collect();
    assert!(
        wrong.is_empty() && now_agree.is_empty(),
        "{agreed} of {} cases agree with Jinja2.\n\nDiffer, and not listed in DIFFERENT ({}):\n{}\n\nListed in DIFFERENT, but agree now ({}):\n{}",
        facts.len(),
        wrong.len(),
        wrong.join("\n"),
        now_agree.len(),
        now_agree.join("\n")
    );
}
