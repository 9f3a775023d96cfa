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
    /// The header of an unfinished record, `header_len` bytes of it so far.
    header: [u8; 5],
    header_len: usize,
    /// Its body so far; room for all of it is made once the header is known, and the record
    /// takes it as it is.
    body: Vec<u8>,
    /// Records read so far.
    pub records: u64,
}

/// Why the stream is not TLS records (any more): the header found instead of a record's.
#[derive(Debug, PartialEq, Eq)]
pub struct NotTls([u8; 5]);

impl std::fmt::Display for NotTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [content_type, major, minor, high, low] = self.0;
        let len = u16::from_be_bytes([high, low]);
        write!(
            f,
            "not a TLS record header: {content_type:02x} {major:02x} {minor:02x} length {len}"
        )
    }
}

/// The body length a record header announces, if it is a TLS record header.
fn body_len(header: [u8; 5]) -> Result<usize, NotTls> {
    let [content_type, major, _, high, low] = header;
    let len = u16::from_be_bytes([high, low]) as usize;
    if !(CHANGE_CIPHER_SPEC..=24).contains(&content_type) || major != 3 || len > MAX_BODY {
        return Err(NotTls(header));
    }
    Ok(len)
}

impl RecordReader {
    /// Takes the next bytes; hands each complete record to `each`. Once a header is not a TLS
    /// record header, nothing after it can be framed: the error says what was found.
    ///
    /// Records whole within `bytes` are read where they are; only a record cut by the end of
    /// `bytes` is held.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        ts: Timestamp,
        each: &mut dyn FnMut(Record),
    ) -> Result<(), NotTls> {
        if self.held() > 0 {
            bytes = self.fill(bytes)?;
            if self.header_len < 5 || self.body.len() < body_len(self.header)? {
                return Ok(());
            }
            let body = std::mem::take(&mut self.body);
            self.header_len = 0;
            self.emit(self.header, body, ts, each);
        }
        while let Some((&header, rest)) = bytes.split_first_chunk::<5>() {
            let Some((body, rest)) = rest.split_at_checked(body_len(header)?) else {
                break;
            };
            self.emit(header, body.to_vec(), ts, each);
            bytes = rest;
        }
        self.fill(bytes)?;
        Ok(())
    }

    /// Adds to the held record what it lacks (its header first), no more; returns the rest.
    fn fill<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a [u8], NotTls> {
        let (taken, bytes) = bytes.split_at((5 - self.header_len).min(bytes.len()));
        let end = self.header_len + taken.len();
        if let Some(slot) = self.header.get_mut(self.header_len..end) {
            slot.copy_from_slice(taken);
        }
        self.header_len = end;
        if end < 5 {
            return Ok(bytes);
        }
        let missing = body_len(self.header)?.saturating_sub(self.body.len());
        self.body.reserve_exact(missing);
        let (taken, rest) = bytes.split_at(missing.min(bytes.len()));
        self.body.extend_from_slice(taken);
        Ok(rest)
    }

    fn emit(
        &mut self,
        header: [u8; 5],
        body: Vec<u8>,
        ts: Timestamp,
        each: &mut dyn FnMut(Record),
    ) {
        let [content_type, major, minor, ..] = header;
        self.records += 1;
        each(Record {
            content_type,
            version: [major, minor],
            body,
            ts,
        });
    }

    /// Bytes of an unfinished record.
    pub fn held(&self) -> usize {
        self.header_len + self.body.len()
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

    /// Every way of cutting the stream in three reads the same records, with the same bytes
    /// held at the end, as reading it whole.
    #[test]
    fn records_read_the_same_however_the_stream_is_cut() {
        let mut wire = vec![22, 3, 1, 0, 4, 1, 2, 3, 4, 23, 3, 3, 0, 0];
        wire.extend_from_slice(&[23, 3, 3, 0, 6, 9, 8, 7, 6, 5, 4, 21, 3, 3, 0, 2, 1]);
        let read = |cuts: &[usize]| {
            let mut got = Vec::new();
            let mut reader = RecordReader::default();
            let mut start = 0;
            for &end in cuts.iter().chain([&wire.len()]) {
                let piece = &wire[start..end];
                reader
                    .push(piece, Timestamp::default(), &mut |r| {
                        got.push((r.content_type, r.version, r.body))
                    })
                    .unwrap();
                start = end;
            }
            (got, reader.held(), reader.records)
        };
        let whole = read(&[]);
        assert_eq!(whole.0.len(), 3);
        assert_eq!(
            whole.0[1],
            (23, [3, 3], vec![]),
            "an empty record is a record"
        );
        assert_eq!(whole.1, 6, "the alert is not complete");
        for first in 0..=wire.len() {
            for second in first..=wire.len() {
                assert_eq!(read(&[first, second]), whole, "cut at {first} and {second}");
            }
        }
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
