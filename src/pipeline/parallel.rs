//! The pipeline on several threads, with the output of one.
//!
//! The calling thread is the reader: it reads the sources and decodes each frame. Each worker
//! has its own flow table and [`Connections`] (reassembly, TLS, dissectors, MIME parsing: the
//! costly part) and records what they report, tagged with where in the capture it happened.
//! The reader is a worker too: it dissects its own share of the connections as it reads them,
//! while the bytes are fresh in its cache, and sends the other segments to the helper threads,
//! in rounds of a few thousand. Between rounds it merges each round's records, from every
//! worker in capture order, into the one [`Sessions`], which numbers sessions and messages and
//! feeds the outputs as a single thread would. So two threads run on two cores: with the merge
//! on a thread of its own, three busy threads shared them, and on the TLS bench file (where
//! the merge is a third of the work) the others often waited for it while a core stood idle.
//! (Before that, with the reader apart from two workers, four threads shared two cores.)
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

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::{ControlFlow, Range};
use std::panic;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
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
/// Records a helper sends at once: the end of the capture (or a sweep) can end every open
/// flow in one go, and their records must not pile up. (The reader's own wait in its queue
/// until it merges: a few rounds' worth, or what a sweep of its share of the flows reports.)
const CHUNK_RECORDS: usize = 1024;
/// Connections are hashed into this many buckets, each given to a worker when first used.
const BUCKETS: usize = 4096;
/// A new bucket goes to a helper that has fewer rounds than this left to do (half of what may
/// queue for it), else the reader keeps it. Counted in rounds, not bytes: a round of small TLS
/// records holds far fewer bytes than a mebibyte yet costs as much, and a mark in bytes was
/// never reached there, so the helper was given everything. (2 and 6 rounds were no faster.)
const HELPER_BACKLOG: u64 = (ROUNDS_IN_FLIGHT / 2) as u64;
/// Chunks queued for the merge, per helper: as many as rounds, so that a helper is not held
/// back while the reader reads a round before merging again.
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
        let mut handles = Vec::new();
        let mut merge = Merge::new(sessions);
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
        let own = new_worker(Outbox::Reader(VecDeque::new()));
        for _ in 1..workers {
            let (chunks, output) = sync_channel(CHUNKS_IN_FLIGHT);
            merge.add(output);
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
        let rounds = Rounds::new(own, helpers, reusable, merge);
        let (mut report, keys, own) = read(decoder, sources, rounds, setup.keys, watch);
        report.tcp.add(&own);
        // A thread that panicked takes the run down as one thread's panic would: its output
        // would be silently short otherwise.
        for handle in handles {
            let stats = handle.join().unwrap_or_else(|e| panic::resume_unwind(e));
            report.tcp.add(&stats);
        }
        (report, keys)
    })
}

/// The reader: reads every source, decodes, shares the segments out by connection, and merges
/// what the workers report.
fn read<S: SessionSink>(
    mut decoder: Decoder,
    sources: &mut [Box<dyn PacketSource>],
    mut rounds: Rounds<'_, S>,
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
            // Records come out a round at a time here (each merged round is written out).
            Record::Pause => {}
        }
        rounds.end_if_full()
    });
    // Workers that are gone (one panicked) need nothing more.
    let _ = rounds.all(|| Item::End { now: clock.now });
    report.decode = decoder.stats;
    (report, keys, rounds.finish())
}

/// A worker that runs on a thread of its own, as the reader sees it.
struct Helper {
    input: SyncSender<Batch>,
    /// Its share of the round being filled.
    batch: Batch,
    /// Rounds given to it, and those it is done with: what it has still to do.
    given: u64,
    done: Arc<AtomicU64>,
}

impl Helper {
    fn backlog(&self) -> u64 {
        self.given.saturating_sub(self.done.load(Ordering::Relaxed))
    }
}

/// The round being filled: the reader dissects its own share of the connections as it reads
/// them, gives the rest to the helpers, a batch each per round, and merges what every worker
/// reported as the rounds come back.
struct Rounds<'s, S: SessionSink> {
    own: Worker,
    helpers: Vec<Helper>,
    /// Batches the helpers are done with, emptied: refilled rather than grown anew, which
    /// keeps the reader from allocating what the helpers free.
    reusable: Receiver<Batch>,
    merge: Merge<'s, S>,
    segments: usize,
    bytes: usize,
    hasher: ahash::RandomState,
    /// Who has each bucket of connections (0: the reader, then the helpers), once chosen.
    buckets: Vec<Option<usize>>,
}

