use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::config::ConfigError;
use crate::limits::{Limit, Limits};

fn parse(text: &str) -> Result<Value, ConfigError> {
    super::parse(text, Path::new("m.yml"), &Limits::new())
}

fn parse_with(text: &str, limit: Limit, value: u64) -> Result<Value, ConfigError> {
    let limits = Limits::new().with(limit, value).unwrap();
    super::parse(text, Path::new("m.yml"), &limits)
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn plain_scalars_resolve_by_the_core_schema() {
    let value = parse(
        "%YAML 1.2\n---\na: ~\nb: null\nc:\nd: true\ne: False\nf: 12\ng: -7\nh: 0x1F\ni: 0o17\nj: 0b101\n\
         k: 1.5\nl: 1e3\nm: .5\nn: 0123\no: yes\np: 1_000\nq: .inf\nr: -.nan\ns: inf\nt: +3\n\
         u: '12'\nv: \"true\"\nw: |\n  text\nx: -0\ny: 18446744073709551615\nz: -9223372036854775808\n",
    )
    .unwrap();
    assert_eq!(
        value,
        json!({
            "a": null, "b": null, "c": null, "d": true, "e": false, "f": 12, "g": -7,
            "h": 31, "i": 15, "j": 5, "k": 1.5, "l": 1000.0, "m": 0.5, "n": "0123",
            "o": "yes", "p": "1_000", "q": null, "r": "-.nan", "s": "inf", "t": 3,
            "u": "12", "v": "true", "w": "text\n", "x": 0,
            "y": 18446744073709551615u64, "z": i64::MIN
        })
    );
}

#[test]
fn integers_beyond_64_bits_keep_their_digits() {
    assert_eq!(
        parse("id: 123456789012345678901234\nneg: -99999999999999999999\n").unwrap(),
        json!({"id": "123456789012345678901234", "neg": "-99999999999999999999"})
    );
}

#[test]
fn keys_become_text() {
    assert_eq!(
        parse("1: a\ntrue: b\n1.5: c\n'x': d\n").unwrap(),
        json!({"1": "a", "true": "b", "1.5": "c", "x": "d"})
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let value = parse(
        "base: &base {a: 1, b: 2}\nother: &other {b: 20, c: 30}\n\
         copy: *base\n\
         merged:\n  x: 0\n  <<: [*base, *other]\n  a: 10\n",
    )
    .unwrap();
    assert_eq!(value["copy"], json!({"a": 1, "b": 2}));
    // The mapping's own `a` wins; `base` wins over `other` for `b`; merged keys stand where
    // the `<<` stood.
    assert_eq!(value["merged"], json!({"x": 0, "b": 2, "c": 30, "a": 10}));
    let order: Vec<&String> = value["merged"].as_object().unwrap().keys().collect();
    assert_eq!(order, ["x", "b", "c", "a"]);
}

#[test]
fn standard_tags_are_honoured() {
    assert_eq!(
        parse("a: !!str 12\nb: !!int '7'\nc: !!float 3\nd: !!bool 'true'\ne: !!null ''\nf: !!seq [1]\n")
            .unwrap(),
        json!({"a": "12", "b": 7, "c": 3.0, "d": true, "e": null, "f": [1]})
    );
}

#[test]
fn empty_documents_are_null() {
    assert_eq!(parse("").unwrap(), Value::Null);
    assert_eq!(parse("# only a comment\n").unwrap(), Value::Null);
}

#[test]
fn errors_name_the_line_and_what_is_wrong() {
    let messages = [
        error("a: 1\na: 2\n"),
        error("a: !custom x\n"),
        error("a: !!binary aGk=\n"),
        error("a: *missing\n"),
        error("? [1, 2]\n: v\n"),
        error("~: v\n"),
        error("a: 1\n---\nb: 2\n"),
        error("a: [1, 2\n"),
        error("a:\n  <<: 3\n"),
        error("a:\n  <<: [1]\n"),
        error("a: !!int x\n"),
    ];
    insta::assert_yaml_snapshot!(messages);
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("x: {}", "[".repeat(200));
    let message = parse(&deep).unwrap_err().to_string();
    assert!(message.contains("limit `config_depth` is 128"), "{message}");
    // Exactly at the bound is fine.
    let ok = format!("{}1{}", "[".repeat(128), "]".repeat(128));
    assert!(parse(&ok).is_ok());
    let over = format!("{}1{}", "[".repeat(129), "]".repeat(129));
    assert!(parse(&over).is_err());
    // Block nesting counts the same way.
    let block: String = (0..130).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    assert!(
        parse(&block)
            .unwrap_err()
            .to_string()
            .contains("config_depth")
    );
    assert!(
        parse_with(
            &format!("{}1{}", "[".repeat(10), "]".repeat(10)),
            Limit::ConfigDepth,
            9
        )
        .is_err()
    );
}

#[test]
fn a_million_open_brackets_are_refused_at_once() {
    let text = format!("x: {}", "[".repeat(1_000_000));
    let started = Instant::now();
    assert!(parse(&text).is_err());
    // Linear behaviour, not the quadratic scan libyaml does on this input (~hours): refused
    // after reading the first few hundred brackets. Generous for slow CI machines.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn alias_expansion_is_bounded_by_nodes() {
    // Each level doubles: 2^30 nodes if expanded.
    let mut text = String::from("a0: &a0 [x, x]\n");
    for i in 1..30 {
        text.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
    }
    let message = parse(&text).unwrap_err().to_string();
    assert!(message.contains("limit `config_nodes`"), "{message}");
}

#[test]
fn alias_expansion_is_bounded_by_text() {
    // A 1 MiB scalar aliased 100 times: 100 MiB of text, few nodes.
    let big = "x".repeat(1 << 20);
    let mut text = format!("big: &big {big}\nall:\n");
    for _ in 0..100 {
        text.push_str("  - *big\n");
    }
    let message = parse(&text).unwrap_err().to_string();
    assert!(
        message.contains("limit `config_text_bytes` is 64 MiB"),
        "{message}"
    );
    assert!(parse_with(&text, Limit::ConfigTextBytes, 200 << 20).is_ok());
}

#[test]
fn anchors_inside_keys_and_values_resolve() {
    assert_eq!(
        parse("k: &k name\n*k : 1\n").unwrap(),
        json!({"k": "name", "name": 1})
    );
}

/// Nested flow collections, as YAML text and as the JSON value they spell.
fn nested_yaml() -> impl Strategy<Value = (String, Value)> {
    let leaf = prop_oneof![
        Just(("1".to_owned(), json!(1))),
        Just(("x".to_owned(), json!("x"))),
        Just(("'q'".to_owned(), json!("q"))),
        Just(("~".to_owned(), Value::Null)),
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|items| {
                let text: Vec<String> = items.iter().map(|(t, _)| t.clone()).collect();
                let values: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
                (format!("[{}]", text.join(", ")), Value::Array(values))
            }),
            prop::collection::vec(inner, 0..4).prop_map(|items| {
                let mut text = Vec::new();
                let mut map = serde_json::Map::new();
                for (i, (t, v)) in items.into_iter().enumerate() {
                    text.push(format!("k{i}: {t}"));
                    map.insert(format!("k{i}"), v);
                }
                (format!("{{{}}}", text.join(", ")), Value::Object(map))
            }),
        ]
    })
}

