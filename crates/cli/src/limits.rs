//! `--limit NAME=VALUE`: the bounds of `docs/limits.md`, set from the command line.

use clap::Args;

use flatmachines::core::{Limit, Limits};

use crate::Failure;

/// The `--limit` option shared by the commands that load configs.
#[derive(Debug, Default, Args)]
pub(crate) struct LimitArgs {
    /// Set a bound, over the machine's settings and the default: NAME=VALUE, repeatable
    /// (config_bytes, config_depth, config_nodes, config_text_bytes, input_bytes,
    /// expression_depth, machine_depth, tree_machines, foreach_items, template_fuel,
    /// template_bytes). Byte bounds take KiB, MiB or GiB. See docs/limits.md.
    #[arg(long = "limit", value_name = "NAME=VALUE")]
    limit: Vec<String>,
}

impl LimitArgs {
    /// The bounds the flags set; the rest stay unset, for settings and defaults to fill.
    pub(crate) fn limits(&self) -> Result<Limits, Failure> {
        let mut limits = Limits::new();
        for assignment in &self.limit {
            limits
                .set_from_str(assignment)
                .map_err(|e| Failure::Usage(format!("--limit {assignment}: {e}")))?;
        }
        Ok(limits)
    }
}

/// The `input_bytes` bound that `limits` sets, or its default.
pub(crate) fn input_bytes(limits: &Limits) -> u64 {
    limits.get(Limit::InputBytes)
}
