//! TCP: the third stage. The flow table turns [`TcpSegment`]s into per-direction ordered byte
//! streams with explicit gaps, and tells a [`StreamSink`] about them as [`StreamEvent`]s.
//!
//! - Flows are keyed by the unordered pair of endpoints; both directions live in one [`Flow`].
//!   The client is the SYN's sender; without a handshake, the side not on a mail port; without
//!   that, the first sender.
//! - Each direction is a [`stream::HalfStream`] (reordering, overlaps, gaps; see its docs).
//! - A SYN with a new sequence number on the ports of a connection that already ended starts a
//!   new flow, so port reuse does not merge two connections.
//! - Memory is bounded by what is in flight: per-direction limits on waiting pieces, a global
//!   limit on all waiting bytes, and a limit on open flows (when full, the idlest tenth is
//!   evicted). Every limit reached is counted in [`TcpStats`].
//! - Time is capture time; idle flows end after the idle timeout, and ended flows stay a short
//!   while (linger) so that their last ACKs do not open new flows.

mod flow;
mod seq;
mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;

pub use flow::{Direction, Flow, FlowEnd, FlowInfo, RoleEvidence};
pub use seq::SeqNumber;
pub use stream::{HalfStats, HalfStream, StreamLimits};

use crate::capture::Timestamp;
use crate::decode::TcpSegment;
use crate::ports::MailPorts;
use stream::Arrival;

/// One step of a direction's byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// The next bytes, in order. `ts` and `frame` are those of the segment that completed them.
    Data {
        bytes: &'a [u8],
        ts: Timestamp,
        frame: u64,
    },
    /// `len` bytes that were sent but not captured.
    Gap { len: u64, ts: Timestamp },
    /// The sender finished: no data follows in this direction.
    Fin { ts: Timestamp },
    /// The sender reset the connection.
    Rst { ts: Timestamp },
}

/// The stage above the flow table.
pub trait StreamSink {
    fn flow_opened(&mut self, _flow: &FlowInfo) {}
    /// TLS secrets the capture carries (a pcapng Decryption Secrets Block).
    fn keylog(&mut self, _text: &[u8]) {}
    fn stream_event(&mut self, flow: &FlowInfo, direction: Direction, event: StreamEvent<'_>);
    /// The connection is over: no stream event follows for it.
    fn flow_ended(&mut self, _flow: &Flow) {}
    /// The flow leaves the table; its counters are final.
    fn flow_removed(&mut self, _flow: &Flow) {}
    /// The input pauses (see [`crate::capture::Record::Pause`]).
    fn pause(&mut self) {}
}

#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    pub stream: StreamLimits,
    pub max_flows: usize,
    /// All waiting (out-of-order) bytes of all flows together.
    pub max_pending_bytes: usize,
    pub idle_timeout_secs: i64,
    pub linger_secs: i64,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            stream: StreamLimits::default(),
            max_flows: 100_000,
            max_pending_bytes: 64 << 20,
            // Longer than IMAP IDLE's 29 minutes (RFC 2177) so that an idling client survives.
            idle_timeout_secs: 35 * 60,
            linger_secs: 30,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TcpStats {
    pub flows: u64,
    /// Flows closed early because the table was full.
    pub evicted: u64,
    /// Times the global limit on waiting bytes forced a hole to become a gap.
    pub pending_limit_hits: u64,
    /// Segments that arrived after their connection was reset.
    pub after_reset: u64,
}

impl TcpStats {
    /// Counts `other`'s too (the workers of a parallel run each have a table).
    pub fn add(&mut self, other: &TcpStats) {
        self.flows += other.flows;
        self.evicted += other.evicted;
        self.pending_limit_hits += other.pending_limit_hits;
        self.after_reset += other.after_reset;
    }
}

const NANOS: i64 = 1_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey(SocketAddr, SocketAddr);

impl FlowKey {
    fn of(a: SocketAddr, b: SocketAddr) -> FlowKey {
        if a <= b {
            FlowKey(a, b)
        } else {
            FlowKey(b, a)
        }
    }
}

pub struct FlowTable {
    ports: MailPorts,
    limits: TcpLimits,
    /// Boxed: the table's empty slots (and its copy while it grows) then cost a pointer each,
    /// not a whole flow, when a flood fills it.
    flows: HashMap<FlowKey, Box<Flow>, ahash::RandomState>,
    pending_bytes: usize,
    clock: SweepClock,
    pub stats: TcpStats,
}

/// The capture's clock, by the newest timestamp seen, and when idle flows are next looked for:
/// every second of capture time. A parallel run's reader keeps the one clock its workers obey.
#[derive(Clone, Copy, Debug, Default)]
pub struct SweepClock {
    pub now: Timestamp,
    last_sweep: Timestamp,
}

impl SweepClock {
    /// Moves the clock to `ts` (it never goes back); true when a sweep is due (it is then
    /// counted as done).
    pub fn advance(&mut self, ts: Timestamp) -> bool {
        if ts > self.now {
            self.now = ts;
        }
        let due = self.now.0 - self.last_sweep.0 >= NANOS;
        if due {
            self.last_sweep = self.now;
        }
        due
    }
}

impl FlowTable {
    pub fn new(ports: MailPorts, limits: TcpLimits) -> FlowTable {
        FlowTable {
            ports,
            limits,
            flows: HashMap::default(),
            pending_bytes: 0,
            clock: SweepClock::default(),
            stats: TcpStats::default(),
        }
    }

    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    pub fn process(&mut self, segment: &TcpSegment<'_>, sink: &mut dyn StreamSink) {
        if self.clock.advance(segment.ts) {
            self.sweep(sink);
        }
        self.handle(segment, sink);
    }

