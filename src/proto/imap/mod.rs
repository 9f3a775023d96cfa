//! The IMAP dissector (RFC 9051 and 3501; LITERAL+/- 7888, SASL-IR 4959, IDLE 2177, BINARY
//! 3516, UIDPLUS 4315).
//!
//! Commands and responses are read as whole units with their literals counted (`units`), and
//! completions pair with commands by tag, so several commands may be in flight. Untagged data
//! is shown with the oldest command in flight. The client waits for the server where the
//! protocol makes it: before a synchronising literal (`+` or a refusal), during AUTHENTICATE
//! (challenges), during IDLE (until DONE), and after STARTTLS.
//!
//! Messages: every FETCH literal of a whole message (BODY[], RFC822, BINARY[]) is a message
//! (imap-fetch) with the selected mailbox and UID; header and part fetches are partial
//! messages; partial fetches `<origin.length>` of one message are stitched in order until a
//! chunk comes back shorter than asked. An APPEND's literal is a message (imap-append).
//!
//! COMPRESS=DEFLATE (RFC 4978): after its tagged OK each direction is one raw deflate stream,
//! inflated here and read as before. A corrupt stream, or a gap in it, ends reading that
//! direction (deflate cannot resume); the bytes are counted.

pub mod catalog;
pub mod parser;
pub mod units;

use super::framing::{Inbox, MAX_MESSAGE_BYTES};
use super::message::MessageBuilder;
use super::room::{Room, Rooms};
use super::sasl::Sasl;
use super::{
    note, note_drops, AuthAttempt, Awaiting, AwaitsReply, CapturedMessage, Command, Dissector,
    Exchange, Loss, MailboxState, NoteKind, ProtoEvent, Reply, TwoSides, Upgrade,
};
use crate::capture::Timestamp;
use crate::secret::Secret;
use crate::tcp::Direction;
use catalog::{Catalog, Slot};
use parser::{Response, Section};
use units::{Step, Unit, UnitReader};

/// Command names a dialogue resynchronises on after a gap.
pub const KNOWN_COMMANDS: [&str; 35] = [
    "CAPABILITY",
    "LOGIN",
    "AUTHENTICATE",
    "STARTTLS",
    "ID",
    "ENABLE",
    "LIST",
    "LSUB",
    "STATUS",
    "NAMESPACE",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "APPEND",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "SEARCH",
    "EXPUNGE",
    "CLOSE",
    "UNSELECT",
    "IDLE",
    "NOOP",
    "LOGOUT",
    "CHECK",
    "COMPRESS",
    "UID FETCH",
    "UID STORE",
    "UID SEARCH",
    "UID COPY",
];

/// Inflated bytes produced per step.
const INFLATE_CHUNK: usize = 64 * 1024;

/// Untagged lines kept with one command (a FETCH 1:* of a large mailbox can send many).
const MAX_UNTAGGED_LINES: usize = 1000;

#[derive(Debug, Default, PartialEq)]
enum ClientMode {
    #[default]
    Command,
    /// Waiting for the server: AUTHENTICATE and STARTTLS decide how the client goes on.
    AwaitReply,
    SaslResponse,
    /// After IDLE, until the client's DONE.
    Idle,
}

#[derive(Debug, Clone)]
enum Kind {
    Other,
    Login(String, String),
    Authenticate,
    StartTls,
    Select,
    Fetch,
    Compress,
}

#[derive(Debug)]
struct Pending {
    tag: String,
    command: Command,
    kind: Kind,
    untagged: Vec<String>,
    /// A partial fetch's asked length.
    requested: Option<u64>,
}

impl AwaitsReply for Pending {
    fn unanswered(self) -> Exchange {
        Exchange::unanswered(self.command, false)
    }
}

/// A message fetched in pieces (`BODY[]<origin.length>`).
#[derive(Debug)]
struct Chunked {
    slot: Option<Slot>,
    message: MessageBuilder,
}

#[derive(Debug)]
pub struct ImapDissector {
    client: Inbox,
    server: Inbox,
    client_reader: UnitReader,
    server_reader: UnitReader,
    mode: ClientMode,
    pending: Awaiting<Pending>,
    /// The client holds a synchronising literal until the server's `+`.
    awaiting_continuation: bool,
    /// The selected mailbox as both sides see it, and one being selected (until its OK).
    state: Option<MailboxState>,
    selecting: Option<MailboxState>,
    state_changed: bool,
    sasl: Option<Sasl>,
    greeted: bool,
    chunked: Option<Chunked>,
    message_room: Room,
    /// The selected mailbox's messages as the dialogue identifies them.
    catalog: Catalog,
    /// Messages reported so far: the next one's number in the session.
    messages: usize,
    resync: [bool; 2],
    /// Bytes past a broken deflate stream, not read: [client, server].
    opaque: [u64; 2],
    /// After COMPRESS=DEFLATE: each direction's inflater.
    inflaters: [Option<flate2::Decompress>; 2],
    /// A direction whose deflate stream broke (or lost bytes): not read any further.
    undecodable: [bool; 2],
}

