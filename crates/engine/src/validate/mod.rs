//! Checking config files before anything runs: JSON Schema, then the semantic checks the
//! loader makes, then checks of the machine as a graph, following referenced machine, agent
//! and profile files. Every problem found is reported, with its file, JSON pointer and
//! `line:column`.

mod checks;
mod cycles;
mod positions;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use jsonschema::JsonType;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde::Serialize;
use serde_json::Value;

use flatmachines_core::config::{Format, parse_text_within};
use flatmachines_core::{ConfigError, Limits, schema};

use positions::{Positions, pointer_of};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config will not load or run.
    Error,
    /// Suspicious, but it runs.
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file it is in.
    pub file: PathBuf,
    /// Where in the document, as a JSON pointer (empty: the whole document).
    pub pointer: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: {}", self.message)?;
        if !self.pointer.is_empty() {
            write!(f, " [{}]", self.pointer)?;
        }
        Ok(())
    }
}

/// The findings of one validation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every file checked, the given ones and those they reference.
    pub files: Vec<PathBuf>,
    /// What was found, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The MCP servers the configs will start or call, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_servers: Vec<ToolServerUse>,
}

/// An MCP server an agent declares: the program a run will start, or the URL it will call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolServerUse {
    /// The agent file declaring it.
    pub file: PathBuf,
    /// The server's name in `mcp.servers`.
    pub server: String,
    /// The command line a run starts (stdio), its arguments joined by spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts: Option<String>,
    /// The URL a run calls (streamable HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<String>,
}

impl fmt::Display for ToolServerUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: server `{}` ", self.file.display(), self.server)?;
        match (&self.starts, &self.calls) {
            (Some(command), _) => write!(f, "starts `{command}`"),
            (None, Some(url)) => write!(f, "calls {url}"),
            (None, None) => Ok(()),
        }
    }
}

impl Report {
    /// How many errors were found.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// How many warnings were found.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }
}

/// A file being checked: its text, parsed value and node positions.
pub(crate) struct Source {
    pub(crate) file: PathBuf,
    pub(crate) value: Value,
    positions: Positions,
}

impl Source {
    pub(crate) fn diagnostic(
        &self,
        severity: Severity,
        pointer: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let position = self.positions.find(pointer);
        Diagnostic {
            severity,
            file: self.file.clone(),
            pointer: pointer.to_owned(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            message: message.into(),
        }
    }
}

/// Validates files and everything they reference; each file is checked once.
#[derive(Default)]
pub(crate) struct Validator {
    pub(crate) report: Report,
    seen: BTreeSet<PathBuf>,
    /// Hook classes the program running the machines registers, beyond the engine's own.
    pub(crate) hook_classes: BTreeSet<String>,
    /// The bounds files are read and loaded within, as a run would use them.
    pub(crate) limits: Limits,
    /// Checks the `args` of the hook classes the program registers, as building them would.
    pub(crate) hook_args: Option<HookArgsCheck>,
}

/// A check of a machine's `hooks:` (its class and `args`) as building the hooks would make
/// it, without building them: the reason the hooks would be refused, if they would be.
pub type HookArgsCheck = fn(&flatmachines_core::config::HooksConfig) -> Result<(), String>;

/// Validates `paths` (and the machine, agent and profile files they reference).
pub fn validate_files(paths: &[PathBuf]) -> Report {
    validate_files_for(paths, std::iter::empty::<&str>())
}

/// Validates `paths` for a program that registers `hook_classes` on top of the engine's
/// (see [`RuntimeBuilder::hook_classes`](crate::RuntimeBuilder::hook_classes)): configs
/// naming one of them get no "not built in" warning.
pub fn validate_files_for<'a>(
    paths: &[PathBuf],
    hook_classes: impl IntoIterator<Item = &'a str>,
) -> Report {
    validate_files_within(paths, hook_classes, &Limits::default())
}

/// [`validate_files_within`], also checking each machine's hook `args` with `hook_args` (for
/// the facade's hooks, `flatmachines::remote_hooks::effects`): hooks a run would refuse at
/// setup, such as a webhook endpoint that is not an `http` or `https` URL, are errors at
/// `/data/hooks/args`.
pub fn validate_files_checking<'a>(
    paths: &[PathBuf],
    hook_classes: impl IntoIterator<Item = &'a str>,
    limits: &Limits,
    hook_args: HookArgsCheck,
) -> Report {
    run_validator(paths, hook_classes, limits, Some(hook_args))
}

