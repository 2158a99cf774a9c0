//! Lexing, parsing, limits and root-variable extraction.

mod common;

use common::{expr, parse_error, value, value_in};
use flatmachines_expr::Expression;
use serde_json::json;

#[test]
fn empty_and_blank_expressions_are_true() {
    for source in ["", "   ", "\n\t  \r\n"] {
        let e = expr(source);
        assert_eq!(e.evaluate_bool(&()), Ok(true), "{source:?}");
        assert_eq!(e.evaluate(&()).unwrap().into_owned(), json!(true));
        assert!(e.root_variables().is_empty());
    }
}

#[test]
fn a_comment_alone_is_not_an_expression() {
    assert_eq!(parse_error("# nothing").message, "expected a value");
    assert_eq!(value("1 # the rest is ignored"), json!(1));
}

#[test]
fn integer_literals() {
    assert_eq!(value("0"), json!(0));
    assert_eq!(value("00"), json!(0));
    assert_eq!(value("42"), json!(42));
    assert_eq!(value("9223372036854775807"), json!(i64::MAX));
    assert_eq!(value("-9223372036854775808"), json!(i64::MIN));
    assert!(value("7").is_i64());
}

#[test]
fn integer_literal_limits() {
    let e = parse_error("9223372036854775808");
    assert_eq!(
        (e.column, e.message.as_str()),
        (1, "integer literal too large")
    );
    let e = parse_error("1 + 99999999999999999999999");
    assert_eq!(
        (e.column, e.message.as_str()),
        (5, "integer literal too large")
    );
    assert_eq!(
        parse_error("-9223372036854775808[0]").message,
        "integer literal too large"
    );
    assert_eq!(
        parse_error("012").message,
        "leading zeros in integer literals are not permitted"
    );
}

#[test]
fn float_literals() {
    assert_eq!(value("1.5"), json!(1.5));
    assert_eq!(value(".5"), json!(0.5));
    assert_eq!(value("1."), json!(1.0));
    assert_eq!(value("1e3"), json!(1000.0));
    assert_eq!(value("2.5E-3"), json!(0.0025));
    assert_eq!(value("1.e2"), json!(100.0));
    assert_eq!(value("-0.25"), json!(-0.25));
    assert!(value("1.").is_f64());
    assert!(value("1e3").is_f64());
}

#[test]
fn malformed_numbers() {
    assert_eq!(parse_error("1e").message, "invalid number literal");
    assert_eq!(parse_error("1.5.2").message, "invalid number literal");
    assert_eq!(parse_error("12abc").message, "invalid number literal");
    assert_eq!(parse_error("1e999").message, "float literal out of range");
    assert_eq!(
        parse_error("0x1f").message,
        "only decimal number literals are supported"
    );
    assert_eq!(
        parse_error("1_000").message,
        "digit separators `_` are not supported"
    );
    assert_eq!(
        parse_error("2j").message,
        "complex number literals are not supported"
    );
}

