//! Sessions: the fifth stage. Per connection, the session layer picks a dissector (by the
//! server's port, checked against the first bytes: a TLS handshake where cleartext was expected
//! means implicit TLS), feeds it the two byte streams, and turns what it reports into the
//! [`model`] users see, handing each finished piece to a [`SessionSink`] as soon as it is
//! complete (so that a live capture can be followed).

pub mod model;

use std::collections::HashMap;

use crate::capture::Timestamp;
use crate::mime;
use crate::ports::Service;
use crate::proto::{
    CapturedMessage, Dissector, Exchange, ImapDissector, Note, Pop3Dissector, ProtoEvent,
    SmtpDissector,
};
use crate::tcp::{Direction, Flow, FlowInfo, StreamEvent, StreamSink};
use model::{Message, Protocol, Session, TlsMode, TlsStatus};

/// The outputs: told about each piece as it is complete.
pub trait SessionSink {
    fn exchange(&mut self, session: &Session, exchange: &Exchange);
    fn message(&mut self, session: &Session, message: &Message);
    fn note(&mut self, _session: &Session, _note: &Note) {}
    /// The connection ended; the session is final.
    fn session_end(&mut self, session: &Session);
}

struct Live {
    session: Session,
    dissector: Option<Box<dyn Dissector + Send>>,
    /// Whether the first client bytes were looked at yet.
    sniffed: bool,
    /// The capture-wide ids of the session's messages, in order (parts link to them).
    message_ids: Vec<u64>,
}

/// Mailbox listing entries kept per session (a hostile server can list endlessly).
const MAX_MAILBOX_ENTRIES: usize = 100_000;
/// Message ids remembered per session for linking parts to their message.
const MAX_LINKED_MESSAGES: usize = 1_000_000;

/// Why TLS is not readable until the TLS stage lands.
const NOT_DECRYPTED: &str = "TLS decryption is not available yet";

pub struct SessionTable<S: SessionSink> {
    live: HashMap<u64, Live>,
    pub sink: S,
    events: Vec<ProtoEvent>,
    /// The id the next message gets.
    next_message: u64,
}

impl<S: SessionSink> SessionTable<S> {
    pub fn new(sink: S) -> SessionTable<S> {
        SessionTable {
            live: HashMap::new(),
            sink,
            events: Vec::new(),
            next_message: 1,
        }
    }

    fn deliver(&mut self, id: u64) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        for event in self.events.drain(..) {
            if let ProtoEvent::Message(captured) = event {
                let message = link(live, captured, self.next_message);
                self.next_message += 1;
                live.session.messages += 1;
                self.sink.message(&live.session, &message);
            } else {
                apply(&mut live.session, event, &mut self.sink);
            }
        }
    }
}

/// A captured message given its id, its view, and the ids of the messages it is linked to.
fn link(live: &mut Live, captured: CapturedMessage, id: u64) -> Message {
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
    Message {
        id,
        session: live.session.id,
        captured,
        view,
        part_of,
        parts,
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
        ProtoEvent::Message(_) => {}
        ProtoEvent::Upgrade(upgrade) => {
            session.tls = TlsStatus {
                mode: TlsMode::StartTls,
                decrypted: false,
                error: Some(NOT_DECRYPTED.into()),
                upgrade: Some(upgrade),
            };
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
    match service {
        Some(Service::Smtp) => (Some(Box::new(SmtpDissector::default())), TlsMode::None),
        Some(Service::Pop3) => (Some(Box::new(Pop3Dissector::default())), TlsMode::None),
        Some(Service::Imap) => (Some(Box::new(ImapDissector::default())), TlsMode::None),
        Some(Service::Smtps | Service::Pop3s | Service::Imaps) => (None, TlsMode::Implicit),
        _ => (None, TlsMode::None),
    }
}

/// The start of a TLS record carrying a handshake (content type 22, version 3.x).
fn looks_like_tls(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == 0x16 && bytes[1] == 0x03 && bytes[2] <= 0x04
}

impl<S: SessionSink> StreamSink for SessionTable<S> {
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
                decrypted: false,
                error: (mode == TlsMode::Implicit).then(|| NOT_DECRYPTED.to_string()),
                upgrade: None,
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
        };
        self.live.insert(
            flow.id,
            Live {
                session,
                dissector,
                sniffed: false,
                message_ids: Vec::new(),
            },
        );
    }

    fn stream_event(&mut self, flow: &FlowInfo, direction: Direction, event: StreamEvent<'_>) {
        let Some(live) = self.live.get_mut(&flow.id) else {
            return;
        };
        match event {
            StreamEvent::Data { bytes, ts, .. } => {
                if direction == Direction::ClientToServer && !live.sniffed {
                    live.sniffed = true;
                    if live.dissector.is_some() && looks_like_tls(bytes) {
                        live.dissector = None;
                        live.session.tls = TlsStatus {
                            mode: TlsMode::Implicit,
                            decrypted: false,
                            error: Some(NOT_DECRYPTED.into()),
                            upgrade: None,
                        };
                        self.events.push(ProtoEvent::Note(Note {
                            direction: Some(direction),
                            ts,
                            text: "the client starts with a TLS handshake: implicit TLS on a cleartext port".into(),
                        }));
                    }
                }
                if let Some(d) = live.dissector.as_mut() {
                    d.data(direction, bytes, ts, &mut self.events);
                }
            }
            StreamEvent::Gap { len, ts } => {
                live.session.gaps += 1;
                if let Some(d) = live.dissector.as_mut() {
                    d.gap(direction, len, ts, &mut self.events);
                }
            }
            StreamEvent::Fin { .. } | StreamEvent::Rst { .. } => {}
        }
        self.deliver(flow.id);
    }

    fn flow_ended(&mut self, flow: &Flow) {
        if let Some(live) = self.live.get_mut(&flow.info.id) {
            if let Some(d) = live.dissector.as_mut() {
                d.end(flow.last_ts, &mut self.events);
            }
        }
        self.deliver(flow.info.id);
        if let Some(mut live) = self.live.remove(&flow.info.id) {
            live.session.start = flow.first_ts;
            live.session.end = flow.last_ts;
            live.session.ended = flow.end;
            self.sink.session_end(&live.session);
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
    fn session_end(&mut self, session: &Session) {
        (**self).session_end(session)
    }
}
