//! POP3 on real captures (samples/pop3.pcap: poplib and curl against Dovecot): every retrieved
//! message byte-identical to what Dovecot stored (the Maildir file, with CRLF line ends), TOP
//! shown as partial, the listing, the commands, the credentials, and tshark's view.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

fn sessions() -> Vec<Value> {
    let manifest = common::manifest();
    manifest["captures"]["pop3.pcap"]["sessions"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn messages_listing_commands_and_credentials_match_the_server_and_clients() {
    let got = common::dialogues(&common::sample("pop3.pcap"));
    let truth = sessions();
    assert_eq!(got.sessions.len(), truth.len());
    for expected in &truth {
        let port = expected["client_port"].as_u64().unwrap();
        let session = got
            .sessions
            .iter()
            .find(|s| u64::from(s.client.port()) == port)
            .unwrap();
        let what = format!("session {} ({})", session.id, expected["client"]);

        let messages = got.messages.get(&session.id).cloned().unwrap_or_default();
        let fetched = expected["messages_fetched"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(messages.len(), fetched.len(), "{what}: messages");
        for (m, f) in messages.iter().zip(&fetched) {
            assert_eq!(
                mailscope::hex::encode(&m.captured.sha256),
                f["received_sha256"],
                "{what}: {}",
                f["command"]
            );
            let full = f["kind"] == "full";
            assert_eq!(m.captured.partial, !full, "{what}: TOP is partial");
            if full {
                // What Dovecot stored, as POP3 puts it on the wire (CRLF line ends).
                assert_eq!(
                    mailscope::hex::encode(&m.captured.sha256),
                    f["maildir"]["crlf_sha256"],
                    "{what}: the Maildir file"
                );
            }
        }

        let is_sasl = |c: &String| {
            !c.contains(' ')
                && !mailscope::proto::pop3::parser::KNOWN_VERBS
                    .contains(&c.to_ascii_uppercase().as_str())
        };
        let mut sent: Vec<String> = expected["commands"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str().map(String::from))
            .filter(|c| !c.to_ascii_uppercase().starts_with("AUTH ") && !is_sasl(c))
            .map(|c| {
                if c.to_ascii_uppercase().starts_with("PASS ") {
                    "PASS ****".to_string()
                } else {
                    c
                }
            })
            .collect();
        if expected["commands_note"]
            .as_str()
            .is_some_and(|n| n.contains("also sends QUIT"))
        {
            sent.push("QUIT".into()); // curl's trace leaves out its closing QUIT
        }
        let ours: Vec<String> = got.exchanges[&session.id]
            .iter()
            .filter_map(|x| x.command.as_ref())
            .filter(|c| c.verb != "AUTH" && c.verb != "AUTH-RESPONSE")
            .map(|c| c.line.clone())
            .collect();
        assert_eq!(ours, sent, "{what}: commands");

        for c in expected["credentials"].as_array().unwrap() {
            let attempt = session
                .auth
                .iter()
                .find(|a| a.mechanism == c["mechanism"])
                .unwrap_or_else(|| panic!("{what}: {}", c["mechanism"]));
            assert_eq!(
                attempt.username.as_deref(),
                c["username"].as_str(),
                "{what}"
            );
            assert_eq!(attempt.success, c["success"].as_bool(), "{what}");
            if c["password_on_wire"] == "plain" {
                assert_eq!(
                    attempt.secret.as_ref().map(|s| s.expose()),
                    c["password"].as_str(),
                    "{what}"
                );
            }
        }

        let uidl: BTreeSet<(u64, String)> = expected["uidl"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.as_str()?
                    .split_once(' ')
                    .map(|(n, u)| (n.parse().unwrap(), u.to_string()))
            })
            .collect();
        let ours: BTreeSet<(u64, String)> = session
            .mailbox
            .iter()
            .filter_map(|e| Some((e.number, e.uid.clone()?)))
            .collect();
        assert_eq!(ours, uidl, "{what}: UIDL listing");
    }
}

#[test]
fn commands_and_status_indicators_agree_with_tshark() {
    let path = common::sample("pop3.pcap");
    let got = common::dialogues(&path);
    let fields = ["tcp.stream", "pop.request.command"];
    let mut theirs: Vec<(u64, String)> =
        common::tshark_fields(&path, "pop.request.command", &fields, &[])
            .iter()
            .filter_map(|l| {
                l.split_once('\t')
                    .map(|(s, c)| (s.parse().unwrap(), c.to_ascii_uppercase()))
            })
            .collect();
    theirs.sort_by_key(|(s, _)| *s);
    let mut sessions = got.sessions.clone();
    sessions.sort_by_key(|s| s.id);
    let mut ours = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        for x in &got.exchanges[&s.id] {
            if let Some(c) = &x.command {
                if c.verb != "AUTH-RESPONSE" {
                    ours.push((i as u64, c.verb.clone()));
                }
            }
        }
    }
    // tshark also lists SASL responses (base64 lines after AUTH) as commands; they are checked
    // through the credentials above.
    let theirs: BTreeSet<_> = theirs
        .into_iter()
        .filter(|(_, c)| mailscope::proto::pop3::parser::KNOWN_VERBS.contains(&c.as_str()))
        .collect();
    let ours: BTreeSet<_> = ours.into_iter().collect();
    assert_eq!(ours, theirs);
}

/// Dovecot's copies carry the Received headers Postfix and LMTP added: the relay path lists them
/// oldest first (the last header is the oldest), each with the id its header gives.
#[test]
fn received_chain_is_the_relay_path_oldest_first() {
    let got = common::dialogues(&common::sample("pop3.pcap"));
    let mut checked = 0;
    for message in got.messages.values().flatten() {
        let raw = String::from_utf8_lossy(&message.captured.bytes).to_string();
        let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
        let received: Vec<usize> = headers
            .match_indices("\r\nReceived:")
            .map(|(i, _)| i)
            .collect();
        let hops = &message.view.hops;
        assert_eq!(hops.len(), received.len(), "one hop per Received header");
        let positions: Vec<usize> = hops
            .iter()
            .map(|h| headers.find(h.id.as_deref().unwrap()).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] > w[1]),
            "oldest first: {positions:?}"
        );
        assert_eq!(
            hops[0].with.as_deref(),
            Some("ESMTP"),
            "Postfix received it by SMTP"
        );
        assert_eq!(
            hops.last().unwrap().with.as_deref(),
            Some("LMTP"),
            "then handed it to Dovecot"
        );
        checked += 1;
    }
    assert!(checked >= 3);
}