/// [`validate_files_for`], reading and loading within `limits` (the bounds `--limit` sets
/// for a run), so that a file a run would refuse is reported rather than read.
pub fn validate_files_within<'a>(
    paths: &[PathBuf],
    hook_classes: impl IntoIterator<Item = &'a str>,
    limits: &Limits,
) -> Report {
    run_validator(paths, hook_classes, limits, None)
}

fn run_validator<'a>(
    paths: &[PathBuf],
    hook_classes: impl IntoIterator<Item = &'a str>,
    limits: &Limits,
    hook_args: Option<HookArgsCheck>,
) -> Report {
    let mut validator = Validator {
        hook_classes: hook_classes.into_iter().map(str::to_owned).collect(),
        limits: *limits,
        hook_args,
        ..Validator::default()
    };
    for path in paths {
        validator.file(path, None);
    }
    let mut report = validator.report;
    let order = |file: &Path| report.files.iter().position(|f| f == file);
    let mut keyed: Vec<_> = std::mem::take(&mut report.diagnostics)
        .into_iter()
        .map(|d| ((order(&d.file), d.line, d.column), d))
        .collect();
    // Stable: diagnostics at one place keep the order the checks found them in.
    keyed.sort_by_key(|a| a.0);
    report.diagnostics = keyed.into_iter().map(|(_, d)| d).collect();
    report
}

impl Validator {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        if !self.report.diagnostics.contains(&diagnostic) {
            self.report.diagnostics.push(diagnostic);
        }
    }

    /// Checks one file; `expected` is the spec it must have when it is referenced as one.
    pub(crate) fn file(&mut self, path: &Path, expected: Option<&str>) {
        // Read what was named; report it by its tidy name.
        let original = path;
        let path = tidy(path);
        let path = path.as_path();
        let key = original.canonicalize().unwrap_or_else(|_| path.to_owned());
        if !self.seen.insert(key) {
            return;
        }
        self.report.files.push(path.to_owned());
        let text = match crate::loader::read(path, original, &self.limits) {
            Ok(text) => text,
            Err(e) => {
                let message = match &e {
                    ConfigError::Read { source, .. } => format!("cannot read the file: {source}"),
                    other => strip_file(&other.to_string(), path),
                };
                self.push(Diagnostic {
                    severity: Severity::Error,
                    file: path.to_owned(),
                    pointer: String::new(),
                    line: None,
                    column: None,
                    message,
                });
                return;
            }
        };
        let value = match parse_text_within(&text, path, Format::from_path(path), &self.limits) {
            Ok(value) => value,
            Err(e) => {
                let (line, column) = match &e {
                    ConfigError::Syntax { line, column, .. }
                    | ConfigError::Limit { line, column, .. } => (*line, *column),
                    _ => (None, None),
                };
                self.push(Diagnostic {
                    severity: Severity::Error,
                    file: path.to_owned(),
                    pointer: String::new(),
                    line,
                    column,
                    message: strip_file(&e.to_string(), path),
                });
                return;
            }
        };
        let source = Source {
            file: path.to_owned(),
            positions: Positions::of(&text),
            value,
        };
        let spec = source
            .value
            .get("spec")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let spec = match (spec.as_deref(), expected) {
            (Some(found), Some(expected)) if found != expected => {
                let d = source.diagnostic(
                    Severity::Error,
                    "/spec",
                    format!("expected `spec: {expected}` here, found `spec: {found}`"),
                );
                self.push(d);
                return;
            }
            (Some(found), _) => found.to_owned(),
            (None, Some(expected)) => expected.to_owned(),
            (None, None) => {
                let d = source.diagnostic(
                    Severity::Error,
                    "",
                    "no `spec` field: expected flatmachine, flatagent or flatprofiles",
                );
                self.push(d);
                return;
            }
        };
        let Some(schema) = schema::for_spec(&spec) else {
            let d = source.diagnostic(
                Severity::Error,
                "/spec",
                format!("unknown spec `{spec}` (expected flatmachine, flatagent or flatprofiles)"),
            );
            self.push(d);
            return;
        };
        if !self.schema(&source, &schema) {
            return;
        }
        match spec.as_str() {
            "flatmachine" => self.machine(&source),
            "flatagent" => self.agent(&source),
            _ => self.profiles(&source),
        }
    }

    /// JSON Schema errors; `false` when there were any (the typed checks would repeat them).
    fn schema(&mut self, source: &Source, schema: &Value) -> bool {
        let Ok(validator) = jsonschema::validator_for(schema) else {
            return true;
        };
        let mut clean = true;
        for error in validator.iter_errors(&source.value) {
            clean = false;
            for (pointer, message) in explain(&error) {
                let d = source.diagnostic(Severity::Error, &pointer, message);
                self.push(d);
            }
        }
        clean
    }

    /// A loader error as a diagnostic at its location.
    pub(crate) fn config_error(&mut self, source: &Source, error: &ConfigError) {
        if let ConfigError::Reference {
            location,
            source: cause,
            ..
        } = error
        {
            // Other failures of a referenced file are reported when that file is validated.
            if let ConfigError::Read {
                file, source: io, ..
            } = cause.as_ref()
            {
                let d = source.diagnostic(
                    Severity::Error,
                    &pointer_of(location),
                    format!("refers to {}, which cannot be read: {io}", shown(file)),
                );
                self.push(d);
            }
            // A bound reached while reading it (a device, a huge file) is reported here: the
            // file is never validated on its own, as it could not be read.
            if let ConfigError::Limit { file, .. } = cause.as_ref() {
                let d = source.diagnostic(
                    Severity::Error,
                    &pointer_of(location),
                    format!("refers to {}, which cannot be read: {cause}", shown(file)),
                );
                self.push(d);
            }
            return;
        }
        let (file, location, message) = describe(error);
        let file = file.unwrap_or_else(|| source.file.clone());
        let pointer = location.map(|l| pointer_of(&l)).unwrap_or_default();
        if file == source.file {
            let d = source.diagnostic(Severity::Error, &pointer, message);
            self.push(d);
        } else {
            self.push(Diagnostic {
                severity: Severity::Error,
                file,
                pointer,
                line: None,
                column: None,
                message,
            });
        }
    }
}

