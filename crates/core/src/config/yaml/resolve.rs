//! What a scalar's text means: the two schemas a config can be read by.
//!
//! - [`Schema::Pyyaml`], the default, is YAML 1.1 as PyYAML's `safe_load` reads it, which is
//!   how every published version of the Python reference (1.0.0 to 4.2.x) loads its configs:
//!   `yes`/`no`/`on`/`off` are booleans, `017` is octal, `1_000` is 1000, `1:30` is 90
//!   (base 60), and a float needs a dot, so `1e3` is text while `1.0e+3` is 1000.0.
//! - [`Schema::Core`] is YAML 1.2's core schema, chosen by a `%YAML 1.2` directive at the top
//!   of the file: only `true`/`false` are booleans, `0o17` is octal, `0123` and `1_000` are
//!   text, and `1e3` is 1000.0.
//!
//! In both, JSON has no infinities or NaN, so `.inf` and `.nan` become null, and an integer
//! too large for 64 bits keeps its digits as text rather than being rounded. PyYAML's
//! timestamps (`2024-01-01`) stay text here, where the reference builds a Python `date`.

use serde_json::{Number, Value};

/// How plain scalars resolve in a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Schema {
    /// YAML 1.1, as PyYAML's `safe_load` reads it.
    Pyyaml,
    /// YAML 1.2's core schema.
    Core,
}

/// Why a tagged scalar could not be read.
pub(super) enum TagError {
    /// The tag is not one of the standard scalar tags.
    Unsupported,
    /// The text is not what the tag says; the value names what was expected.
    Wrong(&'static str),
}

impl Schema {
    /// The schema a document asks for: [`Schema::Core`] under a `%YAML 1.2` directive before
    /// its content, else [`Schema::Pyyaml`].
    pub(super) fn of_document(text: &str) -> Schema {
        for line in text.lines() {
            let line = line.trim_start_matches('\u{feff}').trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some(version) = line.strip_prefix("%YAML") else {
                if line.starts_with('%') {
                    continue;
                }
                break;
            };
            let version = version.split('#').next().unwrap_or_default().trim();
            return if version == "1.2" {
                Schema::Core
            } else {
                Schema::Pyyaml
            };
        }
        Schema::Pyyaml
    }

    /// A plain (unquoted) scalar's value. An error says why text that reads as a number is
    /// not one (PyYAML refuses `0b_`, which its pattern takes for an integer).
    pub(super) fn plain(self, text: String) -> Result<Value, String> {
        match self {
            Schema::Core => Ok(core::plain(text)),
            Schema::Pyyaml => pyyaml::plain(text),
        }
    }

    /// A scalar with a standard tag (`!!int 017`), read by this schema's rules for that tag.
    pub(super) fn tagged(self, suffix: &str, text: String) -> Result<Value, TagError> {
        let (null, boolean, int, float): TagReaders = match self {
            Schema::Core => (null, core::boolean, core::int, core::float),
            Schema::Pyyaml => (
                null,
                pyyaml::tagged_bool,
                pyyaml::tagged_int,
                pyyaml::tagged_float,
            ),
        };
        match suffix {
            "str" => Ok(Value::String(text)),
            "null" if null(&text) => Ok(Value::Null),
            "null" => Err(TagError::Wrong("null")),
            "bool" => boolean(&text)
                .map(Value::Bool)
                .ok_or(TagError::Wrong("a boolean")),
            "int" => int(&text).ok_or(TagError::Wrong("an integer")),
            "float" => match float(&text) {
                Some(float) => Ok(float.into_value()),
                None => match int(&text) {
                    Some(Value::Number(n)) => Ok(n
                        .as_f64()
                        .and_then(Number::from_f64)
                        .map_or(Value::Null, Value::Number)),
                    _ => Err(TagError::Wrong("a float")),
                },
            },
            _ => Err(TagError::Unsupported),
        }
    }
}

/// A schema's readers of tagged text: `!!null`, `!!bool`, `!!int` and `!!float`.
type TagReaders = (
    fn(&str) -> bool,
    fn(&str) -> Option<bool>,
    fn(&str) -> Option<Value>,
    fn(&str) -> Option<Float>,
);

/// A float as read, before JSON: JSON has no infinities or NaN.
pub(super) enum Float {
    Finite(f64),
    NotFinite,
}

impl Float {
    fn of(value: f64) -> Float {
        if value.is_finite() {
            Float::Finite(value)
        } else {
            Float::NotFinite
        }
    }

