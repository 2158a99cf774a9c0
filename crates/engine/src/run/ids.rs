//! Execution ids.

use uuid::Uuid;

/// Namespace of the name-based ids given to child executions.
const CHILD_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_8d3c_2b4a_4f59_9c7e_5a3b_1d2e_0f4a);

/// A fresh execution id (a random UUID).
pub fn new_execution_id() -> String {
    Uuid::new_v4().to_string()
}

/// The id of a child started by `parent` in `state` at `step`; `slot` tells the children of
/// one state apart. The same inputs give the same id, so a resumed parent finds the children
/// it had already started.
pub(crate) fn child_execution_id(parent: &str, step: u64, state: &str, slot: &str) -> String {
    let name = format!("{parent}\u{1f}{step}\u{1f}{state}\u{1f}{slot}");
    Uuid::new_v5(&CHILD_NAMESPACE, name.as_bytes()).to_string()
}

/// Execution ids become storage keys and URI segments, so they are held to the same rules.
pub(crate) fn check_execution_id(id: &str) -> Result<(), String> {
    if id.contains('/') {
        return Err(format!("execution id `{id}` may not contain `/`"));
    }
    flatmachines_core::validate_key(id)
        .map_err(|e| format!("execution id `{}` is not usable: {e}", id.escape_debug()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_are_stable_and_distinct() {
        let a = child_execution_id("p", 3, "fan", "0");
        assert_eq!(a, child_execution_id("p", 3, "fan", "0"));
        assert_ne!(a, child_execution_id("p", 3, "fan", "1"));
        assert_ne!(a, child_execution_id("p", 4, "fan", "0"));
        assert_ne!(a, child_execution_id("q", 3, "fan", "0"));
    }

    #[test]
    fn execution_ids_are_checked() {
        assert!(check_execution_id("run-42").is_ok());
        assert!(check_execution_id("a/b").is_err());
        assert!(check_execution_id("..").is_err());
        assert!(check_execution_id("").is_err());
    }
}
