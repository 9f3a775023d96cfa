//! Sessions: the fifth stage. Per connection, the session layer picks a dissector (by the
//! server's port, checked against the first bytes: a TLS handshake where cleartext was expected
//! means implicit TLS), feeds it the two byte streams (through TLS decryption for implicit TLS
//! and after STARTTLS), and turns what it reports into the [`model`] users see, handing each
//! finished piece to a [`SessionSink`] as soon as it is complete (so that a live capture can
//! be followed).

pub mod journeys;
pub mod model;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::capture::Timestamp;
use crate::mime;
use crate::ports::Service;
use crate::proto::{
    CapturedMessage, Dissector, Exchange, ImapDissector, Note, NoteKind, Pop3Dissector, ProtoEvent,
    SmtpDissector,
};
use crate::secret::Secret;
use crate::tcp::{Direction, Flow, FlowEnd, FlowInfo, StreamEvent, StreamSink};
use crate::tls::{KeyLog, KeyLogFile, TlsConnection, TlsEvent};
use journeys::Journeys;
use model::{Finding, FindingKind, Message, Protocol, Session, Sighting, TlsMode, TlsStatus};

/// The outputs: told about each piece as it is complete.
pub trait SessionSink {
    fn exchange(&mut self, session: &Session, exchange: &Exchange);
    fn message(&mut self, session: &Session, message: &Message);
    fn note(&mut self, _session: &Session, _note: &Note) {}
    /// Something analysis found (see [`crate::analysis::Analyst`]).
    fn finding(&mut self, _session: &Session, _finding: &Finding) {}
    /// Bytes TLS decrypted, in order per direction (what the dissector reads next).
    fn decrypted(&mut self, _session: &Session, _direction: Direction, _bytes: &[u8]) {}
    /// The connection ended; the session is final.
    fn session_end(&mut self, session: &Session);
}

struct Live {
    session: Session,
    dissector: Option<Box<dyn Dissector + Send>>,
    /// Implicit TLS from the start, or after STARTTLS: the dissector reads what it decrypts.
    /// Boxed: most connections never have one, and a flood of them must stay small.
    tls: Option<Box<TlsConnection>>,
    /// Whether the first client bytes were looked at yet.
    sniffed: bool,
    /// The capture-wide ids of the session's messages, in order (parts link to them).
    message_ids: Vec<u64>,
}

/// Mailbox listing entries kept per session (a hostile server can list endlessly).
const MAX_MAILBOX_ENTRIES: usize = 100_000;
/// What a secret reads as under `--redact`.
pub const REDACTED: &str = "<redacted>";
/// How often followed key logs are read again.
const KEYLOG_POLL: Duration = Duration::from_millis(200);
/// Message ids remembered per session for linking parts to their message.
const MAX_LINKED_MESSAGES: usize = 1_000_000;

pub struct SessionTable<S: SessionSink> {
    /// Boxed so that the table itself stays small when a flood fills it.
    live: HashMap<u64, Box<Live>>,
    /// Sessions ended by a reset, kept while their flow lingers: data after the reset is
    /// judged when the flow leaves.
    reset: HashMap<u64, Session>,
    pub sink: S,
    events: Vec<ProtoEvent>,
    /// The id the next message gets.
    next_message: u64,
    /// Messages by Message-ID, to link each to its earlier sightings.
    journeys: Journeys,
    /// TLS secrets: from key log files, and from the captures' Decryption Secrets Blocks.
    pub keys: KeyLog,
    /// The key log is followed as it grows (live capture): protected records wait for keys.
    pub keys_may_come: bool,
    /// Key log files read again as they grow.
    pub followed: Vec<KeyLogFile>,
    /// `--redact`: passwords and tokens never leave the session layer.
    pub redact: bool,
    last_poll: Option<Instant>,
}

