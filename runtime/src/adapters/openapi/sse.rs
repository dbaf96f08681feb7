//! Reading a `text/event-stream` body: bytes in, events out (the WHATWG event-stream format:
//! `data:` lines joined by newlines, `event:` and `id:` fields, `:` comments, a blank line ends
//! an event; lines end with LF, CRLF or CR).

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    /// `event:`; empty means `message`.
    pub(super) kind: String,
    pub(super) data: String,
}

/// An incremental parser with a bound on the size of one event.
pub(super) struct Parser {
    line: Vec<u8>,
    /// A CR ended the last line: an LF right after it belongs to it.
    after_cr: bool,
    kind: String,
    data: String,
    has_data: bool,
    limit: usize,
}

impl Parser {
    /// A parser that refuses an event (or a line) larger than `limit` bytes.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            kind: String::new(),
            data: String::new(),
            has_data: false,
            limit,
        }
    }

    /// Reads `bytes`, appending the events they complete to `events`.
    pub(super) fn push(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), String> {
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.field(&line, events)?;
                }
                _ => {
                    if self.line.len() + self.data.len() >= self.limit {
                        return Err(format!("an event is larger than {} bytes", self.limit));
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(())
    }

    fn field(&mut self, line: &[u8], events: &mut Vec<Event>) -> Result<(), String> {
        if line.is_empty() {
            if self.has_data {
                events.push(Event {
                    kind: std::mem::take(&mut self.kind),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.kind.clear();
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| "an event is not UTF-8".to_owned())?;
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.kind = value.to_owned(),
            // `id` and `retry` matter to a reconnecting browser; a forwarded stream does not
            // reconnect (a cut stream is an error to the caller).
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Result<Vec<Event>, String> {
        let mut parser = Parser::new(64);
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut events)?;
        }
        Ok(events)
    }

    fn event(kind: &str, data: &str) -> Event {
        Event {
            kind: kind.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_anywhere_and_every_line_ending() {
        let events = parse(&[
            b"id: 1\nda",
            b"ta: {\"n\":1}\r",
            b"\n\r\n: keep-alive\n\n",
            b"event: completed\rdata: {}\r\r",
        ])
        .unwrap();
        assert_eq!(events, [event("", "{\"n\":1}"), event("completed", "{}")]);
        let events = parse(&[b"data: a\ndata:b\n\nevent: x\n\n"]).unwrap();
        assert_eq!(
            events,
            [event("", "a\nb")],
            "an event without data is not dispatched"
        );
    }

    #[test]
    fn a_large_event_is_refused() {
        let long = [b'x'; 100];
        assert!(parse(&[b"data: ", &long]).unwrap_err().contains("larger"));
        let mut many = Vec::new();
        for _ in 0..20 {
            many.extend_from_slice(b"data: xxxx\n");
        }
        assert!(parse(&[&many]).is_err());
    }
}