/// A literal larger than a message keeps is still read (hashed and counted), not kept whole.
fn note_oversized(reader: &mut UnitReader, direction: Direction, out: &mut Vec<ProtoEvent>) {
    if let Some((size, ts)) = reader.oversized.take() {
        let text = format!(
            "a literal of {size} bytes was announced; only its first {} MiB are kept (all of it \
             is hashed and counted)",
            MAX_MESSAGE_BYTES >> 20
        );
        note(out, NoteKind::Limit, direction, ts, text);
    }
}

fn literal_bytes(unit: &mut Unit) -> Vec<Vec<u8>> {
    unit.literals
        .drain(..)
        .map(|(_, l)| l.finish("imap-fetch", true, None, Vec::new()).bytes)
        .collect()
}

impl Default for ImapDissector {
    fn default() -> Self {
        ImapDissector::with_rooms(&Rooms::default())
    }
}

impl ImapDissector {
    /// A dissector whose messages and awaiting commands count in `rooms`, with other
    /// connections'.
    pub fn with_rooms(rooms: &Rooms) -> Self {
        ImapDissector {
            client: Inbox::with_room(&rooms.held),
            server: Inbox::with_room(&rooms.held),
            client_reader: UnitReader::client(&rooms.messages),
            server_reader: UnitReader::server(&rooms.messages),
            message_room: rooms.messages.clone(),
            mode: ClientMode::Command,
            pending: Awaiting::new(&rooms.awaiting),
            awaiting_continuation: false,
            state: None,
            selecting: None,
            state_changed: false,
            sasl: None,
            greeted: false,
            chunked: None,
            catalog: Catalog::default(),
            messages: 0,
            resync: [false; 2],
            opaque: [0; 2],
            inflaters: [None, None],
            undecodable: [false; 2],
        }
    }
}

impl Dissector for ImapDissector {
    fn data(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<ProtoEvent>,
    ) {
        if *direction.pick(&self.undecodable) {
            *direction.pick_mut(&mut self.opaque) += bytes.len() as u64;
            return;
        }
        if direction.pick(&self.inflaters).is_some() {
            self.inflate(direction, bytes, ts, true, out);
            note_drops(self.inboxes(), ts, false, out);
            return;
        }
        self.receive(direction, bytes, ts, out);
    }

    fn gap(&mut self, direction: Direction, len: u64, ts: Timestamp, out: &mut Vec<ProtoEvent>) {
        self.missed(direction, len, ts, out);
    }

    fn end(&mut self, ts: Timestamp, out: &mut Vec<ProtoEvent>) {
        note_drops(self.inboxes(), ts, true, out);
        for (direction, reader) in [
            (Direction::ClientToServer, &mut self.client_reader),
            (Direction::ServerToClient, &mut self.server_reader),
        ] {
            if reader.abandon().is_some() {
                note(
                    out,
                    NoteKind::Unfinished,
                    direction,
                    ts,
                    "the connection ended inside a command or response".into(),
                );
            }
        }
        self.flush_chunked(out);
        if let Some(sasl) = self.sasl.take() {
            out.push(ProtoEvent::Auth(sasl.attempt(None, ts)));
        }
        self.pending.end(out);
        let [c, s] = self.opaque;
        if c + s > 0 {
            note(out, NoteKind::Malformed, Direction::ClientToServer, ts, format!("past a broken deflate stream: {c} bytes from the client and {s} from the server, not decoded"));
        }
    }
}

/// EXAMINE selects read-only.
fn name_is_examine(text: &str) -> bool {
    text.split(' ')
        .nth(1)
        .is_some_and(|c| c.eq_ignore_ascii_case("EXAMINE"))
}

impl ImapDissector {
    fn emit(&mut self, message: Box<CapturedMessage>, out: &mut Vec<ProtoEvent>) {
        self.messages += 1;
        out.push(ProtoEvent::Message(message));
    }

    /// Applies an untagged update to the mailbox being selected, else to the selected one.
    fn update_mailbox(&mut self, update: parser::MailboxUpdate<'_>) {
        let changes_selected = self.selecting.is_none();
        let Some(state) = self.selecting.as_mut().or(self.state.as_mut()) else {
            return;
        };
        match update {
            parser::MailboxUpdate::Exists(n) => state.exists = Some(n),
            parser::MailboxUpdate::Recent(n) => state.recent = Some(n),
            parser::MailboxUpdate::Expunge(seq) => {
                state.exists = state.exists.map(|n| n.saturating_sub(1));
                if changes_selected {
                    self.catalog.expunge(seq);
                }
            }
            parser::MailboxUpdate::Flags(flags) => state.flags = Some(flags.to_string()),
            parser::MailboxUpdate::Code(name, value) => match name {
                "UIDVALIDITY" => state.uidvalidity = Some(value),
                "UIDNEXT" => state.uidnext = Some(value),
                _ => state.unseen = Some(value),
            },
        }
        self.state_changed |= changes_selected;
    }