    /// Sets the clock from outside (a parallel run's reader keeps it for all workers).
    pub fn set_now(&mut self, now: Timestamp) {
        self.clock.now = now;
    }

    /// One segment into its flow, without looking at the clock.
    pub fn handle(&mut self, segment: &TcpSegment<'_>, sink: &mut dyn StreamSink) {
        let key = FlowKey::of(segment.src, segment.dst);
        let known = self
            .flows
            .get(&key)
            .is_some_and(|f| !(f.end.is_some() && is_new_connection(f, segment)));
        if !known {
            self.open_flow(key, segment, sink);
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let before = flow.half[0].pending_bytes() + flow.half[1].pending_bytes();
        update_flow(flow, segment, &self.limits, &mut self.stats, sink);
        let after = flow.half[0].pending_bytes() + flow.half[1].pending_bytes();
        self.pending_bytes = self.pending_bytes + after - before;
        if self.pending_bytes > self.limits.max_pending_bytes {
            self.relieve_pending(segment, sink);
        }
    }

    /// A segment that no flow in the table takes: a new connection, possibly on the ports of
    /// one that ended (which then leaves the table).
    fn open_flow(&mut self, key: FlowKey, segment: &TcpSegment<'_>, sink: &mut dyn StreamSink) {
        if let Some(old) = self.flows.remove(&key) {
            sink.flow_removed(&old);
        }
        if self.flows.len() >= self.limits.max_flows {
            self.evict_idlest(sink);
        }
        let flow = self.new_flow(segment);
        sink.flow_opened(&flow.info);
        self.flows.insert(key, Box::new(flow));
    }

    /// Ends every open flow (the capture is over) and empties the table, in flow order.
    pub fn finish(&mut self, sink: &mut dyn StreamSink) {
        let mut flows: Vec<Box<Flow>> = self.flows.drain().map(|(_, f)| f).collect();
        flows.sort_by_key(|f| f.info.id);
        for mut flow in flows {
            if flow.end.is_none() {
                end_flow(
                    &mut flow,
                    FlowEnd::EndOfCapture,
                    (self.clock.now, 0),
                    None,
                    sink,
                );
            }
            sink.flow_removed(&flow);
        }
        self.pending_bytes = 0;
    }

    fn new_flow(&mut self, segment: &TcpSegment<'_>) -> Flow {
        self.stats.flows += 1;
        let (src, dst) = (segment.src, segment.dst);
        let (src_mail, dst_mail) = (
            self.ports.is_mail(src.port()),
            self.ports.is_mail(dst.port()),
        );
        let ((client, server), roles) = if segment.flags.syn {
            let pair = if segment.flags.ack {
                (dst, src)
            } else {
                (src, dst)
            };
            (pair, RoleEvidence::Handshake)
        } else if dst_mail && !src_mail {
            ((src, dst), RoleEvidence::Port)
        } else if src_mail && !dst_mail {
            ((dst, src), RoleEvidence::Port)
        } else {
            ((src, dst), RoleEvidence::FirstSender)
        };
        Flow {
            info: FlowInfo {
                id: self.stats.flows,
                client,
                server,
                service: self.ports.service(server.port()),
                roles,
            },
            first_ts: segment.ts,
            last_ts: segment.ts,
            half: Default::default(),
            end: None,
            client_isn: None,
        }
    }

    /// Ends flows idle past the timeout and removes ended flows past the linger time, in flow
    /// order so that the output does not depend on hash order.
    pub fn sweep(&mut self, sink: &mut dyn StreamSink) {
        self.clock.last_sweep = self.clock.now;
        let now = self.clock.now;
        let idle = self.limits.idle_timeout_secs * NANOS;
        let linger = self.limits.linger_secs * NANOS;
        let mut due: Vec<(u64, FlowKey)> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                let quiet = now.0 - f.last_ts.0;
                if f.end.is_some() {
                    quiet >= linger
                } else {
                    quiet >= idle
                }
            })
            .map(|(k, f)| (f.info.id, *k))
            .collect();
        due.sort_unstable_by_key(|(id, _)| *id);
        for (_, key) in due {
            self.remove(key, FlowEnd::IdleTimeout, sink);
        }
    }

