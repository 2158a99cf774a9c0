//! Evaluation semantics: access, operators, truthiness, scopes and errors.

mod common;

use std::borrow::Cow;
use std::collections::HashMap;

use common::{eval_error_in, expr, value, value_in};
use flatmachines_expr::{Binding, MapScope, Scope, truthy};
use serde_json::{Value, json};

fn scope() -> Value {
    json!({
        "context": {
            "score": 9,
            "round": 2,
            "ratio": 0.5,
            "name": "ada",
            "flag": true,
            "nothing": null,
            "items": [10, 20, 30],
            "nested": {"deep": {"leaf": "x"}},
            "keys": {"a b": 1, "k": "v"},
            "empty": [],
            "big": 9223372036854775807_i64,
            "huge": 18446744073709551615_u64
        },
        "input": {"i": 1, "key": "k"}
    })
}

fn check(source: &str, expected: Value) {
    assert_eq!(value_in(source, &scope()), expected, "{source}");
}

fn check_error(source: &str, column: usize, message: &str) {
    let e = eval_error_in(source, &scope());
    assert_eq!(
        (e.column, e.message.as_str()),
        (column, message),
        "{source}"
    );
}

#[test]
fn dotted_paths() {
    check("context.score", json!(9));
    check("context.nested.deep.leaf", json!("x"));
    check("context.nested", json!({"deep": {"leaf": "x"}}));
}

#[test]
fn missing_fields_and_fields_of_non_objects_are_null() {
    check("context.missing", json!(null));
    check("context.missing.further.down", json!(null));
    check("context.score.digits", json!(null));
    check("context.items.count", json!(null));
    check("context.nothing.x", json!(null));
    check("context.missing == null", json!(true));
}

#[test]
fn unknown_root_variable_is_an_error() {
    check_error("context.score > 1 and ctx.x", 23, "unknown variable `ctx`");
}

#[test]
fn object_subscripts() {
    check("context['score']", json!(9));
    check("context[\"keys\"][\"a b\"]", json!(1));
    check("context.keys[input.key]", json!("v"));
    check("context['nope']", json!(null));
    check("context['nested']['deep'].leaf", json!("x"));
}

#[test]
fn list_subscripts_with_python_indexing() {
    check("context.items[0]", json!(10));
    check("context.items[2]", json!(30));
    check("context.items[-1]", json!(30));
    check("context.items[-3]", json!(10));
    check("context.items[3]", json!(null));
    check("context.items[-4]", json!(null));
    check("context.items[input.i + 1]", json!(30));
    check("context.items[True]", json!(20));
    check("context.items[context.huge]", json!(null));
    check("context.empty[0]", json!(null));
}

#[test]
fn string_subscripts_give_characters() {
    check("context.name[0]", json!("a"));
    check("context.name[-1]", json!("a"));
    check("context.name[1]", json!("d"));
    check("context.name[5]", json!(null));
    assert_eq!(value("'héllo'[1]"), json!("é"));
    assert_eq!(value("'😀x'[-2]"), json!("😀"));
}

#[test]
fn subscripts_of_computed_and_literal_values() {
    let s = json!({"x": [[1], 2], "y": [4]});
    assert_eq!(value_in("(x + y)[-1]", &s), json!(4));
    assert_eq!(value_in("(x + y)[0]", &s), json!([1]));
    assert_eq!(value_in("(x + y)[0][0]", &s), json!(1));
    assert_eq!(value_in("(x + y)[9]", &s), json!(null));
    assert_eq!(value("('ab' + 'cd')[2]"), json!("c"));
}

#[test]
fn invalid_subscripts_name_the_types() {
    check_error("context.items['a']", 14, "cannot index list with string");
    check_error("context[1]", 8, "cannot index object with int");
    check_error("context.nothing[0]", 16, "cannot index null with int");
    check_error("context.items[1.0]", 14, "cannot index list with float");
    check_error("context.score[0]", 14, "cannot index int with int");
    check_error("context.name['a']", 13, "cannot index string with string");
    check_error("context.items[null]", 14, "cannot index list with null");
}

