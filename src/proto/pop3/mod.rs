//! The POP3 dissector (RFC 1939; CAPA and PIPELINING 2449, STLS 2595, AUTH 5034).
//!
//! A reply's shape depends on the command it answers (a positive RETR, TOP, CAPA, or LIST and
//! UIDL without argument go on until a lone dot), so replies are read against the queue of
//! commands sent, in order; clients may pipeline when CAPA says PIPELINING. After AUTH and STLS
//! the client's next bytes depend on the reply, so reading the client waits for it.

pub mod parser;

use super::framing::{read_dot_body, DotBody, DotState, Inbox, Line};
use super::message::MessageBuilder;
use super::room::{Room, Rooms};
use super::sasl::Sasl;
use super::{
    note, note_drops, note_overlong, AuthAttempt, Awaiting, AwaitsReply, Command, Dissector,
    Exchange, Loss, MailboxEntry, NoteKind, ProtoEvent, Reply, TwoSides, Upgrade,
};
use crate::capture::Timestamp;
use crate::secret::Secret;
use crate::tcp::Direction;
use parser::Status;

#[derive(Debug)]
enum ClientMode {
    Command,
    AwaitReply,
    SaslResponse,
}

#[derive(Debug, Clone)]
enum Kind {
    Other,
    User(String),
    Pass(String),
    Apop(String, String),
    Auth,
    AuthStep,
    Retr,
    Top,
    List,
    Uidl,
    Capa,
    Stls,
}

#[derive(Debug)]
struct Pending {
    command: Command,
    kind: Kind,
    multi_line: bool,
    unknown: bool,
}

impl AwaitsReply for Pending {
    fn unanswered(self) -> Exchange {
        Exchange::unanswered(self.command, self.unknown)
    }
}

impl Pending {
    /// The command `shown` (`verb`) that `line` ended; its other fields as most commands have them.
    fn new(shown: String, verb: String, line: &Line) -> Pending {
        Pending {
            command: Command {
                line: shown,
                verb,
                ts: line.ts,
                end_offset: line.end_offset,
            },
            kind: Kind::Other,
            multi_line: false,
            unknown: false,
        }
    }
}

/// A multi-line reply being read.
#[derive(Debug)]
struct Body {
    pending: Pending,
    status: Line,
    state: DotState,
    /// RETR and TOP: the message; other commands: the listing lines.
    message: Option<MessageBuilder>,
    listing: Vec<u8>,
}

/// Listing bytes kept per reply (LIST, UIDL, CAPA); the rest is counted in a note.
const MAX_LISTING_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub struct Pop3Dissector {
    client: Inbox,
    server: Inbox,
    mode: ClientMode,
    pending: Awaiting<Pending>,
    body: Option<Body>,
    sasl: Option<Sasl>,
    greeted: bool,
    apop_timestamp: Option<String>,
    /// The name of the last USER command, for the PASS that follows.
    pending_user: Option<String>,
    resync: [bool; 2],
    message_room: Room,
}

impl Default for Pop3Dissector {
    fn default() -> Self {
        Pop3Dissector::with_rooms(&Rooms::default())
    }
}

impl Pop3Dissector {
    /// A dissector whose messages and awaiting commands count in `rooms`, with other
    /// connections'.
    pub fn with_rooms(rooms: &Rooms) -> Self {
        Pop3Dissector {
            client: Inbox::with_room(&rooms.held),
            server: Inbox::with_room(&rooms.held),
            mode: ClientMode::Command,
            pending: Awaiting::new(&rooms.awaiting),
            body: None,
            sasl: None,
            greeted: false,
            apop_timestamp: None,
            pending_user: None,
            resync: [false; 2],
            message_room: rooms.messages.clone(),
        }
    }
}

fn reply_of(status: &Line, extra: Vec<String>) -> Reply {
    let first = status.text();
    let code = if first.to_ascii_uppercase().starts_with("+OK") {
        "+OK"
    } else if first.starts_with('+') {
        "+"
    } else {
        "-ERR"
    };
    let enhanced = match parser::status_line(&first) {
        Some(Status::Done { code: Some(c), .. }) => Some(c),
        _ => None,
    };
    let lines = std::iter::once(first.as_str()).chain(extra.iter().map(String::as_str));
    Reply::new(code, enhanced, lines, status.ts, status.end_offset)
}

