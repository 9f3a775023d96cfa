//! IMAP on real captures (imaplib, curl and a scripted client against Dovecot: imap.pcap,
//! imap-compress.pcap with COMPRESS=DEFLATE, imap-large.pcap.gz with a 10 MB message): every
//! fetched message byte-identical to what Dovecot stored, a header fetch shown as partial, a
//! Thunderbird-style chunked fetch stitched whole, the APPENDed messages, IDLE, the commands,
//! the credentials, and tshark's view of the commands.

mod common;

use std::collections::BTreeSet;

#[test]
fn messages_commands_and_credentials_match_the_server_and_clients() {
    let manifest = common::manifest();
    let mut stitched = 0;
    let mut files = 0;
    for (file, capture) in manifest["captures"].as_object().unwrap() {
        let truth = capture["sessions"].as_array().unwrap();
        if !truth
            .iter()
            .all(|s| s["protocol"] == "imap" && s["tls"].is_null())
        {
            continue;
        }
        files += 1;
        check_capture(file, truth, &mut stitched);
    }
    assert!(
        files >= 3,
        "imap.pcap, imap-compress.pcap, imap-large.pcap.gz"
    );
    assert_eq!(stitched, 1, "the chunked fetch came back whole");
}

fn check_capture(file: &str, truth: &[serde_json::Value], stitched: &mut usize) {
    let got = common::dialogues(&common::sample(file));
    assert_eq!(got.sessions.len(), truth.len(), "{file}");
    for expected in truth {
        let port = expected["client_port"].as_u64().unwrap();
        let session = got
            .sessions
            .iter()
            .find(|s| u64::from(s.client.port()) == port)
            .unwrap();
        let what = format!("{file} session {} ({})", session.id, expected["client"]);
        let messages = got.messages.get(&session.id).cloned().unwrap_or_default();

        let fetched: Vec<_> = messages
            .iter()
            .filter(|m| m.captured.source == "imap-fetch")
            .collect();
        let truth_fetched = expected["messages_fetched"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            fetched.len(),
            truth_fetched.len(),
            "{what}: fetched messages"
        );
        for (m, f) in fetched.iter().zip(&truth_fetched) {
            assert_eq!(
                mailscope::hex::encode(&m.captured.sha256),
                f["received_sha256"],
                "{what}: {}",
                f["command"]
            );
            let whole = f["kind"] == "full";
            assert_eq!(m.captured.partial, !whole, "{what}: {}", f["command"]);
            if whole {
                assert_eq!(
                    mailscope::hex::encode(&m.captured.sha256),
                    f["maildir"]["crlf_sha256"],
                    "{what}: the Maildir file"
                );
                assert_eq!(m.captured.mailbox.as_deref(), Some("INBOX"));
                assert_eq!(m.captured.uid, f["maildir"]["uid"].as_u64(), "{what}: UID");
            } else {
                // A header fetch attaches to the whole message with the UID the server stored
                // it under, whichever was fetched first.
                let uid = f["maildir"]["uid"].as_u64();
                let fetched_whole = truth_fetched
                    .iter()
                    .any(|t| t["kind"] == "full" && t["maildir"]["uid"].as_u64() == uid);
                if fetched_whole {
                    let whole = fetched
                        .iter()
                        .find(|w| !w.captured.partial && w.captured.uid == uid)
                        .unwrap();
                    assert!(
                        m.part_of == Some(whole.id) || whole.parts.contains(&m.id),
                        "{what}: {} is linked to message {} (UID {uid:?})",
                        f["command"],
                        whole.id
                    );
                }
            }
            let chunked = f["command"].as_str().unwrap().contains("chunks");
            *stitched += usize::from(chunked);
        }

        let appended: Vec<_> = messages
            .iter()
            .filter(|m| m.captured.source == "imap-append")
            .collect();
        let truth_appended = expected["messages_appended"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(appended.len(), truth_appended.len(), "{what}: appended");
        for (m, a) in appended.iter().zip(&truth_appended) {
            assert_eq!(
                mailscope::hex::encode(&m.captured.sha256),
                a["sha256"],
                "{what}: APPEND"
            );
            assert_eq!(
                mailscope::hex::encode(&m.captured.sha256),
                a["stored"]["crlf_sha256"],
                "{what}: as Dovecot stored it"
            );
            assert_eq!(m.captured.mailbox.as_deref(), a["mailbox"].as_str());
            let flags = a["flags"].as_str().unwrap_or("").trim_matches(['(', ')']);
            assert_eq!(m.captured.flags.join(" "), flags, "{what}: APPEND flags");
        }

        let sent: Vec<String> = expected["commands"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str())
            .filter(|c| *c != "DONE")
            .map(|c| match c.split_once(" LOGIN ") {
                Some((tag, args)) => {
                    format!("{tag} LOGIN {} ****", args.split(' ').next().unwrap())
                }
                None => c.to_string(),
            })
            .map(|c| {
                if c.contains(" AUTHENTICATE PLAIN ") {
                    c.split(" AUTHENTICATE").next().unwrap().to_string() + " AUTHENTICATE"
                } else {
                    c
                }
            })
            .collect();
        let ours: Vec<String> = got.exchanges[&session.id]
            .iter()
            .filter_map(|x| x.command.as_ref())
            .map(|c| {
                if c.verb == "AUTHENTICATE" {
                    c.line.split(" AUTHENTICATE").next().unwrap().to_string() + " AUTHENTICATE"
                } else {
                    c.line.trim_end_matches(" ... DONE").to_string()
                }
            })
            .collect();
        let mut sent = sent;
        if expected["commands_note"]
            .as_str()
            .is_some_and(|n| n.contains("also sends LOGOUT"))
        {
            sent.push(format!(
                "{} LOGOUT",
                ours.last().unwrap().split(' ').next().unwrap()
            ));
        }
        assert_eq!(ours, sent, "{what}: commands");
        assert!(
            got.exchanges[&session.id]
                .iter()
                .filter(|x| x.command.is_some())
                .all(|x| x.reply.is_some()),
            "{what}: every command completed"
        );

        for c in expected["credentials"].as_array().unwrap() {
            let attempt = &session.auth[0];
            assert_eq!(
                attempt.username.as_deref(),
                c["username"].as_str(),
                "{what}"
            );
            assert_eq!(
                attempt.secret.as_ref().map(|s| s.expose()),
                c["password"].as_str(),
                "{what}"
            );
            assert_eq!(attempt.success, c["success"].as_bool(), "{what}");
        }
    }
}

#[test]
fn tags_and_commands_agree_with_tshark() {
    let path = common::sample("imap.pcap");
    let got = common::dialogues(&path);
    let fields = ["tcp.stream", "imap.request_tag", "imap.request.command"];
    let theirs: BTreeSet<(u64, String, String)> =
        common::tshark_fields(&path, "imap.request", &fields, &[])
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                // tshark splits IMAP on line ends, so an APPEND literal's lines come out as bogus
                // requests (several per frame, comma-joined); those are not commands.
                (f.len() == 3 && !f[2].is_empty() && !f[1].contains(',')).then(|| {
                    (
                        f[0].parse().unwrap(),
                        f[1].to_string(),
                        f[2].to_ascii_uppercase(),
                    )
                })
            })
            .collect();
    let mut sessions = got.sessions.clone();
    sessions.sort_by_key(|s| s.id);
    let ours: BTreeSet<(u64, String, String)> = sessions
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            got.exchanges[&s.id].iter().filter_map(move |x| {
                let c = x.command.as_ref()?;
                let tag = c.line.split(' ').next()?.to_string();
                // tshark names UID FETCH "FETCH" (with a separate UID flag).
                Some((i as u64, tag, c.verb.rsplit(' ').next()?.to_string()))
            })
        })
        .collect();
    assert_eq!(ours, theirs);
}

/// The mailbox view follows SELECT's data and the updates IDLE brought, as the client saw them.
#[test]
fn mailbox_state_follows_select_and_idle() {
    let manifest = common::manifest();
    let expected = &manifest["captures"]["imap.pcap"]["sessions"][0];
    let got = common::dialogues(&common::sample("imap.pcap"));
    let port = expected["client_port"].as_u64().unwrap();
    let session = got
        .sessions
        .iter()
        .find(|s| u64::from(s.client.port()) == port)
        .unwrap();
    let states = &got.selected[&session.id];
    let after = |verb: &str| {
        states
            .iter()
            .find(|(v, _)| v == verb)
            .and_then(|(_, s)| s.clone())
            .unwrap()
    };
    let selected = after("SELECT");
    assert_eq!(
        (selected.name.as_str(), selected.exists),
        ("INBOX", expected["select_exists"].as_u64())
    );
    let during_idle: Vec<u64> = expected["idle"]["untagged_during_idle"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| {
            l.as_str()?
                .strip_prefix("* ")?
                .strip_suffix(" EXISTS")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(
        after("IDLE").exists,
        during_idle.last().copied(),
        "the message delivered during IDLE"
    );
}
