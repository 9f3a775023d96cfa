//! The pipeline on several threads, with the output of one.
//!
//! A reader thread reads the sources and decodes each frame; it sends each TCP segment to the
//! worker its connection hashes to, in rounds of a few thousand. Each worker has its own flow
//! table and [`Connections`] (reassembly, TLS, dissectors, MIME parsing: the costly part) and
//! records what they report, tagged with where in the capture it happened. The calling thread
//! merges each round's records in capture order into the one [`Sessions`], which numbers
//! sessions and messages and feeds the outputs as a single thread would.
//!
//! What makes the order the same as one thread's:
//! - every record is tagged with the segment that caused it, counted across the capture;
//! - the reader keeps the capture's clock, and tells every worker when idle flows are due, at
//!   the same segment as one thread would sweep them; flows a sweep ends come in the order
//!   they were opened, as one thread ends them;
//! - sessions are numbered as they open, in that merged order.
//!
//! Where it differs: the limits on open flows and out-of-order bytes are shared out evenly
//! between the workers, so a capture that reaches them evicts (and reports) at other points.
//! The rooms for messages, awaiting commands and held bytes are one for all workers (see
//! [`crate::proto::room`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::{ControlFlow, Range};
use std::panic;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use super::{read_all, Dissection, RunReport, Watch};
use crate::capture::{PacketSource, Record, Timestamp};
use crate::decode::{Decoder, TcpSegment};
use crate::proto::room::Rooms;
use crate::session::{Connections, Events, SessionEvent, SessionSink, Sessions};
use crate::tcp::{Direction, FlowTable, StreamSink, SweepClock, TcpStats};
use crate::tls::KeyLog;

/// A round ends after this many segments...
const ROUND_SEGMENTS: usize = 4096;
/// ...or this many payload bytes, whichever comes first.
const ROUND_BYTES: usize = 1 << 20;
/// Rounds queued for each worker: enough to keep it busy, few enough to bound memory. A round
/// costs one worker more than the other when a large message hashes to it; with 4 in flight,
/// the reader then soon waited on the busy worker while the other ran dry. 16 were no faster
/// than 8, and took `export` of the 1 GB bench file past 300 MB.
const ROUNDS_IN_FLIGHT: usize = 8;
/// Records a worker sends at once: the end of the capture (or a sweep) can end every open
/// flow in one go, and their records must not pile up.
const CHUNK_RECORDS: usize = 1024;
/// Chunks queued for the merge, per worker: as many as rounds, so that a worker ahead of the
/// others is not held back by the merge, which waits for each round from every worker.
const CHUNKS_IN_FLIGHT: usize = ROUNDS_IN_FLIGHT;

/// Where in the capture a record happened: (segment number, phase, birth). Records of one
/// segment come after the sweep due at it (phase 0 before phase 1); a sweep, and the end of
/// the capture, end flows in the order they opened (their birth, the number of the segment
/// that opened them).
type Tag = (u64, u8, u64);

const SWEEP: u8 = 0;
const SEGMENT: u8 = 1;

/// One worker's share of a round.
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    payloads: Vec<u8>,
}

enum Item {
    /// The segment's payload is `payload` within the batch's `payloads`.
    Segment {
        number: u64,
        now: Timestamp,
        head: TcpSegment<'static>,
        payload: Range<usize>,
    },
    Sweep {
        number: u64,
        now: Timestamp,
    },
    KeyLog(Vec<u8>),
    End {
        now: Timestamp,
    },
}

type Tagged = (Tag, u64, SessionEvent);

/// Part of what one worker's connections reported in a round, in order.
struct Chunk {
    records: Vec<Tagged>,
    /// The last chunk of the round.
    round_end: bool,
}