    /// The table is full: the tenth of the flows that were quiet longest make room.
    fn evict_idlest(&mut self, sink: &mut dyn StreamSink) {
        self.sweep(sink);
        if self.flows.len() < self.limits.max_flows {
            return;
        }
        let mut by_age: Vec<(Timestamp, u64, FlowKey)> = self
            .flows
            .iter()
            .map(|(k, f)| (f.last_ts, f.info.id, *k))
            .collect();
        let count = (self.limits.max_flows / 10).max(1).min(by_age.len());
        let nth = count - 1;
        by_age.select_nth_unstable_by_key(nth, |(ts, id, _)| (*ts, *id));
        let mut victims: Vec<(u64, FlowKey)> = by_age
            .iter()
            .take(count)
            .map(|(_, id, k)| (*id, *k))
            .collect();
        victims.sort_unstable_by_key(|(id, _)| *id);
        for (_, key) in victims {
            self.stats.evicted += 1;
            self.remove(key, FlowEnd::Evicted, sink);
        }
    }

    fn remove(&mut self, key: FlowKey, reason: FlowEnd, sink: &mut dyn StreamSink) {
        if let Some(mut flow) = self.flows.remove(&key) {
            self.pending_bytes -= flow.half[0].pending_bytes() + flow.half[1].pending_bytes();
            if flow.end.is_none() {
                end_flow(&mut flow, reason, (self.clock.now, 0), None, sink);
            }
            sink.flow_removed(&flow);
        }
    }

