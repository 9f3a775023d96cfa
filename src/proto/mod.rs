//! Protocols: the fourth stage. Each dissector is fed one connection's two byte streams (data and
//! gaps, in capture order) and reports what the dialogue means as [`ProtoEvent`]s: exchanges
//! (a command with its reply), authentications, messages, the point where TLS starts, and notes
//! about anything it could not make sense of.
//!
//! `framing` splits streams into lines and counted bodies with named size limits; each protocol
//! folder keeps its grammar (`parser.rs`, pure functions) apart from its state machine (`mod.rs`).

pub mod framing;
pub mod imap;
pub mod message;
pub mod ntlm;
pub mod pop3;
pub mod room;
pub mod sasl;
pub mod smtp;
pub use imap::ImapDissector;
pub use pop3::Pop3Dissector;
pub use smtp::SmtpDissector;

use std::collections::VecDeque;

use room::Room;

use crate::capture::Timestamp;
use crate::secret::Secret;
use crate::tcp::Direction;

/// A command and the reply it got. Either may be missing: a server greeting has no command, a
/// command the capture ended on has no reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub command: Option<Command>,
    pub reply: Option<Reply>,
    /// Set on commands that are not part of the protocol (kept verbatim).
    pub unknown_command: bool,
}

/// Commands a connection holds while they await their reply. Past this many the oldest is given
/// up as unanswered, as at the end of the connection: a capture of the client's side alone would
/// otherwise hold every command it sent (two million NOOPs, a 12 MB capture, took 856 MB).
/// Past [`FREE_AWAITING`] they also draw on the room all connections share.
pub const MAX_AWAITING_REPLY: usize = 1000;

impl Exchange {
    /// A command that got no reply.
    pub fn unanswered(command: Command, unknown_command: bool) -> Exchange {
        Exchange {
            command: Some(command),
            reply: None,
            unknown_command,
        }
    }
}

/// A dissector's record of a command that awaits its reply.
pub trait AwaitsReply {
    /// The exchange it makes when no reply comes.
    fn unanswered(self) -> Exchange;
}

/// Commands each connection may have awaiting replies before it draws on the room all
/// connections share ([`room::Rooms::awaiting`]): enough for the pipelining of honest clients.
pub const FREE_AWAITING: usize = 32;

/// Room a queue of commands awaiting replies keeps once it is empty.
const IDLE_QUEUE_CAPACITY: usize = 16;

/// The commands a connection holds while they await their reply, oldest first. Past
/// [`FREE_AWAITING`] each one takes room from what all connections share; with no room left, or
/// [`MAX_AWAITING_REPLY`] waiting, the oldest is given up as unanswered, as at the end of the
/// connection.
#[derive(Debug)]
pub struct Awaiting<P> {
    queue: VecDeque<P>,
    room: Room,
}

impl<P> Awaiting<P> {
    pub fn new(room: &Room) -> Awaiting<P> {
        Awaiting {
            queue: VecDeque::new(),
            room: room.clone(),
        }
    }

    /// How many of `len` waiting commands take room from the shared one.
    fn drawn(len: usize) -> usize {
        len.saturating_sub(FREE_AWAITING)
    }

    /// Takes the command at `index`, the one a reply answers. A queue left empty gives back
    /// the memory a burst of pipelined commands made it grow to: an idle connection would keep
    /// it, and thousands of idle connections add up.
    pub fn take(&mut self, index: usize) -> Option<P> {
        let before = Self::drawn(self.queue.len());
        let answered = self.queue.remove(index);
        self.room.give_back(before - Self::drawn(self.queue.len()));
        if self.queue.is_empty() && self.queue.capacity() > IDLE_QUEUE_CAPACITY {
            self.queue = VecDeque::new();
        }
        answered
    }

    pub fn front_mut(&mut self) -> Option<&mut P> {
        self.queue.front_mut()
    }

    pub fn back_mut(&mut self) -> Option<&mut P> {
        self.queue.back_mut()
    }

    pub fn iter_mut(&mut self) -> std::collections::vec_deque::IterMut<'_, P> {
        self.queue.iter_mut()
    }
}

impl<P: AwaitsReply> Awaiting<P> {
    /// Queues a command to await its reply, giving up the oldest when there is no room.
    pub fn push(&mut self, command: P, out: &mut Vec<ProtoEvent>) {
        let len = self.queue.len();
        let full = len >= MAX_AWAITING_REPLY || (len >= FREE_AWAITING && self.room.take(1) == 0);
        if full {
            // The oldest goes and the new one takes its place: the room held stays the same.
            out.extend(
                self.queue
                    .pop_front()
                    .map(|p| ProtoEvent::Exchange(p.unanswered())),
            );
        }
        self.queue.push_back(command);
    }