impl Dissector for Pop3Dissector {
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
        if let Some(body) = self.body.take() {
            note(
                out,
                NoteKind::Unfinished,
                Direction::ServerToClient,
                ts,
                "the connection ended inside a multi-line reply".into(),
            );
            self.finish_body(body, false, out);
        }
        if let Some(sasl) = self.sasl.take() {
            out.push(ProtoEvent::Auth(sasl.attempt(None, ts)));
        }
        self.pending.end(out);
    }
}

impl Pop3Dissector {
    fn read_client(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        let mut progress = false;
        while matches!(self.mode, ClientMode::Command | ClientMode::SaslResponse) {
            let Some(line) = self.client.next_line() else {
                break;
            };
            progress = true;
            self.client_line(line, out);
        }
        progress
    }

    /// A command that awaits its reply.
    fn push(&mut self, pending: Pending, out: &mut Vec<ProtoEvent>) {
        self.pending.push(pending, out);
    }

    fn client_line(&mut self, line: Line, out: &mut Vec<ProtoEvent>) {
        let text = line.text();
        note_overlong(out, &line);
        if matches!(self.mode, ClientMode::SaslResponse) {
            let shown = match &mut self.sasl {
                Some(sasl) => sasl.respond(&text),
                None => text.clone(),
            };
            let step = Pending {
                kind: Kind::AuthStep,
                ..Pending::new(format!("[{shown}]"), "AUTH-RESPONSE".into(), &line)
            };
            self.push(step, out);
            self.mode = ClientMode::AwaitReply;
            return;
        }
        let (verb, args) = parser::command_line(&text);
        let known = parser::KNOWN_VERBS.contains(&verb.as_str());
        if self.resync[0] {
            if !known {
                return;
            }
            self.resync[0] = false;
        }
        let multi = parser::multi_line(&verb, args.len());
        let first = args.first().map(|a| a.to_string()).unwrap_or_default();
        let (kind, shown) = match verb.as_str() {
            "USER" => (Kind::User(first), text.clone()),
            "PASS" => (
                Kind::Pass(text.get(5..).unwrap_or("").to_string()),
                "PASS ****".to_string(),
            ),
            "APOP" => (
                Kind::Apop(first, args.get(1).unwrap_or(&"").to_string()),
                text.clone(),
            ),
            "RETR" => (Kind::Retr, text.clone()),
            "TOP" => (Kind::Top, text.clone()),
            "LIST" => (Kind::List, text.clone()),
            "UIDL" => (Kind::Uidl, text.clone()),
            "CAPA" => (Kind::Capa, text.clone()),
            "STLS" => (Kind::Stls, text.clone()),
            "AUTH" if !args.is_empty() => {
                let sasl = Sasl::new(&first, args.get(1).copied());
                let shown = match args.get(1) {
                    Some(_) => format!(
                        "AUTH {} [{}]",
                        sasl.mechanism(),
                        sasl.decoded_step(0).unwrap_or_default()
                    ),
                    None => format!("AUTH {}", sasl.mechanism()),
                };
                self.sasl = Some(sasl);
                (Kind::Auth, shown)
            }
            _ => (Kind::Other, text.clone()),
        };
        let waits = matches!(kind, Kind::Auth | Kind::Stls);
        let pending = Pending {
            kind,
            multi_line: multi,
            unknown: !known,
            ..Pending::new(shown, verb, &line)
        };
        self.push(pending, out);
        if waits {
            self.mode = ClientMode::AwaitReply;
        }
    }

