//! `--json`: the NDJSON records of the output contract (../shared/DESIGN.md), one per line.
//! Fields may be added; the contract's fields are never renamed.
//!
//! Flushed as produced: the records are written out whenever the input pauses (the rest of a
//! pipe, the next live packet) and at the end, so none waits in a buffer while mailscope waits
//! for input. Not after each record: on a file, the write per record took 10% of the run.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{ecs, safe_json};
use crate::capture::Timestamp;
use crate::hex::Hex;
use crate::proto::{Exchange, Note, Reply};
use crate::session::model::{Finding, Message, Session};
use crate::session::SessionSink;
use crate::tcp::Direction;

/// Unix seconds with microseconds.
fn seconds(ts: Timestamp) -> f64 {
    ts.0.div_euclid(1000) as f64 / 1e6
}

#[derive(Serialize)]
struct SessionRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    protocol: &'static str,
    client: String,
    server: String,
    start: f64,
    end: f64,
    tls: TlsRecord<'a>,
    /// The first [`crate::session::model::MAX_KEPT_AUTH`] attempts; `auth_attempts` counts
    /// them all.
    auth: Vec<AuthRecord<'a>>,
    auth_attempts: u64,
    exchanges: u64,
    messages: u64,
    gaps: u64,
    state: &'static str,
    capabilities: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    mailbox: Vec<MailboxRecord<'a>>,
    notes: u64,
}

#[derive(Serialize)]
struct MailboxRecord<'a> {
    number: u64,
    size: Option<u64>,
    uid: Option<&'a str>,
}

#[derive(Serialize)]
struct TlsRecord<'a> {
    mode: &'static str,
    client_random: Option<Hex<'a>>,
    version: Option<&'a str>,
    cipher: Option<&'a str>,
    sni: Option<&'a str>,
    alpn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<&'a crate::tls::handshake::CertificateInfo>,
    resumed: bool,
    decrypted: bool,
    error: Option<&'a str>,
    records_decrypted: u64,
    records_undecrypted: u64,
}

#[derive(Serialize)]
struct AuthRecord<'a> {
    mechanism: &'a str,
    username: Option<&'a str>,
    password: Option<&'a str>,
    success: Option<bool>,
}

#[derive(Serialize)]
struct ExchangeRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    session: u64,
    ts: f64,
    command: Option<&'a str>,
    /// Its lines joined by newlines.
    reply: Option<&'a str>,
    reply_code: Option<&'a str>,
    enhanced_code: Option<&'a str>,
    latency_ms: Option<f64>,
    unknown_command: bool,
    /// IMAP: the selected mailbox after this exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox: Option<&'a crate::proto::MailboxState>,
}

#[derive(Serialize)]
struct MessageRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    session: u64,
    source: &'static str,
    size: u64,
    sha256: Hex<'a>,
    complete: bool,
    hole_bytes: u64,
    truncated: bool,
    partial: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uidvalidity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    flags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    section: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part_of: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    parts: &'a [u64],
    #[serde(skip_serializing_if = "Option::is_none")]
    mail_from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rcpt_to: Option<&'a [String]>,
    subject: Option<&'a str>,
    message_id: Option<&'a str>,
    from: Option<&'a str>,
    to: &'a [String],
    date: Option<&'a str>,
    attachments: Vec<AttachmentRecord<'a>>,
    received: &'a [crate::mime::Hop],
    /// Earlier sightings of the same Message-ID: the message's journey so far.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    seen_before: Vec<SightingRecord<'a>>,
    /// Earlier sightings in all (`seen_before` lists the first few).
    #[serde(skip_serializing_if = "is_zero")]
    seen_count: u64,
    /// For a bounce: the message it reports on, when seen earlier in the capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    reports_on: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct SightingRecord<'a> {
    message: u64,
    session: u64,
    source: &'static str,
    sha256: Hex<'a>,
    body_hash: Hex<'a>,
}

