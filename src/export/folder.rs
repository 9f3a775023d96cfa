//! `mailscope export`: into one folder, each message as an .eml holding exactly the bytes its
//! sha256 covers, its attachments decoded in a folder beside it, one transcript per session,
//! `credentials.csv` with every authentication, `findings.json`, and `index.json` and
//! `index.html` listing it all; optionally every message in one mbox too. Every name goes
//! through [`super::files::OutputDir`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::files::OutputDir;
use super::index::{FindingEntry, Index, MessageEntry, SessionEntry};
use super::json::FindingRecord;
use super::mbox::MboxWriter;
use super::safe_json;
use super::transcript::TranscriptWriter;
use crate::analysis::credentials;
use crate::proto::{AuthAttempt, Exchange, Note};
use crate::session::model::{Finding, Message, Session};
use crate::session::SessionSink;

pub struct ExportWriter {
    dir: OutputDir,
    transcripts: TranscriptWriter<Vec<u8>>,
    /// Messages written per session, to number them.
    counts: std::collections::HashMap<u64, usize>,
    /// Files written into the folder.
    pub files_written: u64,
    pub error: Option<io::Error>,
    /// credentials.csv, a row written as each attempt comes.
    credentials: BufWriter<File>,
    /// findings.json: the records of `--json`, as one array, written as they come.
    findings: BufWriter<File>,
    index: Index,
    mbox: Option<MboxWriter<BufWriter<File>>>,
}

impl ExportWriter {
    pub fn new(mut dir: OutputDir) -> io::Result<ExportWriter> {
        // A folder exported into before keeps its files: these may get other names, which the
        // index then links to.
        let (findings_path, file) = dir.create_file("findings.json", "findings.json")?;
        let mut findings = BufWriter::new(file);
        findings.write_all(b"[")?;
        let (credentials_path, file) = dir.create_file("credentials.csv", "credentials.csv")?;
        let mut credentials = BufWriter::new(file);
        credentials.write_all(credentials::CSV_HEADER.as_bytes())?;
        let index = Index {
            credentials: dir.relative(&credentials_path),
            findings_file: dir.relative(&findings_path),
            ..Index::default()
        };
        Ok(ExportWriter {
            dir,
            transcripts: TranscriptWriter::new(Vec::new(), true),
            counts: Default::default(),
            // findings.json and credentials.csv.
            files_written: 2,
            error: None,
            credentials,
            findings,
            index,
            mbox: None,
        })
    }

    /// Also writes every whole message into this mbox file.
    pub fn with_mbox(mut self, file: File) -> ExportWriter {
        self.mbox = Some(MboxWriter::new(BufWriter::new(file)));
        self
    }

    /// Writes what covers the whole capture: credentials.csv, findings.json, the index, and
    /// the end of the mbox. Returns the messages the mbox holds.
    pub fn finish(&mut self) -> u64 {
        let closed = self
            .findings
            .write_all(b"\n]\n")
            .and_then(|()| self.findings.flush())
            .and_then(|()| self.credentials.flush());
        if let Err(e) = closed {
            self.failed(e);
        }
        let index_json = match safe_json::to_vec_pretty(&self.index) {
            Ok(json) => self.write("index.json", &json),
            Err(e) => {
                self.failed(e.into());
                None
            }
        };
        let html = self
            .index
            .html(index_json.as_deref().unwrap_or("index.json"));
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
                self.files_written += 1;
                Some(self.dir.relative(&path))
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
        self.index.add_message(entry);
    }

    fn note(&mut self, session: &Session, note: &Note) {
        self.transcripts.note(session, note);
    }

    fn finding(&mut self, session: &Session, finding: &Finding) {
        self.transcripts.finding(session, finding);
        self.index.add_finding(FindingEntry::of(finding));
        let separator: &[u8] = if self.index.findings_total == 1 {
            b"\n"
        } else {
            b",\n"
        };
        let written = self
            .findings
            .write_all(separator)
            .map_err(serde_json::Error::io)
            .and_then(|()| safe_json::to_writer(&mut self.findings, &FindingRecord::of(finding)));
        if let Err(e) = written {
            self.failed(e.into());
        }
    }

    fn auth(&mut self, session: &Session, attempt: &AuthAttempt) {
        let row = credentials::csv_row(session, attempt);
        if let Err(e) = self.credentials.write_all(row.as_bytes()) {
            self.failed(e);
        }
    }

    fn session_end(&mut self, session: &Session) {
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
            .add_session(SessionEntry::of(session, transcript));
        self.counts.remove(&session.id);
    }
}
