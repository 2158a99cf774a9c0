use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn map(value: Value) -> Arc<serde_json::Map<String, Value>> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::default(),
    }
}

fn render(source: &str, context: Value) -> Result<Value, String> {
    let mut engine = TemplateEngine::new();
    let tree = TemplateTree::compile_str(source, "test", &mut engine).map_err(|e| e.1)?;
    tree.render(&engine, &Vars::state(map(context)))
        .map_err(|e| e.message)
}

fn ok(source: &str, context: Value) -> Value {
    match render(source, context) {
        Ok(value) => value,
        Err(e) => panic!("{source}: {e}"),
    }
}

#[test]
fn path_references_yield_raw_values() {
    let context = json!({"items": [1, {"a": 2}], "s": "5", "nested": {"x": null}});
    assert_eq!(ok("context.items", context.clone()), json!([1, {"a": 2}]));
    assert_eq!(ok("  input.items ", context.clone()), json!([1, {"a": 2}]));
    // A path reference is not parsed as JSON: the string stays a string.
    assert_eq!(ok("context.s", context.clone()), json!("5"));
    assert_eq!(ok("context.missing", context.clone()), Value::Null);
    assert_eq!(ok("context.nested.x.y", context.clone()), Value::Null);
    assert_eq!(ok("output.items", context.clone()), Value::Null);
    // Not path references: literals.
    assert_eq!(ok("context", context.clone()), json!("context"));
    assert_eq!(
        ok("context.items[0]", context.clone()),
        json!("context.items[0]")
    );
    assert_eq!(ok("just text", context), json!("just text"));
}

#[test]
fn rendered_text_is_parsed_as_json() {
    let context = json!({"n": 1, "flag": true, "none": null, "list": [1, 2], "s": "5", "t": "hi"});
    assert_eq!(ok("{{ context.n + 1 }}", context.clone()), json!(2));
    assert_eq!(ok("{{ context.flag }}", context.clone()), json!(true));
    assert_eq!(ok("{{ not context.flag }}", context.clone()), json!(false));
    assert_eq!(ok("{{ context.none }}", context.clone()), Value::Null);
    assert_eq!(ok("{{ context.list }}", context.clone()), json!([1, 2]));
    assert_eq!(ok("{{ context.s }}", context.clone()), json!(5));
    assert_eq!(ok("{{ context.t }}", context.clone()), json!("hi"));
    assert_eq!(ok("{{ context.missing }}", context.clone()), json!(""));
    assert_eq!(ok("{{ 1 / 2 }}", context.clone()), json!(0.5));
    assert_eq!(ok("{{ 4 / 2 }}", context.clone()), json!(2.0));
    assert_eq!(ok("{{ context }}", context.clone()), context);
}

#[test]
fn collections_print_as_python_json_inside_text() {
    let context = json!({"list": [1, "a"], "obj": {"k": [true, null]}});
    assert_eq!(
        ok("Items: {{ context.list }}", context.clone()),
        json!("Items: [1, \"a\"]")
    );
    assert_eq!(
        ok("Obj: {{ context.obj }}", context.clone()),
        json!("Obj: {\"k\": [true, null]}")
    );
    assert_eq!(
        ok("{{ context.obj | string }}!", context),
        json!("{\"k\": [true, null]}!")
    );
}

