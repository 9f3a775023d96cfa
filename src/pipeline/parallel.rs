//! The pipeline on several threads, with the output of one.
//!
//! A reader thread reads the sources and decodes each frame. Each worker has its own flow table
//! and [`Connections`] (reassembly, TLS, dissectors, MIME parsing: the costly part) and records
//! what they report, tagged with where in the capture it happened. The reader is a worker too:
//! it dissects its own share of the connections as it reads them, while the bytes are fresh in
//! its cache, and sends the other segments to the helper threads, in rounds of a few thousand.
//! (With a reader apart from two workers, three busy threads shared two cores, every payload
//! was copied once more, and a helper's first read of it was far: the same work took 20% more
//! CPU than on one thread, against 10% now.) The calling thread merges each round's records in
//! capture order into the one [`Sessions`], which numbers sessions and messages and feeds the
//! outputs as a single thread would.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
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
/// Connections are hashed into this many buckets, each given to a worker when first used.
const BUCKETS: usize = 4096;
/// A new bucket goes to a helper that has less than this left to do (half of what may queue
/// for it), else the reader keeps it. A helper kept busier (7 rounds) left the reader waiting
/// on its full queue; a lower mark (1 to 3 rounds) gave the reader more than its share.
const HELPER_BACKLOG: u64 = (ROUNDS_IN_FLIGHT / 2 * ROUND_BYTES) as u64;
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
        let mut helpers = Vec::new();
        let mut outputs = Vec::new();
        let mut handles = Vec::new();
        let (spent, reusable) = sync_channel::<Batch>(workers * (ROUNDS_IN_FLIGHT + 1));
        let rooms = Rooms::default();
        let new_worker = |outbox| {
            let mut connections = Connections::with_output(Recorder::new(outbox));
            connections.keys = setup.keys.clone();
            connections.redact = setup.redact;
            connections.rooms = rooms.clone();
            Worker {
                table: FlowTable::new(setup.config.ports.clone(), limits),
                connections,
            }
        };
        // The reader's own share; the others are the helpers'.
        let (chunks, output) = sync_channel(CHUNKS_IN_FLIGHT);
        outputs.push(output);
        let own = new_worker(Outbox::Reader {
            chunks,
            held: Vec::new(),
            open: true,
        });
        for _ in 1..workers {
            let (chunks, output) = sync_channel(CHUNKS_IN_FLIGHT);
            outputs.push(output);
            let worker = new_worker(Outbox::Helper(chunks));
            let (input, batches) = sync_channel::<Batch>(ROUNDS_IN_FLIGHT);
            let done = Arc::new(AtomicU64::new(0));
            let (spent, finished) = (spent.clone(), done.clone());
            handles.push(scope.spawn(move || work(worker, batches, spent, finished)));
            helpers.push(Helper {
                input,
                batch: Batch::default(),
                given: 0,
                done,
            });
        }
        let decoder = Decoder::new(setup.config.ports.clone());
        let keys = setup.keys;
        let rounds = Rounds::new(own, helpers, reusable);
        let reader = scope.spawn(move || read(decoder, sources, rounds, keys, watch));
        merge(&outputs, sessions);
        // Should the merge stop early, closed channels stop the workers, then the reader.
        drop(outputs);
        // A thread that panicked takes the run down as one thread's panic would: its output
        // would be silently short otherwise.
        let (mut report, keys, own) = reader.join().unwrap_or_else(|e| panic::resume_unwind(e));
        report.tcp.add(&own);
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
) -> (RunReport, KeyLog, TcpStats) {
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
                    })?;
                }
                rounds.segment(number, clock.now, &segment);
            }
            Record::TlsKeyLog(text) => {
                keys.add(text);
                keys.finish();
                rounds.all(|| Item::KeyLog(text.to_vec()))?;
            }
            // Records come out a round at a time here (the merge writes out each round's).
            Record::Pause => {}
        }
        rounds.end_if_full()
    });
    // Workers that are gone (the merge stopped) need nothing more.
    let _ = rounds.all(|| Item::End { now: clock.now });
    report.decode = decoder.stats;
    (report, keys, rounds.own.table.stats)
}

