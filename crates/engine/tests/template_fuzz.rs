//! Generated templates never take the renderer down: every one either renders, with output no
//! larger than `template_bytes`, or fails with an error that names the field. None panics
//! inside the renderer (a contained panic says so in its message), none runs without end.
//!
//! The templates are built from Jinja's grammar (operators, slices with any bounds, filters and
//! methods with odd arguments, loops) and from raw text around `{{ }}`, over a context of
//! empty and non-empty values. Like `bounded_inputs.rs`, the property runs in a child process
//! (this test binary again) under `prlimit` (2 GiB of address space, 120 s of CPU) and a kill
//! after 300 s.

mod common;

use proptest::prelude::*;
use serde_json::json;

use flatmachines_core::{Limit, Limits};
use flatmachines_engine::{Machine, RunError, RunOptions, Runtime};

const INNER: &str = "generated_templates_render_or_fail_cleanly";

#[test]
fn generated_templates_run_in_a_bounded_child_process() {
    common::run_bounded_child(INNER);
}

const MAX_BYTES: u64 = 64 * 1024;

fn limits() -> Limits {
    let mut limits = Limits::new();
    limits
        .set(Limit::TemplateFuel, 200_000)
        .expect("a valid bound");
    limits
        .set(Limit::TemplateBytes, MAX_BYTES)
        .expect("a valid bound");
    limits
}

/// Leaves of an expression: literals of every kind, empty ones first, and the context's values.
fn leaf() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "0",
        "1",
        "-1",
        "2",
        "7",
        "-3",
        "0.0",
        "2.5",
        "-0.5",
        "1e300",
        "''",
        "'abc'",
        "'a,b'",
        "'  x '",
        "[]",
        "[1, 2, 3]",
        "['b', 'A']",
        "{}",
        "{'a': 1}",
        "none",
        "true",
        "context.n",
        "context.zero",
        "context.s",
        "context.empty",
        "context.xs",
        "context.nothing",
        "context.d",
        "context.f",
        "context.missing",
        "range(3)",
        "range(0)",
    ])
    .prop_map(str::to_owned)
}

const FILTERS: &[&str] = &[
    "length",
    "first",
    "last",
    "reverse",
    "sort",
    "join",
    "join(',')",
    "round",
    "round(1)",
    "round(0, 'floor')",
    "int",
    "float",
    "abs",
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "tojson",
    "string",
    "list",
    "unique",
    "sum",
    "min",
    "max",
    "batch(2)",
    "slice(2)",
    "default(1)",
    "replace('a', 'b')",
    "truncate(3)",
    "center(5)",
    "wordcount",
    "indent(2)",
    "striptags",
    "urlencode",
    "filesizeformat",
    "wordwrap(3)",
    "items",
    "dictsort",
    "map('abs')",
    "select",
    "reject",
    "count",
    "format(1)",
    "fromjson",
    "xmlattr",
    "forceescape",
    "urlize",
];

const METHODS: &[&str] = &[
    "upper()",
    "split(',')",
    "split()",
    "strip()",
    "zfill(3)",
    "ljust(3)",
    "rjust(3)",
    "center(3)",
    "partition(',')",
    "rpartition(',')",
    "rsplit(',', 1)",
    "swapcase()",
    "casefold()",
    "index('a')",
    "count('a')",
    "find('a')",
    "startswith('a')",
    "replace('a', 'bb')",
    "keys()",
    "items()",
    "get('a')",
    "copy()",
    "title()",
];

fn slice_bound() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), (-5i64..6).prop_map(|n| n.to_string())]
}

fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "//", "%", "**", "~", "and", "or", "==", "<", "in",
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("(not {a})")),
            (inner.clone(), slice_bound(), slice_bound(), slice_bound())
                .prop_map(|(a, start, stop, step)| format!("{a}[{start}:{stop}:{step}]")),
            (inner.clone(), -4i64..4).prop_map(|(a, i)| format!("{a}[{i}]")),
            (inner.clone(), prop::sample::select(FILTERS))
                .prop_map(|(a, filter)| format!("({a} | {filter})")),
            (inner.clone(), prop::sample::select(METHODS))
                .prop_map(|(a, method)| format!("{a}.{method}")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("({a} if {b} else {c})")),
        ]
    })
}