/// The most specific reasons behind a schema error. An `anyOf` failure (a field that may be
/// null, a name or a mapping, …) is explained by the alternative that got furthest into the
/// document, rather than by a dump of the whole value.
fn explain(error: &jsonschema::ValidationError<'_>) -> Vec<(String, String)> {
    if let ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } =
        error.kind()
    {
        // Optional fields are `anyOf: [T, null]`: the null branch says nothing useful.
        let meaningful: Vec<_> = context
            .iter()
            .filter(|branch| !branch.iter().all(expects_only_null))
            .collect();
        // Documented enums are `oneOf` one `const` each: list them as one choice.
        let constants: Option<Vec<String>> = meaningful
            .iter()
            .map(|branch| match branch.as_slice() {
                [one] => match one.kind() {
                    ValidationErrorKind::Constant { expected_value } => {
                        Some(short_json(expected_value))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if let Some(allowed) = constants
            && !allowed.is_empty()
        {
            let found = short_json(error.instance());
            return vec![(
                error.instance_path().to_string(),
                format!(
                    "{found} is not allowed here (expected one of: {})",
                    allowed.join(", ")
                ),
            )];
        }
        if let [only] = meaningful.as_slice() {
            return only.iter().flat_map(explain).collect();
        }
        let own = error.instance_path().to_string().len();
        // A branch that only says "wrong type" here is one the value was never meant for
        // (`true` or a mapping, given a mapping): the branch the value fits explains it.
        let wrong_type = |branch: &Vec<jsonschema::ValidationError<'static>>| {
            branch.iter().all(|e| {
                matches!(e.kind(), ValidationErrorKind::Type { .. })
                    && e.instance_path().to_string().len() == own
            })
        };
        let (mistyped, fitting): (Vec<_>, Vec<_>) = meaningful
            .iter()
            .copied()
            .partition(|branch| wrong_type(branch));
        if let [only] = fitting.as_slice() {
            return only.iter().flat_map(explain).collect();
        }
        if fitting.is_empty() && !mistyped.is_empty() {
            let mut expected = Vec::new();
            for e in mistyped.iter().flat_map(|branch| branch.iter()) {
                if let ValidationErrorKind::Type { kind } = e.kind() {
                    let names: Vec<String> = match kind {
                        TypeKind::Single(one) => vec![one.to_string()],
                        TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
                    };
                    for name in names {
                        if name != "null" && !expected.contains(&name) {
                            expected.push(name);
                        }
                    }
                }
            }
            return vec![(
                error.instance_path().to_string(),
                format!(
                    "expected {}, found {}",
                    expected.join(" or "),
                    short_json(error.instance())
                ),
            )];
        }
        let depth = |branch: &Vec<jsonschema::ValidationError<'static>>| {
            branch
                .iter()
                .map(|e| e.instance_path().to_string().len())
                .max()
                .unwrap_or(0)
        };
        if let Some(best) = meaningful.into_iter().max_by_key(|branch| depth(branch))
            && depth(best) > own
        {
            return best.iter().flat_map(explain).collect();
        }
    }
    vec![(error.instance_path().to_string(), message(error))]
}

fn expects_only_null(error: &jsonschema::ValidationError<'_>) -> bool {
    matches!(
        error.kind(),
        ValidationErrorKind::Type {
            kind: TypeKind::Single(JsonType::Null)
        }
    )
}

/// Schema errors in the words of the document: the value found and what was allowed.
fn message(error: &jsonschema::ValidationError<'_>) -> String {
    let found = short_json(error.instance());
    match error.kind() {
        ValidationErrorKind::Enum { options } => {
            let allowed = options
                .as_array()
                .map(|values| values.iter().map(short_json).collect::<Vec<_>>().join(", "))
                .unwrap_or_else(|| short_json(options));
            format!("{found} is not allowed here (expected one of: {allowed})")
        }
        ValidationErrorKind::Type { kind } => {
            let expected: Vec<String> = match kind {
                TypeKind::Single(one) => vec![one.to_string()],
                TypeKind::Multiple(set) => set
                    .iter()
                    .filter(|t| *t != JsonType::Null)
                    .map(|t| t.to_string())
                    .collect(),
            };
            format!("expected {}, found {found}", expected.join(" or "))
        }
        _ => error.masked().to_string(),
    }
}

/// A value for a message: strings bare, anything else as compact JSON, long values cut.
fn short_json(value: &serde_json::Value) -> String {
    const LIMIT: usize = 60;
    let text = match value {
        serde_json::Value::String(text) => format!("`{text}`"),
        other => other.to_string(),
    };
    if text.chars().count() <= LIMIT {
        return text;
    }
    let cut: String = text.chars().take(LIMIT).collect();
    format!("{cut}…")
}

/// The file, location and message of a loader error, with the file name taken out of the
/// message (the diagnostic prints it).
fn describe(error: &ConfigError) -> (Option<PathBuf>, Option<String>, String) {
    let file = error.file().to_owned();
    let text = strip_file(&error.to_string(), &file);
    match error {
        ConfigError::Reference { source, .. } => describe(source),
        ConfigError::Invalid {
            location, message, ..
        } => (Some(file), Some(location.clone()), message.clone()),
        ConfigError::UnknownState { location, .. }
        | ConfigError::Template { location, .. }
        | ConfigError::Expression { location, .. }
        | ConfigError::Unsupported { location, .. } => {
            let text = text
                .strip_prefix(&format!("`{location}`: "))
                .unwrap_or(&text)
                .to_owned();
            (Some(file), Some(location.clone()), text)
        }
        ConfigError::UnknownReference { state, kind, .. } => {
            let field = if *kind == "agent" { "agent" } else { "machine" };
            (
                Some(file),
                Some(format!("data.states.{state}.{field}")),
                text,
            )
        }
        _ => (Some(file), None, text),
    }
}

/// `./a.yml`, `a.yml` and `dir/../a.yml` name one file: the path without `.` parts, and
/// with `dir/..` pairs folded (lexically: messages name files the way the configs do).
pub(crate) fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut parts: Vec<Component<'_>> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(parts.last(), Some(Component::Normal(_))) => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.iter().collect()
}

/// A path for a message: tidied, and relative to the working directory when under it.
pub(crate) fn shown(path: &Path) -> String {
    let tidy = tidy(path);
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| tidy.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative.unwrap_or(tidy).display().to_string()
}

fn strip_file(message: &str, file: &Path) -> String {
    let prefix = format!("{}: ", file.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_owned()
}
