//! `--text` and the transcripts of `export`: each session as an annotated telnet session, a
//! header line then `C:`/`S:` lines with times, messages summarised (or in full with `--full`),
//! notes marked `!!`. A session is written when it ends, so that its lines stay together.

use std::collections::HashMap;
use std::io::{self, Write};

use super::time;
use crate::proto::{CapturedMessage, Exchange, MailboxState, Note};
use crate::sanitize;
use crate::session::model::{Finding, Message, Session, TlsStatus};
use crate::session::SessionSink;

/// Lines kept per session before the rest is summarised (a hostile session can be endless).
pub const MAX_TRANSCRIPT_LINES: usize = 200_000;
/// Bytes of lines held for all open sessions together: a session is written when it ends,
/// and a capture of many long sessions open at once would otherwise be held whole.
pub const MAX_HELD_BYTES: usize = 32 << 20;

/// The header line of a session.
pub fn header(session: &Session) -> String {
    let tls = tls_summary(&session.tls);
    format!(
        "=== session {}: {} -> {} {}, {tls}, user {}, {} UTC, {}, {}",
        session.id,
        session.client,
        session.server,
        session.protocol.name(),
        session
            .user()
            .map(|u| sanitize::line(u.as_bytes()))
            .unwrap_or_else(|| "-".into()),
        time::utc(session.start),
        time::duration(session.end.since(session.start)),
        session.ended.map_or("open", |e| e.name()),
    )
}

/// TLS in a few words: `TLS starttls, TLS1.3 TLS_AES_256_GCM_SHA384, SNI mx.example, decrypted`.
pub fn tls_summary(tls: &TlsStatus) -> String {
    if tls.mode == crate::session::model::TlsMode::None {
        return "no TLS".into();
    }
    let mut parts = vec![format!("TLS {}", tls.mode.name())];
    let info = tls.info();
    if let (Some(version), Some(cipher)) = (&info.version, &info.cipher) {
        parts.push(format!("{version} {cipher}"));
    }
    if let Some(sni) = &info.sni {
        parts.push(format!("SNI {}", sanitize::line(sni.as_bytes())));
    }
    if info.resumed {
        parts.push("resumed".into());
    }
    parts.push(match tls.error() {
        None if tls.decrypted() => "decrypted".into(),
        None => "not decrypted".into(),
        Some(error) if info.records_decrypted > 0 => format!("decrypted in part: {error}"),
        Some(error) => format!("not decrypted: {error}"),
    });
    parts.join(", ")
}

/// The lines of one exchange.
pub fn exchange_lines(exchange: &Exchange) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(command) = &exchange.command {
        let flag = if exchange.unknown_command {
            "   (unknown command)"
        } else {
            ""
        };
        lines.push(format!(
            "{} C: {}{flag}",
            clock(command.ts),
            sanitize::line(command.line.as_bytes())
        ));
    }
    if let Some(reply) = &exchange.reply {
        let latency = exchange
            .command
            .as_ref()
            .map(|c| format!("   ({:.2} ms)", reply.ts.since(c.ts) as f64 / 1e6))
            .unwrap_or_default();
        let last = reply.line_count().saturating_sub(1);
        for (i, line) in reply.lines().enumerate() {
            let suffix = if i == last { latency.as_str() } else { "" };
            lines.push(format!(
                "{} S: {}{suffix}",
                clock(reply.ts),
                sanitize::line(line.as_bytes())
            ));
        }
    } else if exchange.command.is_some() {
        lines.push("                S: (no reply captured)".to_string());
    }
    lines
}

/// Where an IMAP message is stored, as the dialogue says: ` in INBOX UID 7 (\Seen)`.
fn stored_as(c: &CapturedMessage) -> String {
    let Some(mailbox) = &c.mailbox else {
        return String::new();
    };
    let mut place = format!(" in {}", sanitize::line(mailbox.as_bytes()));
    if let Some(uid) = c.uid {
        place.push_str(&format!(" UID {uid}"));
    }
    if !c.flags.is_empty() {
        place.push_str(&format!(
            " ({})",
            sanitize::line(c.flags.join(" ").as_bytes())
        ));
    }
    place
}

/// A message as one summary line, or its full text.
/// A finding on one line: `⚑ alert cleartext-credentials: PLAIN as alice: ...`.
pub fn finding_line(finding: &Finding) -> String {
    format!(
        "⚑ {} {}: {}",
        finding.severity().name(),
        finding.kind.name(),
        sanitize::line(finding.detail.as_bytes())
    )
}

