//! SMTP on real captures (samples/, made with Postfix and smtplib, swaks, curl and a scripted
//! socket client): every message byte-identical to what the client sent, the envelope as the
//! server accepted it, every command and reply accounted for, credentials decoded, and the
//! commands and reply codes tshark sees.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The cleartext SMTP sessions of the manifest: (capture file, manifest session).
fn cleartext_smtp() -> Vec<(String, Value)> {
    let manifest = common::manifest();
    let mut out = Vec::new();
    for (file, capture) in manifest["captures"].as_object().unwrap() {
        // findings.pcap's sessions are scenarios with facts, not transcripts; tests/findings.rs
        // checks them.
        if file == "findings.pcap" {
            continue;
        }
        for session in capture["sessions"].as_array().unwrap() {
            if session["protocol"] == "smtp" && session["tls"].is_null() {
                out.push((file.clone(), session.clone()));
            }
        }
    }
    assert!(
        out.len() >= 6,
        "the samples hold cleartext SMTP sessions from several clients"
    );
    out
}

/// Mechanism, user name, password, success.
type Credential = (String, Option<String>, Option<String>, Option<bool>);

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn messages_envelopes_commands_and_credentials_match_what_the_clients_sent() {
    let mut by_file: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (file, session) in cleartext_smtp() {
        by_file.entry(file).or_default().push(session);
    }
    let mut checked_messages = 0;
    let mut checked_credentials = 0;
    let manifest = common::manifest();
    for (file, truth) in by_file {
        let got = common::dialogues(&common::sample(&file));
        // A capture with a small snapshot length cuts messages: they must show as incomplete.
        let cut = manifest["captures"][&file]["snaplen"]
            .as_u64()
            .is_some_and(|s| s < 65535);
        for expected in truth {
            let port = expected["client_port"].as_u64().unwrap();
            let session = got
                .sessions
                .iter()
                .find(|s| u64::from(s.client.port()) == port)
                .unwrap_or_else(|| panic!("{file}: session from port {port}"));
            let what = format!("{file} session {} ({})", session.id, expected["client"]);

            // Messages: bytes, envelope, decoded subject, attachments.
            let messages = got.messages.get(&session.id).cloned().unwrap_or_default();
            // A session that failed to log in sent none (the key is then absent).
            let sent: &[Value] = expected["messages_sent"]
                .as_array()
                .map_or(&[], Vec::as_slice);
            assert_eq!(messages.len(), sent.len(), "{what}: messages");
            for (m, s) in messages.iter().zip(sent) {
                if cut {
                    assert!(
                        !m.captured.complete && m.captured.hole_bytes > 0,
                        "{what}: a cut message is incomplete"
                    );
                    continue;
                }
                assert_eq!(
                    mailscope::hex::encode(&m.captured.sha256),
                    s["sha256"],
                    "{what}: message bytes"
                );
                assert_eq!(m.captured.size, s["size"].as_u64().unwrap(), "{what}");
                assert!(m.captured.complete, "{what}");
                assert_eq!(
                    m.captured.mail_from.as_deref(),
                    s["envelope_from"].as_str(),
                    "{what}"
                );
                assert_eq!(
                    m.captured.rcpt_to,
                    strs(&s["accepted"]),
                    "{what}: accepted recipients"
                );
                assert_eq!(
                    m.view.subject.as_deref(),
                    s["subject"].as_str(),
                    "{what}: subject"
                );
                let ours: BTreeSet<String> = m
                    .view
                    .attachments
                    .iter()
                    .map(|a| mailscope::hex::encode(&a.sha256))
                    .collect();
                let theirs: BTreeSet<String> = s["attachments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["sha256"].as_str().unwrap().to_string())
                    .collect();
                assert_eq!(ours, theirs, "{what}: attachments");
                checked_messages += 1;
            }

            // Commands: every line the client wrote, in order (SASL lines are shown masked and
            // checked through the credentials below).
            let exchanges = &got.exchanges[&session.id];
            let sent = strs(&expected["commands"]);
            let is_auth = |c: &String| c.to_ascii_uppercase().starts_with("AUTH ");
            // A SASL response: one word that is not a command (base64, `*`, or garbage).
            let is_sasl = |c: &String| {
                !c.contains(' ')
                    && !mailscope::proto::smtp::parser::KNOWN_VERBS
                        .contains(&c.to_ascii_uppercase().as_str())
            };
            let mut sent_commands: Vec<String> = sent
                .iter()
                .filter(|c| !is_auth(c) && !is_sasl(c))
                .cloned()
                .collect();
            if expected["commands_note"]
                .as_str()
                .is_some_and(|n| n.contains("also sends QUIT"))
            {
                // curl's trace leaves out the QUIT it sends on closing (its manifest note says so).
                sent_commands.push("QUIT".into());
            }
            let count = |verb: &str| {
                exchanges
                    .iter()
                    .filter(|x| x.command.as_ref().is_some_and(|c| c.verb == verb))
                    .count()
            };
            assert_eq!(
                count("AUTH"),
                sent.iter().filter(|c| is_auth(c)).count(),
                "{what}: AUTH commands"
            );
            assert_eq!(
                count("AUTH-RESPONSE"),
                sent.iter().filter(|c| is_sasl(c)).count(),
                "{what}: SASL responses"
            );
            let our_commands: Vec<String> = exchanges
                .iter()
                .filter_map(|x| x.command.as_ref())
                .filter(|c| c.verb != "." && c.verb != "AUTH" && c.verb != "AUTH-RESPONSE")
                .map(|c| c.line.clone())
                .collect();
            assert_eq!(our_commands, sent_commands, "{what}: commands");
            assert!(
                exchanges.iter().all(|x| x.reply.is_some()),
                "{what}: every command answered"
            );

            // Credentials, in order, with their outcome.
            let creds: Vec<Credential> = expected["credentials"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    // NTLM sends no password: its secret is the NetNTLM line tshark's fields
                    // give (tests/export.rs checks the password reproduces it).
                    let secret = match c["mechanism"].as_str() {
                        Some("NTLM") => &expected["ntlm"]["hashcat"]["line"],
                        _ => &c["password"],
                    };
                    (
                        c["mechanism"].as_str().unwrap().to_string(),
                        c["username"].as_str().map(String::from),
                        secret.as_str().map(String::from),
                        c["success"].as_bool(),
                    )
                })
                .collect();
            let ours: Vec<_> = session
                .auth
                .iter()
                .map(|a| {
                    (
                        a.mechanism.clone(),
                        a.username.clone(),
                        a.secret.as_ref().map(|s| s.expose().to_string()),
                        a.success,
                    )
                })
                .collect();
            assert_eq!(ours, creds, "{what}: credentials");
            checked_credentials += creds.len();
        }
    }
    assert!(
        checked_messages >= 7 && checked_credentials >= 5,
        "{checked_messages} messages, {checked_credentials} credentials"
    );
}

