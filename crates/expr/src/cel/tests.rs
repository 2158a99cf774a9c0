use serde_json::{Value, json};

use crate::{Expression, ExpressionEngine, MapScope};

fn cel(source: &str) -> Expression {
    match Expression::parse_with(ExpressionEngine::Cel, source) {
        Ok(expression) => expression,
        Err(e) => panic!("`{source}` should parse: {e}"),
    }
}

fn eval(source: &str, context: &Value) -> Result<Value, String> {
    let scope = MapScope::new().with_value("context", context);
    cel(source)
        .evaluate(&scope)
        .map(|v| v.into_owned())
        .map_err(|e| e.to_string())
}

fn parse_error(source: &str) -> String {
    match Expression::parse_with(ExpressionEngine::Cel, source) {
        Ok(_) => panic!("`{source}` should not parse"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn list_macros_string_methods_and_time() {
    let context = json!({
        "scores": [7, 9, 10],
        "name": "Ada Lovelace",
        "started": "2026-11-23T10:00:00Z",
        "items": [{"ok": true}, {"ok": false}],
    });
    let cases = [
        ("context.scores.all(s, s > 5)", json!(true)),
        ("context.scores.exists(s, s == 9)", json!(true)),
        ("context.scores.exists_one(s, s > 8)", json!(false)),
        ("context.scores.filter(s, s >= 9)", json!([9, 10])),
        ("context.scores.map(s, s * 2)", json!([14, 18, 20])),
        ("context.items.filter(i, i.ok).size()", json!(1)),
        ("context.name.startsWith('Ada')", json!(true)),
        (
            "context.name.endsWith('lace') && context.name.contains(' ')",
            json!(true),
        ),
        ("context.name.matches('^A[a-z]+ L')", json!(true)),
        ("context.name.lowerAscii()", json!("ada lovelace")),
        ("size(context.name)", json!(12)),
        (
            "timestamp(context.started) + duration('90m') > timestamp('2026-11-23T11:00:00Z')",
            json!(true),
        ),
        (
            "timestamp(context.started) + duration('1h')",
            json!("2026-11-23T11:00:00+00:00"),
        ),
        ("duration('1h30m')", json!("5400s")),
        ("has(context.name) && !has(context.missing)", json!(true)),
        ("{'a': 1, 'b': [true]}", json!({"a": 1, "b": [true]})),
        ("1 == 1.0", json!(true)),
        ("context.scores[1]", json!(9)),
    ];
    for (source, expected) in cases {
        assert_eq!(eval(source, &context), Ok(expected), "{source}");
    }
}

#[test]
fn conditions_use_truthiness_of_the_result() {
    let context = json!({"n": 0, "s": "x"});
    let scope = MapScope::new().with_value("context", &context);
    assert_eq!(cel("context.n").evaluate_bool(&scope), Ok(false));
    assert_eq!(cel("context.s").evaluate_bool(&scope), Ok(true));
    assert_eq!(cel("  ").evaluate_bool(&scope), Ok(true));
}

#[test]
fn free_variables_skip_macro_variables_and_carry_columns() {
    let expression = cel("context.xs.all(x, x > input.min) || output.done");
    assert_eq!(
        expression.root_variables(),
        vec![("context", 1), ("input", 23), ("output", 37)]
    );
    assert_eq!(expression.engine(), ExpressionEngine::Cel);
}

#[test]
fn runtime_failures_are_errors_not_panics() {
    let context = json!({"big": i64::MAX, "xs": [1]});
    let failures = [
        ("1 / 0", "division by zero"),
        ("1 % 0", "by zero"),
        ("context.big + 1", "overflow"),
        ("context.xs[3]", "3"),
        ("context.missing", "missing"),
        ("'a' < 1", "_<_"),
        ("b'abc'", "no JSON form"),
        ("1.0 / 0.0", "not a finite number"),
        ("timestamp('yesterday')", "timestamp"),
        ("nobody > 1", "nobody"),
    ];
    for (source, expected) in failures {
        let error = eval(source, &context).expect_err(source);
        assert!(
            error.to_lowercase().contains(&expected.to_lowercase()),
            "{source}: `{error}` should mention `{expected}`"
        );
    }
}

#[test]
fn syntax_errors_point_at_the_column() {
    let error = parse_error("context.n >");
    assert!(error.contains("at column 12"), "{error}");
    let error = parse_error("context.n > 1 &&\n  (");
    assert!(error.contains("at column 21"), "{error}");
    for source in ["'unterminated", "9223372036854775808", "1 ? 2", "has(1)"] {
        parse_error(source);
    }
}

#[test]
fn deep_or_long_sources_are_refused_before_they_can_exhaust_the_stack() {
    let brackets = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert!(parse_error(&brackets).contains("brackets more than 64 deep"));
    let chain = format!("1{}", " + 1".repeat(40));
    assert!(
        parse_error(&chain).contains("at most 32"),
        "{}",
        parse_error(&chain)
    );
    let long = "1 + ".repeat(5000) + "1";
    assert!(parse_error(&long).contains("too long"));
    // Brackets inside strings are text.
    cel(&format!("'{}' != ''", "(".repeat(100)));
}

#[test]
fn the_deepest_accepted_programs_run_on_a_small_stack() {
    // Async workers have 2 MiB stacks; unoptimised builds use the most stack per level.
    let sources = [
        format!("1{}", " + 1".repeat(30)),
        format!("{}1{}", "int(".repeat(30), ")".repeat(30)),
        format!("{}1{}", "[".repeat(30), "]".repeat(30)),
        format!("{{'a': 1}}{}", ".a".repeat(0)) + &"[0]".repeat(0),
    ];
    let programs: Vec<Expression> = sources.iter().map(|s| cel(s)).collect();
    let ran = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            programs
                .iter()
                .map(|p| p.evaluate(&()).map(|v| v.into_owned()).is_ok())
                .collect::<Vec<_>>()
        })
        .expect("spawn")
        .join()
        .expect("no stack overflow");
    assert_eq!(ran, vec![true; 4]);
}