#[test]
fn unary_minus() {
    check("-context.score", json!(-9));
    check("-context.ratio", json!(-0.5));
    check("-context.flag", json!(-1));
    check("-(-context.score)", json!(9));
    check("-context.big", json!(-9_223_372_036_854_775_807_i64));
    check_error("-context.name", 1, "bad operand type for unary `-`: string");
    check_error(
        "-context.nothing",
        1,
        "bad operand type for unary `-`: null",
    );
    check_error("-context.huge", 1, "integer overflow");
}

#[test]
fn not_uses_python_truthiness() {
    check("not context.nothing", json!(true));
    check("not context.empty", json!(true));
    check("not context.items", json!(false));
    check("not not context.name", json!(true));
    check("not 0.0", json!(true));
    check("not ''", json!(true));
    check("not context.missing", json!(true));
}

#[test]
fn int_and_float_arithmetic() {
    check("context.score + 1", json!(10));
    check("context.round * 3 - 1", json!(5));
    check("context.score + 0.5", json!(9.5));
    check("context.score / 3", json!(3.0));
    check("7 / 2", json!(3.5));
    check("context.ratio * 4", json!(2.0));
    assert!(value("6 / 3").is_f64());
    assert!(value("2 * 3").is_i64());
    assert!(value("2 * 3.0").is_f64());
}

#[test]
fn bools_are_ints_in_arithmetic() {
    assert_eq!(value("True + True"), json!(2));
    assert_eq!(value("True * 1.5"), json!(1.5));
    assert_eq!(value("10 - False"), json!(10));
    assert!(value("True + True").is_i64());
}

#[test]
fn integer_range_and_overflow() {
    check("context.big + 1", json!(9_223_372_036_854_775_808_u64));
    check("context.huge - 1", json!(18_446_744_073_709_551_614_u64));
    check_error("context.huge + 1", 14, "integer overflow");
    check_error("context.big * context.big", 13, "integer overflow");
    check_error("-9223372036854775807 - 2", 22, "integer overflow");
}

#[test]
fn division_by_zero_and_float_overflow() {
    check_error("context.score / 0", 15, "division by zero");
    check_error("1 / 0.0", 3, "division by zero");
    check_error("1 / False", 3, "division by zero");
    check_error("1e308 * 10", 7, "float overflow");
    check_error("1e308 + 1e308", 7, "float overflow");
}

#[test]
fn concatenation() {
    check("context.name + '!'", json!("ada!"));
    check("context.items + context.empty", json!([10, 20, 30]));
    check(
        "context.items + context.items",
        json!([10, 20, 30, 10, 20, 30]),
    );
    assert_eq!(
        value_in("a + b", &json!({"a": [1], "b": ["x"]})),
        json!([1, "x"])
    );
}

#[test]
fn unsupported_arithmetic_names_operator_and_types() {
    check_error(
        "context.name * 2",
        14,
        "unsupported operand types for `*`: string and int",
    );
    check_error(
        "context.nothing + 1",
        17,
        "unsupported operand types for `+`: null and int",
    );
    check_error(
        "'a' + 1",
        5,
        "unsupported operand types for `+`: string and int",
    );
    check_error(
        "context.items - context.items",
        15,
        "unsupported operand types for `-`: list and list",
    );
    check_error(
        "context.keys + context.keys",
        14,
        "unsupported operand types for `+`: object and object",
    );
}

#[test]
fn equality_follows_python() {
    assert_eq!(value("1 == 1.0"), json!(true));
    assert_eq!(value("True == 1"), json!(true));
    assert_eq!(value("False == 0.0"), json!(true));
    assert_eq!(value("True == 2"), json!(false));
    assert_eq!(value("null == null"), json!(true));
    assert_eq!(value("null == 0"), json!(false));
    assert_eq!(value("'1' == 1"), json!(false));
    assert_eq!(value("'a' != 'b'"), json!(true));
    let s = json!({
        "a": [1, 2.0, {"k": true}],
        "b": [1.0, 2, {"k": 1}],
        "o1": {"x": 1, "y": [2]},
        "o2": {"y": [2.0], "x": 1},
        "o3": {"x": 1}
    });
    assert_eq!(value_in("a == b", &s), json!(true));
    assert_eq!(value_in("o1 == o2", &s), json!(true));
    assert_eq!(value_in("o1 != o3", &s), json!(true));
    assert_eq!(value_in("a == o1", &s), json!(false));
    assert_eq!(value_in("a != o3", &s), json!(true));
}

