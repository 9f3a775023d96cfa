//! The SMTP dissector (RFC 5321; PIPELINING 2920, CHUNKING 3030, STARTTLS 3207, AUTH 4954).
//!
//! The client's bytes are read in the mode the dialogue put it in: commands, a SASL response
//! after a 334, a DATA body after a 354, or a BDAT chunk of counted bytes. After DATA, AUTH and
//! STARTTLS the client's next bytes mean different things depending on the reply, so reading
//! the client waits for that reply (the bytes are held, bounded). Replies pair with commands in
//! order (pipelining sends several commands before the first reply).
//!
//! After a gap, the dialogue resynchronises on the next line that parses as a command (client)
//! or a reply (server); inside a message the gap becomes a hole of known size.

pub mod parser;

use std::borrow::Cow;

use super::framing::{read_dot_body, DotBody, DotState, Inbox, Line};
use super::message::MessageBuilder;
use super::room::{Room, Rooms};
use super::sasl::Sasl;
use super::{
    note, note_drops, note_overlong, Awaiting, AwaitsReply, Command, Dissector, Exchange, Loss,
    NoteKind, ProtoEvent, Reply, TwoSides, Upgrade,
};
use crate::capture::Timestamp;
use crate::tcp::Direction;

/// How the client's next bytes are read.
#[derive(Debug)]
enum ClientMode {
    Command,
    /// Held until the reply to the last command decides.
    AwaitReply,
    /// The next line is a SASL response (the server sent 334).
    SaslResponse,
    /// A DATA body, until the line with a lone dot.
    Data {
        state: DotState,
    },
    /// A BDAT chunk: this many bytes follow the command.
    Bdat {
        remaining: u64,
    },
}

/// What a command asked for, so that its reply can be acted on.
#[derive(Debug)]
enum Kind {
    Other,
    Hello,
    /// The sender and the size it announced (`SIZE=`).
    Mail(String, Option<u64>),
    Rcpt(String),
    Reset,
    Data,
    /// The lone dot that ends a DATA body.
    DataEnd,
    Bdat {
        last: bool,
    },
    StartTls,
    Auth,
    AuthStep,
}

#[derive(Debug)]
struct Pending {
    command: Command,
    kind: Kind,
    unknown: bool,
}

impl AwaitsReply for Pending {
    fn unanswered(self) -> Exchange {
        Exchange::unanswered(self.command, self.unknown)
    }
}

#[derive(Debug, Default)]
struct Transaction {
    mail_from: Option<String>,
    accepted: Vec<String>,
    announced_size: Option<u64>,
}

#[derive(Debug)]
pub struct SmtpDissector {
    client: Inbox,
    server: Inbox,
    mode: ClientMode,
    pending: Awaiting<Pending>,
    /// Lines of a multi-line reply received so far.
    reply_lines: Vec<Line>,
    transaction: Transaction,
    message: Option<MessageBuilder>,
    message_room: Room,
    sasl: Option<Sasl>,
    /// Skipping to the next line that parses, after a gap: [client, server].
    resync: [bool; 2],
    /// Client bytes lost while DATA awaited its go-ahead: they may have held the start of the
    /// body (sent too early), which then has a hole. A MAIL read after them starts afresh.
    lost_before_body: u64,
    /// A command line with a bare CR or LF was already noted (once per session is enough).
    bare_line_end_noted: bool,
    /// A reply was read: the first one may be the greeting.
    replied: bool,
}

impl Default for SmtpDissector {
    fn default() -> Self {
        SmtpDissector::with_rooms(&Rooms::default())
    }
}

impl SmtpDissector {
    /// A dissector whose messages and awaiting commands count in `rooms`, with other
    /// connections'.
    pub fn with_rooms(rooms: &Rooms) -> Self {
        SmtpDissector {
            client: Inbox::with_room(&rooms.held),
            server: Inbox::with_room(&rooms.held),
            mode: ClientMode::Command,
            pending: Awaiting::new(&rooms.awaiting),
            reply_lines: Vec::new(),
            transaction: Transaction::default(),
            message: None,
            message_room: rooms.messages.clone(),
            sasl: None,
            resync: [false; 2],
            lost_before_body: 0,
            bare_line_end_noted: false,
            replied: false,
        }
    }
}