#[test]
fn jinja_features_work_over_json_views() {
    let context = json!({
        "name": "ada",
        "d": {"items": "key wins", "b": 2},
        "results": [{"v": 1}, {"v": 2}, {"v": 3}],
        "text": "{\"a\": [1, 2]}"
    });
    assert_eq!(
        ok("{{ context.name.upper() }}", context.clone()),
        json!("ADA")
    );
    assert_eq!(
        ok("{{ context.name | upper }}", context.clone()),
        json!("ADA")
    );
    assert_eq!(
        ok("{{ context.d.items }}", context.clone()),
        json!("key wins")
    );
    assert_eq!(
        ok("{{ context.d.keys() | list }}", context.clone()),
        json!(["items", "b"])
    );
    assert_eq!(
        ok("{{ context.results | length }}", context.clone()),
        json!(3)
    );
    assert_eq!(
        ok("{{ context.results[0] }}", context.clone()),
        json!({"v": 1})
    );
    assert_eq!(ok("{{ context.results[-1].v }}", context.clone()), json!(3));
    assert_eq!(
        ok(
            "{% for r in context.results %}{{ r.v }}{% if not loop.last %},{% endif %}{% endfor %}",
            context.clone()
        ),
        json!("1,2,3")
    );
    assert_eq!(
        ok(
            "{{ context.results | map(attribute='v') | sum }}",
            context.clone()
        ),
        json!(6)
    );
    assert_eq!(
        ok(
            "{% if context.name is defined %}yes{% else %}no{% endif %}",
            context.clone()
        ),
        json!("yes")
    );
    assert_eq!(
        ok(
            "{% if context.nope is defined %}yes{% else %}no{% endif %}",
            context.clone()
        ),
        json!("no")
    );
    assert_eq!(
        ok("{{ (context.text | fromjson).a }}", context.clone()),
        json!([1, 2])
    );
    assert_eq!(
        ok("{{ context.d | tojson }}", context.clone()),
        json!({"items": "key wins", "b": 2})
    );
    assert_eq!(ok("{{ context.d.get('b') }}", context), json!(2));
}

#[test]
fn error_messages() {
    let mut engine = TemplateEngine::new();
    let compile_errors: Vec<String> = [
        "{{ context.x ",
        "{% if %}",
        "{{ context.x | }}",
        "{% for x in y %}",
    ]
    .iter()
    .map(
        |source| match engine.compile(source, "data.states.s.input.x") {
            Ok(_) => format!("{source} => compiled"),
            Err(e) => format!("{source} => {e}"),
        },
    )
    .collect();
    let render_errors: Vec<String> = [
        "{{ context.missing.deeper }}",
        "{{ context.n + 'a' }}",
        "{{ context.text | fromjson }}",
        "{{ context.n | nosuchfilter }}",
        "{{ context.n.nosuchmethod() }}",
    ]
    .iter()
    .map(
        |source| match render(source, json!({"n": 1, "text": "not json"})) {
            Ok(value) => format!("{source} => {value}"),
            Err(e) => format!("{source} => {e}"),
        },
    )
    .collect();
    insta::assert_snapshot!(format!(
        "{}\n{}",
        compile_errors.join("\n"),
        render_errors.join("\n")
    ));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        prop_oneof![
            Just("5".to_owned()),
            Just("[1, 2]".to_owned()),
            Just("true".to_owned()),
            Just(" 7 ".to_owned()),
            "[a-z ]{0,6}"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[abc]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The shortcut for `{{ a.b }}` must give exactly what minijinja gives.
    #[test]
    fn fast_path_matches_minijinja(
        context in proptest::collection::btree_map("[abc]", json_value(), 0..4),
        path in proptest::collection::vec("[abc]", 0..4),
        root in prop_oneof![Just("context"), Just("input"), Just("output")],
    ) {
        let mut engine = TemplateEngine::new();
        let mut source = root.to_owned();
        for segment in &path {
            source.push('.');
            source.push_str(segment);
        }
        let source = format!("{{{{ {source} }}}}");
        let template = engine.compile(&source, "p").unwrap();
        prop_assert!(template.fast_path.is_some());
        let context: serde_json::Map<String, Value> = context.into_iter().collect();
        let vars = Vars::state(Arc::new(context));
        let fast = engine.render(&template, &vars);
        let slow = engine.render_with_minijinja(&template, &vars);
        match (fast, slow) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "{source}: fast {a:?} vs minijinja {b:?}"),
        }
    }
}

#[test]
fn integer_keys_read_the_text_keys_they_were_written_as() {
    let context = json!({"by_id": {"3": "three", "10": "ten"}});
    assert_eq!(
        ok("{{ context.by_id[3] }}", context.clone()),
        json!("three")
    );
    assert_eq!(
        ok("{{ context.by_id['10'] }}", context.clone()),
        json!("ten")
    );
    assert_eq!(ok("{{ context.by_id[4] }}", context), json!(""));
}