    /// The connection ended: every command still waiting got no reply.
    pub fn end(&mut self, out: &mut Vec<ProtoEvent>) {
        self.room.give_back(Self::drawn(self.queue.len()));
        out.extend(
            self.queue
                .drain(..)
                .map(|p| ProtoEvent::Exchange(p.unanswered())),
        );
    }
}

impl<P> std::ops::Deref for Awaiting<P> {
    type Target = VecDeque<P>;

    /// Read access; changes go through the methods above, which keep the room's count.
    fn deref(&self) -> &VecDeque<P> {
        &self.queue
    }
}

impl<P> Drop for Awaiting<P> {
    fn drop(&mut self) {
        self.room.give_back(Self::drawn(self.queue.len()));
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The command line without its line end, as text (bytes that are not UTF-8 replaced).
    /// Secrets in it (SASL responses, passwords) are masked: see [`AuthAttempt`] for them.
    pub line: String,
    pub verb: String,
    /// When the segment that completed the command was captured.
    pub ts: Timestamp,
    /// Stream offset of the first byte after the command line.
    pub end_offset: u64,
}

/// A server's reply: its lines, code and enhanced code in one allocation. As a string each, a
/// multi-line reply was a dozen, and a parallel run frees them on another thread than the one
/// that made them (1.6 million of them on the TLS benchmark's first 400 MB).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The lines joined by '\n' (no line holds one: lines end there), then the code, then
    /// the enhanced code.
    buf: String,
    lines_end: usize,
    code_end: usize,
    has_enhanced: bool,
    pub ts: Timestamp,
    pub end_offset: u64,
}

impl Reply {
    /// A reply of `lines` (at least one), each without its line end.
    pub fn new<'a>(
        code: &str,
        enhanced: Option<&str>,
        lines: impl Iterator<Item = &'a str> + Clone,
        ts: Timestamp,
        end_offset: u64,
    ) -> Reply {
        let text_len: usize = lines.clone().map(|line| line.len() + 1).sum();
        let mut buf = String::with_capacity(text_len + code.len() + enhanced.map_or(0, str::len));
        for (i, line) in lines.enumerate() {
            if i > 0 {
                buf.push('\n');
            }
            buf.push_str(line);
        }
        let lines_end = buf.len();
        buf.push_str(code);
        let code_end = buf.len();
        buf.push_str(enhanced.unwrap_or_default());
        Reply {
            buf,
            lines_end,
            code_end,
            has_enhanced: enhanced.is_some(),
            ts,
            end_offset,
        }
    }

    /// The reply's code as sent: "250", "+OK", "OK".
    pub fn code(&self) -> &str {
        self.buf
            .get(self.lines_end..self.code_end)
            .unwrap_or_default()
    }

    /// RFC 3463 enhanced status code, like "2.1.0"; POP3's response code, like "SYS/PERM".
    pub fn enhanced(&self) -> Option<&str> {
        self.has_enhanced
            .then(|| self.buf.get(self.code_end..).unwrap_or_default())
    }

    /// The lines joined by newlines.
    pub fn text(&self) -> &str {
        self.buf.get(..self.lines_end).unwrap_or_default()
    }

    /// Each line without its line end.
    pub fn lines(&self) -> std::str::Split<'_, char> {
        self.text().split('\n')
    }

    pub fn first_line(&self) -> &str {
        self.lines().next().unwrap_or_default()
    }

    pub fn line_count(&self) -> usize {
        self.lines().count()
    }
}

/// One authentication attempt, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthAttempt {
    pub mechanism: String,
    pub username: Option<String>,
    /// The password, or for challenge-response mechanisms the response (CRAM-MD5 digest), or a
    /// bearer token.
    pub secret: Option<Secret>,
    /// None when the outcome was not captured.
    pub success: Option<bool>,
    pub ts: Timestamp,
}