fn template() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => expression().prop_map(|e| format!("{{{{ {e} }}}}")),
        2 => (expression(), expression())
            .prop_map(|(a, b)| format!("x{{{{ {a} }}}}y{{{{ {b} }}}}")),
        2 => (expression(), expression())
            .prop_map(|(items, body)| format!("{{% for x in {items} %}}{{{{ x }}}}{{{{ {body} }}}}{{% endfor %}}")),
        1 => "[{}%a-z0-9 |.\\[\\]:()'\",*/+-]{0,40}".prop_map(|raw| format!("{{{{ {raw} }}}}")),
        1 => "[{}%a-z0-9 |.\\[\\]:()'\",*/+-]{0,60}",
    ]
}

fn machine(template: &str) -> String {
    let context = json!({
        "n": 3, "zero": 0, "s": "abc", "empty": "", "xs": [], "nothing": null,
        "d": {"b": 1, "a": [1, 2]}, "f": 2.675,
    });
    let mut yaml = String::from(
        "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: generated\n  context:\n",
    );
    for (key, value) in context.as_object().expect("an object") {
        yaml.push_str(&format!("    {key}: {value}\n"));
    }
    yaml.push_str(&format!(
        "  states:\n    start:\n      type: initial\n      transitions: [{{to: done}}]\n    done:\n      type: final\n      output:\n        r: {}\n",
        serde_json::to_string(template).expect("a string encodes")
    ));
    yaml
}

/// `Err` when the renderer itself broke: a contained panic, or an error without the field.
fn render(template: &str) -> Result<(), String> {
    let yaml = machine(template);
    let limits = limits();
    let machine = match Machine::from_yaml_within(&yaml, ".", &limits) {
        Ok(machine) => machine,
        Err(error) => {
            let message = error.to_string();
            return if message.contains("renderer failed inside") {
                Err(format!("compiling {template:?} panicked: {message}"))
            } else {
                Ok(())
            };
        }
    };
    let runtime = Runtime::builder().build();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match tokio.block_on(runtime.run(&machine, Default::default(), RunOptions::default())) {
        Ok(outcome) => {
            let bytes = outcome.output.to_string().len() as u64;
            if bytes > MAX_BYTES + 64 {
                return Err(format!("{template:?} wrote {bytes} bytes"));
            }
            Ok(())
        }
        Err(RunError::Failed { error, .. }) => {
            if error.message.contains("renderer failed inside") {
                Err(format!(
                    "rendering {template:?} panicked: {}",
                    error.message
                ))
            } else if !error.message.contains("output.r") {
                Err(format!(
                    "the error of {template:?} does not name the field: {}",
                    error.message
                ))
            } else {
                Ok(())
            }
        }
        Err(other) => Err(format!("{template:?} ended otherwise: {other}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "run by generated_templates_run_in_a_bounded_child_process, under prlimit"]
    fn generated_templates_render_or_fail_cleanly(template in template()) {
        if let Err(message) = render(&template) {
            prop_assert!(false, "{}", message);
        }
    }
}

#[test]
fn the_slices_that_panicked_render_as_in_python() {
    for (template, expected) in [
        ("{{ [][::-1] }}", json!([])),
        ("{{ ''[::-1] }}", json!("")),
        ("x{{ context.xs[::-1] }}", json!("x[]")),
        ("{{ [1, 2, 3][0:2:-1] }}", json!([])),
        ("{{ [1, 2, 3][10:0:-1] }}", json!([3, 2])),
        ("{{ [1, 2, 3][-10::-1] }}", json!([])),
    ] {
        let machine = Machine::from_yaml_within(&machine(template), ".", &limits())
            .unwrap_or_else(|e| panic!("{template}: {e}"));
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let outcome = tokio
            .block_on(Runtime::builder().build().run(
                &machine,
                Default::default(),
                RunOptions::default(),
            ))
            .unwrap_or_else(|e| panic!("{template}: {e}"));
        assert_eq!(outcome.output["r"], expected, "{template}");
    }
}