impl<'s, S: SessionSink> Rounds<'s, S> {
    fn new(
        own: Worker,
        helpers: Vec<Helper>,
        reusable: Receiver<Batch>,
        merge: Merge<'s, S>,
    ) -> Rounds<'s, S> {
        Rounds {
            own,
            helpers,
            reusable,
            merge,
            segments: 0,
            bytes: 0,
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
            buckets: vec![None; BUCKETS],
        }
    }

    /// An item for every worker, in a round of its own: a sweep or the end can end every open
    /// connection at once, and the helpers' records of it go to the merge as they come.
    fn all(&mut self, item: impl Fn() -> Item) -> ControlFlow<()> {
        self.end()?;
        for helper in &mut self.helpers {
            helper.batch.items.push(item());
        }
        self.own.apply(item(), &[]);
        self.end()
    }

    /// Who dissects a connection. Its bucket goes, when first used, to the helper with the
    /// fewest rounds left to do, unless even that one is behind (`HELPER_BACKLOG`): then the
    /// reader keeps it, and reads on more slowly while the helpers catch up. The output does
    /// not depend on the choice (the merge orders every record by where it happened), but the
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

    /// Ends the round once it is full; stops reading when a helper is gone.
    fn end_if_full(&mut self) -> ControlFlow<()> {
        if self.segments < ROUND_SEGMENTS && self.bytes < ROUND_BYTES {
            return ControlFlow::Continue(());
        }
        self.end()
    }

    /// Ends the round: the reader's records are complete, the helpers get their batches, and
    /// the merge takes what has come back so far.
    fn end(&mut self) -> ControlFlow<()> {
        self.segments = 0;
        self.bytes = 0;
        self.own.end_round();
        for helper in &mut self.helpers {
            let next = self.reusable.try_recv().unwrap_or_default();
            let batch = std::mem::replace(&mut helper.batch, next);
            helper.given += 1;
            self.merge.hand_over(&mut self.own, &helper.input, batch)?;
        }
        self.merge.sent += 1;
        match self.merge.advance(&mut self.own, false) {
            Advance::Finished => ControlFlow::Break(()),
            Advance::Waited | Advance::Stuck => ControlFlow::Continue(()),
        }
    }

    /// Lets the helpers finish and merges the rest; returns the reader's share's counters.
    fn finish(mut self) -> TcpStats {
        // Closed inputs end the helpers once they are done.
        self.helpers.clear();
        self.merge.sent = u64::MAX;
        while let Advance::Waited = self.merge.advance(&mut self.own, true) {}
        self.own.table.stats
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

    /// Sends the round's records; false when the merge is gone.
    fn end_round(&mut self) -> bool {
        self.connections.out.send(true)
    }

    /// The reader's next chunk of records, if it has one.
    fn next_own(&mut self) -> Option<Chunk> {
        match &mut self.connections.out.chunks {
            Outbox::Reader(chunks) => chunks.pop_front(),
            Outbox::Helper(_) => None,
        }
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
        for item in batch.items.drain(..) {
            worker.apply(item, &batch.payloads);
        }
        batch.payloads.clear();
        done.fetch_add(1, Ordering::Relaxed);
        // A full return queue means the reader has enough: this one is freed.
        let _ = spent.try_send(batch);
        if !worker.end_round() {
            break;
        }
    }
    worker.table.stats
}

/// Where a worker's chunks of records go, to the merge.
enum Outbox {
    /// The reader's own, queued for its merge: at most the rounds the helpers have yet to
    /// report on, since the reader merges while it waits for them.
    Reader(VecDeque<Chunk>),
    /// A helper's: at most `CHUNKS_IN_FLIGHT` wait for the merge.
    Helper(SyncSender<Chunk>),
}

