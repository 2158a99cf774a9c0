//! `examples/writer-critic` loads and prepares with the adapter, and runs its loop against a
//! local mock server.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;

use common::{Dir, Sequence, ok_chat, server};
use flatmachines_agents::{FlatAgentAdapter, KeySource};
use flatmachines_core::{AdapterContext, AgentRef};
use flatmachines_engine::{Machine, RunOptions, Runtime};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/writer-critic")
}

fn machine() -> Machine {
    Machine::from_file(example().join("machine.yml")).unwrap_or_else(|e| panic!("{e}"))
}

fn runtime(keys: KeySource, profiles: Option<PathBuf>) -> Runtime {
    let mut builder = Runtime::builder().agent_adapter(Arc::new(FlatAgentAdapter::with_keys(keys)));
    if let Some(profiles) = profiles {
        builder = builder.profiles_file(profiles);
    }
    builder.build()
}

/// The shipped profiles.yml with another `default`.
fn profiles_with_default(dir: &Dir, default: &str, extra_profile: &str) -> PathBuf {
    let shipped = std::fs::read_to_string(example().join("profiles.yml")).unwrap();
    let text = shipped
        .replace("  default: openai", &format!("  default: {default}"))
        .replace(
            "  model_profiles:\n",
            &format!("  model_profiles:\n{extra_profile}"),
        );
    assert!(text.contains(&format!("default: {default}")));
    dir.write("profiles.yml", &text)
}

#[test]
fn the_example_prepares_for_openai_with_a_key() {
    let keys = KeySource::from_fn(|name| (name == "OPENAI_API_KEY").then(|| "sk-x".to_owned()));
    runtime(keys.clone(), None)
        .prepare(&machine())
        .unwrap_or_else(|e| panic!("{e}"));
    let context = AdapterContext {
        config_dir: example(),
        ..AdapterContext::default()
    };
    let adapter = FlatAgentAdapter::with_keys(keys);
    let writer = adapter
        .build("writer", &AgentRef::Path("./writer.yml".into()), &context)
        .unwrap();
    let settings = writer.settings();
    assert_eq!(
        settings.endpoint,
        "https://api.openai.com/v1/chat/completions"
    );
    assert_eq!(
        (settings.model.as_str(), settings.temperature),
        ("gpt-4o-mini", 0.9)
    );
    let critic = adapter
        .build("critic", &AgentRef::Path("./critic.yml".into()), &context)
        .unwrap();
    assert_eq!(critic.settings().temperature, 0.2);
}

#[test]
fn without_the_key_preparing_says_which_variable_to_set() {
    let error = runtime(KeySource::from_fn(|_| None), None)
        .prepare(&machine())
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("`data.agents.writer`") || text.contains("`data.agents.critic`"),
        "{text}"
    );
    assert!(text.contains("OPENAI_API_KEY"), "{text}");
}

#[test]
fn the_ollama_and_compatible_profiles_need_no_key() {
    for default in ["ollama", "compatible"] {
        let dir = Dir::new();
        let profiles = profiles_with_default(&dir, default, "");
        runtime(KeySource::from_fn(|_| None), Some(profiles))
            .prepare(&machine())
            .unwrap_or_else(|e| panic!("{default}: {e}"));
    }
}

#[tokio::test]
async fn the_loop_runs_until_the_critic_is_satisfied() {
    let (answers, calls) = Sequence::new(vec![
        ok_chat(r#"{"tagline": "Power from the sun"}"#),
        ok_chat(r#"{"score": 5, "feedback": "Mention hiking."}"#),
        ok_chat("```json\n{\"tagline\": \"Hike on, charged by the sun\"}\n```"),
        ok_chat(r#"{"score": "9", "feedback": "Good."}"#),
    ]);
    let mock = server("/chat/completions", answers).await;
    let dir = Dir::new();
    let mock_profile = format!(
        "    mock: {{provider: openai, name: gpt-test, base_url: '{}', api_key_env: EXAMPLE_TEST_KEY}}\n",
        mock.uri()
    );
    let profiles = profiles_with_default(&dir, "mock", &mock_profile);
    let outcome = runtime(common::keys(), Some(profiles))
        .run(
            &machine(),
            common::object(json!({"product": "a solar backpack"})),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome.output,
        json!({"tagline": "Hike on, charged by the sun", "score": 9, "rounds": 2, "feedback": "Good."})
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(outcome.total_api_calls, 4);
    let sent = common::bodies(&mock).await;
    let second_write = sent[2]["messages"][1]["content"].as_str().unwrap();
    assert!(
        second_write.contains("Your previous tagline: Power from the sun"),
        "{second_write}"
    );
    assert!(
        second_write.contains("The critic said: Mention hiking."),
        "{second_write}"
    );
    assert!(
        second_write.ends_with("The tagline must be at most 12 words."),
        "{second_write}"
    );
    assert_eq!(sent[0]["temperature"], json!(0.9));
    assert_eq!(sent[1]["temperature"], json!(0.2));
}
