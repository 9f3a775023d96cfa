//! Framing: one direction's bytes held until the dissector takes them as whole units (a line, a
//! counted chunk, the body of a message), with the capture time and stream offset of each unit.
//!
//! Every buffer has a named limit. A line longer than [`MAX_LINE_BYTES`] is cut there and the
//! rest of it discarded; a direction that keeps sending while its dissector waits for the other
//! side is held up to [`MAX_HELD_BYTES`], and what comes after is dropped, counted and handed
//! back to the dissector as lost (a hole in the stream, as if it had not been captured).

use std::collections::VecDeque;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::room::Room;
use crate::capture::Timestamp;

/// Longest command or reply line kept. RFC 5321 allows 512 octets for commands and RFC 4954
/// 12288 for AUTH lines; clients send longer XOAUTH2 tokens, so a little more is allowed.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Bytes held for a direction that waits (for example a client pipelining after STARTTLS).
pub const MAX_HELD_BYTES: usize = 1 << 20;
/// Held bytes that are each inbox's own; past them, an inbox made with a room draws on it
/// (see [`super::room::HELD_ROOM_BYTES`]). Honest clients hold a few commands, or a TLS
/// ClientHello sent before STARTTLS is answered.
pub const FREE_HELD_BYTES: usize = 4 << 10;
/// Message bytes kept for each message; size and hash still cover the whole message.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Searchers built once: these run on every read of a body, and building one costs about as
/// much as searching a short read.
static CR_DOT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r."));
static LINE_DOT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n."));

/// A line taken from an inbox, with its line end.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    pub bytes: Vec<u8>,
    pub ts: Timestamp,
    /// Stream offset just after the line.
    pub end_offset: u64,
    /// The line was longer than MAX_LINE_BYTES: `bytes` is its beginning, the rest is discarded.
    pub overlong: bool,
}

impl Line {
    /// The line without its CRLF or LF.
    pub fn content(&self) -> &[u8] {
        let b = self.bytes.strip_suffix(b"\n").unwrap_or(&self.bytes);
        b.strip_suffix(b"\r").unwrap_or(b)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.content()).into_owned()
    }
}

/// Room an empty inbox keeps for the next bytes: a few lines. Both inboxes of every idle
/// connection keep it (16 KiB each was 20 KB of each idle connection's 46), and a busy one
/// reallocates when it empties at no measurable cost.
const IDLE_BUFFER_CAPACITY: usize = 2 << 10;

#[derive(Debug, Default)]
pub struct Inbox {
    buf: Vec<u8>,
    start: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// End offset and capture time of each chunk still (partly) held, oldest first.
    chunks: VecDeque<(u64, Timestamp)>,
    /// Discarding the rest of an overlong line.
    discarding: bool,
    /// Bytes dropped: the held limit was reached, or the tail of an overlong line.
    pub dropped: u64,
    /// Of those, the bytes already noted.
    noted: u64,
    last_ts: Timestamp,
    /// The room all inboxes of a run share for what they hold past FREE_HELD_BYTES (none: only
    /// MAX_HELD_BYTES bounds this one), and how much of what it holds it drew from there.
    room: Option<Room>,
    drawn: usize,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if let Some(room) = &self.room {
            room.give_back(self.drawn);
        }
    }
}

impl Inbox {
    /// An inbox that holds what it must past FREE_HELD_BYTES in `room`.
    pub fn with_room(room: &Room) -> Inbox {
        let mut inbox = Inbox::default();
        inbox.room = Some(room.clone());
        inbox
    }

    /// How much of `wanted` more bytes it may hold now: up to MAX_HELD_BYTES, and past its own
    /// FREE_HELD_BYTES only what the shared room grants.
    fn space_for(&mut self, wanted: usize) -> usize {
        let own = MAX_HELD_BYTES.saturating_sub(self.held()).min(wanted);
        let beyond = (self.held() + own).saturating_sub(FREE_HELD_BYTES + self.drawn);
        let Some(room) = self.room.as_ref().filter(|_| beyond > 0) else {
            return own;
        };
        let granted = room.take(beyond);
        self.drawn += granted;
        own - (beyond - granted)
    }

    /// Gives back to the shared room what it no longer holds.
    fn release(&mut self) {
        let needed = self.held().saturating_sub(FREE_HELD_BYTES);
        if self.drawn > needed {
            if let Some(room) = &self.room {
                room.give_back(self.drawn - needed);
            }
            self.drawn = needed;
        }
    }

    /// Bytes dropped that are to be noted now: the first drop at once, the rest summed up at
    /// the end (a gigabyte line would otherwise give a note per segment).
    pub fn drops_to_note(&mut self, at_end: bool) -> Option<u64> {
        let new = self.dropped - self.noted;
        if new == 0 || (self.noted > 0 && !at_end) {
            return None;
        }
        self.noted = self.dropped;
        Some(new)
    }

