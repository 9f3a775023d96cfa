//! Known-answer and hostile-input tests of the SMTP state machine, fed in code. The tests on
//! real captures (message hashes, commands, credentials against what the clients sent, and
//! tshark agreement) are in tests/smtp.rs.

use sha2::{Digest, Sha256};

use super::*;
use crate::proto::framing::{MAX_LINE_BYTES, MAX_MESSAGE_BYTES};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

fn run(steps: &[(Direction, &[u8])]) -> Vec<ProtoEvent> {
    let mut d = SmtpDissector::default();
    let mut out = Vec::new();
    for (i, (direction, bytes)) in steps.iter().enumerate() {
        d.data(*direction, bytes, Timestamp(i as i64), &mut out);
    }
    d.end(Timestamp(steps.len() as i64), &mut out);
    out
}

fn exchanges(events: &[ProtoEvent]) -> Vec<(Option<String>, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            ProtoEvent::Exchange(x) => Some((
                x.command.as_ref().map(|c| c.line.clone()),
                x.reply.as_ref().map(|r| r.code().to_string()),
            )),
            _ => None,
        })
        .collect()
}

fn messages(events: &[ProtoEvent]) -> Vec<&crate::proto::CapturedMessage> {
    events.iter().filter_map(ProtoEvent::as_message).collect()
}

