//! The pipeline: one [`Analyzer`] per run drives decode and TCP over the records of one or more
//! sources, in order. Synchronous and deterministic: the same capture always gives the same
//! events in the same order. [`parallel`] runs the same stages on several threads and gives the
//! same output.

pub mod parallel;

use std::ops::ControlFlow;

use crate::capture::{CaptureError, LiveDrops, PacketSource, Record};
use crate::decode::{DecodeStats, Decoder};
use crate::ports::MailPorts;
use crate::tcp::{FlowTable, StreamSink, TcpLimits, TcpStats};

#[derive(Clone, Default)]
pub struct Config {
    pub ports: MailPorts,
    pub limits: TcpLimits,
}

pub struct Analyzer {
    decoder: Decoder,
    table: FlowTable,
    pub frames: u64,
}

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
    fn read(&mut self, result: Result<crate::capture::ReadSummary, CaptureError>) {
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
            frames: 0,
        }
    }

    pub fn feed(&mut self, record: Record<'_>, sink: &mut dyn StreamSink) {
        match record {
            Record::Frame(frame) => {
                self.frames += 1;
                if let Some(segment) = self.decoder.decode(&frame) {
                    self.table.process(&segment, sink);
                }
            }
            Record::TlsKeyLog(text) => sink.keylog(text),
        }
    }

    /// Reads every source in turn into this analyzer. A source that cannot be opened or read in
    /// full is reported and the others are still read.
    pub fn run(
        &mut self,
        sources: &mut [Box<dyn PacketSource>],
        sink: &mut dyn StreamSink,
    ) -> RunReport {
        let mut report = RunReport::default();
        for source in sources.iter_mut() {
            let result = source.read(&mut |record| {
                self.feed(record, sink);
                ControlFlow::Continue(())
            });
            report.read(result);
        }
        self.finish(sink);
        report.decode = self.decoder.stats.clone();
        report.tcp = self.table.stats;
        report
    }

    /// Ends every open connection: the input is over.
    pub fn finish(&mut self, sink: &mut dyn StreamSink) {
        self.table.finish(sink);
    }

    pub fn decode_stats(&self) -> &DecodeStats {
        &self.decoder.stats
    }

    pub fn tcp_stats(&self) -> &TcpStats {
        &self.table.stats
    }
}
