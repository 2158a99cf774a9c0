//! Loading a machine file and every machine it references into a [`MachineSet`].

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use flatmachines_core::config::{Format, MachineRef, parse_text_within};
use flatmachines_core::{ConfigError, Limit, Limits, MachineConfig};

use crate::compile::Compiler;
use crate::definition::{MachineDef, MachineId, MachineSet};
use crate::template::TemplateEngine;

enum Source {
    File {
        display: PathBuf,
        canonical: PathBuf,
    },
    Document {
        value: Value,
        file: PathBuf,
        dir: PathBuf,
    },
}

struct Pending {
    id: MachineId,
    source: Source,
    /// Who referenced this machine: the referencing file and the `machines:` entry.
    referrer: Option<(PathBuf, String)>,
}

struct Loader {
    by_path: HashMap<PathBuf, MachineId>,
    pending: VecDeque<Pending>,
    machines: Vec<Option<MachineDef>>,
    templates: TemplateEngine,
    warnings: Vec<flatmachines_core::ConfigWarning>,
    /// The bounds the caller chose; the root machine's settings fill in the rest.
    requested: Limits,
    /// `requested`, then the root's settings: what the loaded set runs with.
    limits: Limits,
}

impl Loader {
    fn new(requested: &Limits) -> Loader {
        Loader {
            by_path: HashMap::new(),
            pending: VecDeque::new(),
            machines: Vec::new(),
            templates: TemplateEngine::new(),
            warnings: Vec::new(),
            requested: *requested,
            limits: *requested,
        }
    }
}

/// Loads `path` and the machines it references.
pub(crate) fn load_file(path: &Path, limits: &Limits) -> Result<MachineSet, ConfigError> {
    let canonical = canonical(path)?;
    let mut loader = Loader::new(limits);
    loader.by_path.insert(canonical.clone(), 0);
    loader.machines.push(None);
    loader.pending.push_back(Pending {
        id: 0,
        source: Source::File {
            display: tidy(path),
            canonical,
        },
        referrer: None,
    });
    loader.run()
}

/// Loads a machine document given as a value. `file` names it in messages and `dir` is where
/// its relative references resolve.
pub(crate) fn load_document(
    value: Value,
    file: &Path,
    dir: &Path,
    limits: &Limits,
) -> Result<MachineSet, ConfigError> {
    let mut loader = Loader::new(limits);
    loader.machines.push(None);
    loader.pending.push_back(Pending {
        id: 0,
        source: Source::Document {
            value,
            file: file.to_owned(),
            dir: dir.to_owned(),
        },
        referrer: None,
    });
    loader.run()
}

/// Parses config text the way a file of that name would be parsed.
pub(crate) fn parse_document(
    text: &str,
    file: &Path,
    limits: &Limits,
) -> Result<Value, ConfigError> {
    parse_text_within(text, file, Format::from_path(file), limits)
}

fn canonical(path: &Path) -> Result<PathBuf, ConfigError> {
    path.canonicalize().map_err(|source| ConfigError::Read {
        file: tidy(path),
        source,
    })
}

