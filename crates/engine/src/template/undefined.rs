//! Undefined values as Jinja2's default `Undefined` treats them: a context key that no state
//! has set yet prints as nothing, iterates as empty, has length 0 and is false, but arithmetic,
//! ordering, slicing, number conversion and JSON output of it fail the render, so the state
//! fails and `on_error` can route it. minijinja's lenient mode lets more of it through; these
//! wrappers and the vendored crate's comparisons and slices (vendor/minijinja/PATCHES.md) close
//! the gap. The cases are facts in `jinja2_facts.json` ("undefined operands").

use minijinja::value::{Value as MjValue, ValueKind};
use minijinja::{Error as MjError, ErrorKind};

/// The error Jinja2 raises when an undefined value is used: `UndefinedError`.
pub(super) fn used(what: &str) -> MjError {
    MjError::new(
        ErrorKind::UndefinedError,
        format!("{what} of an undefined value (a key that is not set)"),
    )
}

/// Fails with [`used`] when `value` is undefined.
pub(super) fn require(value: &MjValue, what: &str) -> Result<(), MjError> {
    if value.is_undefined() {
        Err(used(what))
    } else {
        Ok(())
    }
}

/// Fails when `value` is undefined or null: what Python cannot do with `None` either.
pub(super) fn require_value(value: &MjValue, what: &str) -> Result<(), MjError> {
    require(value, what)?;
    if value.is_none() {
        return Err(MjError::new(
            ErrorKind::InvalidOperation,
            format!("{what} of null (Python's `None`)"),
        ));
    }
    Ok(())
}

/// `reverse`: Jinja2 refuses a value that is not iterable, `None` included.
pub(super) fn reverse(value: &MjValue) -> Result<MjValue, MjError> {
    if value.is_none() {
        return Err(MjError::new(
            ErrorKind::InvalidOperation,
            "`reverse`: argument must be iterable, not null",
        ));
    }
    minijinja::filters::reverse(value)
}

/// Fails when `value` is undefined or holds an undefined value anywhere inside: Jinja2's JSON
/// output (`tojson`, and the reference's printing of lists and dicts) cannot write one.
pub(super) fn require_deep(value: &MjValue, what: &str) -> Result<(), MjError> {
    require(value, what)?;
    if matches!(value.kind(), ValueKind::Seq | ValueKind::Map) {
        // A JSON view of the machine's own data holds no undefined value.
        if value
            .downcast_object_ref::<super::json::JsonView>()
            .is_some()
        {
            return Ok(());
        }
        if let Ok(items) = value.try_iter() {
            for item in items {
                if value.kind() == ValueKind::Map {
                    require_deep(&value.get_item(&item).unwrap_or_default(), what)?;
                } else {
                    require_deep(&item, what)?;
                }
            }
        }
    }
    Ok(())
}

/// `length` and `count`: 0 for an undefined value, as `len(Undefined)` is.
pub(super) fn length(value: &MjValue) -> Result<usize, MjError> {
    if value.is_undefined() {
        return Ok(0);
    }
    minijinja::filters::length(value)
}

/// `first`: an undefined value's first item is undefined (it prints as nothing).
pub(super) fn first(value: &MjValue) -> Result<MjValue, MjError> {
    if value.is_undefined() {
        return Ok(MjValue::UNDEFINED);
    }
    minijinja::filters::first(value)
}

/// `last`, as [`first`].
pub(super) fn last(value: MjValue) -> Result<MjValue, MjError> {
    if value.is_undefined() {
        return Ok(MjValue::UNDEFINED);
    }
    minijinja::filters::last(value)
}

/// `items`: an undefined value has none.
pub(super) fn items(value: &MjValue) -> Result<MjValue, MjError> {
    if value.is_undefined() {
        return Ok(MjValue::from(Vec::<MjValue>::new()));
    }
    minijinja::filters::items(value)
}

/// `pprint`: Python's `repr` of an undefined value is `Undefined`.
pub(super) fn pprint(value: &MjValue) -> String {
    if value.is_undefined() {
        return "Undefined".to_owned();
    }
    minijinja::filters::pprint(value)
}

/// `sequence`: Jinja2's test asks for `len` and `__getitem__`, which `Undefined` has.
pub(super) fn is_sequence(value: &MjValue) -> bool {
    value.is_undefined() || minijinja::tests::is_sequence(value)
}

/// `even`: `value % 2` fails on an undefined value and on `None`.
pub(super) fn is_even(value: MjValue) -> Result<bool, MjError> {
    require_value(&value, "the `even` test")?;
    Ok(minijinja::tests::is_even(value))
}

/// `odd`, as [`is_even`].
pub(super) fn is_odd(value: MjValue) -> Result<bool, MjError> {
    require_value(&value, "the `odd` test")?;
    Ok(minijinja::tests::is_odd(value))
}

/// `divisibleby`, as [`is_even`].
pub(super) fn is_divisibleby(value: &MjValue, other: &MjValue) -> Result<bool, MjError> {
    require_value(value, "the `divisibleby` test")?;
    require_value(other, "the `divisibleby` test")?;
    Ok(minijinja::tests::is_divisibleby(value, other))
}
