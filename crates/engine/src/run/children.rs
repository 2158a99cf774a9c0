//! Child machines: `machine:` (one or a list), `foreach`, and the task each child runs in.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::future::select_all;
use futures::stream::FuturesUnordered;
use serde_json::{Map, Value};
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

use flatmachines_core::config::Mode;
use flatmachines_core::config::describe;
use flatmachines_core::{
    Context, InvokeRequest, JsonMap, Limit, StateError, ToolOutcome, result_uri,
};

use super::{
    Begin, ChildReport, Execution, Parent, RunOutcome, RunStatus, StateFailure, backend_error, ids,
};
use crate::checkpoint::{CheckpointError, load_latest};
use crate::definition::{ChildRef, Children, MachineId, MachineSet, MachineToolDef, StateDef};
use crate::error::{RunError, error_types, state_error};
use crate::runtime::Prepared;
use crate::template::{Root, Vars};

use super::state::template_error;

/// A running child machine, tied to its parent: dropping the handle (the parent's wait timed
/// out, or the parent itself was stopped) stops the child and, through its own handles, the
/// whole subtree under it.
pub(crate) struct ChildTask(JoinHandle<ChildReport>);

impl Future for ChildTask {
    type Output = Result<ChildReport, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl ChildTask {
    /// Starts `child` as execution `id` under `parent`. With `resume`, a child that ran
    /// before (it has checkpoints) is resumed, or its stored output reused.
    pub(crate) fn spawn(
        prepared: &Arc<Prepared>,
        child: &ChildRef,
        id: String,
        parent: Parent,
        input: JsonMap,
        resume: bool,
    ) -> ChildTask {
        ChildTask(tokio::spawn(
            child_task(
                Arc::clone(prepared),
                child.id,
                child.name.clone(),
                id,
                parent,
                input,
                resume,
            )
            // The child's spans nest under the state that started it.
            .in_current_span(),
        ))
    }
}

impl Drop for ChildTask {
    fn drop(&mut self) {
        // A no-op for a task that already finished.
        self.0.abort();
    }
}

/// The error for starting `child` under `chain` (the machines above it), when that would nest
/// deeper than the `machine_depth` limit.
pub(crate) fn depth_error(
    set: &MachineSet,
    chain: &[Arc<str>],
    child: MachineId,
) -> Option<StateError> {
    let limit = set.limits.get(Limit::MachineDepth);
    let depth = chain.len() as u64;
    if depth <= limit {
        return None;
    }
    let name = set.machines.get(child).map_or("?", |m| m.name.as_str());
    let names: Vec<&str> = chain.iter().map(|n| &**n).chain([name]).collect();
    // The whole chain of a runaway recursion is mostly repetition: its ends tell the story.
    let shown = if names.len() > 12 {
        format!(
            "{} -> ... ({} more) ... -> {}",
            names[..4].join(" -> "),
            names.len() - 8,
            names[names.len() - 4..].join(" -> ")
        )
    } else {
        names.join(" -> ")
    };
    Some(state_error(
        error_types::DEPTH_LIMIT,
        format!(
            "child machines nest too deep: {shown} is {depth} levels below the machine that was run ({})",
            Limit::MachineDepth.hint(limit)
        ),
    ))
}

/// Counts one more child machine started in `parent`'s tree, and the error when that goes past
/// the `tree_machines` limit: `foreach` nested a few levels deep multiplies quickly.
fn tree_error(set: &MachineSet, parent: &Parent) -> Option<StateError> {
    let limit = set.limits.get(Limit::TreeMachines);
    let started = parent.started.fetch_add(1, Ordering::Relaxed) + 1;
    if started <= limit {
        return None;
    }
    Some(state_error(
        error_types::TREE_LIMIT,
        format!(
            "the run has started more than {limit} child machines under the machine that was run ({})",
            Limit::TreeMachines.hint(limit)
        ),
    ))
}

/// A `foreach` fan-out counted in the tree ahead of its children's start: given back if it
/// does not fit, or an item's input fails to render, and none of them start.
struct Reservation {
    started: Arc<std::sync::atomic::AtomicU64>,
    unused: u64,
}

impl Reservation {
    fn keep(mut self) {
        self.unused = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.unused > 0 {
            self.started.fetch_sub(self.unused, Ordering::Relaxed);
        }
    }
}

/// Whether `error` is a bound of the whole run tree, which no level should wrap or swallow.
pub(crate) fn is_tree_bound(error: &StateError) -> bool {
    error.error_type == error_types::DEPTH_LIMIT || error.error_type == error_types::TREE_LIMIT
}

/// How a child's failure appears among its siblings' outputs.
fn error_entry(error: &StateError) -> Value {
    let mut entry = Map::new();
    entry.insert("_error".into(), Value::String(error.message.clone()));
    entry.insert(
        "_error_type".into(),
        Value::String(error.error_type.clone()),
    );
    Value::Object(entry)
}

fn joined(report: Result<ChildReport, JoinError>) -> ChildReport {
    report.unwrap_or_else(|e| ChildReport {
        execution_id: String::new(),
        result: Err(state_error(
            error_types::INTERNAL,
            format!("the child machine's task ended abnormally: {e}"),
        )),
        api_calls: 0,
        cost: 0.0,
    })
}

fn timed_out(state: &StateDef, timeout: Duration) -> StateError {
    state_error(
        error_types::TIMEOUT,
        format!(
            "the child machines of state `{}` did not finish within {}s",
            state.name,
            timeout.as_secs_f64()
        ),
    )
}

/// Runs `future`, or gives up after `timeout`.
async fn within<F: Future>(timeout: Option<Duration>, future: F) -> Option<F::Output> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

impl Execution {
    /// Runs a state's child machines and returns their combined output.
    pub(super) async fn run_children(
        &mut self,
        state: &StateDef,
        work: &Children,
        step: u64,
        context: &Context,
    ) -> Result<Value, StateFailure> {
        let templates = &self.set.templates;
        let vars = Vars::state(context.shared());
        match work {
            Children::Single {
                child,
                input,
                timeout,
            } => {
                let input = input.render_map(templates, &vars).map_err(template_error)?;
                drop(vars);
                let id = ids::child_execution_id(&self.id, step, &state.name, &child.name);
                let handle = self.spawn(child, id, input);
                let Some(report) = within(*timeout, handle).await else {
                    return Err(timed_out(state, timeout.unwrap_or_default()).into());
                };
                let report = joined(report);
                self.api_calls += report.api_calls;
                self.cost += report.cost;
                Ok(report.result?)
            }
            Children::List {
                entries,
                mode,
                timeout,
            } => {
                let mut inputs = Vec::with_capacity(entries.len());
                for (_, tree) in entries {
                    inputs.push(tree.render_map(templates, &vars).map_err(template_error)?);
                }
                drop(vars);
                let handles = entries
                    .iter()
                    .zip(inputs)
                    .map(|((child, _), input)| {
                        let id = ids::child_execution_id(&self.id, step, &state.name, &child.name);
                        self.spawn(child, id, input)
                    })
                    .collect();
                let outputs = self.collect(state, handles, *mode, *timeout).await?;
                Ok(Value::Object(
                    outputs
                        .into_iter()
                        .map(|(index, value)| (entries[index].0.name.clone(), value))
                        .collect(),
                ))
            }
            Children::Foreach {
                items,
                as_var,
                key,
                child,
                input,
                mode,
                timeout,
            } => {
                let items = match items.render(templates, &vars).map_err(template_error)? {
                    Value::Array(items) => items,
                    other => {
                        return Err(state_error(
                            error_types::INVALID_VALUE,
                            format!(
                                "`foreach` of state `{}` must yield a list, got {}: {}",
                                state.name,
                                describe(&other),
                                super::truncated(&other, 80)
                            ),
                        )
                        .into());
                    }
                };
                let max_items = self.set.limits.get(Limit::ForeachItems);
                if items.len() as u64 > max_items {
                    return Err(state_error(
                        error_types::INVALID_VALUE,
                        format!(
                            "`foreach` of state `{}` yielded {} items ({})",
                            state.name,
                            items.len(),
                            Limit::ForeachItems.hint(max_items)
                        ),
                    )
                    .into());
                }
                // Reserve the whole fan-out at once, before starting any of it: siblings run
                // their own `foreach` concurrently, and a check that only read the count would
                // let each of a thousand pass before any child had counted itself. A thousand
                // doomed children each recording a failure would also cost more than the
                // bound saves.
                let tree_limit = self.set.limits.get(Limit::TreeMachines);
                let fan_out = items.len() as u64;
                let before = self.started.fetch_add(fan_out, Ordering::Relaxed);
                let reservation = Reservation {
                    started: Arc::clone(&self.started),
                    unused: fan_out,
                };
                if before.saturating_add(fan_out) > tree_limit {
                    return Err(state_error(
                        error_types::TREE_LIMIT,
                        format!(
                            "`foreach` of state `{}` would start {} child machines, past the {tree_limit} the run may start ({})",
                            state.name,
                            items.len(),
                            Limit::TreeMachines.hint(tree_limit)
                        ),
                    )
                    .into());
                }
                // Render every input before starting any child, so a bad item starts none.
                let mut keys = Vec::new();
                let mut seen = HashSet::new();
                let mut inputs = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    let item_vars = vars
                        .clone()
                        .with(as_var.clone(), Root::Value(Arc::new(item)));
                    if let Some(key) = key {
                        let rendered = key.render(templates, &item_vars).map_err(template_error)?;
                        let key = key_text(&rendered).ok_or_else(|| {
                            state_error(
                                error_types::INVALID_VALUE,
                                format!(
                                    "the `key` of item {index} in state `{}` must be a string or a number, got {}",
                                    state.name,
                                    describe(&rendered)
                                ),
                            )
                        })?;
                        if !seen.insert(key.clone()) {
                            return Err(state_error(
                                error_types::INVALID_VALUE,
                                format!(
                                    "the `key` `{key}` of item {index} in state `{}` repeats an earlier item's key",
                                    state.name
                                ),
                            )
                            .into());
                        }
                        keys.push(key);
                    }
                    inputs.push(
                        input
                            .render_map(templates, &item_vars)
                            .map_err(template_error)?,
                    );
                }
                drop(vars);
                // The children were counted by the reservation; from here on they start.
                reservation.keep();
                let handles = inputs
                    .into_iter()
                    .enumerate()
                    .map(|(index, input)| {
                        let id = ids::child_execution_id(
                            &self.id,
                            step,
                            &state.name,
                            &index.to_string(),
                        );
                        let mut parent = self.as_parent();
                        parent.counted = true;
                        ChildTask::spawn(&self.prepared, child, id, parent, input, self.resumed)
                    })
                    .collect();
                let outputs = self.collect(state, handles, *mode, *timeout).await?;
                Ok(if key.is_some() {
                    Value::Object(
                        outputs
                            .into_iter()
                            .map(|(index, value)| (keys[index].clone(), value))
                            .collect(),
                    )
                } else {
                    Value::Array(outputs.into_iter().map(|(_, value)| value).collect())
                })
            }
        }
    }

