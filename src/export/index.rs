//! The export's table of contents: `index.json` for tools and `index.html` for people, listing
//! every session (with its transcript), every message (with its .eml, attachments and earlier
//! sightings) and the findings, each pointing at the files written beside it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::hex;
use crate::session::model::{Finding, Message, Session};

/// Entries of each kind the index lists: a capture of a million messages has them all in the
/// folder, but an index that held them all would grow with the capture.
pub const MAX_INDEXED: usize = 10_000;

#[derive(Default, Serialize)]
pub struct Index {
    /// The first [`MAX_INDEXED`] sessions, messages and findings (findings.json holds every
    /// finding, the folder every message and transcript); the totals count them all.
    pub sessions: Vec<SessionEntry>,
    pub sessions_total: u64,
    pub messages: Vec<MessageEntry>,
    pub messages_total: u64,
    pub findings: Vec<FindingEntry>,
    pub findings_total: u64,
    /// The names of credentials.csv and findings.json in the folder.
    pub credentials: String,
    pub findings_file: String,
}

#[derive(Serialize)]
pub struct SessionEntry {
    pub id: u64,
    pub protocol: &'static str,
    pub client: String,
    pub server: String,
    pub start: String,
    pub tls: &'static str,
    pub decrypted: bool,
    pub user: Option<String>,
    pub messages: u64,
    pub transcript: Option<String>,
}

#[derive(Serialize)]
pub struct MessageEntry {
    pub id: u64,
    pub session: u64,
    pub source: &'static str,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub message_id: Option<String>,
    pub sha256: String,
    pub eml: Option<String>,
    pub attachments: Vec<String>,
    /// The messages seen earlier with the same Message-ID.
    pub seen_before: Vec<u64>,
}

#[derive(Serialize)]
pub struct FindingEntry {
    pub session: u64,
    pub severity: &'static str,
    pub kind: &'static str,
    pub detail: String,
}

impl SessionEntry {
    pub fn of(session: &Session, transcript: Option<String>) -> SessionEntry {
        SessionEntry {
            id: session.id,
            protocol: session.protocol.name(),
            client: session.client.to_string(),
            server: session.server.to_string(),
            start: super::time::utc(session.start),
            tls: session.tls.mode.name(),
            decrypted: session.tls.decrypted(),
            user: session.user().map(str::to_string),
            messages: session.messages,
            transcript,
        }
    }
}

impl MessageEntry {
    pub fn of(message: &Message, eml: Option<String>, attachments: Vec<String>) -> MessageEntry {
        let v = &message.view;
        MessageEntry {
            id: message.id,
            session: message.session,
            source: message.captured.source,
            subject: v.subject.clone(),
            from: v.from.first().cloned(),
            message_id: v.message_id.clone(),
            sha256: hex::encode(&message.captured.sha256),
            eml,
            attachments,
            seen_before: message.seen_before.iter().map(|s| s.message).collect(),
        }
    }
}

impl FindingEntry {
    pub fn of(finding: &Finding) -> FindingEntry {
        FindingEntry {
            session: finding.session,
            severity: finding.severity().name(),
            kind: finding.kind.name(),
            detail: finding.detail.clone(),
        }
    }
}

/// Text made safe inside HTML (element content and quoted attributes).
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A link to a file written beside the index. Its name came through `safe_name` (letters,
/// digits, `-`, `_`, `.`), so nothing in it needs URL encoding; it is escaped all the same.
fn link(path: &Option<String>, text: &str) -> String {
    match path {
        Some(p) => format!("<a href=\"{}\">{}</a>", esc(p), esc(text)),
        None => esc(text),
    }
}

/// Counts an entry, and lists it while the list has room.
fn listed<T>(list: &mut Vec<T>, total: &mut u64, entry: T) {
    *total += 1;
    if list.len() < MAX_INDEXED {
        list.push(entry);
    }
}

impl Index {
    pub fn add_session(&mut self, entry: SessionEntry) {
        listed(&mut self.sessions, &mut self.sessions_total, entry);
    }

    pub fn add_message(&mut self, entry: MessageEntry) {
        listed(&mut self.messages, &mut self.messages_total, entry);
    }

    pub fn add_finding(&mut self, entry: FindingEntry) {
        listed(&mut self.findings, &mut self.findings_total, entry);
    }

    fn is_cut(&self) -> bool {
        [
            self.sessions_total,
            self.messages_total,
            self.findings_total,
        ]
        .iter()
        .any(|&total| total > MAX_INDEXED as u64)
    }

    /// The page, linking to the JSON index written as `index_json`.
    pub fn html(&self, index_json: &str) -> String {
        let mut h = String::from(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mailscope export</title>\n<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}.alert{background:#fdd}.warning{background:#ffd}</style></head><body>\n",
        );
        let _ = writeln!(
            h,
            "<h1>mailscope export</h1><p>{} sessions, {} messages, {} findings{}; <a href=\"{}\">credentials</a>, <a href=\"{}\">findings as JSON</a>, <a href=\"{}\">this index as JSON</a>.</p>",
            self.sessions_total,
            self.messages_total,
            self.findings_total,
            if self.is_cut() {
                format!(" (the first {MAX_INDEXED} of each are listed here; the folder has them all)")
            } else {
                String::new()
            },
            esc(&self.credentials),
            esc(&self.findings_file),
            esc(index_json)
        );
        h.push_str("<h2>Findings</h2><table><tr><th>session</th><th>severity</th><th>kind</th><th>detail</th></tr>\n");
        for f in &self.findings {
            let _ = writeln!(
                h,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f.severity,
                f.session,
                f.severity,
                f.kind,
                esc(&f.detail)
            );
        }
        h.push_str("</table><h2>Sessions</h2><table><tr><th>id</th><th>protocol</th><th>client</th><th>server</th><th>start (UTC)</th><th>TLS</th><th>user</th><th>messages</th></tr>\n");
        for s in &self.sessions {
            let tls = if s.decrypted {
                format!("{} (decrypted)", s.tls)
            } else {
                s.tls.to_string()
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                link(&s.transcript, &s.id.to_string()),
                s.protocol,
                esc(&s.client),
                esc(&s.server),
                esc(&s.start),
                esc(&tls),
                esc(s.user.as_deref().unwrap_or("")),
                s.messages
            );
        }
        h.push_str("</table><h2>Messages</h2><table><tr><th>id</th><th>session</th><th>source</th><th>from</th><th>subject</th><th>attachments</th><th>seen before as</th></tr>\n");
        for m in &self.messages {
            let attachments: Vec<String> = m
                .attachments
                .iter()
                .map(|a| link(&Some(a.clone()), a.rsplit('/').next().unwrap_or(a)))
                .collect();
            let seen: Vec<String> = m.seen_before.iter().map(u64::to_string).collect();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                link(&m.eml, &m.id.to_string()),
                m.session,
                m.source,
                esc(m.from.as_deref().unwrap_or("")),
                esc(m.subject.as_deref().unwrap_or("")),
                attachments.join("<br>"),
                seen.join(", ")
            );
        }
        h.push_str("</table></body></html>\n");
        h
    }
}