/// A message that crossed the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedMessage {
    /// Where it was seen: "smtp", "pop3", "imap-fetch", "imap-append".
    pub source: &'static str,
    /// IMAP: the mailbox, UIDVALIDITY, UID and flags it is stored under, as far as the dialogue
    /// says.
    pub mailbox: Option<String>,
    pub uidvalidity: Option<u64>,
    pub uid: Option<u64>,
    pub flags: Vec<String>,
    /// IMAP: the section of a part fetch (`HEADER`, `1.2`, `TEXT`).
    pub section: Option<String>,
    /// IMAP, by the session's message numbers (0 for its first message): the whole message this
    /// part belongs to, captured before it; or for a whole message, its parts captured before it.
    pub part_of: Option<usize>,
    pub parts: Vec<usize>,
    /// The exact message bytes (SMTP: after dot-unstuffing, without the final dot line), up to
    /// [`framing::MAX_MESSAGE_BYTES`]; `size` and `sha256` always cover all of them.
    pub bytes: Vec<u8>,
    pub size: u64,
    pub sha256: [u8; 32],
    /// False when the capture ended (or a gap fell) before the message did.
    pub complete: bool,
    /// Bytes missing inside the message because of capture gaps.
    pub hole_bytes: u64,
    /// True when the message was longer than what was kept of it.
    pub truncated: bool,
    /// What was kept was cut short because the messages in progress had filled the room they
    /// share ([`room::Rooms::messages`]), not by the message's own limit.
    pub out_of_room: bool,
    /// Only part of a message by design (POP3 TOP, an IMAP header or section fetch).
    pub partial: bool,
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    pub ts: Timestamp,
}

/// What an IMAP client and server believe about the selected mailbox, from SELECT's data and
/// the untagged updates that follow (EXISTS, RECENT, EXPUNGE, FLAGS, UIDVALIDITY, UIDNEXT).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MailboxState {
    pub name: String,
    pub read_only: bool,
    pub exists: Option<u64>,
    pub recent: Option<u64>,
    pub unseen: Option<u64>,
    pub uidvalidity: Option<u64>,
    pub uidnext: Option<u64>,
    pub flags: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxEntry {
    pub number: u64,
    pub size: Option<u64>,
    pub uid: Option<String>,
}

/// Where TLS starts after STARTTLS/STLS: the stream offsets of the first TLS byte each way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    pub client_offset: u64,
    pub server_offset: u64,
    pub ts: Timestamp,
    /// What each side (client, server) had already sent past the upgrade point: the start of
    /// its TLS. The dissector reads only decrypted bytes after an upgrade.
    pub held: [Vec<u8>; 2],
}

impl Upgrade {
    /// The upgrade after `command` and the go-ahead reply ending at `reply_end`: what both
    /// inboxes still hold is already the start of TLS, and leaves them.
    pub fn take(
        command: &Command,
        reply_end: u64,
        ts: Timestamp,
        client: &mut framing::Inbox,
        server: &mut framing::Inbox,
    ) -> Upgrade {
        Upgrade {
            client_offset: command.end_offset,
            server_offset: reply_end,
            ts,
            held: [client.take_held(), server.take_held()],
        }
    }
}

/// Something the dissector noticed that the user should know.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub kind: NoteKind,
    pub direction: Option<Direction>,
    pub ts: Timestamp,
    pub text: String,
}

/// What a note is about, so that analysis can weigh it without reading its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Context for the reader (where TLS starts, a HelloRetryRequest).
    Info,
    /// Bytes were not captured.
    Gap,
    /// The connection (or the capture) ended inside a command, reply or message.
    Unfinished,
    /// A size limit was reached and bytes were dropped.
    Limit,
    /// The peer did not follow the protocol here.
    Malformed,
    /// What the TLS layer noticed (undecryptable records, hellos that do not parse).
    Tls,
    /// A TLS alert other than close_notify.
    TlsAlert,
    /// An RFC 821 source route in a path (`<@a,@b:user@host>`).
    SourceRoute,
    /// An end of DATA other than CRLF.CRLF, or a dot between bare line ends inside DATA.
    Smuggling,
    /// A command line ended by a bare LF, or holding a bare CR.
    BareLineEnd,
    /// Bytes sent after STARTTLS and before the TLS handshake.
    Injection,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProtoEvent {
    Exchange(Exchange),
    Auth(AuthAttempt),
    /// Boxed: every event of a parallel run travels between threads at the size of the
    /// largest kind.
    Message(Box<CapturedMessage>),
    Upgrade(Upgrade),
    /// The server's capabilities (EHLO keywords, CAPA, CAPABILITY), upper-cased keywords with
    /// their parameters.
    Capabilities(Vec<String>),
    /// A mailbox listing (POP3 LIST/UIDL): message number, size, unique id, as far as known.
    Mailbox(Vec<MailboxEntry>),
    /// The IMAP selected mailbox changed (None: nothing is selected any more).
    Selected(Option<MailboxState>),
    Note(Note),
}