pub fn message_lines(message: &Message, full: bool) -> Vec<String> {
    let c = &message.captured;
    let v = &message.view;
    let mut state = Vec::new();
    if c.partial {
        state.push(match &c.section {
            Some(section) => format!("part {}", sanitize::line(section.as_bytes())),
            None => "partial: only the headers or a part".to_string(),
        });
        if let Some(whole) = message.part_of {
            state.push(format!("of message #{whole}"));
        }
    } else if !c.complete {
        state.push("incomplete".to_string());
    }
    if c.hole_bytes > 0 {
        state.push(format!("{} bytes missing", c.hole_bytes));
    }
    if !message.parts.is_empty() {
        let parts: Vec<String> = message.parts.iter().map(|p| format!("#{p}")).collect();
        state.push(format!("its parts fetched before: {}", parts.join(" ")));
    }
    let attachments: Vec<String> = v
        .attachments
        .iter()
        .map(|a| {
            format!(
                "{} ({} bytes, {})",
                sanitize::line(a.filename.as_deref().unwrap_or("unnamed").as_bytes()),
                a.size,
                a.content_type
            )
        })
        .collect();
    // SMTP messages and IMAP APPENDs come from the client; POP3 and IMAP fetches from the server.
    let side = if matches!(message.captured.source, "pop3" | "imap-fetch") {
        "S"
    } else {
        "C"
    };
    let mut summary = format!(
        "{} {side}: [message #{}{}: {} bytes, subject {:?}",
        clock(c.ts),
        message.id,
        stored_as(c),
        c.size,
        sanitize::line(v.subject.as_deref().unwrap_or("").as_bytes())
    );
    if !attachments.is_empty() {
        summary.push_str(&format!(", attachments: {}", attachments.join(", ")));
    }
    if !state.is_empty() {
        summary.push_str(&format!(", {}", state.join(", ")));
    }
    summary.push(']');
    let mut lines = vec![summary];
    if full {
        lines.extend(
            sanitize::text(&c.bytes)
                .lines()
                .map(|l| format!("                C| {l}")),
        );
    }
    lines
}

/// The selected IMAP mailbox as the dialogue has it now.
pub fn mailbox_line(state: Option<&MailboxState>) -> String {
    let Some(s) = state else {
        return "                [no mailbox selected]".to_string();
    };
    let mut parts = vec![format!(
        "mailbox {}{}",
        sanitize::line(s.name.as_bytes()),
        if s.read_only { " (read-only)" } else { "" }
    )];
    let numbers = [
        ("exists", s.exists),
        ("recent", s.recent),
        ("first unseen", s.unseen),
        ("UIDVALIDITY", s.uidvalidity),
        ("UIDNEXT", s.uidnext),
    ];
    parts.extend(
        numbers
            .iter()
            .filter_map(|(name, v)| v.map(|v| format!("{name} {v}"))),
    );
    format!("                [{}]", parts.join(", "))
}

/// What a held line costs: its text and its `String`.
fn held_bytes(line: &str) -> usize {
    line.len() + std::mem::size_of::<String>()
}

fn clock(ts: crate::capture::Timestamp) -> String {
    time::utc(ts).get(11..).unwrap_or_default().to_string()
}

#[derive(Default)]
struct Buffered {
    lines: Vec<String>,
    cut: usize,
    /// The IMAP mailbox state last shown.
    shown_state: Option<MailboxState>,
}

pub struct TranscriptWriter<W: Write> {
    out: W,
    full: bool,
    sessions: HashMap<u64, Buffered>,
    /// Bytes of lines held for all open sessions (each line's text and its `String`).
    held: usize,
    pub error: Option<io::Error>,
}

impl<W: Write> TranscriptWriter<W> {
    pub fn new(out: W, full: bool) -> TranscriptWriter<W> {
        TranscriptWriter {
            out,
            full,
            sessions: HashMap::new(),
            held: 0,
            error: None,
        }
    }

    pub fn output_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Adds lines to a session's transcript while it and all sessions together are under
    /// their limits; counts the rest.
    fn push(&mut self, session: u64, lines: Vec<String>) {
        let buffered = self.sessions.entry(session).or_default();
        for line in lines {
            if buffered.lines.len() < MAX_TRANSCRIPT_LINES && self.held < MAX_HELD_BYTES {
                self.held += held_bytes(&line);
                buffered.lines.push(line);
            } else {
                buffered.cut += 1;
            }
        }
    }
}

impl<W: Write> SessionSink for TranscriptWriter<W> {
    fn exchange(&mut self, session: &Session, exchange: &Exchange) {
        self.push(session.id, exchange_lines(exchange));
        let buffered = self.sessions.entry(session.id).or_default();
        if session.selected != buffered.shown_state {
            buffered.shown_state = session.selected.clone();
            self.push(session.id, vec![mailbox_line(session.selected.as_ref())]);
        }
    }

    fn message(&mut self, session: &Session, message: &Message) {
        self.push(session.id, message_lines(message, self.full));
    }

    fn note(&mut self, session: &Session, note: &Note) {
        let line = format!(
            "{} !! {}",
            clock(note.ts),
            sanitize::line(note.text.as_bytes())
        );
        self.push(session.id, vec![line]);
    }

    fn finding(&mut self, session: &Session, finding: &Finding) {
        let line = format!("{} {}", clock(finding.ts), finding_line(finding));
        self.push(session.id, vec![line]);
    }

    fn session_end(&mut self, session: &Session) {
        let buffered = self.sessions.remove(&session.id).unwrap_or_default();
        let released: usize = buffered.lines.iter().map(|l| held_bytes(l)).sum();
        self.held = self.held.saturating_sub(released);
        if self.error.is_some() {
            return;
        }
        let mut write = || -> io::Result<()> {
            writeln!(self.out, "{}", header(session))?;
            for line in &buffered.lines {
                writeln!(self.out, "{line}")?;
            }
            if buffered.cut > 0 {
                writeln!(
                    self.out,
                    "!! {} more lines not shown (limits: {MAX_TRANSCRIPT_LINES} lines per \
                     session, {} MiB for all sessions open at once)",
                    buffered.cut,
                    MAX_HELD_BYTES >> 20
                )?;
            }
            writeln!(self.out)?;
            self.out.flush()
        };
        self.error = write().err();
    }
}
