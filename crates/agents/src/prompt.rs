//! Prompts: the agent's `system` and `user` templates, compiled once per agent and rendered
//! per call with `input`, `model`, `tools` and `tools_prompt`.

use std::io;

use minijinja::{
    AutoEscape, Environment, Error as MjError, ErrorKind, Output, State, Value as MjValue,
};
use serde_json::Value;

use flatmachines_core::llm::Message;
use flatmachines_core::{AgentError, JsonMap, ToolInfo};

use crate::error::error_types;

/// The reference's system prompt for agents that give none.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// An agent's compiled prompts.
#[derive(Debug)]
pub(crate) struct Prompt {
    env: Environment<'static>,
    suffix: String,
    json_instruction: Option<String>,
    model: MjValue,
}

impl Prompt {
    /// Compiles the templates. The error names the field (`system`, `user`) and the problem.
    pub(crate) fn new(
        system: Option<&str>,
        user: Option<&str>,
        instruction_suffix: Option<&str>,
        tool_prompt: Option<&str>,
        json_instruction: Option<String>,
        model_view: &JsonMap,
    ) -> Result<Prompt, (&'static str, String)> {
        let mut env = Environment::new();
        // Prompts are plain text: nothing is HTML-escaped.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_formatter(format_value);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        for (name, source) in [
            ("system", system.unwrap_or(DEFAULT_SYSTEM_PROMPT)),
            ("user", user.unwrap_or("")),
            ("mcp.tool_prompt", tool_prompt.unwrap_or("")),
        ] {
            env.add_template_owned(name, source.to_owned())
                .map_err(|e| (name, e.to_string()))?;
        }
        Ok(Prompt {
            env,
            suffix: instruction_suffix.unwrap_or("").to_owned(),
            json_instruction,
            model: MjValue::from_serialize(model_view),
        })
    }

    /// The messages of one call: system, any `messages` history from the input, then user.
    ///
    /// As in the reference, an input key `messages` holding a list of `{role, content}`
    /// objects is conversation history rather than a template variable, and the user prompt is
    /// then sent only when other input remains.
    ///
    /// `tools` are the tools offered on this call. The templates see them as `tools`, each
    /// with `name`, `description`, `inputSchema` and `server` (and the reference's `_server`
    /// and `_qualified`, `server:name`), and as `tools_prompt`: `mcp.tool_prompt` rendered
    /// with `tools` alone, or `""` when there are no tools.
    pub(crate) fn render(
        &self,
        agent: &str,
        input: &JsonMap,
        tools: &[ToolInfo],
    ) -> Result<Vec<Message>, AgentError> {
        let (history, variables) = split_history(agent, input)?;
        let tools: Vec<MjValue> = tools.iter().map(tool_view).collect();
        let fail = |name: &str, e: &MjError| {
            AgentError::new(format!(
                "agent `{agent}`: template `data.{name}`: {}",
                describe(e)
            ))
            .with_type(error_types::TEMPLATE)
        };
        let tools_prompt = if tools.is_empty() {
            String::new()
        } else {
            self.env
                .get_template("mcp.tool_prompt")
                .and_then(|t| t.render(minijinja::context! { tools => tools.clone() }))
                .map_err(|e| fail("mcp.tool_prompt", &e))?
        };
        let context = minijinja::context! {
            input => MjValue::from_serialize(&variables),
            model => self.model.clone(),
            tools => tools,
            tools_prompt => tools_prompt,
        };
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&context))
                .map_err(|e| fail(name, &e))
        };
        let mut system = render("system")?;
        if let Some(instruction) = &self.json_instruction {
            if !system.trim().is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(instruction);
        }
        let mut messages = vec![message("system", system)];
        let has_history = !history.is_empty();
        messages.extend(history);
        if !has_history || !variables.is_empty() {
            let mut user = render("user")?;
            if !self.suffix.is_empty() {
                user.push_str("\n\n");
                user.push_str(&self.suffix);
            }
            messages.push(message("user", user));
        }
        Ok(messages)
    }
}

