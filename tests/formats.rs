//! One real capture in every container the reader supports must give the same connections and
//! the same bytes: pcapng, gzip, nanosecond and big-endian pcap were all made from one
//! tcpdump capture (see samples/README.md and scripts/make-samples).

mod common;

use mailscope::capture::{FileSource, Timestamp};
use mailscope::tcp::Direction;

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

/// A pipe may deliver a byte at a time: the format is still told, and the records read alike.
#[test]
fn a_pipe_that_gives_one_byte_per_read_reads_like_the_file() {
    struct OneByte(std::fs::File);
    impl std::io::Read for OneByte {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let end = buf.len().min(1);
            self.0.read(&mut buf[..end])
        }
    }
    for name in DERIVED {
        let path = common::sample(name);
        let (whole, _) = common::run_file(&path);
        let file = std::fs::File::open(&path).unwrap();
        let source = FileSource::from_reader(name, Box::new(OneByte(file))).unwrap();
        let (trickled, report) = common::run_sources(vec![Box::new(source)], Default::default());
        assert!(report.faults.is_empty(), "{name}: {:?}", report.faults);
        assert_eq!(trickled.packets, whole.packets, "{name}");
        assert_eq!(trickled.streams, whole.streams, "{name}");
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

/// The same session captured at the same time with a 120-byte snapshot length: what was captured
/// agrees with the full capture, and exactly the cut bytes are gaps.
#[test]
fn snapshot_length_cuts_become_gaps_of_the_cut_size() {
    let (full, _) = common::run_file(&common::sample("variants/smtp-small-nsec.pcap"));
    let (cut, report) = common::run_file(&common::sample("variants/smtp-small-snap120.pcap"));
    assert!(report.faults.is_empty());
    let mut gaps = 0;
    for (key, whole) in &full.streams {
        let part = &cut.streams[key];
        let mut captured = Vec::new();
        let mut position = 0usize;
        for &(at, len) in &part.gaps {
            gaps += 1;
            let take = at as usize - position;
            captured.extend_from_slice(&whole.bytes[position..position + take]);
            position = at as usize + len as usize;
        }
        captured.extend_from_slice(&whole.bytes[position..]);
        assert_eq!(
            part.bytes, captured,
            "{key:?}: the captured bytes are the full stream minus the gaps"
        );
        let gap_bytes: u64 = part.gaps.iter().map(|g| g.1).sum();
        assert_eq!(
            part.bytes.len() as u64 + gap_bytes,
            whole.bytes.len() as u64,
            "{key:?}"
        );
        assert_eq!(part.fin, whole.fin);
    }
    assert!(gaps > 0, "the 120-byte capture cut some data segments");
}

/// Two interfaces with different link types in one pcapng: the connections of both inputs.
#[test]
fn pcapng_with_two_link_types() {
    let summary = |c: &common::Collected| {
        let mut flows: Vec<_> = c
            .flows
            .values()
            .map(|f| {
                (
                    f.client,
                    f.server,
                    c.stream(f.id, Direction::ClientToServer),
                    c.stream(f.id, Direction::ServerToClient),
                )
            })
            .collect();
        flows.sort_by_key(|f| (f.0, f.1));
        flows
    };
    let (merged, report) = common::run_file(&common::sample("variants/multi-interface.pcapng"));
    assert!(report.faults.is_empty());
    let mut parts = summary(&common::run_file(&common::sample("variants/smtp-small-sll2.pcap")).0);
    parts.extend(summary(
        &common::run_file(&common::sample("variants/smtp-ipv6.pcap")).0,
    ));
    parts.sort_by_key(|f| (f.0, f.1));
    assert_eq!(summary(&merged), parts);
    assert_eq!(parts.len(), 2);
}

/// The key log that `editcap --inject-secrets` embedded is handed on for the TLS stage.
#[test]
fn decryption_secrets_block_is_kept() {
    use mailscope::capture::FileSource;
    use mailscope::pipeline::{Analyzer, Config};
    let source =
        FileSource::open(common::sample("tls-mixed-secrets.pcapng").to_str().unwrap()).unwrap();
    let mut analyzer = Analyzer::new(Config::default());
    let mut sink = common::Collected::default();
    analyzer.run(
        &mut [Box::new(source) as Box<dyn mailscope::capture::PacketSource>],
        &mut sink,
    );
    let keys = std::fs::read_to_string(common::sample("tls-mixed.keys")).unwrap();
    let secret_lines = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(String::from)
            .collect();
        lines.sort();
        lines
    };
    let embedded = String::from_utf8(sink.keylog.clone()).unwrap();
    assert!(!embedded.is_empty());
    assert_eq!(secret_lines(&embedded), secret_lines(&keys));
}
