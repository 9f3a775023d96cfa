//! `mailscope export`: into one folder, each message as an .eml holding exactly the bytes its
//! sha256 covers, its attachments decoded in a folder beside it, and one transcript per
//! session, and `credentials.csv` with every authentication. Every name goes through
//! [`super::files::OutputDir`].

use std::io;
use std::path::PathBuf;

use super::files::OutputDir;
use super::json::FindingRecord;
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
        }
    }

    /// Writes what covers the whole capture: credentials.csv and findings.json.
    pub fn finish(&mut self) {
        let csv = std::mem::take(&mut self.credentials);
        let written = self
            .dir
            .write(None, "credentials.csv", "credentials.csv", csv.as_bytes());
        self.keep(written);
        let mut findings = std::mem::take(&mut self.findings);
        findings.extend_from_slice(b"\n]\n");
        let written = self
            .dir
            .write(None, "findings.json", "findings.json", &findings);
        self.keep(written);
    }

    fn keep(&mut self, result: io::Result<PathBuf>) {
        match result {
            Ok(path) => self.written.push(path),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }
}

impl SessionSink for ExportWriter {
    fn exchange(&mut self, session: &Session, exchange: &Exchange) {
        self.transcripts.exchange(session, exchange);
    }

    fn message(&mut self, session: &Session, message: &Message) {
        self.transcripts.message(session, message);
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
        self.keep(eml);
        for attachment in &message.view.attachments {
            let name = attachment.filename.as_deref().unwrap_or("attachment");
            let written = self.dir.write(
                Some(&format!("{stem}.attachments")),
                name,
                "attachment",
                &attachment.bytes,
            );
            self.keep(written);
        }
    }

    fn note(&mut self, session: &Session, note: &Note) {
        self.transcripts.note(session, note);
    }

    fn finding(&mut self, session: &Session, finding: &Finding) {
        self.transcripts.finding(session, finding);
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
        self.keep(written);
    }
}
