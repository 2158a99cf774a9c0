//! Child machines that run each other: a cycle in `machines:` nests a run until the
//! `machine_depth` bound stops it, so validation names the chain.

use crate::definition::{MachineId, MachineSet};

/// Each distinct cycle reachable from the root, as the chain of machine ids it passes
/// through, starting and ending at the same machine. Iterative, so a deep chain of child
/// machines cannot overflow the stack.
pub(super) fn child_cycles(set: &MachineSet) -> Vec<Vec<MachineId>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let count = set.machines.len();
    let mut marks = vec![Mark::New; count];
    let mut cycles = Vec::new();
    if count == 0 {
        return cycles;
    }
    // (machine, index of the next child to visit)
    let mut path: Vec<(MachineId, usize)> = vec![(0, 0)];
    marks[0] = Mark::OnPath;
    while let Some(&mut (machine, ref mut next)) = path.last_mut() {
        let children = &set.machines[machine].children;
        let Some((_, &child)) = children.get_index(*next) else {
            marks[machine] = Mark::Done;
            path.pop();
            continue;
        };
        *next += 1;
        match marks.get(child).copied() {
            Some(Mark::New) => {
                marks[child] = Mark::OnPath;
                path.push((child, 0));
            }
            Some(Mark::OnPath) => {
                let start = path.iter().position(|(m, _)| *m == child).unwrap_or(0);
                let mut chain: Vec<MachineId> = path[start..].iter().map(|(m, _)| *m).collect();
                chain.push(child);
                cycles.push(chain);
            }
            Some(Mark::Done) | None => {}
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader;
    use flatmachines_core::Limits;

    fn names(set: &MachineSet, chain: &[MachineId]) -> Vec<String> {
        chain
            .iter()
            .map(|id| set.machines[*id].name.clone())
            .collect()
    }

    #[test]
    fn finds_a_machine_that_runs_itself_and_a_pair() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, machines: &str| {
            let text = format!(
                "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: {name}\n  machines:\n{machines}  states:\n    start:\n      type: initial\n      machine: child\n      transitions: [{{to: done}}]\n    done:\n      type: final\n"
            );
            std::fs::write(dir.path().join(format!("{name}.yml")), text).expect("write");
        };
        write("a", "    child: ./b.yml\n");
        write("b", "    child: ./a.yml\n");
        write("solo", "    child: ./solo.yml\n");
        write("leaf", "    child: ./leaf2.yml\n");
        std::fs::write(
            dir.path().join("leaf2.yml"),
            "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: leaf2\n  states:\n    start:\n      type: initial\n      transitions: [{to: done}]\n    done:\n      type: final\n",
        )
        .expect("write");
        let load = |name: &str| {
            loader::load_file(&dir.path().join(name), &Limits::default()).expect("loads")
        };
        let pair = load("a.yml");
        let cycles = child_cycles(&pair);
        assert_eq!(cycles.len(), 1);
        assert_eq!(names(&pair, &cycles[0]), ["a", "b", "a"]);
        let solo = load("solo.yml");
        assert_eq!(names(&solo, &child_cycles(&solo)[0]), ["solo", "solo"]);
        assert!(child_cycles(&load("leaf.yml")).is_empty());
    }
}
