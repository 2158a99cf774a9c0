//! `validate`: every broken document of the corpus is caught with a precise message, every
//! valid one and every example of the repository passes, and our schemas reach the Python
//! reference's verdicts except for the documented differences.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use flatmachines_engine::validate::{Severity, validate_files};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = glob(&dir.join("**/*.yml"));
    files.sort();
    files
}

fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let root = pattern
        .ancestors()
        .find(|p| !p.to_string_lossy().contains('*'))
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml") {
                found.push(path);
            }
        }
    }
    found
}

/// Diagnostics with paths relative to the corpus, one per line.
fn render(paths: &[PathBuf]) -> String {
    let report = validate_files(paths);
    let root = corpus();
    report
        .diagnostics
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.file = d
                .file
                .strip_prefix(&root)
                .map(Path::to_path_buf)
                .unwrap_or(d.file);
            d.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_broken_document_is_caught_precisely() {
    let mut out = Vec::new();
    for file in yaml_files(&corpus().join("invalid")) {
        if file.ends_with("profile_case/profiles.yml") {
            continue;
        }
        let report = validate_files(std::slice::from_ref(&file));
        assert!(report.errors() > 0, "{} was not caught", file.display());
        out.push(render(&[file]));
    }
    insta::assert_snapshot!(out.join("\n"));
}

#[test]
fn suspicious_documents_get_warnings_but_no_errors() {
    let files = yaml_files(&corpus().join("warnings"));
    let report = validate_files(&files);
    assert_eq!(report.errors(), 0, "{}", render(&files));
    insta::assert_snapshot!(render(&files));
}

#[test]
fn valid_documents_and_the_repository_examples_pass() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = yaml_files(&corpus().join("valid"));
    files.extend(yaml_files(&repository.join("examples")));
    files.extend(yaml_files(&repository.join("bench")));
    let report = validate_files(&files);
    let errors: Vec<String> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(report.files.len() >= files.len());
}

#[test]
fn the_programs_and_urls_of_mcp_servers_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent.yml");
    std::fs::write(
        &agent,
        r#"spec: flatagent
spec_version: "1.0.0"
data:
  user: u
  mcp:
    servers:
      files: {command: npx, args: ["-y", "@modelcontextprotocol/server-filesystem", "."]}
      search: {server_url: "https://search.example.com/mcp"}
    tool_prompt: ""
"#,
    )
    .unwrap();
    let report = validate_files(std::slice::from_ref(&agent));
    assert_eq!(report.errors(), 0, "{:?}", report.diagnostics);
    let listed: Vec<String> = report
        .tool_servers
        .iter()
        .map(|used| {
            used.to_string()
                .replace(&agent.display().to_string(), "agent.yml")
        })
        .collect();
    assert_eq!(
        listed,
        [
            "agent.yml: server `files` starts `npx -y @modelcontextprotocol/server-filesystem .`",
            "agent.yml: server `search` calls https://search.example.com/mcp",
        ]
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["tool_servers"][1]["calls"],
        "https://search.example.com/mcp"
    );
}

/// Where our schema deliberately differs from the reference's (docs/divergences.md).
const KNOWN_DIFFERENCES: [(&str, &str); 4] = [
    (
        "valid/parallel.yml",
        "a machine list may mix names and {name, input} entries",
    ),
    (
        "invalid/unknown_execution_type.yml",
        "execution types are open (custom types register in Rust); `validate` reports unknown ones as a semantic error",
    ),
    (
        "warnings/unknown_fields.yml",
        "unknown fields are warnings, not schema errors",
    ),
    (
        "warnings/unreachable_and_dead_ends.yml",
        "unknown fields (`data.profiles`) are warnings, not schema errors",
    ),
];

#[test]
fn our_schema_reaches_the_reference_verdicts() {
    let text = std::fs::read_to_string(corpus().join("reference_verdicts.json")).unwrap();
    let verdicts: BTreeMap<String, Value> = serde_json::from_str(&text).unwrap();
    assert!(verdicts.len() >= 20);
    for (file, verdict) in verdicts {
        let theirs = verdict["valid"].as_bool().unwrap();
        let path = corpus().join(&file);
        let document = flatmachines_core::config::parse_text(
            &std::fs::read_to_string(&path).unwrap(),
            &path,
            flatmachines_core::config::Format::Yaml,
        )
        .unwrap();
        let spec = document["spec"].as_str().unwrap_or_default();
        let schema = flatmachines_core::schema::for_spec(spec).unwrap();
        let ours = jsonschema::validator_for(&schema)
            .unwrap()
            .is_valid(&document);
        match KNOWN_DIFFERENCES.iter().find(|(f, _)| *f == file) {
            Some((_, why)) => assert_ne!(
                ours, theirs,
                "{file} is listed as a difference ({why}) but agrees"
            ),
            None => assert_eq!(ours, theirs, "{file}: ours {ours}, reference {theirs}"),
        }
    }
}