/// Runs `setup.threads` workers over the sources and feeds `sessions` what one thread would
/// (the workers share the key log read so far; secrets are masked in the workers). Returns the
/// run's report and the TLS keys read (the files' and the captures' own).
pub fn run<S: SessionSink>(
    mut setup: Dissection,
    sources: &mut [Box<dyn PacketSource>],
    sessions: &mut Sessions<S>,
    watch: Option<&mut Watch>,
) -> (RunReport, KeyLog) {
    // The key log is held once, not once per worker.
    setup.keys.share();
    let workers = setup.threads.max(1);
    let mut limits = setup.config.limits;
    limits.max_flows = (limits.max_flows / workers).max(1);
    limits.max_pending_bytes = (limits.max_pending_bytes / workers).max(1);
    thread::scope(|scope| {
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        let mut handles = Vec::new();
        let (spent, reusable) = sync_channel::<Batch>(workers * (ROUNDS_IN_FLIGHT + 1));
        let rooms = Rooms::default();
        for _ in 0..workers {
            let (input, batches) = sync_channel::<Batch>(ROUNDS_IN_FLIGHT);
            let (chunks, output) = sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
            let mut connections = Connections::with_output(Recorder::new(chunks));
            connections.keys = setup.keys.clone();
            connections.redact = setup.redact;
            connections.rooms = rooms.clone();
            let table = FlowTable::new(setup.config.ports.clone(), limits);
            let spent = spent.clone();
            handles.push(scope.spawn(move || work(table, connections, batches, spent)));
            inputs.push(input);
            outputs.push(output);
        }
        let decoder = Decoder::new(setup.config.ports.clone());
        let keys = setup.keys;
        let rounds = Rounds::new(inputs, reusable);
        let reader = scope.spawn(move || read(decoder, sources, rounds, keys, watch));
        merge(&outputs, sessions);
        // Should the merge stop early, closed channels stop the workers, then the reader.
        drop(outputs);
        // A thread that panicked takes the run down as one thread's panic would: its output
        // would be silently short otherwise.
        let (mut report, keys) = reader.join().unwrap_or_else(|e| panic::resume_unwind(e));
        for handle in handles {
            let stats = handle.join().unwrap_or_else(|e| panic::resume_unwind(e));
            report.tcp.add(&stats);
        }
        (report, keys)
    })
}

/// The reader: reads every source, decodes, and shares the segments out by connection.
fn read(
    mut decoder: Decoder,
    sources: &mut [Box<dyn PacketSource>],
    mut rounds: Rounds,
    mut keys: KeyLog,
    watch: Option<&mut Watch>,
) -> (RunReport, KeyLog) {
    let mut clock = SweepClock::default();
    let mut number = 0u64;
    let mut report = read_all(sources, watch, &mut |record| {
        match record {
            Record::Frame(frame) => {
                let Some(segment) = decoder.decode(&frame) else {
                    return ControlFlow::Continue(());
                };
                number += 1;
                if clock.advance(segment.ts) {
                    rounds.all(|| Item::Sweep {
                        number,
                        now: clock.now,
                    });
                }
                rounds.segment(number, clock.now, &segment);
            }
            Record::TlsKeyLog(text) => {
                keys.add(text);
                keys.finish();
                rounds.all(|| Item::KeyLog(text.to_vec()));
            }
            // Records come out a round at a time here (the merge writes out each round's).
            Record::Pause => {}
        }
        rounds.end_if_full()
    });
    rounds.all(|| Item::End { now: clock.now });
    // Workers that are gone (the merge stopped) need nothing more.
    let _ = rounds.end();
    report.decode = decoder.stats;
    (report, keys)
}

/// The round being filled, one batch per worker.
struct Rounds {
    inputs: Vec<SyncSender<Batch>>,
    /// Batches the workers are done with, emptied: refilled rather than grown anew, which
    /// keeps the reader from allocating what the workers free.
    reusable: Receiver<Batch>,
    batches: Vec<Batch>,
    segments: usize,
    bytes: usize,
    hasher: ahash::RandomState,
}

