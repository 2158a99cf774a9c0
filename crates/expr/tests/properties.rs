//! Property tests: robustness on arbitrary input and literal round-trips.

use flatmachines_expr::{Expression, truthy};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Fragments that stress the parser: operators, brackets, keywords,
/// half-finished literals and escapes.
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    ".",
    ",",
    ":",
    "-",
    "+",
    "*",
    "/",
    "%",
    "**",
    "//",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "!",
    "~",
    "&",
    "|",
    "not",
    "and",
    "or",
    "in",
    "is",
    "if",
    "else",
    "lambda",
    "true",
    "None",
    "context",
    "x",
    "a.b",
    "0",
    "1.5",
    ".5",
    "1e",
    "9223372036854775808",
    "'",
    "\"",
    "'a'",
    "\\",
    "\\x4",
    "#",
    "\n",
    " ",
    "é",
    "😀",
    "f'",
    "{",
    "}",
];

fn fragment_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..80).prop_map(|parts| parts.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3i64..4).prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON floats are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-c0-9é]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-c0]", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn scope() -> impl Strategy<Value = Value> {
    (json_value(), json_value(), any::<bool>()).prop_map(|(context, input, with_input)| {
        let mut scope = json!({"context": context});
        if with_input {
            scope["input"] = input;
        }
        scope
    })
}

fn quoted(text: &str) -> String {
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

/// Syntactically valid expressions over `context`, `input` and literals.
fn valid_expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-5i64..6).prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        ".*".prop_map(|s| quoted(&s)),
        prop::sample::select(&["true", "False", "null", "None", "context", "input", "ghost"][..])
            .prop_map(str::to_owned),
        "(context|input)(\\.[a-c_])+",
    ];
    leaf.prop_recursive(6, 48, 3, |inner| {
        let binary_ops = &[
            "+", "-", "*", "/", "==", "!=", "<", "<=", ">", ">=", "and", "or",
        ][..];
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(binary_ops),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (
                inner.clone(),
                prop::sample::select(binary_ops),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("(not {a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a})[{b}]")),
            (inner.clone(), "[a-c]").prop_map(|(a, f)| format!("({a}).{f}")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3i64..4).prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-3i64..4).prop_map(|i| Value::from(i as f64 + 0.5)),
        (-3i64..4).prop_map(|i| Value::from(i as f64)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_arbitrary_text_never_panics(source in any::<String>()) {
        let _ = Expression::parse(&source);
    }

    #[test]
    fn parsing_token_soup_never_panics(source in fragment_soup()) {
        if let Ok(expr) = Expression::parse(&source) {
            let _ = expr.evaluate(&json!({"context": {"a": 1}, "x": [1]}));
        }
    }

    #[test]
    fn evaluating_valid_expressions_never_panics(source in valid_expression(), scope in scope()) {
        let expr = Expression::parse(&source);
        prop_assert!(expr.is_ok(), "{:?}", expr);
        let expr = expr.unwrap();
        match expr.evaluate(&scope) {
            Ok(value) => prop_assert_eq!(expr.evaluate_bool(&scope), Ok(truthy(&value))),
            Err(error) => {
                prop_assert!(error.column >= 1 && error.column <= source.chars().count() + 1);
                prop_assert!(expr.evaluate_bool(&scope).is_err());
            }
        }
    }

    #[test]
    fn integer_literals_round_trip(i in any::<i64>()) {
        let value = Expression::parse(&i.to_string()).unwrap().evaluate(&()).unwrap().into_owned();
        prop_assert_eq!(value.as_i64(), Some(i));
    }

    #[test]
    fn float_literals_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        for source in [format!("{f:e}"), format!("{f:?}"), format!("{f:E}")] {
            let value = Expression::parse(&source).unwrap().evaluate(&()).unwrap().into_owned();
            prop_assert!(value.is_f64(), "{} gave {}", source, value);
            prop_assert_eq!(value.as_f64().map(f64::to_bits), Some(f.to_bits()), "{}", source);
        }
    }

    #[test]
    fn less_than_mirrors_greater_than(a in number(), b in number()) {
        let scope = json!({"a": a, "b": b});
        let eval = |source: &str| Expression::parse(source).unwrap().evaluate_bool(&scope).unwrap();
        prop_assert_eq!(eval("a < b"), eval("b > a"));
        prop_assert_eq!(eval("a <= b"), eval("b >= a"));
        prop_assert_eq!(eval("a <= b"), !eval("a > b"));
        prop_assert_eq!(eval("a == b"), !eval("a < b") && !eval("a > b"));
        prop_assert_eq!(eval("a != b"), !eval("a == b"));
    }
}
