//! What the UI knows: the sessions and their dialogues as the reader has sent them. Append-only;
//! a session's row is replaced as it grows.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use mailscope::capture::Timestamp;
use mailscope::proto::{AuthAttempt, Exchange, Note};
use mailscope::session::model::{
    Finding, Message, Protocol, Session, Severity, TlsStatus, MAX_KEPT_AUTH,
};
use mailscope::tcp::FlowEnd;

use super::spool::{Spool, Spooled};

/// A session's summary line: small, so that it can be sent each time the session changes.
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub id: u64,
    pub protocol: Protocol,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub start: Timestamp,
    pub end: Timestamp,
    pub tls: TlsStatus,
    /// The user of the first successful authentication, else of the first attempt.
    pub user: Option<String>,
    pub auth_attempts: u64,
    pub exchanges: u64,
    pub messages: u64,
    pub gaps: u64,
    pub ended: Option<FlowEnd>,
}

impl SessionRow {
    pub fn of(s: &Session) -> SessionRow {
        SessionRow {
            id: s.id,
            protocol: s.protocol,
            client: s.client,
            server: s.server,
            start: s.start,
            end: s.end,
            tls: s.tls.clone(),
            user: s.user().map(str::to_string),
            auth_attempts: s.auth_attempts,
            exchanges: s.exchanges,
            messages: s.messages,
            gaps: s.gaps,
            ended: s.ended,
        }
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

pub enum Update {
    Row(Box<SessionRow>),
    Exchange(u64, Exchange),
    Auth(u64, Box<AuthAttempt>),
    Message(u64, Box<Message>),
    Note(u64, Note),
    Finding(u64, Box<Finding>),
    Progress {
        frames: u64,
        bytes: u64,
        total: Option<u64>,
    },
    Done {
        frames: u64,
        faults: Vec<String>,
    },
}

/// One piece of a dialogue, in the order the reader finished it.
#[derive(Clone, Debug)]
pub enum Item {
    Exchange(Exchange),
    Message(Box<Message>),
    Note(Note),
    Finding(Box<Finding>),
}

pub struct Entry {
    pub row: SessionRow,
    /// The first [`MAX_KEPT_AUTH`] authentication attempts, as they came.
    pub auth: Vec<AuthAttempt>,
    pub items: Vec<Item>,
    /// The first time anything of the session was seen (its row's start is known at its end).
    pub first_seen: Timestamp,
    pub attachments: usize,
    pub findings: usize,
    /// The most severe of its findings.
    pub worst: Option<Severity>,
}

/// Where a finding sits in the store: its entry and its place among the entry's items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub entry: usize,
    pub item: usize,
}

/// Every finding, the most severe first, in the order found within a severity. Kept as
/// findings arrive, so that the findings screen never sorts (a live capture changes the store
/// many times a second).
#[derive(Default)]
pub struct FindingIndex {
    /// Alerts, warnings, infos.
    by_severity: [Vec<Listed>; 3],
}

impl FindingIndex {
    fn add(&mut self, severity: Severity, listed: Listed) {
        let [alerts, warnings, infos] = &mut self.by_severity;
        let list = match severity {
            Severity::Alert => alerts,
            Severity::Warning => warnings,
            Severity::Info => infos,
        };
        list.push(listed);
    }

    pub fn len(&self) -> usize {
        self.by_severity.iter().map(Vec::len).sum()
    }

    /// The `n`th line of the findings screen.
    pub fn get(&self, mut n: usize) -> Option<Listed> {
        for list in &self.by_severity {
            match list.get(n) {
                Some(listed) => return Some(*listed),
                None => n -= list.len(),
            }
        }
        None
    }
}

/// Message bodies kept in memory at most; past this, new ones go to the spool.
const HELD_BODY_BYTES: usize = 512 << 20;

#[derive(Default)]
pub struct Store {
    pub entries: Vec<Entry>,
    /// Per entry, what plain filter words are matched against, lowercased once: addresses,
    /// protocol, user. Apart from the entries so that filtering reads only these.
    pub search: Vec<String>,
    index: HashMap<u64, usize>,
    pub frames: u64,
    pub bytes: u64,
    pub total: Option<u64>,
    pub done: bool,
    pub faults: Vec<String>,
    /// Bumped on every change, so that views know when to recompute.
    pub generation: u64,
    pub findings: FindingIndex,
    /// Message body bytes held in memory.
    held: usize,
    /// Instead of HELD_BODY_BYTES (tests).
    pub(crate) hold_limit: Option<usize>,
    spool: Option<Spool>,
    /// Why the spool could not be made, if it could not: bodies then stay in memory.
    pub spool_error: Option<String>,
    /// Bodies in the spool, by message id.
    spooled: HashMap<u64, Spooled>,
}

impl Store {
    /// Keeps a message small: its decoded attachments are dropped (saving decodes them again
    /// from the body), and past the threshold its body goes to the spool. If the spool cannot
    /// be written, the body stays in memory.
    fn compact(&mut self, message: &mut Message) {
        for attachment in &mut message.view.attachments {
            attachment.bytes = Vec::new();
        }
        let len = message.captured.bytes.len();
        if self.held + len > self.hold_limit.unwrap_or(HELD_BODY_BYTES) {
            if self.spool.is_none() && self.spool_error.is_none() {
                match Spool::create() {
                    Ok(spool) => self.spool = Some(spool),
                    Err(e) => self.spool_error = Some(e.to_string()),
                }
            }
            let spooled = self.spool.as_mut().map(|s| s.put(&message.captured.bytes));
            if let Some(Ok(spooled)) = spooled {
                message.captured.bytes = Vec::new();
                self.spooled.insert(message.id, spooled);
                return;
            }
        }
        self.held += len;
    }

