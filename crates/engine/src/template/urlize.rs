//! `urlize`, as Jinja2 3.1 defines it: the text is escaped, split at whitespace, and each word
//! that is a URL (a scheme or `www.` and a domain, a bare domain of a common top-level domain,
//! or an IP address after a scheme) or an e-mail address becomes a link; brackets and
//! punctuation around a word stay outside its link unless they balance inside it.

use std::sync::LazyLock;

use minijinja::value::{Rest, Value as MjValue, from_args};
use minijinja::{Error as MjError, State};
use regex::Regex;

use super::filters::{escape_html, invalid, or_keyword, python_str, split_kwargs};

// The patterns are constants, checked by the tests that use them: `expect` cannot fail on input.
static HTTP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^(",
        r"(https?://|www\.)(([\w%-]+\.)+)?([a-z]{2,63}|xn--[\w%]{2,59})",
        r"|([\w%-]{2,63}\.)+(com|net|int|edu|gov|org|info|mil)",
        r"|(https?://)((([\d]{1,3})(\.[\d]{1,3}){3})|(\[([\da-f]{0,4}:){2}([\da-f]{0,4}:?){1,6}\]))",
        r")(:[\d]{1,5})?([/?#]\S*)?$",
    ))
    .expect("the URL pattern is valid")
});

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\S+@\w[\w.-]*\.\w+$").expect("the e-mail pattern is valid"));

static SCHEME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^[a-z][a-z0-9+\-.]*:$").expect("the scheme pattern is valid")
});

/// The leading `(`, `<` and `&lt;` of a word, and its trailing `)`, `>`, `.`, `,`, newlines and
/// `&gt;`.
fn split_word(word: &str) -> (&str, &str, &str) {
    let mut head_end = 0;
    loop {
        let rest = &word[head_end..];
        if rest.starts_with('(') || rest.starts_with('<') {
            head_end += 1;
        } else if rest.starts_with("&lt;") {
            head_end += 4;
        } else {
            break;
        }
    }
    let (head, middle) = word.split_at(head_end);
    let mut tail_start = middle.len();
    loop {
        let before = &middle[..tail_start];
        if before.ends_with([')', '>', '.', ',', '\n']) {
            tail_start -= 1;
        } else if before.ends_with("&gt;") {
            tail_start -= 4;
        } else {
            break;
        }
    }
    let (middle, tail) = middle.split_at(tail_start);
    (head, middle, tail)
}

/// Moves closing brackets back from `tail` into `middle` while `middle` has more openers.
fn balance(middle: &mut String, tail: &mut String) {
    for (open, close) in [("(", ")"), ("<", ">"), ("&lt;", "&gt;")] {
        let opened = middle.matches(open).count();
        if opened <= middle.matches(close).count() {
            continue;
        }
        for _ in 0..opened.min(tail.matches(close).count()) {
            let Some(at) = tail.find(close) else { break };
            let end = at + close.len();
            middle.push_str(&tail[..end]);
            tail.replace_range(..end, "");
        }
    }
}

/// `urlize(value, trim_url_limit=None, nofollow=False, target=None, rel=None,
/// extra_schemes=None)`, with Jinja2's default policy `rel="noopener"`; the size of what it
/// may write is charged as fuel first.
pub(super) fn urlize(
    state: &State,
    value: &MjValue,
    args: Rest<MjValue>,
) -> Result<String, MjError> {
    let (positional, kwargs) = split_kwargs(&args)?;
    let (limit, nofollow, target): (Option<usize>, Option<bool>, Option<String>) =
        from_args(positional)?;
    let limit = or_keyword(limit, &kwargs, "trim_url_limit")?;
    let nofollow = or_keyword(nofollow, &kwargs, "nofollow")?.unwrap_or(false);
    let target = or_keyword(target, &kwargs, "target")?;
    let rel = kwargs.get::<Option<String>>("rel")?;
    let schemes: Vec<String> = kwargs
        .get::<Option<Vec<String>>>("extra_schemes")?
        .unwrap_or_default();
    kwargs.assert_all_used()?;
    if let Some(bad) = schemes.iter().find(|s| !SCHEME.is_match(s)) {
        return Err(invalid(format!("{bad:?} is not a valid URI scheme prefix")));
    }
    let mut rel_parts: Vec<String> = rel
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if nofollow {
        rel_parts.push("nofollow".to_owned());
    }
    rel_parts.push("noopener".to_owned());
    rel_parts.sort();
    rel_parts.dedup();
    let rel_attr = format!(" rel=\"{}\"", escape_html(&rel_parts.join(" ")));
    let target_attr = target
        .filter(|t| !t.is_empty())
        .map(|t| format!(" target=\"{}\"", escape_html(&t)))
        .unwrap_or_default();
    let trim = |url: &str| match limit {
        Some(limit) if url.chars().count() > limit => {
            format!("{}...", url.chars().take(limit).collect::<String>())
        }
        _ => url.to_owned(),
    };
    let text = escape_html(&python_str(value));
    // A link writes its URL twice, with its attributes: at most about three times the text.
    let attributes = (rel_attr.len() + target_attr.len() + 32) as u64;
    let words = text.split_whitespace().count() as u64;
    super::budget::charge_bytes(
        state,
        (text.len() as u64)
            .saturating_mul(3)
            .saturating_add(words.saturating_mul(attributes)),
    )?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let space = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(space);
        let blank = after.len() - after.trim_start().len();
        let (blank, next) = after.split_at(blank);
        rest = next;
        let (head, middle, tail) = split_word(word);
        let (mut middle, mut tail) = (middle.to_owned(), tail.to_owned());
        balance(&mut middle, &mut tail);
        let linked = if HTTP.is_match(&middle) {
            let href = if middle.starts_with("https://") || middle.starts_with("http://") {
                middle.clone()
            } else {
                format!("https://{middle}")
            };
            format!(
                "<a href=\"{href}\"{rel_attr}{target_attr}>{}</a>",
                trim(&middle)
            )
        } else if let Some(address) = middle.strip_prefix("mailto:").filter(|a| EMAIL.is_match(a)) {
            format!("<a href=\"{middle}\">{address}</a>")
        } else if middle.contains('@')
            && !middle.starts_with("www.")
            && !middle.contains(':')
            && EMAIL.is_match(&middle)
        {
            format!("<a href=\"mailto:{middle}\">{middle}</a>")
        } else if let Some(_scheme) = schemes
            .iter()
            .find(|scheme| middle != **scheme && middle.starts_with(scheme.as_str()))
        {
            format!("<a href=\"{middle}\"{rel_attr}{target_attr}>{middle}</a>")
        } else {
            middle
        };
        out.push_str(head);
        out.push_str(&linked);
        out.push_str(&tail);
        out.push_str(blank);
    }
    Ok(out)
}