/// A reply cut off at this many lines is taken as ended (a hostile server could send endless
/// continuation lines).
const MAX_REPLY_LINES: usize = 1000;

impl Dissector for SmtpDissector {
    fn data(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<ProtoEvent>,
    ) {
        self.receive(direction, bytes, ts, out);
    }

    fn gap(&mut self, direction: Direction, len: u64, ts: Timestamp, out: &mut Vec<ProtoEvent>) {
        self.missed(direction, len, ts, out);
    }

    fn end(&mut self, ts: Timestamp, out: &mut Vec<ProtoEvent>) {
        note_drops(self.inboxes(), ts, true, out);
        if let Some(message) = self.message.take() {
            note(
                out,
                NoteKind::Unfinished,
                Direction::ClientToServer,
                ts,
                format!(
                    "the connection ended inside a message ({} bytes seen)",
                    message.size()
                ),
            );
            let t = std::mem::take(&mut self.transaction);
            out.push(ProtoEvent::Message(message.finish(
                "smtp",
                false,
                t.mail_from,
                t.accepted,
            )));
        }
        if !self.reply_lines.is_empty() {
            note(
                out,
                NoteKind::Unfinished,
                Direction::ServerToClient,
                ts,
                "the connection ended inside a multi-line reply".into(),
            );
        }
        if let Some(sasl) = self.sasl.take() {
            out.push(ProtoEvent::Auth(sasl.attempt(None, ts)));
        }
        self.pending.end(out);
        for (direction, held) in [
            (Direction::ClientToServer, self.client.held()),
            (Direction::ServerToClient, self.server.held()),
        ] {
            if held > 0 {
                note(
                    out,
                    NoteKind::Unfinished,
                    direction,
                    ts,
                    format!("{held} bytes at the end form no complete line"),
                );
            }
        }
    }
}

impl SmtpDissector {
    fn read_client(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        let mut progress = false;
        loop {
            let step = match self.mode {
                ClientMode::Command | ClientMode::SaslResponse => match self.client.next_line() {
                    Some(line) => {
                        self.client_line(line, out);
                        true
                    }
                    None => false,
                },
                ClientMode::Data { .. } => self.data_body(out),
                ClientMode::Bdat { .. } => self.bdat_chunk(),
                ClientMode::AwaitReply => false,
            };
            if !step {
                return progress;
            }
            progress = true;
        }
    }

    fn client_line(&mut self, line: Line, out: &mut Vec<ProtoEvent>) {
        let text = line.text();
        note_overlong(out, &line);
        self.note_bare_line_end(&line, out);
        if matches!(self.mode, ClientMode::SaslResponse) {
            let shown = match &mut self.sasl {
                Some(sasl) => sasl.respond(&text),
                None => text.clone(),
            };
            self.push_command(
                format!("[{shown}]"),
                "AUTH-RESPONSE".into(),
                &line,
                Kind::AuthStep,
                false,
                out,
            );
            self.mode = ClientMode::AwaitReply;
            return;
        }
        if self.resync[0] {
            if !parser::looks_like_command(&text) {
                return;
            }
            self.resync[0] = false;
        }
        let command = parser::command_line(&text);
        let verb = command.verb.clone();
        let (kind, shown) = match verb.as_str() {
            "HELO" | "EHLO" | "LHLO" => (Kind::Hello, text.clone()),
            "MAIL" => {
                // What follows a transaction's start read whole is whole.
                self.lost_before_body = 0;
                let path = parser::path_arg(command.args, "FROM");
                let size = path.as_ref().and_then(|p| parser::size_param(&p.params));
                let from = path.map(|p| p.mailbox.to_string()).unwrap_or_default();
                (Kind::Mail(from, size), text.clone())
            }
            "RCPT" => {
                let path = parser::path_arg(command.args, "TO");
                if let Some(p) = path.as_ref().filter(|p| !p.route.is_empty()) {
                    let hops = [p.route.clone(), vec![p.mailbox]].concat().join(" -> ");
                    note(
                        out,
                        NoteKind::SourceRoute,
                        Direction::ClientToServer,
                        line.ts,
                        format!("source-routed recipient (RFC 821 route): {hops}"),
                    );
                }
                (
                    Kind::Rcpt(path.map(|p| p.mailbox.to_string()).unwrap_or_default()),
                    text.clone(),
                )
            }
            "RSET" => (Kind::Reset, text.clone()),
            "DATA" => (Kind::Data, text.clone()),
            "STARTTLS" => (Kind::StartTls, text.clone()),
            "BDAT" => match parser::bdat_args(command.args) {
                Some((size, last)) => {
                    self.message
                        .get_or_insert_with(|| MessageBuilder::new(line.ts, &self.message_room));
                    self.push_command(text.clone(), verb, &line, Kind::Bdat { last }, false, out);
                    self.mode = ClientMode::Bdat { remaining: size };
                    return;
                }
                None => {
                    note(
                        out,
                        NoteKind::Malformed,
                        Direction::ClientToServer,
                        line.ts,
                        format!("malformed BDAT arguments: {:?}", command.args),
                    );
                    (Kind::Other, text.clone())
                }
            },
            "AUTH" => match parser::auth_args(command.args) {
                Some((mechanism, initial)) => {
                    let sasl = Sasl::new(mechanism, initial);
                    let shown = match initial {
                        Some(_) => format!(
                            "AUTH {} [{}]",
                            sasl.mechanism(),
                            sasl.decoded_step(0).unwrap_or_default()
                        ),
                        None => format!("AUTH {}", sasl.mechanism()),
                    };
                    if sasl.malformed > 0 {
                        note(
                            out,
                            NoteKind::Malformed,
                            Direction::ClientToServer,
                            line.ts,
                            "AUTH initial response is not valid base64".into(),
                        );
                    }
                    self.sasl = Some(sasl);
                    (Kind::Auth, shown)
                }
                None => (Kind::Other, text.clone()),
            },
            _ => (Kind::Other, text.clone()),
        };
        let waits = matches!(kind, Kind::Data | Kind::StartTls | Kind::Auth);
        self.push_command(shown, verb, &line, kind, !command.known, out);
        if waits {
            self.mode = ClientMode::AwaitReply;
        }
    }

