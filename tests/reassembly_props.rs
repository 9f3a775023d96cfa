//! Property tests of TCP reassembly on a real stream: the client bytes of a real SMTP session
//! (samples/smtp-plain.pcap, Python smtplib against Postfix), cut into segments and replayed in
//! any order, duplicated and overlapping, must come back byte for byte; a dropped segment must
//! come back as exactly one gap of its size at its place.

mod common;

use std::sync::OnceLock;

use etherparse::PacketBuilder;
use mailscope::capture::{LinkType, MemoryFrame, MemorySource, Timestamp};
use mailscope::pipeline::Config;
use mailscope::tcp::Direction;
use proptest::prelude::*;

const CLIENT: [u8; 4] = [192, 0, 2, 1];
const SERVER: [u8; 4] = [192, 0, 2, 25];
const CLIENT_PORT: u16 = 40000;

/// The longest client-to-server stream of the sample.
fn real_stream() -> &'static [u8] {
    static STREAM: OnceLock<Vec<u8>> = OnceLock::new();
    STREAM.get_or_init(|| {
        let (collected, report) = common::run_file(&common::sample("smtp-plain.pcap"));
        assert!(report.faults.is_empty());
        let stream = collected
            .streams
            .iter()
            .filter(|((_, d), _)| *d == Direction::ClientToServer.index())
            .map(|(_, s)| s.bytes.clone())
            .max_by_key(Vec::len)
            .expect("a client stream");
        assert!(
            stream.len() > 2000,
            "the sample's stream is too short to be a useful test"
        );
        stream
    })
}

/// A segment of the client stream: [start, end) in stream offsets.
#[derive(Clone, Debug)]
struct Cut {
    start: usize,
    end: usize,
}

/// One raw-IP frame of the test connection.
fn segment(
    ts: i64,
    from_client: bool,
    seq: u32,
    ack: Option<u32>,
    flags: &str,
    payload: &[u8],
) -> MemoryFrame {
    let (src, dst, sport, dport) = if from_client {
        (CLIENT, SERVER, CLIENT_PORT, 25)
    } else {
        (SERVER, CLIENT, 25, CLIENT_PORT)
    };
    let mut tcp = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 65535);
    if flags.contains('S') {
        tcp = tcp.syn();
    }
    if flags.contains('F') {
        tcp = tcp.fin();
    }
    if let Some(ack) = ack {
        tcp = tcp.ack(ack);
    }
    let mut data = Vec::with_capacity(payload.len() + 40);
    tcp.write(&mut data, payload).expect("build packet");
    MemoryFrame {
        ts: Timestamp(ts),
        link: LinkType::RAW,
        data,
    }
}

/// Replays `cuts` of the real stream, in the given order, in a connection with client ISN `isn`,
/// and returns what the client-to-server direction delivered.
fn replay(isn: u32, cuts: &[Cut]) -> common::Delivered {
    let stream = real_stream();
    let server_isn = 7u32;
    let mut frames = vec![
        segment(1, true, isn, None, "S", b""),
        segment(2, false, server_isn, Some(isn.wrapping_add(1)), "S", b""),
    ];
    let data_seq = isn.wrapping_add(1);
    for (i, cut) in cuts.iter().enumerate() {
        let seq = data_seq.wrapping_add(cut.start as u32);
        frames.push(segment(
            3 + i as i64,
            true,
            seq,
            Some(server_isn + 1),
            "",
            &stream[cut.start..cut.end],
        ));
    }
    let fin_seq = data_seq.wrapping_add(stream.len() as u32);
    frames.push(segment(
        10_000,
        true,
        fin_seq,
        Some(server_isn + 1),
        "F",
        b"",
    ));
    let source = MemorySource { frames };
    let (collected, report) = common::run_sources(vec![Box::new(source)], Config::default());
    assert!(report.faults.is_empty());
    assert_eq!(collected.flows.len(), 1, "one connection");
    collected.stream(1, Direction::ClientToServer)
}

/// Segment boundaries covering the whole stream, each 1 to 1500 bytes.
fn cuts() -> impl Strategy<Value = Vec<Cut>> {
    let len = real_stream().len();
    prop::collection::vec(1usize..1500, len / 2).prop_map(move |sizes| {
        let mut cuts = Vec::new();
        let mut start = 0;
        for size in sizes {
            if start >= len {
                break;
            }
            let end = (start + size).min(len);
            cuts.push(Cut { start, end });
            start = end;
        }
        cuts
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any order, duplicates, and overlapping copies (a segment widened into its neighbours, with
    /// the same bytes) give back the original stream, with no gap, across sequence number wrap.
    #[test]
    fn any_segmentation_order_duplication_and_overlap(
        isn in prop_oneof![Just(u32::MAX - 100), Just(u32::MAX), any::<u32>()],
        base in cuts(),
        widen in prop::collection::vec((0usize..600, 0usize..600), 1..40),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        seed in any::<u64>(),
    ) {
        let len = real_stream().len();
        let mut all = base.clone();
        for (i, (back, forward)) in widen.iter().enumerate() {
            let c = &base[i % base.len()];
            all.push(Cut { start: c.start.saturating_sub(*back), end: (c.end + forward).min(len) });
        }
        for d in &dups {
            all.push(d.get(&base).clone());
        }
        shuffle(&mut all, seed);
        let delivered = replay(isn, &all);
        prop_assert_eq!(delivered.gaps, vec![]);
        prop_assert!(delivered.bytes == real_stream(), "reassembled bytes differ from the original");
        prop_assert!(delivered.fin);
    }

    /// Dropping one segment gives exactly one gap, of its size, at its offset.
    #[test]
    fn a_dropped_segment_is_one_gap_of_its_size(
        isn in any::<u32>(),
        base in cuts(),
        drop in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let mut kept = base.clone();
        let lost = kept.remove(drop.index(kept.len()));
        shuffle(&mut kept, seed);
        let delivered = replay(isn, &kept);
        let stream = real_stream();
        prop_assert_eq!(delivered.gaps, vec![(lost.start as u64, (lost.end - lost.start) as u64)]);
        let mut expected = stream[..lost.start].to_vec();
        expected.extend_from_slice(&stream[lost.end..]);
        prop_assert!(delivered.bytes == expected, "bytes around the gap differ");
    }
}

/// A deterministic shuffle (xorshift), so a failing case replays from its seed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}