impl Outbox {
    /// False when the merge is gone.
    fn send(&mut self, chunk: Chunk) -> bool {
        match self {
            Outbox::Reader(chunks) => {
                chunks.push_back(chunk);
                true
            }
            Outbox::Helper(chunks) => chunks.send(chunk).is_ok(),
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

/// Each round's records from every worker, in capture order, into the sessions. It runs on
/// the reader's thread, between rounds: two threads on two cores, rather than a third that
/// the others had to wait for when the cores were taken. Flows are known by (their number in
/// the worker, the worker); sessions are numbered as they open.
struct Merge<'s, S: SessionSink> {
    sessions: &'s mut Sessions<S>,
    /// Input 0 is the reader's own, from its queue; the others are the helpers'.
    inputs: Vec<MergeInput>,
    /// The round being merged, and the rounds every helper has been given: a helper's records
    /// of a round may be waited for only once it has that round.
    round: u64,
    sent: u64,
    opened: u64,
}

/// What the merge did before it stopped.
enum Advance {
    /// It waited for a helper's records, and merged what it could.
    Waited,
    /// It needs records that are not there yet, and may not wait for them.
    Stuck,
    /// A worker is done: the input has ended, or a helper stopped.
    Finished,
}

impl<'s, S: SessionSink> Merge<'s, S> {
    fn new(sessions: &'s mut Sessions<S>) -> Merge<'s, S> {
        Merge {
            sessions,
            inputs: vec![MergeInput::new(None)],
            round: 0,
            sent: 0,
            opened: 0,
        }
    }

    fn add(&mut self, output: Receiver<Chunk>) {
        self.inputs.push(MergeInput::new(Some(output)));
    }

    /// Gives a helper its batch. While its queue is full, the reader merges what the helpers
    /// send back, waiting for them as needed (a helper with a full queue may itself be waiting
    /// for the merge); `Break` when the helper is gone.
    fn hand_over(
        &mut self,
        own: &mut Worker,
        input: &SyncSender<Batch>,
        mut batch: Batch,
    ) -> ControlFlow<()> {
        loop {
            batch = match input.try_send(batch) {
                Ok(()) => return ControlFlow::Continue(()),
                Err(TrySendError::Full(batch)) => batch,
                Err(TrySendError::Disconnected(_)) => return ControlFlow::Break(()),
            };
            match self.advance(own, true) {
                Advance::Waited => {}
                // Every round the helpers have was merged: its queue empties without the merge.
                Advance::Stuck => {
                    return match input.send(batch) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    }
                }
                Advance::Finished => return ControlFlow::Break(()),
            }
        }
    }

    /// Merges records while every worker's next one is at hand. With `wait`, waits once for
    /// a helper's records of a round it has.
    fn advance(&mut self, own: &mut Worker, wait: bool) -> Advance {
        let mut waited = false;
        loop {
            // Each input that has no record at hand, and has not ended the round, reads on.
            for input in &mut self.inputs {
                while input.records.as_slice().is_empty() && !input.round_end {
                    let may_wait = wait && !waited && self.round < self.sent;
                    let chunk = match &input.output {
                        None => own.next_own().ok_or(self.sent == u64::MAX),
                        Some(output) if may_wait => output.recv().map_err(|_| true),
                        Some(output) => output
                            .try_recv()
                            .map_err(|e| e == TryRecvError::Disconnected),
                    };
                    match chunk {
                        Ok(chunk) => {
                            waited |= may_wait;
                            input.records = chunk.records.into_iter();
                            input.round_end = chunk.round_end;
                        }
                        Err(true) => return Advance::Finished,
                        Err(false) if waited => return Advance::Waited,
                        Err(false) => return Advance::Stuck,
                    }
                }
            }
            // The worker whose next record comes first (records with the same tag all come
            // from one worker, in its order).
            let next = self
                .inputs
                .iter()
                .enumerate()
                .filter_map(|(w, input)| input.records.as_slice().first().map(|r| (r.0, w)))
                .min();
            let Some((_, worker)) = next else {
                // The round is merged: what it produced is written out.
                self.sessions.pause();
                self.round += 1;
                for input in &mut self.inputs {
                    input.round_end = false;
                }
                continue;
            };
            let Some((_, flow, event)) = self.inputs.get_mut(worker).and_then(|i| i.records.next())
            else {
                continue;
            };
            let event = match event {
                SessionEvent::Opened { mut info, mode } => {
                    self.opened += 1;
                    info.id = self.opened;
                    SessionEvent::Opened { info, mode }
                }
                other => other,
            };
            let workers = self.inputs.len() as u64;
            self.sessions.event(flow * workers + worker as u64, event);
        }
    }
}

/// One worker's records as the merge reads them, a chunk at a time.
struct MergeInput {
    /// A helper's records; `None` for the reader's own.
    output: Option<Receiver<Chunk>>,
    /// Read in place: a record is moved out once, when it is merged (they are large, and
    /// each move of a record another core wrote costs more than its size suggests).
    records: std::vec::IntoIter<Tagged>,
    /// The round's last chunk has been read.
    round_end: bool,
}

impl MergeInput {
    fn new(output: Option<Receiver<Chunk>>) -> MergeInput {
        MergeInput {
            output,
            records: Vec::new().into_iter(),
            round_end: false,
        }
    }
}
