//! Connections: the byte side of the session layer. Per connection, it picks a dissector (by
//! the server's port, checked against the first bytes: a TLS handshake where cleartext was
//! expected means implicit TLS), feeds it the two byte streams (through TLS decryption for
//! implicit TLS and after STARTTLS), and reports what happened as [`SessionEvent`]s, in order.
//!
//! It keeps nothing that spans connections but the TLS keys, so that each worker of a parallel
//! run can hold its own; [`super::Sessions`] turns the events into the model.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::capture::Timestamp;
use crate::mime::{self, MessageView};
use crate::ports::Service;
use crate::proto::room::{Held, Room, Rooms};
use crate::proto::{
    CapturedMessage, Dissector, ImapDissector, Note, NoteKind, Pop3Dissector, ProtoEvent,
    SmtpDissector,
};
use crate::secret::Secret;
use crate::tcp::{Direction, Flow, FlowEnd, FlowInfo, HalfStats, StreamEvent, StreamSink};
use crate::tls::{KeyLog, KeyLogFile, TlsConnection, TlsEvent, TlsInfo};

use super::model::TlsMode;

/// What a connection did, in the order it did it. Keyed by the flow's id in [`Events`].
#[derive(Debug)]
pub enum SessionEvent {
    /// A new connection, and its TLS mode as its port says.
    Opened { info: FlowInfo, mode: TlsMode },
    /// The connection turned out to be (implicit TLS) or became (STARTTLS) TLS.
    TlsMode(TlsMode),
    /// What TLS made of the connection, final at its end.
    TlsInfo(Box<TlsInfo>),
    /// A hole in one of the byte streams.
    Gap,
    /// What the dissector reported, messages excepted.
    Proto(ProtoEvent),
    /// A message, already parsed (the costly part, done where the connection is).
    Message(Box<PreparedMessage>),
    Ended {
        start: Timestamp,
        end: Timestamp,
        how: Option<FlowEnd>,
        streams: [HalfStats; 2],
    },
    /// The flow left the table; bytes that came after a reset, each way.
    Removed {
        last_ts: Timestamp,
        after_reset: [u64; 2],
    },
}

/// A captured message with its parsed view and, when it has a Message-ID, its body's hash.
#[derive(Debug)]
pub struct PreparedMessage {
    pub captured: CapturedMessage,
    pub view: MessageView,
    pub body_hash: Option<[u8; 32]>,
    /// Its bytes count in the room of messages until the outputs have had them: messages
    /// finished together are held together too, on their way.
    pub held: Held,
}

/// Where a [`Connections`] reports to.
pub trait Events {
    fn event(&mut self, flow: u64, event: SessionEvent);
    /// Bytes TLS decrypted, in order per direction (what the dissector reads next).
    fn decrypted(&mut self, flow: u64, direction: Direction, bytes: &[u8]);
    /// The input pauses (see [`crate::capture::Record::Pause`]).
    fn pause(&mut self) {}
}

struct Connection {
    /// The mail service of the server's port: which dissector it gets.
    service: Option<Service>,
    /// Made on first use (see [`Connection::dissector`]).
    dissector: Option<Box<dyn Dissector + Send>>,
    /// Implicit TLS from the start, or after STARTTLS: the dissector reads what it decrypts.
    /// Boxed: most connections never have one, and a flood of them must stay small.
    tls: Option<Box<TlsConnection>>,
    mode: TlsMode,
    /// Whether the first client bytes were looked at yet.
    sniffed: bool,
}

/// What a secret reads as under `--redact`.
pub const REDACTED: &str = "<redacted>";
/// How often followed key logs are read again.
const KEYLOG_POLL: Duration = Duration::from_millis(200);

pub struct Connections<E: Events> {
    /// Boxed so that the table itself stays small when a flood fills it.
    live: HashMap<u64, Box<Connection>, ahash::RandomState>,
    /// Where events go.
    pub out: E,
    /// What the dissector of the connection at hand reported, passed on once it is done.
    events: Vec<ProtoEvent>,
    /// TLS secrets: from key log files, and from the captures' Decryption Secrets Blocks.
    pub keys: KeyLog,
    /// The key log is followed as it grows (live capture): protected records wait for keys.
    pub keys_may_come: bool,
    /// Key log files read again as they grow.
    pub followed: Vec<KeyLogFile>,
    /// `--redact`: passwords and tokens never leave the session layer.
    pub redact: bool,
    /// What all connections hold together, shared with the other workers' connections.
    pub rooms: Rooms,
    last_poll: Option<Instant>,
}

