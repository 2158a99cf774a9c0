//! Snapshot of the full Display text of parse and evaluation errors, so any
//! change to wording or columns shows up in review.

use flatmachines_expr::Expression;
use serde_json::json;

const BAD_EXPRESSIONS: &[&str] = &[
    // Parse errors.
    "context.score >=",
    "context.score >= )",
    "(context.a and context.b",
    "context.items[0",
    "context.",
    "len(context.items) > 2",
    "context.name in context.names",
    "context.name not in context.names",
    "context.value is None",
    "context.count % 2 == 0",
    "context.total // 2",
    "2 ** 8",
    "context.flags & 1",
    "lambda x: x",
    "f'{context.name}'",
    "context.name = 'x'",
    "context.x == 'unterminated",
    "context.a b",
    "context.a)",
    "()",
    "99999999999999999999",
    "'\\xZZ'",
    "1 if context.a else 2",
    "context.class",
    "[1, 2, 3]",
    // Evaluation errors.
    "context.missing.value >= 1",
    "context.name * 2",
    "context.count / 0",
    "unknown.field == 1",
    "context.items['first']",
    "context[0]",
    "-context.name",
    "context.big + context.big",
    "0 < context.name < 10",
];

#[test]
fn error_messages() {
    let scope = json!({
        "context": {
            "missing": null,
            "name": "ada",
            "count": 3,
            "items": [1, 2, 3],
            "big": u64::MAX
        }
    });
    let mut report = String::new();
    for source in BAD_EXPRESSIONS {
        let line = match Expression::parse(source) {
            Err(parse) => parse.to_string(),
            Ok(expr) => match expr.evaluate(&scope) {
                Err(eval) => eval.to_string(),
                Ok(value) => panic!("`{source}` unexpectedly evaluated to {value}"),
            },
        };
        report.push_str(&line);
        report.push('\n');
    }
    insta::assert_snapshot!(report);
}
