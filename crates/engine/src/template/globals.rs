//! Jinja2's default globals besides `range`, `dict` and `namespace` (which minijinja has):
//! `cycler`, `joiner` and `lipsum`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use minijinja::value::{Object, Rest, Value as MjValue, from_args};
use minijinja::{Error as MjError, ErrorKind, State};

use super::filters::invalid;

/// `cycler(*items)`: `.next()` gives the items in turn, `.current` the one `.next()` gives
/// next, `.reset()` starts over.
#[derive(Debug)]
struct Cycler {
    items: Vec<MjValue>,
    position: AtomicUsize,
}

impl Object for Cycler {
    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        (key.as_str()? == "current").then(|| self.current())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[MjValue],
    ) -> Result<MjValue, MjError> {
        let (): () = from_args(args)?;
        match method {
            "next" => {
                let item = self.current();
                self.position.fetch_add(1, Ordering::Relaxed);
                Ok(item)
            }
            "reset" => {
                self.position.store(0, Ordering::Relaxed);
                Ok(MjValue::from(()))
            }
            _ => Err(MjError::from(ErrorKind::UnknownMethod)),
        }
    }
}

impl Cycler {
    fn current(&self) -> MjValue {
        let position = self.position.load(Ordering::Relaxed) % self.items.len().max(1);
        self.items.get(position).cloned().unwrap_or_default()
    }
}

pub(super) fn cycler(items: Rest<MjValue>) -> Result<MjValue, MjError> {
    if items.is_empty() {
        return Err(invalid("cycler: at least one item has to be provided"));
    }
    Ok(MjValue::from_object(Cycler {
        items: items.0,
        position: AtomicUsize::new(0),
    }))
}

/// `joiner(sep=', ')`: a function that gives `""` the first time it is called, then `sep`.
#[derive(Debug)]
struct Joiner {
    separator: String,
    used: AtomicBool,
}

impl Object for Joiner {
    fn call(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        args: &[MjValue],
    ) -> Result<MjValue, MjError> {
        let (): () = from_args(args)?;
        if self.used.swap(true, Ordering::Relaxed) {
            Ok(MjValue::from(self.separator.as_str()))
        } else {
            Ok(MjValue::from(""))
        }
    }
}

/// The `callable` test: minijinja's (functions, macros, loops), a joiner, which Jinja2 calls
/// to get its separator, and an undefined value, which Jinja2's `Undefined` makes callable
/// (calling it fails as undefined).
pub(super) fn is_callable(value: &MjValue) -> bool {
    minijinja::tests::is_callable(value)
        || value.is_undefined()
        || value.downcast_object_ref::<Joiner>().is_some()
}

pub(super) fn joiner(separator: Option<String>) -> MjValue {
    MjValue::from_object(Joiner {
        separator: separator.unwrap_or_else(|| ", ".to_owned()),
        used: AtomicBool::new(false),
    })
}

/// Latin filler words for `lipsum`.
const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "eu",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
];

/// A small xorshift generator: filler text needs no better, and no seed from outside.
struct Xorshift(u64);

impl Xorshift {
    fn new() -> Xorshift {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Xorshift(seed | 1)
    }

    /// A number in `low..high`; `high > low`.
    fn below(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

/// `lipsum(n=5, html=True, min=20, max=100)`: `n` paragraphs of filler text, each of
/// `min..max` words, capitalized sentences, commas now and then, ending in a full stop; as
/// HTML paragraphs unless `html` is false. Its size is charged as fuel before it is built.
pub(super) fn lipsum(state: &State, args: Rest<MjValue>) -> Result<MjValue, MjError> {
    let (positional, kwargs) = super::filters::split_kwargs(&args)?;
    let (n, html, min, max): (Option<u64>, Option<bool>, Option<u64>, Option<u64>) =
        from_args(positional)?;
    let n = super::filters::or_keyword(n, &kwargs, "n")?.unwrap_or(5);
    let html = super::filters::or_keyword(html, &kwargs, "html")?.unwrap_or(true);
    let min = super::filters::or_keyword(min, &kwargs, "min")?.unwrap_or(20);
    let max = super::filters::or_keyword(max, &kwargs, "max")?.unwrap_or(100);
    kwargs.assert_all_used()?;
    if n > 0 && max <= min {
        return Err(invalid(format!(
            "lipsum: empty range of paragraph lengths ({min}, {max})"
        )));
    }
    // About 12 bytes a word.
    super::budget::charge_bytes(state, n.saturating_mul(max).saturating_mul(12))?;
    let mut random = Xorshift::new();
    let mut paragraphs = Vec::new();
    for _ in 0..n {
        let length = random.below(min, max);
        let mut words: Vec<String> = Vec::new();
        let (mut capitalize, mut last_comma, mut last_stop) = (true, 0u64, 0u64);
        let mut last = "";
        for index in 0..length {
            let word = loop {
                let candidate = WORDS[random.below(0, WORDS.len() as u64) as usize];
                if candidate != last {
                    break candidate;
                }
            };
            last = word;
            let mut text = word.to_owned();
            if capitalize {
                text = capitalized(word);
                capitalize = false;
            }
            if index.saturating_sub(random.below(3, 8)) > last_comma {
                last_comma = index;
                last_stop += 2;
                text.push(',');
            }
            if index.saturating_sub(random.below(10, 20)) > last_stop {
                last_comma = index;
                last_stop = index;
                text.push('.');
                capitalize = true;
            }
            words.push(text);
        }
        let mut paragraph = words.join(" ");
        if paragraph.ends_with(',') {
            paragraph.pop();
            paragraph.push('.');
        } else if !paragraph.ends_with('.') {
            paragraph.push('.');
        }
        paragraphs.push(paragraph);
    }
    Ok(if html {
        MjValue::from_safe_string(
            paragraphs
                .iter()
                .map(|p| format!("<p>{p}</p>"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        MjValue::from(paragraphs.join("\n\n"))
    })
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}