impl<E: Events> Connections<E> {
    pub fn with_output(out: E) -> Connections<E> {
        Connections {
            live: HashMap::default(),
            out,
            events: Vec::new(),
            keys: KeyLog::default(),
            keys_may_come: false,
            followed: Vec::new(),
            redact: false,
            rooms: Rooms::default(),
            last_poll: None,
        }
    }

    /// Reads what was added to the followed key logs, at most every `KEYLOG_POLL`.
    fn poll_keys(&mut self) {
        if self.followed.is_empty() || self.last_poll.is_some_and(|t| t.elapsed() < KEYLOG_POLL) {
            return;
        }
        self.last_poll = Some(Instant::now());
        for file in &mut self.followed {
            // A key log being rewritten can vanish for a moment: the next poll reads it.
            let _ = file.poll(&mut self.keys);
        }
    }

    /// Passes on what the dissector reported; messages are parsed here.
    fn deliver(&mut self, id: u64) {
        for event in self.events.drain(..) {
            let event = match event {
                ProtoEvent::Message(captured) => {
                    if captured.out_of_room {
                        let note = out_of_room(&captured, self.rooms.messages.limit());
                        self.out
                            .event(id, SessionEvent::Proto(ProtoEvent::Note(note)));
                    }
                    SessionEvent::Message(Box::new(prepare(captured, &self.rooms.messages)))
                }
                ProtoEvent::Auth(mut attempt) if self.redact => {
                    attempt.secret = attempt.secret.map(|_| Secret::new(REDACTED));
                    SessionEvent::Proto(ProtoEvent::Auth(attempt))
                }
                other => SessionEvent::Proto(other),
            };
            self.out.event(id, event);
        }
    }
}

fn prepare(captured: Box<CapturedMessage>, room: &Room) -> PreparedMessage {
    let view = mime::parse(&captured.bytes);
    // Only a message with a Message-ID can be seen again: only its body is hashed.
    let body_hash = view
        .message_id
        .as_ref()
        .map(|_| mime::body_hash(&captured.bytes));
    // Decoded attachments can be as large as the message: they count too.
    let decoded: usize = view.attachments.iter().map(|a| a.bytes.len()).sum();
    PreparedMessage {
        held: room.hold(captured.bytes.len() + decoded),
        captured: *captured,
        view,
        body_hash,
    }
}

fn dissector_for(service: Option<Service>, rooms: &Rooms) -> Option<Box<dyn Dissector + Send>> {
    match service? {
        Service::Smtp | Service::Smtps => Some(Box::new(SmtpDissector::with_rooms(rooms))),
        Service::Pop3 | Service::Pop3s => Some(Box::new(Pop3Dissector::with_rooms(rooms))),
        Service::Imap | Service::Imaps => Some(Box::new(ImapDissector::with_rooms(rooms))),
    }
}

/// Says that a message was kept only in part because the messages in progress filled their room.
fn out_of_room(captured: &CapturedMessage, room: usize) -> Note {
    Note {
        kind: NoteKind::Limit,
        direction: None,
        ts: captured.ts,
        text: format!(
            "a message of {} bytes kept only its first {}: the messages in progress at once \
             keep {} MiB in all (its size and SHA-256 cover all of it)",
            captured.size,
            captured.bytes.len(),
            room >> 20
        ),
    }
}

/// The TLS mode a connection starts with, as its port says.
fn mode_of(service: Option<Service>) -> TlsMode {
    match service {
        Some(Service::Smtps | Service::Pop3s | Service::Imaps) => TlsMode::Implicit,
        _ => TlsMode::None,
    }
}

