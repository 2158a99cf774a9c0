//! The `simple` and `cel` engines agree on every expression both accept.
//!
//! Expressions are generated as typed trees and written out in each language's syntax
//! (`and`/`&&`, `not`/`!`, `True`/`true`), over a context of ints, bools and strings.

use flatmachines_expr::{Expression, ExpressionEngine, MapScope};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Int {
    Literal(i64),
    Field(usize),
    Binary(Box<Int>, &'static str, Box<Int>),
    Negate(Box<Int>),
}

#[derive(Debug, Clone)]
enum Str {
    Literal(String),
    Field(usize),
    Concat(Box<Str>, Box<Str>),
}

#[derive(Debug, Clone)]
enum Bool {
    Literal(bool),
    Field,
    CompareInts(Int, &'static str, Int),
    CompareStrs(Str, &'static str, Str),
    Not(Box<Bool>),
    Logic(Box<Bool>, bool, Box<Bool>),
    Equal(Box<Bool>, Box<Bool>),
}

fn int() -> impl Strategy<Value = Int> {
    let leaf = prop_oneof![
        (-50i64..50).prop_map(Int::Literal),
        (0usize..3).prop_map(Int::Field),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop_oneof![Just("+"), Just("-"), Just("*")],
                inner.clone()
            )
                .prop_map(|(a, op, b)| Int::Binary(Box::new(a), op, Box::new(b))),
            inner.prop_map(|a| Int::Negate(Box::new(a))),
        ]
    })
}

fn string() -> impl Strategy<Value = Str> {
    let leaf = prop_oneof![
        "[a-c]{0,3}".prop_map(Str::Literal),
        (0usize..2).prop_map(Str::Field),
    ];
    leaf.prop_recursive(2, 4, 2, |inner| {
        (inner.clone(), inner).prop_map(|(a, b)| Str::Concat(Box::new(a), Box::new(b)))
    })
}

fn comparison() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("=="),
        Just("!="),
        Just("<"),
        Just("<="),
        Just(">"),
        Just(">=")
    ]
}

fn boolean() -> impl Strategy<Value = Bool> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Bool::Literal),
        Just(Bool::Field),
        (int(), comparison(), int()).prop_map(|(a, op, b)| Bool::CompareInts(a, op, b)),
        (string(), comparison(), string()).prop_map(|(a, op, b)| Bool::CompareStrs(a, op, b)),
    ];
    leaf.prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| Bool::Not(Box::new(a))),
            (inner.clone(), any::<bool>(), inner.clone()).prop_map(|(a, and, b)| Bool::Logic(
                Box::new(a),
                and,
                Box::new(b)
            )),
            (inner.clone(), inner).prop_map(|(a, b)| Bool::Equal(Box::new(a), Box::new(b))),
        ]
    })
}

#[derive(Clone, Copy)]
enum Syntax {
    Simple,
    Cel,
}

/// Integer syntax is the same in both languages.
fn write_int(e: &Int) -> String {
    match e {
        Int::Literal(n) => format!("({n})"),
        Int::Field(i) => format!("context.i{i}"),
        Int::Binary(a, op, b) => {
            format!("({} {op} {})", write_int(a), write_int(b))
        }
        Int::Negate(a) => format!("(-{})", write_int(a)),
    }
}

fn write_str(e: &Str) -> String {
    match e {
        Str::Literal(s) => format!("'{s}'"),
        Str::Field(i) => format!("context.s{i}"),
        Str::Concat(a, b) => format!("({} + {})", write_str(a), write_str(b)),
    }
}

fn write_bool(e: &Bool, syntax: Syntax) -> String {
    match (e, syntax) {
        (Bool::Literal(b), Syntax::Simple) => if *b { "True" } else { "False" }.to_owned(),
        (Bool::Literal(b), Syntax::Cel) => b.to_string(),
        (Bool::Field, _) => "context.flag".to_owned(),
        (Bool::CompareInts(a, op, b), _) => {
            format!("({} {op} {})", write_int(a), write_int(b))
        }
        (Bool::CompareStrs(a, op, b), _) => format!("({} {op} {})", write_str(a), write_str(b)),
        (Bool::Not(a), Syntax::Simple) => format!("(not {})", write_bool(a, syntax)),
        (Bool::Not(a), Syntax::Cel) => format!("(!{})", write_bool(a, syntax)),
        (Bool::Logic(a, and, b), _) => {
            let op = match (syntax, and) {
                (Syntax::Simple, true) => "and",
                (Syntax::Simple, false) => "or",
                (Syntax::Cel, true) => "&&",
                (Syntax::Cel, false) => "||",
            };
            format!("({} {op} {})", write_bool(a, syntax), write_bool(b, syntax))
        }
        (Bool::Equal(a, b), _) => {
            format!("({} == {})", write_bool(a, syntax), write_bool(b, syntax))
        }
    }
}

