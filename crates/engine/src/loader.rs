//! Loading a machine file and every machine it references into a [`MachineSet`].

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use flatmachines_core::config::{Format, MachineRef, parse_text};
use flatmachines_core::{ConfigError, MachineConfig};

use crate::compile::Compiler;
use crate::definition::{MachineDef, MachineId, MachineSet};
use crate::template::TemplateEngine;

/// Files larger than this are refused rather than parsed.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

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

#[derive(Default)]
struct Loader {
    by_path: HashMap<PathBuf, MachineId>,
    pending: VecDeque<Pending>,
    machines: Vec<Option<MachineDef>>,
    templates: TemplateEngine,
    warnings: Vec<flatmachines_core::ConfigWarning>,
}

/// Loads `path` and the machines it references.
pub(crate) fn load_file(path: &Path) -> Result<MachineSet, ConfigError> {
    let canonical = canonical(path)?;
    let mut loader = Loader::default();
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
) -> Result<MachineSet, ConfigError> {
    let mut loader = Loader::default();
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
pub(crate) fn parse_document(text: &str, file: &Path) -> Result<Value, ConfigError> {
    parse_text(text, file, Format::from_path(file))
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
        Ok(MachineSet {
            machines,
            templates: self.templates,
            warnings: self.warnings,
        })
    }

    fn load(&mut self, pending: Pending) -> Result<(), ConfigError> {
        let (document, file, dir, source_file) = match pending.source {
            Source::File { display, canonical } => {
                let text = read(&display, &canonical)?;
                let document = parse_document(&text, &display)?;
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

fn read(display: &Path, canonical: &Path) -> Result<String, ConfigError> {
    let error = |source| ConfigError::Read {
        file: display.to_owned(),
        source,
    };
    let size = std::fs::metadata(canonical).map_err(error)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is {size} bytes; config files are limited to {MAX_CONFIG_BYTES}"),
        )));
    }
    std::fs::read_to_string(canonical).map_err(error)
}