    fn read_server(&mut self, out: &mut Vec<ProtoEvent>) -> bool {
        if let Some(body) = &mut self.body {
            let Body {
                message,
                listing,
                state,
                ..
            } = body;
            let step = read_dot_body(&mut self.server, state, &mut |bytes| match message {
                Some(m) => m.append(bytes),
                None => {
                    let room = MAX_LISTING_BYTES.saturating_sub(listing.len());
                    listing.extend_from_slice(bytes.get(..room).unwrap_or(bytes));
                }
            });
            return match step {
                DotBody::Waiting => false,
                DotBody::Took(_) => true,
                DotBody::Ended(_) => {
                    if let Some(body) = self.body.take() {
                        self.finish_body(body, true, out);
                    }
                    true
                }
            };
        }
        let Some(line) = self.server.next_line() else {
            return false;
        };
        let text = line.text();
        let Some(status) = parser::status_line(&text) else {
            if !self.resync[1] {
                note(
                    out,
                    NoteKind::Malformed,
                    Direction::ServerToClient,
                    line.ts,
                    format!("not a POP3 response: {text:?}"),
                );
            }
            return true;
        };
        self.resync[1] = false;
        if !self.greeted && self.pending.is_empty() {
            self.greeted = true;
            self.apop_timestamp = parser::apop_timestamp(&text).map(str::to_string);
            out.push(ProtoEvent::Exchange(Exchange {
                command: None,
                reply: Some(reply_of(&line, Vec::new())),
                unknown_command: false,
            }));
            return true;
        }
        let Some(pending) = self.pending.take(0) else {
            out.push(ProtoEvent::Exchange(Exchange {
                command: None,
                reply: Some(reply_of(&line, Vec::new())),
                unknown_command: false,
            }));
            return true;
        };
        match status {
            Status::Continue(challenge) => {
                if let Some(sasl) = &mut self.sasl {
                    sasl.challenge(challenge);
                }
                self.mode = ClientMode::SaslResponse;
                self.exchange(pending, reply_of(&line, Vec::new()), out);
            }
            Status::Done { ok: true, text, .. } if pending.multi_line => {
                let size = match pending.kind {
                    Kind::Retr => parser::octets(text),
                    _ => None,
                };
                let message = matches!(pending.kind, Kind::Retr | Kind::Top)
                    .then(|| MessageBuilder::announced(line.ts, size, &self.message_room));
                self.body = Some(Body {
                    pending,
                    status: line,
                    state: DotState::default(),
                    message,
                    listing: Vec::new(),
                });
            }
            Status::Done { ok, .. } => {
                let reply = reply_of(&line, Vec::new());
                self.single_line_done(&pending, ok, &reply, out);
                self.exchange(pending, reply, out);
            }
        }
        true
    }

    fn exchange(&mut self, pending: Pending, reply: Reply, out: &mut Vec<ProtoEvent>) {
        out.push(ProtoEvent::Exchange(Exchange {
            command: Some(pending.command),
            reply: Some(reply),
            unknown_command: pending.unknown,
        }));
    }

    /// Acts on a single-line reply: credentials, STLS, the end of AUTH.
    fn single_line_done(
        &mut self,
        pending: &Pending,
        ok: bool,
        reply: &Reply,
        out: &mut Vec<ProtoEvent>,
    ) {
        match &pending.kind {
            Kind::Pass(password) => {
                let username = self.pending_user.take();
                out.push(ProtoEvent::Auth(AuthAttempt {
                    mechanism: "USER/PASS".into(),
                    username,
                    secret: Some(Secret::new(password.clone())),
                    success: Some(ok),
                    ts: reply.ts,
                }));
            }
            Kind::User(name) => self.pending_user = Some(name.clone()),
            Kind::Apop(name, digest) => out.push(ProtoEvent::Auth(AuthAttempt {
                mechanism: "APOP".into(),
                username: Some(name.clone()),
                // What cracking tools need: the greeting's timestamp and the digest.
                secret: Some(Secret::new(format!(
                    "{} {digest}",
                    self.apop_timestamp.as_deref().unwrap_or("")
                ))),
                success: Some(ok),
                ts: reply.ts,
            })),
            Kind::Auth | Kind::AuthStep => {
                if let Some(sasl) = self.sasl.take() {
                    out.push(ProtoEvent::Auth(sasl.attempt(Some(ok), reply.ts)));
                }
                self.mode = ClientMode::Command;
            }
            Kind::Stls => {
                if ok {
                    let (client, server) = (&mut self.client, &mut self.server);
                    let upgrade =
                        Upgrade::take(&pending.command, reply.end_offset, reply.ts, client, server);
                    out.push(ProtoEvent::Upgrade(upgrade));
                }
                self.mode = ClientMode::Command;
            }
            _ => {}
        }
    }