    /// Over the global limit on waiting bytes: the flow holding the most gives up its oldest
    /// hole, until the total fits.
    fn relieve_pending(&mut self, segment: &TcpSegment<'_>, sink: &mut dyn StreamSink) {
        while self.pending_bytes > self.limits.max_pending_bytes {
            let Some(flow) = self.flows.values_mut().max_by_key(|f| {
                (
                    f.half[0].pending_bytes() + f.half[1].pending_bytes(),
                    f.info.id,
                )
            }) else {
                return;
            };
            let [client_half, server_half] = &flow.half;
            let direction = if client_half.pending_bytes() >= server_half.pending_bytes() {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            let Flow { info, half, .. } = &mut **flow;
            let fullest = direction.pick_mut(half);
            let before = fullest.pending_bytes();
            fullest.flush_oldest_hole((segment.ts, segment.frame), &mut |e| {
                sink.stream_event(info, direction, e)
            });
            self.stats.pending_limit_hits += 1;
            self.pending_bytes -= before - fullest.pending_bytes();
        }
    }
}

/// A SYN without ACK whose sequence number differs from the one that opened the flow.
fn is_new_connection(flow: &Flow, segment: &TcpSegment<'_>) -> bool {
    segment.flags.syn && !segment.flags.ack && flow.client_isn != Some(segment.seq)
}

/// Applies one segment to its flow.
fn update_flow(
    flow: &mut Flow,
    segment: &TcpSegment<'_>,
    limits: &TcpLimits,
    stats: &mut TcpStats,
    sink: &mut dyn StreamSink,
) {
    let direction = if segment.src == flow.info.client {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    };
    flow.last_ts = flow.last_ts.max(segment.ts);
    let sending_stats = &mut direction.pick_mut(&mut flow.half).stats;
    sending_stats.packets += 1;
    sending_stats.wire_bytes += u64::from(segment.wire_len);
    if flow.end.is_some() {
        // Lingering after the end: retransmissions and last ACKs, or data after a reset.
        if flow.end == Some(FlowEnd::Reset) {
            stats.after_reset += 1;
            sending_stats.after_reset_bytes += segment.payload.len() as u64;
        }
        return;
    }
    if segment.flags.syn {
        if !segment.flags.ack {
            flow.client_isn.get_or_insert(segment.seq);
        }
        direction.pick_mut(&mut flow.half).on_syn(segment.seq);
    }
    if segment.flags.rst {
        end_flow(
            flow,
            FlowEnd::Reset,
            (segment.ts, segment.frame),
            Some(direction),
            sink,
        );
        return;
    }
    let Flow { info, half, .. } = flow;
    let (sending, receiving) = split_halves(half, direction);
    let arrival = Arrival {
        // A SYN takes one sequence number; data on a SYN comes after it.
        seq: segment.seq + u32::from(segment.flags.syn),
        payload: segment.payload,
        missing: segment.missing,
        fin: segment.flags.fin,
        ts: segment.ts,
        frame: segment.frame,
    };
    sending.on_segment(arrival, &limits.stream, &mut |e| {
        sink.stream_event(info, direction, e)
    });
    if segment.flags.ack {
        let back = direction.reverse();
        receiving.on_peer_ack(segment.ack, segment.ts, segment.frame, &mut |e| {
            sink.stream_event(info, back, e)
        });
    }
    if flow.half.iter().all(HalfStream::fin_delivered) {
        end_flow(flow, FlowEnd::Fin, (segment.ts, segment.frame), None, sink);
    }
}

fn split_halves(
    half: &mut [HalfStream; 2],
    direction: Direction,
) -> (&mut HalfStream, &mut HalfStream) {
    let [a, b] = half;
    match direction {
        Direction::ClientToServer => (a, b),
        Direction::ServerToClient => (b, a),
    }
}

/// Closes both directions (delivering what waits, with gaps for holes), then the reset if
/// there was one, and reports the end.
fn end_flow(
    flow: &mut Flow,
    reason: FlowEnd,
    (ts, frame): (Timestamp, u64),
    reset_by: Option<Direction>,
    sink: &mut dyn StreamSink,
) {
    let Flow { info, half, .. } = flow;
    for direction in [Direction::ClientToServer, Direction::ServerToClient] {
        direction
            .pick_mut(half)
            .close(ts, frame, &mut |e| sink.stream_event(info, direction, e));
    }
    if let Some(direction) = reset_by {
        sink.stream_event(info, direction, StreamEvent::Rst { ts });
    }
    flow.end = Some(reason);
    sink.flow_ended(flow);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;

    #[derive(Default)]
    struct Log {
        opened: Vec<FlowInfo>,
        ended: Vec<(u64, FlowEnd)>,
        gaps: u64,
        data: usize,
    }

    impl StreamSink for Log {
        fn flow_opened(&mut self, flow: &FlowInfo) {
            self.opened.push(flow.clone());
        }
        fn stream_event(&mut self, _: &FlowInfo, _: Direction, event: StreamEvent<'_>) {
            match event {
                StreamEvent::Data { bytes, .. } => self.data += bytes.len(),
                StreamEvent::Gap { .. } => self.gaps += 1,
                _ => {}
            }
        }
        fn flow_ended(&mut self, flow: &Flow) {
            self.ended.push((flow.info.id, flow.end.unwrap()));
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn seg<'a>(
        src: &str,
        dst: &str,
        secs: i64,
        seq: u32,
        flags: &str,
        payload: &'a [u8],
    ) -> TcpSegment<'a> {
        TcpSegment {
            frame: 1,
            ts: Timestamp(secs * NANOS),
            src: addr(src),
            dst: addr(dst),
            seq: SeqNumber(seq),
            ack: SeqNumber(0),
            flags: TcpFlags {
                syn: flags.contains('S'),
                ack: flags.contains('A'),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
            },
            payload,
            missing: 0,
            wire_len: 60,
        }
    }

    #[test]
    fn roles_from_handshake_port_and_first_sender() {
        let mut table = FlowTable::new(MailPorts::default(), TcpLimits::default());
        let mut log = Log::default();
        // A SYN-ACK seen first: its receiver is the client, even though it is sent from port 25.
        table.process(
            &seg("10.0.0.2:25", "10.0.0.1:5000", 0, 1, "SA", b""),
            &mut log,
        );
        // Mid-stream, server speaking first: the mail port tells.
        table.process(
            &seg("10.0.0.2:143", "10.0.0.3:6000", 0, 1, "A", b"* OK"),
            &mut log,
        );
        // Both ports are mail ports: the first sender is taken as the client.
        table.process(
            &seg("10.0.0.4:25", "10.0.0.5:587", 0, 1, "A", b"x"),
            &mut log,
        );
        let got: Vec<_> = log
            .opened
            .iter()
            .map(|f| (f.client.to_string(), f.roles))
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.0.0.1:5000".to_string(), RoleEvidence::Handshake),
                ("10.0.0.3:6000".to_string(), RoleEvidence::Port),
                ("10.0.0.4:25".to_string(), RoleEvidence::FirstSender),
            ]
        );
    }

    #[test]
    fn port_reuse_after_the_end_is_a_new_connection() {
        let mut table = FlowTable::new(MailPorts::default(), TcpLimits::default());
        let mut log = Log::default();
        let (c, s) = ("10.0.0.1:5000", "10.0.0.2:25");
        table.process(&seg(c, s, 0, 100, "S", b""), &mut log);
        table.process(&seg(c, s, 1, 101, "R", b""), &mut log);
        table.process(&seg(c, s, 2, 101, "A", b"after reset"), &mut log);
        table.process(&seg(c, s, 3, 100, "S", b""), &mut log); // retransmitted old SYN: same flow
        table.process(&seg(c, s, 4, 9000, "S", b""), &mut log); // new ISN: new flow
        assert_eq!(log.opened.len(), 2);
        assert_eq!(log.ended, vec![(1, FlowEnd::Reset)]);
        assert_eq!(table.stats.after_reset, 2);
        assert_eq!(log.data, 0, "data after a reset is not delivered");
    }

    #[test]
    fn idle_flows_time_out_and_a_full_table_evicts_the_idlest() {
        let limits = TcpLimits {
            max_flows: 10,
            idle_timeout_secs: 100,
            ..TcpLimits::default()
        };
        let mut table = FlowTable::new(MailPorts::default(), limits);
        let mut log = Log::default();
        for i in 0..25u16 {
            let client = format!("10.0.0.1:{}", 1000 + i);
            table.process(&seg(&client, "10.0.0.2:25", 1, 1, "S", b""), &mut log);
        }
        assert!(table.open_flows() <= 10);
        assert_eq!(table.stats.evicted, 15);
        table.process(
            &seg("10.0.0.9:1", "10.0.0.2:25", 500, 1, "S", b""),
            &mut log,
        );
        assert_eq!(table.open_flows(), 1, "the others timed out");
        assert_eq!(
            log.ended
                .iter()
                .filter(|(_, e)| *e == FlowEnd::IdleTimeout)
                .count(),
            10
        );
    }

    #[test]
    fn global_limit_on_waiting_bytes_turns_holes_into_gaps() {
        let limits = TcpLimits {
            max_pending_bytes: 1000,
            ..TcpLimits::default()
        };
        let mut table = FlowTable::new(MailPorts::default(), limits);
        let mut log = Log::default();
        let chunk = [b'x'; 400];
        for i in 0..4u16 {
            let client = format!("10.0.0.1:{}", 1000 + i);
            table.process(&seg(&client, "10.0.0.2:25", 1, 1, "S", b""), &mut log);
            // 10 bytes missing after the SYN: this data waits.
            table.process(&seg(&client, "10.0.0.2:25", 1, 12, "A", &chunk), &mut log);
        }
        assert!(table.pending_bytes() <= 1000);
        assert_eq!(table.stats.pending_limit_hits, 2);
        assert_eq!(log.gaps, 2);
        assert_eq!(log.data, 800);
    }
}
