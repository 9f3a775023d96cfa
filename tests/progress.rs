//! The progress line: on a terminal, reading files shows bytes read of the total and is cleared
//! before the summary; into a pipe or a file, or when the records go to the terminal too,
//! nothing of it appears.

mod common;

use std::process::Command;

#[test]
fn reading_files_shows_a_progress_line_on_a_terminal_only() {
    let sample = common::sample("imap-large.pcap.gz");
    let size = std::fs::metadata(&sample).unwrap().len();
    let command = format!(
        "{} --json {} > /dev/null",
        env!("CARGO_BIN_EXE_mailscope"),
        sample.display()
    );
    // `script` gives the command a terminal and copies what it writes to standard output.
    let out = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .output()
        .expect("script (util-linux)");
    assert!(out.status.success());
    let terminal = String::from_utf8_lossy(&out.stdout);
    let line = terminal
        .split(['\r', '\n'])
        .find(|l| l.contains("mailscope: reading"))
        .unwrap_or_else(|| panic!("no progress line in {terminal:?}"));
    // The total is the compressed file's size, as indicatif writes it (KiB here).
    let total = format!("/{:.2} KiB", size as f64 / 1024.0);
    assert!(line.contains(&total), "{line:?} names {total}");
    let cleared = terminal.rfind("\x1b[2K").unwrap();
    assert!(
        terminal.rfind("connections").unwrap() > cleared,
        "cleared before the summary"
    );

    // Standard output on the terminal too: the line would garble the records, so it is not shown.
    let command = format!(
        "{} --json {}",
        env!("CARGO_BIN_EXE_mailscope"),
        sample.display()
    );
    let out = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .output()
        .unwrap();
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(terminal.contains("\"type\":\"session\""), "{terminal}");
    assert!(!terminal.contains("mailscope: reading"));

    let piped = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(["--json"])
        .arg(&sample)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("reading"));
}