#[test]
fn int_float_equality_is_exact() {
    let s = json!({"i": 9_007_199_254_740_993_i64, "f": 9_007_199_254_740_992.0});
    assert_eq!(value_in("i == f", &s), json!(false));
    assert_eq!(value_in("i > f", &s), json!(true));
    assert_eq!(value_in("i - 1 == f", &s), json!(true));
    let s = json!({"u": 18_446_744_073_709_551_615_u64, "f": 1.8446744073709552e19});
    assert_eq!(value_in("u < f", &s), json!(true));
}

#[test]
fn ordering() {
    check("context.score >= 8", json!(true));
    check("context.ratio < context.round", json!(true));
    check("context.flag > 0", json!(true));
    check("'abc' < 'abd'", json!(true));
    check("'Z' < 'a'", json!(true));
    check("'é' > 'z'", json!(true));
    assert_eq!(
        value_in("a < b", &json!({"a": [1, 2], "b": [1, 3]})),
        json!(true)
    );
    assert_eq!(
        value_in("a < b", &json!({"a": [1, 2], "b": [1, 2, 0]})),
        json!(true)
    );
    assert_eq!(
        value_in("a <= b", &json!({"a": [1, 2], "b": [1, 2]})),
        json!(true)
    );
    assert_eq!(
        value_in("a > b", &json!({"a": [2], "b": [1, 9]})),
        json!(true)
    );
    assert_eq!(
        value_in("a < b", &json!({"a": [null, 1], "b": [null, 2]})),
        json!(true)
    );
    assert_eq!(
        value_in("a < b", &json!({"a": [1, null], "b": [2, "x"]})),
        json!(true)
    );
}

#[test]
fn ordering_incompatible_types_is_an_error() {
    check_error(
        "context.nothing >= 1",
        17,
        "`>=` cannot compare null with int",
    );
    check_error("context.name < 3", 14, "`<` cannot compare string with int");
    check_error(
        "context.keys > context.keys",
        14,
        "`>` cannot compare object with object",
    );
    check_error(
        "context.items <= 'a'",
        15,
        "`<=` cannot compare list with string",
    );
    check_error(
        "context.ratio > None",
        15,
        "`>` cannot compare float with null",
    );
    let e = eval_error_in("a < b", &json!({"a": [1, "x"], "b": [1, 2]}));
    assert_eq!(
        (e.column, e.message.as_str()),
        (3, "`<` cannot compare string with int")
    );
}

#[test]
fn chained_comparisons() {
    check("1 < context.round < 3", json!(true));
    check("1 < context.score < 3", json!(false));
    check("0 < 1 <= 1 < 2 != 3 == 3", json!(true));
    check("3 > 2 > 1", json!(true));
    check("1 < 3 > 2", json!(true));
    check("1 == 1 == 2", json!(false));
    // The chain stops at the first false link, so the bad one never runs.
    check("2 < 1 < null", json!(false));
    check_error("1 < 2 < null", 7, "`<` cannot compare int with null");
}

#[test]
fn and_or_short_circuit_and_return_bools() {
    check("false and (null > 1)", json!(false));
    check("true or (null > 1)", json!(true));
    check("context.nothing and context.nothing.x > 1", json!(false));
    check("context.score and context.name", json!(true));
    check("context.empty or 0", json!(false));
    check("0 or 'x'", json!(true));
    check("1 and 2 and 3", json!(true));
    check_error(
        "true and (null > 1)",
        16,
        "`>` cannot compare null with int",
    );
    check_error("false or missing", 10, "unknown variable `missing`");
}

#[test]
fn transition_conditions() {
    let s = scope();
    let e = expr("context.score >= 8 and context.round < 4");
    assert_eq!(e.evaluate_bool(&s), Ok(true));
    let e = expr("context.name == 'ada' and not context.flag");
    assert_eq!(e.evaluate_bool(&s), Ok(false));
    assert_eq!(expr("context.items").evaluate_bool(&s), Ok(true));
    assert_eq!(expr("context.missing").evaluate_bool(&s), Ok(false));
    assert_eq!(expr("context.keys").evaluate_bool(&s), Ok(true));
}

