//! `mailscope follow` through the real binary: raw output equals tshark's follow of the same
//! connection, text output carries each side's lines in order, and bytes from the wire that
//! would drive a terminal come out as visible escapes.

mod common;

use std::process::Command;

fn mailscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(args)
        .output()
        .expect("run mailscope")
}

fn tshark_follow_client(file: &str, stream: u64) -> Vec<u8> {
    let text = common::tshark(&[
        "-n",
        "-r",
        file,
        "-q",
        "-z",
        &format!("follow,tcp,raw,{stream}"),
    ]);
    let mut bytes = Vec::new();
    let data = text
        .lines()
        .skip_while(|l| !l.starts_with("Node 1:"))
        .skip(1);
    for line in data.take_while(|l| !l.starts_with("====")) {
        if !line.starts_with('\t') {
            bytes.extend(
                (0..line.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap()),
            );
        }
    }
    bytes
}

#[test]
fn raw_client_bytes_equal_tshark() {
    let file = common::sample("smtp-plain.pcap");
    let file = file.to_str().unwrap();
    for connection in 1..=3u64 {
        let out = mailscope(&["follow", file, &connection.to_string(), "--raw", "client"]);
        assert_eq!(out.status.code(), Some(0));
        let expected = tshark_follow_client(file, connection - 1);
        assert!(expected.len() > 100);
        assert!(out.stdout == expected, "connection {connection}");
    }
}

#[test]
fn text_lines_carry_each_side_in_order() {
    let file = common::sample("smtp-plain.pcap");
    let (collected, _) = common::run_file(&file);
    let out = mailscope(&["follow", file.to_str().unwrap(), "3"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for (prefix, direction) in [
        ("C: ", mailscope::tcp::Direction::ClientToServer),
        ("S: ", mailscope::tcp::Direction::ServerToClient),
    ] {
        let lines: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter(|l| !l.starts_with('['))
            .collect();
        let sent = String::from_utf8(collected.stream(3, direction).bytes).unwrap();
        let sent_lines: Vec<&str> = sent.split("\r\n").filter(|l| !l.is_empty()).collect();
        let lines: Vec<&str> = lines.into_iter().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, sent_lines, "{prefix}");
    }
    assert!(
        text.contains("C: [client closed (FIN)]") && text.contains("S: [server closed (FIN)]"),
        "{text}"
    );
}

#[test]
fn escape_sequences_from_the_wire_are_made_visible() {
    let mut bytes = std::fs::read(common::sample("variants/smtp-small.pcap")).unwrap();
    // Turn "EHLO" in the client's first command into ESC "[2J" (clear screen), payload only.
    let at = bytes
        .windows(4)
        .position(|w| w.eq_ignore_ascii_case(b"ehlo"))
        .expect("an EHLO");
    bytes[at..at + 4].copy_from_slice(b"\x1b[2J");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escape.pcap");
    std::fs::write(&path, &bytes).unwrap();
    let out = mailscope(&["follow", path.to_str().unwrap(), "1"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !out.stdout.contains(&0x1b),
        "no raw ESC reaches the terminal"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("C: \\x1b[2J"));
}
