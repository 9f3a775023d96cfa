//! IMAP framing: a command or response is a line that may carry literals (`{n}`, `{n+}`,
//! `{n-}`, `~{n}`); each literal's n bytes follow the line end that announces it, and the line
//! goes on after them. Lines are never split on CRLF inside a literal: the bytes are counted.
//!
//! A literal's length is never allocated up front: its bytes are kept as they arrive, up to
//! MAX_MESSAGE_BYTES (and hashed in full), so a literal that claims 4 GB costs what arrives.

use crate::capture::Timestamp;
use crate::proto::framing::{Inbox, Line, MAX_MESSAGE_BYTES};
use crate::proto::message::MessageBuilder;
use crate::proto::room::Room;

/// IMAP lines (without literals) are kept up to this length; longer ones are cut and noted.
pub const MAX_IMAP_LINE_BYTES: usize = 256 * 1024;
/// Literals per unit: more is an attack, the rest of the unit is then read as plain lines.
pub const MAX_LITERALS_PER_UNIT: usize = 1024;

/// A whole command or response: its text with each literal replaced by `{n}`, and the
/// literals, each with the position in `text` just after its marker.
#[derive(Debug)]
pub struct Unit {
    pub text: String,
    pub literals: Vec<(usize, MessageBuilder)>,
    pub ts: Timestamp,
    pub end_offset: u64,
    pub overlong: bool,
}

/// A literal announced at the end of a line: its size and whether the sender waits for a
/// continuation (`+`) before sending it (a synchronising literal, RFC 9051 4.3).
pub fn literal_marker(line: &str) -> Option<(u64, bool)> {
    let body = line.strip_suffix('}')?;
    let (_, inner) = body.rsplit_once('{')?;
    let (digits, sync) = match inner.strip_suffix(['+', '-']) {
        Some(d) => (d, false),
        None => (inner, true),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, sync))
}

#[derive(Debug)]
pub enum Step {
    /// Nothing more can be read now.
    Waiting,
    /// A unit is complete.
    Unit(Unit),
    /// The line announced a synchronising literal: its bytes come only after the other side
    /// says `+`. The reader stays at the literal.
    NeedsContinuation,
    /// Bytes were read into the unit in progress.
    Progress,
}

#[derive(Debug)]
pub struct UnitReader {
    /// Whether this side waits before a synchronising literal: clients do, servers never.
    waits_for_continuation: bool,
    unit: Option<Unit>,
    /// Literal bytes still to read.
    remaining: u64,
    /// A synchronising literal waits for its continuation.
    held: bool,
    /// A hole ran past the end of the last literal: the rest of the unit's line went with it,
    /// so the unit ends there (the next line is another unit, not its continuation).
    cut: bool,
    /// A literal announced more than a message keeps: its size and when, until told.
    pub oversized: Option<(u64, Timestamp)>,
    /// Where literals are kept (each is a message, or part of one).
    room: Room,
}

impl UnitReader {
    /// The reader of a client's commands.
    pub fn client(room: &Room) -> UnitReader {
        UnitReader {
            waits_for_continuation: true,
            ..UnitReader::server(room)
        }
    }

    /// The reader of a server's responses.
    pub fn server(room: &Room) -> UnitReader {
        UnitReader {
            waits_for_continuation: false,
            unit: None,
            remaining: 0,
            held: false,
            cut: false,
            oversized: None,
            room: room.clone(),
        }
    }

    pub fn in_progress(&self) -> bool {
        self.unit.is_some()
    }

    /// The announced literal may be sent now (the other side said `+`).
    pub fn release(&mut self) {
        self.held = false;
    }

    /// The announced literal will not come (the command was refused): the unit ends here.
    pub fn abandon(&mut self) -> Option<Unit> {
        self.held = false;
        self.remaining = 0;
        self.cut = false;
        self.unit.take()
    }

    /// A gap: inside a literal it is a hole; elsewhere the unit in progress is lost.
    pub fn gap(&mut self, len: u64) -> bool {
        match &mut self.unit {
            Some(unit) if self.remaining > 0 => {
                let inside = len.min(self.remaining);
                if let Some((_, literal)) = unit.literals.last_mut() {
                    literal.hole(inside);
                }
                self.remaining -= inside;
                self.cut = len > inside;
                true
            }
            _ => {
                self.unit = None;
                false
            }
        }
    }