    fn push_command(
        &mut self,
        shown: String,
        verb: String,
        line: &Line,
        kind: Kind,
        unknown: bool,
        out: &mut Vec<ProtoEvent>,
    ) {
        let pending = Pending {
            command: Command {
                line: shown,
                verb,
                ts: line.ts,
                end_offset: line.end_offset,
            },
            kind,
            unknown,
        };
        self.pending.push(pending, out);
    }

    /// RFC 5321 2.3.8: commands end with CRLF, and CR and LF appear nowhere else.
    fn note_bare_line_end(&mut self, line: &Line, out: &mut Vec<ProtoEvent>) {
        let bare_lf = !line.overlong && !line.bytes.ends_with(b"\r\n");
        let bare_cr = line.content().contains(&b'\r');
        if self.bare_line_end_noted || !(bare_lf || bare_cr) {
            return;
        }
        self.bare_line_end_noted = true;
        let what = if bare_lf {
            "ends with a bare LF"
        } else {
            "holds a bare CR"
        };
        let text = format!("the command line {:?} {what}, not CRLF", line.text());
        note(
            out,
            NoteKind::BareLineEnd,
            Direction::ClientToServer,
            line.ts,
            text,
        );
    }

    /// Reads DATA body bytes (RFC 5321 4.5.2): a line that starts with a dot loses that dot,
    /// and a line that is only a dot ends the body. Returns whether anything was taken.
    fn data_body(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        let ClientMode::Data { state } = &mut self.mode else {
            return false;
        };
        let room = &self.message_room;
        let message = self
            .message
            .get_or_insert_with(|| MessageBuilder::new(Timestamp::default(), room));
        let step = read_dot_body(&mut self.client, state, &mut |bytes| message.append(bytes));
        let ambiguous = state.ambiguous;
        match step {
            DotBody::Waiting => false,
            DotBody::Took(_) => true,
            DotBody::Ended(ts) => {
                if ambiguous {
                    let text = "this message holds or ends on a dot between line ends other than CRLF (a bare LF or CR): servers disagree on where it ends".into();
                    note(
                        out,
                        NoteKind::Smuggling,
                        Direction::ClientToServer,
                        ts,
                        text,
                    );
                }
                if let Some(message) = self.message.take() {
                    let t = &self.transaction;
                    out.push(ProtoEvent::Message(message.finish(
                        "smtp",
                        true,
                        t.mail_from.clone(),
                        t.accepted.clone(),
                    )));
                }
                let end = Line {
                    bytes: b".\r\n".to_vec(),
                    ts,
                    end_offset: self.client.offset(),
                    overlong: false,
                };
                self.push_command(".".into(), ".".into(), &end, Kind::DataEnd, false, out);
                self.mode = ClientMode::AwaitReply;
                true
            }
        }
    }

