//! One direction of a connection as an ordered byte stream with explicit gaps.
//!
//! Stream offsets count from the first byte after the SYN (or from the first segment seen, for
//! a connection picked up mid-stream) and never wrap; sequence numbers are turned into offsets
//! once, on arrival.
//!
//! Invariant: every offset in `[0, delivered)` was handed out exactly once, in order, as data or
//! as part of a gap; `pending` holds non-overlapping pieces that all start after `delivered`.
//!
//! Overlaps: the first copy to arrive wins. Bytes already delivered cannot change, and a piece
//! already waiting in `pending` keeps its bytes; a later copy only fills what nobody covered yet.
//! When a later copy disagrees with a waiting one, that is counted as a conflict: an evasion
//! attempt or a broken stack. (Bytes already delivered are not kept, so a retransmission that
//! disagrees with them is counted as a retransmission but cannot be compared.)
//!
//! A hole becomes a gap only with evidence that its bytes will not come: the peer acknowledged
//! data past it (the receiver got bytes the capture missed), a buffer limit forced it, or the
//! connection ended.

use std::collections::BTreeMap;

use super::{SeqNumber, StreamEvent};
use crate::capture::Timestamp;

/// Per-direction buffering limits; reaching one turns the oldest hole into a gap.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    pub max_pending_bytes: usize,
    pub max_pending_pieces: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_pending_bytes: 4 << 20,
            max_pending_pieces: 4096,
        }
    }
}

/// An acknowledgement further ahead than this is not believed (a corrupt or forged ACK).
const MAX_ACK_LEAD: i64 = 1 << 30;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HalfStats {
    pub packets: u64,
    pub wire_bytes: u64,
    /// Payload bytes delivered as data (the reassembled stream, gaps excluded).
    pub bytes: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Payload bytes that arrived again (retransmissions and overlaps).
    pub retransmitted_bytes: u64,
    /// Overlapping copies whose bytes differ.
    #[serde(rename = "overlap_conflicts")]
    pub conflicts: u64,
    /// Times a buffering limit forced a hole to become a gap.
    pub limit_hits: u64,
    /// Payload bytes sent after the connection was reset (ignored).
    pub after_reset_bytes: u64,
}

/// A piece waiting for the bytes before it. `missing` bytes after `data` were announced but not
/// captured (snapshot length): they are delivered as a gap.
#[derive(Debug)]
struct Piece {
    data: Vec<u8>,
    missing: u64,
}

impl Piece {
    fn len(&self) -> u64 {
        self.data.len() as u64 + self.missing
    }
}

/// What a segment brings to its direction, positioned by sequence number.
pub(super) struct Arrival<'a> {
    pub seq: SeqNumber,
    pub payload: &'a [u8],
    pub missing: u32,
    pub fin: bool,
    pub ts: Timestamp,
    pub frame: u64,
}

#[derive(Debug, Default)]
pub struct HalfStream {
    /// The sequence number of stream offset 0; unset until this direction's first segment.
    base: Option<SeqNumber>,
    delivered: u64,
    pending: BTreeMap<u64, Piece>,
    pending_bytes: usize,
    /// Highest offset the peer acknowledged.
    peer_acked: u64,
    fin_at: Option<u64>,
    fin_delivered: bool,
    pub stats: HalfStats,
}

type Emit<'e> = dyn FnMut(StreamEvent<'_>) + 'e;

impl HalfStream {
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    pub fn fin_delivered(&self) -> bool {
        self.fin_delivered
    }

    /// A SYN fixes offset 0 at the byte after it.
    pub(super) fn on_syn(&mut self, seq: SeqNumber) {
        if self.base.is_none() {
            self.base = Some(seq + 1);
        }
    }

    fn next_seq(&self, base: SeqNumber) -> SeqNumber {
        base + self.delivered as u32
    }