fn context() -> Value {
    json!({"i0": 3, "i1": -7, "i2": 40, "s0": "ab", "s1": "", "flag": true})
}

fn evaluate(engine: ExpressionEngine, source: &str) -> Option<Value> {
    let context = context();
    let scope = MapScope::new().with_value("context", &context);
    let expression = Expression::parse_with(engine, source).ok()?;
    expression.evaluate(&scope).ok().map(|v| v.into_owned())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn engines_agree_on_conditions(expression in boolean()) {
        let simple = write_bool(&expression, Syntax::Simple);
        let cel = write_bool(&expression, Syntax::Cel);
        let ours = evaluate(ExpressionEngine::Simple, &simple);
        let theirs = evaluate(ExpressionEngine::Cel, &cel);
        // Both accept every generated expression except the deepest, which CEL refuses.
        prop_assert!(ours.is_some(), "simple refused {}", simple);
        if let Some(theirs) = theirs {
            prop_assert_eq!(ours, Some(theirs), "simple `{}` vs cel `{}`", simple, cel);
        }
    }

    #[test]
    fn engines_agree_on_arithmetic(expression in int()) {
        let simple = write_int(&expression);
        let cel = simple.clone();
        if let (Some(ours), Some(theirs)) = (
            evaluate(ExpressionEngine::Simple, &simple),
            evaluate(ExpressionEngine::Cel, &cel),
        ) {
            prop_assert_eq!(ours, theirs, "simple `{}` vs cel `{}`", simple, cel);
        }
    }

    #[test]
    fn cel_never_panics_on_arbitrary_text(source in "\\PC{0,80}") {
        let context = context();
        let scope = MapScope::new().with_value("context", &context);
        if let Ok(expression) = Expression::parse_with(ExpressionEngine::Cel, &source) {
            let _ = expression.evaluate(&scope);
        }
    }

    #[test]
    fn cel_never_panics_on_operator_soup(
        source in proptest::collection::vec(
            prop_oneof![
                Just("context"), Just("."), Just("i0"), Just("("), Just(")"), Just("["),
                Just("]"), Just("{"), Just("}"), Just(","), Just(":"), Just("+"), Just("-"),
                Just("*"), Just("/"), Just("%"), Just("!"), Just("&&"), Just("||"), Just("?"),
                Just("=="), Just("<"), Just("1"), Just("0"), Just("2.5"), Just("'a'"),
                Just("all"), Just("x"), Just("size"), Just("has"), Just("9223372036854775807"),
                Just("timestamp"), Just("duration"), Just("'1h'"), Just("in"), Just("null"),
            ],
            0..40,
        ).prop_map(|tokens| tokens.join(" "))
    ) {
        let context = context();
        let scope = MapScope::new().with_value("context", &context);
        if let Ok(expression) = Expression::parse_with(ExpressionEngine::Cel, &source) {
            let _ = expression.evaluate(&scope);
        }
    }
}

#[test]
fn the_generators_produce_expressions_both_engines_run() {
    // A fixed example, so a generator bug that makes every case vacuous is caught.
    let e = Bool::Logic(
        Box::new(Bool::CompareInts(Int::Field(0), "<", Int::Literal(5))),
        true,
        Box::new(Bool::Not(Box::new(Bool::Literal(false)))),
    );
    let simple = write_bool(&e, Syntax::Simple);
    let cel = write_bool(&e, Syntax::Cel);
    assert_eq!(simple, "((context.i0 < (5)) and (not False))");
    assert_eq!(cel, "((context.i0 < (5)) && (!false))");
    assert_eq!(
        evaluate(ExpressionEngine::Simple, &simple),
        Some(json!(true))
    );
    assert_eq!(evaluate(ExpressionEngine::Cel, &cel), Some(json!(true)));
}
