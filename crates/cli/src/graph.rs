//! `flatmachines graph`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use flatmachines::Machine;
use flatmachines::engine::graph::{GraphFormat, render};

use crate::Failure;
use crate::limits::LimitArgs;

/// Arguments of `flatmachines graph`.
#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    /// The machine config.
    machine: PathBuf,
    /// Mermaid (for Markdown) or Graphviz dot (`| dot -Tsvg > machine.svg`).
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    format: Format,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Mermaid,
    Dot,
}

pub(crate) fn run(args: GraphArgs) -> Result<(), Failure> {
    let limits = args.limits.limits()?;
    let machine = Machine::from_file_within(&args.machine, &limits)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let format = match args.format {
        Format::Mermaid => GraphFormat::Mermaid,
        Format::Dot => GraphFormat::Dot,
    };
    print!("{}", render(&machine, format));
    Ok(())
}
