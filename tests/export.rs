//! `mailscope export` through the real binary: each .eml holds exactly the bytes the client
//! sent (SHA-256 from samples/MANIFEST.json), each attachment is the original file, there is a
//! transcript per session, and hostile names from the capture never leave the folder.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn export(captures: &[&Path], dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .arg("export")
        .args(captures)
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn eml_and_attachments_are_the_bytes_that_were_sent() {
    let names = ["smtp-plain.pcap", "smtp-auth-cleartext.pcap"];
    let dir = tempfile::tempdir().unwrap();
    let captures: Vec<PathBuf> = names.iter().map(|n| common::sample(n)).collect();
    export(
        &captures.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        dir.path(),
    );

    let manifest = common::manifest();
    let mut sent = BTreeSet::new();
    let mut sessions = 0;
    for name in names {
        for session in manifest["captures"][name]["sessions"].as_array().unwrap() {
            sessions += 1;
            for m in session["messages_sent"].as_array().unwrap() {
                sent.insert(m["sha256"].as_str().unwrap().to_string());
            }
        }
    }
    let files = files_under(dir.path());
    let eml: BTreeSet<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| sha(&std::fs::read(p).unwrap()))
        .collect();
    assert_eq!(eml, sent);
    let transcripts = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .count();
    assert_eq!(transcripts, sessions);
    for original in ["noise.png", "report.pdf"] {
        let bytes = std::fs::read(common::sample("files").join(original)).unwrap();
        let exported: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.file_name().unwrap() == original)
            .collect();
        assert!(!exported.is_empty(), "{original} exported");
        for path in exported {
            assert_eq!(std::fs::read(path).unwrap(), bytes, "{}", path.display());
        }
    }
}

#[test]
fn hostile_attachment_names_stay_in_the_folder() {
    // The same capture with the attachment renamed (same length, so the TCP stream is intact).
    let mut bytes = std::fs::read(common::sample("smtp-plain.pcap")).unwrap();
    let mut renamed = 0;
    while let Some(at) = bytes.windows(9).position(|w| w == b"noise.png") {
        bytes[at..at + 9].copy_from_slice(b"../../evl");
        renamed += 1;
    }
    assert!(
        renamed >= 2,
        "the name is in Content-Type and Content-Disposition"
    );
    let work = tempfile::tempdir().unwrap();
    let capture = work.path().join("hostile.pcap");
    std::fs::write(&capture, &bytes).unwrap();
    let out_dir = work.path().join("out");
    export(&[&capture], &out_dir);
    for path in files_under(work.path()) {
        assert!(
            path == capture || path.starts_with(&out_dir),
            "{} escaped",
            path.display()
        );
    }
    let attachments: Vec<PathBuf> = files_under(&out_dir)
        .into_iter()
        .filter(|p| p.parent().unwrap() != out_dir)
        .collect();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].file_name().unwrap(), "_.._evl");
}
