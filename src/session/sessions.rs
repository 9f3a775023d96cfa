//! Sessions: the model side of the session layer. It turns what [`super::Connections`]
//! report into the [`Session`]s users see, numbers messages across the capture and links each
//! to its parts and earlier sightings, and hands each finished piece to a [`SessionSink`] as
//! soon as it is complete (so that a live capture can be followed).
//!
//! Everything that spans connections lives here, so that a parallel run can keep it in one
//! place and feed it the workers' events in capture order.

use std::collections::HashMap;

use crate::capture::Timestamp;
use crate::proto::room::Held;
use crate::proto::{MailboxEntry, Note, NoteKind, ProtoEvent};
use crate::tcp::{Direction, FlowEnd};

use super::connections::{Events, PreparedMessage, SessionEvent};
use super::journeys::Journeys;
use super::model::{
    Finding, FindingKind, Message, Protocol, Session, Sighting, TlsMode, TlsStatus, MAX_KEPT_AUTH,
};
use super::SessionSink;

/// Mailbox listing entries kept per session (a hostile server can list endlessly).
const MAX_MAILBOX_ENTRIES: usize = 100_000;
/// Message ids remembered per session for linking parts to their message.
const MAX_LINKED_MESSAGES: usize = 1_000_000;

struct Open {
    session: Session,
    /// IMAP: the capture-wide ids of the session's messages, in order (parts link to them).
    message_ids: Vec<u64>,
}

pub struct Sessions<S: SessionSink> {
    /// Boxed so that the table itself stays small when a flood fills it.
    open: HashMap<u64, Box<Open>, ahash::RandomState>,
    /// Sessions ended by a reset, kept while their flow lingers (30 s of capture time): data
    /// after the reset is judged when the flow leaves. Boxed as they were while open: a busy
    /// capture holds tens of thousands, and a table of whole sessions made the run slower.
    reset: HashMap<u64, Box<Open>, ahash::RandomState>,
    pub sink: S,
    /// The id the next message gets.
    next_message: u64,
    /// Messages by Message-ID, to link each to its earlier sightings.
    journeys: Journeys,
}

impl<S: SessionSink> Sessions<S> {
    pub fn new(sink: S) -> Sessions<S> {
        Sessions {
            open: HashMap::default(),
            reset: HashMap::default(),
            sink,
            next_message: 1,
            journeys: Journeys::default(),
        }
    }

    /// Data after a reset, judged when the reset flow leaves the table.
    fn removed(&mut self, flow: u64, last_ts: Timestamp, after_reset: [u64; 2]) {
        let Some(open) = self.reset.remove(&flow) else {
            return;
        };
        let session = &open.session;
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            let after = *direction.pick(&after_reset);
            if after == 0 {
                continue;
            }
            let finding = Finding {
                kind: FindingKind::DataAfterReset,
                session: session.id,
                ts: last_ts,
                detail: format!(
                    "the {} sent {after} bytes after the connection was reset; they are \
                     not part of the dialogue shown",
                    direction.sender()
                ),
                evidence: Vec::new(),
            };
            self.sink.finding(session, &finding);
        }
    }
}

impl<S: SessionSink> Events for Sessions<S> {
    fn event(&mut self, flow: u64, event: SessionEvent) {
        let event = match event {
            SessionEvent::Opened { info, mode } => {
                let session = Session {
                    id: info.id,
                    protocol: Protocol::of(info.service),
                    client: info.client,
                    server: info.server,
                    start: Timestamp::default(),
                    end: Timestamp::default(),
                    tls: TlsStatus::new(mode),
                    auth: Vec::new(),
                    auth_attempts: 0,
                    capabilities: Vec::new(),
                    mailbox: Vec::new(),
                    selected: None,
                    exchanges: 0,
                    messages: 0,
                    gaps: 0,
                    notes: 0,
                    ended: None,
                    streams: Default::default(),
                };
                let message_ids = Vec::new();
                let open = Open {
                    session,
                    message_ids,
                };
                self.open.insert(flow, Box::new(open));
                return;
            }
            SessionEvent::Ended {
                start,
                end,
                how,
                streams,
            } => {
                if let Some(mut open) = self.open.remove(&flow) {
                    let session = &mut open.session;
                    session.start = start;
                    session.end = end;
                    session.ended = how;
                    session.streams = streams;
                    self.sink.session_end(session);
                    if how == Some(FlowEnd::Reset) {
                        // Only the session is judged later.
                        open.message_ids = Vec::new();
                        self.reset.insert(flow, open);
                    }
                }
                return;
            }
            SessionEvent::Removed {
                last_ts,
                after_reset,
            } => return self.removed(flow, last_ts, after_reset),
            other => other,
        };
        let Some(open) = self.open.get_mut(&flow) else {
            return;
        };
        match event {
            SessionEvent::TlsMode(mode) => open.session.tls.mode = mode,
            SessionEvent::TlsInfo(info) => open.session.tls.set_info(info),
            SessionEvent::Gap => open.session.gaps += 1,
            SessionEvent::Proto(event) => apply(&mut open.session, event, &mut self.sink),
            SessionEvent::Message(prepared) => {
                // Counted in the room of messages until the outputs have had it.
                let (message, _held) = link(open, *prepared, self.next_message, &mut self.journeys);
                self.next_message += 1;
                open.session.messages += 1;
                self.sink.message(&open.session, &message);
            }
            SessionEvent::Opened { .. }
            | SessionEvent::Ended { .. }
            | SessionEvent::Removed { .. } => {}
        }
    }

