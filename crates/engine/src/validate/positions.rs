//! Where each value of a YAML document is, by JSON pointer, for `file:line:column` messages.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line and column (1-based) of every node, keyed by JSON pointer (`/data/states/a/to`).
#[derive(Debug, Default)]
pub(crate) struct Positions {
    nodes: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map {
        pointer: String,
        key: Option<String>,
    },
    Seq {
        pointer: String,
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    positions: Positions,
    stack: Vec<Frame>,
    done: bool,
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl Builder {
    /// The pointer of the node starting now, or `None` when it is a mapping key.
    fn next_pointer(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { pointer, key }) => {
                let key = key.take().unwrap_or_default();
                Some(format!("{pointer}/{}", escape(&key)))
            }
            Some(Frame::Seq { pointer, index }) => {
                let child = format!("{pointer}/{index}");
                *index += 1;
                Some(child)
            }
        }
    }

    /// A value's own position replaces the position of its key.
    fn record(&mut self, pointer: &str, mark: Marker) {
        self.positions
            .nodes
            .insert(pointer.to_owned(), (mark.line(), mark.col() + 1));
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.done {
            return;
        }
        match event {
            Event::Scalar(value, ..) => match self.next_pointer() {
                Some(pointer) => self.record(&pointer, mark),
                None => {
                    // A key: remember where it is, as the fallback for its value.
                    if let Some(Frame::Map { pointer, key }) = self.stack.last_mut() {
                        let child = format!("{pointer}/{}", escape(&value));
                        *key = Some(value);
                        self.positions
                            .nodes
                            .entry(child)
                            .or_insert((mark.line(), mark.col() + 1));
                    }
                }
            },
            Event::Alias(_) => {
                if let Some(pointer) = self.next_pointer() {
                    self.record(&pointer, mark);
                }
            }
            Event::MappingStart(..) => {
                let pointer = self.next_pointer().unwrap_or_default();
                self.record(&pointer, mark);
                self.stack.push(Frame::Map { pointer, key: None });
            }
            Event::SequenceStart(..) => {
                let pointer = self.next_pointer().unwrap_or_default();
                self.record(&pointer, mark);
                self.stack.push(Frame::Seq { pointer, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            // Only the first document matters.
            Event::DocumentEnd => self.done = true,
            _ => {}
        }
    }
}

impl Positions {
    /// The positions of `text`'s nodes; empty when it does not parse.
    pub(crate) fn of(text: &str) -> Positions {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return builder.positions;
        }
        builder.positions
    }

    /// The position of the node at `pointer`, or of its nearest ancestor that has one.
    pub(crate) fn find(&self, pointer: &str) -> Option<(usize, usize)> {
        let mut current = pointer;
        loop {
            if let Some(position) = self.nodes.get(current) {
                return Some(*position);
            }
            let cut = current.rfind('/')?;
            current = &current[..cut];
        }
    }
}

/// A dotted location (`data.states.a.transitions[0].to`) as a JSON pointer.
pub(crate) fn pointer_of(location: &str) -> String {
    let mut pointer = String::new();
    for part in location.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            pointer.push('/');
            pointer.push_str(&escape(name));
        }
        for index in indexes.split(['[', ']']).filter(|i| !i.is_empty()) {
            pointer.push('/');
            pointer.push_str(index);
        }
    }
    pointer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_keys_and_ancestors() {
        let text = "spec: flatmachine\ndata:\n  states:\n    start:\n      transitions:\n        - to: done\n          condition: x\n    done: {type: final}\n";
        let positions = Positions::of(text);
        assert_eq!(positions.find("/spec"), Some((1, 7)));
        assert_eq!(
            positions.find("/data/states/start/transitions/0/to"),
            Some((6, 15))
        );
        assert_eq!(positions.find("/data/states/done/type"), Some((8, 18)));
        // A missing child points at its parent, on the parent's line.
        let parent = positions.find("/data/states/start/transitions/0/nope");
        assert_eq!(parent.map(|p| p.0), Some(6));
    }

    #[test]
    fn dotted_locations_become_pointers() {
        assert_eq!(
            pointer_of("data.states.a.transitions[0].to"),
            "/data/states/a/transitions/0/to"
        );
        assert_eq!(pointer_of("data.machine[1].input"), "/data/machine/1/input");
        assert_eq!(pointer_of(""), "");
    }
}
