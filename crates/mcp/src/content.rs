//! What a `tools/call` result becomes for the model: one text.
//!
//! The conversation's tool messages hold text, so each content block is written as text:
//! text as it is; an embedded text resource as its text under its URI; binary content (an
//! image, audio, a blob resource) as a note of its type and size, since its bytes would only
//! be noise to a text model; a resource link as its URI and name. `structuredContent` is
//! given as its JSON when no block carries text (servers are asked to repeat it as text, and
//! most do). `isError` makes the call a tool error, its text still given to the model.

use serde_json::Value;

use flatmachines_core::ToolOutcome;

/// The model's view of a `tools/call` result (its JSON form).
pub(crate) fn outcome(result: &Value) -> ToolOutcome {
    let blocks = result
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut parts: Vec<String> = Vec::with_capacity(blocks.len());
    let mut has_text = false;
    for block in blocks {
        let (text, is_text) = block_text(block);
        has_text |= is_text;
        parts.push(text);
    }
    if !has_text && let Some(structured) = result.get("structuredContent").filter(|v| !v.is_null())
    {
        parts.insert(0, structured.to_string());
    }
    let content = parts.join("\n");
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        ToolOutcome::error(content)
    } else {
        ToolOutcome::ok(content)
    }
}

/// One block as text, and whether it carried text of its own.
fn block_text(block: &Value) -> (String, bool) {
    let field = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
    let size = |data: &str| base64_len(data);
    match field("type") {
        "text" => (field("text").to_owned(), true),
        "image" => (
            format!(
                "[image: {}, {} bytes]",
                or_unknown(field("mimeType")),
                size(field("data"))
            ),
            false,
        ),
        "audio" => (
            format!(
                "[audio: {}, {} bytes]",
                or_unknown(field("mimeType")),
                size(field("data"))
            ),
            false,
        ),
        "resource" => {
            let resource = block.get("resource").unwrap_or(&Value::Null);
            let inner = |key: &str| resource.get(key).and_then(Value::as_str);
            let uri = inner("uri").unwrap_or_default();
            match (inner("text"), inner("blob")) {
                (Some(text), _) => (format!("[resource {uri}]\n{text}"), true),
                (None, Some(blob)) => (
                    format!(
                        "[resource {uri}: {}, {} bytes]",
                        or_unknown(inner("mimeType").unwrap_or_default()),
                        size(blob)
                    ),
                    false,
                ),
                (None, None) => (format!("[resource {uri}]"), false),
            }
        }
        "resource_link" => {
            let name = field("name");
            let uri = field("uri");
            let text = if name.is_empty() {
                format!("[resource link: {uri}]")
            } else {
                format!("[resource link: {uri} ({name})]")
            };
            (text, false)
        }
        other => (format!("[{} content]", or_unknown(other)), false),
    }
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "unknown type"
    } else {
        text
    }
}

/// The decoded size of base64 `data`, without decoding it.
fn base64_len(data: &str) -> usize {
    let padding = data.bytes().rev().take_while(|b| *b == b'=').count();
    (data.len() / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_blocks_are_joined() {
        let result =
            json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
        assert_eq!(outcome(&result), ToolOutcome::ok("a\nb"));
    }

    #[test]
    fn binary_content_is_described_not_pasted() {
        let result = json!({"content": [
            {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
            {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
            {"type": "resource", "resource": {"uri": "file:///x.bin", "blob": "AAAA", "mimeType": "application/octet-stream"}},
            {"type": "resource", "resource": {"uri": "file:///notes.txt", "text": "hello"}},
            {"type": "resource_link", "uri": "file:///y", "name": "y"},
        ]});
        assert_eq!(
            outcome(&result).content,
            "[image: image/png, 5 bytes]\n[audio: audio/wav, 3 bytes]\n[resource file:///x.bin: application/octet-stream, 3 bytes]\n[resource file:///notes.txt]\nhello\n[resource link: file:///y (y)]"
        );
    }

    #[test]
    fn structured_content_stands_in_for_missing_text() {
        let result = json!({"content": [], "structuredContent": {"sum": 3}});
        assert_eq!(outcome(&result), ToolOutcome::ok(r#"{"sum":3}"#));
        // With text beside it, the text is what the server meant the model to read.
        let result =
            json!({"content": [{"type": "text", "text": "3"}], "structuredContent": {"sum": 3}});
        assert_eq!(outcome(&result), ToolOutcome::ok("3"));
    }

    #[test]
    fn is_error_makes_a_tool_error() {
        let result =
            json!({"content": [{"type": "text", "text": "no such file"}], "isError": true});
        assert_eq!(outcome(&result), ToolOutcome::error("no such file"));
    }
}