impl ProtoEvent {
    pub fn as_exchange(&self) -> Option<&Exchange> {
        if let ProtoEvent::Exchange(x) = self {
            Some(x)
        } else {
            None
        }
    }

    pub fn as_auth(&self) -> Option<&AuthAttempt> {
        if let ProtoEvent::Auth(a) = self {
            Some(a)
        } else {
            None
        }
    }

    pub fn as_message(&self) -> Option<&CapturedMessage> {
        if let ProtoEvent::Message(m) = self {
            Some(m)
        } else {
            None
        }
    }

    pub fn as_upgrade(&self) -> Option<&Upgrade> {
        if let ProtoEvent::Upgrade(u) = self {
            Some(u)
        } else {
            None
        }
    }

    pub fn as_note(&self) -> Option<&Note> {
        if let ProtoEvent::Note(n) = self {
            Some(n)
        } else {
            None
        }
    }
}

/// The two sides of a dialogue, each read as far as it can go. Reading one side can let the
/// other go on (a reply decides how the client's held bytes are read), so both are read in turn
/// until neither moves.
pub(crate) trait TwoSides {
    fn pump_client(&mut self, out: &mut Vec<ProtoEvent>) -> bool;
    fn pump_server(&mut self, out: &mut Vec<ProtoEvent>) -> bool;
    /// The client's inbox and the server's.
    fn inboxes(&mut self) -> [&mut framing::Inbox; 2];
    /// Bytes of one direction are missing (see [`Loss`]): what is held goes with them, the
    /// dialogue resynchronises, and a message they fall in gets a hole.
    fn lose(
        &mut self,
        direction: Direction,
        len: u64,
        loss: Loss,
        ts: Timestamp,
        out: &mut Vec<ProtoEvent>,
    );

    fn inbox(&mut self, direction: Direction) -> &mut framing::Inbox {
        let [client, server] = self.inboxes();
        match direction {
            Direction::ClientToServer => client,
            Direction::ServerToClient => server,
        }
    }

    /// [`Dissector::data`] for a dialogue of two inboxes: what found no room is lost.
    fn receive(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<ProtoEvent>,
    ) {
        let lost = self.feed(direction, bytes, ts, out);
        note_drops(self.inboxes(), ts, false, out);
        if lost > 0 {
            self.lose(direction, lost, Loss::HeldLimit, ts, out);
            self.pump(out);
        }
    }

    /// [`Dissector::gap`] for a dialogue of two inboxes.
    fn missed(&mut self, direction: Direction, len: u64, ts: Timestamp, out: &mut Vec<ProtoEvent>) {
        self.lose(direction, len, Loss::NotCaptured, ts, out);
        self.pump(out);
    }

    /// Holds one side's `bytes` and reads on, as often as reading makes room. Returns how many
    /// found none: the side sent them while its bytes waited for the other side, past what an
    /// inbox may hold ([`framing::Inbox::push`]). They are counted as dropped; the caller makes
    /// them a gap ([`Loss::HeldLimit`]), or what follows would read as if it came straight after.
    fn feed(
        &mut self,
        direction: Direction,
        mut bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<ProtoEvent>,
    ) -> u64 {
        loop {
            let taken = self.inbox(direction).push(bytes, ts);
            bytes = bytes.get(taken..).unwrap_or_default();
            let held = self.inbox(direction).held();
            self.pump(out);
            let inbox = self.inbox(direction);
            // Reading took nothing of what is held: no more room will come of it.
            if bytes.is_empty() || inbox.held() >= held {
                inbox.refused(bytes.len() as u64);
                return bytes.len() as u64;
            }
        }
    }

    fn pump(&mut self, out: &mut Vec<ProtoEvent>) {
        loop {
            let client = self.pump_client(out);
            let server = self.pump_server(out);
            if !client && !server {
                break;
            }
        }
    }
}

