//! The TLS record layer over one direction of a TCP stream: records split across segments and
//! many records in one segment come out one at a time. Memory is one record at most.

use crate::capture::Timestamp;

pub const HANDSHAKE: u8 = 22;
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const APPLICATION_DATA: u8 = 23;

/// The largest record body any TLS version allows (2^14 plus the most expansion, RFC 5246 6.2.3).
const MAX_BODY: usize = (1 << 14) + 2048;

#[derive(Clone, Debug)]
pub struct Record {
    pub content_type: u8,
    pub version: [u8; 2],
    pub body: Vec<u8>,
    /// The capture time of the segment that completed the record.
    pub ts: Timestamp,
}

impl Record {
    pub fn header(&self) -> [u8; 5] {
        let len = (self.body.len() as u16).to_be_bytes();
        [
            self.content_type,
            self.version[0],
            self.version[1],
            len[0],
            len[1],
        ]
    }
}

#[derive(Debug, Default)]
pub struct RecordReader {
    held: Vec<u8>,
    /// Records read so far.
    pub records: u64,
}

/// Why the stream is not TLS records (any more).
#[derive(Debug, PartialEq, Eq)]
pub struct NotTls(pub String);

impl RecordReader {
    /// Takes the next bytes; hands each complete record to `each`. Once a header is not a TLS
    /// record header, nothing after it can be framed: the error says what was found.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        ts: Timestamp,
        each: &mut dyn FnMut(Record),
    ) -> Result<(), NotTls> {
        while !bytes.is_empty() || self.complete().is_some() {
            if let Some(len) = self.complete() {
                let body = self.held.split_off(5);
                let header = std::mem::take(&mut self.held);
                debug_assert_eq!(body.len(), len);
                let &[content_type, major, minor, ..] = header.as_slice() else {
                    return Err(NotTls("short header".into()));
                };
                self.records += 1;
                each(Record {
                    content_type,
                    version: [major, minor],
                    body,
                    ts,
                });
                continue;
            }
            let want = match self.held.len() {
                n if n < 5 => 5 - n,
                _ => self.body_len()? + 5 - self.held.len(),
            };
            let (taken, rest) = bytes
                .split_at_checked(want.min(bytes.len()))
                .unwrap_or_default();
            self.held.extend_from_slice(taken);
            bytes = rest;
            if self.held.len() >= 5 {
                self.body_len()?;
            }
        }
        Ok(())
    }

    /// Bytes of an unfinished record.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn complete(&self) -> Option<usize> {
        let len = self.body_len().ok()?;
        (self.held.len() == 5 + len).then_some(len)
    }

    fn body_len(&self) -> Result<usize, NotTls> {
        let Some(&[content_type, major, minor, len_high, len_low]) = self.held.get(..5) else {
            return Err(NotTls("short header".into()));
        };
        let len = u16::from_be_bytes([len_high, len_low]) as usize;
        if !(CHANGE_CIPHER_SPEC..=24).contains(&content_type) || major != 3 || len > MAX_BODY {
            return Err(NotTls(format!(
                "not a TLS record header: {content_type:02x} {major:02x} {minor:02x} length {len}"
            )));
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_across_and_within_pushes() {
        let mut wire = vec![22, 3, 3, 0, 3, 1, 2, 3, 23, 3, 3, 0, 1, 9];
        wire.extend_from_slice(&[23, 3, 3, 0, 2, 7]);
        let mut got = Vec::new();
        let mut reader = RecordReader::default();
        for byte in wire.chunks(1) {
            reader
                .push(byte, Timestamp::default(), &mut |r| {
                    got.push((r.content_type, r.body))
                })
                .unwrap();
        }
        assert_eq!(got, vec![(22, vec![1, 2, 3]), (23, vec![9])]);
        assert_eq!(reader.held(), 6, "the last record is not complete");
        let mut reader = RecordReader::default();
        let mut n = 0;
        reader
            .push(&wire[..14], Timestamp::default(), &mut |_| n += 1)
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn garbage_and_huge_lengths_are_not_records() {
        let mut reader = RecordReader::default();
        assert!(reader
            .push(b"EHLO x\r\n", Timestamp::default(), &mut |_| {})
            .is_err());
        let mut reader = RecordReader::default();
        assert!(reader
            .push(&[23, 3, 3, 0xff, 0xff], Timestamp::default(), &mut |_| {})
            .is_err());
    }
}
