//! `--json` on a capture piped in as it is made (`tcpdump -w - | mailscope --json -`): the
//! records of what has arrived come out while mailscope waits for more, not at the end.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The byte offset in a classic pcap after its first `frames` records.
fn after_frames(pcap: &[u8], frames: usize) -> usize {
    let mut at = 24;
    for _ in 0..frames {
        let captured = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap());
        at += 16 + captured as usize;
    }
    at
}

#[test]
fn records_come_out_while_the_input_waits() {
    let path = common::sample("smtp-plain.pcap");
    let pcap = std::fs::read(&path).unwrap();
    assert_eq!(
        &pcap[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian classic pcap"
    );
    let whole = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(["--json", "-q", path.to_str().unwrap()])
        .output()
        .unwrap();
    let whole: Vec<String> = String::from_utf8(whole.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let first_exchange = whole
        .iter()
        .position(|r| r.contains(r#""type":"exchange""#))
        .expect("the sample has exchanges");

    let mut child = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(["--json", "-q", "--threads", "1", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });

    // Half the frames, and the pipe stays open: the first exchanges are complete by then.
    let half = after_frames(&pcap, 40);
    stdin.write_all(&pcap[..half]).unwrap();
    stdin.flush().unwrap();
    let mut early = Vec::new();
    while early.len() <= first_exchange {
        match received.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => early.push(line),
            Err(e) => panic!("no record while the input waits ({e}); got {early:?}"),
        }
    }
    assert_eq!(
        early,
        whole[..early.len()],
        "the first records, as from the file"
    );

    stdin.write_all(&pcap[half..]).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    early.extend(received.try_iter());
    assert_eq!(early, whole, "all of it, as from the file");
}