    /// COMPRESS=DEFLATE took effect (RFC 4978): from here both directions are one raw deflate
    /// stream each. What both sides already hold past this point is compressed.
    fn start_compression(&mut self, ts: Timestamp, out: &mut Vec<ProtoEvent>) {
        self.mode = ClientMode::Command;
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            let inbox = match direction {
                Direction::ClientToServer => &mut self.client,
                Direction::ServerToClient => &mut self.server,
            };
            let held = inbox.available().to_vec();
            inbox.consume(held.len());
            *direction.pick_mut(&mut self.inflaters) = Some(flate2::Decompress::new(false));
            self.inflate(direction, &held, ts, false, out);
        }
    }

    /// Inflates one direction's bytes into its inbox. With `pump`, the inflated bytes are read
    /// as they come, so that a little input that inflates to much is never held whole.
    fn inflate(
        &mut self,
        direction: Direction,
        mut input: &[u8],
        ts: Timestamp,
        pump: bool,
        out: &mut Vec<ProtoEvent>,
    ) {
        let Some(mut inflater) = direction.pick_mut(&mut self.inflaters).take() else {
            return;
        };
        let mut buffer = vec![0u8; INFLATE_CHUNK];
        loop {
            let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
            let result = inflater.decompress(input, &mut buffer, flate2::FlushDecompress::Sync);
            let used = (inflater.total_in() - before_in) as usize;
            let made = (inflater.total_out() - before_out) as usize;
            if let Err(e) = result {
                note(out, NoteKind::Malformed, direction, ts, format!("the deflate stream is corrupt ({e}); the rest of this direction is not read"));
                *direction.pick_mut(&mut self.undecodable) = true;
                *direction.pick_mut(&mut self.opaque) += input.len() as u64;
                return;
            }
            // The inflater reports what it used and made, within the slices it was given.
            input = input.get(used..).unwrap_or_default();
            let inflated = buffer.get(..made).unwrap_or_default();
            // Read as they come; held bytes that are inflated afresh (pump is false) cannot be.
            let lost = if pump {
                self.feed(direction, inflated, ts, out)
            } else {
                let inbox = self.inbox(direction);
                let lost = (inflated.len() - inbox.push(inflated, ts)) as u64;
                inbox.refused(lost);
                lost
            };
            if lost > 0 {
                self.lose(direction, lost, Loss::HeldLimit, ts, out);
            }
            if (used == 0 && made == 0) || (input.is_empty() && made < buffer.len()) {
                break;
            }
        }
        *direction.pick_mut(&mut self.inflaters) = Some(inflater);
    }

    fn read_client(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        let mut progress = false;
        while matches!(
            self.mode,
            ClientMode::Command | ClientMode::SaslResponse | ClientMode::Idle
        ) {
            let step = self.client_reader.step(&mut self.client);
            note_oversized(&mut self.client_reader, Direction::ClientToServer, out);
            match step {
                Step::Waiting => break,
                Step::Progress => progress = true,
                Step::NeedsContinuation => {
                    self.awaiting_continuation = true;
                    progress = true;
                    break;
                }
                Step::Unit(unit) => {
                    progress = true;
                    self.client_unit(unit, out);
                }
            }
        }
        progress
    }

    fn client_unit(&mut self, mut unit: Unit, out: &mut Vec<ProtoEvent>) {
        if unit.overlong {
            note(
                out,
                NoteKind::Limit,
                Direction::ClientToServer,
                unit.ts,
                "a command line longer than the limit was cut".into(),
            );
        }
        match self.mode {
            ClientMode::SaslResponse => {
                if let Some(sasl) = &mut self.sasl {
                    let shown = sasl.respond(&unit.text);
                    if let Some(p) = self
                        .pending
                        .iter_mut()
                        .rev()
                        .find(|p| matches!(p.kind, Kind::Authenticate))
                    {
                        p.command.line.push_str(&format!(" [{shown}]"));
                    }
                }
                self.mode = ClientMode::AwaitReply;
                return;
            }
            ClientMode::Idle => {
                if unit.text.eq_ignore_ascii_case("DONE") {
                    if let Some(p) = self.pending.back_mut() {
                        p.command.line.push_str(" ... DONE");
                    }
                    self.mode = ClientMode::Command;
                } else {
                    note(
                        out,
                        NoteKind::Malformed,
                        Direction::ClientToServer,
                        unit.ts,
                        format!("during IDLE the client sent {:?}, not DONE", unit.text),
                    );
                }
                return;
            }
            _ => {}
        }
        let Some((tag, name, args)) = parser::command(&unit.text) else {
            if !self.resync[0] {
                note(
                    out,
                    NoteKind::Malformed,
                    Direction::ClientToServer,
                    unit.ts,
                    format!("not an IMAP command: {:?}", unit.text),
                );
            }
            return;
        };
        let known = KNOWN_COMMANDS.contains(&name.as_str());
        if self.resync[0] && !known {
            return;
        }
        self.resync[0] = false;
        let (tag, args) = (tag.to_string(), args.to_string());
        let mut shown = unit.text.clone();
        let kind = match name.as_str() {
            "LOGIN" => {
                let mut literals = literal_bytes(&mut unit).into_iter();
                let words = parser::astrings(&args, &mut literals);
                let user = words.first().cloned().unwrap_or_default();
                shown = format!("{tag} LOGIN {user} ****");
                Kind::Login(user, words.get(1).cloned().unwrap_or_default())
            }
            "AUTHENTICATE" => {
                let mut words = args.split(' ');
                let mechanism = words.next().unwrap_or("");
                let initial = words.next();
                let sasl = Sasl::new(mechanism, initial);
                if initial.is_some() {
                    shown = format!(
                        "{tag} AUTHENTICATE {} [{}]",
                        sasl.mechanism(),
                        sasl.decoded_step(0).unwrap_or_default()
                    );
                }
                self.sasl = Some(sasl);
                self.mode = ClientMode::AwaitReply;
                Kind::Authenticate
            }
            "STARTTLS" => {
                self.mode = ClientMode::AwaitReply;
                Kind::StartTls
            }
            "COMPRESS" => {
                self.mode = ClientMode::AwaitReply;
                Kind::Compress
            }
            "SELECT" | "EXAMINE" => {
                let mut literals = literal_bytes(&mut unit).into_iter();
                let name = parser::astrings(&args, &mut literals)
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                self.selecting = Some(MailboxState {
                    name: name.clone(),
                    read_only: name_is_examine(&unit.text),
                    ..MailboxState::default()
                });
                Kind::Select
            }
            "IDLE" => {
                self.mode = ClientMode::Idle;
                Kind::Other
            }
            "APPEND" => {
                let mailbox = parser::astrings(
                    args.split(' ').next().unwrap_or(""),
                    &mut std::iter::empty(),
                )
                .into_iter()
                .next();
                if let Some((_, literal)) = unit.literals.pop() {
                    let mut message = literal.finish("imap-append", true, None, Vec::new());
                    message.mailbox = mailbox;
                    message.flags = parser::append_flags(&args).unwrap_or_default();
                    self.emit(message, out);
                }
                Kind::Other
            }
            "FETCH" | "UID FETCH" => Kind::Fetch,
            _ => Kind::Other,
        };
        let pending = Pending {
            requested: parser::requested_length(&args),
            tag,
            command: Command {
                line: shown,
                verb: name,
                ts: unit.ts,
                end_offset: unit.end_offset,
            },
            kind,
            untagged: Vec::new(),
        };
        self.pending.push(pending, out);
    }

    fn read_server(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        let step = self.server_reader.step(&mut self.server);
        note_oversized(&mut self.server_reader, Direction::ServerToClient, out);
        match step {
            Step::Waiting => false,
            Step::Progress | Step::NeedsContinuation => true,
            Step::Unit(unit) => {
                self.server_unit(unit, out);
                true
            }
        }
    }

    fn server_unit(&mut self, unit: Unit, out: &mut Vec<ProtoEvent>) {
        let Some(response) = parser::response(&unit.text) else {
            if !self.resync[1] {
                note(
                    out,
                    NoteKind::Malformed,
                    Direction::ServerToClient,
                    unit.ts,
                    format!("not an IMAP response: {:?}", unit.text),
                );
            }
            return;
        };
        self.resync[1] = false;
        match response {
            Response::Continue(text) => self.continuation(text.to_string(), &unit, out),
            Response::Untagged(rest) => {
                let rest = rest.to_string();
                if !self.greeted {
                    self.greeted = true;
                    let text = std::iter::once(unit.text.as_str());
                    let reply = Reply::new("*", None, text, unit.ts, unit.end_offset);
                    out.push(ProtoEvent::Exchange(Exchange {
                        command: None,
                        reply: Some(reply),
                        unknown_command: false,
                    }));
                    return;
                }
                if let Some(update) = parser::mailbox_update(&rest) {
                    self.update_mailbox(update);
                }
                if rest.to_ascii_uppercase().starts_with("CAPABILITY ") {
                    out.push(ProtoEvent::Capabilities(
                        rest.split(' ')
                            .skip(1)
                            .map(str::to_ascii_uppercase)
                            .collect(),
                    ));
                }
                let (text, ts, end_offset) = (unit.text.clone(), unit.ts, unit.end_offset);
                if let Some(seq) = parser::fetch_seq(&rest) {
                    self.fetched(seq, unit, out);
                }
                match self.pending.front_mut() {
                    Some(p) if p.untagged.len() < MAX_UNTAGGED_LINES => p.untagged.push(text),
                    Some(_) => {}
                    None => {
                        let text = std::iter::once(text.as_str());
                        let reply = Reply::new("*", None, text, ts, end_offset);
                        out.push(ProtoEvent::Exchange(Exchange {
                            command: None,
                            reply: Some(reply),
                            unknown_command: false,
                        }));
                    }
                }
            }
            Response::Tagged { tag, status, code } => {
                let (tag, code) = (tag.to_string(), code.map(str::to_string));
                self.completed(&tag, status, code, &unit, out);
            }
        }
    }

    fn continuation(&mut self, text: String, unit: &Unit, out: &mut Vec<ProtoEvent>) {
        if self.awaiting_continuation {
            self.awaiting_continuation = false;
            self.client_reader.release();
            return;
        }
        match self.mode {
            ClientMode::AwaitReply if self.sasl.is_some() => {
                if let Some(sasl) = &mut self.sasl {
                    sasl.challenge(&text);
                }
                if let Some(p) = self
                    .pending
                    .iter_mut()
                    .rev()
                    .find(|p| matches!(p.kind, Kind::Authenticate))
                {
                    p.untagged.push(unit.text.clone());
                }
                self.mode = ClientMode::SaslResponse;
            }
            ClientMode::Idle => {
                if let Some(p) = self.pending.back_mut() {
                    p.untagged.push(unit.text.clone());
                }
            }
            _ => note(
                out,
                NoteKind::Malformed,
                Direction::ServerToClient,
                unit.ts,
                format!("continuation request nobody waits for: {:?}", unit.text),
            ),
        }
    }

    /// A FETCH response about message `seq`: what it says of the message, and the messages and
    /// parts in its literals.
    fn fetched(&mut self, seq: u64, mut unit: Unit, out: &mut Vec<ProtoEvent>) {
        let slot = self.catalog.seen(
            seq,
            parser::fetch_uid(&unit.text),
            parser::fetch_flags(&unit.text),
        );
        let requested = self
            .pending
            .iter()
            .find(|p| matches!(p.kind, Kind::Fetch))
            .and_then(|p| p.requested);
        let literals: Vec<(usize, MessageBuilder)> = unit.literals.drain(..).collect();
        for (position, literal) in literals {
            let finished = |m: MessageBuilder| m.finish("imap-fetch", true, None, Vec::new());
            // `position` is where the text ended when the literal was announced.
            let before_literal = unit.text.get(..position).unwrap_or_default();
            match parser::section_before_literal(before_literal) {
                Section::Whole => self.emit_fetched(finished(literal), slot, None, out),
                Section::Part(section) => {
                    self.emit_fetched(finished(literal), slot, Some(section), out)
                }
                Section::Chunk(origin) => {
                    let chunk = finished(literal);
                    self.chunk(chunk, origin, slot, requested, unit.ts, out)
                }
                Section::Other => {}
            }
        }
    }

    /// A fetched message or part: placed in the selected mailbox and linked with the rest of
    /// its message.
    fn emit_fetched(
        &mut self,
        mut message: Box<CapturedMessage>,
        slot: Option<Slot>,
        section: Option<String>,
        out: &mut Vec<ProtoEvent>,
    ) {
        if let Some(state) = &self.state {
            message.mailbox = Some(state.name.clone());
            message.uidvalidity = state.uidvalidity;
        }
        if let Some(slot) = slot {
            message.uid = self.catalog.uid(slot);
            message.flags = self.catalog.flags(slot);
            match section {
                None => message.parts = self.catalog.whole(slot, self.messages),
                Some(_) => message.part_of = self.catalog.part(slot, self.messages),
            }
        }
        message.partial = section.is_some();
        message.section = section;
        self.emit(message, out);
    }

    /// One piece of a message fetched in pieces: stitched to the ones before it, and the whole
    /// message reported when a piece comes back shorter than asked.
    fn chunk(
        &mut self,
        chunk: Box<CapturedMessage>,
        origin: u64,
        slot: Option<Slot>,
        requested: Option<u64>,
        ts: Timestamp,
        out: &mut Vec<ProtoEvent>,
    ) {
        let continues = self
            .chunked
            .as_ref()
            .is_some_and(|c| c.slot == slot && c.message.size() == origin);
        if !continues {
            self.flush_chunked(out);
            if origin != 0 {
                let text =
                    format!("a partial fetch from byte {origin} without the bytes before it");
                note(
                    out,
                    NoteKind::Malformed,
                    Direction::ServerToClient,
                    ts,
                    text,
                );
                return;
            }
            self.chunked = Some(Chunked {
                slot,
                message: MessageBuilder::new(ts, &self.message_room),
            });
        }
        if let Some(c) = &mut self.chunked {
            c.message.append(&chunk.bytes);
        }
        if requested.is_some_and(|r| chunk.size < r) {
            if let Some(c) = self.chunked.take() {
                let whole = c.message.finish("imap-fetch", true, None, Vec::new());
                self.emit_fetched(whole, c.slot, None, out);
            }
        }
    }

    /// Pieces that stopped before the message's end: the first bytes of it, as a part.
    fn flush_chunked(&mut self, out: &mut Vec<ProtoEvent>) {
        if let Some(c) = self.chunked.take() {
            let section = format!("<0.{}>", c.message.size());
            let prefix = c.message.finish("imap-fetch", false, None, Vec::new());
            self.emit_fetched(prefix, c.slot, Some(section), out);
        }
    }

    fn completed(
        &mut self,
        tag: &str,
        status: String,
        code: Option<String>,
        unit: &Unit,
        out: &mut Vec<ProtoEvent>,
    ) {
        if self.awaiting_continuation && self.client_reader.in_progress() {
            // A command refused before its literal was sent: the literal never comes.
            if let Some(mut refused) = self.client_reader.abandon() {
                self.awaiting_continuation = false;
                refused.literals.clear();
                self.client_unit(refused, out);
            }
        }
        let found = self.pending.iter().position(|p| p.tag == tag);
        let Some(pending) = found.and_then(|index| self.pending.take(index)) else {
            note(
                out,
                NoteKind::Malformed,
                Direction::ServerToClient,
                unit.ts,
                format!("completion for unknown tag {tag:?}"),
            );
            return;
        };
        let ok = status == "OK";
        match &pending.kind {
            Kind::Login(user, password) => out.push(ProtoEvent::Auth(AuthAttempt {
                mechanism: "LOGIN".into(),
                username: Some(user.clone()),
                secret: Some(Secret::new(password.clone())),
                success: Some(ok),
                ts: unit.ts,
            })),
            Kind::Authenticate => {
                if let Some(sasl) = self.sasl.take() {
                    out.push(ProtoEvent::Auth(sasl.attempt(Some(ok), unit.ts)));
                }
                self.mode = ClientMode::Command;
            }
            Kind::StartTls => {
                if ok {
                    let (client, server) = (&mut self.client, &mut self.server);
                    let upgrade =
                        Upgrade::take(&pending.command, unit.end_offset, unit.ts, client, server);
                    out.push(ProtoEvent::Upgrade(upgrade));
                }
                self.mode = ClientMode::Command;
            }
            Kind::Compress if ok => self.start_compression(unit.ts, out),
            Kind::Compress => self.mode = ClientMode::Command,
            Kind::Select => {
                // SELECT deselects at once; the new mailbox is selected only if it succeeds.
                let selecting = self.selecting.take();
                self.catalog.clear();
                self.state = selecting.filter(|_| ok).map(|mut s| {
                    s.read_only |= code
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case("READ-ONLY"));
                    s
                });
                self.state_changed = true;
            }
            Kind::Other if ok && matches!(pending.command.verb.as_str(), "CLOSE" | "UNSELECT") => {
                self.catalog.clear();
                self.state = None;
                self.state_changed = true;
            }
            _ => {}
        }
        if std::mem::take(&mut self.state_changed) {
            out.push(ProtoEvent::Selected(self.state.clone()));
        }
        let lines = pending
            .untagged
            .iter()
            .chain([&unit.text])
            .map(String::as_str);
        let reply = Reply::new(&status, code.as_deref(), lines, unit.ts, unit.end_offset);
        out.push(ProtoEvent::Exchange(Exchange {
            command: Some(pending.command),
            reply: Some(reply),
            unknown_command: false,
        }));
    }
}

