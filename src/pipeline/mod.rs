//! The pipeline: one [`Analyzer`] per run drives decode and TCP over the records of one or more
//! sources, in order. Synchronous and deterministic: the same capture always gives the same
//! events in the same order. [`parallel`] runs the same stages on several threads and gives the
//! same output.

pub mod parallel;

use std::ops::ControlFlow;

use crate::capture::{CaptureError, Frame, LiveDrops, PacketSource, ReadSummary, Record};
use crate::decode::{DecodeStats, Decoder};
use crate::ports::MailPorts;
use crate::session::{SessionSink, SessionTable, Sessions};
use crate::tcp::{FlowTable, StreamSink, TcpLimits, TcpStats};
use crate::tls::{KeyLog, KeyLogFile};

#[derive(Clone, Default)]
pub struct Config {
    pub ports: MailPorts,
    pub limits: TcpLimits,
}

pub struct Analyzer {
    decoder: Decoder,
    table: FlowTable,
}

/// Sees each frame as it is read, before it is analysed (progress); `Break` stops the reading
/// of every source.
pub type Watch<'a> = dyn FnMut(&Frame<'_>) -> ControlFlow<()> + Send + 'a;

/// What a whole run read, and where it stopped short.
#[derive(Debug, Default)]
pub struct RunReport {
    pub frames: u64,
    /// Inputs that could not be read in full (what came before the fault was analysed).
    pub faults: Vec<CaptureError>,
    /// A live capture's packet counts.
    pub drops: Option<LiveDrops>,
    pub decode: DecodeStats,
    pub tcp: TcpStats,
}

impl RunReport {
    /// Adds what one source's reading returned.
    fn read(&mut self, result: Result<ReadSummary, CaptureError>) {
        match result {
            Ok(summary) => {
                self.frames += summary.frames;
                self.faults.extend(summary.fault);
                self.drops = self.drops.or(summary.drops);
            }
            Err(error) => self.faults.push(error),
        }
    }
}

impl Analyzer {
    pub fn new(config: Config) -> Analyzer {
        Analyzer {
            decoder: Decoder::new(config.ports.clone()),
            table: FlowTable::new(config.ports, config.limits),
        }
    }

    pub fn feed(&mut self, record: Record<'_>, sink: &mut dyn StreamSink) {
        match record {
            Record::Frame(frame) => {
                if let Some(segment) = self.decoder.decode(&frame) {
                    self.table.process(&segment, sink);
                }
            }
            Record::TlsKeyLog(text) => sink.keylog(text),
            Record::Pause => sink.pause(),
        }
    }

    /// Reads every source in turn into this analyzer (see [`read_all`]).
    pub fn run(
        &mut self,
        sources: &mut [Box<dyn PacketSource>],
        sink: &mut dyn StreamSink,
    ) -> RunReport {
        self.run_watched(sources, sink, None)
    }

    /// [`Analyzer::run`], with each frame shown to `watch` first.
    pub fn run_watched(
        &mut self,
        sources: &mut [Box<dyn PacketSource>],
        sink: &mut dyn StreamSink,
        watch: Option<&mut Watch>,
    ) -> RunReport {
        let mut report = read_all(sources, watch, &mut |record| {
            self.feed(record, sink);
            ControlFlow::Continue(())
        });
        self.finish(sink);
        report.decode = self.decoder.stats.clone();
        report.tcp = self.table.stats;
        report
    }

    /// Ends every open connection: the input is over.
    pub fn finish(&mut self, sink: &mut dyn StreamSink) {
        self.table.finish(sink);
    }
}

/// Reads every source in turn, handing each record to `each`. A source that cannot be opened
/// or read in full is reported and the others are still read; `Break` from `watch` or `each`
/// stops all reading.
fn read_all(
    sources: &mut [Box<dyn PacketSource>],
    mut watch: Option<&mut Watch>,
    each: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
) -> RunReport {
    let mut report = RunReport::default();
    let mut stopped = false;
    for source in sources.iter_mut() {
        let result = source.read(&mut |record| {
            if let (Record::Frame(frame), Some(watch)) = (&record, watch.as_deref_mut()) {
                if watch(frame).is_break() {
                    stopped = true;
                    return ControlFlow::Break(());
                }
            }
            let flow = each(record);
            stopped = flow.is_break();
            flow
        });
        report.read(result);
        if stopped {
            break;
        }
    }
    report
}

/// A run that dissects sessions: on one thread, or with workers (see [`parallel`]), for the
/// same output.
pub struct Dissection {
    pub config: Config,
    /// Worker threads; below 2, everything runs on one thread.
    pub threads: usize,
    /// The key log files' secrets.
    pub keys: KeyLog,
    /// A live capture: it stays on one thread, so that each piece shows as soon as it is
    /// complete (workers hold theirs until a round is full), and its key logs are followed.
    pub live: bool,
    /// Key log files read again as they grow (live capture).
    pub followed: Vec<KeyLogFile>,
    /// `--redact`: secrets are masked before they reach the outputs.
    pub redact: bool,
}

impl Dissection {
    /// Dissects the sources into sessions for `sink`; returns the report and the TLS keys read
    /// (the files' and the captures' own).
    pub fn run<S: SessionSink>(
        self,
        sources: &mut [Box<dyn PacketSource>],
        sink: S,
        watch: Option<&mut Watch>,
    ) -> (RunReport, KeyLog) {
        if self.threads >= 2 && !self.live {
            return parallel::run(self, sources, &mut Sessions::new(sink), watch);
        }
        let mut table = SessionTable::new(sink);
        table.keys = self.keys;
        table.keys_may_come = self.live;
        table.followed = self.followed;
        table.redact = self.redact;
        let report = Analyzer::new(self.config).run_watched(sources, &mut table, watch);
        (report, table.keys)
    }
}
