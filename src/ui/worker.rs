//! The reading thread: the whole engine runs here, off the UI thread, and hands each finished
//! piece of the model over a bounded channel (a slow screen slows the reader, never the reverse).

use std::ops::ControlFlow;
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

use mailscope::analysis::{self, Analyst};
use mailscope::capture::{PacketSource, Record};
use mailscope::pipeline::{Analyzer, Config};
use mailscope::proto::{Exchange, Note};
use mailscope::session::model::{Finding, Message, Session};
use mailscope::session::{SessionSink, SessionTable};
use mailscope::tls::{KeyLog, KeyLogFile};

use super::store::{SessionRow, Update};

/// Model updates waiting for the UI; beyond this the reader waits.
pub const CHANNEL_DEPTH: usize = 4096;
/// How often progress is reported, in frames.
const PROGRESS_EVERY: u64 = 10_000;

pub type Opener = Box<dyn FnOnce() -> Result<Vec<Box<dyn PacketSource>>, String> + Send>;

/// What the reader is asked to read.
pub struct Job {
    pub open: Opener,
    pub config: Config,
    pub keys: KeyLog,
    pub followed: Vec<KeyLogFile>,
    pub live: bool,
    pub redact: bool,
    pub analysis: analysis::Options,
    /// Bytes the inputs hold, for the progress gauge (unknown for live capture and stdin).
    pub total_bytes: Option<u64>,
}

struct ChannelSink {
    tx: SyncSender<Update>,
}

impl ChannelSink {
    fn send(&self, update: Update) {
        // The UI has quit when the channel is closed; the reader then simply finishes.
        let _ = self.tx.send(update);
    }
}

impl SessionSink for ChannelSink {
    fn exchange(&mut self, session: &Session, exchange: &Exchange) {
        self.send(Update::Row(Box::new(SessionRow::of(session))));
        self.send(Update::Exchange(session.id, exchange.clone()));
    }
    fn message(&mut self, session: &Session, message: &Message) {
        self.send(Update::Row(Box::new(SessionRow::of(session))));
        self.send(Update::Message(session.id, Box::new(message.clone())));
    }
    fn note(&mut self, session: &Session, note: &Note) {
        self.send(Update::Row(Box::new(SessionRow::of(session))));
        self.send(Update::Note(session.id, note.clone()));
    }
    fn finding(&mut self, session: &Session, finding: &Finding) {
        self.send(Update::Row(Box::new(SessionRow::of(session))));
        self.send(Update::Finding(session.id, Box::new(finding.clone())));
    }
    fn session_end(&mut self, session: &Session) {
        self.send(Update::Row(Box::new(SessionRow::of(session))));
    }
}

pub fn spawn(job: Job, tx: SyncSender<Update>) -> JoinHandle<()> {
    std::thread::spawn(move || read(job, tx))
}

/// Reads every input to the end (or until the UI goes away), sending updates as it goes.
pub fn read(job: Job, tx: SyncSender<Update>) {
    let sink = ChannelSink { tx: tx.clone() };
    let mut table = SessionTable::new(Analyst::new(sink, job.analysis));
    table.keys = job.keys;
    table.followed = job.followed;
    table.keys_may_come = job.live;
    table.redact = job.redact;
    let mut sources = match (job.open)() {
        Ok(sources) => sources,
        Err(e) => {
            let _ = tx.send(Update::Done {
                faults: vec![e],
                frames: 0,
            });
            return;
        }
    };
    let mut analyzer = Analyzer::new(job.config);
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut faults = Vec::new();
    for source in sources.iter_mut() {
        let result = source.read(&mut |record| {
            if let Record::Frame(frame) = &record {
                frames += 1;
                // A record's header and its bytes, close to what the file holds.
                bytes += frame.data.len() as u64 + 16;
                if frames % PROGRESS_EVERY == 0 || job.live {
                    let update = Update::Progress {
                        frames,
                        bytes,
                        total: job.total_bytes,
                    };
                    if tx.send(update).is_err() {
                        return ControlFlow::Break(());
                    }
                }
            }
            analyzer.feed(record, &mut table);
            ControlFlow::Continue(())
        });
        match result {
            Ok(summary) => faults.extend(summary.fault.map(|f| f.to_string())),
            Err(e) => faults.push(e.to_string()),
        }
    }
    analyzer.finish(&mut table);
    let _ = tx.send(Update::Done { faults, frames });
}
