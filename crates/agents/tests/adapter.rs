//! The `flatagent` adapter: agent references, profile discovery, and the errors a machine gets
//! at prepare time — before anything runs.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use common::{Dir, SECRET, agent_yaml, object, ok_chat, profiles, server};
use flatmachines_agents::{FlatAgent, FlatAgentAdapter, KeySource};
use flatmachines_core::{AdapterContext, AgentAdapter, AgentExecutor, AgentRef, JsonMap};
use flatmachines_engine::{Machine, Runtime};

const PLAIN: &str = "  user: \"Hello {{ input.name }}\"\n";

fn inline_document() -> serde_json::Value {
    json!({
        "spec": "flatagent", "spec_version": "1.0.0",
        "data": {"name": "inline-one", "model": {"provider": "ollama", "name": "llama3.2"}, "user": "hi"}
    })
}

#[test]
fn every_form_of_agent_reference_builds() {
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles("provider: groq, name: llama-3.1-8b-instant"),
    );
    dir.write("agents/a.yml", &agent_yaml(PLAIN));
    let adapter = common::adapter();
    let context = dir.context();
    let path = adapter
        .build("a", &AgentRef::Path("agents/a.yml".into()), &context)
        .unwrap();
    assert_eq!(path.settings().model, "llama-3.1-8b-instant");
    assert_eq!(path.name(), "a");
    let absolute = dir.path().join("agents/a.yml").display().to_string();
    adapter
        .build("a", &AgentRef::Path(absolute), &context)
        .unwrap();
    let inline = adapter
        .build(
            "b",
            &AgentRef::Inline(Box::new(inline_document())),
            &context,
        )
        .unwrap();
    assert_eq!(inline.name(), "inline-one");
    assert_eq!(
        inline.settings().endpoint,
        "http://localhost:11434/v1/chat/completions"
    );
    let typed_ref = AgentRef::Typed {
        kind: "flatagent".into(),
        reference: Some("agents/a.yml".into()),
        config: None,
    };
    adapter.build("c", &typed_ref, &context).unwrap();
    let typed_config = AgentRef::Typed {
        kind: "flatagent".into(),
        reference: None,
        config: Some(object(inline_document())),
    };
    let executor = adapter
        .create_executor("d", &typed_config, &context)
        .unwrap();
    assert!(format!("{executor:?}").contains("llama3.2"));
    assert_eq!(adapter.type_name(), "flatagent");
}

#[test]
fn typed_references_need_the_right_kind_and_a_target() {
    let dir = Dir::new();
    let adapter = common::adapter();
    let other = AgentRef::Typed {
        kind: "smolagents".into(),
        reference: Some("x.py".into()),
        config: None,
    };
    let error = adapter.build("x", &other, &dir.context()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "agent `x`: the flatagent adapter cannot serve agents of type `smolagents`"
    );
    let empty = AgentRef::Typed {
        kind: "flatagent".into(),
        reference: None,
        config: None,
    };
    let error = adapter.build("y", &empty, &dir.context()).unwrap_err();
    assert!(error.to_string().contains("needs `ref`"), "{error}");
}

/// Prepares a machine whose one agent is `./agent.yml` on a strict runtime (a missing file is
/// otherwise met when the state is reached), returning the error text with the temp directory
/// replaced by `[DIR]`.
fn prepare_error(dir: &Dir, adapter: FlatAgentAdapter) -> String {
    let file = dir.write(
        "machine.yml",
        "spec: flatmachine\ndata:\n  name: m\n  agents: {writer: ./agent.yml}\n  states:\n    s: {type: initial, agent: writer, transitions: [{to: done}]}\n    done: {type: final}\n",
    );
    let machine = Machine::from_file(&file).unwrap();
    let runtime = Runtime::builder()
        .agent_adapter(Arc::new(adapter))
        .strict_references(true)
        .build();
    let error = runtime.prepare(&machine).unwrap_err();
    let text = error.to_string();
    text.replace(&dir.path().display().to_string(), "[DIR]")
}

