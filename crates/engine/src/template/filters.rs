//! Jinja2's filters as Jinja2 defines them, where minijinja's builtins are missing or answer
//! otherwise: `attribute=` on `sum`, `min`, `max` and `join`, `title`, `wordcount`, `center`,
//! `truncate`, `striptags`, `xmlattr`, `forceescape`, `urlencode` and `tojson` (the numeric
//! ones are in `numbers.rs`). Each follows the Jinja2 3.1 source's behaviour;
//! `jinja2_facts.rs` checks them against Jinja2's own output.

use std::cmp::Ordering;

use minijinja::value::{ArgType, Kwargs, Rest, Value as MjValue, ValueKind, from_args};
use minijinja::{Error as MjError, ErrorKind, State};

use super::numbers::{int_value, number_of, python_float};

pub(super) fn invalid(message: impl Into<String>) -> MjError {
    MjError::new(ErrorKind::InvalidOperation, message.into())
}

/// A call's positional arguments and its keyword arguments (minijinja passes the keywords
/// as one last argument).
pub(super) fn split_kwargs(args: &[MjValue]) -> Result<(&[MjValue], Kwargs), MjError> {
    match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => Ok((rest, Kwargs::try_from(last.clone())?)),
        _ => Ok((args, Kwargs::try_from(MjValue::UNDEFINED)?)),
    }
}

/// An argument given by position, else by keyword `name`, else `None`.
pub(super) fn or_keyword<'a, T>(
    given: Option<T>,
    kwargs: &'a Kwargs,
    name: &'a str,
) -> Result<Option<T>, MjError>
where
    Option<T>: ArgType<'a, Output = Option<T>>,
{
    match given {
        Some(value) => Ok(Some(value)),
        None => kwargs.get::<Option<T>>(name),
    }
}

/// Python's `str()` of a value: `None`, `True`, floats as Python spells them; an undefined
/// value is empty, as Jinja2's `Undefined` prints.
pub(super) fn python_str(value: &MjValue) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".to_owned(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_owned(),
        ValueKind::Number if !value.is_integer() => {
            f64::try_from(value.clone()).map_or_else(|_| value.to_string(), python_float)
        }
        ValueKind::Seq | ValueKind::Map => super::python_json(value),
        _ => value.to_string(),
    }
}

/// An item's `attribute`, as Jinja2 reads it: dotted, with integers as indices.
fn attribute_of(item: &MjValue, path: &str) -> Result<MjValue, MjError> {
    let mut value = item.clone();
    for part in path.split('.') {
        value = match part.parse::<i64>() {
            Ok(index) => value.get_item(&MjValue::from(index))?,
            Err(_) => value.get_attr(part)?,
        };
    }
    Ok(value)
}

fn items(value: &MjValue, attribute: Option<&str>) -> Result<Vec<MjValue>, MjError> {
    let iter = value
        .try_iter()
        .map_err(|e| invalid("cannot convert value to list").with_source(e))?;
    iter.map(|item| match attribute {
        Some(path) => attribute_of(&item, path),
        None => Ok(item),
    })
    .collect()
}

/// `sum(iterable, attribute=None, start=0)`.
pub(super) fn sum(value: &MjValue, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (attribute, start): (Option<String>, Option<MjValue>) = from_args(positional)?;
    let attribute = or_keyword(attribute, &kwargs, "attribute")?;
    let start = or_keyword(start, &kwargs, "start")?.unwrap_or(MjValue::from(0));
    kwargs.assert_all_used()?;
    let mut total = start;
    for item in items(value, attribute.as_deref())? {
        total = add_numbers(&total, &item)?;
    }
    Ok(total)
}

/// `a + b` for `sum`: integers stay exact, anything else numeric is a float.
fn add_numbers(a: &MjValue, b: &MjValue) -> Result<MjValue, MjError> {
    if a.is_integer() && b.is_integer() {
        let (Ok(x), Ok(y)) = (i128::try_from(a.clone()), i128::try_from(b.clone())) else {
            return Err(invalid("sum: the total is too large"));
        };
        return x
            .checked_add(y)
            .map(int_value)
            .ok_or_else(|| invalid("sum: the total is too large"));
    }
    if a.kind() == ValueKind::Seq && b.kind() == ValueKind::Seq {
        let joined: Vec<MjValue> = a.try_iter()?.chain(b.try_iter()?).collect();
        return Ok(MjValue::from(joined));
    }
    let number = |v: &MjValue| match v.kind() {
        ValueKind::Number | ValueKind::Bool => number_of(v),
        _ => None,
    };
    match (number(a), number(b)) {
        (Some(x), Some(y)) => Ok(MjValue::from(x + y)),
        _ => Err(invalid(format!(
            "sum: unsupported operand types for +: {} and {}",
            a.kind(),
            b.kind()
        ))),
    }
}

