//! JSON text that keeps every digit, and the depth of a value.
//!
//! `serde_json` reads an integer that does not fit 64 bits as the nearest float, so
//! `123456789012345678901234` would come back as `1.2345678901234568e23`. Python, and so the
//! reference, keeps such integers exact. A JSON value here cannot hold them as numbers, so
//! [`from_str_exact`] keeps their digits as a string instead: nothing is lost, and a template
//! that prints one prints every digit.

use serde_json::Value;

/// The fewest digits an integer can have and not fit `i64` or `u64`, minus one: a run of
/// fewer digits than this is surely in range.
const SAFE_DIGITS: usize = 18;

/// Parses JSON text like `serde_json::from_str`, except that an integer too large for 64 bits
/// becomes a string of its digits instead of a rounded float.
///
/// Text without a run of more than 18 digits takes `serde_json`'s path unchanged.
pub fn from_str_exact(text: &str) -> serde_json::Result<Value> {
    if !has_long_digit_run(text) {
        return serde_json::from_str(text);
    }
    match quote_big_integers(text) {
        Some(rewritten) => serde_json::from_str(&rewritten).or_else(|_| serde_json::from_str(text)),
        None => serde_json::from_str(text),
    }
}

fn has_long_digit_run(text: &str) -> bool {
    let mut run = 0;
    for byte in text.bytes() {
        if byte.is_ascii_digit() {
            run += 1;
            if run > SAFE_DIGITS {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// `text` with each out-of-range integer outside strings wrapped in quotes, or `None` when
/// there is none.
fn quote_big_integers(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let mut copied = 0;
    let mut index = 0;
    let mut changed = false;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => {
                // Skip the string, escapes included.
                index += 1;
                while index < bytes.len() && bytes[index] != b'"' {
                    index += if bytes[index] == b'\\' { 2 } else { 1 };
                }
                index += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = index;
                index += 1;
                while index < bytes.len()
                    && matches!(bytes[index], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    index += 1;
                }
                let token = text.get(start..index)?;
                if is_big_integer(token) {
                    out.push_str(text.get(copied..start)?);
                    out.push('"');
                    out.push_str(token);
                    out.push('"');
                    copied = index;
                    changed = true;
                }
            }
            _ => index += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(text.get(copied..)?);
    Some(out)
}

/// A JSON integer (optional `-`, digits, no fraction or exponent) outside `i64` and `u64`.
fn is_big_integer(token: &str) -> bool {
    let digits = token.strip_prefix('-').unwrap_or(token);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        // Not valid JSON; let the parser say so.
        return false;
    }
    if token.starts_with('-') {
        token.parse::<i64>().is_err()
    } else {
        token.parse::<u64>().is_err()
    }
}

/// How deeply `value` nests: 0 for a scalar, 1 for a flat list or object. Iterative, so any
/// value can be measured.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0usize)];
    while let Some((value, level)) = pending.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level + 1);
                pending.extend(items.iter().map(|item| (item, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level + 1);
                pending.extend(map.values().map(|item| (item, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn big_integers_keep_their_digits() {
        assert_eq!(
            from_str_exact(r#"{"id": 123456789012345678901234, "n": [-99999999999999999999, 7]}"#)
                .unwrap(),
            json!({"id": "123456789012345678901234", "n": ["-99999999999999999999", 7]})
        );
        assert_eq!(
            from_str_exact("123456789012345678901234").unwrap(),
            json!("123456789012345678901234")
        );
    }

    #[test]
    fn integers_in_range_and_floats_stay_numbers() {
        assert_eq!(
            from_str_exact(
                "[18446744073709551615, -9223372036854775808, 1.5e300, 12345678901234567890.5]"
            )
            .unwrap(),
            json!([
                18446744073709551615u64,
                i64::MIN,
                1.5e300,
                12345678901234567890.5
            ])
        );
    }

    #[test]
    fn digits_inside_strings_are_left_alone() {
        let text = r#"{"a": "x 123456789012345678901234 \" 99999999999999999999999", "b": 1}"#;
        assert_eq!(
            from_str_exact(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn errors_point_into_the_original_text() {
        let text = "[123456789012345678901234, }";
        let ours = from_str_exact(text).unwrap_err();
        let theirs = serde_json::from_str::<Value>(text).unwrap_err();
        assert_eq!(
            (ours.line(), ours.column()),
            (theirs.line(), theirs.column())
        );
    }

    #[test]
    fn depth_counts_levels() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}]})), 4);
    }

    proptest! {
        /// Whatever `serde_json` reads exactly, this reads the same.
        #[test]
        fn agrees_with_serde_json_when_nothing_is_out_of_range(text in "[\\[\\]{}\",:0-9a-z\\-. ]{0,40}") {
            let ours = from_str_exact(&text).ok();
            let theirs = serde_json::from_str::<Value>(&text).ok();
            if !has_long_digit_run(&text) {
                prop_assert_eq!(ours, theirs);
            }
        }

        #[test]
        fn any_integer_round_trips_as_its_text(digits in "[1-9][0-9]{0,60}", negative in any::<bool>()) {
            let text = if negative { format!("-{digits}") } else { digits };
            let value = from_str_exact(&text).unwrap();
            let shown = match &value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("unexpected {other}"),
            };
            prop_assert_eq!(shown, text);
        }
    }
}
