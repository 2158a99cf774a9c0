//! `docs/limits.md` names every bound, so a user who meets one in a message can look it up.

use flatmachines_core::Limit;

#[test]
fn docs_limits_md_lists_every_bound_with_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/limits.md");
    let text = std::fs::read_to_string(path).expect("docs/limits.md exists");
    for limit in Limit::ALL {
        let name = format!("`{}`", limit.name());
        let line = text
            .lines()
            .find(|line| line.starts_with('|') && line.contains(&name))
            .unwrap_or_else(|| panic!("docs/limits.md has no table row for {name}"));
        let default = limit.format_value(limit.default_value());
        let plain = limit.default_value().to_string();
        assert!(
            line.contains(&default) || line.replace([',', '_', ' '], "").contains(&plain),
            "the row of {name} in docs/limits.md does not give its default {default}: {line}"
        );
    }
}
