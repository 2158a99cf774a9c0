use std::path::Path;

use serde_json::json;

use super::*;

fn machine(text: &str) -> Result<(MachineConfig, Vec<ConfigWarning>), ConfigError> {
    MachineConfig::parse(text, Path::new("m.yml"), Format::Yaml)
}

fn error(text: &str) -> String {
    match machine(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const MINIMAL: &str = "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  states:\n    start:\n      type: initial\n      transitions: [{to: done}]\n    done:\n      type: final\n";

#[test]
fn parses_a_minimal_machine() {
    let (config, warnings) = machine(MINIMAL).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.name(), "unnamed-machine");
    let names: Vec<_> = config.data.states.keys().collect();
    assert_eq!(names, ["start", "done"]);
    assert_eq!(config.data.states["start"].transitions[0].to, "done");
    assert!(config.data.states["done"].is_final());
}

#[test]
fn reads_every_state_shape() {
    let text = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: shapes
  context: {a: "{{ input.a }}"}
  agents:
    writer: ./writer.yml
    inline: {spec: flatagent, spec_version: "1.0.0", data: {model: fast, system: s, user: u}}
    typed: {type: smolagents, ref: pkg.agent, config: {x: 1}}
  machines:
    child: ./child.yml
    other: {path: ./other.yml}
    embedded: {spec: flatmachine, data: {states: {s: {type: final}}}}
  states:
    one:
      machine: [child, {name: other, input: {x: 1}}]
      mode: any
      timeout: 2.5
      on_error: {Timeout: two, default: two}
      transitions: [{condition: "context.a > 1", to: two}, {to: two}]
    two:
      foreach: "{{ context.items }}"
      as: it
      key: "{{ it.id }}"
      machine: child
      launch: child
      launch_input: {y: 2}
      on_error: one
      execution: {type: retry, backoffs: [1, 2], jitter: 0.2}
      transitions: [{to: end}]
    end:
      type: final
      output: {a: "{{ context.a }}"}
"#;
    let (config, warnings) = machine(text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let data = &config.data;
    assert_eq!(data.agents["writer"].type_name(), "flatagent");
    assert_eq!(data.agents["inline"].type_name(), "flatagent");
    assert_eq!(data.agents["typed"].type_name(), "smolagents");
    assert_eq!(
        data.machines["other"],
        MachineRef::Path("./other.yml".into())
    );
    assert!(matches!(data.machines["embedded"], MachineRef::Inline(_)));
    let one = &data.states["one"];
    assert_eq!(one.mode, Some(Mode::Any));
    assert_eq!(
        one.machine.as_ref().unwrap().names().collect::<Vec<_>>(),
        ["child", "other"]
    );
    assert!(matches!(one.on_error, Some(OnError::ByType(ref m)) if m["Timeout"] == "two"));
    let two = &data.states["two"];
    assert_eq!(two.as_var.as_deref(), Some("it"));
    assert_eq!(two.launch, Some(OneOrMany(vec!["child".into()])));
    assert_eq!(two.on_error, Some(OnError::State("one".into())));
    assert_eq!(
        two.execution.as_ref().unwrap().backoffs,
        Some(vec![1.0, 2.0])
    );
}

#[test]
fn null_sections_and_states_are_empty() {
    let text = "spec: flatmachine\ndata:\n  context:\n  agents:\n  states:\n    start:\n    end:\n      type: final\n";
    let (config, _) = machine(text).unwrap();
    assert!(config.data.context.is_empty());
    assert!(config.data.states["start"].transitions.is_empty());
    assert_eq!(config.spec_version, crate::SPEC_VERSION);
}

#[test]
fn merge_keys_apply() {
    let text = "spec: flatmachine\ndata:\n  context:\n    base: &base {a: 1, b: 2}\n    merged:\n      <<: *base\n      b: 3\n  states: {s: {type: final}}\n";
    let (config, _) = machine(text).unwrap();
    assert_eq!(config.data.context["merged"], json!({"a": 1, "b": 3}));
}

#[test]
fn reads_json_documents() {
    let text = r#"{"spec": "flatmachine", "data": {"states": {"s": {"type": "final"}}}}"#;
    let (config, _) = MachineConfig::parse(text, Path::new("m.json"), Format::Json).unwrap();
    assert!(config.data.states["s"].is_final());
}

#[test]
fn another_major_version_is_a_warning() {
    let text = MINIMAL.replace("\"1.0.0\"", "\"0.7.0\"");
    let (_, warnings) = machine(&text).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].to_string().contains("written for spec 0.7.0"));
    let text = MINIMAL.replace("\"1.0.0\"", "\"1.4.2\"");
    assert!(machine(&text).unwrap().1.is_empty());
}