/// Jinja2's ordering for `min`, `max`: strings compare lowercased unless `case_sensitive`.
fn ordering_key(value: &MjValue, case_sensitive: bool) -> MjValue {
    match value.as_str() {
        Some(text) if !case_sensitive => MjValue::from(text.to_lowercase()),
        _ => value.clone(),
    }
}

/// Which values Python can order against each other: numbers (booleans among them), strings,
/// lists; anything else only against its own kind.
fn order_class(value: &MjValue) -> Result<u8, ValueKind> {
    match value.kind() {
        ValueKind::Number | ValueKind::Bool => Ok(0),
        ValueKind::String => Ok(1),
        ValueKind::Seq => Ok(2),
        other => Err(other),
    }
}

/// The least or greatest item (`want`), by Jinja2's ordering; items Python cannot order
/// against each other (a number and a string) are an error, as in Python.
fn extreme(value: &MjValue, args: Rest<MjValue>, want: Ordering) -> Result<MjValue, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (case_sensitive, attribute): (Option<bool>, Option<String>) = from_args(positional)?;
    let case_sensitive = or_keyword(case_sensitive, &kwargs, "case_sensitive")?.unwrap_or(false);
    let attribute = or_keyword(attribute, &kwargs, "attribute")?;
    kwargs.assert_all_used()?;
    let iter = value
        .try_iter()
        .map_err(|e| invalid("cannot convert value to list").with_source(e))?;
    let mut best: Option<(MjValue, MjValue)> = None;
    for item in iter {
        let key = match &attribute {
            Some(path) => attribute_of(&item, path)?,
            None => item.clone(),
        };
        if let Some((best_key, _)) = &best
            && order_class(&key) != order_class(best_key)
        {
            return Err(invalid(format!(
                "'<' and '>' are not supported between a {} and a {}",
                best_key.kind(),
                key.kind()
            )));
        }
        let key = ordering_key(&key, case_sensitive);
        let better = match &best {
            None => true,
            Some((best_key, _)) => key.cmp(best_key) == want,
        };
        if better {
            best = Some((key, item));
        }
    }
    // Jinja2 gives Undefined for an empty sequence, which prints as nothing.
    Ok(best.map_or(MjValue::UNDEFINED, |(_, item)| item))
}

/// `min(value, case_sensitive=False, attribute=None)`.
pub(super) fn min(value: &MjValue, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    extreme(value, args, Ordering::Less)
}

/// `max(value, case_sensitive=False, attribute=None)`.
pub(super) fn max(value: &MjValue, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    extreme(value, args, Ordering::Greater)
}

/// `join(value, d='', attribute=None)`: the items as Python's `str()` writes them.
pub(super) fn join(
    state: &State,
    value: &MjValue,
    args: Rest<MjValue>,
) -> Result<MjValue, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (separator, attribute): (Option<String>, Option<String>) = from_args(positional)?;
    let separator = or_keyword(separator, &kwargs, "d")?.unwrap_or_default();
    let attribute = or_keyword(attribute, &kwargs, "attribute")?;
    kwargs.assert_all_used()?;
    let parts = items(value, attribute.as_deref())?;
    let separators = parts.len().saturating_sub(1) as u64 * separator.len() as u64;
    super::budget::charge_bytes(state, separators)?;
    let texts: Vec<String> = parts
        .iter()
        .map(|p| p.as_str().map_or_else(|| python_str(p), str::to_owned))
        .collect();
    Ok(MjValue::from(texts.join(&separator)))
}

