//! A tool loop's journal: written at each `tool_call` checkpoint (after every model turn and
//! every answered tool call), and read back so that a resumed loop goes on from the last
//! thing it recorded instead of asking the model or a tool again.

use std::time::{Duration, Instant};

use flatmachines_core::llm::Message;
use flatmachines_core::{CheckpointEvent, Context, JsonMap, ToolLoopJournal, ToolLoopState};

use super::tool_loop::{LoopSite, Progress, TurnCalls};
use super::{Execution, StateFailure};
use crate::checkpoint::ToolLoopRecord;
use crate::error::{error_types, state_error};

/// A loop taken up from its journal.
pub(super) struct ResumedLoop {
    /// The agent input the loop started with.
    pub(super) input: JsonMap,
    pub(super) progress: Progress,
    /// The latest turn's calls, and how far the loop had got with them.
    pub(super) turn: TurnCalls,
    /// When the loop started, as `total_timeout` counts it: the time it ran before the
    /// interruption is kept.
    pub(super) started: Instant,
}

impl Execution {
    /// Takes up the loop of state `index` from the journal a `tool_call` checkpoint
    /// recorded. A journal of another agent (the config changed) is set aside with a warning,
    /// and one without a journal (upstream's) is not continued.
    pub(super) fn continue_loop(
        &self,
        index: usize,
        agent: &str,
        recorded: ToolLoopState,
    ) -> Result<Option<ResumedLoop>, StateFailure> {
        let Some(journal) = recorded.journal else {
            return Ok(None);
        };
        let state_name = &self.set.machines[self.machine].states[index].name;
        if journal.agent != agent {
            tracing::warn!(
                state = %state_name,
                agent,
                recorded = %journal.agent,
                "the tool loop's journal was written for another agent: the loop starts again"
            );
            return Ok(None);
        }
        let conversation = recorded
            .chain
            .into_iter()
            .map(serde_json::from_value::<Message>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StateFailure {
                error: state_error(
                    error_types::BACKEND,
                    format!(
                        "the `tool_call` checkpoint of state `{state_name}` holds a `tool_loop_state.chain` that is not a list of chat messages ({e}); the loop cannot continue from it"
                    ),
                ),
                fatal: true,
            })?;
        let answered = journal.answered.map(|n| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(journal.calls.len())
        });
        let turn = TurnCalls {
            calls: journal.calls.into(),
            dispatched: answered.is_some(),
            skip: journal.skip,
            answered: answered.unwrap_or(0),
        };
        let progress = Progress {
            conversation,
            turns: recorded.turns,
            calls: recorded.tool_calls_count,
            cost: recorded.loop_cost,
            content: journal.content,
            structured: journal.structured,
        };
        let elapsed = Duration::try_from_secs_f64(journal.elapsed_seconds).unwrap_or_default();
        tracing::info!(
            state = %state_name,
            agent,
            turns = progress.turns,
            tool_calls = progress.calls,
            answered = turn.answered,
            of = turn.calls.len(),
            "the tool loop continues from its journal: what it recorded is not asked for again"
        );
        Ok(Some(ResumedLoop {
            input: journal.input,
            progress,
            turn,
            started: Instant::now()
                .checked_sub(elapsed)
                .unwrap_or_else(Instant::now),
        }))
    }

    /// Checkpoints the loop (`tool_call`) before what it just recorded is used. A write that
    /// fails is fatal, as for the outbox: the loop would otherwise go on unrecorded.
    pub(super) async fn journal(
        &mut self,
        site: &LoopSite<'_>,
        input: &JsonMap,
        progress: &Progress,
        turn: &TurnCalls,
        started: Instant,
        context: &Context,
    ) -> Result<(), StateFailure> {
        if self.checkpoints.is_none() {
            return Ok(());
        }
        let journal = ToolLoopJournal {
            agent: site.call.name.clone(),
            input: input.clone(),
            calls: turn.calls.to_vec(),
            answered: turn.dispatched.then_some(turn.answered as u64),
            skip: turn.skip.clone(),
            content: progress.content.clone(),
            structured: progress.structured.clone(),
            elapsed_seconds: started.elapsed().as_secs_f64(),
        };
        let record = ToolLoopRecord {
            chain: &progress.conversation,
            turns: progress.turns,
            tool_calls_count: progress.calls,
            loop_cost: progress.cost,
            journal: &journal,
        };
        let state = &site.definition.states[site.index].name;
        self.checkpoint_with(
            site.definition,
            CheckpointEvent::ToolCall,
            state,
            site.step,
            context,
            None,
            Some(&record),
        )
        .await
        .map_err(|error| StateFailure { error, fatal: true })
    }
}