#[test]
fn unknown_fields_are_warnings_with_suggestions() {
    let text = "spec: flatmachine\ndata:\n  stats: {}\n  states:\n    s:\n      type: final\n      transition: []\n";
    let (_, warnings) = machine(text).unwrap();
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(warnings.join("\n"), @r"
    m.yml: `data`: unknown field `stats` is ignored (did you mean `states`?)
    m.yml: `data.states.s`: unknown field `transition` is ignored (did you mean `transitions`?)
    ");
}

#[test]
fn later_fields_that_change_control_flow_are_refused() {
    let cases = [
        "spec: flatmachine\ndata:\n  states:\n    gate:\n      type: initial\n      wait_for: \"approval/{{ context.id }}\"\n      transitions: [{to: done}]\n    done: {type: final}\n",
        "spec: flatmachine\ndata:\n  states:\n    s: {type: final, hooks: audit}\n",
        "spec: flatmachine\ndata:\n  lifecycle_hooks: [audit]\n  states:\n    s: {type: final}\n",
    ];
    let messages: Vec<String> = cases
        .iter()
        .map(|text| match machine(text) {
            Err(error @ ConfigError::Unsupported { .. }) => error.to_string(),
            other => panic!("expected Unsupported, got {other:?}"),
        })
        .collect();
    insta::assert_snapshot!(messages.join("\n"));
}

#[test]
fn error_messages() {
    let cases = [
        ("malformed YAML", "spec: flatmachine\ndata: [unclosed\n"),
        (
            "tab indentation",
            "spec: flatmachine\ndata:\n\tstates: {}\n",
        ),
        ("not a mapping", "- just\n- a list\n"),
        ("wrong spec", "spec: flatagent\ndata: {}\n"),
        ("no spec", "data: {states: {s: {}}}\n"),
        ("no data", "spec: flatmachine\nspec_version: \"1.0.0\"\n"),
        (
            "bad spec_version",
            "spec: flatmachine\nspec_version: banana\ndata: {states: {s: {}}}\n",
        ),
        ("no states", "spec: flatmachine\ndata: {name: x}\n"),
        ("empty states", "spec: flatmachine\ndata: {states: {}}\n"),
        (
            "transition without to",
            "spec: flatmachine\ndata:\n  states:\n    s:\n      transitions: [{condition: 'true'}]\n",
        ),
        (
            "bad state type",
            "spec: flatmachine\ndata: {states: {s: {type: start}}}\n",
        ),
        (
            "bad mode",
            "spec: flatmachine\ndata: {states: {s: {mode: all}}}\n",
        ),
        (
            "bad on_error",
            "spec: flatmachine\ndata: {states: {s: {on_error: [a]}}}\n",
        ),
        (
            "bad machine list",
            "spec: flatmachine\ndata: {states: {s: {machine: [1]}}}\n",
        ),
        (
            "bad agent ref",
            "spec: flatmachine\ndata: {agents: {a: {model: x}}, states: {s: {}}}\n",
        ),
        (
            "input not a mapping",
            "spec: flatmachine\ndata: {states: {s: {input: [1, 2]}}}\n",
        ),
        (
            "timeout not a number",
            "spec: flatmachine\ndata: {states: {s: {timeout: soon}}}\n",
        ),
        (
            "metadata not a mapping",
            "spec: flatmachine\nmetadata: 3\ndata: {states: {s: {}}}\n",
        ),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|(name, text)| format!("{name}:\n  {}", error(text)))
        .collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

#[test]
fn agent_documents_parse() {
    let text = "spec: flatagent\nspec_version: \"1.0.0\"\ndata:\n  name: critic\n  model: {profile: fast, temperature: 0.2}\n  system: s\n  user: 'Q: {{ input.q }}'\n  output:\n    score: {type: int, description: d}\n";
    let (agent, _) = AgentConfig::parse(text, Path::new("a.yml"), Format::Yaml).unwrap();
    match agent.data.model {
        Some(ModelSpec::Config(model)) => {
            assert_eq!(model.profile.as_deref(), Some("fast"));
            assert_eq!(model.temperature, Some(0.2));
        }
        other => panic!("unexpected model {other:?}"),
    }
    assert_eq!(agent.data.output.unwrap()["score"].kind, "int");
}

#[test]
fn profiles_check_their_default() {
    let text = "spec: flatprofiles\ndata:\n  model_profiles:\n    fast: {provider: openai, name: gpt-4o-mini}\n  default: fast\n";
    let (profiles, _) = ProfilesConfig::parse(text, Path::new("p.yml"), Format::Yaml).unwrap();
    assert_eq!(
        profiles.data.model_profiles["fast"].name.as_deref(),
        Some("gpt-4o-mini")
    );
    let text = text.replace("default: fast", "override: slow");
    let err = ProfilesConfig::parse(&text, Path::new("p.yml"), Format::Yaml).unwrap_err();
    assert_eq!(
        err.to_string(),
        "p.yml: `data.override`: names profile `slow`, which is not under `model_profiles`"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = MachineConfig::parse(&text, Path::new("x.yml"), Format::Yaml);
            let _ = MachineConfig::parse(&text, Path::new("x.json"), Format::Json);
        }

        #[test]
        fn parsing_yaml_like_text_never_panics(
            lines in proptest::collection::vec("( {0,4})(spec|data|states|[a-z]{1,5})(: ?)(\\[|\\{|flatmachine|1|-)?", 0..12)
        ) {
            let _ = MachineConfig::parse(&lines.join("\n"), Path::new("x.yml"), Format::Yaml);
        }
    }
}
