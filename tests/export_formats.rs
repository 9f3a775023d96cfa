//! The files `export` writes beside the .eml files, read back by other tools: the mbox by
//! Python's `mailbox`, the .eml files by Python's `email`, the per-session slices by tshark,
//! the ECS fields against tshark's addresses; index.json and findings.json against `--json`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn mailscope(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(args)
        .env_remove("SSLKEYLOGFILE")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn records(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "--quiet"];
    all.extend(args);
    String::from_utf8(mailscope(&all))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

/// Runs a Python script with arguments; its standard output as JSON.
fn python(script: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is needed: scripts/deps --test installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const SAMPLES: [&str; 4] = [
    "smtp-plain.pcap",
    "smtp-auth-cleartext.pcap",
    "hostile-escapes.pcap",
    "imap.pcap",
];

/// Python reads the mbox (each message's bytes back in CRLF form, mboxrd quoting removed)
/// and parses every .eml the index names.
const READ_BACK: &str = r#"
import email, email.policy, hashlib, json, mailbox, re, sys
folder, mbox = sys.argv[1], sys.argv[2]
box = mailbox.mbox(mbox)
in_mbox = []
for key in box.keys():
    raw = re.sub(rb'(?m)^>(>*From )', rb'\1', box.get_bytes(key))
    in_mbox.append(hashlib.sha256(raw.replace(b'\n', b'\r\n')).hexdigest())
index = json.load(open(folder + '/index.json'))
emls = {}
for m in index['messages']:
    raw = open(folder + '/' + m['eml'], 'rb').read()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    emls[str(m['id'])] = {
        'message_id': parsed['message-id'],
        'attachments': sorted(hashlib.sha256(p.get_payload(decode=True)).hexdigest()
                              for p in parsed.iter_attachments()
                              if not p.is_multipart()),
    }
print(json.dumps({'mbox': in_mbox, 'emls': emls}))
"#;

#[test]
fn mbox_eml_index_and_findings_read_back_by_other_tools() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("out");
    let mbox = dir.path().join("all.mbox");
    let captures: Vec<PathBuf> = SAMPLES.iter().map(|n| common::sample(n)).collect();
    let captures: Vec<&str> = captures.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec!["export", "--quiet", "--mbox", mbox.to_str().unwrap()];
    args.extend(&captures);
    args.push(folder.to_str().unwrap());
    mailscope(&args);
    let json = records(&captures);
    let messages = of_type(&json, "message");

    let back = python(
        READ_BACK,
        &[folder.to_str().unwrap(), mbox.to_str().unwrap()],
    );
    // The mbox holds every whole message (not the header or section fetches), byte for byte.
    let whole: Vec<&str> = messages
        .iter()
        .filter(|m| m["partial"] == false)
        .map(|m| m["sha256"].as_str().unwrap())
        .collect();
    let mut in_mbox: Vec<&str> = back["mbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let mut expected = whole.clone();
    in_mbox.sort_unstable();
    expected.sort_unstable();
    assert_eq!(in_mbox, expected);
    assert!(whole.len() >= 10, "{} whole messages", whole.len());

    // Python's email module finds the Message-ID and the attachments mailscope reported.
    let emls = back["emls"].as_object().unwrap();
    assert_eq!(emls.len(), messages.len());
    for m in &messages {
        let parsed = &emls[&m["id"].to_string()];
        assert_eq!(parsed["message_id"], m["message_id"], "message {}", m["id"]);
        let ours: BTreeSet<&str> = m["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["sha256"].as_str().unwrap())
            .collect();
        for sha in parsed["attachments"].as_array().unwrap() {
            assert!(
                ours.contains(sha.as_str().unwrap()),
                "message {}: {sha}",
                m["id"]
            );
        }
    }

    // The index points at files that are there, and findings.json is what --json reports.
    let index: Value =
        serde_json::from_slice(&std::fs::read(folder.join("index.json")).unwrap()).unwrap();
    let sessions: BTreeSet<u64> = of_type(&json, "session")
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    let indexed: BTreeSet<u64> = index["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(indexed, sessions);
    for s in index["sessions"].as_array().unwrap() {
        assert!(folder.join(s["transcript"].as_str().unwrap()).is_file());
    }
    for m in index["messages"].as_array().unwrap() {
        for a in m["attachments"].as_array().unwrap() {
            assert!(folder.join(a.as_str().unwrap()).is_file(), "{a}");
        }
    }
    let findings: Value =
        serde_json::from_slice(&std::fs::read(folder.join("findings.json")).unwrap()).unwrap();
    let reported: Vec<Value> = of_type(&json, "finding").into_iter().cloned().collect();
    assert_eq!(findings.as_array().unwrap(), &reported);
    assert!(!reported.is_empty());
    let html = std::fs::read_to_string(folder.join("index.html")).unwrap();
    assert!(
        !html.contains('\x1b'),
        "no raw escape from the hostile sample"
    );
    assert!(html.contains("Invoice"));
}

/// The four ends each session record names under ECS, against the SYN packets tshark sees;
/// and the ECS event and time of each record.
#[test]
fn ecs_fields_agree_with_tshark() {
    let file = common::sample("smtp-auth-starttls.pcap");
    let keys = common::sample("smtp-auth-starttls.keys");
    let json = records(&[
        "--ecs",
        file.to_str().unwrap(),
        "--keylog",
        keys.to_str().unwrap(),
    ]);
    let syns: BTreeSet<String> = common::tshark_fields(
        &file,
        "tcp.flags.syn == 1 && tcp.flags.ack == 0",
        &["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport"],
        &[],
    )
    .into_iter()
    .collect();
    let ends: BTreeSet<String> = of_type(&json, "session")
        .iter()
        .map(|s| {
            format!(
                "{}\t{}\t{}\t{}",
                s["source"]["ip"].as_str().unwrap(),
                s["source"]["port"],
                s["destination"]["ip"].as_str().unwrap(),
                s["destination"]["port"]
            )
        })
        .collect();
    assert_eq!(ends, syns);
    let mut datasets = BTreeMap::new();
    for r in &json {
        if r["type"] == "note" {
            continue;
        }
        *datasets
            .entry(r["event"]["dataset"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        assert_eq!(r["ecs"]["version"], "8.11.0");
        let at = chrono::DateTime::parse_from_rfc3339(r["@timestamp"].as_str().unwrap()).unwrap();
        let ts = r.get("ts").or(r.get("start")).and_then(Value::as_f64);
        if let Some(ts) = ts {
            let micros = at.timestamp_micros() as f64 / 1e6;
            assert!((micros - ts).abs() < 1e-5, "{r}");
        }
    }
    for dataset in ["session", "exchange", "message", "finding"] {
        assert!(
            datasets.contains_key(&format!("mailscope.{dataset}")),
            "{datasets:?}"
        );
    }
    for m in of_type(&json, "message") {
        assert_eq!(m["email"]["message_id"], m["message_id"]);
        assert_eq!(m["file"]["hash"]["sha256"], m["sha256"]);
    }
    for f in of_type(&json, "finding") {
        assert_eq!(f["rule"]["name"], f["kind"]);
        assert_eq!(f["event"]["kind"], "alert");
    }
    let tls = of_type(&json, "session")
        .into_iter()
        .find(|s| s["tls"]["mode"] == "starttls")
        .unwrap();
    assert_eq!(tls["tls"]["version_protocol"], "tls");
    assert_eq!(tls["tls"]["established"], true);
    let not_after = tls["tls"]["server"]["x509"]["not_after"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(not_after).is_ok(),
        "{not_after}"
    );
}

/// Each session of tls-ciphers as a slice: the same packets tshark finds for its client port
/// in the whole capture, and, with no key log, the same frames decrypted as the whole capture
/// with its key log.
#[test]
fn slices_hold_their_sessions_packets_and_decrypt_alone() {
    let file = common::sample("tls-ciphers.pcap");
    let keys = common::sample("tls-ciphers.keys");
    let keys_option = format!("tls.keylog_file:{}", keys.display());
    let json = records(&[file.to_str().unwrap(), "--keylog", keys.to_str().unwrap()]);
    let sessions = of_type(&json, "session");
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "export".to_string(),
        "--quiet".into(),
        file.display().to_string(),
        "--keylog".into(),
        keys.display().to_string(),
        dir.path().display().to_string(),
    ];
    for s in &sessions {
        args.push("--slice".into());
        args.push(s["id"].to_string());
    }
    mailscope(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut decrypted_somewhere = 0;
    for s in &sessions {
        let port = s["client"].as_str().unwrap().rsplit(':').next().unwrap();
        let slice = dir.path().join(format!("session-{}.pcapng", s["id"]));
        let mine = format!("tcp.port == {port}");
        let count = |file: &Path, filter: &str, extra: &[&str]| {
            common::tshark_fields(file, filter, &["frame.number"], extra).len()
        };
        assert_eq!(
            count(&slice, "tcp", &[]),
            count(&file, &mine, &[]),
            "{slice:?}"
        );
        let mail = format!("({mine}) && (pop || imap || smtp)");
        let decrypted = count(&slice, "pop || imap || smtp", &[]);
        assert_eq!(
            decrypted,
            count(&file, &mail, &["-o", &keys_option]),
            "{slice:?}"
        );
        decrypted_somewhere += usize::from(s["tls"]["decrypted"] == true && decrypted > 0);
    }
    assert!(
        decrypted_somewhere >= 12,
        "{decrypted_somewhere} slices decrypt"
    );
}
