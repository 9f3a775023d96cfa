//! `--threads N` gives exactly what one thread gives: the same NDJSON, transcripts and export
//! folders, byte for byte, on every sample and on a capture made to test the merge (the
//! samples replayed at once, so that their connections interleave, and cut in two by a pause
//! longer than the idle timeout, so that sweeps end flows in every worker at the same time), and
//! on one large enough that the reader must merge while the helpers' queues are full.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The samples with their key logs.
fn samples() -> Vec<(PathBuf, Option<PathBuf>)> {
    let dir = common::sample("");
    let mut found: Vec<(PathBuf, Option<PathBuf>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".pcap") || name.ends_with(".pcapng") || name.ends_with(".pcap.gz")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let stem = name.split('.').next().unwrap().to_string();
            let keys = dir.join(format!("{stem}.keys"));
            (p, keys.exists().then_some(keys))
        })
        .collect();
    found.sort();
    found
}

fn mailscope(args: &[&str], threads: u32, captures: &[&Path], keys: &[&Path]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailscope"));
    command.args(args).arg("--threads").arg(threads.to_string());
    for key in keys {
        command.arg("--keylog").arg(key);
    }
    let out = command
        .args(captures)
        .env_remove("SSLKEYLOGFILE")
        .output()
        .unwrap();
    assert!(
        out.status.code() == Some(0),
        "mailscope {args:?} {captures:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that one thread and `threads` give the same standard output; returns it.
fn same_output(args: &[&str], captures: &[&Path], keys: &[&Path], threads: u32) -> Vec<u8> {
    let one = mailscope(args, 1, captures, keys).stdout;
    let many = mailscope(args, threads, captures, keys).stdout;
    assert!(!one.is_empty(), "{args:?} {captures:?} gave nothing");
    if one != many {
        let (one, many) = (
            String::from_utf8_lossy(&one),
            String::from_utf8_lossy(&many),
        );
        let line = one
            .lines()
            .zip(many.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{args:?} {captures:?}: {threads} threads differ from one at line {}:\n  1: {}\n  {threads}: {}",
            line + 1,
            one.lines().nth(line).unwrap_or("(end)"),
            many.lines().nth(line).unwrap_or("(end)")
        );
    }
    one
}

#[test]
fn every_sample_gives_the_same_json_and_transcripts_on_any_number_of_threads() {
    for (capture, keys) in samples() {
        let keys: Vec<&Path> = keys.iter().map(PathBuf::as_path).collect();
        for threads in [2, 5] {
            same_output(&["--json", "-q"], &[&capture], &keys, threads);
            same_output(&["--text", "-q"], &[&capture], &keys, threads);
        }
    }
}

#[test]
fn export_folders_are_the_same_on_one_thread_and_three() {
    let capture = common::sample("findings.pcap");
    let keys = common::sample("findings.keys");
    let dir = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for threads in [1, 3] {
        let out = dir.path().join(format!("t{threads}"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailscope"));
        command.args([
            "export",
            "-q",
            "--threads",
            &threads.to_string(),
            "--keylog",
        ]);
        let status = command.arg(&keys).arg(&capture).arg(&out).status().unwrap();
        assert!(status.success());
        let mut files: Vec<(PathBuf, Vec<u8>)> = common::files_under(&out)
            .into_iter()
            .map(|f| {
                (
                    f.strip_prefix(&out).unwrap().to_path_buf(),
                    std::fs::read(&f).unwrap(),
                )
            })
            .collect();
        files.sort();
        trees.push(files);
    }
    assert!(
        trees[0].len() > 10,
        "the export holds {} files",
        trees[0].len()
    );
    assert_eq!(trees[0], trees[1]);
}

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is needed (scripts/deps installs it): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first packet's time, in seconds since the epoch.
fn first_time(capture: &Path) -> f64 {
    let out = common::tshark(&[
        "-r",
        capture.to_str().unwrap(),
        "-c",
        "1",
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
    ]);
    out.trim().parse().unwrap()
}

#[test]
fn interleaved_connections_and_idle_sweeps_merge_in_capture_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    // Every pcap sample replayed from the same instant: their packets interleave.
    let captures: Vec<(PathBuf, Option<PathBuf>)> = samples()
        .into_iter()
        .filter(|(c, _)| c.extension().is_some_and(|e| e == "pcap"))
        .collect();
    let start = 1_800_000_000.0;
    let mut aligned = Vec::new();
    for (n, (capture, _)) in captures.iter().enumerate() {
        let shift = format!("{:.6}", start - first_time(capture));
        let out = path(&format!("aligned{n}.pcap"));
        run(
            "editcap",
            &["-F", "pcap", "-t", &shift, capture.to_str().unwrap(), &out],
        );
        aligned.push(out);
    }
    let merged = path("merged.pcap");
    let mut args = vec!["-F", "pcap", "-w", &merged];
    args.extend(aligned.iter().map(String::as_str));
    run("mergecap", &args);
    // Cut in two halves, the second 40 minutes later: past the 35-minute idle timeout, so the
    // first halves of the connections time out while the others' packets come in.
    let packets = common::tshark(&["-r", &merged, "-T", "fields", "-e", "frame.number"])
        .lines()
        .count();
    let half = packets / 2;
    let (first, second, late) = (path("first.pcap"), path("second.pcap"), path("late.pcap"));
    run(
        "editcap",
        &["-F", "pcap", "-r", &merged, &first, &format!("1-{half}")],
    );
    let rest = format!("{}-{packets}", half + 1);
    run("editcap", &["-F", "pcap", "-r", &merged, &second, &rest]);
    run("editcap", &["-F", "pcap", "-t", "2400", &second, &late]);
    let test = path("test.pcap");
    run(
        "mergecap",
        &["-F", "pcap", "-a", "-w", &test, &first, &late],
    );

    let keys: Vec<&Path> = captures.iter().filter_map(|(_, k)| k.as_deref()).collect();
    let test = Path::new(&test);
    let json = same_output(&["--json", "-q"], &[test], &keys, 4);
    same_output(&["--text", "-q"], &[test], &keys, 3);

    // The capture did what it is for: connections from several samples, some timed out.
    let records: Vec<serde_json::Value> = String::from_utf8(json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sessions: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["type"] == "session").collect();
    let timed_out = sessions.iter().filter(|s| s["state"] == "timeout").count();
    assert!(sessions.len() > 40, "{} sessions", sessions.len());
    assert!(timed_out > 5, "{timed_out} sessions timed out");
    assert!(records.iter().any(|r| r["type"] == "message"));
}

/// A capture large enough that the helpers' queues fill, so that the reader merges while it
/// waits for room: the bench generator's, made from the samples (64 MB, 196 messages).
#[test]
fn a_capture_that_fills_the_helpers_queues_merges_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("bench.pcap");
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/make-capture.py");
    run(
        "python3",
        &[
            generator.to_str().unwrap(),
            "--size-mb",
            "64",
            "--seed",
            "1",
            "--out",
            capture.to_str().unwrap(),
        ],
    );
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bench.pcap.truth.json")).unwrap())
            .unwrap();
    for threads in [2, 3] {
        let json = same_output(&["--json", "-q"], &[&capture], &[], threads);
        let messages = json
            .split(|&b| b == b'\n')
            .filter(|line| line.starts_with(br#"{"type":"message""#))
            .count();
        assert_eq!(Some(messages as u64), truth["mail_messages"].as_u64());
    }
}