    /// Holds what fits of `bytes` (see [`Inbox::space_for`]); returns how many it took. The
    /// rest waits for the dissector to read some (see [`super::TwoSides::feed`]), or is lost.
    #[must_use = "bytes past the held limit are not held: read on, or make them a gap"]
    pub fn push(&mut self, bytes: &[u8], ts: Timestamp) -> usize {
        self.last_ts = ts;
        let space = self.space_for(bytes.len());
        let kept = bytes.get(..space).unwrap_or(bytes);
        if kept.is_empty() {
            return 0;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(kept);
        self.chunks
            .push_back((self.offset + self.held() as u64, ts));
        kept.len()
    }

    /// Counts bytes that found no room: they are noted with the other drops.
    pub fn refused(&mut self, len: u64) {
        self.dropped += len;
    }

    /// A gap: what is held can no longer be completed, so it is thrown away (returned count) and
    /// the stream continues `len` bytes further on.
    pub fn gap(&mut self, len: u64, ts: Timestamp) -> usize {
        let discarded = self.held();
        self.offset += discarded as u64 + len;
        self.buf.clear();
        self.start = 0;
        self.chunks.clear();
        self.discarding = false;
        self.last_ts = ts;
        self.release();
        discarded
    }

    pub fn held(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn available(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Stream offset of the next byte to take.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Takes everything held: bytes that are not the dialogue's any more (TLS after STARTTLS).
    pub fn take_held(&mut self) -> Vec<u8> {
        let held = self.available().to_vec();
        self.consume(held.len());
        held
    }

    /// Takes `n` bytes; returns the capture time of the chunk that held the last of them.
    pub fn consume(&mut self, n: usize) -> Timestamp {
        let n = n.min(self.held());
        self.start += n;
        self.offset += n as u64;
        let mut ts = self.last_ts;
        while let Some(&(end, chunk_ts)) = self.chunks.front() {
            if end >= self.offset {
                if n > 0 {
                    ts = chunk_ts;
                }
                break;
            }
            ts = chunk_ts;
            self.chunks.pop_front();
        }
        if self.held() == 0 {
            // An idle connection keeps no room that one large segment made (thousands of idle
            // connections add up); a busy one allocates again, which costs little next to
            // reading a large segment.
            if self.buf.capacity() > IDLE_BUFFER_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
            self.start = 0;
            self.chunks.clear();
        }
        self.release();
        ts
    }

    /// The next whole line, or None until its line end arrives. A line that grows past
    /// MAX_LINE_BYTES is returned cut, marked overlong, and its rest is discarded.
    pub fn next_line(&mut self) -> Option<Line> {
        self.next_line_within(MAX_LINE_BYTES)
    }

    /// As [`Inbox::next_line`], with another limit (IMAP's lines carry long lists).
    pub fn next_line_within(&mut self, max: usize) -> Option<Line> {
        loop {
            let available = self.available();
            let newline = memchr::memchr(b'\n', available);
            if self.discarding {
                let skip = newline.map_or(available.len(), |i| i + 1);
                self.dropped += skip as u64;
                self.consume(skip);
                newline?;
                self.discarding = false;
                continue;
            }
            return match newline {
                Some(i) if i < max => {
                    let bytes = available.get(..=i)?.to_vec();
                    let ts = self.consume(i + 1);
                    Some(Line {
                        bytes,
                        ts,
                        end_offset: self.offset,
                        overlong: false,
                    })
                }
                _ if available.len() >= max => {
                    let bytes = available.get(..max)?.to_vec();
                    let ts = self.consume(max);
                    self.discarding = true;
                    Some(Line {
                        bytes,
                        ts,
                        end_offset: self.offset,
                        overlong: true,
                    })
                }
                _ => None,
            };
        }
    }
}

/// What reading a dot-terminated body did.
#[derive(Debug, PartialEq, Eq)]
pub enum DotBody {
    /// Nothing could be taken yet.
    Waiting,
    /// Body bytes were taken; the body goes on.
    Took(Timestamp),
    /// The dot line was reached (and taken).
    Ended(Timestamp),
}

/// Where a dot-terminated body stands between reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DotState {
    at_line_start: bool,
    /// The last line ended with a bare LF (no CR before it).
    after_bare_lf: bool,
    /// The last two bytes handed on, to find sequences that straddle two reads.
    tail: [u8; 2],
    /// The body held a line end other than CRLF around a dot, or ended that way: readers
    /// disagree on where such a body ends (SMTP smuggling, CVE-2023-51764).
    pub ambiguous: bool,
}

/// At the start of a body (right after the line that announced it).
impl Default for DotState {
    fn default() -> DotState {
        DotState {
            at_line_start: true,
            after_bare_lf: false,
            tail: [0; 2],
            ambiguous: false,
        }
    }
}

impl DotState {
    /// Bytes were lost: whatever comes next is not known to start a line.
    pub fn interrupt(&mut self) {
        self.at_line_start = false;
        self.tail = [0; 2];
    }

    /// Raw body bytes taken (stuffing dots included, which changes nothing here): a reader
    /// that ends lines at a bare CR would see a dot line in `\r.\r` or `\r.\n`.
    fn scan(&mut self, raw: &[u8]) {
        let [a, b] = self.tail;
        let head = [a, b, *raw.first().unwrap_or(&0), *raw.get(1).unwrap_or(&0)];
        let cr_dot = |w: &[u8]| matches!(w, [b'\r', b'.', b'\r' | b'\n']);
        // `\r.` is rare in mail: looking for it first keeps this at memchr's speed.
        let inside = || {
            CR_DOT
                .find_iter(raw)
                .any(|i| matches!(raw.get(i + 2), Some(b'\r' | b'\n')))
        };
        if head.windows(3).any(cr_dot) || inside() {
            self.ambiguous = true;
        }
        self.tail = match raw {
            [.., x, y] => [*x, *y],
            [y] => [b, *y],
            [] => self.tail,
        };
    }
}

/// Reads a body that ends with a line holding a lone dot: SMTP's DATA (RFC 5321 4.5.2) and
/// POP3's multi-line responses (RFC 1939 3). A dot that starts a line is removed; the dot line
/// ends the body and is not part of it. Like most servers, a bare LF ends a line here; when
/// that decides where the body ends, `state.ambiguous` says so. The body bytes go to `sink`.
pub fn read_dot_body(
    inbox: &mut Inbox,
    state: &mut DotState,
    sink: &mut dyn FnMut(&[u8]),
) -> DotBody {
    let available = inbox.available();
    let mut pos = 0;
    let mut ended = None;
    while let Some(rest) = available.get(pos..).filter(|rest| !rest.is_empty()) {
        if state.at_line_start && rest.starts_with(b".") {
            if rest.starts_with(b".\r\n") || rest.starts_with(b".\n") {
                let bare_lf = rest.starts_with(b".\n");
                if state.after_bare_lf || bare_lf {
                    state.ambiguous = true;
                }
                ended = Some(pos + if bare_lf { 2 } else { 3 });
                break;
            }
            if rest == b"." || rest == b".\r" {
                break; // wait: this may be the end
            }
            pos += 1;
            state.at_line_start = false;
            continue;
        }
        // Lines that do not start with a dot go on in one run: bodies rarely hold such lines.
        let run = LINE_DOT
            .find(rest)
            .map_or(rest, |nl| rest.get(..=nl).unwrap_or(rest));
        let at_line_start = run.ends_with(b"\n");
        if at_line_start {
            let before_lf = match run {
                [.., cr, _] => *cr,
                // A lone LF: the byte before it came earlier in this read, or in the last one.
                _ => match available.get(..pos).and_then(<[u8]>::last) {
                    Some(&before) => before,
                    None => state.tail[1],
                },
            };
            state.after_bare_lf = before_lf != b'\r';
        }
        sink(run);
        pos += run.len();
        state.at_line_start = at_line_start;
    }
    state.scan(available.get(..ended.unwrap_or(pos)).unwrap_or(available));
    match ended {
        Some(end) => DotBody::Ended(inbox.consume(end)),
        None if pos > 0 => DotBody::Took(inbox.consume(pos)),
        None => DotBody::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_anywhere_carry_the_completing_time() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.push(b"EHLO a", Timestamp(1)), 6);
        assert_eq!(inbox.next_line(), None);
        assert_eq!(inbox.push(b"\r\nNOOP\r\nQU", Timestamp(2)), 10);
        let first = inbox.next_line().unwrap();
        assert_eq!(
            (first.content(), first.ts, first.end_offset),
            (&b"EHLO a"[..], Timestamp(2), 8)
        );
        assert_eq!(inbox.next_line().unwrap().content(), b"NOOP");
        assert_eq!(inbox.next_line(), None);
        assert_eq!(inbox.push(b"IT\n", Timestamp(3)), 3);
        let quit = inbox.next_line().unwrap();
        assert_eq!(
            (quit.content(), quit.ts, quit.end_offset),
            (&b"QUIT"[..], Timestamp(3), 19)
        );
    }

    #[test]
    fn overlong_line_is_cut_and_its_rest_discarded() {
        let mut inbox = Inbox::default();
        assert_eq!(
            inbox.push(&vec![b'A'; MAX_LINE_BYTES + 10], Timestamp(1)),
            MAX_LINE_BYTES + 10
        );
        let line = inbox.next_line().unwrap();
        assert!(line.overlong);
        assert_eq!(line.bytes.len(), MAX_LINE_BYTES);
        assert_eq!(inbox.push(b"AAAA\r\nNOOP\r\n", Timestamp(2)), 12);
        assert_eq!(inbox.next_line().unwrap().content(), b"NOOP");
        assert_eq!(inbox.dropped, 16);
    }

    #[test]
    fn gap_discards_the_partial_line_and_moves_the_offset() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.push(b"MAIL FR", Timestamp(1)), 7);
        assert_eq!(inbox.gap(100, Timestamp(2)), 7);
        assert_eq!(inbox.push(b"RSET\r\n", Timestamp(3)), 6);
        assert_eq!(inbox.next_line().unwrap().end_offset, 113);
    }

    #[test]
    fn dot_body_unstuffs_and_waits_at_a_possible_end() {
        let mut inbox = Inbox::default();
        let mut body = Vec::new();
        let mut state = DotState::default();
        assert_eq!(inbox.push(b"a\r\n..b\r\n.", Timestamp(1)), 9);
        let step = read_dot_body(&mut inbox, &mut state, &mut |b| body.extend_from_slice(b));
        assert_eq!(step, DotBody::Took(Timestamp(1)));
        assert_eq!(inbox.held(), 1, "the lone dot waits for its line end");
        assert_eq!(inbox.push(b"\r\nNEXT", Timestamp(2)), 6);
        let step = read_dot_body(&mut inbox, &mut state, &mut |b| body.extend_from_slice(b));
        assert_eq!(step, DotBody::Ended(Timestamp(2)));
        assert_eq!(body, b"a\r\n.b\r\n");
        assert_eq!(inbox.available(), b"NEXT");
        assert!(!state.ambiguous, "CRLF.CRLF is the one unambiguous end");
    }

    /// The end-of-data forms of the SMTP smuggling research (Longin, 2023), each split at
    /// every byte, against the plain CRLF.CRLF end.
    #[test]
    fn dot_body_marks_every_ambiguous_end() {
        let bodies: [(&[u8], bool); 6] = [
            (b"a\r\nb\r\n.\r\n", false),
            (b"a\n.\r\nMAIL\r\n.\r\n", true),
            (b"a\r\n.\nMAIL\r\n.\r\n", true),
            (b"a\n.\nMAIL\r\n.\r\n", true),
            (b"a\r.\r\nMAIL\r\n.\r\n", true),
            (b"a\r.\rMAIL\r\n.\r\n", true),
        ];
        for (bytes, ambiguous) in bodies {
            for split in 0..bytes.len() {
                let mut inbox = Inbox::default();
                let mut state = DotState::default();
                assert_eq!(inbox.push(&bytes[..split], Timestamp(1)), split);
                read_dot_body(&mut inbox, &mut state, &mut |_| {});
                assert_eq!(
                    inbox.push(&bytes[split..], Timestamp(2)),
                    bytes.len() - split
                );
                read_dot_body(&mut inbox, &mut state, &mut |_| {});
                assert_eq!(
                    state.ambiguous,
                    ambiguous,
                    "{:?} split at {split}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    #[test]
    fn inboxes_share_a_room_past_their_own_bytes() {
        let (room, t) = (Room::new(10_000), Timestamp(1));
        let wanted = vec![b'x'; 20_000];
        let mut a = Inbox::with_room(&room);
        let mut b = Inbox::with_room(&room);
        assert_eq!(a.push(&wanted, t), FREE_HELD_BYTES + 10_000);
        assert_eq!(b.push(&wanted, t), FREE_HELD_BYTES, "only its own bytes");
        a.consume(6_000);
        assert_eq!(
            b.push(&wanted, t),
            6_000,
            "what a read went back to the room"
        );
        b.gap(0, t);
        drop(a);
        let mut c = Inbox::with_room(&room);
        assert_eq!(
            c.push(&wanted, t),
            FREE_HELD_BYTES + 10_000,
            "all of it came back"
        );
    }

    #[test]
    fn held_bytes_are_bounded() {
        let mut inbox = Inbox::default();
        assert_eq!(
            inbox.push(&vec![0; MAX_HELD_BYTES + 5], Timestamp(1)),
            MAX_HELD_BYTES
        );
        assert_eq!(inbox.held(), MAX_HELD_BYTES);
        assert_eq!(inbox.push(b"more", Timestamp(2)), 0);
    }
}
