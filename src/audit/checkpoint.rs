//! Anchors and checkpoint files: chain heads kept outside the database.
//!
//! A hash chain alone cannot reveal a deleted tail, nor (unkeyed) a chain
//! recomputed by someone with write access. A `SEQ:HASH` copied elsewhere
//! (a checkpoint file on another host, a ticket, an e-mail) pins the chain
//! up to that seq, so the text formats here are deliberately trivial for
//! an auditor to read, write and compare by eye.

use std::fmt;
use std::str::FromStr;

use super::encoding::{from_hex32, to_hex};

/// The hash an entry must have: the chain head at `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnchorParseError {
    #[error("expected SEQ:HASH with a ':'")]
    MissingColon,
    #[error("seq {0:?} is not an integer >= 1")]
    BadSeq(String),
    #[error("hash is not 64 hex digits")]
    BadHash,
}

impl FromStr for Anchor {
    type Err = AnchorParseError;

    fn from_str(s: &str) -> Result<Anchor, AnchorParseError> {
        let (seq, hash) = s
            .trim()
            .split_once(':')
            .ok_or(AnchorParseError::MissingColon)?;
        let seq = match seq.parse::<i64>() {
            Ok(n) if n >= 1 && seq.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(AnchorParseError::BadSeq(seq.to_string())),
        };
        let hash = from_hex32(hash).ok_or(AnchorParseError::BadHash)?;
        Ok(Anchor { seq, hash })
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, to_hex(&self.hash))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint file line {line}: {reason}")]
pub struct CheckpointError {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// One checkpoint line: `SEQ:HASH TIME_MS\n`, time being when it was written.
pub fn format_line(a: &Anchor, time_ms: i64) -> String {
    format!("{a} {time_ms}\n")
}

/// Every checkpoint in file order, with the time it was written.
pub fn parse_file(text: &str) -> Result<Vec<(Anchor, i64)>, CheckpointError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        // `lines()` leaves a CR before the LF; only spaces and tabs are
        // whitespace in this format (a vertical tab or form feed is not).
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: String| CheckpointError {
            line: index + 1,
            reason,
        };
        let Some((anchor, time)) = line.split_once([' ', '\t']) else {
            return Err(fail("expected `SEQ:HASH TIME_MS`".to_string()));
        };
        let time = time.trim_start_matches([' ', '\t']);
        if anchor.contains(char::is_whitespace) || time.is_empty() {
            return Err(fail("expected `SEQ:HASH TIME_MS`".to_string()));
        }
        let anchor = anchor.parse::<Anchor>().map_err(|e| fail(e.to_string()))?;
        let time = time
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| time.parse::<i64>().ok())
            .flatten()
            .ok_or_else(|| {
                fail(format!(
                    "time {time:?} is not unix milliseconds (digits only)"
                ))
            })?;
        out.push((anchor, time));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn only_spaces_and_tabs_separate_and_the_time_is_digits_only() {
        let ok = format!("# c\r\n\t1:{H}\t \t1700000000300 \r\n\n 2:{H} 5\n");
        let parsed = parse_file(&ok).unwrap();
        assert_eq!(
            parsed.iter().map(|(a, t)| (a.seq, *t)).collect::<Vec<_>>(),
            [(1, 1700000000300), (2, 5)]
        );
        for bad in [
            format!("1:{H} +1700000000300\n"),
            format!("1:{H} -5\n"),
            format!("1:{H}\x0b1700000000300\n"),
            format!("1:{H} 17\x0b\n"),
            format!("\x0b1:{H} 17\n"),
            "\x0b\n".to_string(),
            format!("1:{H} 99999999999999999999\n"),
            format!("1:{H} 17 18\n"),
            format!("1:{H}\n"),
        ] {
            let e = parse_file(&format!("# header\n{bad}")).unwrap_err();
            assert_eq!(e.line, 2, "{bad:?}");
        }
    }

    #[test]
    fn anchor_round_trips() {
        let a: Anchor = format!("42:{H}").parse().unwrap();
        assert_eq!(a.seq, 42);
        assert_eq!(a.hash[1], 0x11);
        assert_eq!(a.to_string(), format!("42:{H}"));
        let upper: Anchor = format!("42:{}", H.to_uppercase()).parse().unwrap();
        assert_eq!(upper, a);
    }

    #[test]
    fn anchor_rejects_malformed() {
        assert_eq!("42".parse::<Anchor>(), Err(AnchorParseError::MissingColon));
        for bad in [
            format!("0:{H}"),
            format!("-1:{H}"),
            format!("+1:{H}"),
            format!(":{H}"),
        ] {
            assert!(
                matches!(bad.parse::<Anchor>(), Err(AnchorParseError::BadSeq(_))),
                "{bad}"
            );
        }
        assert_eq!(
            format!("1:{}", &H[1..]).parse::<Anchor>(),
            Err(AnchorParseError::BadHash)
        );
        assert_eq!(
            format!("1:{H}0").parse::<Anchor>(),
            Err(AnchorParseError::BadHash)
        );
        assert_eq!(
            format!("1:{}g", &H[1..]).parse::<Anchor>(),
            Err(AnchorParseError::BadHash)
        );
    }

    #[test]
    fn file_round_trips_and_skips_comments() {
        let a: Anchor = format!("7:{H}").parse().unwrap();
        let b = Anchor {
            seq: 9,
            hash: [0xab; 32],
        };
        let text = format!("7:{H} 1 # not a comment here\n");
        assert!(
            parse_file(&text).is_err(),
            "trailing text after the time is an error"
        );
        let text = format!(
            "# tollgate checkpoints\r\n\r\n{}   \n  # indented comment\n{}",
            format_line(&a, 1_700_000_000_000),
            format_line(&b, 5)
        );
        assert_eq!(
            parse_file(&text).unwrap(),
            vec![(a, 1_700_000_000_000), (b, 5)]
        );
        assert_eq!(format_line(&a, 3), format!("7:{H} 3\n"));
    }

    #[test]
    fn file_errors_name_the_line() {
        let text = format!("# c\n1:{H} 10\n\n2:{H}\n");
        let err = parse_file(&text).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(
            err.to_string().starts_with("checkpoint file line 4: "),
            "{err}"
        );
        let err = parse_file(&format!("1:{H} soon\n")).unwrap_err();
        assert_eq!(err.line, 1);
        let err = parse_file(&format!("x:{H} 1\n")).unwrap_err();
        assert!(err.reason.contains("seq"), "{err}");
    }
}
