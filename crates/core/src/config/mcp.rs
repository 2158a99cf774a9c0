//! What an agent's `mcp:` means without starting anything: which tools a `tool_filter` lets
//! through, and whether a server definition can be used. Shared by the MCP client, which
//! applies them, and by `validate`, which reports them.

use super::agent::{McpServer, ToolFilter};

impl ToolFilter {
    /// Whether the filter lets an agent offer tool `tool` of server `server`.
    ///
    /// Patterns name a tool as `server:tool`, or every tool of a server as `server:*`; nothing
    /// else is a wildcard (the reference matches the same two forms). A tool matching any
    /// `deny` pattern is left out; when `allow` lists patterns, a tool must match one.
    pub fn permits(&self, server: &str, tool: &str) -> bool {
        let matches = |patterns: &Option<Vec<String>>| {
            patterns
                .iter()
                .flatten()
                .any(|pattern| pattern_matches(pattern, server, tool))
        };
        if matches(&self.deny) {
            return false;
        }
        match &self.allow {
            Some(allow) if !allow.is_empty() => matches(&self.allow),
            _ => true,
        }
    }

    /// Checks one pattern's syntax, and that it names one of `servers`. The error says what
    /// is wrong.
    pub fn check_pattern<'a>(
        pattern: &str,
        mut servers: impl Iterator<Item = &'a str>,
    ) -> Result<(), String> {
        let Some((server, tool)) = pattern.split_once(':') else {
            return Err(format!(
                "`{pattern}` is not a tool pattern: write `server:tool`, or `server:*` for every tool of a server"
            ));
        };
        if server.is_empty() || tool.is_empty() {
            return Err(format!(
                "`{pattern}` names no server or no tool: write `server:tool` or `server:*`"
            ));
        }
        if tool != "*" && tool.contains('*') {
            return Err(format!(
                "`{pattern}`: only a whole `*` is a wildcard (`{server}:*`); `{tool}` matches only a tool of exactly that name"
            ));
        }
        if !servers.any(|declared| declared == server) {
            return Err(format!(
                "`{pattern}` names server `{server}`, which `mcp.servers` does not declare"
            ));
        }
        Ok(())
    }
}

fn pattern_matches(pattern: &str, server: &str, tool: &str) -> bool {
    match pattern.split_once(':') {
        Some((s, "*")) => s == server,
        Some((s, t)) => s == server && t == tool,
        None => false,
    }
}

/// How an MCP server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpTransport<'a> {
    /// A child process speaking over its standard streams.
    Stdio {
        /// The program.
        command: &'a str,
    },
    /// Streamable HTTP at a URL.
    Http {
        /// The URL.
        url: &'a str,
    },
}

