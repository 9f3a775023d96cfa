//! Entry points for the fuzz targets (`fuzz/`) and their regression tests
//! (`tests/fuzz_regressions.rs`): each takes arbitrary bytes and runs one stage on them, so a
//! crash found by fuzzing replays here on stable Rust.
//!
//! Stream inputs (the dissectors, TLS) hold both directions of one connection as a run of
//! pieces, each `[flags: u8][len: u16 BE][len bytes]`: flags bit 0 is the direction (1 = server
//! to client), bit 1 makes the piece a gap of `len` missing bytes (no bytes follow). A piece cut
//! short by the end of the input takes what is left. `fuzz/make-seeds` writes the samples'
//! connections in this form.

use std::io::{self, Cursor};
use std::net::SocketAddr;
use std::ops::ControlFlow;

use crate::analysis::{Analyst, Options};
use crate::capture::{FileSource, Frame, LinkType, PacketSource, Timestamp};
use crate::decode::{Decoder, TcpFlags, TcpSegment};
use crate::export::json::JsonWriter;
use crate::mime;
use crate::pipeline::{Analyzer, Config};
use crate::ports::MailPorts;
use crate::proto::room::Room;
use crate::proto::{Dissector, ImapDissector, Pop3Dissector, ProtoEvent, SmtpDissector};
use crate::session::SessionTable;
use crate::tcp::{Direction, FlowInfo, FlowTable, SeqNumber, StreamEvent, StreamSink, TcpLimits};
use crate::tls::handshake::{self, HandshakeReader};
use crate::tls::record::{RecordReader, HANDSHAKE};
use crate::tls::{KeyLog, TlsConnection};

/// The stages, by the name of their fuzz target.
pub const TARGETS: [&str; 11] = [
    "capture",
    "decode",
    "reassembly",
    "tls_records",
    "tls_connection",
    "keylog",
    "smtp",
    "pop3",
    "imap",
    "mime",
    "pipeline",
];

/// Runs the stage of fuzz target `target` on `data`; `keys` are the samples' key logs (so that
/// mutated TLS still decrypts). False for an unknown target.
pub fn run(target: &str, data: &[u8], keys: &KeyLog) -> bool {
    match target {
        "capture" => capture(data),
        "decode" => decode(data),
        "reassembly" => reassembly(data),
        "tls_records" => tls_records(data),
        "tls_connection" => tls_connection(data, keys),
        "keylog" => keylog(data),
        "smtp" => dissect(&mut SmtpDissector::default(), data),
        "pop3" => dissect(&mut Pop3Dissector::default(), data),
        "imap" => dissect(&mut ImapDissector::default(), data),
        "mime" => drop((mime::parse(data), mime::uudecode_blocks(data))),
        "pipeline" => pipeline(data, keys),
        _ => return false,
    }
    true
}

pub enum Piece<'a> {
    Data(Direction, &'a [u8]),
    Gap(Direction, u64),
}

/// The pieces of a stream input, in order.
pub fn pieces(mut input: &[u8]) -> impl Iterator<Item = Piece<'_>> {
    std::iter::from_fn(move || {
        let (&flags, rest) = input.split_first()?;
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (rest.len(), &[][..]),
        };
        let direction = if flags & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        if flags & 2 != 0 {
            input = rest;
            return Some(Piece::Gap(direction, len as u64));
        }
        let (bytes, rest) = rest.split_at(len.min(rest.len()));
        input = rest;
        Some(Piece::Data(direction, bytes))
    })
}

/// A timestamp a millisecond per piece later, so that timing code sees time pass.
fn tick(n: usize) -> Timestamp {
    Timestamp(1_700_000_000_000_000_000 + n as i64 * 1_000_000)
}