impl<S: SessionSink> SessionTable<S> {
    pub fn new(sink: S) -> SessionTable<S> {
        SessionTable {
            live: HashMap::new(),
            reset: HashMap::new(),
            sink,
            events: Vec::new(),
            next_message: 1,
            journeys: Journeys::default(),
            keys: KeyLog::default(),
            keys_may_come: false,
            followed: Vec::new(),
            redact: false,
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

    fn deliver(&mut self, id: u64) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        for event in self.events.drain(..) {
            match event {
                ProtoEvent::Message(captured) => {
                    let message = link(live, captured, self.next_message, &mut self.journeys);
                    self.next_message += 1;
                    live.session.messages += 1;
                    self.sink.message(&live.session, &message);
                }
                ProtoEvent::Auth(mut attempt) if self.redact => {
                    attempt.secret = attempt.secret.map(|_| Secret::new(REDACTED));
                    apply(&mut live.session, ProtoEvent::Auth(attempt), &mut self.sink);
                }
                other => apply(&mut live.session, other, &mut self.sink),
            }
        }
    }
}

/// A captured message given its id, its view, and the messages it is linked to: its parts or
/// whole in this session, its earlier sightings, and for a bounce the message it reports on.
fn link(live: &mut Live, captured: CapturedMessage, id: u64, journeys: &mut Journeys) -> Message {
    let ids = &live.message_ids;
    let part_of = captured.part_of.and_then(|n| ids.get(n).copied());
    let parts = captured
        .parts
        .iter()
        .filter_map(|&n| ids.get(n).copied())
        .collect();
    if live.message_ids.len() < MAX_LINKED_MESSAGES {
        live.message_ids.push(id);
    }
    let view = mime::parse(&captured.bytes);
    // Only a message with a Message-ID can be seen again: only its body is hashed.
    let body_hash = view
        .message_id
        .as_ref()
        .map(|_| mime::body_hash(&captured.bytes));
    let seen_before = match (&view.message_id, body_hash) {
        (Some(message_id), Some(body_hash)) => journeys.sight(
            message_id,
            Sighting {
                message: id,
                session: live.session.id,
                source: captured.source,
                sha256: captured.sha256,
                body_hash,
                whole: captured.complete && !captured.partial && !captured.truncated,
            },
        ),
        _ => Vec::new(),
    };
    let reports_on = view
        .report
        .as_ref()
        .and_then(|r| r.original_message_id.as_deref())
        .and_then(|original| journeys.first(original));
    Message {
        id,
        session: live.session.id,
        body_hash,
        captured,
        view,
        part_of,
        parts,
        seen_before,
        reports_on,
    }
}

/// Updates the session with one dissector event (other than a message) and passes it on.
fn apply(session: &mut Session, event: ProtoEvent, sink: &mut impl SessionSink) {
    match event {
        ProtoEvent::Exchange(exchange) => {
            session.exchanges += 1;
            sink.exchange(session, &exchange);
        }
        ProtoEvent::Auth(attempt) => session.auth.push(attempt),
        // Numbered and linked by `deliver`, which knows the session's earlier messages.
        ProtoEvent::Message(_) => {}
        ProtoEvent::Upgrade(upgrade) => {
            session.tls.mode = TlsMode::StartTls;
            session.tls.upgrade = Some(upgrade);
        }
        ProtoEvent::Capabilities(capabilities) => session.capabilities = capabilities,
        ProtoEvent::Selected(state) => session.selected = state,
        ProtoEvent::Mailbox(entries) => {
            // LIST gives sizes and UIDL unique ids: merge them by message number.
            for entry in entries {
                let full = session.mailbox.len() >= MAX_MAILBOX_ENTRIES;
                match session
                    .mailbox
                    .iter_mut()
                    .find(|e| e.number == entry.number)
                {
                    Some(known) => {
                        known.size = entry.size.or(known.size);
                        known.uid = entry.uid.or(known.uid.take());
                    }
                    None if !full => session.mailbox.push(entry),
                    None => {}
                }
            }
        }
        ProtoEvent::Note(note) => {
            sink.note(session, &note);
            session.notes.push(note);
        }
    }
}

fn dissector_for(service: Option<Service>) -> (Option<Box<dyn Dissector + Send>>, TlsMode) {
    let dissector: Box<dyn Dissector + Send> = match service {
        Some(Service::Smtp | Service::Smtps) => Box::new(SmtpDissector::default()),
        Some(Service::Pop3 | Service::Pop3s) => Box::new(Pop3Dissector::default()),
        Some(Service::Imap | Service::Imaps) => Box::new(ImapDissector::default()),
        None => return (None, TlsMode::None),
    };
    let implicit = matches!(
        service,
        Some(Service::Smtps | Service::Pop3s | Service::Imaps)
    );
    let mode = if implicit {
        TlsMode::Implicit
    } else {
        TlsMode::None
    };
    (Some(dissector), mode)
}

/// One direction's bytes on to the dissector: through TLS when the connection has it. A
/// STARTTLS that took effect starts TLS with what each side had already sent past it.
#[allow(clippy::too_many_arguments)]
fn feed(
    live: &mut Live,
    keys: &KeyLog,
    keys_may_come: bool,
    direction: Direction,
    bytes: &[u8],
    ts: Timestamp,
    events: &mut Vec<ProtoEvent>,
    sink: &mut impl SessionSink,
) {
    if let Some(tls) = live.tls.as_mut() {
        let mut out = Vec::new();
        tls.data(direction, bytes, ts, keys, &mut out);
        dissect_tls(live, out, events, sink);
        return;
    }
    if let Some(d) = live.dissector.as_mut() {
        d.data(direction, bytes, ts, events);
    }
    let held = events.iter_mut().find_map(|e| match e {
        ProtoEvent::Upgrade(upgrade) => Some((std::mem::take(&mut upgrade.held), upgrade.ts)),
        _ => None,
    });
    if let Some(([client, server], ts)) = held {
        events.push(ProtoEvent::Note(Note {
            kind: NoteKind::Info,
            direction: None,
            ts,
            text: "TLS from here on (what follows is decrypted, where the key log allows)".into(),
        }));
        live.tls = Some(Box::new(TlsConnection::new(keys_may_come)));
        // Set here too (the Upgrade event is applied after this): what TLS says of the held
        // bytes depends on it.
        live.session.tls.mode = TlsMode::StartTls;
        for (direction, bytes) in [
            (Direction::ClientToServer, client),
            (Direction::ServerToClient, server),
        ] {
            feed(
                live,
                keys,
                keys_may_come,
                direction,
                &bytes,
                ts,
                events,
                sink,
            );
        }
    }
}

/// What TLS made of some bytes: plaintext for the dissector, notes for the session.
fn dissect_tls(
    live: &mut Live,
    out: Vec<TlsEvent>,
    events: &mut Vec<ProtoEvent>,
    sink: &mut impl SessionSink,
) {
    for event in out {
        match event {
            TlsEvent::Plaintext {
                direction,
                bytes,
                ts,
            } => {
                sink.decrypted(&live.session, direction, &bytes);
                if let Some(d) = live.dissector.as_mut() {
                    d.data(direction, &bytes, ts, events);
                }
            }
            TlsEvent::Note {
                direction,
                ts,
                text,
            } => events.push(tls_note(NoteKind::Tls, direction, ts, text)),
            TlsEvent::Alert {
                direction,
                ts,
                text,
            } => events.push(tls_note(NoteKind::TlsAlert, direction, ts, text)),
            TlsEvent::Broken {
                direction,
                ts,
                text,
            } => events.push(tls_note(NoteKind::Malformed, direction, ts, text)),
            TlsEvent::NotTls {
                direction,
                ts,
                text,
            } => {
                // After STARTTLS the server may run these as if they came inside TLS.
                let kind = match live.session.tls.mode {
                    TlsMode::StartTls => NoteKind::Injection,
                    _ => NoteKind::Malformed,
                };
                events.push(tls_note(kind, direction, ts, text));
            }
        }
    }
}

fn tls_note(kind: NoteKind, direction: Direction, ts: Timestamp, text: String) -> ProtoEvent {
    ProtoEvent::Note(Note {
        kind,
        direction: Some(direction),
        ts,
        text,
    })
}

/// The start of a TLS record carrying a handshake (content type 22, version 3.x).
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, minor, ..] if *minor <= 0x04)
}

