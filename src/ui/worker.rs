//! The reading thread: the whole engine runs here, off the UI thread, and hands each finished
//! piece of the model over a bounded channel (a slow screen slows the reader, never the reverse).

use std::ops::ControlFlow;
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

use mailscope::analysis::{self, Analyst};
use mailscope::capture::{Frame, PacketSource};
use mailscope::pipeline::Dissection;
use mailscope::proto::{AuthAttempt, Exchange, Note};
use mailscope::session::model::{Finding, Message, Session};
use mailscope::session::SessionSink;

use super::store::{SessionRow, Update};

/// Model updates waiting for the UI; beyond this the reader waits.
pub const CHANNEL_DEPTH: usize = 4096;
/// How often progress is reported, in frames.
const PROGRESS_EVERY: u64 = 10_000;

/// What the reader is asked to read.
pub struct Job {
    /// Opened by the caller: an input that cannot be opened is an error before the screen
    /// changes, and a live capture drops privileges (`--user`) before the key logs are read.
    pub sources: Vec<Box<dyn PacketSource>>,
    pub dissection: Dissection,
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
    fn auth(&mut self, session: &Session, attempt: &AuthAttempt) {
        self.send(Update::Row(Box::new(SessionRow::of(session))));
        self.send(Update::Auth(session.id, Box::new(attempt.clone())));
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
    let mut progress = Progress {
        tx: tx.clone(),
        frames: 0,
        bytes: 0,
        total: job.total_bytes,
        every_frame: job.dissection.live,
    };
    let analyst = Analyst::new(ChannelSink { tx: tx.clone() }, job.analysis);
    let mut sources = job.sources;
    let (report, _) = job.dissection.run(
        &mut sources,
        analyst,
        Some(&mut |frame| progress.frame(frame)),
    );
    let faults = report.faults.iter().map(ToString::to_string).collect();
    let _ = tx.send(Update::Done {
        faults,
        frames: report.frames,
    });
}

/// Progress reports to the UI, every `PROGRESS_EVERY` frames (every frame when live).
struct Progress {
    tx: SyncSender<Update>,
    frames: u64,
    bytes: u64,
    total: Option<u64>,
    every_frame: bool,
}

impl Progress {
    /// Counts a frame; `Break` when the UI is gone.
    fn frame(&mut self, frame: &Frame<'_>) -> ControlFlow<()> {
        self.frames += 1;
        // A record's header and its bytes, close to what the file holds.
        self.bytes += frame.data.len() as u64 + 16;
        if self.frames % PROGRESS_EVERY == 0 || self.every_frame {
            let update = Update::Progress {
                frames: self.frames,
                bytes: self.bytes,
                total: self.total,
            };
            if self.tx.send(update).is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}