    /// Reads the bytes of a BDAT chunk.
    fn bdat_chunk(&mut self) -> bool {
        let ClientMode::Bdat { remaining } = &mut self.mode else {
            return false;
        };
        let take = (*remaining).min(self.client.held() as u64) as usize;
        if take == 0 && *remaining > 0 {
            return false;
        }
        if let Some(message) = &mut self.message {
            message.append(self.client.available().get(..take).unwrap_or_default());
        }
        *remaining -= take as u64;
        self.client.consume(take);
        if *remaining == 0 {
            self.mode = ClientMode::Command;
        }
        true
    }

    fn read_server(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        let mut progress = false;
        while let Some(line) = self.server.next_line() {
            progress = true;
            let text = line.text();
            let Some(parsed) = parser::reply_line(&text) else {
                if !self.resync[1] {
                    note(
                        out,
                        NoteKind::Malformed,
                        Direction::ServerToClient,
                        line.ts,
                        format!("not an SMTP reply: {text:?}"),
                    );
                }
                continue;
            };
            self.resync[1] = false;
            if self.reply_lines.is_empty() {
                self.end_of_data_lost(line.ts, out);
            }
            let last = parsed.last || self.reply_lines.len() + 1 >= MAX_REPLY_LINES;
            self.reply_lines.push(line);
            if last {
                // One reply at a time: it may change how the client's held bytes are read, and
                // the next reply pairs with a command that may still be in the client's inbox.
                self.reply_done(out);
                break;
            }
        }
        progress
    }

    /// A reply while the client is still sending a DATA body: the server only answers after the
    /// final dot, so the dot was lost in a gap. The message ends there, incomplete.
    fn end_of_data_lost(&mut self, ts: Timestamp, out: &mut Vec<ProtoEvent>) {
        if !matches!(self.mode, ClientMode::Data { .. }) {
            return;
        }
        if let Some(message) = self.message.take() {
            let t = &self.transaction;
            out.push(ProtoEvent::Message(message.finish(
                "smtp",
                false,
                t.mail_from.clone(),
                t.accepted.clone(),
            )));
        }
        note(
            out,
            NoteKind::Gap,
            Direction::ClientToServer,
            ts,
            "the end of the message was not captured; the server's reply ends it".into(),
        );
        let end = Line {
            bytes: Vec::new(),
            ts,
            end_offset: self.client.offset(),
            overlong: false,
        };
        self.push_command(".".into(), ".".into(), &end, Kind::DataEnd, false, out);
        self.mode = ClientMode::AwaitReply;
    }

