//! Running a machine: the step loop.
//!
//! Per step: checkpoint `state_enter` → hook `on_state_enter` → checkpoint `execute` → the
//! state's work → checkpoint `state_exit` → hook `on_state_exit` → stop if final → the first
//! transition whose condition holds → hook `on_transition` (may redirect).

mod budget;
mod children;
mod ids;
mod resume;
mod state;
mod step_loop;
mod telemetry;
mod tool_journal;
mod tool_loop;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use futures::stream::FuturesUnordered;
use serde_json::Value;
use tracing::Instrument;

use flatmachines_core::hooks::HookError;
use flatmachines_core::{
    ExecutionLock, JsonMap, LaunchIntent, StateError, ToolLoopState, ToolServerPool,
};
use flatmachines_expr::{Binding, Scope};

use crate::checkpoint::CheckpointWriter;

use crate::definition::{MachineDef, MachineId, MachineSet};
use crate::error::{RunError, error_types, state_error};
use crate::runtime::Prepared;
pub use budget::Budget;
use budget::TreeBudget;

pub use ids::new_execution_id;
pub(crate) use resume::Begin;
pub use resume::ResumeFailure;

/// Options of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// The execution id (default: a new UUID).
    pub execution_id: Option<String>,
    /// The step limit, over `settings.max_steps` and the default of 1000.
    pub max_steps: Option<u64>,
    /// The execution that started this one in another process (`flatmachines run
    /// --parent-id`). The run records it in its checkpoints and, when it ends, writes its
    /// output — or `{"_error", "_error_type"}` — to `flatagents://{execution_id}/result`
    /// on the result backend, where the parent reads it. It still holds its own execution
    /// lock: the parent's lock lives in another process.
    pub parent_execution_id: Option<String>,
    /// With `parent_execution_id`: the names of the machines above this run, the outermost
    /// first, so that the `machine_depth` limit holds across processes too.
    pub machine_chain: Vec<String>,
    /// With `execution_id`: when that id already has checkpoints, delete them and start
    /// afresh. Without it, such a run is refused with [`RunError::ExecutionExists`].
    pub replace: bool,
    /// What the whole run tree may spend on agents. A run started by a parent in another
    /// process has its own budget.
    pub budget: Budget,
}

/// How [`Runner::resume_with`](crate::Runner::resume_with) continues an execution.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// The step limit, over `settings.max_steps` and the default of 1000.
    pub max_steps: Option<u64>,
    /// What the run tree may spend on agents, counting what it spent before the
    /// interruption.
    pub budget: Budget,
}

/// What a fresh top-level run does with checkpoints already stored under its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Nothing to check: a new id, a child, or a resume.
    Ignore,
    /// Refuse to run.
    Refuse,
    /// Delete them first.
    Replace,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunStatus {
    /// A final state was reached.
    Completed,
    /// The step limit was reached first; the run can be resumed with a higher limit.
    StepLimit {
        /// The limit.
        limit: u64,
        /// The state the run would have entered next.
        state: String,
    },
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// The execution id.
    pub execution_id: String,
    /// The final state's output (`{}` when it has none, or when the run stopped early).
    pub output: Value,
    /// Completed, or stopped at the step limit.
    pub status: RunStatus,
    /// States executed.
    pub steps: u64,
    /// Agent calls, children included.
    pub total_api_calls: u64,
    /// Agent cost, children included.
    pub total_cost: f64,
}

impl RunOutcome {
    /// Whether a final state was reached.
    pub fn is_completed(&self) -> bool {
        self.status == RunStatus::Completed
    }
}

/// A state failure; `fatal` ones (a checkpoint that could not be written) skip `on_error`.
pub(crate) struct StateFailure {
    pub(crate) error: StateError,
    pub(crate) fatal: bool,
}

impl From<StateError> for StateFailure {
    fn from(error: StateError) -> Self {
        StateFailure {
            error,
            fatal: false,
        }
    }
}

/// Where a child execution sits: its parent, and the key of the execution lock its run tree
/// holds (the root's id).
pub(crate) struct Parent {
    pub(crate) id: String,
    pub(crate) lock_key: Arc<str>,
    /// The machines from the root of the tree down to the parent, for the depth limit and its
    /// message.
    pub(crate) chain: Arc<[Arc<str>]>,
    /// How many child machines the whole tree has started, for the `tree_machines` limit.
    pub(crate) started: Arc<AtomicU64>,
    /// The MCP servers the whole tree shares.
    pub(crate) tool_pool: Option<Arc<dyn ToolServerPool>>,
    /// What the whole tree may still spend on agents.
    pub(crate) budget: Arc<TreeBudget>,
    /// The parent already counted this child in `started` (a `foreach` reserves its whole
    /// fan-out at once), so the child must not count itself again.
    pub(crate) counted: bool,
    /// The parent replaced an earlier run under its id, so checkpoints under a child's id are
    /// that run's leftovers, to delete before the child starts afresh.
    pub(crate) replacing: bool,
}