    pub(super) fn spawn(&self, child: &ChildRef, id: String, input: JsonMap) -> ChildTask {
        ChildTask::spawn(
            &self.prepared,
            child,
            id,
            self.as_parent(),
            input,
            self.resumed,
        )
    }

    /// Waits for children as `mode` says: all of them (`settled`), or the first (`any`, the
    /// rest finish in the background). Failed children become error entries.
    async fn collect(
        &mut self,
        state: &StateDef,
        handles: Vec<ChildTask>,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<Vec<(usize, Value)>, StateFailure> {
        self.observe_fan_out(state, handles.len());
        // On a timeout the unfinished handles are dropped, which stops their children.
        match mode {
            Mode::Settled => {
                let count = handles.len();
                let mut pending: FuturesUnordered<_> = self
                    .observe_children(state, handles)
                    .into_iter()
                    .enumerate()
                    .map(|(index, handle)| async move { (index, handle.await) })
                    .collect();
                let mut reports: Vec<Option<ChildReport>> = Vec::new();
                reports.resize_with(count, || None);
                let wait_all = async {
                    while let Some((index, report)) = pending.next().await {
                        let report = joined(report);
                        // A bound of the whole tree fails the run whatever the siblings do:
                        // stop them now (dropping their handles) rather than letting a
                        // runaway fan-out run to its end.
                        let bound = report
                            .result
                            .as_ref()
                            .err()
                            .filter(|error| is_tree_bound(error))
                            .cloned();
                        reports[index] = Some(report);
                        if let Some(error) = bound {
                            return Err(error);
                        }
                    }
                    Ok(())
                };
                match within(timeout, wait_all).await {
                    None => Err(timed_out(state, timeout.unwrap_or_default()).into()),
                    Some(Err(error)) => {
                        drop(pending);
                        for finished in reports.into_iter().flatten() {
                            self.api_calls += finished.api_calls;
                            self.cost += finished.cost;
                        }
                        if self.runaway.is_none() {
                            self.runaway = Some(error.clone());
                        }
                        Err(error.into())
                    }
                    Some(Ok(())) => Ok(reports
                        .into_iter()
                        .enumerate()
                        .filter_map(|(index, report)| Some((index, self.take_output(report?))))
                        .collect()),
                }
            }
            Mode::Any => {
                if handles.is_empty() {
                    return Ok(Vec::new());
                }
                let Some((first, index, rest)) = within(timeout, select_all(handles)).await else {
                    return Err(timed_out(state, timeout.unwrap_or_default()).into());
                };
                self.background.extend(rest);
                let report = joined(first);
                self.observe_child(state, &report);
                Ok(vec![(index, self.take_output(report))])
            }
        }
    }

    /// Runs child machine `tool` for one tool call of a loop in state `state`: the call's
    /// arguments are its input, its output (as JSON text) the result. It runs as any child
    /// does, with its own checkpoints, under an id derived from the call's, so a call made
    /// again after a crash resumes the same child (or reuses its stored output). Every
    /// failure is a tool error for the model.
    pub(super) async fn run_machine_tool(
        &mut self,
        state: &str,
        tool: &MachineToolDef,
        call: &flatmachines_core::ToolCallId,
        arguments: &Value,
        timeout: Option<Duration>,
    ) -> ToolOutcome {
        let name = tool.child.name.as_str();
        let Value::Object(input) = arguments else {
            return ToolOutcome::error(format!(
                "Tool '{name}' takes a JSON object (the machine's input), not {arguments}."
            ));
        };
        let id = ids::child_execution_id(
            &self.id,
            call.step,
            state,
            &format!("tool:{}:{}", call.turn, call.index),
        );
        let task = self.spawn(&tool.child, id, input.clone());
        let Some(report) = within(timeout, task).await else {
            return ToolOutcome::error(format!(
                "Tool '{name}' timed out after {}s",
                timeout.map_or(0.0, |t| t.as_secs_f64())
            ));
        };
        match self.account(joined(report)) {
            Ok(output) => ToolOutcome {
                content: output.to_string(),
                is_error: false,
            },
            Err(error) => ToolOutcome::error(format!(
                "Error executing '{name}': the machine failed ({}): {}",
                error.error_type, error.message
            )),
        }
    }

    /// A finished child's output, or its failure as an error entry.
    fn take_output(&mut self, report: ChildReport) -> Value {
        self.account(report)
            .unwrap_or_else(|error| error_entry(&error))
    }

    /// Adds a finished child's calls and cost to this execution's, keeps a bound of the whole
    /// tree it hit for the end of the run, and gives its result.
    fn account(&mut self, report: ChildReport) -> Result<Value, StateError> {
        self.api_calls += report.api_calls;
        self.cost += report.cost;
        if let Err(error) = &report.result
            && is_tree_bound(error)
            && self.runaway.is_none()
        {
            self.runaway = Some(error.clone());
        }
        report.result
    }
}

fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Writes the output of a run started by a parent in another process — or its error, as an
/// in-process child's would be reported — to `flatagents://{execution_id}/result`. A run
/// that found the execution locked by another runner leaves the result to that one.
pub(crate) async fn publish_result(
    results: &dyn flatmachines_core::ResultBackend,
    machine: &str,
    execution_id: &str,
    outcome: &Result<RunOutcome, RunError>,
) -> Result<(), RunError> {
    let payload = match outcome {
        Ok(RunOutcome {
            status: RunStatus::Completed,
            output,
            ..
        }) => output.clone(),
        Ok(RunOutcome {
            status: RunStatus::StepLimit { limit, state },
            ..
        }) => error_entry(&state_error(
            error_types::STEP_LIMIT,
            format!(
                "machine `{machine}` stopped at its step limit of {limit} before state `{state}`"
            ),
        )),
        // Another runner holds the execution and will publish its result; an error from this
        // one would overwrite it.
        Err(RunError::LockHeld { .. }) => return Ok(()),
        Err(error) => error_entry(&error.as_state_error()),
    };
    let uri = result_uri(execution_id, "result");
    results
        .write(&uri, payload)
        .await
        .map_err(|e| RunError::Failed {
            machine: machine.to_owned(),
            state: None,
            execution_id: execution_id.to_owned(),
            error: state_error(
                error_types::BACKEND,
                format!("cannot write the result to `{uri}` for the parent to read: {e}"),
            ),
        })
}

/// Runs one child machine to the end and leaves its output (or its error) at
/// `flatagents://{execution_id}/result`.
pub(crate) fn child_task(
    prepared: Arc<Prepared>,
    machine: MachineId,
    name: String,
    execution_id: String,
    parent: Parent,
    input: JsonMap,
    resume: bool,
) -> Pin<Box<dyn Future<Output = ChildReport> + Send>> {
    Box::pin(async move {
        let bound = depth_error(&prepared.set, &parent.chain, machine).or_else(|| {
            if parent.counted {
                None
            } else {
                tree_error(&prepared.set, &parent)
            }
        });
        if let Some(error) = bound {
            return ChildReport {
                execution_id,
                result: Err(error),
                api_calls: 0,
                cost: 0.0,
            };
        }
        if let Some(invoker) = prepared.invoker.clone() {
            let mut request = InvokeRequest::new(name, execution_id.clone(), input);
            request.parent_execution_id = Some(parent.id);
            request.machine_chain = parent.chain.iter().map(|n| n.to_string()).collect();
            request
                .config_file
                .clone_from(&prepared.set.machines[machine].source_file);
            let result = match invoker.invoke(request, &*prepared.results, None).await {
                Ok(Value::Object(map)) if map.contains_key("_error") => Err(StateError {
                    error_type: map
                        .get("_error_type")
                        .and_then(Value::as_str)
                        .unwrap_or(error_types::INTERNAL)
                        .to_owned(),
                    message: map
                        .get("_error")
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                        .unwrap_or_default(),
                }),
                Ok(output) => Ok(output),
                Err(e) => Err(backend_error(e)),
            };
            return ChildReport {
                execution_id,
                result,
                api_calls: 0,
                cost: 0.0,
            };
        }
        let begin = if resume {
            match load_latest(&*prepared.persistence, &execution_id).await {
                Ok(Some(snapshot)) => Begin::Snapshot(Box::new(snapshot)),
                Ok(None) => Begin::Fresh(input),
                // The pointer commits a checkpoint: snapshots without one were written by a
                // child stopped before its first checkpoint completed, so it starts afresh.
                Err(CheckpointError::MissingPointer { .. }) => Begin::Fresh(input),
                Err(e) => {
                    return ChildReport {
                        execution_id,
                        result: Err(super::resume::child_checkpoint_error(e)),
                        api_calls: 0,
                        cost: 0.0,
                    };
                }
            }
        } else {
            Begin::Fresh(input)
        };
        let resumed = matches!(begin, Begin::Snapshot(_));
        let outcome = Execution::new(
            Arc::clone(&prepared),
            machine,
            execution_id.clone(),
            Some(parent),
            resumed,
        )
        .execute(begin, None)
        .await;
        let (mut result, api_calls, cost) = match outcome {
            Ok(outcome) => {
                let result = match outcome.status {
                    RunStatus::Completed => Ok(outcome.output),
                    RunStatus::StepLimit { limit, state } => Err(state_error(
                        error_types::STEP_LIMIT,
                        format!(
                            "machine `{name}` stopped at its step limit of {limit} before state `{state}`"
                        ),
                    )),
                };
                (result, outcome.total_api_calls, outcome.total_cost)
            }
            // The depth error already names the whole chain; wrapping it once per level
            // would repeat it.
            Err(RunError::Failed { error, .. }) if is_tree_bound(&error) => (Err(error), 0, 0.0),
            Err(RunError::Failed { state, error, .. }) => {
                let place = state
                    .map(|s| format!(" in state `{s}`"))
                    .unwrap_or_default();
                let error = StateError {
                    message: format!("machine `{name}` failed{place}: {}", error.message),
                    error_type: error.error_type,
                };
                (Err(error), 0, 0.0)
            }
            Err(other) => (Err(other.as_state_error()), 0, 0.0),
        };
        let payload = match &result {
            Ok(output) => output.clone(),
            Err(error) => error_entry(error),
        };
        let uri = result_uri(&execution_id, "result");
        if let Err(e) = prepared.results.write(&uri, payload).await {
            tracing::warn!(child = %execution_id, error = %e, "could not write the child's result");
            if result.is_ok() {
                result = Err(backend_error(e));
            }
        }
        ChildReport {
            execution_id,
            result,
            api_calls,
            cost,
        }
    })
}
