//! Python's string, list and dict methods that minijinja-contrib's `pycompat` lacks, with
//! Python's results: `zfill`, `ljust`, `rjust`, `center`, `rsplit`, `swapcase`, `casefold`,
//! `partition`, `rpartition`, `index`, `removeprefix`, `removesuffix`, `isdecimal`,
//! `isidentifier`, `istitle`, `expandtabs`, `copy`. The rest go to `pycompat`.

use minijinja::Error as MjError;
use minijinja::value::{Value as MjValue, ValueKind, from_args};

use super::filters::invalid;

/// The method's result when it is one of ours; `None` hands it on to `pycompat`.
pub(super) fn call(
    value: &MjValue,
    method: &str,
    args: &[MjValue],
) -> Result<Option<MjValue>, MjError> {
    if let Some(text) = value.as_str() {
        return string_method(text, method, args);
    }
    match (value.kind(), method) {
        (ValueKind::Seq, "index") => {
            let (needle, start, end): (MjValue, Option<i64>, Option<i64>) = from_args(args)?;
            let items: Vec<MjValue> = value.try_iter()?.collect();
            let (from, to) = (
                bound(start, 0, items.len()),
                bound(end, items.len(), items.len()),
            );
            for (position, item) in items.iter().enumerate().take(to).skip(from) {
                if *item == needle {
                    return Ok(Some(MjValue::from(position)));
                }
            }
            Err(invalid(format!("{needle} is not in list")))
        }
        // Values are immutable, so a copy is the value itself.
        (ValueKind::Seq | ValueKind::Map, "copy") => {
            let (): () = from_args(args)?;
            Ok(Some(value.clone()))
        }
        _ => Ok(None),
    }
}

fn string_method(text: &str, method: &str, args: &[MjValue]) -> Result<Option<MjValue>, MjError> {
    let result = match method {
        "zfill" => {
            let (width,): (usize,) = from_args(args)?;
            MjValue::from(zfill(text, width))
        }
        "ljust" | "rjust" | "center" => {
            let (width, fill): (usize, Option<&str>) = from_args(args)?;
            let fill = fill_char(method, fill)?;
            MjValue::from(pad(text, width, fill, method))
        }
        "rsplit" => {
            let (positional, kwargs) = super::filters::split_kwargs(args)?;
            let (separator, max_split): (Option<&str>, Option<i64>) = from_args(positional)?;
            let separator = super::filters::or_keyword(separator, &kwargs, "sep")?;
            let max_split = super::filters::or_keyword(max_split, &kwargs, "maxsplit")?;
            kwargs.assert_all_used()?;
            let max_split = max_split.and_then(|m| usize::try_from(m).ok());
            let parts = match separator {
                None => rsplit_whitespace(text, max_split),
                Some("") => return Err(invalid("rsplit: empty separator")),
                Some(separator) => {
                    let mut parts: Vec<&str> = match max_split {
                        Some(max) => text.rsplitn(max.saturating_add(1), separator).collect(),
                        None => text.rsplit(separator).collect(),
                    };
                    parts.reverse();
                    parts.into_iter().map(str::to_owned).collect()
                }
            };
            MjValue::from(parts)
        }
        "swapcase" => {
            let (): () = from_args(args)?;
            MjValue::from(swapcase(text))
        }
        "casefold" => {
            let (): () = from_args(args)?;
            // Full case folding differs from lowercasing mostly by `ß`.
            MjValue::from(text.to_lowercase().replace('ß', "ss"))
        }
        "partition" | "rpartition" => {
            let (separator,): (&str,) = from_args(args)?;
            if separator.is_empty() {
                return Err(invalid(format!("{method}: empty separator")));
            }
            let found = if method == "partition" {
                text.find(separator)
            } else {
                text.rfind(separator)
            };
            let parts = match (found, method) {
                (Some(at), _) => [&text[..at], separator, &text[at + separator.len()..]],
                (None, "partition") => [text, "", ""],
                (None, _) => ["", "", text],
            };
            MjValue::from(parts.map(MjValue::from).to_vec())
        }
        "index" => {
            let (needle, start, end): (&str, Option<i64>, Option<i64>) = from_args(args)?;
            let chars: Vec<char> = text.chars().collect();
            let (from, to) = (
                bound(start, 0, chars.len()),
                bound(end, chars.len(), chars.len()),
            );
            let window: String = chars
                .get(from..to.max(from))
                .unwrap_or_default()
                .iter()
                .collect();
            match window.find(needle) {
                Some(at) => MjValue::from(from + window[..at].chars().count()),
                None => return Err(invalid("substring not found")),
            }
        }
        "removeprefix" | "removesuffix" => {
            let (affix,): (&str,) = from_args(args)?;
            let kept = if method == "removeprefix" {
                text.strip_prefix(affix)
            } else {
                text.strip_suffix(affix)
            };
            MjValue::from(kept.unwrap_or(text))
        }
        "isdecimal" => {
            let (): () = from_args(args)?;
            MjValue::from(!text.is_empty() && text.chars().all(|c| c.is_ascii_digit()))
        }
        "isidentifier" => {
            let (): () = from_args(args)?;
            let mut chars = text.chars();
            MjValue::from(
                chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                    && chars.all(|c| c.is_alphanumeric() || c == '_'),
            )
        }
        "istitle" => {
            let (): () = from_args(args)?;
            MjValue::from(is_title(text))
        }
        "expandtabs" => {
            let (size,): (Option<usize>,) = from_args(args)?;
            MjValue::from(expand_tabs(text, size.unwrap_or(8)))
        }
        _ => return Ok(None),
    };
    Ok(Some(result))
}

