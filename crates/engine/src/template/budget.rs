//! What one render may cost: the fuel minijinja counts, the bytes it writes, and the filters
//! and methods whose output can be far larger than their input, priced before they run.
//!
//! minijinja charges a value once it exists; for `replace`, `join` and `indent` that is too
//! late, since one call can ask for gigabytes. These wrappers compute the size the call would
//! produce and charge it first, so the allocation never happens.

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use minijinja::value::{Kwargs, Rest, StringInput, Value as MjValue, from_args};
use minijinja::{Error as MjError, State};

/// Fuel per byte built, as minijinja's own pricing of values (one unit per 16 bytes).
const BYTES_PER_UNIT: u64 = 16;

pub(super) fn charge_bytes(state: &State, bytes: u64) -> Result<(), MjError> {
    state.consume_fuel(bytes / BYTES_PER_UNIT)
}

fn replaced_len(text: &str, from: &str, to: &str) -> u64 {
    let hits = if from.is_empty() {
        text.chars().count() as u64 + 1
    } else {
        text.matches(from).count() as u64
    };
    (text.len() as u64).saturating_add(hits.saturating_mul(to.len() as u64))
}

/// `replace(value, old, new, count=None)`, priced by the length of its result; `count` replaces
/// only the first so many, as Python's `str.replace` does.
pub(super) fn replace(
    state: &State,
    value: StringInput<'_>,
    from: StringInput<'_>,
    to: StringInput<'_>,
    rest: Rest<MjValue>,
) -> Result<MjValue, MjError> {
    let (positional, kwargs) = super::filters::split_kwargs(&rest)?;
    let (count,): (Option<i64>,) = from_args(positional)?;
    let count = super::filters::or_keyword(count, &kwargs, "count")?;
    kwargs.assert_all_used()?;
    charge_bytes(
        state,
        replaced_len(value.as_str(), from.as_str(), to.as_str()),
    )?;
    match count.and_then(|count| usize::try_from(count).ok()) {
        Some(count) => Ok(MjValue::from(value.as_str().replacen(
            from.as_str(),
            to.as_str(),
            count,
        ))),
        None => minijinja::filters::replace(state, value, from, to),
    }
}

/// `indent`, priced by the padding it adds to each line. The arguments are read as the
/// builtin reads them (positional or `width=`, `first=`, `blank=`).
pub(super) fn indent(
    state: &State,
    value: &MjValue,
    args: Rest<MjValue>,
) -> Result<MjValue, MjError> {
    super::undefined::require_value(value, "`indent`")?;
    let value = StringInput::new(state, value)?;
    let (width, first, blank, kwargs): (Option<usize>, Option<bool>, Option<bool>, Kwargs) =
        from_args(&args)?;
    let padding_width = width
        .or_else(|| kwargs.peek::<Option<usize>>("width").ok().flatten())
        .unwrap_or(4) as u64;
    let lines = value.as_str().lines().count() as u64 + 1;
    let built = (value.as_str().len() as u64).saturating_add(lines.saturating_mul(padding_width));
    charge_bytes(state, built)?;
    minijinja::filters::indent(value, width, first, blank, kwargs)
}

/// Python's string methods (`s.replace(a, b)`, `sep.join(items)`, `s.center(n)`), priced
/// as their filters are, then run by [`super::methods`] or minijinja-contrib.
pub(super) fn python_method(
    state: &State,
    value: &MjValue,
    method: &str,
    args: &[MjValue],
) -> Result<MjValue, MjError> {
    if let Some(text) = value.as_str() {
        let text_arg = |index: usize| args.get(index).and_then(|a| a.as_str()).unwrap_or("");
        let built = match method {
            "replace" => replaced_len(text, text_arg(0), text_arg(1)),
            "join" => {
                let items = args.first().and_then(|a| a.len()).unwrap_or(0) as u64;
                items.saturating_sub(1).saturating_mul(text.len() as u64)
            }
            "expandtabs" => (text.matches('\t').count() as u64).saturating_mul(
                args.first()
                    .and_then(|a| a.as_usize())
                    .map_or(8, |size| size as u64),
            ),
            "center" | "ljust" | "rjust" | "zfill" => args
                .first()
                .and_then(|a| a.as_usize())
                .map_or(0, |width| width as u64),
            _ => 0,
        };
        charge_bytes(state, built)?;
    }
    if let Some(result) = super::methods::call(value, method, args)? {
        return Ok(result);
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Collects a render's text and refuses to grow past `max` bytes; `overflowed` tells the
/// caller that the write error it sees came from here.
pub(super) struct CappedText {
    pub(super) text: Vec<u8>,
    max: usize,
    overflowed: Rc<Cell<bool>>,
}

impl CappedText {
    pub(super) fn new(max: usize, overflowed: Rc<Cell<bool>>) -> CappedText {
        CappedText {
            text: Vec::new(),
            max,
            overflowed,
        }
    }
}

impl io::Write for CappedText {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.text.len().saturating_add(bytes.len()) > self.max {
            self.overflowed.set(true);
            return Err(io::Error::other("template output limit reached"));
        }
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::replaced_len;

    #[test]
    fn replaced_length_counts_every_hit() {
        assert_eq!(replaced_len("aaa", "a", "bb"), 9);
        assert_eq!(replaced_len("abc", "x", "yyyy"), 3);
        // Python inserts the replacement between every character and at both ends.
        assert_eq!(replaced_len("ab", "", "-"), 5);
    }
}
