//! Differential test against the Python reference engine.
//!
//! `fixtures/reference_cases.json` was produced by
//! `fixtures/gen_reference_cases.py`, which ran each case through the Python
//! `SimpleExpressionEngine`. Every case must give the same value here, or an
//! error where the reference raised one.

use flatmachines_expr::Expression;
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/reference_cases.json");

/// JSON equality that keeps ints and floats apart (Python returned `2` or
/// `2.0` and so must we) but tolerates a last-bit difference in float
/// parsing of the fixture.
fn same(ours: &Value, reference: &Value) -> bool {
    match (ours, reference) {
        (Value::Number(a), Value::Number(b)) => match (a.is_f64(), b.is_f64()) {
            (false, false) => a.as_i128() == b.as_i128(),
            (true, true) => {
                let (x, y) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
            }
            _ => false,
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
        }
        _ => ours == reference,
    }
}

#[test]
fn agrees_with_the_python_reference() {
    let cases: Vec<Value> = serde_json::from_str(FIXTURE).expect("fixture is valid JSON");
    assert!(cases.len() >= 80, "only {} reference cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let source = case["expr"].as_str().expect("expr is a string");
        let scope = &case["scope"];
        let expected = &case["expected"];
        let ours = Expression::parse(source)
            .map_err(|e| e.to_string())
            .and_then(|expr| {
                expr.evaluate(scope)
                    .map(std::borrow::Cow::into_owned)
                    .map_err(|e| e.to_string())
            });
        let agrees = match (&ours, expected.get("value")) {
            (Ok(value), Some(reference)) => same(value, reference),
            (Err(_), None) => expected["error"] == Value::Bool(true),
            _ => false,
        };
        if !agrees {
            failures.push(format!("`{source}`: ours {ours:?}, reference {expected}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_comparison_keeps_int_and_float_apart() {
    let int = serde_json::json!(2);
    let float = serde_json::json!(2.0);
    assert!(same(&int, &int));
    assert!(same(&float, &float));
    assert!(!same(&int, &float));
    assert!(!same(&serde_json::json!([1]), &serde_json::json!([1.0])));
    assert!(same(
        &serde_json::json!(0.30000000000000004),
        &serde_json::json!(0.1 + 0.2)
    ));
}
