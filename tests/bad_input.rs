//! Bad input through the real binary: each case gives a clear message naming the file (and the
//! record), still reports what came before the fault, and sets the exit status of the
//! command-line contract (1 fatal, 2 partial). The broken files are made here from a real sample.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

const SAMPLE: &str = "variants/smtp-small.pcap";

fn mailscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(args)
        .output()
        .expect("run mailscope")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path.to_str().expect("utf-8").to_string()
}

/// Offsets of the records of a little-endian classic pcap: (header offset, captured length).
fn records(pcap: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push((at, caplen));
        at += 16 + caplen;
    }
    out
}

fn sample_bytes() -> Vec<u8> {
    let bytes = std::fs::read(common::sample(SAMPLE)).expect("sample");
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "a little-endian microsecond pcap"
    );
    bytes
}

fn flow_rows(stdout: &[u8]) -> usize {
    text(stdout)
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn truncated_file_reports_the_record_and_keeps_what_came_before() {
    let bytes = sample_bytes();
    let last = records(&bytes).len();
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "cut.pcap", &bytes[..bytes.len() - 10]);
    let out = mailscope(&["flows", &path]);
    assert_eq!(out.status.code(), Some(2), "partial read");
    let err = text(&out.stderr);
    assert!(
        err.contains(&path) && err.contains(&format!("record {last}")),
        "{err}"
    );
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(
        flow_rows(&out.stdout),
        1,
        "the connection before the fault is still shown"
    );
}

#[test]
fn not_a_capture_empty_and_missing_files_are_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let cases = [
        (
            readme.to_str().unwrap().to_string(),
            "not a pcap or pcapng capture",
        ),
        (write_temp(&dir, "empty.pcap", b""), "empty"),
        (
            dir.path().join("absent.pcap").to_str().unwrap().to_string(),
            "cannot open",
        ),
    ];
    for (path, message) in cases {
        let out = mailscope(&["flows", &path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&path) && err.contains(message),
            "{path}: {err}"
        );
    }
}

#[test]
fn unknown_link_type_warns_once() {
    let mut bytes = sample_bytes();
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes()); // LINKTYPE_USER0
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "user0.pcap", &bytes);
    let out = mailscope(&["flows", &path]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("link type 147 is not supported").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!("{} unsupported link type", records(&bytes).len())),
        "{err}"
    );
}

#[test]
fn corrupt_record_length_stops_there_with_the_record_number() {
    let mut bytes = sample_bytes();
    let (at, _) = records(&bytes)[4];
    bytes[at + 8..at + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "bad-length.pcap", &bytes);
    let out = mailscope(&["flows", &path]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("record 5") && err.contains("length"), "{err}");
    assert_eq!(
        flow_rows(&out.stdout),
        1,
        "the four records before it are analysed"
    );
}

#[test]
fn ip_header_claiming_more_than_the_packet_holds_is_counted() {
    let mut bytes = sample_bytes();
    // The first client packet with payload: Ethernet (14) + IPv4; raise its total length.
    let (at, _) = records(&bytes)
        .into_iter()
        .find(|&(at, caplen)| {
            let ip = at + 16 + 14;
            caplen > 14 + 20 + 32
                && u16::from_be_bytes([bytes[ip + 2], bytes[ip + 3]]) as usize > 52
        })
        .expect("a data packet");
    let ip = at + 16 + 14;
    let total = u16::from_be_bytes([bytes[ip + 2], bytes[ip + 3]]) + 100;
    bytes[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "overlong.pcap", &bytes);
    let out = mailscope(&["flows", &path]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains("1 packets whose IP header claims more bytes"),
        "{err}"
    );
}

#[test]
fn standard_input_reads_like_the_file() {
    let path = common::sample(SAMPLE);
    let from_file = mailscope(&["flows", "--json", path.to_str().unwrap()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(["flows", "--json", "-"])
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take();
    let from_stdin = child.wait_with_output().unwrap();
    assert_eq!(
        from_stdin.status.code(),
        Some(0),
        "{}",
        text(&from_stdin.stderr)
    );
    assert!(!from_file.stdout.is_empty());
    assert_eq!(from_stdin.stdout, from_file.stdout);
}