/// Notes the bytes each side's inbox dropped at a limit (see [`framing::Inbox::drops_to_note`]).
pub(crate) fn note_drops(
    [client, server]: [&mut framing::Inbox; 2],
    ts: Timestamp,
    at_end: bool,
    out: &mut Vec<ProtoEvent>,
) {
    for (direction, inbox) in [
        (Direction::ClientToServer, client),
        (Direction::ServerToClient, server),
    ] {
        if let Some(dropped) = inbox.drops_to_note(at_end) {
            let text = format!(
                "{dropped} bytes dropped: the rest of an overlong line, or what a side sent \
                 while it waited, past {} MiB (or past the {} MiB all waiting sides share)",
                framing::MAX_HELD_BYTES >> 20,
                room::HELD_ROOM_BYTES >> 20
            );
            note(out, NoteKind::Limit, direction, ts, text);
        }
    }
}

/// The texts of the notes of one kind, in order.
#[cfg(test)]
pub(crate) fn note_texts(events: &[ProtoEvent], kind: NoteKind) -> Vec<&str> {
    events
        .iter()
        .filter_map(ProtoEvent::as_note)
        .filter(|n| n.kind == kind)
        .map(|n| n.text.as_str())
        .collect()
}

/// Notes a command line cut at its length limit.
pub(crate) fn note_overlong(out: &mut Vec<ProtoEvent>, line: &framing::Line) {
    if line.overlong {
        let text = format!("command line longer than {} bytes, cut", line.bytes.len());
        note(
            out,
            NoteKind::Limit,
            Direction::ClientToServer,
            line.ts,
            text,
        );
    }
}

/// Adds a note from one side of the dialogue.
pub(crate) fn note(
    out: &mut Vec<ProtoEvent>,
    kind: NoteKind,
    direction: Direction,
    ts: Timestamp,
    text: String,
) {
    out.push(ProtoEvent::Note(Note {
        kind,
        direction: Some(direction),
        ts,
        text,
    }));
}

/// Why bytes of a stream are missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The capture does not hold them (a hole in the TCP stream).
    NotCaptured,
    /// The side sent them while its bytes had to wait (for the other side's reply), past the
    /// [`framing::MAX_HELD_BYTES`] an inbox holds, or the room all inboxes share.
    HeldLimit,
}

impl Loss {
    /// How they went missing, as gap notes say it: "N bytes of the message {}".
    pub fn how(self) -> &'static str {
        match self {
            Loss::NotCaptured => "were not captured",
            Loss::HeldLimit => "were dropped (sent while waiting, past what may be held)",
        }
    }
}

/// A protocol dissector for one connection.
pub trait Dissector {
    fn data(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<ProtoEvent>,
    );
    fn gap(&mut self, direction: Direction, len: u64, ts: Timestamp, out: &mut Vec<ProtoEvent>);
    /// The connection ended: report what is unfinished (an unanswered command, a message cut off).
    fn end(&mut self, ts: Timestamp, out: &mut Vec<ProtoEvent>);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command known by its number.
    struct Numbered(usize);

    impl AwaitsReply for Numbered {
        fn unanswered(self) -> Exchange {
            let command = Command {
                line: format!("NOOP {}", self.0),
                verb: "NOOP".into(),
                ts: Timestamp::default(),
                end_offset: 0,
            };
            Exchange::unanswered(command, false)
        }
    }

    fn given_up(out: &[ProtoEvent]) -> Vec<&str> {
        out.iter()
            .filter_map(|e| e.as_exchange()?.command.as_ref())
            .map(|c| c.line.as_str())
            .collect()
    }

    #[test]
    fn commands_past_the_free_ones_share_one_room() {
        let room = Room::new(2);
        let (mut first, mut second) = (Awaiting::new(&room), Awaiting::new(&room));
        let mut out = Vec::new();
        for n in 0..FREE_AWAITING + 2 {
            first.push(Numbered(n), &mut out);
        }
        assert!(out.is_empty(), "two past the free ones fit in the room");
        for n in 0..FREE_AWAITING + 1 {
            second.push(Numbered(n), &mut out);
        }
        // No room left: the second connection gives up its own oldest, and keeps as many.
        assert_eq!(given_up(&out), ["NOOP 0"]);
        assert_eq!(second.len(), FREE_AWAITING);

        // An answer, the end of a connection, a dropped connection: each gives room back.
        out.clear();
        assert!(first.take(0).is_some());
        second.push(Numbered(100), &mut out);
        assert!(out.is_empty());
        first.end(&mut out);
        assert_eq!(out.len(), FREE_AWAITING + 1);
        drop(second);
        let mut third = Awaiting::new(&room);
        out.clear();
        for n in 0..FREE_AWAITING + 2 {
            third.push(Numbered(n), &mut out);
        }
        assert!(out.is_empty());
    }
}
