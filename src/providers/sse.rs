//! Incremental server-sent-events framing: cuts a byte stream into whole
//! events, however the network splits it, holding at most `cap` bytes of
//! one event. Usage lives in small events; an event longer than the cap is
//! passed on in pieces as it arrives ([`Piece::Oversized`]) and never
//! inspected, so one huge upstream event cannot take unbounded memory.

use bytes::{Bytes, BytesMut};
use std::borrow::Cow;

/// What the splitter hands on, in stream order.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// One complete event with its terminating blank line.
    Event(Bytes),
    /// Part of an event longer than the cap: forwarded unread.
    Oversized(Bytes),
}

pub struct SseSplitter {
    buf: BytesMut,
    /// Where to resume looking for a line end.
    scan: usize,
    cap: usize,
    /// Inside an oversized event: the bytes until its end go out as
    /// [`Piece::Oversized`].
    skipping: bool,
    /// The last two bytes passed while skipping, to find an event end that
    /// straddles two chunks.
    last2: [u8; 2],
}

impl SseSplitter {
    /// A splitter that holds at most `cap` bytes of one event.
    pub fn new(cap: usize) -> SseSplitter {
        SseSplitter {
            buf: BytesMut::new(),
            scan: 0,
            cap: cap.max(1),
            skipping: false,
            last2: [0; 2],
        }
    }

    /// How many bytes are held waiting for the end of an event.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes `chunk` and moves every complete event (with its terminating
    /// blank line), and every piece of an oversized event, to `out`.
    pub fn push(&mut self, chunk: &Bytes, out: &mut Vec<Piece>) {
        let mut at = 0;
        while at < chunk.len() {
            if self.skipping {
                at = self.skip(chunk, at, out);
                continue;
            }
            let room = self.cap - self.buf.len();
            let take = room.min(chunk.len() - at);
            self.buf.extend_from_slice(&chunk[at..at + take]);
            at += take;
            self.split_events(out);
            if self.buf.len() == self.cap {
                // A full buffer without an event end: the event is longer
                // than the cap. Pass on what is held and skip to its end.
                let held = self.buf.split().freeze();
                self.last2 = last_two(self.last2, &held);
                out.push(Piece::Oversized(held));
                self.scan = 0;
                self.skipping = true;
            }
        }
    }

    /// Passes `chunk[at..]` on up to the end of the oversized event (or all
    /// of it); returns where the skipped part ends.
    fn skip(&mut self, chunk: &Bytes, at: usize, out: &mut Vec<Piece>) -> usize {
        let rest = &chunk[at..];
        let mut prev = self.last2;
        let mut end = None;
        for nl in memchr::memchr_iter(b'\n', rest) {
            let p1 = if nl >= 1 { rest[nl - 1] } else { prev[1] };
            let p2 = match nl {
                0 => prev[0],
                1 => prev[1],
                _ => rest[nl - 2],
            };
            if p1 == b'\n' || (p1 == b'\r' && p2 == b'\n') {
                end = Some(nl + 1);
                break;
            }
        }
        let upto = end.unwrap_or(rest.len());
        out.push(Piece::Oversized(chunk.slice(at..at + upto)));
        prev = last_two(prev, &rest[..upto]);
        if end.is_some() {
            self.skipping = false;
            prev = [0; 2];
        }
        self.last2 = prev;
        at + upto
    }

    fn split_events(&mut self, out: &mut Vec<Piece>) {
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
            out.push(Piece::Event(self.buf.split_to(end).freeze()));
            self.scan = 0;
        }
    }

    /// Whatever is left that never became a complete event (nothing when
    /// the stream ended inside an oversized event: that was passed on).
    pub fn take_rest(&mut self) -> Bytes {
        self.scan = 0;
        self.skipping = false;
        self.buf.split().freeze()
    }
}

/// The last two bytes of `prev` followed by `more`.
fn last_two(prev: [u8; 2], more: &[u8]) -> [u8; 2] {
    match more {
        [] => prev,
        [b] => [prev[1], *b],
        [.., a, b] => [*a, *b],
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
            "data" => match &mut data {
                None => data = Some(Cow::Borrowed(value)),
                // Appending in place keeps many-line events linear.
                Some(joined) => {
                    let joined = joined.to_mut();
                    joined.push('\n');
                    joined.push_str(value);
                }
            },
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
        let mut s = SseSplitter::new(1024);
        let mut out = Vec::new();
        for p in pieces {
            s.push(&Bytes::copy_from_slice(p), &mut out);
        }
        let events = out
            .into_iter()
            .map(|p| match p {
                Piece::Event(e) => e,
                Piece::Oversized(_) => panic!("no event here is oversized"),
            })
            .collect();
        (events, s.take_rest())
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

    #[test]
    fn an_oversized_event_passes_in_pieces_and_the_buffer_stays_under_the_cap() {
        const CAP: usize = 64;
        let big = format!("data: {}\r\n\r\n", "x".repeat(1000));
        let stream = format!("data: a\n\n{big}data: b\n\ndata: [DONE]\n\n");
        for piece_len in [1, 7, 63, 64, 65, 500, 5000] {
            let mut s = SseSplitter::new(CAP);
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(piece_len) {
                s.push(&Bytes::copy_from_slice(piece), &mut out);
                assert!(s.buffered() <= CAP, "held {} bytes", s.buffered());
            }
            assert!(s.take_rest().is_empty());
            let mut events = Vec::new();
            let mut oversized = Vec::new();
            for p in out {
                match p {
                    Piece::Event(e) => events.push(e),
                    Piece::Oversized(o) => oversized.extend_from_slice(&o),
                }
            }
            assert_eq!(oversized, big.as_bytes(), "pieces of {piece_len}");
            assert_eq!(
                events,
                vec![
                    Bytes::from_static(b"data: a\n\n"),
                    Bytes::from_static(b"data: b\n\n"),
                    Bytes::from_static(b"data: [DONE]\n\n"),
                ]
            );
        }
    }

    #[test]
    fn many_data_lines_join_in_linear_time() {
        // Quadratic joining takes seconds at this size.
        const LINES: usize = 200_000;
        let mut raw = String::with_capacity(LINES * 12);
        for i in 0..LINES {
            raw.push_str(&format!("data: {}\n", i % 10));
        }
        raw.push('\n');
        let e = parse(raw.as_bytes());
        assert_eq!(e.data.len(), LINES * 2 - 1);
        assert!(e.data.starts_with("0\n1\n2"));
        assert!(e.data.ends_with("8\n9"));
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