/// A worker that runs on a thread of its own, as the reader sees it.
struct Helper {
    input: SyncSender<Batch>,
    /// Its share of the round being filled.
    batch: Batch,
    /// Payload bytes given to it, and those it is done with: what it has still to do.
    given: u64,
    done: Arc<AtomicU64>,
}

impl Helper {
    fn backlog(&self) -> u64 {
        self.given.saturating_sub(self.done.load(Ordering::Relaxed))
    }
}

/// The round being filled: the reader dissects its own share of the connections as it reads
/// them, and gives the rest to the helpers, a batch each per round.
struct Rounds {
    own: Worker,
    helpers: Vec<Helper>,
    /// Batches the helpers are done with, emptied: refilled rather than grown anew, which
    /// keeps the reader from allocating what the helpers free.
    reusable: Receiver<Batch>,
    segments: usize,
    bytes: usize,
    hasher: ahash::RandomState,
    /// Who has each bucket of connections (0: the reader, then the helpers), once chosen.
    buckets: Vec<Option<usize>>,
}

impl Rounds {
    fn new(own: Worker, helpers: Vec<Helper>, reusable: Receiver<Batch>) -> Rounds {
        Rounds {
            own,
            helpers,
            reusable,
            segments: 0,
            bytes: 0,
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
            buckets: vec![None; BUCKETS],
        }
    }

    /// An item for every worker, in a round of its own. A sweep or the end can end every open
    /// connection at once, and their records must go out as they come, with backpressure: the
    /// helpers get the round first, so that the reader may wait for the merge while it does its
    /// part.
    fn all(&mut self, item: impl Fn() -> Item) -> ControlFlow<()> {
        self.end()?;
        for helper in &mut self.helpers {
            helper.batch.items.push(item());
        }
        self.send_helpers()?;
        self.own.apply_alone(item())
    }

    /// Who dissects a connection. Its bucket goes, when first used, to the helper with the
    /// least left to do, unless even that one is behind (`HELPER_BACKLOG`): then the reader
    /// keeps it, and reads on more slowly while the helpers catch up. The output does not
    /// depend on the choice (the merge orders every record by where it happened), but the
    /// choice depends on the helpers' pace: two runs may share the work out differently.
    fn worker(&mut self, segment: &TcpSegment<'_>) -> usize {
        let ends = order(segment.src, segment.dst);
        let bucket = self.hasher.hash_one(ends) as usize % BUCKETS;
        let Some(slot) = self.buckets.get_mut(bucket) else {
            return 0;
        };
        *slot.get_or_insert_with(|| {
            self.helpers
                .iter()
                .enumerate()
                .min_by_key(|(_, h)| h.backlog())
                .filter(|(_, h)| h.backlog() < HELPER_BACKLOG)
                .map_or(0, |(i, _)| i + 1)
        })
    }

    fn segment(&mut self, number: u64, now: Timestamp, segment: &TcpSegment<'_>) {
        self.segments += 1;
        self.bytes += segment.payload.len();
        let worker = self.worker(segment);
        let Some(helper) = worker.checked_sub(1).and_then(|i| self.helpers.get_mut(i)) else {
            self.own.segment(number, now, segment);
            return;
        };
        helper.given += segment.payload.len() as u64;
        let batch = &mut helper.batch;
        let start = batch.payloads.len();
        batch.payloads.extend_from_slice(segment.payload);
        batch.items.push(Item::Segment {
            number,
            now,
            head: TcpSegment {
                payload: &[],
                ..*segment
            },
            payload: start..batch.payloads.len(),
        });
    }

    /// Sends the round once it is full; stops reading when the workers are gone.
    fn end_if_full(&mut self) -> ControlFlow<()> {
        if self.segments < ROUND_SEGMENTS && self.bytes < ROUND_BYTES {
            return ControlFlow::Continue(());
        }
        self.end()
    }

    /// Ends the round: the helpers' batches go first, then the reader's records.
    fn end(&mut self) -> ControlFlow<()> {
        self.segments = 0;
        self.bytes = 0;
        self.send_helpers()?;
        self.own.end_round()
    }

