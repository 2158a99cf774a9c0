//! Jinja2's numeric filters with Python's number rules: `int` and `float` parse as Python's
//! `int()` and `float()` do, `round` rounds as Python's `round` (with Jinja2's `method`), and
//! `filesizeformat` compares with exact units; floats print as Python's `repr` spells them.

use std::cmp::Ordering;

use minijinja::Error as MjError;
use minijinja::value::{Rest, Value as MjValue, ValueKind, from_args};

use super::filters::{invalid, or_keyword, python_str, split_kwargs};

/// Python's `repr` of a float: the shortest digits that read back, in fixed notation from
/// 1e-4 up to 1e16, else in exponent notation with a sign and two digits at least.
pub(super) fn python_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    // minijinja displays a finite float as Python's `repr` does (vendor/minijinja/PATCHES.md).
    MjValue::from(value).to_string()
}

/// The first code point of each run of ten decimal digits (Unicode category `Nd`) outside
/// ASCII, from the Unicode 14 database that Python 3.11 carries. Every `Nd` digit is in one.
const DECIMAL_ZEROS: [u32; 65] = [
    0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66, 0xde6,
    0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50,
    0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10,
    0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650,
    0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50,
    0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
];

/// The text with every decimal digit spelled in ASCII, as Python's `int()` and `float()` read
/// `'٣'` as 3.
fn ascii_digits(text: &str) -> std::borrow::Cow<'_, str> {
    if text.is_ascii() {
        return std::borrow::Cow::Borrowed(text);
    }
    let digit = |c: char| {
        let code = u32::from(c);
        let zero = DECIMAL_ZEROS
            .partition_point(|&zero| zero <= code)
            .checked_sub(1)?;
        let value = code - DECIMAL_ZEROS[zero];
        (value < 10).then(|| char::from_digit(value, 10)).flatten()
    };
    text.chars().map(|c| digit(c).unwrap_or(c)).collect()
}

/// Python's `int(text, base)`: blanks around, a sign, `_` between digits, and the `0x`, `0o`
/// or `0b` prefix of the base.
fn parse_python_int(text: &str, base: u32) -> Option<i128> {
    let text = ascii_digits(text);
    let text = text.trim();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = digits.to_ascii_lowercase();
    let prefix = match base {
        16 => "0x",
        8 => "0o",
        2 => "0b",
        _ => "",
    };
    let digits = if !prefix.is_empty() && lower.starts_with(prefix) {
        lower[2..].trim_start_matches('_').to_owned()
    } else {
        lower
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let magnitude = i128::from_str_radix(&digits.replace('_', ""), base).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Python's `float(text)`: blanks around, `_` between digits, `inf`, `nan`, `infinity`.
fn parse_python_float(text: &str) -> Option<f64> {
    let text = ascii_digits(text);
    let text = text.trim();
    if text.contains("__") || text.starts_with('_') || text.ends_with('_') {
        return None;
    }
    let cleaned = text.replace('_', "");
    let lower = cleaned.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse().ok();
    }
    // Rust also reads `inf` and `NaN` spelled otherwise; Python reads only digits here.
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    cleaned.parse().ok()
}

pub(super) fn number_of(value: &MjValue) -> Option<f64> {
    match value.kind() {
        ValueKind::Number => f64::try_from(value.clone()).ok(),
        ValueKind::Bool => Some(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::String => parse_python_float(value.as_str().unwrap_or_default()),
        _ => None,
    }
}

/// `int(value, default=0, base=10)`: what Python's `int()` makes of it, else of its `float()`,
/// else `default`.
pub(super) fn int(value: &MjValue, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (default, base): (Option<MjValue>, Option<u32>) = from_args(positional)?;
    let default = or_keyword(default, &kwargs, "default")?.unwrap_or(MjValue::from(0));
    let base = or_keyword(base, &kwargs, "base")?.unwrap_or(10);
    kwargs.assert_all_used()?;
    super::undefined::require(value, "`int`")?;
    if !(base == 0 || (2..=36).contains(&base)) {
        return Err(invalid("int() base must be >= 2 and <= 36, or 0"));
    }
    let parsed = match value.kind() {
        ValueKind::Number if value.is_integer() => return Ok(value.clone()),
        ValueKind::Bool => Some(i128::from(value.is_true())),
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default();
            let base = if base == 0 { guess_base(text) } else { base };
            parse_python_int(text, base).or_else(|| {
                parse_python_float(text)
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i128)
            })
        }
        _ => number_of(value)
            .filter(|f| f.is_finite())
            .map(|f| f.trunc() as i128),
    };
    Ok(parsed.map_or(default, int_value))
}

fn guess_base(text: &str) -> u32 {
    let lower = text
        .trim()
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase();
    match lower.get(..2) {
        Some("0x") => 16,
        Some("0o") => 8,
        Some("0b") => 2,
        _ => 10,
    }
}

pub(super) fn int_value(value: i128) -> MjValue {
    i64::try_from(value).map_or_else(|_| MjValue::from(value), MjValue::from)
}

/// `float(value, default=0.0)`: Python's `float()`, else `default`.
pub(super) fn float(value: &MjValue, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (default,): (Option<MjValue>,) = from_args(positional)?;
    let default = or_keyword(default, &kwargs, "default")?.unwrap_or(MjValue::from(0.0));
    kwargs.assert_all_used()?;
    super::undefined::require(value, "`float`")?;
    Ok(number_of(value).map_or(default, MjValue::from))
}