proptest! {
    /// Arbitrary text never panics and never overflows the stack.
    #[test]
    fn any_text_parses_or_fails_cleanly(text in "[\\[\\]{}:,&*!|>'\"\\-? \\n#a-z0-9<]{0,200}") {
        let _ = parse(&text);
    }

    /// Nested flow collections read as the JSON they spell, in block context too.
    #[test]
    fn flow_collections_read_as_json((text, expected) in nested_yaml()) {
        prop_assert_eq!(parse(&text).unwrap(), expected.clone());
        prop_assert_eq!(parse(&format!("root:\n  - {text}\n")).unwrap(), json!({"root": [expected]}));
    }
}

#[derive(Debug, serde::Deserialize)]
struct PyyamlFact {
    text: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<Value>,
    error: Option<String>,
}

/// What we give for a PyYAML fact: its value, except where JSON cannot hold it (`nan`, `inf`
/// are null), an integer past 64 bits (its text), and a timestamp (its text).
fn expected_from_pyyaml(fact: &PyyamlFact) -> Option<Value> {
    let kind = fact.kind.as_deref()?;
    let text = fact.text.rsplit(' ').next().unwrap_or_default();
    Some(match (kind, &fact.value) {
        ("int", Some(Value::String(digits))) => {
            let parsed: Result<Value, _> = serde_json::from_str(digits);
            match parsed {
                Ok(number @ Value::Number(_)) if !number.is_f64() => number,
                _ => Value::String(text.to_owned()),
            }
        }
        ("float", None) | ("null", _) => Value::Null,
        ("timestamp", _) => Value::String(text.to_owned()),
        (_, Some(value)) => value.clone(),
        (_, None) => return None,
    })
}

#[test]
fn plain_scalars_resolve_as_pyyaml_reads_them() {
    let facts: Vec<PyyamlFact> = serde_json::from_str(include_str!("pyyaml_facts.json")).unwrap();
    assert!(facts.len() > 100);
    let mut wrong = Vec::new();
    for fact in &facts {
        let ours = parse(&format!("v: {}\n", fact.text)).map(|mut v| v["v"].take());
        let agrees = match (&fact.error, &ours) {
            (Some(_), Err(_)) => true,
            (None, Ok(value)) => expected_from_pyyaml(fact).as_ref() == Some(value),
            _ => false,
        };
        if !agrees {
            wrong.push(format!("{:?}: PyYAML {fact:?}, ours {ours:?}", fact.text));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_yaml_1_2_directive_chooses_the_core_schema() {
    let text = "a: yes\nb: 017\nc: 1e3\nd: 1_000\ne: 0o17\nf: on\ng: 1:30\n";
    assert_eq!(
        parse(text).unwrap(),
        json!({"a": true, "b": 15, "c": "1e3", "d": 1000, "e": "0o17", "f": true, "g": 90})
    );
    for directive in ["%YAML 1.2\n---\n", "# a comment\n\n%YAML 1.2 # core\n---\n"] {
        assert_eq!(
            parse(&format!("{directive}{text}")).unwrap(),
            json!({"a": "yes", "b": "017", "c": 1000.0, "d": "1_000", "e": 15, "f": "on", "g": "1:30"}),
            "{directive:?}"
        );
    }
    // YAML 1.1 named explicitly is PyYAML's reading, as is a directive after the content.
    assert_eq!(
        parse("%YAML 1.1\n---\na: yes\n").unwrap(),
        json!({"a": true})
    );
}

#[test]
fn keys_resolve_as_pyyaml_reads_them() {
    assert_eq!(
        parse("on: a\nno: b\n017: c\n1e3: d\n").unwrap(),
        json!({"true": "a", "false": "b", "15": "c", "1e3": "d"})
    );
}

#[test]
fn a_number_without_digits_is_refused_with_its_position() {
    insta::assert_snapshot!(error("a:\n  b: 0b_\n"), @"m.yml: invalid YAML at line 2, column 6: `0b_` reads as an integer in YAML 1.1 but has no digits; quote it if it is text");
}