fn notes(events: &[ProtoEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(ProtoEvent::as_note)
        .map(|n| n.text.as_str())
        .collect()
}

fn pair(command: &str, code: &str) -> (Option<String>, Option<String>) {
    (Some(command.to_string()), Some(code.to_string()))
}

#[test]
fn pipelined_transaction_with_dot_stuffing() {
    let events = run(&[
        (S, b"220 mx ESMTP\r\n"),
        (C, b"EHLO c\r\n"),
        (S, b"250-mx\r\n250 PIPELINING\r\n"),
        (
            C,
            b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<nobody@y>\r\nDATA\r\n",
        ),
        (
            S,
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n354 go\r\n",
        ),
        (C, b"Subject: hi\r\n\r\n..leading dot\r\n.\r\n"),
        (S, b"250 2.0.0 queued\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ]);
    assert_eq!(
        exchanges(&events),
        vec![
            (None, Some("220".into())),
            pair("EHLO c", "250"),
            pair("MAIL FROM:<a@x>", "250"),
            pair("RCPT TO:<b@y>", "250"),
            pair("RCPT TO:<nobody@y>", "550"),
            pair("DATA", "354"),
            pair(".", "250"),
            pair("QUIT", "221"),
        ]
    );
    let m = messages(&events);
    assert_eq!(m.len(), 1);
    let body = b"Subject: hi\r\n\r\n.leading dot\r\n";
    assert_eq!(m[0].bytes, body);
    assert_eq!(m[0].sha256, <[u8; 32]>::from(Sha256::digest(body)));
    assert_eq!(
        (m[0].mail_from.as_deref(), m[0].rcpt_to.clone()),
        (Some("a@x"), vec!["b@y".to_string()])
    );
    assert!(m[0].complete);
}

#[test]
fn one_byte_at_a_time_gives_the_same_result() {
    let client = b"EHLO c\r\nAUTH LOGIN\r\nYm9i\r\ncGFzcw==\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhello\r\n.\r\nBDAT 5 LAST\r\nabcdeQUIT\r\n";
    let server = b"220 mx\r\n250 mx\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n250 chunk\r\n221 bye\r\n";
    // The dialogue in order: each reply, then the client's next piece.
    let replies: Vec<&[u8]> = server.split_inclusive(|&b| b == b'\n').collect();
    let pieces: [&[u8]; 10] = [
        b"EHLO c\r\nAUTH LOGIN\r\n",
        b"Ym9i\r\n",
        b"cGFzcw==\r\n",
        b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n",
        b"",
        b"",
        b"hello\r\n.\r\n",
        b"BDAT 5 LAST\r\nabcde",
        b"QUIT\r\n",
        b"",
    ];
    assert_eq!(pieces.concat(), client);
    let mut script: Vec<(Direction, &[u8])> = vec![(S, replies[0])];
    for (piece, reply) in pieces.iter().zip(&replies[1..]) {
        script.push((C, piece));
        script.push((S, reply));
    }
    let whole = run(&script);
    let mut bytewise: Vec<(Direction, &[u8])> = Vec::new();
    for &(d, bytes) in &script {
        bytewise.extend(bytes.chunks(1).map(|b| (d, b)));
    }
    let mut d = SmtpDissector::default();
    let mut out = Vec::new();
    for (direction, bytes) in &bytewise {
        d.data(*direction, bytes, Timestamp(0), &mut out);
    }
    d.end(Timestamp(0), &mut out);
    assert_eq!(exchanges(&out), exchanges(&whole));
    assert_eq!(
        messages(&out).iter().map(|m| &m.bytes).collect::<Vec<_>>(),
        messages(&whole)
            .iter()
            .map(|m| &m.bytes)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        messages(&whole)
            .iter()
            .map(|m| m.bytes.as_slice())
            .collect::<Vec<_>>(),
        vec![&b"hello\r\n"[..], b"abcde"]
    );
    let auth: Vec<_> = whole.iter().filter_map(ProtoEvent::as_auth).collect();
    assert_eq!(auth.len(), 1);
    assert_eq!(
        (
            auth[0].username.as_deref(),
            auth[0].secret.as_ref().map(|s| s.expose()),
            auth[0].success
        ),
        (Some("bob"), Some("pass"), Some(true))
    );
    assert!(
        exchanges(&whole).contains(&pair("[****]", "235")),
        "the password is masked in the dialogue"
    );
}

#[test]
fn starttls_hands_over_what_each_side_sent_past_it() {
    let events = run(&[
        (S, b"220 mx\r\n"),
        (C, b"EHLO c\r\n"),
        (S, b"250-mx\r\n250 STARTTLS\r\n"),
        (C, b"STARTTLS\r\n\x16\x03\x01\x00\x05hello"),
        (S, b"220 2.0.0 Ready\r\n\x16\x03\x03\x00\x02ok"),
        // What the TLS layer decrypts comes back as a fresh dialogue.
        (C, b"EHLO c\r\n"),
        (S, b"250 mx\r\n"),
    ]);
    let upgrade = events.iter().find_map(ProtoEvent::as_upgrade).unwrap();
    assert_eq!(
        (upgrade.client_offset, upgrade.server_offset),
        (8 + 10, 8 + 22 + 17)
    );
    assert_eq!(
        upgrade.held,
        [
            b"\x16\x03\x01\x00\x05hello".to_vec(),
            b"\x16\x03\x03\x00\x02ok".to_vec()
        ]
    );
    let pairs = exchanges(&events);
    assert_eq!(pairs[pairs.len() - 2], pair("STARTTLS", "220"));
    assert_eq!(pairs.last(), Some(&pair("EHLO c", "250")));
    assert!(notes(&events).is_empty());
}

#[test]
fn refused_starttls_keeps_the_dialogue_in_clear() {
    let events = run(&[
        (S, b"220 mx\r\n"),
        (C, b"STARTTLS\r\nNOOP\r\n"),
        (S, b"454 4.7.0 TLS not available\r\n250 ok\r\n"),
    ]);
    assert_eq!(
        exchanges(&events)[1..],
        [pair("STARTTLS", "454"), pair("NOOP", "250")]
    );
    assert!(!events.iter().any(|e| matches!(e, ProtoEvent::Upgrade(_))));
}

#[test]
fn gap_in_data_is_a_hole_and_gap_in_commands_resynchronises() {
    let mut d = SmtpDissector::default();
    let mut out = Vec::new();
    let t = Timestamp(0);
    d.data(S, b"220 mx\r\n", t, &mut out);
    d.data(
        C,
        b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n",
        t,
        &mut out,
    );
    d.data(S, b"250 ok\r\n250 ok\r\n354 go\r\n", t, &mut out);
    d.data(C, b"line one\r\n", t, &mut out);
    d.gap(C, 1000, t, &mut out);
    d.data(C, b"tail\r\n.\r\n", t, &mut out);
    d.data(S, b"250 queued\r\n", t, &mut out);
    d.data(C, b"RCPT TO:<", t, &mut out);
    d.gap(C, 50, t, &mut out);
    d.data(C, b"garbage after the gap\r\nNOOP\r\n", t, &mut out);
    d.data(S, b"250 ok\r\n", t, &mut out);
    d.end(t, &mut out);
    let m = messages(&out);
    assert_eq!(
        (m[0].hole_bytes, m[0].complete, m[0].bytes.as_slice()),
        (1000, false, &b"line one\r\ntail\r\n"[..])
    );
    assert_eq!(exchanges(&out).last(), Some(&pair("NOOP", "250")));
}

#[test]
fn unterminated_data_is_reported_incomplete() {
    let events = run(&[
        (S, b"220 mx\r\n"),
        (C, b"DATA\r\n"),
        (S, b"354 go\r\n"),
        (C, b"Subject: cut\r\nbody"),
    ]);
    let m = messages(&events);
    assert_eq!((m.len(), m[0].complete, m[0].size), (1, false, 18));
    assert!(notes(&events)
        .iter()
        .any(|n| n.contains("ended inside a message")));
}

#[test]
fn hundred_megabyte_message_is_hashed_whole_and_stored_bounded() {
    let mut d = SmtpDissector::default();
    let mut out = Vec::new();
    let t = Timestamp(0);
    d.data(S, b"220 mx\r\n", t, &mut out);
    d.data(C, b"DATA\r\n", t, &mut out);
    d.data(S, b"354 go\r\n", t, &mut out);
    let line = [b"x".repeat(998), b"\r\n".to_vec()].concat();
    let chunk = line.repeat(64);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while size < 100 << 20 {
        d.data(C, &chunk, t, &mut out);
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    d.data(C, b".\r\n", t, &mut out);
    let m = messages(&out);
    assert_eq!(
        (m[0].size, m[0].truncated, m[0].bytes.len()),
        (size, true, MAX_MESSAGE_BYTES)
    );
    assert_eq!(m[0].sha256, <[u8; 32]>::from(hasher.finalize()));
}

#[test]
fn megabyte_lines_binary_garbage_and_unsolicited_replies() {
    let mut garbage = vec![0u8; 3 << 20];
    let mut x: u32 = 1;
    for b in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let long = vec![b'A'; 3 << 20];
    let events = run(&[
        (S, b"220 mx\r\n"),
        (C, &long),
        (C, b"\r\nNOOP\r\n"),
        (S, b"500 too long\r\n250 ok\r\n"),
        (C, &garbage),
        (S, &garbage),
        (S, b"\r\n421 4.4.2 timeout\r\n"),
    ]);
    let x = exchanges(&events);
    assert_eq!(x[0], (None, Some("220".into())));
    assert!(
        x[1].0.as_ref().is_some_and(|c| c.len() == MAX_LINE_BYTES),
        "the long line is cut at the limit"
    );
    assert_eq!(x[2], pair("NOOP", "250"));
    assert!(notes(&events).iter().any(|n| n.contains("longer than")));
    assert!(
        x.iter().any(|e| e.1.as_deref() == Some("421")),
        "the server's last word is kept"
    );
}

#[test]
fn malformed_auth_is_noted_and_yields_no_credentials() {
    let events = run(&[
        (S, b"220 mx\r\n"),
        (C, b"AUTH PLAIN !!notbase64\r\n"),
        (S, b"501 5.5.2 bad\r\n"),
    ]);
    assert!(notes(&events)
        .iter()
        .any(|n| n.contains("not valid base64")));
    let auth: Vec<_> = events.iter().filter_map(ProtoEvent::as_auth).collect();
    assert_eq!(
        (auth[0].username.as_ref(), auth[0].success),
        (None, Some(false))
    );
}

#[test]
fn source_route_is_shown_as_a_route() {
    let events = run(&[
        (S, b"220 mx\r\n"),
        (C, b"RCPT TO:<@relay1.test,@relay2.test:user@host.test>\r\n"),
        (S, b"250 ok\r\n"),
    ]);
    assert!(notes(&events).contains(
        &"source-routed recipient (RFC 821 route): relay1.test -> relay2.test -> user@host.test"
    ));
}
