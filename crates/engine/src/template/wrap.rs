//! `wordwrap`, as Jinja2 builds it on Python's `textwrap.wrap` (tabs and other whitespace kept,
//! whitespace dropped at line ends): the text is cut into chunks (runs of whitespace, words,
//! and with `break_on_hyphens` the pieces of hyphenated words), the chunks fill lines greedily,
//! and a chunk longer than a line is broken (at a hyphen when it can) or, without
//! `break_long_words`, put on a line of its own.

use minijinja::value::{Rest, Value as MjValue, from_args};
use minijinja::{Error as MjError, State};

use super::filters::{or_keyword, python_str, split_kwargs};

fn is_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// `[^\d\W]`: a word character that is not a digit.
fn is_letter(c: char) -> bool {
    (c.is_alphanumeric() || c == '_') && !c.is_numeric()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `[\w!"'&.,?]`, what may stand before an em-dash.
fn is_word_punct(c: char) -> bool {
    is_word(c) || "!\"'&.,?".contains(c)
}

/// Whether a word may be cut just after the hyphen at `at`: two letters (or letter, hyphen,
/// letter) before it and a letter, an optional hyphen and a letter after it.
fn hyphen_breaks(chars: &[char], at: usize) -> bool {
    let letter = |i: usize| chars.get(i).copied().is_some_and(is_letter);
    let before = (at >= 2 && letter(at - 2) && letter(at - 1))
        || (at >= 3 && letter(at - 3) && chars[at - 2] == '-' && letter(at - 1));
    let after =
        letter(at + 1) && (letter(at + 2) || (chars.get(at + 2) == Some(&'-') && letter(at + 3)));
    before && after
}

/// The length of an em-dash (two or more hyphens followed by a word character) at `at`.
fn em_dash(chars: &[char], at: usize) -> Option<usize> {
    let run = chars[at..].iter().take_while(|c| **c == '-').count();
    (run >= 2 && chars.get(at + run).copied().is_some_and(is_word)).then_some(run)
}

/// textwrap's chunks of `text`.
fn chunks(text: &str, break_on_hyphens: bool) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let start = at;
        if is_space(chars[at]) {
            while at < chars.len() && is_space(chars[at]) {
                at += 1;
            }
        } else if !break_on_hyphens {
            while at < chars.len() && !is_space(chars[at]) {
                at += 1;
            }
        } else if let Some(run) = (at > 0 && is_word_punct(chars[at - 1]))
            .then(|| em_dash(&chars, at))
            .flatten()
        {
            at += run;
        } else {
            // The shortest run of non-space that ends a word: before a space or the end,
            // after a hyphen that may break, or before an em-dash.
            at += 1;
            while at < chars.len() && !is_space(chars[at]) {
                if chars[at - 1] == '-' && hyphen_breaks(&chars, at - 1) {
                    break;
                }
                if is_word_punct(chars[at - 1]) && em_dash(&chars, at).is_some() {
                    break;
                }
                at += 1;
            }
        }
        out.push(chars[start..at].iter().collect());
    }
    out
}

fn len(text: &str) -> usize {
    text.chars().count()
}