#[test]
fn truthiness_of_json_values() {
    for falsy in [
        json!(null),
        json!(false),
        json!(0),
        json!(0.0),
        json!(-0.0),
        json!(""),
        json!([]),
        json!({}),
    ] {
        assert!(!truthy(&falsy), "{falsy}");
    }
    for truthy_value in [
        json!(true),
        json!(1),
        json!(-1),
        json!(0.1),
        json!("0"),
        json!([0]),
        json!({"a": null}),
    ] {
        assert!(truthy(&truthy_value), "{truthy_value}");
    }
}

#[test]
fn scope_values_are_returned_borrowed() {
    let s = scope();
    let e = expr("context.nested.deep");
    assert!(matches!(e.evaluate(&s).unwrap(), Cow::Borrowed(_)));
    let e = expr("context.items[-1]");
    assert!(matches!(e.evaluate(&s).unwrap(), Cow::Borrowed(v) if v == &json!(30)));
    let e = expr("context.score + 0");
    assert!(matches!(e.evaluate(&s).unwrap(), Cow::Owned(_)));
}

#[test]
fn map_scope_with_object_bindings() {
    let Value::Object(context) = json!({"a": {"b": 3}, "n": 2}) else {
        unreachable!()
    };
    let input = json!(5);
    let scope = MapScope::new()
        .with_object("context", &context)
        .with_value("input", &input);
    let e = expr("context.a.b + context['n'] + input");
    assert_eq!(e.evaluate(&scope).unwrap().into_owned(), json!(10));
    assert_eq!(
        expr("context").evaluate(&scope).unwrap().into_owned(),
        json!({"a": {"b": 3}, "n": 2})
    );
    assert_eq!(expr("context == context").evaluate_bool(&scope), Ok(true));
    assert_eq!(expr("context").evaluate_bool(&scope), Ok(true));
}

#[test]
fn map_scope_replaces_bindings_of_the_same_name() {
    let (one, two) = (json!(1), json!(2));
    let mut scope = MapScope::new().with_value("x", &one);
    scope.set("x", Binding::Value(&two));
    assert!(matches!(scope.lookup("x"), Some(Binding::Value(v)) if *v == two));
    assert!(scope.lookup("y").is_none());
}

#[test]
fn other_scope_implementations() {
    let ctx = json!({"a": 1});
    let e = expr("context.a == 1");
    assert_eq!(e.evaluate_bool(&[("context", &ctx)]), Ok(true));
    let slice: &[(&str, &Value)] = &[("other", &ctx), ("context", &ctx)];
    assert_eq!(e.evaluate_bool(&slice), Ok(true));
    let mut hash = HashMap::new();
    hash.insert("context".to_owned(), ctx.clone());
    assert_eq!(e.evaluate_bool(&hash), Ok(true));
    let Value::Object(map) = json!({"context": {"a": 1}}) else {
        unreachable!()
    };
    assert_eq!(e.evaluate_bool(&map), Ok(true));
    let by_ref = &map;
    assert_eq!(e.evaluate_bool(&by_ref), Ok(true));
    assert_eq!(
        e.evaluate_bool(&json!([1])).unwrap_err().message,
        "unknown variable `context`"
    );
    assert_eq!(
        e.evaluate_bool(&()).unwrap_err().message,
        "unknown variable `context`"
    );
}

#[test]
fn literal_results_are_owned_copies() {
    assert_eq!(value("'lit'"), json!("lit"));
    assert_eq!(value("'abc'.x"), json!(null));
    assert_eq!(value("true.x"), json!(null));
}

#[test]
fn eval_error_display() {
    let e = eval_error_in("context.nothing >= 1", &scope());
    assert_eq!(
        e.to_string(),
        "cannot evaluate `context.nothing >= 1` (column 17): `>=` cannot compare null with int"
    );
}

#[test]
fn deeply_nested_values_do_not_overflow_comparisons() {
    let mut deep = json!(1);
    for _ in 0..400 {
        deep = json!([deep]);
    }
    let s = json!({"a": deep.clone(), "b": deep});
    let e = eval_error_in("a == b", &s);
    assert_eq!(e.message, "values are nested too deeply to compare");
    let e = eval_error_in("a < b", &s);
    assert_eq!(e.message, "values are nested too deeply to compare");
    // Shallow enough values still compare.
    let mut ok = json!(1);
    for _ in 0..100 {
        ok = json!([ok]);
    }
    assert_eq!(
        value_in("a == b", &json!({"a": ok.clone(), "b": ok})),
        json!(true)
    );
}