    fn into_value(self) -> Value {
        match self {
            Float::Finite(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Float::NotFinite => Value::Null,
        }
    }
}

/// An integer's JSON value: one that does not fit 64 bits keeps its text, so no digit is lost.
fn int_value(negative: bool, magnitude: Option<u128>, text: &str) -> Value {
    let value = magnitude.and_then(|magnitude| {
        if negative {
            i64::try_from(magnitude)
                .ok()
                .map(|m| Value::from(-m))
                .or_else(|| (magnitude == 1 << 63).then(|| Value::from(i64::MIN)))
        } else {
            u64::try_from(magnitude).ok().map(Value::from)
        }
    });
    value.unwrap_or_else(|| Value::String(text.to_owned()))
}

/// Null in both schemas: YAML 1.1 and 1.2 spell it alike.
fn null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// The sign of a number's text, and the rest.
fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

/// YAML 1.2's core schema.
mod core {
    use super::{Float, int_value, null, split_sign};
    use serde_json::Value;

    pub(super) fn boolean(text: &str) -> Option<bool> {
        match text {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    pub(super) fn plain(text: String) -> Value {
        if null(&text) {
            return Value::Null;
        }
        if let Some(b) = boolean(&text) {
            return Value::Bool(b);
        }
        if let Some(int) = int(&text) {
            return int;
        }
        match float(&text) {
            Some(float) => float.into_value(),
            None => Value::String(text),
        }
    }

    /// `0123` is text in YAML 1.2 (a leading zero is no octal marker there).
    fn leading_zero_digits(text: &str) -> bool {
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        unsigned.len() > 1
            && unsigned.starts_with('0')
            && unsigned[1..].bytes().all(|b| b.is_ascii_digit())
    }

    /// Decimal, `0x`, `0o` and `0b` integers with an optional sign.
    pub(super) fn int(text: &str) -> Option<Value> {
        let (negative, unsigned) = split_sign(text);
        let (radix, digits) = if let Some(rest) = unsigned.strip_prefix("0x") {
            (16, rest)
        } else if let Some(rest) = unsigned.strip_prefix("0o") {
            (8, rest)
        } else if let Some(rest) = unsigned.strip_prefix("0b") {
            (2, rest)
        } else {
            if leading_zero_digits(text) {
                return None;
            }
            (10, unsigned)
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        // More digits than 128 bits hold is certainly an integer, and certainly too big.
        let magnitude = u128::from_str_radix(digits, radix).ok();
        Some(int_value(negative, magnitude, text))
    }

    pub(super) fn float(text: &str) -> Option<Float> {
        let unsigned = match text.strip_prefix('+') {
            Some(rest) if rest.starts_with(['+', '-']) => return None,
            Some(rest) => rest,
            None => text,
        };
        if matches!(unsigned, ".inf" | ".Inf" | ".INF")
            || matches!(text, "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN")
        {
            return Some(Float::NotFinite);
        }
        if leading_zero_digits(text) {
            return None;
        }
        // Rust also reads `inf`, `NaN` and `infinity`; YAML does not.
        if !unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        unsigned
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Float::Finite)
    }
}

/// YAML 1.1 as PyYAML's `SafeLoader` reads it: its resolver's patterns decide a plain
/// scalar's type (in its order: bool, float, int, null), its constructors the value.
mod pyyaml {
    use super::{Float, int_value, null, split_sign};
    use serde_json::Value;

    fn boolean(text: &str) -> Option<bool> {
        match text {
            "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
            "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        }
    }

    /// `!!bool` reads its text in any case (`!!bool yEs`), as PyYAML's constructor does.
    pub(super) fn tagged_bool(text: &str) -> Option<bool> {
        boolean(&text.to_ascii_lowercase())
    }

    pub(super) fn plain(text: String) -> Result<Value, String> {
        if let Some(b) = boolean(&text) {
            return Ok(Value::Bool(b));
        }
        if is_float(&text) {
            return Ok(float(&text).map_or(Value::Null, Float::into_value));
        }
        match int(&text) {
            Some(Ok(value)) => return Ok(value),
            Some(Err(message)) => return Err(message),
            None => {}
        }
        if null(&text) {
            return Ok(Value::Null);
        }
        if text == "=" {
            return Err(
                "`=` alone is YAML 1.1's value key, which PyYAML cannot read either; quote it"
                    .to_owned(),
            );
        }
        Ok(Value::String(text))
    }

    /// At least one character, each a digit of `radix` or `_`.
    fn digits_or_underscores(text: &str, radix: u32) -> bool {
        !text.is_empty() && text.chars().all(|c| c == '_' || c.is_digit(radix))
    }

    /// `[0-9][0-9_]*`, or with `nonzero`, `[1-9][0-9_]*`.
    fn leading_digit_run(text: &str, nonzero: bool) -> bool {
        let first_ok = match text.as_bytes().first() {
            Some(b'0') => !nonzero,
            Some(b) => b.is_ascii_digit(),
            None => false,
        };
        first_ok && text.chars().all(|c| c == '_' || c.is_ascii_digit())
    }

    /// `[0-5]?[0-9]`: one base-60 place after a `:`.
    fn sexagesimal_place(text: &str) -> bool {
        match text.as_bytes() {
            [d] => d.is_ascii_digit(),
            [t, d] => (b'0'..=b'5').contains(t) && d.is_ascii_digit(),
            _ => false,
        }
    }

    /// `[0-9][0-9_]*(:[0-5]?[0-9])+` (with `nonzero`, a first digit of 1 to 9): a number in
    /// base 60, as integers and the whole part of floats are written.
    fn sexagesimal(text: &str, nonzero: bool) -> bool {
        let mut places = text.split(':');
        let first = places.next().unwrap_or_default();
        let mut rest = places.peekable();
        leading_digit_run(first, nonzero) && rest.peek().is_some() && rest.all(sexagesimal_place)
    }

    /// `[eE][-+][0-9]+`, or nothing.
    fn optional_exponent(text: &str) -> bool {
        match text.as_bytes() {
            [] => true,
            [b'e' | b'E', b'-' | b'+', digits @ ..] => {
                !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        }
    }

    /// `[0-9_]*` then an optional exponent: what follows a float's dot.
    fn fraction(text: &str) -> bool {
        let end = text
            .find(|c: char| !(c == '_' || c.is_ascii_digit()))
            .unwrap_or(text.len());
        optional_exponent(&text[end..])
    }

    /// PyYAML's float pattern.
    fn is_float(text: &str) -> bool {
        let (_, unsigned) = split_sign(text);
        if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
            return true;
        }
        if matches!(text, ".nan" | ".NaN" | ".NAN") {
            return true;
        }
        // `.5`, `.5e+3`: no sign allowed before a leading dot.
        if let Some(rest) = text.strip_prefix('.') {
            let end = rest
                .find(|c: char| !(c == '_' || c.is_ascii_digit()))
                .unwrap_or(rest.len());
            return rest.starts_with(|c: char| c.is_ascii_digit())
                && optional_exponent(&rest[end..]);
        }
        let Some((whole, after_dot)) = unsigned.split_once('.') else {
            return false;
        };
        // `1_0.5e+3`
        if leading_digit_run(whole, false) && fraction(after_dot) {
            return true;
        }
        // `1:30.5`: base 60, the last place before the dot.
        sexagesimal(whole, false) && after_dot.chars().all(|c| c == '_' || c.is_ascii_digit())
    }

    /// PyYAML's float constructor, on text its pattern (or a `!!float` tag) gave it.
    fn float(text: &str) -> Option<Float> {
        let cleaned = text.replace('_', "").to_ascii_lowercase();
        let (negative, unsigned) = split_sign(&cleaned);
        let sign = if negative { -1.0 } else { 1.0 };
        match unsigned {
            ".inf" => return Some(Float::NotFinite),
            ".nan" => return Some(Float::NotFinite),
            _ => {}
        }
        let magnitude = if unsigned.contains(':') {
            let mut total = 0.0;
            for place in unsigned.split(':') {
                total = total * 60.0 + python_float(place)?;
            }
            total
        } else {
            python_float(unsigned)?
        };
        Some(Float::of(sign * magnitude))
    }

    /// Python's `float()` of ASCII digits, a dot and an exponent (Rust also reads `inf`).
    fn python_float(text: &str) -> Option<f64> {
        let plain = text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'));
        if !plain || !text.bytes().any(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }

    /// `!!float` takes what Python's `float()` takes, `1e3` included.
    pub(super) fn tagged_float(text: &str) -> Option<Float> {
        float(text)
    }

    /// `!!int` also takes `0o17`, which Python's `int(text, 8)` reads but the pattern does not.
    pub(super) fn tagged_int(text: &str) -> Option<Value> {
        if let Some(value) = int(text).and_then(Result::ok) {
            return Some(value);
        }
        let cleaned = text.replace('_', "");
        let (negative, unsigned) = split_sign(&cleaned);
        let digits = unsigned.strip_prefix("0o")?;
        let magnitude = u128::from_str_radix(digits, 8).ok()?;
        Some(int_value(negative, Some(magnitude), text))
    }

    /// PyYAML's int pattern and constructor: `None` when the text is no integer, an error
    /// when the pattern takes it for one but it has no digits (`0b_`).
    pub(super) fn int(text: &str) -> Option<Result<Value, String>> {
        let (negative, unsigned) = split_sign(text);
        let matches = if let Some(digits) = unsigned.strip_prefix("0b") {
            digits_or_underscores(digits, 2)
        } else if let Some(digits) = unsigned.strip_prefix("0x") {
            digits_or_underscores(digits, 16)
        } else if let Some(digits) = unsigned.strip_prefix('0') {
            digits.is_empty() || digits_or_underscores(digits, 8)
        } else if leading_digit_run(unsigned, true) {
            true
        } else {
            sexagesimal(unsigned, true)
        };
        if !matches {
            return None;
        }
        let cleaned = unsigned.replace('_', "");
        let (radix, digits) = if cleaned == "0" {
            (10, "0")
        } else if let Some(digits) = cleaned.strip_prefix("0b") {
            (2, digits)
        } else if let Some(digits) = cleaned.strip_prefix("0x") {
            (16, digits)
        } else if cleaned.starts_with('0') {
            (8, cleaned.as_str())
        } else if cleaned.contains(':') {
            let mut total: Option<u128> = Some(0);
            for place in cleaned.split(':') {
                let place: u128 = place.parse().ok()?;
                total = total
                    .and_then(|t| t.checked_mul(60))
                    .and_then(|t| t.checked_add(place));
            }
            return Some(Ok(int_value(negative, total, text)));
        } else {
            (10, cleaned.as_str())
        };
        if digits.is_empty() {
            return Some(Err(format!(
                "`{text}` reads as an integer in YAML 1.1 but has no digits; quote it if it is text"
            )));
        }
        let magnitude = u128::from_str_radix(digits, radix).ok();
        Some(Ok(int_value(negative, magnitude, text)))
    }
}
