//! Careless and hostile configs: each runs the CLI as a child process under 4 GiB of address
//! space and a 60 s kill, and must end with exit 1 or 2 and one clear line — never a panic
//! (101), an allocator abort (134) or a kill (137). The limits are set on the child by
//! `prlimit` and `timeout`, never on this test process.

use std::path::Path;
use std::process::{Command, Output};

/// A machine document around `states` (and an optional `machines:` map).
fn machine(name: &str, machines: &[(&str, &str)], states: &str) -> String {
    let mut text = format!("spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: {name}\n");
    if !machines.is_empty() {
        text.push_str("  machines:\n");
        for (key, path) in machines {
            text.push_str(&format!("    {key}: {path}\n"));
        }
    }
    text.push_str("  states:\n");
    text.push_str(states);
    text
}

const START: &str = "    start:\n      type: initial\n      transitions:\n        - to: go\n";

/// States that run `child` once and finish with its output.
fn calls(child: &str) -> String {
    format!(
        "{START}    go:\n      machine: {child}\n      output_to_context:\n        r: \"{{{{ output }}}}\"\n      transitions:\n        - to: done\n    done:\n      type: final\n      output:\n        r: \"{{{{ context.r }}}}\"\n"
    )
}

/// States whose final output is the template `output` (in single quotes).
fn renders(output: &str) -> String {
    format!(
        "{START}    go:\n      transitions:\n        - to: done\n    done:\n      type: final\n      output:\n        r: '{output}'\n"
    )
}

/// Runs the release-or-debug CLI built for this test in `dir`, bounded.
fn bounded(dir: &Path, args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--as={}", 4u64 << 30))
        .arg("--")
        .args(["timeout", "-s", "KILL", "60"])
        .arg(env!("CARGO_BIN_EXE_flatmachines"))
        .args(args)
        .current_dir(dir)
        .env_remove("FLATMACHINES_LOG")
        .env_remove("RUST_LOG")
        .env_remove("FLATMACHINES_STORE")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("prlimit and timeout run (util-linux and coreutils)")
}

/// Asserts that `output` is a clean refusal: exit 1 or 2, an error line, no panic or
/// backtrace. Returns what it printed.
fn refused(case: &str, output: &Output) -> String {
    let err = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code();
    assert!(
        matches!(code, Some(1 | 2)),
        "{case}: exit {code:?} (signal or panic), stderr: {}",
        err.chars().take(2000).collect::<String>()
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace") && !err.contains("overflowed"),
        "{case}: {err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") || l.contains(": error: "))
            || String::from_utf8_lossy(&output.stdout).contains(": error: "),
        "{case}: no error line in {err}"
    );
    // `validate` reports on stdout, the others on stderr: the assertions read both.
    format!("{}{err}", String::from_utf8_lossy(&output.stdout))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write a case file");
}

#[test]
fn a_machine_that_runs_itself_stops_at_the_depth_limit_naming_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "self.yml",
        &machine("self", &[("me", "./self.yml")], &calls("me")),
    );
    let line = refused("self", &bounded(dir.path(), &["run", "self.yml"]));
    assert!(line.contains("MachineDepthLimit"), "{line}");
    assert!(line.contains("self -> self"), "{line}");
    assert!(line.contains("machine_depth"), "{line}");
    // The same through a file store writes a bounded number of executions, not thousands.
    let store = format!("file://{}", dir.path().join("store").display());
    refused(
        "self, file store",
        &bounded(dir.path(), &["run", "self.yml", "--store", &store]),
    );
    let executions = std::fs::read_dir(dir.path().join("store")).map_or(0, |d| d.count());
    assert!(executions <= 40, "{executions} execution directories");
}

#[test]
fn two_machines_that_run_each_other_stop_at_the_depth_limit() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yml",
        &machine("a", &[("b", "./b.yml")], &calls("b")),
    );
    write(
        dir.path(),
        "b.yml",
        &machine("b", &[("a", "./a.yml")], &calls("a")),
    );
    let line = refused("a <-> b", &bounded(dir.path(), &["run", "a.yml"]));
    assert!(line.contains("a -> b -> a"), "{line}");
    // The depth is a setting and a flag.
    let line = refused(
        "a <-> b, depth 3",
        &bounded(dir.path(), &["run", "a.yml", "--limit", "machine_depth=3"]),
    );
    assert!(line.contains("machine_depth` is 3"), "{line}");
}

#[test]
fn a_recursion_through_launch_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let states = format!(
        "{START}    go:\n      launch: me\n      transitions:\n        - to: done\n    done:\n      type: final\n      output:\n        r: 1\n"
    );
    write(
        dir.path(),
        "launch.yml",
        &machine("launcher", &[("me", "./launch.yml")], &states),
    );
    let line = refused("launch", &bounded(dir.path(), &["run", "launch.yml"]));
    assert!(line.contains("MachineDepthLimit"), "{line}");
}