    fn send_helpers(&mut self) -> ControlFlow<()> {
        for helper in &mut self.helpers {
            let next = self.reusable.try_recv().unwrap_or_default();
            if helper
                .input
                .send(std::mem::replace(&mut helper.batch, next))
                .is_err()
            {
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
struct Worker {
    table: FlowTable,
    connections: Connections<Recorder>,
}

impl Worker {
    fn segment(&mut self, number: u64, now: Timestamp, segment: &TcpSegment<'_>) {
        self.connections.out.at(number, SEGMENT);
        self.table.set_now(now);
        self.table.handle(segment, &mut self.connections);
    }

    /// An item of a batch, whose segments' payloads are in `payloads`.
    fn apply(&mut self, item: Item, payloads: &[u8]) {
        match item {
            Item::Segment {
                number,
                now,
                head,
                payload,
            } => {
                let payload = payloads.get(payload).unwrap_or_default();
                self.segment(number, now, &TcpSegment { payload, ..head });
            }
            Item::Sweep { number, now } => {
                self.connections.out.at(number, SWEEP);
                self.table.set_now(now);
                self.table.sweep(&mut self.connections);
            }
            Item::KeyLog(text) => self.connections.keylog(&text),
            Item::End { now } => {
                self.connections.out.at(u64::MAX, SWEEP);
                self.table.set_now(now);
                self.table.finish(&mut self.connections);
            }
        }
    }

    /// Sends the round's records; `Break` when the merge is gone.
    fn end_round(&mut self) -> ControlFlow<()> {
        if self.connections.out.send(true) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    /// The reader's part of a round the helpers already have, ended: its records go out as they
    /// come, waiting for room, instead of being held until the round is sent.
    fn apply_alone(&mut self, item: Item) -> ControlFlow<()> {
        self.connections.out.chunks.set_open(false);
        self.apply(item, &[]);
        let sent = self.end_round();
        self.connections.out.chunks.set_open(true);
        sent
    }
}

/// A helper's thread: batches of segments in, tagged session events out.
fn work(
    mut worker: Worker,
    batches: Receiver<Batch>,
    spent: SyncSender<Batch>,
    done: Arc<AtomicU64>,
) -> TcpStats {
    for mut batch in batches {
        let given = batch.payloads.len() as u64;
        for item in batch.items.drain(..) {
            worker.apply(item, &batch.payloads);
        }
        batch.payloads.clear();
        done.fetch_add(given, Ordering::Relaxed);
        // A full return queue means the reader has enough: this one is freed.
        let _ = spent.try_send(batch);
        if worker.end_round().is_break() {
            break;
        }
    }
    worker.table.stats
}

/// Where a worker's chunks of records go, to the merge.
enum Outbox {
    /// The reader's own. While it reads a round, its chunks are held: the merge may be waiting
    /// for a helper's part of that round, which the reader has yet to send, so the reader must
    /// not wait for the merge then. Once the round's batches are sent (`open` false), what is
    /// held goes out, and the reader waits for room like a helper.
    Reader {
        chunks: SyncSender<Chunk>,
        held: Vec<Chunk>,
        open: bool,
    },
    /// A helper's: at most `CHUNKS_IN_FLIGHT` wait for the merge.
    Helper(SyncSender<Chunk>),
}

impl Outbox {
    /// False when the merge is gone.
    fn send(&mut self, chunk: Chunk) -> bool {
        match self {
            Outbox::Reader { chunks, held, open } => {
                let round_end = chunk.round_end;
                held.push(chunk);
                if *open && !round_end {
                    return true;
                }
                held.drain(..).all(|chunk| chunks.send(chunk).is_ok())
            }
            Outbox::Helper(chunks) => chunks.send(chunk).is_ok(),
        }
    }

    /// The reader's round is open (its helpers' batches not yet sent), or not.
    fn set_open(&mut self, is_open: bool) {
        if let Outbox::Reader { open, .. } = self {
            *open = is_open;
        }
    }
}

/// A worker's [`Events`]: records each event with its tag, and sends them in chunks.
struct Recorder {
    number: u64,
    phase: u8,
    /// The number of the segment that opened each open flow.
    births: HashMap<u64, u64, ahash::RandomState>,
    records: Vec<Tagged>,
    chunks: Outbox,
}

impl Recorder {
    fn new(chunks: Outbox) -> Recorder {
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
        self.chunks.send(Chunk { records, round_end })
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