/// What a finished child reports to its parent.
pub(crate) struct ChildReport {
    pub(crate) execution_id: String,
    pub(crate) result: Result<Value, StateError>,
    pub(crate) api_calls: u64,
    pub(crate) cost: f64,
}

pub(crate) async fn run_root(
    prepared: Arc<Prepared>,
    input: JsonMap,
    options: RunOptions,
) -> Result<RunOutcome, RunError> {
    let (execution_id, existing) = match options.execution_id {
        Some(id) => {
            ids::check_execution_id(&id).map_err(RunError::Input)?;
            let existing = if options.replace {
                Existing::Replace
            } else {
                Existing::Refuse
            };
            (id, existing)
        }
        None => (new_execution_id(), Existing::Ignore),
    };
    let Some(parent_id) = options.parent_execution_id else {
        let mut execution = Execution::new(prepared, 0, execution_id, None, false);
        execution.existing = existing;
        execution.budget = Arc::new(TreeBudget::new(options.budget));
        return execution
            .execute_tree(Begin::Fresh(input), options.max_steps)
            .await;
    };
    ids::check_execution_id(&parent_id)
        .map_err(|e| RunError::Input(format!("parent execution id: {e}")))?;
    // A parent in another process: this run is the root of its own tree, so it locks its
    // own id.
    let parent = Parent {
        id: parent_id,
        lock_key: Arc::from(execution_id.as_str()),
        chain: options
            .machine_chain
            .iter()
            .map(|n| Arc::from(n.as_str()))
            .collect(),
        started: Arc::new(AtomicU64::new(0)),
        tool_pool: new_tool_pool(&prepared),
        budget: Arc::new(TreeBudget::new(options.budget)),
        counted: false,
        replacing: false,
    };
    if let Some(error) = children::depth_error(&prepared.set, &parent.chain, 0) {
        return Err(RunError::Input(error.message));
    }
    let results = Arc::clone(&prepared.results);
    let machine = prepared.set.machines[0].name.clone();
    let execution = Execution::new(prepared, 0, execution_id.clone(), Some(parent), false);
    let outcome = execution
        .execute_tree(Begin::Fresh(input), options.max_steps)
        .await;
    children::publish_result(&*results, &machine, &execution_id, &outcome).await?;
    outcome
}

pub(crate) async fn resume_root(
    prepared: Arc<Prepared>,
    execution_id: &str,
    options: ResumeOptions,
) -> Result<RunOutcome, RunError> {
    ids::check_execution_id(execution_id).map_err(RunError::Input)?;
    let mut execution = Execution::new(prepared, 0, execution_id.to_owned(), None, true);
    execution.budget = Arc::new(TreeBudget::new(options.budget));
    execution
        .execute_tree(Begin::Latest, options.max_steps)
        .await
}

/// A pool for the MCP servers of a new run tree, when the runtime can start any.
fn new_tool_pool(prepared: &Prepared) -> Option<Arc<dyn ToolServerPool>> {
    prepared
        .tool_servers
        .as_ref()
        .map(|launcher| launcher.pool(&prepared.set.limits))
}

/// One execution of one machine.
pub(crate) struct Execution {
    prepared: Arc<Prepared>,
    set: Arc<MachineSet>,
    machine: MachineId,
    id: String,
    parent_id: Option<String>,
    /// The key of the execution lock the run tree holds (the root's id), confirmed before
    /// every checkpoint.
    lock_key: Arc<str>,
    /// The machines from the root of the tree down to this one.
    chain: Arc<[Arc<str>]>,
    /// How many child machines the whole tree has started (shared by every execution in it).
    pub(crate) started: Arc<AtomicU64>,
    /// The MCP servers the whole tree shares, stopped when the root's run ends.
    /// What the run tree may still spend on agents.
    pub(crate) budget: Arc<TreeBudget>,
    pub(crate) tool_pool: Option<Arc<dyn ToolServerPool>>,
    /// A launched child that failed on a bound of the tree (depth, size): unlike other
    /// background failures it fails this run too, or a recursion through `launch` would end
    /// with exit 0.
    pub(crate) runaway: Option<StateError>,
    api_calls: u64,
    cost: f64,
    outbox: Vec<LaunchIntent>,
    /// Launched children and the rest of an `any` fan-out; dropped with the execution.
    background: FuturesUnordered<children::ChildTask>,
    checkpoints: Option<CheckpointWriter>,
    /// Resumed from a checkpoint: children it starts may have run before and are resumed (or
    /// their stored output reused) rather than started afresh.
    resumed: bool,
    /// What a fresh start does with checkpoints already under its id.
    existing: Existing,
    /// The state a tool loop's conditional transition chose mid-loop, taken by the step loop
    /// instead of evaluating the transitions again.
    loop_next: Option<usize>,
    /// The agent's answer recorded by an `agent_result` checkpoint, as `(state, step,
    /// answer)`: the resumed state uses it instead of calling the agent again.
    recorded_answer: Option<(usize, u64, Value)>,
    /// A tool loop's journal recorded by a `tool_call` checkpoint, as `(state, step,
    /// journal)`: the resumed state's loop continues from it.
    recorded_loop: Option<(usize, u64, ToolLoopState)>,
}

