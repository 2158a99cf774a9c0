//! The `DistributedWorkerHooks` hook class: distributed-worker actions over the store a URL
//! names.

use std::path::PathBuf;
use std::sync::Arc;

use flatmachines_core::{JsonMap, MachineHooks};
use flatmachines_distributed::{DistributedWorkerHooks, Launcher};
use flatmachines_engine::RuntimeBuilder;
use serde_json::Value;

use crate::backends::open_store;

/// The environment variable naming the store (`sqlite://…`, `redis://…`, `postgres://…`)
/// that the CLI's `--store` also sets.
pub const STORE_ENV: &str = "FLATMACHINES_STORE";

/// Registers the `DistributedWorkerHooks` hook class (also `distributed`) on `builder`.
///
/// Configs use it as `hooks: {class: DistributedWorkerHooks}`, with optional `args`:
///
/// - `store`: the store URL of the worker registry and work pools; else `default_store` (the
///   CLI's `--store`, or `FLATMACHINES_STORE`). It must be shared by every process of the
///   pool: `sqlite://`, `redis://` or `postgres://`. Leaving it out of the YAML lets the same
///   file run against each of them.
/// - `log_dir`: where workers started by `spawn_workers` write their output, one file per
///   worker (relative to the machine's file; default: discarded).
/// - `program`: the `flatmachines` executable those workers run (default: this one, else
///   `$FLATMACHINES_BIN`, else `flatmachines` on the `PATH`).
pub fn with_distributed_hooks(
    builder: RuntimeBuilder,
    default_store: Option<String>,
) -> RuntimeBuilder {
    let mut builder = builder;
    for class in ["DistributedWorkerHooks", "distributed"] {
        let default_store = default_store.clone();
        builder = builder.hook_type(class, move |args, registry| {
            build(args, registry.config_dir(), default_store.as_deref())
                .map(|hooks| Arc::new(hooks) as Arc<dyn MachineHooks>)
        });
    }
    builder
}

fn text_arg<'a>(args: &'a JsonMap, key: &str) -> Result<Option<&'a str>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(other) => Err(format!(
            "DistributedWorkerHooks: `args.{key}` must be a non-empty string, found {}",
            flatmachines_core::config::describe(other)
        )),
    }
}

fn build(
    args: &JsonMap,
    config_dir: Option<&std::path::Path>,
    default_store: Option<&str>,
) -> Result<DistributedWorkerHooks, String> {
    if let Some(unknown) = args
        .keys()
        .find(|k| !["store", "log_dir", "program"].contains(&k.as_str()))
    {
        return Err(format!(
            "DistributedWorkerHooks: unknown argument `{unknown}` (known: store, log_dir, program)"
        ));
    }
    let url = text_arg(args, "store")?.or(default_store).ok_or_else(|| {
        format!(
            "DistributedWorkerHooks needs the store its workers share: pass --store URL, set {STORE_ENV}, or give `args.store` (sqlite://PATH, redis://HOST:PORT/DB or postgres://USER@HOST:PORT/DB)"
        )
    })?;
    let (registration, work) = open_store(url)
        .and_then(|store| store.shared_workers(url))
        .map_err(|e| format!("DistributedWorkerHooks: {e}"))?;
    let resolve = |path: &str| -> PathBuf {
        match config_dir {
            Some(dir) => dir.join(path),
            None => PathBuf::from(path),
        }
    };
    let mut launcher = Launcher::new().store(url);
    if let Some(dir) = config_dir {
        launcher = launcher.base_dir(dir);
    }
    if let Some(dir) = text_arg(args, "log_dir")? {
        launcher = launcher.log_dir(resolve(dir));
    }
    if let Some(program) = text_arg(args, "program")? {
        // A bare name is looked up on the PATH; a path is relative to the machine's file.
        let program = if program.contains('/') {
            resolve(program)
        } else {
            PathBuf::from(program)
        };
        launcher = launcher.program(program);
    }
    Ok(DistributedWorkerHooks::new(registration, work).with_launcher(launcher))
}