#[test]
fn string_literals_and_escapes() {
    assert_eq!(value("'single'"), json!("single"));
    assert_eq!(value("\"double\""), json!("double"));
    assert_eq!(value(r#"'it\'s'"#), json!("it's"));
    assert_eq!(value(r#""say \"hi\"""#), json!("say \"hi\""));
    assert_eq!(value(r"'a\\b'"), json!("a\\b"));
    assert_eq!(value(r"'\n\t\r\0'"), json!("\n\t\r\0"));
    assert_eq!(value(r"'\a\b\f\v'"), json!("\x07\x08\x0c\x0b"));
    assert_eq!(value(r"'\x41\u00e9\U0001F600'"), json!("Aé😀"));
    assert_eq!(value(r"'\101\12'"), json!("A\n"));
    assert_eq!(value(r"'\q\d'"), json!("\\q\\d"));
    assert_eq!(value("'a\\\nb'"), json!("ab"));
    assert_eq!(value("'日本'"), json!("日本"));
    assert_eq!(value("'ab' \"cd\"  'e'"), json!("abcde"));
    assert_eq!(value("''"), json!(""));
}

#[test]
fn bad_strings() {
    let e = parse_error("x == 'abc");
    assert_eq!((e.column, e.message.as_str()), (6, "unterminated string"));
    assert_eq!(parse_error("'a\nb'").message, "unterminated string");
    assert_eq!(parse_error(r"'ab\'").message, "unterminated string");
    let e = parse_error(r"'ab\x4'");
    assert_eq!(
        (e.column, e.message.as_str()),
        (4, "invalid `\\x` escape: expected 2 hex digits")
    );
    assert_eq!(parse_error(r"'\ud800'").message, "invalid unicode escape");
    assert_eq!(
        parse_error(r"'\U00110000'").message,
        "invalid unicode escape"
    );
    assert_eq!(
        parse_error(r"'\N{DASH}'").message,
        "`\\N{...}` escapes are not supported"
    );
    assert_eq!(parse_error("f'{x}'").message, "f-strings are not supported");
    assert_eq!(
        parse_error("r'x'").message,
        "string prefix `r` is not supported"
    );
    assert_eq!(
        parse_error("'''x'''").message,
        "triple-quoted strings are not supported"
    );
}

#[test]
fn boolean_and_null_literals_in_both_spellings() {
    assert_eq!(value("true"), json!(true));
    assert_eq!(value("True"), json!(true));
    assert_eq!(value("false"), json!(false));
    assert_eq!(value("False"), json!(false));
    assert_eq!(value("null"), json!(null));
    assert_eq!(value("None"), json!(null));
}

#[test]
fn literal_words_are_still_field_names_after_a_dot() {
    let scope = json!({"x": {"true": 1, "null": 2}});
    assert_eq!(value_in("x.true + x.null", &scope), json!(3));
    assert_eq!(
        parse_error("x.None").message,
        "`None` is a reserved word and cannot be a field name (use `[\"None\"]`)"
    );
    assert_eq!(value_in("x['true']", &scope), json!(1));
}

#[test]
fn reserved_words_cannot_be_variables() {
    assert_eq!(parse_error("class").message, "`class` is a reserved word");
    assert_eq!(
        parse_error("and x").message,
        "expected a value, found `and`"
    );
}

#[test]
fn whitespace_newlines_and_comments_between_tokens() {
    let scope = json!({"a": 1, "b": 2});
    assert_eq!(value_in("  a\n  <\tb # trailing\n", &scope), json!(true));
}

#[test]
fn precedence() {
    assert_eq!(value("1 + 2 * 3"), json!(7));
    assert_eq!(value("(1 + 2) * 3"), json!(9));
    assert_eq!(value("10 - 4 - 3"), json!(3));
    assert_eq!(value("8 / 4 / 2"), json!(1.0));
    assert_eq!(value("-2 * 3"), json!(-6));
    assert_eq!(value("2 - -3"), json!(5));
    assert_eq!(value("1 + 1 == 2"), json!(true));
    // `not` binds looser than comparisons, `and` tighter than `or`.
    assert_eq!(value("not 1 == 2"), json!(true));
    assert_eq!(value("true or true and false"), json!(true));
    assert_eq!(value("(true or true) and false"), json!(false));
    assert_eq!(value("not false and false"), json!(false));
}

#[test]
fn negative_literals_fold_but_keep_their_kind() {
    assert!(value("-5").is_i64());
    assert!(value("-5.0").is_f64());
    assert_eq!(value("- - 5"), json!(5));
    assert_eq!(value("-(2)"), json!(-2));
}

#[test]
fn root_variables_are_deduplicated_in_source_order() {
    let e = expr("context.a > input.b and context.c == true or output['x'] != None");
    assert_eq!(
        e.root_variables(),
        vec![("context", 1), ("input", 13), ("output", 46)]
    );
}

#[test]
fn root_variables_inside_subscripts_and_literal_words() {
    let e = expr("x[y.k][z] == null and True and x.y");
    assert_eq!(e.root_variables(), vec![("x", 1), ("y", 3), ("z", 8)]);
    assert!(expr("true and false or null").root_variables().is_empty());
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = expr("'日本語' == ctx");
    assert_eq!(e.root_variables(), vec![("ctx", 10)]);
    let e = parse_error("'é' == %");
    assert_eq!(e.column, 8);
}

#[test]
fn source_display_and_from_str() {
    let e: Expression = "a.b  ==  1".parse().unwrap();
    assert_eq!(e.source(), "a.b  ==  1");
    assert_eq!(e.to_string(), "a.b  ==  1");
}

#[test]
fn nesting_is_bounded() {
    let ok = format!("{}1{}", "(".repeat(64), ")".repeat(64));
    assert_eq!(value(&ok), json!(1));
    let too_deep = format!("{}1{}", "(".repeat(65), ")".repeat(65));
    let e = parse_error(&too_deep);
    assert_eq!(
        (e.column, e.message.as_str()),
        (65, "expression is nested too deeply (more than 64 levels)")
    );
}

#[test]
fn hostile_nesting_returns_errors_instead_of_overflowing() {
    let e = parse_error(&"(".repeat(100_000));
    assert!(
        e.message.starts_with("expression is too long"),
        "{}",
        e.message
    );
    let cases = [
        "(".repeat(60_000),
        "not ".repeat(16_000),
        "-".repeat(60_000),
        "a[".repeat(30_000),
        format!("{}x", "-(".repeat(30_000)),
    ];
    for source in cases {
        let e = parse_error(&source);
        assert!(e.message.contains("nested too deeply"), "{}", e.message);
    }
}

#[test]
fn long_flat_chains_are_fine() {
    let sum = vec!["1"; 10_000].join(" + ");
    assert_eq!(value(&sum), json!(10_000));
    let ands = vec!["true"; 5_000].join(" and ");
    assert_eq!(value(&ands), json!(true));
    let path = format!("x{}", ".a".repeat(10_000));
    assert_eq!(value_in(&path, &json!({"x": {}})), json!(null));
}

#[test]
fn sources_over_64_kib_are_rejected() {
    let long = "1".repeat(64 * 1024 + 1);
    let e = parse_error(&long);
    assert_eq!(e.message, "expression is too long (more than 65536 bytes)");
    // The error keeps only a prefix of the source so it stays printable.
    assert_eq!(e.expression, format!("{}…", "1".repeat(40)));
    let fits = format!("{}{}", " ".repeat(64 * 1024 - 1), "1");
    assert_eq!(value(&fits), json!(1));
}

#[test]
fn unsupported_syntax_is_named() {
    let cases = [
        ("f(x)", 2, "function calls are not supported"),
        (
            "context.items.count(1)",
            20,
            "function calls are not supported",
        ),
        ("a in b", 3, "operator `in` is not supported"),
        ("a not in b", 3, "operator `not in` is not supported"),
        ("a is None", 3, "operator `is` is not supported"),
        ("a is not None", 3, "operator `is not` is not supported"),
        ("a % 2", 3, "operator `%` is not supported"),
        ("a // 2", 3, "operator `//` is not supported"),
        ("a ** 2", 3, "operator `**` is not supported"),
        ("a & b", 3, "operator `&` is not supported"),
        ("a | b", 3, "operator `|` is not supported"),
        ("a ^ b", 3, "operator `^` is not supported"),
        ("~a", 1, "operator `~` is not supported"),
        ("a << 1", 3, "operator `<<` is not supported"),
        ("!a", 1, "operator `!` is not supported"),
        ("+a", 1, "unary `+` is not supported"),
        ("lambda: 1", 1, "lambda is not supported"),
        (
            "1 if a else 2",
            3,
            "conditional expressions (`if`/`else`) are not supported",
        ),
        (
            "a = 1",
            3,
            "assignment `=` is not supported (use `==` to compare)",
        ),
        ("(a := 1)", 4, "assignment `:=` is not supported"),
        ("[1, 2]", 1, "list literals are not supported"),
        ("{'a': 1}", 1, "dict and set literals are not supported"),
        ("(1, 2)", 3, "tuples are not supported"),
        ("x[1:2]", 4, "slices are not supported"),
        ("x[1, 2]", 4, "tuple subscripts are not supported"),
        ("()", 1, "empty parentheses are not supported"),
        ("a b", 3, "unexpected `b`"),
        ("a)", 2, "unexpected `)`"),
        ("a not b", 3, "unexpected `not`"),
        ("a $ b", 3, "unexpected character `$`"),
        ("café", 4, "unexpected character `é`"),
    ];
    for (source, column, message) in cases {
        let e = parse_error(source);
        assert_eq!(
            (e.column, e.message.as_str()),
            (column, message),
            "{source}"
        );
    }
}

#[test]
fn missing_operands_and_closers() {
    let cases = [
        ("context.score >=", 17, "expected a value after `>=`"),
        ("a >= )", 6, "expected a value after `>=`, found `)`"),
        ("a and", 6, "expected a value after `and`"),
        ("not", 4, "expected a value after `not`"),
        ("-", 2, "expected a value after `-`"),
        ("a == not b", 6, "expected a value after `==`, found `not`"),
        ("(a", 3, "expected `)` to close `(` at column 1"),
        ("(a b)", 4, "expected `)`, found `b`"),
        ("x[1", 4, "expected `]` to close `[` at column 2"),
        ("x[]", 3, "expected a value after `[`, found `]`"),
        ("x.", 3, "expected a field name after `.`"),
        ("x.1", 2, "unexpected `.1`"),
        ("x. 'a'", 4, "expected a field name after `.`, found `'a'`"),
        (")", 1, "expected a value, found `)`"),
    ];
    for (source, column, message) in cases {
        let e = parse_error(source);
        assert_eq!(
            (e.column, e.message.as_str()),
            (column, message),
            "{source}"
        );
    }
}

#[test]
fn parse_error_display() {
    let e = parse_error("a >=");
    assert_eq!(
        e.to_string(),
        "invalid expression `a >=` at column 5: expected a value after `>=`"
    );
    assert_eq!(e.expression, "a >=");
}

#[test]
fn expressions_are_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_traits::<Expression>();
    let e = expr("a + 1");
    let copy = e.clone();
    assert_eq!(copy.source(), e.source());
}
