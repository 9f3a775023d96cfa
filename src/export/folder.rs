//! `mailscope export`: into one folder, each message as an .eml holding exactly the bytes its
//! sha256 covers, its attachments decoded in a folder beside it, and one transcript per
//! session, and `credentials.csv` with every authentication. Every name goes through
//! [`super::files::OutputDir`].

use std::io;
use std::path::PathBuf;

use super::files::OutputDir;
use super::transcript::TranscriptWriter;
use crate::analysis::credentials;
use crate::proto::{Exchange, Note};
use crate::session::model::{Message, Session};
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
        }
    }

    /// Writes what covers the whole capture: credentials.csv.
    pub fn finish(&mut self) {
        let csv = std::mem::take(&mut self.credentials);
        let written = self
            .dir
            .write(None, "credentials.csv", "credentials.csv", csv.as_bytes());
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