#[derive(Serialize)]
struct AttachmentRecord<'a> {
    filename: Option<&'a str>,
    content_type: &'a str,
    size: usize,
    sha256: Hex<'a>,
}

#[derive(Serialize)]
pub struct FindingRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    session: u64,
    severity: &'static str,
    #[serde(rename = "kind")]
    finding: &'static str,
    detail: &'a str,
    why: &'static str,
    evidence: &'a [String],
    ts: f64,
}

impl FindingRecord<'_> {
    pub fn of(finding: &Finding) -> FindingRecord<'_> {
        FindingRecord {
            kind: "finding",
            session: finding.session,
            severity: finding.severity().name(),
            finding: finding.kind.name(),
            detail: &finding.detail,
            why: finding.kind.why(),
            evidence: &finding.evidence,
            ts: seconds(finding.ts),
        }
    }
}

/// What a dissector noted in passing (the findings weigh these; the notes place them).
#[derive(Serialize)]
struct NoteRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    session: u64,
    direction: Option<&'static str>,
    text: &'a str,
    ts: f64,
}

pub struct JsonWriter<W: Write> {
    out: W,
    pub error: Option<io::Error>,
    /// `--ecs`: Elastic Common Schema fields beside the records' own.
    pub ecs: bool,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(out: W) -> JsonWriter<W> {
        JsonWriter {
            out,
            error: None,
            ecs: false,
        }
    }

    fn write(&mut self, record: &impl Serialize) {
        self.write_with(record, Map::new);
    }

    /// Writes a record, with the ECS fields `ecs` makes when `--ecs` asked for them.
    fn write_with(&mut self, record: &impl Serialize, ecs: impl FnOnce() -> Map<String, Value>) {
        if self.error.is_some() {
            return;
        }
        let result = if self.ecs {
            serde_json::to_value(record).and_then(|mut value| {
                if let Value::Object(fields) = &mut value {
                    merge(fields, ecs());
                }
                safe_json::to_writer(&mut self.out, &value)
            })
        } else {
            safe_json::to_writer(&mut self.out, record)
        };
        let result = result
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        self.error = result.err();
    }
}

/// Adds the ECS fields; an object both have (`tls`) gets the keys it lacks.
fn merge(fields: &mut Map<String, Value>, ecs: Map<String, Value>) {
    for (key, value) in ecs {
        match (fields.get_mut(&key), value) {
            (Some(Value::Object(own)), Value::Object(more)) => {
                for (k, v) in more {
                    own.entry(k).or_insert(v);
                }
            }
            (Some(_), _) => {}
            (None, value) => {
                fields.insert(key, value);
            }
        }
    }
}

impl<W: Write> SessionSink for JsonWriter<W> {
    fn flush(&mut self) {
        if self.error.is_none() {
            self.error = self.out.flush().err();
        }
    }

    fn exchange(&mut self, session: &Session, exchange: &Exchange) {
        let command = exchange.command.as_ref();
        let reply = exchange.reply.as_ref();
        let ts = command
            .map(|c| c.ts)
            .or(reply.map(|r| r.ts))
            .unwrap_or_default();
        let latency_ms = match (command, reply) {
            (Some(c), Some(r)) => Some(r.ts.since(c.ts) as f64 / 1e6),
            _ => None,
        };
        self.write_with(
            &ExchangeRecord {
                kind: "exchange",
                session: session.id,
                ts: seconds(ts),
                command: command.map(|c| c.line.as_str()),
                reply: reply.map(Reply::text),
                reply_code: reply.map(Reply::code),
                enhanced_code: reply.and_then(Reply::enhanced),
                latency_ms,
                unknown_command: exchange.unknown_command,
                mailbox: session.selected.as_ref(),
            },
            || ecs::exchange(session, exchange, ts),
        );
    }