/// tshark's view: per TCP stream, the set of request commands and of reply codes.
fn tshark_smtp(file: &str) -> BTreeMap<u64, (BTreeSet<String>, BTreeSet<String>)> {
    let fields = ["tcp.stream", "smtp.req.command", "smtp.response.code"];
    let options = [
        "-d",
        "tcp.port==2525,smtp",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ];
    let lines = common::tshark_fields(std::path::Path::new(file), "smtp", &fields, &options);
    let mut streams: BTreeMap<u64, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for line in &lines {
        let f: Vec<&str> = line.split('|').collect();
        let entry = streams.entry(f[0].parse().unwrap()).or_default();
        entry.0.extend(
            f[1].split(',')
                .filter(|c| !c.is_empty())
                .map(|c| c.to_ascii_uppercase()),
        );
        entry
            .1
            .extend(f[2].split(',').filter(|c| !c.is_empty()).map(String::from));
    }
    streams
}

#[test]
fn commands_and_reply_codes_agree_with_tshark() {
    let files: BTreeSet<String> = cleartext_smtp().into_iter().map(|(f, _)| f).collect();
    for file in files {
        let path = common::sample(&file);
        let got = common::dialogues(&path);
        let theirs = tshark_smtp(path.to_str().unwrap());
        let mut sessions: Vec<_> = got
            .sessions
            .iter()
            .filter(|s| s.protocol == mailscope::session::model::Protocol::Smtp)
            .cloned()
            .collect();
        sessions.sort_by_key(|s| s.id);
        assert_eq!(sessions.len(), theirs.len(), "{file}");
        for (session, (stream, (commands, codes))) in sessions.iter().zip(&theirs) {
            let exchanges = &got.exchanges[&session.id];
            let our_commands: BTreeSet<String> = exchanges
                .iter()
                .filter_map(|x| x.command.as_ref())
                .filter(|c| c.verb != "." && c.verb != "AUTH-RESPONSE")
                .map(|c| c.verb.clone())
                // tshark lists only the commands it knows; unknown ones are checked above.
                .filter(|verb| mailscope::proto::smtp::parser::KNOWN_VERBS.contains(&verb.as_str()))
                .collect();
            let our_codes: BTreeSet<String> = exchanges
                .iter()
                .filter_map(|x| x.reply.as_ref())
                .map(|r| r.code().to_string())
                .collect();
            let what = format!("{file} session {} vs tshark stream {stream}", session.id);
            if our_commands.contains("BDAT") || session.gaps > 0 {
                // tshark 4.0 takes the bytes after a BDAT chunk for message data, and after a
                // lost end of DATA takes the rest for message data too, so it misses the
                // commands that follow (MANIFEST.json is the truth for them, checked above).
                // What it does see must agree.
                assert!(
                    commands.is_subset(&our_commands),
                    "{what}: {commands:?} within {our_commands:?}"
                );
                assert!(
                    codes.is_subset(&our_codes),
                    "{what}: {codes:?} within {our_codes:?}"
                );
            } else {
                assert_eq!(&our_commands, commands, "{what}: commands");
                assert_eq!(&our_codes, codes, "{what}: reply codes");
            }
        }
    }
}