    pub(super) fn on_segment(
        &mut self,
        arrival: Arrival<'_>,
        limits: &StreamLimits,
        emit: &mut Emit<'_>,
    ) {
        let base = *self.base.get_or_insert(arrival.seq);
        let mut start = self.delivered as i64 + arrival.seq.distance_from(self.next_seq(base));
        let mut payload = arrival.payload;
        let mut missing = u64::from(arrival.missing);
        if arrival.fin && self.fin_at.is_none() {
            let end = start + payload.len() as i64 + missing as i64;
            self.fin_at = u64::try_from(end).ok();
        }
        // Nothing is sent after a FIN; bytes past it are not stream data.
        if let Some(fin_at) = self.fin_at {
            let room = (fin_at as i64 - start).max(0) as u64;
            let cut = room.min(payload.len() as u64) as usize;
            payload = payload.get(..cut).unwrap_or(payload);
            missing = missing.min(room - cut as u64);
        }
        // Bytes before `delivered` (or before offset 0) arrived already.
        let behind = (self.delivered as i64 - start).max(0) as u64;
        if behind > 0 {
            let total = payload.len() as u64 + missing;
            self.stats.retransmitted_bytes += behind.min(total);
            let cut = behind.min(payload.len() as u64) as usize;
            payload = payload.get(cut..).unwrap_or_default();
            missing = missing.saturating_sub(behind - cut as u64);
            start = self.delivered as i64;
        }
        let start = start as u64;
        let at = (arrival.ts, arrival.frame);
        if payload.is_empty() && missing == 0 {
            // Nothing new: a pure ACK, a retransmission, or a bare FIN.
        } else if start == self.delivered && self.pending.is_empty() {
            // The common case: in order, nothing waiting. Deliver without copying.
            self.deliver(payload, missing, at, emit);
        } else {
            self.insert(start, payload, missing);
        }
        self.drain(at, emit);
        self.resolve_acked_holes(at, emit);
        self.enforce(limits, at, emit);
    }

    /// The other direction acknowledged up to `ack`.
    pub(super) fn on_peer_ack(
        &mut self,
        ack: SeqNumber,
        ts: Timestamp,
        frame: u64,
        emit: &mut Emit<'_>,
    ) {
        let Some(base) = self.base else { return };
        let lead = ack.distance_from(self.next_seq(base));
        if lead <= 0 || lead > MAX_ACK_LEAD {
            return;
        }
        self.peer_acked = self.peer_acked.max(self.delivered + lead as u64);
        self.resolve_acked_holes((ts, frame), emit);
    }

    /// Ends the stream: waiting pieces are delivered with gaps for the holes between them, and
    /// a FIN the capture saw is delivered after them.
    pub(super) fn close(&mut self, ts: Timestamp, frame: u64, emit: &mut Emit<'_>) {
        let at = (ts, frame);
        while let Some(&first) = self.pending.keys().next() {
            self.gap_to(first, at, emit);
            self.drain(at, emit);
        }
        if let Some(fin_at) = self.fin_at {
            self.gap_to(fin_at, at, emit);
            self.drain(at, emit);
        }
    }

    fn deliver(
        &mut self,
        data: &[u8],
        missing: u64,
        (ts, frame): (Timestamp, u64),
        emit: &mut Emit<'_>,
    ) {
        if !data.is_empty() {
            self.delivered += data.len() as u64;
            self.stats.bytes += data.len() as u64;
            emit(StreamEvent::Data {
                bytes: data,
                ts,
                frame,
            });
        }
        if missing > 0 {
            self.emit_gap(missing, ts, emit);
        }
    }

    fn emit_gap(&mut self, len: u64, ts: Timestamp, emit: &mut Emit<'_>) {
        self.delivered += len;
        self.stats.gaps += 1;
        self.stats.gap_bytes += len;
        emit(StreamEvent::Gap { len, ts });
    }

    /// Declares the bytes up to `offset` lost.
    fn gap_to(&mut self, offset: u64, at: (Timestamp, u64), emit: &mut Emit<'_>) {
        if offset > self.delivered {
            self.emit_gap(offset - self.delivered, at.0, emit);
        }
    }