impl Connection {
    /// The dissector, made when the connection first has something for it: a flood of
    /// connections that never send a byte stays small.
    fn dissector(&mut self, rooms: &Rooms) -> Option<&mut (dyn Dissector + Send + 'static)> {
        if self.dissector.is_none() {
            self.dissector = dissector_for(self.service, rooms);
        }
        self.dissector.as_deref_mut()
    }
}

/// A connection's TLS; its records wait for keys only if keys may still come.
fn tls_connection(keys_may_come: bool, rooms: &Rooms) -> Box<TlsConnection> {
    Box::new(TlsConnection::new(
        keys_may_come.then(|| rooms.waiting.clone()),
    ))
}

/// What one connection's bytes go through, and what they report to.
struct Feed<'a, E: Events> {
    id: u64,
    rooms: &'a Rooms,
    keys: &'a KeyLog,
    keys_may_come: bool,
    events: &'a mut Vec<ProtoEvent>,
    out: &'a mut E,
}

impl<E: Events> Feed<'_, E> {
    /// One direction's bytes on to the dissector: through TLS when the connection has it. A
    /// STARTTLS that took effect starts TLS with what each side had already sent past it.
    fn data(&mut self, conn: &mut Connection, direction: Direction, bytes: &[u8], ts: Timestamp) {
        if let Some(tls) = conn.tls.as_mut() {
            let mut out = Vec::new();
            tls.data(direction, bytes, ts, self.keys, &mut out);
            self.tls(conn, out);
            return;
        }
        if let Some(d) = conn.dissector(self.rooms) {
            d.data(direction, bytes, ts, self.events);
        }
        let held = self.events.iter_mut().find_map(|e| match e {
            ProtoEvent::Upgrade(upgrade) => Some((std::mem::take(&mut upgrade.held), upgrade.ts)),
            _ => None,
        });
        if let Some(([client, server], ts)) = held {
            self.events.push(ProtoEvent::Note(Note {
                kind: NoteKind::Info,
                direction: None,
                ts,
                text: "TLS from here on (what follows is decrypted, where the key log allows)"
                    .into(),
            }));
            conn.tls = Some(tls_connection(self.keys_may_come, self.rooms));
            // Said here too (the Upgrade event is applied after this): what TLS says of the
            // held bytes depends on it.
            conn.mode = TlsMode::StartTls;
            self.out
                .event(self.id, SessionEvent::TlsMode(TlsMode::StartTls));
            for (direction, bytes) in [
                (Direction::ClientToServer, client),
                (Direction::ServerToClient, server),
            ] {
                self.data(conn, direction, &bytes, ts);
            }
        }
    }

    /// What TLS made of some bytes: plaintext for the dissector, notes for the session.
    fn tls(&mut self, conn: &mut Connection, out: Vec<TlsEvent>) {
        for event in out {
            let (kind, direction, ts, text) = match event {
                TlsEvent::Plaintext {
                    direction,
                    bytes,
                    ts,
                } => {
                    self.out.decrypted(self.id, direction, &bytes);
                    if let Some(d) = conn.dissector(self.rooms) {
                        d.data(direction, &bytes, ts, self.events);
                    }
                    continue;
                }
                TlsEvent::Note {
                    direction,
                    ts,
                    text,
                } => (NoteKind::Tls, direction, ts, text),
                TlsEvent::Alert {
                    direction,
                    ts,
                    text,
                } => (NoteKind::TlsAlert, direction, ts, text),
                TlsEvent::Broken {
                    direction,
                    ts,
                    text,
                } => (NoteKind::Malformed, direction, ts, text),
                // After STARTTLS the server may run these as if they came inside TLS.
                TlsEvent::NotTls {
                    direction,
                    ts,
                    text,
                } if conn.mode == TlsMode::StartTls => (NoteKind::Injection, direction, ts, text),
                TlsEvent::NotTls {
                    direction,
                    ts,
                    text,
                } => (NoteKind::Malformed, direction, ts, text),
            };
            self.events.push(ProtoEvent::Note(Note {
                kind,
                direction: Some(direction),
                ts,
                text,
            }));
        }
    }
}

/// The start of a TLS record carrying a handshake (content type 22, version 3.x).
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, minor, ..] if *minor <= 0x04)
}