    fn reply_done(&mut self, out: &mut Vec<ProtoEvent>) {
        let lines = std::mem::take(&mut self.reply_lines);
        let Some(last) = lines.last() else { return };
        let texts: Vec<Cow<str>> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(l.content()))
            .collect();
        let first_text = texts.first().map_or("", |t| t.as_ref());
        let code = first_text.get(..3).unwrap_or_default();
        let enhanced = first_text.get(4..).and_then(parser::enhanced_status);
        let texts = texts.iter().map(|t| t.as_ref());
        let reply = Reply::new(code, enhanced, texts, last.ts, last.end_offset);
        let positive = reply.code().starts_with('2');
        // The server speaks first: a first reply that greets is the greeting even when the
        // client already talked (an early talker), unless it answers a STARTTLS (a capture
        // that starts mid-session).
        let greeting = !self.replied
            && matches!(reply.code(), "220" | "421" | "554")
            && !matches!(self.pending.front().map(|p| &p.kind), Some(Kind::StartTls));
        self.replied = true;
        let pending = if greeting { None } else { self.pending.take(0) };
        let Some(pending) = pending else {
            out.push(ProtoEvent::Exchange(Exchange {
                command: None,
                reply: Some(reply),
                unknown_command: false,
            }));
            return;
        };
        match &pending.kind {
            Kind::Hello if positive => {
                self.transaction = Transaction::default();
                out.push(ProtoEvent::Capabilities(parser::ehlo_keywords(
                    reply.lines(),
                )));
            }
            Kind::Reset if positive => self.transaction = Transaction::default(),
            Kind::Mail(from, size) if positive => {
                self.transaction = Transaction {
                    mail_from: Some(from.clone()),
                    accepted: Vec::new(),
                    announced_size: *size,
                };
            }
            Kind::Rcpt(to) if positive => self.transaction.accepted.push(to.clone()),
            Kind::Data => {
                self.mode = if reply.code() == "354" {
                    let mut message = MessageBuilder::announced(
                        reply.ts,
                        self.transaction.announced_size,
                        &self.message_room,
                    );
                    message.hole(std::mem::take(&mut self.lost_before_body));
                    self.message = Some(message);
                    ClientMode::Data {
                        state: DotState::default(),
                    }
                } else {
                    ClientMode::Command
                };
            }
            Kind::DataEnd => {
                self.transaction = Transaction::default();
                self.mode = ClientMode::Command;
            }
            Kind::Bdat { last: true } => {
                if let Some(message) = self.message.take() {
                    let t = std::mem::take(&mut self.transaction);
                    out.push(ProtoEvent::Message(message.finish(
                        "smtp",
                        true,
                        t.mail_from,
                        t.accepted,
                    )));
                }
            }
            Kind::StartTls => {
                // What comes back decrypted starts the dialogue afresh (RFC 3207 4.2).
                if reply.code() == "220" {
                    let (client, server) = (&mut self.client, &mut self.server);
                    let upgrade =
                        Upgrade::take(&pending.command, reply.end_offset, reply.ts, client, server);
                    out.push(ProtoEvent::Upgrade(upgrade));
                }
                self.mode = ClientMode::Command;
            }
            Kind::Auth | Kind::AuthStep => {
                if reply.code() == "334" {
                    if let Some(sasl) = &mut self.sasl {
                        sasl.challenge(reply.first_line().get(4..).unwrap_or(""));
                    }
                    self.mode = ClientMode::SaslResponse;
                } else {
                    if let Some(sasl) = self.sasl.take() {
                        out.push(ProtoEvent::Auth(sasl.attempt(Some(positive), reply.ts)));
                    }
                    self.mode = ClientMode::Command;
                }
            }
            _ => {}
        }
        out.push(ProtoEvent::Exchange(Exchange {
            command: Some(pending.command),
            reply: Some(reply),
            unknown_command: pending.unknown,
        }));
    }
}

#[cfg(test)]
mod tests;

impl TwoSides for SmtpDissector {
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
        match direction {
            Direction::ClientToServer => {
                let lost = self.client.gap(len, ts) as u64 + len;
                match &mut self.mode {
                    ClientMode::Data { state } => {
                        state.interrupt();
                        if let Some(m) = &mut self.message {
                            m.hole(lost);
                        }
                        note(
                            out,
                            NoteKind::Gap,
                            direction,
                            ts,
                            format!("{lost} bytes of the message {how}"),
                        );
                    }
                    ClientMode::Bdat { remaining } => {
                        let inside = lost.min(*remaining);
                        *remaining -= inside;
                        if let Some(m) = &mut self.message {
                            m.hole(inside);
                        }
                        note(
                            out,
                            NoteKind::Gap,
                            direction,
                            ts,
                            format!("{inside} bytes of a BDAT chunk {how}"),
                        );
                        if *remaining == 0 {
                            self.mode = ClientMode::Command;
                        }
                        self.resync[0] = lost > inside;
                    }
                    _ => {
                        self.resync[0] = true;
                        // A client waiting for DATA's go-ahead may have sent its body already.
                        if self.pending.iter().any(|p| matches!(p.kind, Kind::Data)) {
                            self.lost_before_body += lost;
                        }
                        note(out, NoteKind::Gap, direction, ts, format!("{lost} bytes from the client {how}; resynchronising on the next command"));
                    }
                }
            }
            Direction::ServerToClient => {
                self.server.gap(len, ts);
                self.resync[1] = true;
                note(
                    out,
                    NoteKind::Gap,
                    direction,
                    ts,
                    format!("{len} bytes from the server {how}; resynchronising on the next reply"),
                );
                if !self.reply_lines.is_empty() {
                    // The end of a multi-line reply fell into the gap: it still answers the
                    // command it began to answer.
                    self.reply_done(out);
                }
            }
        }
    }
}