/// A tool as templates see it.
fn tool_view(tool: &ToolInfo) -> MjValue {
    let server = tool.server.as_deref().unwrap_or("");
    let qualified = if server.is_empty() {
        tool.name.clone()
    } else {
        format!("{server}:{}", tool.name)
    };
    MjValue::from_serialize(serde_json::json!({
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "server": server,
        "_server": server,
        "_qualified": qualified,
    }))
}

fn message(role: &str, content: String) -> Message {
    Message {
        role: role.to_owned(),
        content,
        tool_call_id: None,
        tool_calls: None,
    }
}

/// Splits a `messages` history off the input, when the input has one.
fn split_history(agent: &str, input: &JsonMap) -> Result<(Vec<Message>, JsonMap), AgentError> {
    let Some(Value::Array(items)) = input.get("messages") else {
        return Ok((Vec::new(), input.clone()));
    };
    let looks_like_history = !items.is_empty()
        && items.iter().all(|item| {
            item.get("role").is_some_and(Value::is_string)
                && item.get("content").is_some_and(Value::is_string)
        });
    if !looks_like_history {
        return Ok((Vec::new(), input.clone()));
    }
    let history = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value::<Message>(item.clone()).map_err(|e| {
                AgentError::new(format!(
                    "agent `{agent}`: input `messages[{index}]` is not a chat message ({e})"
                ))
                .with_type(error_types::INVALID_VALUE)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut variables = input.clone();
    variables.remove("messages");
    Ok((history, variables))
}

/// Prints values the way the engine's templates do: lists and mappings as JSON (with Python's
/// `", "` / `": "` separators), booleans as `true`/`false`, none as `null`, undefined as "".
fn format_value(out: &mut Output, state: &State, value: &MjValue) -> Result<(), MjError> {
    use minijinja::value::ValueKind;
    let text = match value.kind() {
        ValueKind::Undefined => return Ok(()),
        ValueKind::None => "null".to_owned(),
        ValueKind::Bool => if value.is_true() { "true" } else { "false" }.to_owned(),
        ValueKind::Seq | ValueKind::Map => {
            let json = serde_json::to_value(value)
                .map_err(|e| MjError::new(ErrorKind::BadSerialization, e.to_string()))?;
            python_json(&json)
        }
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(&text)
        .map_err(|e| MjError::new(ErrorKind::WriteFailure, e.to_string()))
}

/// JSON with Python's `json.dumps` separators.
pub(crate) fn python_json(value: &Value) -> String {
    struct Spaced;
    impl serde_json::ser::Formatter for Spaced {
        fn begin_array_value<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            if first { Ok(()) } else { w.write_all(b", ") }
        }
        fn begin_object_key<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            if first { Ok(()) } else { w.write_all(b", ") }
        }
        fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            w.write_all(b": ")
        }
    }
    let mut bytes = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, Spaced);
    match serde::Serialize::serialize(value, &mut serializer) {
        Ok(()) => String::from_utf8(bytes).unwrap_or_default(),
        Err(_) => value.to_string(),
    }
}

