//! Hot paths of the first stages: TCP reassembly of in-order and reordered segments, and the
//! whole decode + reassembly pipeline on the frames of a real sample.
//! Run with `cargo bench`; bench/run measures whole commands against tshark.

use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mailscope::capture::{MemoryFrame, MemorySource, PacketSource, Record, Timestamp};
use mailscope::decode::{TcpFlags, TcpSegment};
use mailscope::pipeline::{Analyzer, Config};
use mailscope::ports::MailPorts;
use mailscope::tcp::{
    Direction, FlowInfo, FlowTable, SeqNumber, StreamEvent, StreamSink, TcpLimits,
};

const MSS: usize = 1448;
const SEGMENTS: usize = 10_000;

/// Counts delivered bytes so that the work cannot be optimised away.
#[derive(Default)]
struct Count(u64);

impl StreamSink for Count {
    fn stream_event(&mut self, _: &FlowInfo, _: Direction, event: StreamEvent<'_>) {
        if let StreamEvent::Data { bytes, .. } = event {
            self.0 += bytes.len() as u64;
        }
    }
}

fn segments<'a>(order: &[usize], payload: &'a [u8]) -> Vec<TcpSegment<'a>> {
    let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:25".parse().unwrap();
    let syn = TcpSegment {
        frame: 0,
        ts: Timestamp(0),
        src: client,
        dst: server,
        seq: SeqNumber(u32::MAX - 5001),
        ack: SeqNumber(0),
        flags: TcpFlags {
            syn: true,
            ..TcpFlags::default()
        },
        payload: &[],
        missing: 0,
        wire_len: 60,
    };
    std::iter::once(syn)
        .chain(order.iter().map(|&i| TcpSegment {
            frame: i as u64,
            ts: Timestamp(i as i64),
            src: client,
            dst: server,
            seq: SeqNumber(u32::MAX - 5000) + (i * MSS) as u32,
            ack: SeqNumber(1),
            flags: TcpFlags {
                ack: true,
                ..TcpFlags::default()
            },
            payload,
            missing: 0,
            wire_len: (MSS + 54) as u32,
        }))
        .collect()
}

fn reassembly(c: &mut Criterion) {
    let payload = vec![b'x'; MSS];
    let in_order: Vec<usize> = (0..SEGMENTS).collect();
    // Every pair swapped: half the segments wait for the one before them.
    let swapped: Vec<usize> = (0..SEGMENTS).map(|i| i ^ 1).collect();
    let mut group = c.benchmark_group("reassembly");
    group.throughput(Throughput::Bytes((SEGMENTS * MSS) as u64));
    for (name, order) in [("in_order", &in_order), ("pairs_swapped", &swapped)] {
        let segs = segments(order, &payload);
        group.bench_function(name, |b| {
            b.iter_batched(
                || FlowTable::new(MailPorts::default(), TcpLimits::default()),
                |mut table| {
                    let mut count = Count::default();
                    for s in &segs {
                        table.process(s, &mut count);
                    }
                    table.finish(&mut count);
                    assert_eq!(count.0, (SEGMENTS * MSS) as u64);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/smtp-plain.pcap");
    let mut frames = Vec::new();
    let mut source = mailscope::capture::FileSource::open(path).unwrap();
    source
        .read(&mut |r| {
            if let Record::Frame(f) = r {
                frames.push(MemoryFrame {
                    ts: f.ts,
                    link: f.link,
                    data: f.data.to_vec(),
                });
            }
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let bytes: usize = frames.iter().map(|f| f.data.len()).sum();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("smtp_plain_sample", |b| {
        b.iter_batched(
            || MemorySource {
                frames: frames.clone(),
            },
            |source| {
                let mut analyzer = Analyzer::new(Config::default());
                let mut count = Count::default();
                analyzer.run(&mut [Box::new(source) as Box<dyn PacketSource>], &mut count);
                count.0
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, reassembly, pipeline);
criterion_main!(benches);