#[test]
fn unusable_agents_fail_at_prepare_time_naming_agent_and_file() {
    let cases: Vec<(&str, Option<String>, Option<String>)> = vec![
        ("missing file", None, None),
        ("bad YAML", Some("spec: flatagent\ndata: [unclosed\n".into()), None),
        ("wrong spec", Some("spec: flatmachine\ndata: {}\n".into()), None),
        ("no model", Some(agent_yaml(PLAIN)), None),
        (
            "unknown profile",
            Some(agent_yaml("  model: fastest\n  user: hi\n")),
            Some("spec: flatprofiles\ndata:\n  model_profiles:\n    fast: {provider: groq, name: x}\n".into()),
        ),
        (
            "unknown provider",
            Some(agent_yaml("  model: {provider: watsonx, name: granite}\n")),
            None,
        ),
        (
            "no provider",
            Some(agent_yaml("  model: {name: llama3}\n")),
            None,
        ),
        (
            "missing key",
            Some(agent_yaml(
                "  model: {provider: openai, name: gpt-4o-mini, api_key_env: FLATAGENTS_TEST_UNSET_VARIABLE_42}\n",
            )),
            None,
        ),
        (
            "bad template",
            Some(agent_yaml("  model: {provider: ollama, name: m}\n  user: \"{{ input.x \"\n")),
            None,
        ),
        (
            "bad extension field",
            Some(agent_yaml("  model: {provider: ollama, name: m, timeout: soon}\n")),
            None,
        ),
        (
            "bad profiles file",
            Some(agent_yaml(PLAIN)),
            Some("spec: flatprofiles\ndata: {model_profiles: {a: {temperature: hot}}}\n".into()),
        ),
    ];
    let mut report = String::new();
    for (case, agent, profiles) in cases {
        let dir = Dir::new();
        if let Some(agent) = agent {
            dir.write("agent.yml", &agent);
        }
        if let Some(profiles) = profiles {
            dir.write("profiles.yml", &profiles);
        }
        // The process environment: the variable named above is never set.
        let message = prepare_error(&dir, FlatAgentAdapter::new());
        report.push_str(&format!("{case}:\n  {message}\n"));
    }
    insta::assert_snapshot!("prepare_errors", report);
}

#[test]
fn profiles_are_found_next_to_the_agent_then_the_machine_then_the_root() {
    let dir = Dir::new();
    let named = |model: &str| profiles(&format!("provider: ollama, name: {model}"));
    dir.write("root/profiles.yml", &named("from-root"));
    dir.write("root/child/agents/a.yml", &agent_yaml(PLAIN));
    let adapter = common::adapter();
    let context = AdapterContext {
        config_dir: dir.path().join("root/child"),
        root_config_dir: Some(dir.path().join("root")),
        ..AdapterContext::default()
    };
    let model = |adapter: &FlatAgentAdapter, context: &AdapterContext| {
        adapter
            .build("a", &AgentRef::Path("agents/a.yml".into()), context)
            .map(|a| a.settings().model.clone())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(model(&adapter, &context), "from-root");
    dir.write("root/child/profiles.yml", &named("from-machine"));
    assert_eq!(model(&adapter, &context), "from-machine");
    dir.write("root/child/agents/profiles.yml", &named("from-agent"));
    assert_eq!(model(&adapter, &context), "from-agent");
    // An explicit profiles file (the runtime's `profiles_file`, the CLI's `--profiles`) wins.
    let explicit = dir.write("elsewhere.yml", &named("explicit"));
    let overridden = AdapterContext {
        profiles_file: Some(explicit),
        ..context.clone()
    };
    assert_eq!(model(&adapter, &overridden), "explicit");
    let missing = AdapterContext {
        profiles_file: Some(PathBuf::from("/nonexistent/profiles.yml")),
        ..context
    };
    let error = adapter
        .build("a", &AgentRef::Path("agents/a.yml".into()), &missing)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot read `/nonexistent/profiles.yml`"),
        "{error}"
    );
}

#[test]
fn inline_agents_use_the_machine_profiles() {
    let dir = Dir::new();
    dir.write("profiles.yml", &profiles("provider: vllm, name: served"));
    let document = json!({"spec": "flatagent", "data": {"model": "mock", "user": "hi"}});
    let agent = common::adapter()
        .build("i", &AgentRef::Inline(Box::new(document)), &dir.context())
        .unwrap();
    assert_eq!(agent.settings().model, "served");
}

#[tokio::test]
async fn keys_come_from_the_process_environment_by_default() {
    // Cargo sets CARGO_PKG_NAME for test processes; it stands in for a key variable, since
    // tests cannot set variables without `unsafe`.
    let expected = std::env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME");
    let mock = server("/chat/completions", ok_chat("hi")).await;
    let dir = Dir::new();
    dir.write(
        "a.yml",
        &agent_yaml(&format!(
            "  model: {{provider: openai, name: m, base_url: '{}', api_key_env: CARGO_PKG_NAME}}\n  user: hi\n",
            mock.uri()
        )),
    );
    let agent = FlatAgent::from_file(&dir.path().join("a.yml"), &KeySource::environment()).unwrap();
    agent
        .execute(&JsonMap::new(), &JsonMap::new())
        .await
        .unwrap();
    let headers = &common::headers(&mock).await[0];
    assert!(headers.contains(&("authorization".to_owned(), format!("Bearer {expected}"))));
}

#[test]
fn nothing_prints_the_key() {
    let dir = Dir::new();
    dir.write(
        "a.yml",
        &agent_yaml("  model: {provider: anthropic, name: claude-x, api_key_env: ANTHROPIC_KEY}\n"),
    );
    let adapter = common::adapter();
    let agent = adapter
        .build("a", &AgentRef::Path("a.yml".into()), &dir.context())
        .unwrap();
    let printed = format!("{adapter:?} {agent:?} {:?}", agent.settings());
    assert!(!printed.contains(SECRET), "{printed}");
    assert!(printed.contains("ApiKey([redacted])"), "{printed}");
    let body = agent.request_body(&JsonMap::new()).unwrap();
    assert!(!body.to_string().contains(SECRET));
}