impl Execution {
    pub(crate) fn new(
        prepared: Arc<Prepared>,
        machine: MachineId,
        id: String,
        parent: Option<Parent>,
        resumed: bool,
    ) -> Execution {
        let lock_key = parent
            .as_ref()
            .map_or_else(|| Arc::from(id.as_str()), |p| Arc::clone(&p.lock_key));
        let set = Arc::clone(&prepared.set);
        let definition = &set.machines[machine];
        let chain = match &parent {
            Some(parent) => parent
                .chain
                .iter()
                .cloned()
                .chain([Arc::from(definition.name.as_str())])
                .collect(),
            None => Arc::from([Arc::from(definition.name.as_str())]),
        };
        let started = parent
            .as_ref()
            .map_or_else(|| Arc::new(AtomicU64::new(0)), |p| Arc::clone(&p.started));
        let tool_pool = match &parent {
            Some(parent) => parent.tool_pool.clone(),
            None => new_tool_pool(&prepared),
        };
        let budget = parent.as_ref().map_or_else(
            || Arc::new(TreeBudget::default()),
            |p| Arc::clone(&p.budget),
        );
        let existing = match &parent {
            Some(parent) if parent.replacing && !resumed => Existing::Replace,
            _ => Existing::Ignore,
        };
        let parent_id = parent.map(|p| p.id);
        let checkpoints = definition.checkpoints.enabled.then(|| {
            CheckpointWriter::new(
                Arc::clone(&prepared.persistence),
                &id,
                &definition.name,
                &definition.config.spec_version,
                parent_id.as_deref(),
                definition.checkpoints.warn_bytes,
                definition.checkpoints.keep.or(prepared.keep_snapshots),
            )
        });
        Execution {
            prepared,
            set,
            machine,
            id,
            parent_id,
            lock_key,
            chain,
            started,
            tool_pool,
            budget,
            runaway: None,
            api_calls: 0,
            cost: 0.0,
            outbox: Vec::new(),
            background: FuturesUnordered::new(),
            checkpoints,
            resumed,
            existing,
            loop_next: None,
            recorded_answer: None,
            recorded_loop: None,
        }
    }

    /// Runs the root of a run tree, then stops the MCP servers the tree started, whatever
    /// the outcome.
    async fn execute_tree(
        self,
        begin: Begin,
        max_steps: Option<u64>,
    ) -> Result<RunOutcome, RunError> {
        let pool = self.tool_pool.clone();
        let outcome = self.execute(begin, max_steps).await;
        if let Some(pool) = pool {
            pool.shutdown().await;
        }
        outcome
    }

    /// Runs the execution from its start or from a snapshot. The root of a run tree holds the
    /// execution lock for the whole tree; its children run under it.
    pub(crate) async fn execute(
        mut self,
        begin: Begin,
        max_steps: Option<u64>,
    ) -> Result<RunOutcome, RunError> {
        let set = Arc::clone(&self.set);
        let definition = &set.machines[self.machine];
        let guard = if self.is_root() {
            match self.prepared.lock.acquire(&self.id).await {
                Ok(true) => Some(LockGuard {
                    held: Some((Arc::clone(&self.prepared.lock), self.id.clone())),
                }),
                Ok(false) => {
                    return Err(RunError::LockHeld {
                        execution_id: self.id.clone(),
                    });
                }
                Err(e) => return Err(self.failure(definition, None, backend_error(e))),
            }
        } else {
            None
        };
        self.observe_start(definition);
        let span = self.run_span(definition);
        let result = async {
            if matches!(begin, Begin::Fresh(_)) && self.existing != Existing::Ignore {
                self.clear_existing().await?;
            }
            match self.begin(definition, begin).await {
                Ok(start) => self.drive(definition, start, max_steps).await,
                Err(e) => Err(e),
            }
        }
        .instrument(span)
        .await;
        // Launched children have as much right to finish as their parent (the reference waits
        // for them too, even when the parent failed).
        self.drain_background().await;
        let result = match (result, self.runaway.take()) {
            (Ok(_), Some(error)) => Err(self.failure(definition, None, error)),
            (result, _) => result,
        };
        // A budget that ran out ends the run, whatever the machines did with the refusal.
        let mut result = result;
        if let Some(refusal) = self.is_root().then(|| self.budget.refusal()).flatten() {
            let reported = matches!(&result, Err(RunError::Failed { error, .. }) if error.error_type == refusal.error_type);
            if !reported {
                result = Err(self.failure(definition, None, refusal));
            }
        }
        self.observe_finish(definition, &result);
        if let Some(guard) = guard {
            guard.release().await;
        }
        result
    }