/// A one-line description of a minijinja error, with its line.
fn describe(error: &MjError) -> String {
    let mut text = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> JsonMap {
        match value {
            Value::Object(map) => map,
            _ => JsonMap::new(),
        }
    }

    fn prompt(system: Option<&str>, user: &str, suffix: Option<&str>) -> Prompt {
        let model = object(json!({"name": "openai/gpt-4o", "temperature": 0.7}));
        Prompt::new(system, Some(user), suffix, None, None, &model).unwrap()
    }

    fn texts(messages: &[Message]) -> Vec<(String, String)> {
        messages
            .iter()
            .map(|m| (m.role.clone(), m.content.clone()))
            .collect()
    }

    #[test]
    fn templates_see_input_and_model() {
        let p = prompt(
            Some("You write for {{ model.name }} at {{ model.temperature }}."),
            "Topic: {{ input.topic | upper }}; tags {{ input.tags }}; {{ input.flag }} {{ input.none }}{{ input.missing }}; {{ input.topic.title() }}",
            Some("Be brief."),
        );
        let messages = p
            .render(
                "w",
                &object(json!({"topic": "rust", "tags": ["a", "b"], "flag": true, "none": null})),
                &[],
            )
            .unwrap();
        assert_eq!(
            texts(&messages),
            vec![
                (
                    "system".into(),
                    "You write for openai/gpt-4o at 0.7.".into()
                ),
                (
                    "user".into(),
                    "Topic: RUST; tags [\"a\", \"b\"]; true null; Rust\n\nBe brief.".into()
                ),
            ]
        );
    }

    #[test]
    fn the_default_system_prompt_and_json_instruction() {
        let p = Prompt::new(
            None,
            Some("hi"),
            None,
            None,
            Some("Answer in JSON.".into()),
            &JsonMap::new(),
        )
        .unwrap();
        let messages = p.render("w", &JsonMap::new(), &[]).unwrap();
        assert_eq!(
            messages[0].content,
            "You are a helpful assistant.\n\nAnswer in JSON."
        );
    }

    #[test]
    fn a_messages_history_goes_between_system_and_user() {
        let p = prompt(None, "Next: {{ input.q }}", None);
        let history =
            json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]);
        let messages = p
            .render("w", &object(json!({"messages": history, "q": "c"})), &[])
            .unwrap();
        let roles: Vec<_> = messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(messages[3].content, "Next: c");
        // History alone: no user prompt is added.
        let messages = p
            .render("w", &object(json!({"messages": history})), &[])
            .unwrap();
        assert_eq!(messages.len(), 3);
        // A `messages` list that is not chat messages stays an ordinary variable.
        let p = prompt(None, "{{ input.messages }}", None);
        let messages = p
            .render("w", &object(json!({"messages": ["x"]})), &[])
            .unwrap();
        assert_eq!(messages[1].content, "[\"x\"]");
    }

    #[test]
    fn bad_templates_are_reported_with_their_field() {
        let error =
            Prompt::new(Some("{{ oops"), None, None, None, None, &JsonMap::new()).unwrap_err();
        assert_eq!(error.0, "system");
        let p = prompt(None, "{{ input.x.y.z }}", None);
        let error = p.render("writer", &JsonMap::new(), &[]).unwrap_err();
        assert_eq!(error.error_type, "TemplateError");
        assert!(
            error
                .message
                .starts_with("agent `writer`: template `data.user`:"),
            "{}",
            error.message
        );
    }

    #[test]
    fn templates_see_the_offered_tools_and_the_rendered_tool_prompt() {
        let p = Prompt::new(
            Some("{{ tools_prompt }}|{{ tools | length }}"),
            Some("{% for t in tools %}{{ t._qualified }}={{ t.inputSchema.type }};{% endfor %}"),
            None,
            Some("{% for t in tools %}- {{ t.name }} ({{ t.server }}): {{ t.description }}\n{% endfor %}"),
            None,
            &JsonMap::new(),
        )
        .unwrap();
        let tools = [
            ToolInfo {
                name: "read".into(),
                description: "Reads a file".into(),
                input_schema: json!({"type": "object"}),
                server: Some("fs".into()),
            },
            ToolInfo {
                name: "add".into(),
                description: "Adds".into(),
                input_schema: json!({"type": "object"}),
                server: None,
            },
        ];
        let messages = p.render("w", &object(json!({"q": 1})), &tools).unwrap();
        assert_eq!(
            messages[0].content,
            "- read (fs): Reads a file\n- add (): Adds\n|2"
        );
        assert_eq!(messages[1].content, "fs:read=object;add=object;");
        // No tools: an empty `tools_prompt`, as in the reference.
        let messages = p.render("w", &object(json!({"q": 1})), &[]).unwrap();
        assert_eq!(messages[0].content, "|0");
    }
}
