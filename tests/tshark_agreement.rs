//! Agreement with tshark on every bundled sample: the same TCP connections on mail ports, in the
//! same order, and for each direction exactly the bytes `tshark -z follow,tcp,raw,N` shows.
//! tshark is the independent truth here; the test fails if it is missing (scripts/test installs
//! it).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mailscope::ports::MailPorts;
use mailscope::tcp::Direction;

fn captures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [common::sample(""), common::sample("variants")] {
        for entry in std::fs::read_dir(&dir).expect("samples folder") {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") || name.ends_with(".gz") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the bundled samples, found {files:?}"
    );
    files
}

/// tshark's TCP streams on mail ports: stream index -> the two endpoints of its first packet.
fn tshark_streams(file: &Path) -> BTreeMap<u64, [String; 2]> {
    let ports = MailPorts::default();
    let fields = common::tshark(&[
        "-n",
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "tcp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "tcp.stream",
        "-e",
        "ip.src",
        "-e",
        "ipv6.src",
        "-e",
        "tcp.srcport",
        "-e",
        "ip.dst",
        "-e",
        "ipv6.dst",
        "-e",
        "tcp.dstport",
    ]);
    let mut streams = BTreeMap::new();
    for line in fields.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let stream: u64 = f[0].parse().unwrap();
        let (sport, dport): (u16, u16) = (f[3].parse().unwrap(), f[6].parse().unwrap());
        if !ports.is_mail(sport) && !ports.is_mail(dport) {
            continue;
        }
        let endpoint = |v4: &str, v6: &str, port: u16| {
            if v4.is_empty() {
                format!("[{v6}]:{port}")
            } else {
                format!("{v4}:{port}")
            }
        };
        streams
            .entry(stream)
            .or_insert_with(|| [endpoint(f[1], f[2], sport), endpoint(f[4], f[5], dport)]);
    }
    streams
}

/// `follow,tcp,raw` of one stream: the bytes each endpoint sent.
fn tshark_follow(file: &Path, stream: u64) -> BTreeMap<String, Vec<u8>> {
    let out = common::tshark(&[
        "-n",
        "-r",
        file.to_str().unwrap(),
        "-q",
        "-z",
        &format!("follow,tcp,raw,{stream}"),
    ]);
    let mut nodes = [String::new(), String::new()];
    let mut bytes = [Vec::new(), Vec::new()];
    let mut in_data = false;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("Node 0: ") {
            nodes[0] = rest.to_string();
        } else if let Some(rest) = line.strip_prefix("Node 1: ") {
            nodes[1] = rest.to_string();
            in_data = true;
        } else if line.starts_with("====") {
            in_data = false;
        } else if in_data && !line.is_empty() {
            let (node, hex) = match line.strip_prefix('\t') {
                Some(hex) => (1, hex),
                None => (0, line),
            };
            bytes[node].extend(decode_hex(hex));
        }
    }
    let [n0, n1] = nodes;
    let [b0, b1] = bytes;
    BTreeMap::from([(n0, b0), (n1, b1)])
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn connections_and_followed_bytes_match_tshark() {
    for file in captures() {
        let name = file.display();
        let (collected, report) = common::run_file(&file);
        assert!(report.faults.is_empty(), "{name}: {:?}", report.faults);
        let streams = tshark_streams(&file);
        assert_eq!(
            collected.flows.len(),
            streams.len(),
            "{name}: number of mail connections"
        );
        for ((stream, endpoints), (id, flow)) in streams.iter().zip(&collected.flows) {
            let mut ours = [flow.client.to_string(), flow.server.to_string()];
            let mut theirs = endpoints.clone();
            ours.sort();
            theirs.sort();
            assert_eq!(
                ours, theirs,
                "{name}: connection {id} vs tshark stream {stream}"
            );
            let followed = tshark_follow(&file, *stream);
            for (direction, sender) in [
                (Direction::ClientToServer, flow.client.to_string()),
                (Direction::ServerToClient, flow.server.to_string()),
            ] {
                let delivered = collected.stream(*id, direction);
                let expected = followed.get(&sender).unwrap_or_else(|| {
                    panic!(
                        "{name}: tshark has no node {sender} in stream {stream}: {:?}",
                        followed.keys()
                    )
                });
                if delivered.gaps.is_empty() {
                    assert!(
                        &delivered.bytes == expected,
                        "{name}: connection {id} {direction:?}: {} bytes vs tshark's {}",
                        delivered.bytes.len(),
                        expected.len()
                    );
                } else {
                    // Snaplen-truncated packets: tshark follows the captured bytes only, we
                    // report the rest as gaps. The captured bytes must still agree.
                    assert_eq!(
                        &delivered.bytes, expected,
                        "{name}: connection {id} {direction:?}"
                    );
                }
            }
        }
    }
}
