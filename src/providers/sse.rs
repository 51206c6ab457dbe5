//! Incremental server-sent-events framing: cuts a byte stream into whole
//! events, however the network splits it, without copying the bytes.

use bytes::{Bytes, BytesMut};
use std::borrow::Cow;

#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// Where to resume looking for a line end.
    scan: usize,
}

impl SseSplitter {
    /// Appends `chunk` and moves every complete event (with its terminating
    /// blank line) to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) {
        self.buf.extend_from_slice(chunk);
        loop {
            let Some(off) = memchr::memchr(b'\n', &self.buf[self.scan..]) else {
                self.scan = self.buf.len();
                return;
            };
            let nl = self.scan + off;
            let end = match (self.buf.get(nl + 1), self.buf.get(nl + 2)) {
                (Some(b'\n'), _) => nl + 2,
                (Some(b'\r'), Some(b'\n')) => nl + 3,
                (Some(b'\r'), None) | (None, _) => {
                    self.scan = nl;
                    return;
                }
                _ => {
                    self.scan = nl + 1;
                    continue;
                }
            };
            out.push(self.buf.split_to(end).freeze());
            self.scan = 0;
        }
    }

    /// Whatever is left that never became a complete event.
    pub fn take_rest(&mut self) -> Bytes {
        self.scan = 0;
        self.buf.split().freeze()
    }
}

/// The fields of one event that tollgate cares about.
#[derive(Debug, PartialEq)]
pub struct Event<'a> {
    pub event: Option<&'a str>,
    pub data: Cow<'a, str>,
}

pub fn parse(raw: &[u8]) -> Event<'_> {
    let text = std::str::from_utf8(raw).unwrap_or("");
    let mut event = None;
    let mut data: Option<Cow<'_, str>> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value),
            "data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(prev) => Cow::Owned(format!("{prev}\n{value}")),
                })
            }
            _ => {}
        }
    }
    Event {
        event,
        data: data.unwrap_or(Cow::Borrowed("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_all(pieces: &[&[u8]]) -> (Vec<Bytes>, Bytes) {
        let mut s = SseSplitter::default();
        let mut out = Vec::new();
        for p in pieces {
            s.push(p, &mut out);
        }
        (out, s.take_rest())
    }

    #[test]
    fn events_split_across_reads_and_line_endings() {
        let (events, rest) = split_all(&[
            b"data: {\"a\":1}\n",
            b"\ndata: [DO",
            b"NE]\r\n\r\nevent: ping\ndata: {}\n\nda",
        ]);
        assert_eq!(
            events,
            vec![
                Bytes::from_static(b"data: {\"a\":1}\n\n"),
                Bytes::from_static(b"data: [DONE]\r\n\r\n"),
                Bytes::from_static(b"event: ping\ndata: {}\n\n"),
            ]
        );
        assert_eq!(rest, Bytes::from_static(b"da"));
        let e = parse(&events[2]);
        assert_eq!(e.event, Some("ping"));
        assert_eq!(e.data, "{}");
    }

    #[test]
    fn multi_line_data_and_comments() {
        let e = parse(b": keep-alive\nevent:x\ndata: a\ndata:b\n\n");
        assert_eq!(
            e,
            Event {
                event: Some("x"),
                data: Cow::Borrowed("a\nb")
            }
        );
    }

    proptest! {
        /// However a stream is cut into reads, the events come out whole and
        /// in order, and nothing is lost or duplicated.
        #[test]
        fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..200, 0..12)) {
            let stream: &[u8] = b"data: {\"x\":\"a\\nb\"}\n\nevent: e\r\ndata: 1\r\n\r\ndata: [DONE]\n\n";
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts { pieces.push(&stream[last..c]); last = c; }
            pieces.push(&stream[last..]);
            let (events, rest) = split_all(&pieces);
            prop_assert_eq!(events.len(), 3);
            prop_assert!(rest.is_empty());
            let joined: Vec<u8> = events.iter().flat_map(|e| e.to_vec()).collect();
            prop_assert_eq!(&joined[..], stream);
        }
    }
}