/// Hands each piece of a stream input to `each` with its time; returns the time after the last.
fn replay(data: &[u8], mut each: impl FnMut(Piece<'_>, Timestamp)) -> Timestamp {
    let mut n = 0;
    for piece in pieces(data) {
        n += 1;
        each(piece, tick(n));
    }
    tick(n + 1)
}

/// The capture readers (pcap, pcapng, gzip).
pub fn capture(data: &[u8]) {
    let Ok(mut source) = FileSource::from_reader("fuzz", Box::new(Cursor::new(data.to_vec())))
    else {
        return;
    };
    let _ = source.read(&mut |_| ControlFlow::Continue(()));
}

/// The link types `decode` picks from, by the input's first byte.
pub const LINKS: [LinkType; 9] = [
    LinkType::NULL,
    LinkType::RAW_OPENBSD,
    LinkType::ETHERNET,
    LinkType::RAW,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::LINUX_SLL2,
];

/// Link, IP (with fragment reassembly) and TCP header decoding: the first byte picks the link
/// type, the rest is a run of frames `[len: u16 BE][len bytes]` through one decoder, so that
/// fragments can meet.
pub fn decode(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let link = LINKS
        .get(usize::from(pick) % LINKS.len())
        .copied()
        .unwrap_or(LinkType::ETHERNET);
    let mut decoder = Decoder::new(MailPorts::default());
    let mut index = 0;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        index += 1;
        let frame = Frame {
            index,
            ts: tick(index as usize),
            link,
            interface: 0,
            data: bytes,
            orig_len: bytes.len() as u32,
        };
        decoder.decode(&frame);
    }
}

/// What a direction carries at stream offset `offset` in `reassembly`'s inputs.
fn truth(direction: Direction, offset: u64) -> u8 {
    (offset
        .wrapping_mul(31)
        .wrapping_add(direction.index() as u64 * 7)
        % 251) as u8
}

/// Checks every delivered byte against `truth`, on the first connection only (after a reset a
/// later segment may open a new one that starts mid-stream, where offsets mean something else).
#[derive(Default)]
struct ReassemblyOracle {
    flows: u32,
    position: [u64; 2],
}

impl StreamSink for ReassemblyOracle {
    fn flow_opened(&mut self, _flow: &FlowInfo) {
        self.flows += 1;
    }

    fn stream_event(&mut self, _flow: &FlowInfo, direction: Direction, event: StreamEvent<'_>) {
        if self.flows != 1 {
            return;
        }
        let position = direction.pick_mut(&mut self.position);
        match event {
            StreamEvent::Data { bytes, .. } => {
                for (k, &b) in bytes.iter().enumerate() {
                    let at = *position + k as u64;
                    assert_eq!(
                        b,
                        truth(direction, at),
                        "{direction:?} at stream offset {at}"
                    );
                }
                *position += bytes.len() as u64;
            }
            StreamEvent::Gap { len, .. } => *position += len,
            StreamEvent::Fin { .. } | StreamEvent::Rst { .. } => {}
        }
    }
}

/// TCP reassembly with segments in any order, overlapping, duplicated, with FIN and RST
/// anywhere; every byte a direction carries at stream offset `p` is `truth(direction, p)`, so
/// whatever is delivered must be those bytes at those offsets (gaps are allowed, wrong or
/// misplaced bytes are not: it panics). Input: two initial sequence numbers (u32 BE), then
/// segments of 6 bytes: flags (bit 0 server, bit 1 FIN, bit 2 RST), stream offset (u16 BE),
/// length (u16 BE, up to 4095), milliseconds since the segment before.
pub fn reassembly(data: &[u8]) {
    let Some((isn, segments)) = data.split_at_checked(8) else {
        return;
    };
    let isn: [u8; 8] = isn.try_into().unwrap_or_default();
    let [c0, c1, c2, c3, s0, s1, s2, s3] = isn;
    let isn = [
        SeqNumber(u32::from_be_bytes([c0, c1, c2, c3])),
        SeqNumber(u32::from_be_bytes([s0, s1, s2, s3])),
    ];
    let ends: [SocketAddr; 2] = [
        SocketAddr::from(([10, 0, 0, 1], 40000)),
        SocketAddr::from(([10, 0, 0, 2], 25)),
    ];
    let mut table = FlowTable::new(MailPorts::default(), TcpLimits::default());
    let mut oracle = ReassemblyOracle::default();
    let mut ts = tick(0);
    let mut frame = 0;
    let mut send = |direction: Direction, seq: SeqNumber, flags: TcpFlags, payload: &[u8], ts| {
        frame += 1;
        let segment = TcpSegment {
            frame,
            ts,
            src: *direction.pick(&ends),
            dst: *direction.reverse().pick(&ends),
            seq,
            ack: SeqNumber(0),
            flags,
            payload,
            missing: 0,
            wire_len: 54 + payload.len() as u32,
        };
        table.process(&segment, &mut oracle);
    };
    let syn = TcpFlags {
        syn: true,
        ..TcpFlags::default()
    };
    send(Direction::ClientToServer, isn[0], syn, &[], ts);
    let syn_ack = TcpFlags { ack: true, ..syn };
    send(Direction::ServerToClient, isn[1], syn_ack, &[], ts);
    for segment in segments.chunks_exact(6) {
        let [flags, o0, o1, l0, l1, delay]: [u8; 6] = segment.try_into().unwrap_or_default();
        let direction = if flags & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let offset = u16::from_be_bytes([o0, o1]);
        let len = u16::from_be_bytes([l0, l1]) & 0x0fff;
        let payload: Vec<u8> = (0..u64::from(len))
            .map(|k| truth(direction, u64::from(offset) + k))
            .collect();
        ts = Timestamp(ts.0 + i64::from(delay) * 1_000_000);
        let flags = TcpFlags {
            ack: true,
            fin: flags & 2 != 0,
            rst: flags & 4 != 0,
            ..TcpFlags::default()
        };
        let seq = *direction.pick(&isn) + 1 + u32::from(offset);
        send(direction, seq, flags, &payload, ts);
    }
    table.finish(&mut oracle);
}