impl<S: SessionSink> StreamSink for SessionTable<S> {
    fn keylog(&mut self, text: &[u8]) {
        self.keys.add(text);
        self.keys.finish();
    }

    fn flow_opened(&mut self, flow: &FlowInfo) {
        let (dissector, mode) = dissector_for(flow.service);
        let session = Session {
            id: flow.id,
            protocol: Protocol::of(flow.service),
            client: flow.client,
            server: flow.server,
            start: Timestamp::default(),
            end: Timestamp::default(),
            tls: TlsStatus {
                mode,
                upgrade: None,
                info: Default::default(),
            },
            auth: Vec::new(),
            capabilities: Vec::new(),
            mailbox: Vec::new(),
            selected: None,
            exchanges: 0,
            messages: 0,
            gaps: 0,
            notes: Vec::new(),
            ended: None,
            streams: Default::default(),
        };
        self.live.insert(
            flow.id,
            Box::new(Live {
                session,
                dissector,
                tls: (mode == TlsMode::Implicit)
                    .then(|| Box::new(TlsConnection::new(self.keys_may_come))),
                sniffed: false,
                message_ids: Vec::new(),
            }),
        );
    }

    fn stream_event(&mut self, flow: &FlowInfo, direction: Direction, event: StreamEvent<'_>) {
        self.poll_keys();
        let Some(live) = self.live.get_mut(&flow.id) else {
            return;
        };
        match event {
            StreamEvent::Data { bytes, ts, .. } => {
                if direction == Direction::ClientToServer && !live.sniffed {
                    live.sniffed = true;
                    if live.tls.is_none() && looks_like_tls(bytes) {
                        live.tls = Some(Box::new(TlsConnection::new(self.keys_may_come)));
                        live.session.tls.mode = TlsMode::Implicit;
                        self.events.push(ProtoEvent::Note(Note {
                            kind: NoteKind::Info,
                            direction: Some(direction),
                            ts,
                            text: "the client starts with a TLS handshake: implicit TLS on a cleartext port".into(),
                        }));
                    }
                }
                let (keys, sink) = (&self.keys, &mut self.sink);
                let may_come = self.keys_may_come;
                feed(
                    live,
                    keys,
                    may_come,
                    direction,
                    bytes,
                    ts,
                    &mut self.events,
                    sink,
                );
            }
            StreamEvent::Gap { len, ts } => {
                live.session.gaps += 1;
                if let Some(tls) = live.tls.as_mut() {
                    let mut out = Vec::new();
                    tls.gap(direction, len, ts, &mut out);
                    dissect_tls(live, out, &mut self.events, &mut self.sink);
                } else if let Some(d) = live.dissector.as_mut() {
                    d.gap(direction, len, ts, &mut self.events);
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
        if let Some(live) = self.live.get_mut(&flow.info.id) {
            if let Some(tls) = live.tls.as_mut() {
                let mut out = Vec::new();
                tls.end(&self.keys, &mut out);
                live.session.tls.info = tls.info.clone();
                dissect_tls(live, out, &mut self.events, &mut self.sink);
            }
            if let Some(d) = live.dissector.as_mut() {
                d.end(flow.last_ts, &mut self.events);
            }
        }
        self.deliver(flow.info.id);
        if let Some(mut live) = self.live.remove(&flow.info.id) {
            live.session.start = flow.first_ts;
            live.session.end = flow.last_ts;
            live.session.ended = flow.end;
            live.session.streams = flow.half.each_ref().map(|half| half.stats);
            self.sink.session_end(&live.session);
            if flow.end == Some(FlowEnd::Reset) {
                self.reset.insert(flow.info.id, live.session);
            }
        }
    }

    fn flow_removed(&mut self, flow: &Flow) {
        let Some(session) = self.reset.remove(&flow.info.id) else {
            return;
        };
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            let after = direction.pick(&flow.half).stats.after_reset_bytes;
            if after == 0 {
                continue;
            }
            let finding = Finding {
                kind: FindingKind::DataAfterReset,
                session: session.id,
                ts: flow.last_ts,
                detail: format!(
                    "the {} sent {after} bytes after the connection was reset; they are \
                     not part of the dialogue shown",
                    direction.sender()
                ),
                evidence: Vec::new(),
            };
            self.sink.finding(&session, &finding);
        }
    }
}

/// Outputs are often borrowed for a run, so that the caller can look at them afterwards.
impl<S: SessionSink> SessionSink for &mut S {
    fn exchange(&mut self, session: &Session, exchange: &Exchange) {
        (**self).exchange(session, exchange)
    }
    fn message(&mut self, session: &Session, message: &Message) {
        (**self).message(session, message)
    }
    fn note(&mut self, session: &Session, note: &Note) {
        (**self).note(session, note)
    }
    fn decrypted(&mut self, session: &Session, direction: Direction, bytes: &[u8]) {
        (**self).decrypted(session, direction, bytes)
    }
    fn finding(&mut self, session: &Session, finding: &Finding) {
        (**self).finding(session, finding)
    }
    fn session_end(&mut self, session: &Session) {
        (**self).session_end(session)
    }
}