    /// A multi-line reply ended (or was cut off): the message, listing or capabilities in it.
    fn finish_body(&mut self, body: Body, complete: bool, out: &mut Vec<ProtoEvent>) {
        let Body {
            pending,
            status,
            message,
            listing,
            ..
        } = body;
        let text = String::from_utf8_lossy(&listing).into_owned();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let shown = if matches!(pending.kind, Kind::Retr | Kind::Top) {
            Vec::new()
        } else {
            lines.clone()
        };
        let kind = pending.kind.clone();
        self.exchange(pending, reply_of(&status, shown), out);
        match (kind, message) {
            (kind @ (Kind::Retr | Kind::Top), Some(message)) => {
                let mut captured = message.finish("pop3", complete, None, Vec::new());
                captured.partial = matches!(kind, Kind::Top);
                out.push(ProtoEvent::Message(captured));
            }
            (kind @ (Kind::List | Kind::Uidl), _) => {
                let entries = lines
                    .iter()
                    .filter_map(|l| parser::listing_line(l))
                    .map(|(number, value)| match kind {
                        Kind::List => MailboxEntry {
                            number,
                            size: value.parse().ok(),
                            uid: None,
                        },
                        _ => MailboxEntry {
                            number,
                            size: None,
                            uid: Some(value.to_string()),
                        },
                    })
                    .collect();
                out.push(ProtoEvent::Mailbox(entries));
            }
            (Kind::Capa, _) => out.push(ProtoEvent::Capabilities(
                lines.iter().map(|l| l.to_ascii_uppercase()).collect(),
            )),
            _ => {}
        }
    }
}