/// TLS record framing and handshake parsing: records are read from the input (in two parts,
/// so that a record split across reads is exercised), handshake records' bodies go through the
/// handshake reader, and each message through the parser of its type.
pub fn tls_records(data: &[u8]) {
    let mut records = RecordReader::default();
    let mut messages = HandshakeReader::default();
    let (first, second) = data.split_at(data.len() / 3);
    for part in [first, second] {
        let framed = records.push(part, Timestamp(0), &mut |record| {
            if record.content_type != HANDSHAKE {
                return;
            }
            messages.push(&record.body, &mut |kind, body| match kind {
                handshake::CLIENT_HELLO => drop(handshake::client_hello(body)),
                handshake::SERVER_HELLO => drop(handshake::server_hello(body)),
                handshake::CERTIFICATE => {
                    drop(handshake::certificate(body, false));
                    drop(handshake::certificate(body, true));
                }
                _ => {}
            });
        });
        if framed.is_err() {
            break;
        }
    }
}

/// A TLS connection's two directions (a stream input) through handshake tracking, key
/// derivation and record decryption: once with the key log as it is, once as a live capture
/// whose keys may still come, where records wait in a small room that must be whole again
/// once the connection is gone.
pub fn tls_connection(data: &[u8], keys: &KeyLog) {
    let room = Room::new(4096);
    for waiting_room in [None, Some(room.clone())] {
        let mut tls = TlsConnection::new(waiting_room);
        let mut out = Vec::new();
        replay(data, |piece, ts| {
            match piece {
                Piece::Data(direction, bytes) => tls.data(direction, bytes, ts, keys, &mut out),
                Piece::Gap(direction, len) => tls.gap(direction, len, ts, &mut out),
            }
            out.clear();
        });
        tls.end(keys, &mut out);
    }
    assert_eq!(room.take(room.limit()), room.limit(), "room given back");
}

/// The key log parser, fed in two parts so that a line split across reads is exercised.
pub fn keylog(data: &[u8]) {
    let mut keys = KeyLog::default();
    let (first, second) = data.split_at(data.len() / 2);
    keys.add(first);
    keys.add(second);
    keys.finish();
    let random = [0u8; 32];
    drop((keys.secrets(&random), keys.lines_for(&random)));
}

/// A dissector on both directions of a connection (a stream input), then the connection's end.
pub fn dissect(dissector: &mut dyn Dissector, data: &[u8]) {
    let mut out: Vec<ProtoEvent> = Vec::new();
    let end = replay(data, |piece, ts| {
        match piece {
            Piece::Data(direction, bytes) => dissector.data(direction, bytes, ts, &mut out),
            Piece::Gap(direction, len) => dissector.gap(direction, len, ts, &mut out),
        }
        out.clear();
    });
    dissector.end(end, &mut out);
}

/// The whole pipeline on a capture: reading, decoding, reassembly, TLS, dissection, analysis
/// and the NDJSON writer.
pub fn pipeline(data: &[u8], keys: &KeyLog) {
    let Ok(source) = FileSource::from_reader("fuzz", Box::new(Cursor::new(data.to_vec()))) else {
        return;
    };
    let mut sources: Vec<Box<dyn PacketSource>> = vec![Box::new(source)];
    let writer = JsonWriter::new(io::sink());
    let mut table = SessionTable::new(Analyst::new(writer, Options::default()));
    table.keys = keys.clone();
    Analyzer::new(Config::default()).run(&mut sources, &mut table);
}