/// `a/./b.yml` → `a/b.yml`, for messages.
fn tidy(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

impl Loader {
    fn run(mut self) -> Result<MachineSet, ConfigError> {
        while let Some(pending) = self.pending.pop_front() {
            let referrer = pending.referrer.clone();
            if let Err(error) = self.load(pending) {
                return Err(match referrer {
                    Some((file, location)) => ConfigError::Reference {
                        file,
                        location,
                        source: Box::new(error),
                    },
                    None => error,
                });
            }
        }
        let machines = self.machines.into_iter().flatten().collect();
        let mut templates = self.templates;
        templates.set_limits(&self.limits);
        Ok(MachineSet {
            machines,
            templates,
            warnings: self.warnings,
            limits: self.limits,
        })
    }

    fn load(&mut self, pending: Pending) -> Result<(), ConfigError> {
        let (document, file, dir, source_file) = match pending.source {
            Source::File { display, canonical } => {
                let text = read(&display, &canonical, &self.requested)?;
                let document = parse_document(&text, &display, &self.requested)?;
                let dir = canonical
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                (document, display, dir, Some(canonical))
            }
            Source::Document { value, file, dir } => (value, file, dir, None),
        };
        let (config, warnings) = MachineConfig::from_value(document, &file)?;
        self.warnings.extend(warnings);
        let chosen = settings_limits(&config, &file)?;
        if pending.id == 0 {
            self.limits = self.requested.or(&chosen);
        }
        let children = self.discover_children(&config, &file, &dir)?;
        let definition = Compiler {
            file: &file,
            config_dir: dir,
            children: &children,
            templates: &mut self.templates,
            warnings: &mut self.warnings,
            engine: flatmachines_expr::ExpressionEngine::Simple,
        }
        .compile(config)?;
        let definition = MachineDef {
            source_file,
            ..definition
        };
        if let Some(slot) = self.machines.get_mut(pending.id) {
            *slot = Some(definition);
        }
        Ok(())
    }

    /// Gives every `machines:` entry an id, queueing the ones not seen yet.
    fn discover_children(
        &mut self,
        config: &MachineConfig,
        file: &Path,
        dir: &Path,
    ) -> Result<IndexMap<String, MachineId>, ConfigError> {
        let mut ids = IndexMap::new();
        for (name, reference) in &config.data.machines {
            let location = format!("data.machines.{name}");
            let referrer = Some((file.to_owned(), location.clone()));
            let id = match reference {
                MachineRef::Path(path) => {
                    let joined = dir.join(path);
                    let display =
                        tidy(&Path::new(file).parent().unwrap_or(Path::new("")).join(path));
                    let canonical =
                        joined
                            .canonicalize()
                            .map_err(|source| ConfigError::Reference {
                                file: file.to_owned(),
                                location: location.clone(),
                                source: Box::new(ConfigError::Read {
                                    file: display.clone(),
                                    source,
                                }),
                            })?;
                    match self.by_path.get(&canonical) {
                        Some(&id) => id,
                        None => {
                            let id = self.allocate();
                            self.by_path.insert(canonical.clone(), id);
                            self.pending.push_back(Pending {
                                id,
                                source: Source::File { display, canonical },
                                referrer,
                            });
                            id
                        }
                    }
                }
                MachineRef::Inline(document) => {
                    let id = self.allocate();
                    self.pending.push_back(Pending {
                        id,
                        source: Source::Document {
                            value: (**document).clone(),
                            // Messages about an inline machine point into its parent.
                            file: PathBuf::from(format!("{}#{location}", file.display())),
                            dir: dir.to_owned(),
                        },
                        referrer,
                    });
                    id
                }
            };
            ids.insert(name.clone(), id);
        }
        Ok(ids)
    }

    fn allocate(&mut self) -> MachineId {
        self.machines.push(None);
        self.machines.len() - 1
    }
}

/// The bounds a machine's `settings` choose (`max_depth`, `limits:`). Every machine's are
/// checked; the root's apply to the whole set.
fn settings_limits(config: &MachineConfig, file: &Path) -> Result<Limits, ConfigError> {
    let settings = &config.data.settings.extra;
    Limits::from_settings(settings.get("max_depth"), settings.get("limits")).map_err(
        |(location, error)| ConfigError::Invalid {
            file: file.to_owned(),
            location,
            message: error.to_string(),
        },
    )
}

/// Reads a config file, refusing one over the `config_bytes` bound before reading it. The
/// read itself is bounded too, so a file that grows, or a device such as `/dev/zero`, stops at
/// the bound.
pub(crate) fn read(
    display: &Path,
    canonical: &Path,
    limits: &Limits,
) -> Result<String, ConfigError> {
    use std::io::Read;
    let error = |source| ConfigError::Read {
        file: display.to_owned(),
        source,
    };
    let bound = limits.get(Limit::ConfigBytes);
    let too_large = |size: u64| ConfigError::Limit {
        file: display.to_owned(),
        line: None,
        column: None,
        message: format!("the file is {size} bytes or more"),
        limit: Limit::ConfigBytes,
        value: bound,
    };
    let file = std::fs::File::open(canonical).map_err(error)?;
    let size = file.metadata().map_err(error)?.len();
    if size > bound {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(bound.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(error)?;
    if bytes.len() as u64 > bound {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is not UTF-8 text ({e})"),
        ))
    })
}