#[test]
fn a_thirty_thousand_term_template_is_refused_by_run_validate_and_graph() {
    let dir = tempfile::tempdir().unwrap();
    let terms = vec!["1"; 30_000].join(" + ");
    write(
        dir.path(),
        "long.yml",
        &machine("long", &[], &renders(&format!("{{{{ {terms} }}}}"))),
    );
    for command in ["run", "validate", "graph"] {
        let line = refused(command, &bounded(dir.path(), &[command, "long.yml"]));
        assert!(line.contains("nesting"), "{command}: {line}");
    }
    let chain = vec!["not"; 30_000].join(" ");
    write(
        dir.path(),
        "nots.yml",
        &machine("nots", &[], &renders(&format!("{{{{ {chain} true }}}}"))),
    );
    refused("not chain", &bounded(dir.path(), &["run", "nots.yml"]));
}

#[test]
fn deeply_nested_yaml_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "deep.yml",
        &format!("x: {}\n", "[".repeat(160_000)),
    );
    let started = std::time::Instant::now();
    refused("deep yaml", &bounded(dir.path(), &["run", "deep.yml"]));
    refused("deep yaml", &bounded(dir.path(), &["validate", "deep.yml"]));
    // Quadratic parsing took about a minute here; a bounded one is immediate. Generous, as it
    // guards against a return of the quadratic case, not a speed.
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    write(dir.path(), "deep.json", &"[".repeat(160_000));
    refused("deep json", &bounded(dir.path(), &["run", "deep.json"]));
}

#[test]
fn an_aliased_large_scalar_is_refused_by_its_expanded_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = "a".repeat(10 << 20);
    let aliases = vec!["*a"; 100].join(", ");
    write(
        dir.path(),
        "alias.yml",
        &format!("spec: flatmachine\nspec_version: \"1.0.0\"\nx: &a \"{big}\"\ny: [{aliases}]\n"),
    );
    let line = refused("alias", &bounded(dir.path(), &["run", "alias.yml"]));
    assert!(line.contains("config_text_bytes"), "{line}");
}

#[test]
fn templates_that_grow_or_loop_without_end_run_out_of_fuel() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "concat.yml",
        &machine(
            "concat",
            &[],
            &renders(
                "{% set ns = namespace(s=\"x\") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
            ),
        ),
    );
    let line = refused("concat", &bounded(dir.path(), &["run", "concat.yml"]));
    assert!(line.contains("template_fuel"), "{line}");
    write(
        dir.path(),
        "ranges.yml",
        &machine(
            "ranges",
            &[],
            &renders(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
            ),
        ),
    );
    let line = refused("ranges", &bounded(dir.path(), &["run", "ranges.yml"]));
    assert!(line.contains("template_fuel"), "{line}");
}

#[test]
fn devices_as_configs_or_inputs_are_read_with_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "zero.yml",
        &machine("zero", &[("z", "/dev/zero")], &calls("z")),
    );
    let line = refused(
        "/dev/zero child",
        &bounded(dir.path(), &["run", "zero.yml"]),
    );
    assert!(line.contains("config_bytes"), "{line}");
    refused(
        "/dev/zero validate",
        &bounded(dir.path(), &["validate", "zero.yml"]),
    );
    write(dir.path(), "ok.yml", &machine("ok", &[], &renders("x")));
    let line = refused(
        "/dev/zero input",
        &bounded(dir.path(), &["run", "ok.yml", "--input-file", "/dev/zero"]),
    );
    assert!(line.contains("input_bytes"), "{line}");
}

#[test]
fn a_foreach_fan_out_past_the_tree_bound_fails_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "leaf.yml", &machine("leaf", &[], &renders("1")));
    let fan = format!(
        "{START}    go:\n      foreach: \"{{{{ range(1000) | list }}}}\"\n      as: it\n      machine: c\n      output_to_context:\n        r: \"{{{{ output }}}}\"\n      transitions:\n        - to: done\n    done:\n      type: final\n      output:\n        n: \"{{{{ context.r | length }}}}\"\n"
    );
    write(
        dir.path(),
        "fan.yml",
        &machine("fan", &[("c", "./leaf.yml")], &fan),
    );
    let line = refused(
        "fan-out",
        &bounded(
            dir.path(),
            &["run", "fan.yml", "--limit", "tree_machines=999"],
        ),
    );
    assert!(line.contains("MachineTreeLimit"), "{line}");
    assert!(line.contains("tree_machines"), "{line}");
}

/// `foreach` nested five deep over 1 000 items would start 10^15 machines: with the default
/// bounds the run reserves each fan-out before starting it, stops the siblings once one level
/// cannot fit, and fails within the tree bound.
#[test]
fn foreach_nested_five_deep_over_a_thousand_items_fails_on_the_tree_bound() {
    let dir = tempfile::tempdir().unwrap();
    let fan = format!(
        "{START}    go:\n      foreach: \"{{{{ range(1000) | list }}}}\"\n      as: it\n      machine: c\n      output_to_context:\n        r: \"{{{{ output }}}}\"\n      transitions:\n        - to: done\n    done:\n      type: final\n      output:\n        n: \"{{{{ context.r | length }}}}\"\n"
    );
    write(dir.path(), "l5.yml", &machine("l5", &[], &renders("1")));
    for level in 1..5 {
        let child = format!("./l{}.yml", level + 1);
        write(
            dir.path(),
            &format!("l{level}.yml"),
            &machine(&format!("l{level}"), &[("c", &child)], &fan),
        );
    }
    let line = refused(
        "foreach five deep",
        &bounded(dir.path(), &["run", "l1.yml"]),
    );
    assert!(line.contains("MachineTreeLimit"), "{line}");
    assert!(line.contains("tree_machines"), "{line}");
}