/// `textwrap.wrap(line, width, ...)` with whitespace dropped around lines.
fn wrap_line(
    line: &str,
    width: usize,
    break_long_words: bool,
    break_on_hyphens: bool,
) -> Vec<String> {
    let mut pending: Vec<String> = chunks(line, break_on_hyphens);
    pending.reverse();
    let mut lines: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let mut current: Vec<String> = Vec::new();
        let mut current_len = 0;
        if !lines.is_empty()
            && pending
                .last()
                .is_some_and(|c| c.trim_matches(is_space).is_empty())
        {
            pending.pop();
        }
        while let Some(chunk) = pending.last() {
            let chunk_len = len(chunk);
            if current_len + chunk_len > width {
                break;
            }
            current_len += chunk_len;
            current.extend(pending.pop());
        }
        if pending.last().is_some_and(|c| len(c) > width) {
            let space_left = if width < 1 { 1 } else { width - current_len };
            if break_long_words {
                let chunk: Vec<char> = pending
                    .last()
                    .map(|c| c.chars().collect())
                    .unwrap_or_default();
                let mut end = space_left.min(chunk.len());
                if break_on_hyphens && chunk.len() > space_left {
                    let hyphen = chunk[..space_left.min(chunk.len())]
                        .iter()
                        .rposition(|c| *c == '-');
                    if let Some(hyphen) =
                        hyphen.filter(|h| *h > 0 && chunk[..*h].iter().any(|c| *c != '-'))
                    {
                        end = hyphen + 1;
                    }
                }
                current.push(chunk[..end].iter().collect());
                if let Some(last) = pending.last_mut() {
                    *last = chunk[end..].iter().collect();
                }
            } else if current.is_empty() {
                current.extend(pending.pop());
            }
        }
        if current
            .last()
            .is_some_and(|c| c.trim_matches(is_space).is_empty())
        {
            current.pop();
        }
        if !current.is_empty() {
            lines.push(current.concat());
        }
    }
    lines
}

/// `wordwrap(s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True)`,
/// each line of `s` wrapped on its own; the output's size is charged as fuel first.
pub(super) fn wordwrap(
    state: &State,
    value: &MjValue,
    args: Rest<MjValue>,
) -> Result<String, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (width, break_long_words, wrapstring, break_on_hyphens): (
        Option<usize>,
        Option<bool>,
        Option<String>,
        Option<bool>,
    ) = from_args(positional)?;
    let width = or_keyword(width, &kwargs, "width")?.unwrap_or(79);
    let break_long_words =
        or_keyword(break_long_words, &kwargs, "break_long_words")?.unwrap_or(true);
    let wrapstring =
        or_keyword(wrapstring, &kwargs, "wrapstring")?.unwrap_or_else(|| "\n".to_owned());
    let break_on_hyphens =
        or_keyword(break_on_hyphens, &kwargs, "break_on_hyphens")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    if width == 0 {
        return Err(super::filters::invalid(format!(
            "invalid width {width} (must be > 0)"
        )));
    }
    let text = python_str(value);
    // At worst one separator per character.
    let most = (text.len() as u64).saturating_mul(wrapstring.len() as u64 + 1);
    super::budget::charge_bytes(state, most)?;
    let lines: Vec<String> = python_lines(&text)
        .map(|line| wrap_line(line, width, break_long_words, break_on_hyphens).join(&wrapstring))
        .collect();
    Ok(lines.join(&wrapstring))
}

/// Python's `str.splitlines()`: the line breaks it knows, none kept, no last empty line.
fn python_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let breaks = |c: char| {
            matches!(
                c,
                '\n' | '\r'
                    | '\u{b}'
                    | '\u{c}'
                    | '\u{1c}'
                    | '\u{1d}'
                    | '\u{1e}'
                    | '\u{85}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
        };
        match rest.char_indices().find(|(_, c)| breaks(*c)) {
            Some((at, c)) => {
                let line = &rest[..at];
                let mut next = at + c.len_utf8();
                if c == '\r' && rest[next..].starts_with('\n') {
                    next += 1;
                }
                rest = &rest[next..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyphenated_words_break_after_their_hyphens() {
        assert_eq!(
            chunks("well-known-hyphenated-words here", true),
            ["well-", "known-", "hyphenated-", "words", " ", "here"]
        );
        assert_eq!(chunks("a-b x--y", true), ["a-b", " ", "x", "--", "y"]);
        assert_eq!(chunks("well-known", false), ["well-known"]);
    }

    #[test]
    fn lines_split_as_python_splits_them() {
        let lines: Vec<&str> = python_lines("a\r\nb\n\nc\n").collect();
        assert_eq!(lines, ["a", "b", "", "c"]);
    }
}