    /// Whether this execution holds its tree's lock: true for a top-level run and for a
    /// child started in another process, false for children running under their parent.
    fn is_root(&self) -> bool {
        *self.lock_key == *self.id
    }

    /// Refuses to start over checkpoints already stored under this id, or deletes them when
    /// asked to replace them. Runs under the execution lock, so no runner writes meanwhile.
    async fn clear_existing(&self) -> Result<(), RunError> {
        let persistence = &self.prepared.persistence;
        let prefix = format!("{}/", self.id);
        let definition = &self.set.machines[self.machine];
        let keys = persistence
            .list(&prefix)
            .await
            .map_err(|e| self.failure(definition, None, backend_error(e)))?;
        if keys.is_empty() {
            return Ok(());
        }
        if self.existing == Existing::Replace {
            for key in &keys {
                persistence
                    .delete(key)
                    .await
                    .map_err(|e| self.failure(definition, None, backend_error(e)))?;
            }
            return Ok(());
        }
        let machine = match crate::checkpoint::load_latest(&**persistence, &self.id).await {
            Ok(Some(snapshot)) => Some(snapshot.machine_name),
            _ => None,
        };
        Err(RunError::ExecutionExists {
            execution_id: self.id.clone(),
            machine,
            count: keys.len(),
        })
    }

    /// This execution as the parent of a child it starts.
    pub(super) fn as_parent(&self) -> Parent {
        Parent {
            id: self.id.clone(),
            lock_key: Arc::clone(&self.lock_key),
            chain: Arc::clone(&self.chain),
            started: Arc::clone(&self.started),
            tool_pool: self.tool_pool.clone(),
            budget: Arc::clone(&self.budget),
            counted: false,
            replacing: self.existing == Existing::Replace,
        }
    }

    fn failure(&self, definition: &MachineDef, state: Option<&str>, error: StateError) -> RunError {
        RunError::Failed {
            machine: definition.name.clone(),
            state: state.map(str::to_owned),
            execution_id: self.id.clone(),
            error,
        }
    }
}

/// Holds the root's execution lock; releases it even when the run is dropped half-way (a
/// cancelled task, an aborted caller), so the execution can be resumed in this process.
struct LockGuard {
    held: Option<(Arc<dyn ExecutionLock>, String)>,
}

impl LockGuard {
    async fn release(mut self) {
        if let Some((lock, key)) = self.held.take() {
            release(lock, key).await;
        }
    }
}

async fn release(lock: Arc<dyn ExecutionLock>, key: String) {
    if let Err(e) = lock.release(&key).await {
        tracing::warn!(execution_id = %key, error = %e, "could not release the execution lock");
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let (Some((lock, key)), Ok(runtime)) =
            (self.held.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(release(lock, key));
        }
    }
}

pub(crate) fn backend_error(error: flatmachines_core::Error) -> StateError {
    state_error(error_types::BACKEND, error.to_string())
}

pub(crate) fn hook_error(hook: &str, error: HookError) -> StateError {
    state_error(error_types::HOOK, format!("hook `{hook}` failed: {error}"))
}

static NULL: Value = Value::Null;

/// The variables a transition condition reads.
pub(super) struct ConditionScope<'a> {
    pub(super) context: &'a JsonMap,
    pub(super) output: Option<&'a Value>,
}

impl Scope for ConditionScope<'_> {
    fn lookup(&self, name: &str) -> Option<Binding<'_>> {
        match name {
            "context" | "input" => Some(Binding::Object(self.context)),
            "output" => Some(Binding::Value(self.output.unwrap_or(&NULL))),
            _ => None,
        }
    }
}

/// `value` as JSON, cut after `chars` characters (with `…`), for messages that quote it.
pub(super) fn truncated(value: &Value, chars: usize) -> String {
    let text = value.to_string();
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