/// Jinja2's `title`: words begin after `-`, blanks and `({[<`, not after any punctuation.
pub(super) fn title(value: &MjValue) -> String {
    let value = text_or_empty(value);
    let starts_word = |c: char| c.is_whitespace() || "-({[<".contains(c);
    let mut out = String::with_capacity(value.len());
    let mut at_start = true;
    for c in value.chars() {
        if starts_word(c) {
            out.push(c);
            at_start = true;
        } else if at_start {
            titlecase(c, &mut out);
            at_start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// A string filter's input: the text, or Python's `str()` of another value (nothing for an
/// undefined one), as Jinja2's `soft_str` reads it.
fn text_or_empty(value: &MjValue) -> std::borrow::Cow<'_, str> {
    match value.as_str() {
        Some(text) => std::borrow::Cow::Borrowed(text),
        None => std::borrow::Cow::Owned(python_str(value)),
    }
}

/// The title case of `c`, which differs from its upper case for ligatures and digraphs
/// (`ß` is `Ss`, `ǆ` is `ǅ`), as Python's `capitalize` and `title` use it.
fn titlecase(c: char, out: &mut String) {
    let special = match c {
        'ß' => "Ss",
        'ﬀ' => "Ff",
        'ﬁ' => "Fi",
        'ﬂ' => "Fl",
        'ﬃ' => "Ffi",
        'ﬄ' => "Ffl",
        'ﬅ' | 'ﬆ' => "St",
        'Ǆ' | 'ǅ' | 'ǆ' => "ǅ",
        'Ǉ' | 'ǈ' | 'ǉ' => "ǈ",
        'Ǌ' | 'ǋ' | 'ǌ' => "ǋ",
        'Ǳ' | 'ǲ' | 'ǳ' => "ǲ",
        _ => {
            out.extend(c.to_uppercase());
            return;
        }
    };
    out.push_str(special);
}

/// `capitalize`: the first character in title case, the rest in lower case.
pub(super) fn capitalize(value: &MjValue) -> String {
    let value = text_or_empty(value);
    let mut chars = value.chars();
    let mut out = String::with_capacity(value.len());
    if let Some(first) = chars.next() {
        titlecase(first, &mut out);
        out.push_str(&chars.as_str().to_lowercase());
    }
    out
}

/// `dictsort(value, case_sensitive=False, by='key', reverse=False)`, its arguments taken by
/// position too, then sorted as minijinja's builtin sorts.
pub(super) fn dictsort(value: &MjValue, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (case_sensitive, by, reverse): (Option<bool>, Option<String>, Option<bool>) =
        from_args(positional)?;
    let mut named: Vec<(String, MjValue)> = Vec::new();
    for (name, given) in [
        ("case_sensitive", case_sensitive.map(MjValue::from)),
        ("by", by.map(MjValue::from)),
        ("reverse", reverse.map(MjValue::from)),
    ] {
        match given {
            Some(value) => named.push((name.to_owned(), value)),
            None => {
                if let Some(value) = kwargs.get::<Option<MjValue>>(name)? {
                    named.push((name.to_owned(), value));
                }
            }
        }
    }
    kwargs.assert_all_used()?;
    minijinja::filters::dictsort(value, named.into_iter().collect())
}

/// `wordcount`: runs of word characters (`\w`: letters, digits, `_`).
pub(super) fn wordcount(value: &MjValue) -> usize {
    let text = python_str(value);
    let mut count = 0;
    let mut in_word = false;
    for c in text.chars() {
        let word = c.is_alphanumeric() || c == '_';
        if word && !in_word {
            count += 1;
        }
        in_word = word;
    }
    count
}

/// `center(value, width=80)`.
pub(super) fn center(
    state: &State,
    value: &MjValue,
    args: Rest<MjValue>,
) -> Result<String, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (width,): (Option<usize>,) = from_args(positional)?;
    let width = or_keyword(width, &kwargs, "width")?.unwrap_or(80);
    kwargs.assert_all_used()?;
    super::budget::charge_bytes(state, width as u64)?;
    let text = python_str(value);
    let args = [MjValue::from(width)];
    match super::methods::call(&MjValue::from(text.as_str()), "center", &args)? {
        Some(centered) => Ok(centered.as_str().unwrap_or_default().to_owned()),
        None => Ok(text),
    }
}

/// `truncate(s, length=255, killwords=False, end='...', leeway=5)`.
pub(super) fn truncate(value: &MjValue, args: Rest<MjValue>) -> Result<String, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (length, killwords, end, leeway): (
        Option<usize>,
        Option<bool>,
        Option<String>,
        Option<i64>,
    ) = from_args(positional)?;
    let length = or_keyword(length, &kwargs, "length")?.unwrap_or(255);
    let killwords = or_keyword(killwords, &kwargs, "killwords")?.unwrap_or(false);
    let end = or_keyword(end, &kwargs, "end")?.unwrap_or_else(|| "...".to_owned());
    let leeway = or_keyword(leeway, &kwargs, "leeway")?.unwrap_or(5);
    kwargs.assert_all_used()?;
    let end_len = end.chars().count();
    if length < end_len {
        return Err(invalid(format!(
            "expected length >= {end_len}, got {length}"
        )));
    }
    if leeway < 0 {
        return Err(invalid(format!("expected leeway >= 0, got {leeway}")));
    }
    // Jinja2 takes `len` of the value itself, which `None` has not.
    if value.is_none() {
        return Err(invalid("`truncate`: null (Python's `None`) has no length"));
    }
    let text = python_str(value);
    let chars: Vec<char> = text.chars().collect();
    if chars.len() as u64 <= length as u64 + leeway.unsigned_abs() {
        return Ok(text);
    }
    let kept: String = chars[..length - end_len].iter().collect();
    if killwords {
        return Ok(kept + &end);
    }
    let kept = match kept.rsplit_once(' ') {
        Some((head, _)) => head.to_owned(),
        None => kept,
    };
    Ok(kept + &end)
}

/// HTML's `&`, `<`, `>`, `"` and `'`, as markupsafe escapes them.
pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// `forceescape`.
pub(super) fn forceescape(value: &MjValue) -> String {
    escape_html(&python_str(value))
}

