//! Findings through the real binary, against what the sample scripts did and what the servers
//! answered (samples/MANIFEST.json): each finding where the scenario built it, and, as much
//! to the point, none where a session of the same kind was clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// `mailscope --json` on samples (with their key logs, and extra options); the records.
fn run(samples: &[&str], extra: &[&str]) -> Vec<Value> {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mailscope"));
    command.args(["--json", "--quiet"]).args(extra);
    for name in samples {
        command.arg(common::sample(name));
        let keys = common::sample(name).with_extension("keys");
        if keys.exists() {
            command.arg("--keylog").arg(keys);
        }
    }
    let out = command.env_remove("SSLKEYLOGFILE").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Each session's client port, by session id.
fn client_ports(records: &[Value]) -> BTreeMap<u64, u64> {
    records
        .iter()
        .filter(|r| r["type"] == "session")
        .map(|s| {
            let client = s["client"].as_str().unwrap();
            let port = client.rsplit(':').next().unwrap().parse().unwrap();
            (s["id"].as_u64().unwrap(), port)
        })
        .collect()
}

fn findings<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "finding" && r["kind"] == kind)
        .collect()
}

/// Every password or response a client sent outside TLS is a cleartext-credentials alert
/// naming its user; none of those sent inside TLS (STARTTLS or implicit) is.
#[test]
fn credentials_in_clear_are_alerts_and_inside_tls_are_not() {
    let samples = [
        "pop3.pcap",
        "imap.pcap",
        "smtp-auth-cleartext.pcap",
        "smtp-auth-starttls.pcap",
        "tls-mixed.pcapng",
    ];
    let manifest = common::manifest();
    let mut expected = BTreeSet::new();
    let mut protected = 0;
    for name in samples {
        for session in manifest["captures"][name]["sessions"].as_array().unwrap() {
            for credential in session["credentials"].as_array().unwrap() {
                let (Some(user), Some(_)) = (
                    credential["username"].as_str(),
                    credential["password"].as_str(),
                ) else {
                    continue;
                };
                if session["tls"].is_null() {
                    let port = session["client_port"].as_u64().unwrap();
                    expected.insert((port, user.to_string()));
                } else {
                    protected += 1;
                }
            }
        }
    }
    let records = run(&samples, &[]);
    let ports = client_ports(&records);
    let found: BTreeSet<(u64, String)> = findings(&records, "cleartext-credentials")
        .iter()
        .map(|f| {
            assert_eq!(f["severity"], "alert");
            let detail = f["detail"].as_str().unwrap();
            let user = detail
                .split(" as ")
                .nth(1)
                .unwrap()
                .split(':')
                .next()
                .unwrap();
            (ports[&f["session"].as_u64().unwrap()], user.to_string())
        })
        .collect();
    assert_eq!(found, expected);
    assert!(
        expected.len() >= 10 && protected >= 10,
        "{expected:?} {protected}"
    );
}

/// hostile-escapes: Postfix stored the message with its bare CR changed (the manifest's
/// `changes`), so the IMAP fetch has another body than the SMTP submission. In imap.pcap and
/// pop3.pcap the same message is fetched twice unchanged: no finding there.
#[test]
fn a_message_changed_on_its_way_is_found_and_unchanged_ones_are_not() {
    let manifest = common::manifest();
    let sent = &manifest["captures"]["hostile-escapes.pcap"]["sessions"][0]["messages_sent"][0];
    assert!(
        !sent["stored"]["changes"].as_array().unwrap().is_empty(),
        "the server changed the message"
    );
    let records = run(&["hostile-escapes.pcap"], &[]);
    let altered = findings(&records, "message-altered");
    assert_eq!(altered.len(), 1, "{altered:?}");
    let fetched = records
        .iter()
        .find(|r| r["type"] == "message" && r["source"] == "imap-fetch")
        .unwrap();
    assert_eq!(fetched["seen_before"][0]["source"], "smtp");
    assert_eq!(fetched["seen_before"][0]["sha256"], sent["sha256"]);
    assert_eq!(altered[0]["session"], fetched["session"]);
    for unchanged in ["imap.pcap", "pop3.pcap"] {
        let other = run(&[unchanged], &[]);
        let again = other
            .iter()
            .filter(|r| r["type"] == "message" && r["seen_before"].is_array())
            .count();
        assert!(again >= 1, "{unchanged}: a message is seen twice");
        assert!(
            findings(&other, "message-altered").is_empty(),
            "{unchanged}"
        );
    }
}

/// The README's table names every kind with the severity the code gives it.
#[test]
fn the_readme_explains_every_finding_kind() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for kind in mailscope::session::model::FindingKind::ALL {
        let row = format!("| `{}` | {} |", kind.name(), kind.severity().name());
        assert!(readme.contains(&row), "README lacks {row}");
    }
}