/// A Python slice bound of `len` items: negative counts from the end, clamped to the items.
fn bound(at: Option<i64>, default: usize, len: usize) -> usize {
    match at {
        None => default,
        Some(at) if at < 0 => {
            len.saturating_sub(usize::try_from(at.unsigned_abs()).unwrap_or(usize::MAX))
        }
        Some(at) => usize::try_from(at).unwrap_or(usize::MAX).min(len),
    }
}

/// Python's `istitle`: some cased character, uppercase ones only after uncased ones,
/// lowercase ones only after cased ones.
fn is_title(text: &str) -> bool {
    let (mut cased, mut previous_cased) = (false, false);
    for c in text.chars() {
        if c.is_uppercase() {
            if previous_cased {
                return false;
            }
            previous_cased = true;
            cased = true;
        } else if c.is_lowercase() {
            if !previous_cased {
                return false;
            }
            previous_cased = true;
            cased = true;
        } else {
            previous_cased = false;
        }
    }
    cased
}

/// Python's `expandtabs`: each tab pads to the next multiple of `size` columns, counted from
/// the last line break.
fn expand_tabs(text: &str, size: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut column = 0;
    for c in text.chars() {
        match c {
            '\t' => {
                let pad = if size == 0 { 0 } else { size - column % size };
                out.extend(std::iter::repeat_n(' ', pad));
                column += pad;
            }
            '\n' | '\r' => {
                out.push(c);
                column = 0;
            }
            other => {
                out.push(other);
                column += 1;
            }
        }
    }
    out
}

fn fill_char(method: &str, fill: Option<&str>) -> Result<char, MjError> {
    let Some(fill) = fill else { return Ok(' ') };
    let mut chars = fill.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(invalid(format!(
            "{method}: the fill character must be exactly one character long"
        ))),
    }
}

/// `ljust`, `rjust` and `center` as CPython pads: `center` puts the odd space on the left
/// when the width is odd.
fn pad(text: &str, width: usize, fill: char, how: &str) -> String {
    let len = text.chars().count();
    if width <= len {
        return text.to_owned();
    }
    let margin = width - len;
    let left = match how {
        "ljust" => 0,
        "rjust" => margin,
        _ => margin / 2 + (margin & width & 1),
    };
    let mut out = String::with_capacity(text.len() + margin * fill.len_utf8());
    out.extend(std::iter::repeat_n(fill, left));
    out.push_str(text);
    out.extend(std::iter::repeat_n(fill, margin - left));
    out
}

fn zfill(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if width <= len {
        return text.to_owned();
    }
    let zeros = "0".repeat(width - len);
    match text.chars().next() {
        Some(sign @ ('+' | '-')) => format!("{sign}{zeros}{}", &text[1..]),
        _ => format!("{zeros}{text}"),
    }
}

fn swapcase(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_lowercase() {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase() {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `rsplit()` without a separator: runs of whitespace split, from the right, and the part
/// left over keeps its leading whitespace, as in Python.
fn rsplit_whitespace(text: &str, max_split: Option<usize>) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim_end();
    while !rest.is_empty() {
        if max_split.is_some_and(|max| parts.len() >= max) {
            parts.push(rest.to_owned());
            break;
        }
        match rest.char_indices().rev().find(|(_, c)| c.is_whitespace()) {
            Some((at, c)) => {
                parts.push(rest[at + c.len_utf8()..].to_owned());
                rest = rest[..at].trim_end();
            }
            None => {
                parts.push(rest.to_owned());
                break;
            }
        }
    }
    parts.reverse();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_follows_cpython() {
        assert_eq!(pad("ab", 5, '*', "center"), "**ab*");
        assert_eq!(pad("abc", 6, '*', "center"), "*abc**");
        assert_eq!(pad("a", 4, '-', "center"), "-a--");
        assert_eq!(pad("ab", 4, ' ', "ljust"), "ab  ");
        assert_eq!(pad("ab", 4, ' ', "rjust"), "  ab");
        assert_eq!(pad("abc", 2, ' ', "center"), "abc");
        assert_eq!(zfill("-42", 5), "-0042");
        assert_eq!(zfill("42", 1), "42");
    }

    #[test]
    fn rsplit_keeps_the_leading_remainder() {
        assert_eq!(rsplit_whitespace("  a b c ", Some(1)), ["  a b", "c"]);
        assert_eq!(rsplit_whitespace("  a b ", Some(0)), ["  a b"]);
        assert_eq!(rsplit_whitespace("a  b", None), ["a", "b"]);
        assert!(rsplit_whitespace("   ", None).is_empty());
    }
}
