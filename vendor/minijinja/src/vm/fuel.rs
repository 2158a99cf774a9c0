use crate::compiler::instructions::Instruction;
use crate::error::{Error, ErrorKind};

use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

/// Helper for tracking fuel consumption
pub struct FuelTracker {
    // The initial fuel level.
    initial: u64,
    // This should be an AtomicI64 but sadly 32bit targets do not necessarily have
    // AtomicI64 available.
    remaining: AtomicIsize,
}

impl FuelTracker {
    /// Creates a new fuel tracker.
    ///
    /// The fuel tracker is always wrapped in an `Arc` so that it can be
    /// shared across nested invocations of the template evaluation.
    pub fn new(fuel: u64) -> Arc<FuelTracker> {
        Arc::new(FuelTracker {
            initial: fuel,
            remaining: AtomicIsize::new(fuel as isize),
        })
    }

    /// Tracks an instruction.  If it runs out of fuel an error is returned.
    pub fn track(&self, instr: &Instruction) -> Result<(), Error> {
        let fuel_to_consume = fuel_for_instruction(instr);
        if fuel_to_consume != 0 {
            let old_fuel = self.remaining.fetch_sub(fuel_to_consume, Ordering::Relaxed);
            if old_fuel - fuel_to_consume <= 0 {
                return Err(Error::from(ErrorKind::OutOfFuel));
            }
        }
        Ok(())
    }

    /// Consumes `amount` units of fuel for work that is not one instruction, such as building
    /// a large value.  If it runs out of fuel an error is returned.
    pub fn consume(&self, amount: u64) -> Result<(), Error> {
        let amount = isize::try_from(amount).unwrap_or(isize::MAX);
        if amount != 0 {
            let old_fuel = self.remaining.fetch_sub(amount, Ordering::Relaxed);
            if old_fuel.saturating_sub(amount) <= 0 {
                return Err(Error::from(ErrorKind::OutOfFuel));
            }
        }
        Ok(())
    }

    /// Returns the remaining fuel.
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Ordering::Relaxed) as _
    }

    /// Returns the consumed fuel.
    pub fn consumed(&self) -> u64 {
        self.initial.saturating_sub(self.remaining())
    }
}

/// How much fuel a freshly built value costs on top of the instruction that built it: one unit
/// per 16 bytes of a string and one per item of a sequence or map, so that doubling a string or
/// a list in a loop runs out of fuel long before it runs out of memory.
pub fn fuel_for_value(value: &crate::value::Value) -> u64 {
    use crate::value::{ObjectRepr, ValueKind};
    match value.kind() {
        ValueKind::String => value.as_str().map_or(0, |s| s.len() as u64 / 16),
        ValueKind::Bytes => value.as_bytes().map_or(0, |b| b.len() as u64 / 16),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => value
            .as_object()
            .filter(|obj| !matches!(obj.repr(), ObjectRepr::Plain))
            .and_then(|obj| obj.enumerator_len())
            .map_or(0, |len| len as u64),
        _ => 0,
    }
}

/// How much fuel does an instruction consume?
fn fuel_for_instruction(instruction: &Instruction) -> isize {
    match instruction {
        Instruction::BeginCapture(_)
        | Instruction::PushLoop(_)
        | Instruction::PushDidNotIterate
        | Instruction::PushWith
        | Instruction::PopFrame
        | Instruction::PopLoopFrame
        | Instruction::DupTop
        | Instruction::DiscardTop
        | Instruction::PushAutoEscape
        | Instruction::PopAutoEscape => 0,
        #[cfg(feature = "multi_template")]
        Instruction::ExportLocals => 0,
        #[cfg(feature = "macros")]
        Instruction::LoadBlocks | Instruction::BuildMacro(..) | Instruction::Return => 0,
        _ => 1,
    }
}