    fn decrypted(&mut self, flow: u64, direction: Direction, bytes: &[u8]) {
        if let Some(open) = self.open.get(&flow) {
            self.sink.decrypted(&open.session, direction, bytes);
        }
    }

    fn pause(&mut self) {
        self.sink.flush();
    }
}

/// A message given its id and the messages it is linked to: its parts or whole in this
/// session, its earlier sightings, and for a bounce the message it reports on; with the ticket
/// that counts it in the room of messages.
fn link(
    open: &mut Open,
    prepared: PreparedMessage,
    id: u64,
    journeys: &mut Journeys,
) -> (Message, Held) {
    let PreparedMessage {
        captured,
        view,
        body_hash,
        held,
    } = prepared;
    let ids = &open.message_ids;
    let part_of = captured.part_of.and_then(|n| ids.get(n).copied());
    let parts = captured
        .parts
        .iter()
        .filter_map(|&n| ids.get(n).copied())
        .collect();
    // Only IMAP names parts (by the session's message numbers): other sessions keep no list,
    // which a flood of tiny messages would grow to megabytes.
    if open.session.protocol == Protocol::Imap && open.message_ids.len() < MAX_LINKED_MESSAGES {
        open.message_ids.push(id);
    }
    let (seen_before, seen_count) = match (&view.message_id, body_hash) {
        (Some(message_id), Some(body_hash)) => journeys.sight(
            message_id,
            Sighting {
                message: id,
                session: open.session.id,
                source: captured.source,
                sha256: captured.sha256,
                body_hash,
                whole: captured.complete && !captured.partial && !captured.truncated,
            },
        ),
        _ => (Vec::new(), 0),
    };
    let reports_on = view
        .report
        .as_ref()
        .and_then(|r| r.original_message_id.as_deref())
        .and_then(|original| journeys.first(original));
    let message = Message {
        id,
        session: open.session.id,
        body_hash,
        captured,
        view,
        part_of,
        parts,
        seen_before,
        seen_count,
        reports_on,
    };
    (message, held)
}

/// Updates the session with one dissector event (other than a message) and passes it on.
fn apply(session: &mut Session, event: ProtoEvent, sink: &mut impl SessionSink) {
    match event {
        ProtoEvent::Exchange(exchange) => {
            session.exchanges += 1;
            sink.exchange(session, &exchange);
        }
        ProtoEvent::Auth(attempt) => {
            // Counted and kept before the sink sees it, so that the session it gets is current.
            session.auth_attempts += 1;
            if session.auth.len() < MAX_KEPT_AUTH {
                session.auth.push(attempt);
                if let Some(kept) = session.auth.last() {
                    sink.auth(session, kept);
                }
                return;
            }
            sink.auth(session, &attempt);
            if session.auth_attempts == MAX_KEPT_AUTH as u64 + 1 {
                let text = format!(
                    "more than {MAX_KEPT_AUTH} authentication attempts: the session keeps the \
                     first {MAX_KEPT_AUTH} and counts the rest (export's credentials.csv has \
                     every one)"
                );
                let note = Note {
                    kind: NoteKind::Limit,
                    direction: Some(Direction::ClientToServer),
                    ts: attempt.ts,
                    text,
                };
                apply(session, ProtoEvent::Note(note), sink);
            }
        }
        // Numbered and linked by `link`, which knows the session's earlier messages.
        ProtoEvent::Message(_) => {}
        ProtoEvent::Upgrade(upgrade) => {
            session.tls.mode = TlsMode::StartTls;
            session.tls.upgrade = Some(upgrade);
        }
        ProtoEvent::Capabilities(capabilities) => session.capabilities = capabilities,
        ProtoEvent::Selected(state) => session.selected = state,
        ProtoEvent::Mailbox(entries) => merge_listing(&mut session.mailbox, entries),
        ProtoEvent::Note(note) => {
            sink.note(session, &note);
            session.notes += 1;
        }
    }
}

/// LIST gives sizes and UIDL unique ids: a listing is merged into the mailbox by message number.
/// The entries are looked up by number through an index made for the merge: searching the list
/// took a step per known entry for each entry listed: billions for a listing of 100,000.
fn merge_listing(mailbox: &mut Vec<MailboxEntry>, entries: Vec<MailboxEntry>) {
    let mut at: HashMap<u64, usize, ahash::RandomState> = mailbox
        .iter()
        .enumerate()
        .map(|(i, e)| (e.number, i))
        .collect();
    for entry in entries {
        if let Some(known) = at.get(&entry.number).and_then(|&i| mailbox.get_mut(i)) {
            known.size = entry.size.or(known.size);
            known.uid = entry.uid.or(known.uid.take());
        } else if mailbox.len() < MAX_MAILBOX_ENTRIES {
            at.insert(entry.number, mailbox.len());
            mailbox.push(entry);
        }
    }
}