impl TwoSides for Pop3Dissector {
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
                self.resync[0] = true;
                note(
                    out,
                    NoteKind::Gap,
                    direction,
                    ts,
                    format!(
                        "{lost} bytes from the client {how}; resynchronising on the next command"
                    ),
                );
            }
            Direction::ServerToClient => {
                let lost = self.server.gap(len, ts) as u64 + len;
                match &mut self.body {
                    Some(body) => {
                        body.state.interrupt();
                        if let Some(m) = &mut body.message {
                            m.hole(lost);
                        }
                        note(
                            out,
                            NoteKind::Gap,
                            direction,
                            ts,
                            format!("{lost} bytes of a multi-line reply {how}"),
                        );
                    }
                    None => {
                        self.resync[1] = true;
                        note(out, NoteKind::Gap, direction, ts, format!("{lost} bytes from the server {how}; resynchronising on the next reply"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::note_texts;

    const C: Direction = Direction::ClientToServer;
    const S: Direction = Direction::ServerToClient;

    fn run(steps: &[(Direction, &[u8])]) -> Vec<ProtoEvent> {
        let mut d = Pop3Dissector::default();
        let mut out = Vec::new();
        for (i, (direction, bytes)) in steps.iter().enumerate() {
            d.data(*direction, bytes, Timestamp(i as i64), &mut out);
        }
        d.end(Timestamp(99), &mut out);
        out
    }

    fn pairs(events: &[ProtoEvent]) -> Vec<(String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                ProtoEvent::Exchange(x) => Some((
                    x.command.as_ref().map_or(String::new(), |c| c.line.clone()),
                    x.reply
                        .as_ref()
                        .map_or(String::new(), |r| r.first_line().to_string()),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pipelined_commands_pair_with_their_replies() {
        let events = run(&[
            (S, b"+OK ready\r\n"),
            (C, b"STAT\r\nLIST\r\nRETR 9\r\nRETR 1\r\n"),
            (S, b"+OK 1 6\r\n+OK\r\n1 6\r\n.\r\n-ERR [SYS/PERM] no such message\r\n+OK 6 octets\r\n..hi\r\n.\r\n"),
        ]);
        let p = pairs(&events);
        assert_eq!(
            p[1..],
            [
                ("STAT".into(), "+OK 1 6".into()),
                ("LIST".into(), "+OK".into()),
                ("RETR 9".into(), "-ERR [SYS/PERM] no such message".into()),
                ("RETR 1".into(), "+OK 6 octets".into()),
            ]
        );
        let m: Vec<_> = events.iter().filter_map(ProtoEvent::as_message).collect();
        assert_eq!(
            (m.len(), m[0].bytes.as_slice(), m[0].complete),
            (1, &b".hi\r\n"[..], true)
        );
        let enhanced = events.iter().find_map(|e| match e {
            ProtoEvent::Exchange(x) => x.reply.as_ref()?.enhanced().map(str::to_string),
            _ => None,
        });
        assert_eq!(enhanced.as_deref(), Some("SYS/PERM"));
    }

    #[test]
    fn what_a_waiting_client_sends_past_the_held_limit_is_a_hole() {
        let early = b"NOOP\r\n".repeat(250_000);
        let events = run(&[
            (S, b"+OK ready\r\n"),
            (C, &[&b"STLS\r\n"[..], &early].concat()),
            (S, b"-ERR not now\r\n"),
            (C, b"QUIT\r\n"),
            (S, b"+OK bye\r\n"),
        ]);
        let lost = format!(
            "{} bytes from the client were dropped (sent while waiting, past what may be \
             held); resynchronising on the next command",
            early.len()
        );
        let notes = note_texts(&events, NoteKind::Gap);
        assert_eq!(notes, [lost.as_str()]);
        assert_eq!(
            pairs(&events)[1..],
            [
                ("STLS".into(), "-ERR not now".into()),
                ("QUIT".into(), "+OK bye".into())
            ]
        );
    }

    #[test]
    fn stls_offsets_and_credentials() {
        let events = run(&[
            (S, b"+OK ready\r\n"),
            (C, b"USER dave\r\n"),
            (S, b"+OK\r\n"),
            (C, b"PASS s3cret\r\n"),
            (S, b"-ERR [AUTH] bad\r\n"),
            (C, b"STLS\r\n\x16\x03\x01"),
            (S, b"+OK Begin TLS\r\n\x16\x03\x03"),
        ]);
        let auth = events.iter().find_map(ProtoEvent::as_auth).unwrap();
        assert_eq!(
            (
                auth.username.as_deref(),
                auth.secret.as_ref().map(|s| s.expose()),
                auth.success
            ),
            (Some("dave"), Some("s3cret"), Some(false))
        );
        assert!(
            pairs(&events).contains(&("PASS ****".into(), "-ERR [AUTH] bad".into())),
            "the password is masked"
        );
        let up = events.iter().find_map(ProtoEvent::as_upgrade).unwrap();
        assert_eq!(
            (up.client_offset, up.server_offset),
            (11 + 13 + 6, 11 + 5 + 17 + 15)
        );
    }

    #[test]
    fn gap_in_a_retrieved_message_is_a_hole() {
        let mut d = Pop3Dissector::default();
        let mut out = Vec::new();
        let t = Timestamp(0);
        d.data(S, b"+OK\r\n", t, &mut out);
        d.data(C, b"RETR 1\r\nQUIT\r\n", t, &mut out);
        d.data(S, b"+OK\r\nSubject: x\r\n", t, &mut out);
        d.gap(S, 500, t, &mut out);
        d.data(S, b"tail\r\n.\r\n+OK bye\r\n", t, &mut out);
        d.end(t, &mut out);
        let m = out.iter().find_map(ProtoEvent::as_message).unwrap();
        assert_eq!((m.hole_bytes, m.complete), (500, false));
        assert_eq!(pairs(&out).last(), Some(&("QUIT".into(), "+OK bye".into())));
    }

    #[test]
    fn unterminated_retrieval_is_reported_incomplete() {
        let events = run(&[
            (S, b"+OK\r\n"),
            (C, b"RETR 1\r\n"),
            (S, b"+OK\r\nSubject: cut\r\n"),
        ]);
        let m = events.iter().find_map(ProtoEvent::as_message).unwrap();
        assert!(!m.complete);
    }
}
