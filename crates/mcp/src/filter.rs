//! `tool_filter`: which of a server's tools an agent offers.
//!
//! Patterns name a tool as `server:tool`, or every tool of a server as `server:*`; nothing else
//! is a wildcard (the reference matches the same two forms). A tool matching any `deny`
//! pattern is left out; when `allow` lists patterns, a tool must match one of them.

use flatmachines_core::config::ToolFilter;

/// Whether `filter` lets the agent offer `tool` of `server`.
pub fn permits(filter: Option<&ToolFilter>, server: &str, tool: &str) -> bool {
    let Some(filter) = filter else {
        return true;
    };
    let matches = |patterns: &Option<Vec<String>>| {
        patterns
            .iter()
            .flatten()
            .any(|pattern| pattern_matches(pattern, server, tool))
    };
    if matches(&filter.deny) {
        return false;
    }
    match &filter.allow {
        Some(allow) if !allow.is_empty() => matches(&filter.allow),
        _ => true,
    }
}

fn pattern_matches(pattern: &str, server: &str, tool: &str) -> bool {
    match pattern.split_once(':') {
        Some((s, "*")) => s == server,
        Some((s, t)) => s == server && t == tool,
        None => false,
    }
}

/// Checks a pattern's syntax: `server:tool` or `server:*`, with a server that `servers`
/// declares. The error says what is wrong, for `validate`.
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
            "`{pattern}`: only a whole `*` is a wildcard (`{server}:*`); `{tool}` would match only a tool of exactly that name"
        ));
    }
    if !servers.any(|declared| declared == server) {
        return Err(format!(
            "`{pattern}` names server `{server}`, which `mcp.servers` does not declare"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: Option<&[&str]>, deny: Option<&[&str]>) -> ToolFilter {
        let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        ToolFilter {
            allow: allow.map(list),
            deny: deny.map(list),
        }
    }

    #[test]
    fn no_filter_or_an_empty_allow_list_offers_everything() {
        assert!(permits(None, "fs", "read"));
        assert!(permits(Some(&filter(Some(&[]), None)), "fs", "read"));
        assert!(permits(Some(&filter(None, None)), "fs", "read"));
    }

    #[test]
    fn allow_names_tools_or_whole_servers() {
        let f = filter(Some(&["fs:read", "web:*"]), None);
        assert!(permits(Some(&f), "fs", "read"));
        assert!(!permits(Some(&f), "fs", "write"));
        assert!(permits(Some(&f), "web", "fetch"));
        assert!(!permits(Some(&f), "webx", "fetch"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let f = filter(Some(&["fs:*"]), Some(&["fs:write"]));
        assert!(permits(Some(&f), "fs", "read"));
        assert!(!permits(Some(&f), "fs", "write"));
        let f = filter(None, Some(&["fs:*"]));
        assert!(!permits(Some(&f), "fs", "read"));
        assert!(permits(Some(&f), "web", "read"));
    }

    #[test]
    fn only_the_two_forms_match() {
        // As in the reference: no globbing inside a name, no bare `*`.
        let f = filter(Some(&["fs:read_*", "*", "read"]), None);
        assert!(!permits(Some(&f), "fs", "read_file"));
        assert!(!permits(Some(&f), "fs", "read"));
    }

    #[test]
    fn pattern_syntax_is_checked_against_the_servers() {
        let servers = ["fs", "web"];
        assert!(check_pattern("fs:read", servers.into_iter()).is_ok());
        assert!(check_pattern("web:*", servers.into_iter()).is_ok());
        for (pattern, says) in [
            ("read", "not a tool pattern"),
            (":read", "names no server"),
            ("fs:", "names no server or no tool"),
            ("fs:read_*", "only a whole `*`"),
            ("db:query", "does not declare"),
        ] {
            let error = check_pattern(pattern, servers.into_iter()).unwrap_err();
            assert!(error.contains(says), "{pattern}: {error}");
        }
    }
}
