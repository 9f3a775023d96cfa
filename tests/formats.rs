//! One real capture in every container the reader supports must give the same connections and
//! the same bytes: pcapng, gzip, nanosecond and big-endian pcap were all made from one
//! tcpdump capture (see samples/README.md and scripts/make-samples).

mod common;

use mailscope::capture::Timestamp;

const ORIGINAL: &str = "variants/smtp-small-nsec.pcap";
const DERIVED: [&str; 6] = [
    "variants/smtp-small.pcap",
    "variants/smtp-small.pcapng",
    "variants/smtp-small.pcap.gz",
    "variants/smtp-small.pcapng.gz",
    "variants/smtp-small-be.pcap",
    "variants/smtp-small-nsec-be.pcap",
];

fn micros(ts: Timestamp) -> i64 {
    ts.0.div_euclid(1000)
}

#[test]
fn every_container_gives_the_same_streams() {
    let (original, report) = common::run_file(&common::sample(ORIGINAL));
    assert!(report.faults.is_empty());
    assert!(!original.flows.is_empty());
    assert!(original.streams.values().any(|s| s.bytes.len() > 100));
    for name in DERIVED {
        let (derived, report) = common::run_file(&common::sample(name));
        assert!(report.faults.is_empty(), "{name}: {:?}", report.faults);
        assert_eq!(derived.streams, original.streams, "{name}");
        assert_eq!(derived.packets, original.packets, "{name}");
        let endpoints = |c: &common::Collected| {
            c.flows
                .values()
                .map(|f| (f.client, f.server))
                .collect::<Vec<_>>()
        };
        assert_eq!(endpoints(&derived), endpoints(&original), "{name}");
    }
}

#[test]
fn nanosecond_times_are_kept() {
    use mailscope::capture::{FileSource, PacketSource, Record};
    let mut times = Vec::new();
    for name in [ORIGINAL, "variants/smtp-small.pcap"] {
        let mut source = FileSource::open(common::sample(name).to_str().unwrap()).unwrap();
        let mut ts = Vec::new();
        source
            .read(&mut |r| {
                if let Record::Frame(f) = r {
                    ts.push(f.ts);
                }
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        times.push(ts);
    }
    assert_eq!(times[0].len(), times[1].len());
    assert!(
        times[0].iter().any(|t| t.0 % 1000 != 0),
        "the original has sub-microsecond digits"
    );
    for (nano, micro) in times[0].iter().zip(&times[1]) {
        assert_eq!(micros(*nano), micros(*micro));
    }
}
