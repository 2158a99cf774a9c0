//! The tables printed after a run: capabilities per backend, then case counts.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::PoisonError;

use flatmachines_conformance::{Capability, Outcome};

use super::{Entry, Planned, Ran};

/// Renders both tables and the list of skipped cases.
/// `selected` names the trials the command line's filters kept.
pub(crate) fn render(
    entries: &[Entry],
    planned: &[Planned],
    selected: &HashSet<String>,
    ran: &Ran,
) -> String {
    let ran = ran.lock().unwrap_or_else(PoisonError::into_inner);
    let outcomes: BTreeMap<&str, &Outcome> =
        ran.iter().map(|(name, o)| (name.as_str(), o)).collect();
    let mut out = String::new();
    let _ = writeln!(out, "\nconformance: capabilities per backend");
    let _ = writeln!(
        out,
        "  supported: declared, its cases run; skipped (n): n cases not run for lack of it; n/a: no case of the backend's suites needs it\n"
    );
    let mut header = vec!["backend".to_owned()];
    header.extend(Capability::ALL.iter().map(|c| c.name().to_owned()));
    let mut rows = vec![header];
    let mut notes = Vec::new();
    for entry in entries {
        match entry {
            Entry::Ready(backend) => {
                let mut row = vec![backend.name.to_owned()];
                for capability in Capability::ALL {
                    row.push(capability_cell(planned, backend.name, capability));
                }
                rows.push(row);
            }
            Entry::Unavailable { name, reason, fail } => {
                let verdict = if *fail {
                    "FAILED"
                } else {
                    "skipped (CI=true makes this a failure)"
                };
                notes.push(format!("{name}: {verdict}, {reason}"));
            }
        }
    }
    // Only a header when nothing could be opened: the notes say it all.
    if rows.len() > 1 {
        table(&mut out, &rows);
    }
    for note in &notes {
        let _ = writeln!(out, "{note}");
    }

    let _ = writeln!(out, "\nconformance: cases per backend\n");
    let mut rows = vec![
        ["backend", "passed", "failed", "skipped", "filtered out"]
            .map(str::to_owned)
            .to_vec(),
    ];
    let mut totals = [0_usize; 4];
    let mut skipped = Vec::new();
    for entry in entries {
        let backend = match entry {
            Entry::Ready(backend) => backend,
            // Its one trial, `NAME::open`, failed or was skipped.
            Entry::Unavailable { name, fail, .. } => {
                let column = if *fail { 1 } else { 2 };
                let mut row = vec![name.clone(), "0".into(), "0".into(), "0".into(), "0".into()];
                row[column + 1] = "1".into();
                totals[column] += 1;
                rows.push(row);
                continue;
            }
        };
        let mut counts = [0_usize; 4];
        for case in planned.iter().filter(|p| p.backend == backend.name) {
            let name = format!("{}::{}::{}", case.backend, case.suite, case.case);
            let column = match outcomes.get(name.as_str()) {
                _ if !selected.contains(&name) => 3,
                _ if !case.missing.is_empty() => {
                    let reason = Outcome::Skipped {
                        missing: case.missing.clone(),
                    }
                    .skip_reason();
                    skipped.push(format!("  {name}: {}", reason.unwrap_or_default()));
                    2
                }
                Some(Outcome::Passed) => 0,
                Some(Outcome::Failed { .. }) => 1,
                Some(Outcome::Skipped { .. }) => 2,
                None => 3,
            };
            counts[column] += 1;
        }
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
        let mut row = vec![backend.name.to_owned()];
        row.extend(counts.iter().map(usize::to_string));
        rows.push(row);
    }
    let mut total = vec!["total".to_owned()];
    total.extend(totals.iter().map(usize::to_string));
    rows.push(total);
    table(&mut out, &rows);
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "\nskipped cases (the backend does not declare the capability):"
        );
        for line in skipped {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// `supported`, `skipped (n)`, `partial (n skipped)` or `n/a` for one backend and capability.
fn capability_cell(planned: &[Planned], backend: &str, capability: Capability) -> String {
    let needing = planned
        .iter()
        .filter(|p| p.backend == backend && p.requires.contains(&capability));
    let (mut supported, mut lacking) = (0, 0);
    for case in needing {
        if case.missing.contains(&capability) {
            lacking += 1;
        } else {
            supported += 1;
        }
    }
    match (supported, lacking) {
        (0, 0) => "n/a".to_owned(),
        (_, 0) => "supported".to_owned(),
        (0, n) => format!("skipped ({n})"),
        (_, n) => format!("partial ({n} skipped)"),
    }
}

/// Left-aligned columns separated by two spaces, with a rule under the header.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (index, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if index == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
}