impl<E: Events> StreamSink for Connections<E> {
    fn pause(&mut self) {
        self.out.pause();
    }

    fn keylog(&mut self, text: &[u8]) {
        self.keys.add(text);
        self.keys.finish();
    }

    fn flow_opened(&mut self, flow: &FlowInfo) {
        let mode = mode_of(flow.service);
        self.live.insert(
            flow.id,
            Box::new(Connection {
                service: flow.service,
                dissector: None,
                tls: (mode == TlsMode::Implicit)
                    .then(|| tls_connection(self.keys_may_come, &self.rooms)),
                mode,
                sniffed: false,
            }),
        );
        self.out.event(
            flow.id,
            SessionEvent::Opened {
                info: flow.clone(),
                mode,
            },
        );
    }

    fn stream_event(&mut self, flow: &FlowInfo, direction: Direction, event: StreamEvent<'_>) {
        self.poll_keys();
        let Some(conn) = self.live.get_mut(&flow.id) else {
            return;
        };
        let mut feed = Feed {
            id: flow.id,
            rooms: &self.rooms,
            keys: &self.keys,
            keys_may_come: self.keys_may_come,
            events: &mut self.events,
            out: &mut self.out,
        };
        match event {
            StreamEvent::Data { bytes, ts, .. } => {
                if direction == Direction::ClientToServer && !conn.sniffed {
                    conn.sniffed = true;
                    if conn.tls.is_none() && looks_like_tls(bytes) {
                        conn.tls = Some(tls_connection(feed.keys_may_come, feed.rooms));
                        conn.mode = TlsMode::Implicit;
                        feed.out
                            .event(flow.id, SessionEvent::TlsMode(TlsMode::Implicit));
                        feed.events.push(ProtoEvent::Note(Note {
                            kind: NoteKind::Info,
                            direction: Some(direction),
                            ts,
                            text: "the client starts with a TLS handshake: implicit TLS on a cleartext port".into(),
                        }));
                    }
                }
                feed.data(conn, direction, bytes, ts);
            }
            StreamEvent::Gap { len, ts } => {
                feed.out.event(flow.id, SessionEvent::Gap);
                if let Some(tls) = conn.tls.as_mut() {
                    let mut out = Vec::new();
                    tls.gap(direction, len, ts, &mut out);
                    feed.tls(conn, out);
                } else if let Some(d) = conn.dissector(feed.rooms) {
                    d.gap(direction, len, ts, feed.events);
                }
            }
            StreamEvent::Fin { .. } | StreamEvent::Rst { .. } => {}
        }
        self.deliver(flow.id);
    }

    fn flow_ended(&mut self, flow: &Flow) {
        // Keys for a connection are often logged just as it ends: read them before judging.
        self.last_poll = None;
        self.poll_keys();
        let id = flow.info.id;
        if let Some(mut conn) = self.live.remove(&id) {
            let mut feed = Feed {
                id,
                rooms: &self.rooms,
                keys: &self.keys,
                keys_may_come: self.keys_may_come,
                events: &mut self.events,
                out: &mut self.out,
            };
            if let Some(tls) = conn.tls.as_mut() {
                let mut out = Vec::new();
                tls.end(feed.keys, &mut out);
                // The connection is over: its TLS state goes with it.
                let info = Box::new(std::mem::take(&mut tls.info));
                feed.out.event(id, SessionEvent::TlsInfo(info));
                feed.tls(&mut conn, out);
            }
            // A dissector never made was never given anything: it has nothing to end.
            if let Some(d) = conn.dissector.as_mut() {
                d.end(flow.last_ts, feed.events);
            }
            self.deliver(id);
            self.out.event(
                id,
                SessionEvent::Ended {
                    start: flow.first_ts,
                    end: flow.last_ts,
                    how: flow.end,
                    streams: flow.half.each_ref().map(|half| half.stats),
                },
            );
        }
    }

    fn flow_removed(&mut self, flow: &Flow) {
        let after_reset = flow.half.each_ref().map(|h| h.stats.after_reset_bytes);
        self.out.event(
            flow.info.id,
            SessionEvent::Removed {
                last_ts: flow.last_ts,
                after_reset,
            },
        );
    }
}