    /// A message's exact bytes, from memory or from the spool.
    pub fn body(&self, message: &Message) -> io::Result<Vec<u8>> {
        match (self.spooled.get(&message.id), &self.spool) {
            (Some(&spooled), Some(spool)) => spool.get(spooled),
            _ => Ok(message.captured.bytes.clone()),
        }
    }

    /// Message body bytes in memory, and in the spool on disk.
    pub fn body_bytes(&self) -> (usize, u64) {
        (self.held, self.spool.as_ref().map_or(0, Spool::len))
    }

    pub fn apply(&mut self, update: Update) {
        // Progress changes no session: the session list need not be filtered again for it.
        if !matches!(update, Update::Progress { .. }) {
            self.generation += 1;
        }
        match update {
            Update::Row(row) => match self.index.get(&row.id) {
                Some(&i) => {
                    if let Some(search) = self.search.get_mut(i) {
                        *search = search_text(&row);
                    }
                    if let Some(entry) = self.entries.get_mut(i) {
                        entry.row = *row;
                    }
                }
                None => {
                    self.index.insert(row.id, self.entries.len());
                    let first_seen = row.start;
                    self.search.push(search_text(&row));
                    self.entries.push(Entry {
                        row: *row,
                        auth: Vec::new(),
                        items: Vec::new(),
                        first_seen,
                        attachments: 0,
                        findings: 0,
                        worst: None,
                    });
                }
            },
            Update::Exchange(id, exchange) => self.push(id, Item::Exchange(exchange)),
            Update::Auth(id, attempt) => {
                if let Some((_, entry)) = self.entry_mut(id) {
                    if entry.auth.len() < MAX_KEPT_AUTH {
                        entry.auth.push(*attempt);
                    }
                }
            }
            Update::Message(id, mut message) => {
                self.compact(&mut message);
                if let Some((_, entry)) = self.entry_mut(id) {
                    entry.attachments += message.view.attachments.len();
                }
                self.push(id, Item::Message(message))
            }
            Update::Note(id, note) => self.push(id, Item::Note(note)),
            Update::Finding(id, finding) => {
                if let Some((i, entry)) = self.entry_mut(id) {
                    entry.findings += 1;
                    entry.worst = entry.worst.max(Some(finding.severity()));
                    let item = entry.items.len();
                    self.findings
                        .add(finding.severity(), Listed { entry: i, item });
                }
                self.push(id, Item::Finding(finding))
            }
            Update::Progress {
                frames,
                bytes,
                total,
            } => {
                self.frames = frames;
                self.bytes = bytes;
                self.total = total;
            }
            Update::Done { frames, faults } => {
                self.frames = frames;
                self.faults = faults;
                self.done = true;
            }
        }
    }

    fn push(&mut self, id: u64, item: Item) {
        if let Some((_, entry)) = self.entry_mut(id) {
            if entry.first_seen == Timestamp::default() {
                entry.first_seen = item_ts(&item);
            }
            entry.items.push(item);
        }
    }

    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.index.get(&id).and_then(|&i| self.entries.get(i))
    }

    /// The entry of session `id`, with its place in `entries`.
    fn entry_mut(&mut self, id: u64) -> Option<(usize, &mut Entry)> {
        let i = *self.index.get(&id)?;
        Some((i, self.entries.get_mut(i)?))
    }
}

fn search_text(row: &SessionRow) -> String {
    format!(
        "{} {} {} {}",
        row.client,
        row.server,
        row.protocol.name(),
        row.user().unwrap_or("")
    )
    .to_lowercase()
}

pub fn item_ts(item: &Item) -> Timestamp {
    match item {
        Item::Exchange(e) => e
            .command
            .as_ref()
            .map(|c| c.ts)
            .or(e.reply.as_ref().map(|r| r.ts))
            .unwrap_or_default(),
        Item::Message(m) => m.captured.ts,
        Item::Note(n) => n.ts,
        Item::Finding(f) => f.ts,
    }
}