    /// Delivers the waiting pieces that now follow on, then the FIN if the stream reached it.
    fn drain(&mut self, at: (Timestamp, u64), emit: &mut Emit<'_>) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.delivered {
                break;
            }
            let piece = entry.remove();
            self.pending_bytes -= piece.data.len();
            self.deliver(&piece.data, piece.missing, at, emit);
        }
        if !self.fin_delivered && self.fin_at.is_some_and(|fin| fin <= self.delivered) {
            self.fin_delivered = true;
            emit(StreamEvent::Fin { ts: at.0 });
        }
    }

    /// Holes that the peer acknowledged were received by the peer and missed by the capture.
    fn resolve_acked_holes(&mut self, at: (Timestamp, u64), emit: &mut Emit<'_>) {
        while let Some(&first) = self.pending.keys().next() {
            if first > self.peer_acked {
                break;
            }
            self.gap_to(first, at, emit);
            self.drain(at, emit);
        }
        if self.pending.is_empty() {
            if let Some(fin_at) = self
                .fin_at
                .filter(|&f| f > self.delivered && f < self.peer_acked)
            {
                self.gap_to(fin_at, at, emit);
                self.drain(at, emit);
            }
        }
    }

    fn enforce(&mut self, limits: &StreamLimits, at: (Timestamp, u64), emit: &mut Emit<'_>) {
        while self.pending_bytes > limits.max_pending_bytes
            || self.pending.len() > limits.max_pending_pieces
        {
            self.stats.limit_hits += 1;
            self.flush_oldest_hole(at, emit);
        }
    }

    /// Gives up on the first hole: it becomes a gap and what follows it is delivered. Called when
    /// a limit is reached, here or in the flow table.
    pub(super) fn flush_oldest_hole(&mut self, at: (Timestamp, u64), emit: &mut Emit<'_>) {
        if let Some(&first) = self.pending.keys().next() {
            self.gap_to(first, at, emit);
            self.drain(at, emit);
        }
    }

    /// Puts a piece that starts at or after `delivered` into `pending`, filling only what no
    /// earlier copy covers (first copy wins) and counting disagreements.
    fn insert(&mut self, start: u64, data: &[u8], missing: u64) {
        let end = start + data.len() as u64 + missing;
        let mut cursor = start;
        // Pieces that may overlap [start, end): the one starting before `start`, and those inside.
        let before = self
            .pending
            .range(..start)
            .next_back()
            .map(|(&k, p)| (k, k + p.len()));
        let inside: Vec<(u64, u64)> = self
            .pending
            .range(start..end)
            .map(|(&k, p)| (k, k + p.len()))
            .collect();
        let mut fills: Vec<(u64, u64)> = Vec::new();
        for (k, k_end) in before.into_iter().chain(inside) {
            if k_end <= cursor {
                continue;
            }
            if k > cursor {
                fills.push((cursor, k.min(end)));
            }
            let overlap = (cursor.max(k), k_end.min(end));
            if overlap.0 < overlap.1 {
                self.stats.retransmitted_bytes += overlap.1 - overlap.0;
                if self.differs(k, overlap, start, data) {
                    self.stats.conflicts += 1;
                }
            }
            cursor = cursor.max(k_end);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            fills.push((cursor, end));
        }
        let captured_end = start + data.len() as u64;
        for (from, to) in fills {
            let captured =
                (from.min(captured_end) - start) as usize..(to.min(captured_end) - start) as usize;
            let piece = Piece {
                data: data.get(captured).unwrap_or_default().to_vec(),
                missing: to - from.max(captured_end).min(to),
            };
            self.pending_bytes += piece.data.len();
            self.pending.insert(from, piece);
        }
    }

    /// Whether the captured bytes of the new piece and of the waiting piece at `key` differ
    /// within `overlap`.
    fn differs(&self, key: u64, overlap: (u64, u64), start: u64, data: &[u8]) -> bool {
        let Some(old) = self.pending.get(&key) else {
            return false;
        };
        let captured_end = (start + data.len() as u64).min(key + old.data.len() as u64);
        let (from, to) = (overlap.0, overlap.1.min(captured_end));
        from < to
            && data.get((from - start) as usize..(to - start) as usize)
                != old.data.get((from - key) as usize..(to - key) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a half stream emitted, with data merged into runs for easy comparison.
    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        Data(Vec<u8>),
        Gap(u64),
        Fin,
    }

    fn record(out: &mut Vec<Out>) -> impl FnMut(StreamEvent<'_>) + '_ {
        move |e| match e {
            StreamEvent::Data { bytes, .. } => match out.last_mut() {
                Some(Out::Data(d)) => d.extend_from_slice(bytes),
                _ => out.push(Out::Data(bytes.to_vec())),
            },
            StreamEvent::Gap { len, .. } => out.push(Out::Gap(len)),
            StreamEvent::Fin { .. } => out.push(Out::Fin),
            StreamEvent::Rst { .. } => {}
        }
    }

    fn arrive(
        h: &mut HalfStream,
        out: &mut Vec<Out>,
        seq: u32,
        payload: &[u8],
        missing: u32,
        fin: bool,
    ) {
        let arrival = Arrival {
            seq: SeqNumber(seq),
            payload,
            missing,
            fin,
            ts: Timestamp(0),
            frame: 0,
        };
        h.on_segment(arrival, &StreamLimits::default(), &mut record(out));
    }

    #[test]
    fn reorders_and_first_copy_wins() {
        let (mut h, mut out) = (HalfStream::default(), Vec::new());
        h.on_syn(SeqNumber(u32::MAX - 2)); // the stream starts at u32::MAX - 1 and wraps
        arrive(&mut h, &mut out, 2, b"world", 0, false); // offset 4: waits
        arrive(&mut h, &mut out, 1, b"XwoRLD", 0, false); // overlaps the waiting copy, differs
        assert!(out.is_empty());
        arrive(&mut h, &mut out, u32::MAX - 1, b"hel", 0, false);
        assert_eq!(out, vec![Out::Data(b"helXworld".to_vec())]);
        assert_eq!(h.stats.conflicts, 1);
        assert_eq!(h.stats.retransmitted_bytes, 5);
    }

    #[test]
    fn acknowledged_hole_becomes_gap() {
        let (mut h, mut out) = (HalfStream::default(), Vec::new());
        arrive(&mut h, &mut out, 1000, b"abc", 0, false);
        arrive(&mut h, &mut out, 1013, b"xyz", 0, false); // 10 bytes missing before it
        assert_eq!(out, vec![Out::Data(b"abc".to_vec())]);
        h.on_peer_ack(SeqNumber(1016), Timestamp(0), 0, &mut record(&mut out));
        assert_eq!(
            out,
            vec![
                Out::Data(b"abc".to_vec()),
                Out::Gap(10),
                Out::Data(b"xyz".to_vec())
            ]
        );
    }

    #[test]
    fn truncated_segment_is_data_then_gap_and_fin_comes_last() {
        let (mut h, mut out) = (HalfStream::default(), Vec::new());
        arrive(&mut h, &mut out, 0, b"ab", 0, false);
        arrive(&mut h, &mut out, 6, b"", 0, true); // FIN after a hole
        arrive(&mut h, &mut out, 2, b"cd", 2, false); // snaplen cut its last 2 bytes
        assert_eq!(
            out,
            vec![Out::Data(b"abcd".to_vec()), Out::Gap(2), Out::Fin]
        );
        arrive(&mut h, &mut out, 6, b"late", 0, false); // after FIN: not stream data
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn close_turns_holes_into_gaps_in_order() {
        let (mut h, mut out) = (HalfStream::default(), Vec::new());
        arrive(&mut h, &mut out, 100, b"a", 0, false);
        arrive(&mut h, &mut out, 105, b"b", 0, false);
        arrive(&mut h, &mut out, 103, b"c", 0, false);
        h.close(Timestamp(0), 0, &mut record(&mut out));
        let want = vec![
            Out::Data(b"a".to_vec()),
            Out::Gap(2),
            Out::Data(b"c".to_vec()),
            Out::Gap(1),
            Out::Data(b"b".to_vec()),
        ];
        assert_eq!(out, want);
        assert_eq!(h.pending_bytes(), 0);
    }

    #[test]
    fn limit_forces_the_oldest_hole() {
        let (mut h, mut out) = (HalfStream::default(), Vec::new());
        let limits = StreamLimits {
            max_pending_bytes: 4,
            max_pending_pieces: 100,
        };
        let add = |h: &mut HalfStream, out: &mut Vec<Out>, seq, data: &[u8]| {
            let arrival = Arrival {
                seq: SeqNumber(seq),
                payload: data,
                missing: 0,
                fin: false,
                ts: Timestamp(0),
                frame: 0,
            };
            h.on_segment(arrival, &limits, &mut record(out));
        };
        add(&mut h, &mut out, 0, b"a");
        add(&mut h, &mut out, 10, b"bbb");
        add(&mut h, &mut out, 20, b"cc"); // 5 bytes waiting > 4
        assert_eq!(
            out,
            vec![
                Out::Data(b"a".to_vec()),
                Out::Gap(9),
                Out::Data(b"bbb".to_vec())
            ]
        );
        assert_eq!(h.stats.limit_hits, 1);
        assert_eq!(h.pending_bytes(), 2);
    }
}