impl Rounds {
    fn new(inputs: Vec<SyncSender<Batch>>, reusable: Receiver<Batch>) -> Rounds {
        let batches = inputs.iter().map(|_| Batch::default()).collect();
        Rounds {
            inputs,
            reusable,
            batches,
            segments: 0,
            bytes: 0,
            // Fixed seeds: which worker a connection goes to does not change the output, but a
            // run that can be repeated exactly is easier to study.
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
        }
    }

    fn all(&mut self, item: impl Fn() -> Item) {
        for batch in &mut self.batches {
            batch.items.push(item());
        }
    }

    fn segment(&mut self, number: u64, now: Timestamp, segment: &TcpSegment<'_>) {
        let ends = order(segment.src, segment.dst);
        let worker = self.hasher.hash_one(ends) as usize % self.batches.len().max(1);
        let Some(batch) = self.batches.get_mut(worker) else {
            return;
        };
        let start = batch.payloads.len();
        batch.payloads.extend_from_slice(segment.payload);
        batch.items.push(Item::Segment {
            number,
            now,
            head: TcpSegment {
                frame: segment.frame,
                ts: segment.ts,
                src: segment.src,
                dst: segment.dst,
                seq: segment.seq,
                ack: segment.ack,
                flags: segment.flags,
                payload: &[],
                missing: segment.missing,
                wire_len: segment.wire_len,
            },
            payload: start..batch.payloads.len(),
        });
        self.segments += 1;
        self.bytes += segment.payload.len();
    }

    /// Sends the round once it is full; stops reading when the workers are gone.
    fn end_if_full(&mut self) -> ControlFlow<()> {
        if self.segments < ROUND_SEGMENTS && self.bytes < ROUND_BYTES {
            return ControlFlow::Continue(());
        }
        self.end()
    }