/// `xmlattr(d, autospace=True)`: `key="value"` pairs, escaped, `None` values left out.
pub(super) fn xmlattr(value: &MjValue, args: Rest<MjValue>) -> Result<String, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (autospace,): (Option<bool>,) = from_args(positional)?;
    let autospace = or_keyword(autospace, &kwargs, "autospace")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    let mut pairs = Vec::new();
    for key in value.try_iter()? {
        let item = value.get_item(&key)?;
        if item.is_none() || item.is_undefined() {
            continue;
        }
        let key = python_str(&key);
        if key
            .chars()
            .any(|c| c.is_ascii_whitespace() || "/>=".contains(c))
        {
            return Err(invalid(format!(
                "Invalid character in attribute name: {key:?}"
            )));
        }
        pairs.push(format!(
            "{}=\"{}\"",
            escape_html(&key),
            escape_html(&python_str(&item))
        ));
    }
    let joined = pairs.join(" ");
    Ok(if autospace && !joined.is_empty() {
        format!(" {joined}")
    } else {
        joined
    })
}

/// `striptags`: comments and tags removed, blanks collapsed, entities read, as markupsafe does.
pub(super) fn striptags(value: &MjValue) -> String {
    let mut text = python_str(value);
    while let Some(start) = text.find("<!--") {
        match text[start..].find("-->") {
            Some(end) => text.replace_range(start..start + end + 3, ""),
            None => break,
        }
    }
    while let Some(start) = text.find('<') {
        match text[start..].find('>') {
            Some(end) => text.replace_range(start..start + end + 1, ""),
            None => break,
        }
    }
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    unescape_html(&collapsed)
}

/// The character references `html.unescape` reads most often: numeric ones and the named
/// entities of HTML's own syntax.
fn unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|end| *end <= 32);
        let decoded = end.and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => name.strip_prefix('#').and_then(|number| {
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => number.parse().ok(),
                    };
                    code.and_then(char::from_u32)
                }),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Python's `quote`: every byte but letters, digits and `_.-~` (and `/` outside a query) as
/// `%XX`; in a query, a space as `+`.
fn url_quote(text: &str, query: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(byte));
            }
            b'/' if !query => out.push('/'),
            b' ' if query => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `urlencode`: a string (or any scalar) quoted; a dict or a list of pairs as a query string.
pub(super) fn urlencode(value: &MjValue) -> Result<String, MjError> {
    match value.kind() {
        ValueKind::Map => {
            let mut pairs = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                pairs.push(format!(
                    "{}={}",
                    url_quote(&python_str(&key), true),
                    url_quote(&python_str(&item), true)
                ));
            }
            Ok(pairs.join("&"))
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let mut pairs = Vec::new();
            for pair in value.try_iter()? {
                let (key, item) = (
                    pair.get_item(&MjValue::from(0))?,
                    pair.get_item(&MjValue::from(1))?,
                );
                pairs.push(format!(
                    "{}={}",
                    url_quote(&python_str(&key), true),
                    url_quote(&python_str(&item), true)
                ));
            }
            Ok(pairs.join("&"))
        }
        _ => Ok(url_quote(
            &value
                .as_str()
                .map_or_else(|| python_str(value), str::to_owned),
            false,
        )),
    }
}

/// `tojson(value, indent=None)`: Jinja2's `htmlsafe_json_dumps` with its `sort_keys=True`:
/// keys sorted, `", "` and `": "`, non-ASCII as `\uXXXX`, and `<`, `>`, `&`, `'` escaped.
pub(super) fn tojson(value: &MjValue, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (indent,): (Option<usize>,) = from_args(positional)?;
    let indent = or_keyword(indent, &kwargs, "indent")?;
    kwargs.assert_all_used()?;
    super::undefined::require_deep(value, "`tojson`")?;
    let json = serde_json::to_value(value)
        .map_err(|e| invalid(format!("tojson: the value cannot be written as JSON: {e}")))?;
    let mut out = String::new();
    write_python_json(&json, indent, 0, &mut out);
    let escaped = out
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\'', "\\u0027");
    Ok(MjValue::from_safe_string(escaped))
}

fn write_python_json(
    value: &serde_json::Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) {
    use serde_json::Value;
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    let (item_separator, key_separator) = if indent.is_some() {
        (",", ": ")
    } else {
        (", ", ": ")
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => out.push_str(&python_float(f)),
            None => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_ascii_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(item_separator);
                }
                newline(out, depth + 1);
                write_python_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(item_separator);
                }
                newline(out, depth + 1);
                write_ascii_string(key, out);
                out.push_str(key_separator);
                write_python_json(&map[key], indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// A JSON string as Python's `ensure_ascii` writes it.
fn write_ascii_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}
