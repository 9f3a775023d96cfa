//! `mailscope export`: into one folder, each message as an .eml holding exactly the bytes its
//! sha256 covers, its attachments decoded in a folder beside it, one transcript per session,
//! `credentials.csv` with every authentication, `findings.json`, and `index.json` and
//! `index.html` listing it all; optionally every message in one mbox too. Every name goes
//! through [`super::files::OutputDir`].

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;

use super::files::OutputDir;
use super::index::{FindingEntry, Index, MessageEntry, SessionEntry};
use super::json::FindingRecord;
use super::mbox::MboxWriter;
use super::transcript::TranscriptWriter;
use crate::analysis::credentials;
use crate::proto::{Exchange, Note};
use crate::session::model::{Finding, Message, Session};
use crate::session::SessionSink;

pub struct ExportWriter {
    dir: OutputDir,
    transcripts: TranscriptWriter<Vec<u8>>,
    /// Messages written per session, to number them.
    counts: std::collections::HashMap<u64, usize>,
    pub written: Vec<PathBuf>,
    pub error: Option<io::Error>,
    /// credentials.csv, written by `finish`.
    credentials: String,
    /// findings.json, written by `finish`: the records of `--json`, as one array.
    findings: Vec<u8>,
    index: Index,
    mbox: Option<MboxWriter<BufWriter<File>>>,
}

impl ExportWriter {
    pub fn new(dir: OutputDir) -> ExportWriter {
        ExportWriter {
            dir,
            transcripts: TranscriptWriter::new(Vec::new(), true),
            counts: Default::default(),
            written: Vec::new(),
            error: None,
            credentials: credentials::CSV_HEADER.to_string(),
            findings: b"[".to_vec(),
            index: Index {
                credentials: "credentials.csv",
                findings_file: "findings.json",
                ..Index::default()
            },
            mbox: None,
        }
    }

    /// Also writes every whole message into this mbox file.
    pub fn with_mbox(mut self, file: File) -> ExportWriter {
        self.mbox = Some(MboxWriter::new(BufWriter::new(file)));
        self
    }

    /// Writes what covers the whole capture: credentials.csv, findings.json, the index, and
    /// the end of the mbox. Returns the messages the mbox holds.
    pub fn finish(&mut self) -> u64 {
        let csv = std::mem::take(&mut self.credentials);
        self.write("credentials.csv", csv.as_bytes());
        let mut findings = std::mem::take(&mut self.findings);
        findings.extend_from_slice(b"\n]\n");
        self.write("findings.json", &findings);
        match serde_json::to_vec_pretty(&self.index) {
            Ok(json) => {
                self.write("index.json", &json);
            }
            Err(e) => self.failed(e.into()),
        }
        let html = self.index.html();
        self.write("index.html", html.as_bytes());
        let Some(mbox) = self.mbox.take() else {
            return 0;
        };
        let messages = mbox.messages;
        if let Err(e) = mbox.finish() {
            self.failed(e);
        }
        messages
    }

    /// Writes a file of the export's own into the root; returns its name in the folder.
    fn write(&mut self, name: &str, bytes: &[u8]) -> Option<String> {
        let written = self.dir.write(None, name, name, bytes);
        self.keep(written)
    }

    fn keep(&mut self, result: io::Result<PathBuf>) -> Option<String> {
        match result {
            Ok(path) => {
                let relative = self.dir.relative(&path);
                self.written.push(path);
                Some(relative)
            }
            Err(e) => {
                self.failed(e);
                None
            }
        }
    }

    fn failed(&mut self, e: io::Error) {
        self.error.get_or_insert(e);
    }
}

impl SessionSink for ExportWriter {
    fn exchange(&mut self, session: &Session, exchange: &Exchange) {
        self.transcripts.exchange(session, exchange);
    }

    fn message(&mut self, session: &Session, message: &Message) {
        self.transcripts.message(session, message);
        if let Some(mbox) = &mut self.mbox {
            if let Err(e) = mbox.message(message) {
                self.error.get_or_insert(e);
            }
        }
        let n = self.counts.entry(session.id).or_default();
        *n += 1;
        let subject = message.view.subject.as_deref().unwrap_or("no subject");
        let stem = format!("{:04}-{:02}-{subject}", session.id, n);
        let stem = super::files::safe_name(&stem, "message");
        let eml = self.dir.write(
            None,
            &format!("{stem}.eml"),
            "message.eml",
            &message.captured.bytes,
        );
        let eml = self.keep(eml);
        let mut attachments = Vec::new();
        for attachment in &message.view.attachments {
            let name = attachment.filename.as_deref().unwrap_or("attachment");
            let written = self.dir.write(
                Some(&format!("{stem}.attachments")),
                name,
                "attachment",
                &attachment.bytes,
            );
            attachments.extend(self.keep(written));
        }
        let entry = MessageEntry::of(message, eml, attachments);
        self.index.messages.push(entry);
    }

    fn note(&mut self, session: &Session, note: &Note) {
        self.transcripts.note(session, note);
    }

    fn finding(&mut self, session: &Session, finding: &Finding) {
        self.transcripts.finding(session, finding);
        self.index.findings.push(FindingEntry::of(finding));
        if self.findings.len() > 1 {
            self.findings.push(b',');
        }
        self.findings.push(b'\n');
        // Serialising our own record into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.findings, &FindingRecord::of(finding));
    }

    fn session_end(&mut self, session: &Session) {
        self.credentials.push_str(&credentials::csv_rows(session));
        self.transcripts.session_end(session);
        let text = std::mem::take(self.transcripts.output_mut());
        let name = format!(
            "{:04}-{}-{}.txt",
            session.id,
            session.protocol.name(),
            session.client.ip()
        );
        let written = self.dir.write(None, &name, "session.txt", &text);
        let transcript = self.keep(written);
        self.index
            .sessions
            .push(SessionEntry::of(session, transcript));
    }
}
