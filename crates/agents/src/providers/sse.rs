//! An incremental server-sent-events parser: bytes in, events out, whatever the chunking.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, if any.
    pub(crate) event: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub(crate) data: String,
}

/// Splits a byte stream into events. Lines end in LF or CRLF; `:` lines are comments; a blank
/// line dispatches the event collected so far.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    pending: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        // Only whole lines are decoded, so a character split across chunks stays intact.
        while let Some(offset) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + offset;
            let line = self.pending[start..end]
                .strip_suffix(b"\r")
                .unwrap_or(&self.pending[start..end]);
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.pending.drain(..start);
        events
    }

    /// Ends the stream: a last line without a newline, and an event without its blank line,
    /// still count.
    pub(crate) fn finish(&mut self) -> Option<SseEvent> {
        let rest = std::mem::take(&mut self.pending);
        let mut last = None;
        if !rest.is_empty() {
            let line =
                String::from_utf8_lossy(rest.strip_suffix(b"\r").unwrap_or(&rest)).into_owned();
            last = self.line(&line);
        }
        last.or_else(|| self.dispatch())
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            // `id` and `retry` only matter to reconnecting clients.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        self.data.take().map(|data| SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events: Vec<SseEvent> = chunks.iter().flat_map(|c| parser.push(c)).collect();
        events.extend(parser.finish());
        events
    }

    fn data(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_survive_any_chunking() {
        let text = "event: a\ndata: {\"x\": \"é\"}\n\n: comment\ndata: one\ndata:two\r\n\r\ndata: [DONE]\n\n";
        let expected = vec![
            data(Some("a"), "{\"x\": \"é\"}"),
            data(None, "one\ntwo"),
            data(None, "[DONE]"),
        ];
        assert_eq!(all(&[text.as_bytes()]), expected);
        let bytes = text.as_bytes();
        for split in 1..bytes.len() {
            assert_eq!(
                all(&[&bytes[..split], &bytes[split..]]),
                expected,
                "split at {split}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(all(&singles), expected);
    }

    #[test]
    fn an_unterminated_last_event_still_counts() {
        assert_eq!(all(&[b"data: tail"]), vec![data(None, "tail")]);
        assert_eq!(all(&[b"event: ping\n\n"]), vec![]);
        assert_eq!(all(&[b""]), vec![]);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any bytes, split anywhere, give the same events as the whole body.
        #[test]
        fn chunking_never_changes_the_events(body in proptest::collection::vec(any::<u8>(), 0..200), split in any::<prop::sample::Index>()) {
            let at = split.index(body.len() + 1);
            let mut whole = SseParser::default();
            let mut expected = whole.push(&body);
            expected.extend(whole.finish());
            let mut parts = SseParser::default();
            let mut got = parts.push(&body[..at]);
            got.extend(parts.push(&body[at..]));
            got.extend(parts.finish());
            prop_assert_eq!(got, expected);
        }
    }
}