    fn message(&mut self, session: &Session, message: &Message) {
        let (c, v) = (&message.captured, &message.view);
        let smtp = message.captured.source == "smtp";
        self.write_with(
            &MessageRecord {
                kind: "message",
                id: message.id,
                session: session.id,
                source: message.captured.source,
                size: c.size,
                sha256: Hex(&c.sha256),
                complete: c.complete,
                hole_bytes: c.hole_bytes,
                truncated: c.truncated,
                partial: c.partial,
                mailbox: c.mailbox.as_deref(),
                uidvalidity: c.uidvalidity,
                uid: c.uid,
                flags: &c.flags,
                section: c.section.as_deref(),
                part_of: message.part_of,
                parts: &message.parts,
                mail_from: if smtp {
                    Some(c.mail_from.as_deref().unwrap_or(""))
                } else {
                    None
                },
                rcpt_to: smtp.then_some(c.rcpt_to.as_slice()),
                subject: v.subject.as_deref(),
                message_id: v.message_id.as_deref(),
                from: v.from.first().map(String::as_str),
                to: &v.to,
                date: v.date.as_deref(),
                attachments: v
                    .attachments
                    .iter()
                    .map(|a| AttachmentRecord {
                        filename: a.filename.as_deref(),
                        content_type: &a.content_type,
                        size: a.size,
                        sha256: Hex(&a.sha256),
                    })
                    .collect(),
                received: &v.hops,
                seen_before: message
                    .seen_before
                    .iter()
                    .map(|s| SightingRecord {
                        message: s.message,
                        session: s.session,
                        source: s.source,
                        sha256: Hex(&s.sha256),
                        body_hash: Hex(&s.body_hash),
                    })
                    .collect(),
                seen_count: message.seen_count,
                reports_on: message.reports_on,
            },
            || ecs::message(session, message),
        );
    }

    fn note(&mut self, session: &Session, note: &Note) {
        self.write(&NoteRecord {
            kind: "note",
            session: session.id,
            direction: note.direction.map(Direction::sender),
            text: &note.text,
            ts: seconds(note.ts),
        });
    }

    fn finding(&mut self, session: &Session, finding: &Finding) {
        self.write_with(&FindingRecord::of(finding), || {
            ecs::finding(session, finding)
        });
    }

    fn session_end(&mut self, session: &Session) {
        let tls = session.tls.info();
        self.write_with(
            &SessionRecord {
                kind: "session",
                id: session.id,
                protocol: session.protocol.name(),
                client: session.client.to_string(),
                server: session.server.to_string(),
                start: seconds(session.start),
                end: seconds(session.end),
                tls: TlsRecord {
                    mode: session.tls.mode.name(),
                    client_random: tls.client_random.as_ref().map(|r| Hex(r)),
                    version: tls.version.as_deref(),
                    cipher: tls.cipher.as_deref(),
                    sni: tls.sni.as_deref(),
                    alpn: tls.alpn.as_deref(),
                    certificate: tls.certificate.as_ref(),
                    resumed: tls.resumed,
                    decrypted: session.tls.decrypted(),
                    error: session.tls.error(),
                    records_decrypted: tls.records_decrypted,
                    records_undecrypted: tls.records_undecrypted,
                },
                auth: session
                    .auth
                    .iter()
                    .map(|a| AuthRecord {
                        mechanism: &a.mechanism,
                        username: a.username.as_deref(),
                        password: a.secret.as_ref().map(|s| s.expose()),
                        success: a.success,
                    })
                    .collect(),
                auth_attempts: session.auth_attempts,
                exchanges: session.exchanges,
                messages: session.messages,
                gaps: session.gaps,
                state: session.ended.map_or("open", |e| e.name()),
                capabilities: &session.capabilities,
                mailbox: session
                    .mailbox
                    .iter()
                    .map(|e| MailboxRecord {
                        number: e.number,
                        size: e.size,
                        uid: e.uid.as_deref(),
                    })
                    .collect(),
                notes: session.notes,
            },
            || ecs::session(session),
        );
    }
}