impl TwoSides for ImapDissector {
    fn pump_client(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        self.read_client(out)
    }

    fn pump_server(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        self.read_server(out)
    }

    fn inboxes(&mut self) -> [&mut Inbox; 2] {
        [&mut self.client, &mut self.server]
    }

    fn lose(
        &mut self,
        direction: Direction,
        len: u64,
        loss: Loss,
        ts: Timestamp,
        out: &mut Vec<ProtoEvent>,
    ) {
        let how = loss.how();
        if *direction.pick(&self.undecodable) {
            return;
        }
        if direction.pick_mut(&mut self.inflaters).take().is_some() {
            // A deflate stream cannot go on past missing bytes.
            *direction.pick_mut(&mut self.undecodable) = true;
            note(out, NoteKind::Gap, direction, ts, format!("{len} compressed bytes were not captured; the rest of this direction cannot be inflated"));
            return;
        }
        let (inbox, reader) = match direction {
            Direction::ClientToServer => (&mut self.client, &mut self.client_reader),
            Direction::ServerToClient => (&mut self.server, &mut self.server_reader),
        };
        let held = inbox.gap(len, ts) as u64;
        if reader.gap(len + held) {
            note(
                out,
                NoteKind::Gap,
                direction,
                ts,
                format!("{} bytes inside a literal {how}", len + held),
            );
        } else {
            *direction.pick_mut(&mut self.resync) = true;
            note(
                out,
                NoteKind::Gap,
                direction,
                ts,
                format!(
                    "{} bytes {how}; resynchronising on the next line that parses",
                    len + held
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::note_texts;

    const C: Direction = Direction::ClientToServer;
    const S: Direction = Direction::ServerToClient;

    fn feed(d: &mut ImapDissector, steps: &[(Direction, &[u8])]) -> Vec<ProtoEvent> {
        let mut out = Vec::new();
        for (direction, bytes) in steps {
            d.data(*direction, bytes, Timestamp(0), &mut out);
        }
        out
    }

    fn completed(events: &[ProtoEvent]) -> Vec<(String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                ProtoEvent::Exchange(Exchange {
                    command: Some(c),
                    reply,
                    ..
                }) => Some((
                    c.line.clone(),
                    reply.as_ref().map_or("-".into(), |r| r.code().to_string()),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_dropped_rest_of_an_overlong_line_is_noted() {
        let mut d = ImapDissector::default();
        let line = [&b"a1 NOOP "[..], &vec![b'x'; 300_000], b"\r\n"].concat();
        let mut out = feed(&mut d, &[(S, b"* OK ready\r\n"), (C, &line)]);
        d.end(Timestamp(0), &mut out);
        let limits = note_texts(&out, NoteKind::Limit);
        let dropped = line.len() - units::MAX_IMAP_LINE_BYTES;
        assert!(
            limits
                .iter()
                .any(|t| t.starts_with(&format!("{dropped} bytes dropped"))),
            "{limits:?}"
        );
    }

    #[test]
    fn a_literal_sent_before_its_go_ahead_past_the_held_limit_is_a_hole() {
        let mut d = ImapDissector::default();
        let literal = vec![b'x'; 1_500_000];
        let append = [&b"a1 APPEND Drafts {1500000}\r\n"[..], &literal, b"\r\n"].concat();
        let mut out = feed(
            &mut d,
            &[
                (S, b"* OK ready\r\n"),
                (C, &append),
                (S, b"+ go ahead\r\n"),
                (S, b"a1 OK appended\r\n"),
                (C, b"a2 LOGOUT\r\n"),
                (S, b"* BYE\r\na2 OK bye\r\n"),
            ],
        );
        d.end(Timestamp(0), &mut out);
        let gaps = note_texts(&out, NoteKind::Gap);
        // All that waited for the go-ahead, and the line end after it.
        let lost = format!("{} bytes inside a literal were dropped", literal.len() + 2);
        assert!(gaps.len() == 1 && gaps[0].starts_with(&lost), "{gaps:?}");
        let appended: Vec<_> = out.iter().filter_map(ProtoEvent::as_message).collect();
        assert_eq!(
            appended
                .iter()
                .map(|m| (m.complete, m.size, m.hole_bytes))
                .collect::<Vec<_>>(),
            [(false, 0, literal.len() as u64)]
        );
        // The hole took the APPEND's line end too: the command ends there, and the next line
        // is the next command.
        assert_eq!(
            completed(&out),
            [
                ("a1 APPEND Drafts {1500000}".into(), "OK".into()),
                ("a2 LOGOUT".into(), "OK".into())
            ]
        );
    }

    #[test]
    fn commands_in_flight_pair_by_tag_and_a_refused_literal_is_not_read() {
        let mut d = ImapDissector::default();
        let mut out = feed(&mut d, &[
            (S, b"* OK ready\r\n"),
            (C, b"a1 NOOP\r\na2 CAPABILITY\r\na3 APPEND Drafts {5}\r\n"),
            (S, b"* CAPABILITY IMAP4rev1\r\na2 OK done\r\na1 OK noop\r\na3 NO [TRYCREATE] no mailbox\r\n"),
            (C, b"a4 LOGOUT\r\n"),
            (S, b"* BYE\r\na4 OK bye\r\n"),
        ]);
        d.end(Timestamp(0), &mut out);
        assert_eq!(
            completed(&out),
            vec![
                ("a2 CAPABILITY".into(), "OK".into()),
                ("a1 NOOP".into(), "OK".into()),
                ("a3 APPEND Drafts {5}".into(), "NO".into()),
                ("a4 LOGOUT".into(), "OK".into()),
            ]
        );
        assert!(
            !out.iter().any(|e| matches!(e, ProtoEvent::Message(_))),
            "the refused literal never came"
        );
    }

    #[test]
    fn literal_login_and_a_literal_with_line_ends_inside() {
        let mut d = ImapDissector::default();
        let out = feed(
            &mut d,
            &[
                (S, b"* OK ready\r\n"),
                (C, b"a1 LOGIN {4}\r\n"),
                (S, b"+ go\r\n"),
                (C, b"erin {7+}\r\np\r\n\r\nss\r\n"),
                (S, b"a1 OK hi\r\n"),
                (C, b"a2 SELECT INBOX\r\n"),
                (S, b"a2 OK [READ-WRITE] sel\r\n"),
                (C, b"a3 FETCH 1 BODY[]\r\n"),
                (
                    S,
                    b"* 1 FETCH (UID 9 BODY[] {11}\r\nA: b\r\n\r\n.\r\n)\r\na3 OK\r\n",
                ),
            ],
        );
        let auth = out.iter().find_map(ProtoEvent::as_auth).unwrap();
        assert_eq!(
            (
                auth.username.as_deref(),
                auth.secret.as_ref().map(|s| s.expose())
            ),
            (Some("erin"), Some("p\r\n\r\nss"))
        );
        let m = out.iter().find_map(ProtoEvent::as_message).unwrap();
        assert_eq!(
            (m.bytes.as_slice(), m.uid, m.mailbox.as_deref()),
            (&b"A: b\r\n\r\n.\r\n"[..], Some(9), Some("INBOX"))
        );
    }

    #[test]
    fn hostile_literals_and_endless_tags() {
        let mut d = ImapDissector::default();
        let mut out = feed(
            &mut d,
            &[
                (S, b"* OK ready\r\n"),
                (C, b"a1 FETCH 1 BODY[]\r\n"),
                (S, b"* 1 FETCH (BODY[] {4294967296}\r\nonly this much"),
            ],
        );
        d.gap(S, 1000, Timestamp(0), &mut out);
        d.data(S, b"and more", Timestamp(0), &mut out);
        assert!(
            d.server.held() < 100,
            "literal bytes are taken as they come, not held"
        );
        d.end(Timestamp(0), &mut out);
        let notes: Vec<&str> = out
            .iter()
            .filter_map(ProtoEvent::as_note)
            .map(|n| n.text.as_str())
            .collect();
        assert!(
            notes.iter().any(|n| n.contains("inside a literal")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("ended inside")),
            "{notes:?}"
        );
        assert_eq!(
            completed(&out),
            vec![("a1 FETCH 1 BODY[]".into(), "-".into())],
            "a tag never completed is reported"
        );
    }

    fn deflate(compressor: &mut flate2::Compress, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 64);
        compressor
            .compress_vec(text, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn compress_deflate_is_inflated_and_garbage_is_reported() {
        let mut d = ImapDissector::default();
        let (mut c, mut s) = (
            flate2::Compress::new(flate2::Compression::default(), false),
            flate2::Compress::new(flate2::Compression::default(), false),
        );
        let mut out = feed(
            &mut d,
            &[(S, b"* OK ready\r\n"), (C, b"a1 COMPRESS DEFLATE\r\n")],
        );
        let first = deflate(&mut c, b"a2 SELECT INBOX\r\n");
        // The server's OK and its first compressed bytes in one segment.
        let mut server = b"a1 OK DEFLATE active\r\n".to_vec();
        server.extend(deflate(&mut s, b"a2 OK [READ-WRITE] done\r\n"));
        out.extend(feed(&mut d, &[(C, &first), (S, &server)]));
        let body = vec![b'x'; 300_000];
        let mut literal = format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", body.len()).into_bytes();
        literal.extend(&body);
        literal.extend(b")\r\na3 OK\r\n");
        let fetch = deflate(&mut c, b"a3 UID FETCH 7 BODY[]\r\n");
        let reply = deflate(&mut s, &literal);
        assert!(reply.len() < 5000, "it compresses");
        out.extend(feed(&mut d, &[(C, &fetch), (S, &reply)]));
        assert_eq!(
            completed(&out)[1..],
            [
                ("a2 SELECT INBOX".into(), "OK".into()),
                ("a3 UID FETCH 7 BODY[]".into(), "OK".into())
            ]
        );
        let m = out.iter().find_map(ProtoEvent::as_message).unwrap();
        assert_eq!(
            (m.size, m.uid, m.mailbox.as_deref()),
            (300_000, Some(7), Some("INBOX"))
        );
        let garbage = feed(&mut d, &[(C, b"\xff\xff\xff not deflate")]);
        assert!(garbage.iter().any(
            |e| matches!(e, ProtoEvent::Note(n) if n.text.contains("deflate stream is corrupt"))
        ));
    }

    #[test]
    fn starttls_offsets_and_idle() {
        let mut d = ImapDissector::default();
        let out = feed(
            &mut d,
            &[
                (S, b"* OK ready\r\n"),
                (C, b"a1 IDLE\r\n"),
                (S, b"+ idling\r\n* 2 EXISTS\r\n"),
                (C, b"DONE\r\n"),
                (S, b"a1 OK idle done\r\n"),
                (C, b"a2 STARTTLS\r\n\x16\x03\x01"),
                (S, b"a2 OK Begin TLS\r\n\x16\x03\x03"),
            ],
        );
        assert_eq!(completed(&out)[0], ("a1 IDLE ... DONE".into(), "OK".into()));
        let up = out.iter().find_map(ProtoEvent::as_upgrade).unwrap();
        assert_eq!(
            (up.client_offset, up.server_offset),
            (9 + 6 + 13, 12 + 22 + 17 + 17)
        );
    }
}