    fn end(&mut self) -> ControlFlow<()> {
        self.segments = 0;
        self.bytes = 0;
        for (input, batch) in self.inputs.iter().zip(&mut self.batches) {
            let next = self.reusable.try_recv().unwrap_or_default();
            if input.send(std::mem::replace(batch, next)).is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// A connection's two ends in a fixed order, so that both directions hash alike.
fn order(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// A worker: its share of the connections, from segments to tagged session events.
fn work(
    mut table: FlowTable,
    mut connections: Connections<Recorder>,
    batches: Receiver<Batch>,
    spent: SyncSender<Batch>,
) -> TcpStats {
    for mut batch in batches {
        for item in batch.items.drain(..) {
            match item {
                Item::Segment {
                    number,
                    now,
                    head,
                    payload,
                } => {
                    connections.out.at(number, SEGMENT);
                    table.set_now(now);
                    let payload = batch.payloads.get(payload).unwrap_or_default();
                    table.handle(&TcpSegment { payload, ..head }, &mut connections);
                }
                Item::Sweep { number, now } => {
                    connections.out.at(number, SWEEP);
                    table.set_now(now);
                    table.sweep(&mut connections);
                }
                Item::KeyLog(text) => connections.keylog(&text),
                Item::End { now } => {
                    connections.out.at(u64::MAX, SWEEP);
                    table.set_now(now);
                    table.finish(&mut connections);
                }
            }
        }
        batch.payloads.clear();
        // A full return queue means the reader has enough: this one is freed.
        let _ = spent.try_send(batch);
        if !connections.out.send(true) {
            break;
        }
    }
    table.stats
}

/// A worker's [`Events`]: records each event with its tag, and sends them in chunks.
struct Recorder {
    number: u64,
    phase: u8,
    /// The number of the segment that opened each open flow.
    births: HashMap<u64, u64, ahash::RandomState>,
    records: Vec<Tagged>,
    chunks: SyncSender<Chunk>,
}

impl Recorder {
    fn new(chunks: SyncSender<Chunk>) -> Recorder {
        Recorder {
            number: 0,
            phase: SEGMENT,
            births: HashMap::default(),
            records: Vec::with_capacity(CHUNK_RECORDS),
            chunks,
        }
    }

    fn at(&mut self, number: u64, phase: u8) {
        self.number = number;
        self.phase = phase;
    }

    /// Sends what was recorded; false when the merge is gone.
    fn send(&mut self, round_end: bool) -> bool {
        // Sized for a whole chunk: grown by doubling, a chunk's records were copied again and
        // again into fresh memory.
        let records = std::mem::replace(&mut self.records, Vec::with_capacity(CHUNK_RECORDS));
        self.chunks.send(Chunk { records, round_end }).is_ok()
    }
}

impl Events for Recorder {
    fn event(&mut self, flow: u64, event: SessionEvent) {
        if let SessionEvent::Opened { .. } = event {
            self.births.insert(flow, self.number);
        }
        // Within a segment's own records there is one flow at work at a time, in order; only
        // a sweep (or the end) ends several, which go in the order they opened.
        let birth = match self.phase {
            SWEEP => self.births.get(&flow).copied().unwrap_or_default(),
            _ => 0,
        };
        if let SessionEvent::Removed { .. } = event {
            self.births.remove(&flow);
        }
        self.records
            .push(((self.number, self.phase, birth), flow, event));
        if self.records.len() >= CHUNK_RECORDS {
            // A merge that is gone stops the worker at the end of its batch.
            self.send(false);
        }
    }

    /// The outputs of a parallel run do not read decrypted bytes (`follow` runs on one thread).
    fn decrypted(&mut self, _flow: u64, _direction: Direction, _bytes: &[u8]) {}
}

/// The calling thread: each round's records from every worker, in capture order, into the
/// sessions. Flows are known by (their number in the worker, the worker); sessions are
/// numbered as they open.
fn merge<S: SessionSink>(outputs: &[Receiver<Chunk>], sessions: &mut Sessions<S>) {
    let mut inputs: Vec<MergeInput> = outputs.iter().map(MergeInput::new).collect();
    let workers = inputs.len() as u64;
    let mut opened = 0u64;
    loop {
        // What the last round produced is written out before waiting for the next.
        sessions.pause();
        for input in &mut inputs {
            if !input.start_round() {
                return;
            }
        }
        // The worker whose next record comes first (records with the same tag all come from
        // one worker, in its order).
        while let Some((_, worker)) = inputs
            .iter_mut()
            .enumerate()
            .filter_map(|(w, input)| input.next_tag().map(|tag| (tag, w)))
            .min()
        {
            let Some((_, flow, event)) = inputs.get_mut(worker).and_then(|f| f.records.next())
            else {
                continue;
            };
            let event = match event {
                SessionEvent::Opened { mut info, mode } => {
                    opened += 1;
                    info.id = opened;
                    SessionEvent::Opened { info, mode }
                }
                other => other,
            };
            sessions.event(flow * workers + worker as u64, event);
        }
    }
}

/// One worker's records as the merge reads them, a chunk at a time.
struct MergeInput<'a> {
    output: &'a Receiver<Chunk>,
    /// Read in place: a record is moved out once, when it is merged (they are large, and
    /// each move of a record another core wrote costs more than its size suggests).
    records: std::vec::IntoIter<Tagged>,
    round_end: bool,
}

impl MergeInput<'_> {
    fn new(output: &Receiver<Chunk>) -> MergeInput<'_> {
        MergeInput {
            output,
            records: Vec::new().into_iter(),
            round_end: true,
        }
    }

    /// Reads the round's first chunk; false when the worker is done.
    fn start_round(&mut self) -> bool {
        self.refill()
    }

    fn refill(&mut self) -> bool {
        match self.output.recv() {
            Ok(chunk) => {
                self.records = chunk.records.into_iter();
                self.round_end = chunk.round_end;
                true
            }
            Err(_) => {
                self.round_end = true;
                false
            }
        }
    }

    /// The tag of the worker's next record in this round, reading chunks as needed.
    fn next_tag(&mut self) -> Option<Tag> {
        loop {
            if let Some((tag, ..)) = self.records.as_slice().first() {
                return Some(*tag);
            }
            if self.round_end || !self.refill() {
                return None;
            }
        }
    }
}