impl McpServer {
    /// How the server is reached, once its definition is checked: exactly one of `command`
    /// and `server_url`, an `http` or `https` URL, a positive `timeout`, usable headers, and
    /// no HTTP-only fields on a command (or the reverse).
    pub fn transport(&self) -> Result<McpTransport<'_>, String> {
        if let Some(seconds) = self.timeout
            && !(seconds.is_finite() && seconds > 0.0)
        {
            return Err(format!(
                "`timeout` must be a positive number of seconds, not {seconds}"
            ));
        }
        match (&self.command, &self.server_url) {
            (Some(command), None) => {
                if command.trim().is_empty() {
                    return Err("`command` is empty".to_owned());
                }
                if !self.headers.is_empty() {
                    return Err(
                        "`headers` apply to `server_url` (HTTP), not to a `command`".to_owned()
                    );
                }
                Ok(McpTransport::Stdio { command })
            }
            (None, Some(url)) => {
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    return Err(format!(
                        "`server_url` must be an http:// or https:// URL, not `{url}`"
                    ));
                }
                for field in ["args", "env", "cwd"] {
                    let given = match field {
                        "args" => !self.args.is_empty(),
                        "env" => !self.env.is_empty(),
                        _ => self.cwd.is_some(),
                    };
                    if given {
                        return Err(format!(
                            "`{field}` applies to a `command` (stdio), not to `server_url`"
                        ));
                    }
                }
                for (name, value) in &self.headers {
                    let token =
                        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
                    if name.is_empty() || !name.chars().all(token) {
                        return Err(format!("header `{name}` is not a valid header name"));
                    }
                    if value.contains(['\r', '\n', '\0']) {
                        return Err(format!(
                            "header `{name}` has a line break or NUL in its value"
                        ));
                    }
                }
                Ok(McpTransport::Http { url })
            }
            (Some(_), Some(_)) => {
                Err("it gives both `command` (stdio) and `server_url` (HTTP); keep one".to_owned())
            }
            (None, None) => {
                Err("it gives neither `command` (stdio) nor `server_url` (HTTP)".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filter(allow: Option<&[&str]>, deny: Option<&[&str]>) -> ToolFilter {
        let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        ToolFilter {
            allow: allow.map(list),
            deny: deny.map(list),
        }
    }

    fn server(value: serde_json::Value) -> McpServer {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_empty_allow_list_offers_everything() {
        assert!(filter(Some(&[]), None).permits("fs", "read"));
        assert!(filter(None, None).permits("fs", "read"));
    }

    #[test]
    fn allow_names_tools_or_whole_servers() {
        let f = filter(Some(&["fs:read", "web:*"]), None);
        assert!(f.permits("fs", "read"));
        assert!(!f.permits("fs", "write"));
        assert!(f.permits("web", "fetch"));
        assert!(!f.permits("webx", "fetch"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let f = filter(Some(&["fs:*"]), Some(&["fs:write"]));
        assert!(f.permits("fs", "read"));
        assert!(!f.permits("fs", "write"));
        let f = filter(None, Some(&["fs:*"]));
        assert!(!f.permits("fs", "read"));
        assert!(f.permits("web", "read"));
    }

    #[test]
    fn only_the_two_forms_match() {
        // As in the reference: no globbing inside a name, no bare `*`.
        let f = filter(Some(&["fs:read_*", "*", "read"]), None);
        assert!(!f.permits("fs", "read_file"));
        assert!(!f.permits("fs", "read"));
    }

    #[test]
    fn pattern_syntax_is_checked_against_the_servers() {
        let servers = ["fs", "web"];
        assert!(ToolFilter::check_pattern("fs:read", servers.into_iter()).is_ok());
        assert!(ToolFilter::check_pattern("web:*", servers.into_iter()).is_ok());
        for (pattern, says) in [
            ("read", "not a tool pattern"),
            (":read", "names no server"),
            ("fs:", "names no server or no tool"),
            ("fs:read_*", "only a whole `*`"),
            ("db:query", "does not declare"),
        ] {
            let error = ToolFilter::check_pattern(pattern, servers.into_iter()).unwrap_err();
            assert!(error.contains(says), "{pattern}: {error}");
        }
    }

    #[test]
    fn server_definitions_are_checked() {
        assert_eq!(
            server(json!({"command": "npx", "args": ["x"]})).transport(),
            Ok(McpTransport::Stdio { command: "npx" })
        );
        assert_eq!(
            server(json!({"server_url": "https://h/mcp", "headers": {"X-Key": "v"}})).transport(),
            Ok(McpTransport::Http {
                url: "https://h/mcp"
            })
        );
        for (definition, says) in [
            (json!({}), "neither"),
            (json!({"command": "a", "server_url": "http://h"}), "both"),
            (json!({"command": " "}), "`command` is empty"),
            (
                json!({"command": "a", "headers": {"A": "b"}}),
                "`headers` apply to",
            ),
            (json!({"server_url": "ftp://h"}), "http:// or https://"),
            (
                json!({"server_url": "http://h", "args": ["x"]}),
                "`args` applies to",
            ),
            (
                json!({"server_url": "http://h", "headers": {"a b": "c"}}),
                "not a valid header name",
            ),
            (
                json!({"server_url": "http://h", "headers": {"a": "c\nd"}}),
                "line break",
            ),
            (json!({"command": "a", "timeout": 0}), "positive number"),
            (json!({"command": "a", "timeout": -1.5}), "positive number"),
        ] {
            let error = server(definition.clone()).transport().unwrap_err();
            assert!(error.contains(says), "{definition}: {error}");
        }
    }
}