/// `round(value, precision=0, method='common')`. `common` is Python's `round`: to the nearest,
/// ties to even on the exact binary value (`2.5` → 2.0, `2.675` to 2 places → 2.67); an
/// integer stays an integer. `ceil` and `floor` scale, round and scale back, as Jinja2 does.
pub(super) fn round(value: &MjValue, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (precision, method): (Option<i32>, Option<String>) = from_args(positional)?;
    let precision = or_keyword(precision, &kwargs, "precision")?.unwrap_or(0);
    let method = or_keyword(method, &kwargs, "method")?.unwrap_or_else(|| "common".to_owned());
    kwargs.assert_all_used()?;
    if !matches!(method.as_str(), "common" | "ceil" | "floor") {
        return Err(invalid("method must be common, ceil or floor"));
    }
    let Some(number) = number_of(value).filter(|_| value.kind() != ValueKind::String) else {
        return Err(invalid(format!("round: cannot round {}", value.kind())));
    };
    let scale = 10f64.powi(precision);
    if method != "common" {
        let scaled = number * scale;
        let rounded = if method == "ceil" {
            scaled.ceil()
        } else {
            scaled.floor()
        };
        return Ok(MjValue::from(rounded / scale));
    }
    if value.is_integer() {
        let Ok(integer) = i128::try_from(value.clone()) else {
            return Ok(value.clone());
        };
        if precision >= 0 {
            return Ok(value.clone());
        }
        return Ok(int_value(round_integer(integer, precision.unsigned_abs())));
    }
    if !number.is_finite() {
        return Ok(MjValue::from(number));
    }
    let rounded = if precision >= 0 {
        // Formatting is exact and ties to even, as CPython's correctly rounded `round`.
        format!("{number:.*}", precision as usize)
            .parse::<f64>()
            .unwrap_or(number)
    } else {
        (number / 10f64.powi(-precision)).round_ties_even() * 10f64.powi(-precision)
    };
    Ok(MjValue::from(rounded))
}

/// `value` rounded to `10 ** places`, ties to even, as Python rounds an `int`.
fn round_integer(value: i128, places: u32) -> i128 {
    let Some(unit) = 10i128.checked_pow(places) else {
        return 0;
    };
    let remainder = value.rem_euclid(unit);
    let down = value - remainder;
    match (remainder * 2).cmp(&unit) {
        Ordering::Less => down,
        Ordering::Greater => down + unit,
        Ordering::Equal if (down / unit) % 2 == 0 => down,
        Ordering::Equal => down + unit,
    }
}

/// `filesizeformat(value, binary=False)`.
pub(super) fn filesizeformat(value: &MjValue, args: Rest<MjValue>) -> Result<String, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (binary,): (Option<bool>,) = from_args(positional)?;
    let binary = or_keyword(binary, &kwargs, "binary")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let Some(bytes) = number_of(value) else {
        return Err(invalid(format!(
            "filesizeformat: could not convert {} to float",
            python_str(value)
        )));
    };
    let base: u128 = if binary { 1024 } else { 1000 };
    let prefixes = if binary {
        ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    } else {
        ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    };
    if bytes == 1.0 {
        return Ok("1 Byte".to_owned());
    }
    if below(bytes, base) {
        return Ok(format!("{} Bytes", bytes.trunc() as i128));
    }
    // The units are exact integers and compared exactly, as Python compares a float with an
    // int: 1e24 (a little under 10^24 as a float) is still zettabytes.
    let mut unit = base;
    for prefix in prefixes {
        unit = unit.saturating_mul(base);
        if below(bytes, unit) {
            return Ok(format!("{:.1} {prefix}", base as f64 * bytes / unit as f64));
        }
    }
    Ok(format!(
        "{:.1} {}",
        base as f64 * bytes / unit as f64,
        prefixes[7]
    ))
}

/// `value < limit`, exactly.
fn below(value: f64, limit: u128) -> bool {
    if value.is_nan() {
        return false;
    }
    value < 0.0 || (value < u128::MAX as f64 && (value.trunc() as u128) < limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_spelled_as_python_spells_them() {
        for (value, text) in [
            (1.5e-7, "1.5e-07"),
            (1e20, "1e+20"),
            (1e16, "1e+16"),
            (1.0, "1.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (123.456, "123.456"),
            (0.0001, "0.0001"),
            (-2.5e-5, "-2.5e-05"),
            (1234567890123456.0, "1234567890123456.0"),
        ] {
            assert_eq!(python_float(value), text, "{value}");
        }
    }

    #[test]
    fn python_parses_numbers_with_blanks_signs_and_underscores() {
        assert_eq!(parse_python_int(" 42 ", 10), Some(42));
        assert_eq!(parse_python_int("-1_000", 10), Some(-1000));
        assert_eq!(parse_python_int("0x1f", 16), Some(31));
        assert_eq!(parse_python_int("ff", 16), Some(255));
        assert_eq!(parse_python_int("1__0", 10), None);
        assert_eq!(parse_python_int("alpha", 10), None);
        assert_eq!(parse_python_float(" 2.5 "), Some(2.5));
        assert_eq!(parse_python_float("alpha"), None);
        assert!(parse_python_float("inf").is_some_and(f64::is_infinite));
    }

    #[test]
    fn integers_round_to_even() {
        assert_eq!(round_integer(155, 1), 160);
        assert_eq!(round_integer(150, 2), 200);
        assert_eq!(round_integer(250, 2), 200);
        assert_eq!(round_integer(-155, 1), -160);
    }
}