    pub fn step(&mut self, inbox: &mut Inbox) -> Step {
        if self.held {
            return Step::Waiting;
        }
        if std::mem::take(&mut self.cut) {
            if let Some(unit) = self.unit.take() {
                return Step::Unit(unit);
            }
        }
        if self.remaining > 0 {
            let take = (self.remaining.min(inbox.held() as u64)) as usize;
            if take == 0 {
                return Step::Waiting;
            }
            if let Some((_, literal)) = self.unit.as_mut().and_then(|u| u.literals.last_mut()) {
                literal.append(inbox.available().get(..take).unwrap_or_default());
            }
            inbox.consume(take);
            self.remaining -= take as u64;
            return Step::Progress;
        }
        let Some(line) = inbox.next_line_within(MAX_IMAP_LINE_BYTES) else {
            return Step::Waiting;
        };
        self.add_line(line)
    }

    fn add_line(&mut self, line: Line) -> Step {
        let text = line.text();
        let unit = self.unit.get_or_insert_with(|| Unit {
            text: String::new(),
            literals: Vec::new(),
            ts: line.ts,
            end_offset: 0,
            overlong: false,
        });
        unit.text.push_str(&text);
        unit.ts = line.ts;
        unit.end_offset = line.end_offset;
        unit.overlong |= line.overlong;
        match literal_marker(&text) {
            Some((size, sync)) if !line.overlong && unit.literals.len() < MAX_LITERALS_PER_UNIT => {
                unit.literals.push((
                    unit.text.len(),
                    MessageBuilder::announced(line.ts, Some(size), &self.room),
                ));
                self.remaining = size;
                if size > MAX_MESSAGE_BYTES as u64 {
                    self.oversized = Some((size, line.ts));
                }
                if size == 0 {
                    return Step::Progress;
                }
                if sync && self.waits_for_continuation {
                    self.held = true;
                    return Step::NeedsContinuation;
                }
                Step::Progress
            }
            _ => match self.unit.take() {
                Some(unit) => Step::Unit(unit),
                None => Step::Waiting,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(literal_marker("a1 APPEND Sent {326}"), Some((326, true)));
        assert_eq!(literal_marker("a1 LOGIN {5+}"), Some((5, false)));
        assert_eq!(
            literal_marker("* 1 FETCH (BINARY[] ~{12}"),
            Some((12, true))
        );
        assert_eq!(
            literal_marker("* 1 FETCH (BODY[] {4294967296}"),
            Some((4_294_967_296, true))
        );
        assert_eq!(literal_marker("a1 NOOP {x}"), None);
        assert_eq!(literal_marker("a1 NOOP"), None);
    }

    #[test]
    fn literal_bytes_are_counted_not_split_on_crlf() {
        let mut inbox = Inbox::default();
        let mut reader = UnitReader::server(&crate::proto::room::Rooms::default().messages);
        let sent = b"* 1 FETCH (BODY[] {8}\r\nab\r\n\r\ncd)\r\n* 2 EXISTS\r\n";
        assert_eq!(inbox.push(sent, Timestamp(1)), sent.len());
        let mut units = Vec::new();
        loop {
            match reader.step(&mut inbox) {
                Step::Unit(u) => units.push(u),
                Step::Waiting => break,
                _ => {}
            }
        }
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].text, "* 1 FETCH (BODY[] {8})");
        let literal =
            units[0]
                .literals
                .pop()
                .unwrap()
                .1
                .finish("imap-fetch", true, None, Vec::new());
        assert_eq!(literal.bytes, b"ab\r\n\r\ncd");
        assert_eq!(units[1].text, "* 2 EXISTS");
    }

    #[test]
    fn a_huge_claim_costs_only_what_arrives() {
        let mut inbox = Inbox::default();
        let mut reader = UnitReader::server(&crate::proto::room::Rooms::default().messages);
        let held = b"* 1 FETCH (BODY[] {4000000000}\r\nshort";
        assert_eq!(inbox.push(held, Timestamp(1)), held.len());
        while !matches!(reader.step(&mut inbox), Step::Waiting) {}
        assert!(reader.in_progress());
        assert_eq!(reader.remaining, 4_000_000_000 - 5);
    }
}
