//! TLS decryption on real captures made with OpenSSL clients (Python ssl, openssl s_client,
//! curl) against Postfix and Dovecot: every cipher suite of tls-ciphers.pcap decrypts to the
//! exact bytes the client wrote and read (sha256 from the client side), with as many
//! application records as tshark decrypts with the same key log and tshark's cipher suite.
//! The STARTTLS and implicit sessions of the other captures give the credentials and messages
//! the clients sent and fetched. Wrong, cut and foreign key logs never yield plaintext.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use mailscope::session::model::Session;
use sha2::{Digest, Sha256};

fn keys(name: &str) -> Vec<u8> {
    std::fs::read(common::sample(name)).unwrap()
}

fn session_by_port<'a>(sessions: &'a [Session], truth: &serde_json::Value) -> &'a Session {
    let port = truth["client_port"].as_u64().unwrap();
    sessions
        .iter()
        .find(|s| u64::from(s.client.port()) == port)
        .unwrap_or_else(|| panic!("no session from port {port}"))
}

/// tshark's cipher suite per client port, from the ServerHello.
fn tshark_suites(file: &str) -> BTreeMap<u16, u16> {
    let fields = ["tcp.dstport", "tls.handshake.ciphersuite"];
    common::tshark_fields(
        &common::sample(file),
        "tls.handshake.type == 2",
        &fields,
        &[],
    )
    .iter()
    .filter_map(|l| {
        let (port, suite) = l.split_once('\t')?;
        let suite = suite.split(',').next()?.trim_start_matches("0x");
        Some((port.parse().ok()?, u16::from_str_radix(suite, 16).ok()?))
    })
    .collect()
}

#[test]
fn every_cipher_suite_decrypts_to_what_the_client_wrote_and_read() {
    let mut checked = 0;
    for (file, keylog) in [
        ("tls-ciphers.pcap", "tls-ciphers.keys"),
        ("tls-legacy.pcap", "tls-legacy.keys"),
    ] {
        checked += check_ciphers(file, keylog);
    }
    assert!(checked >= 17, "{checked} sessions");
}

/// One capture's sessions against what its clients wrote and read; returns how many.
fn check_ciphers(file: &str, keylog: &str) -> usize {
    let manifest = common::manifest();
    let capture = &manifest["captures"][file];
    let (got, _) = common::dialogues_with_keys(&common::sample(file), &keys(keylog));
    let suites = tshark_suites(file);
    let truth = capture["sessions"].as_array().unwrap();
    for expected in truth {
        let session = session_by_port(&got.sessions, expected);
        let tls = &session.tls.info();
        let what = format!(
            "{file} session {} ({})",
            session.id, expected["tls"]["cipher"]
        );
        let version = expected["tls"]["version"]
            .as_str()
            .unwrap()
            .replace("TLSv", "TLS");
        assert_eq!(tls.version.as_deref(), Some(version.as_str()), "{what}");
        let ours = tls_parser::TlsCipherSuite::from_name(tls.cipher.as_deref().unwrap())
            .unwrap_or_else(|| panic!("{what}: {:?} is an IANA name", tls.cipher));
        assert_eq!(
            Some(&ours.id.0),
            suites.get(&session.client.port()),
            "{what}: tshark's cipher suite"
        );
        assert_eq!(tls.resumed, expected["tls"]["resumed"] == true, "{what}");
        let plaintext = |i: usize| {
            got.decrypted
                .get(&(session.id, i))
                .cloned()
                .unwrap_or_default()
        };
        if expected["tls"]["keylogged"] == false {
            assert!(!session.tls.decrypted(), "{what}");
            assert_eq!(session.tls.error(), Some("no key for this client random"));
            assert!(plaintext(0).is_empty() && plaintext(1).is_empty());
            assert!(
                !got.exchanges.contains_key(&session.id),
                "{what}: nothing dissected"
            );
            continue;
        }
        assert!(session.tls.decrypted(), "{what}: {:?}", session.tls.error());
        for (i, side) in ["client", "server"].into_iter().enumerate() {
            let bytes = plaintext(i);
            assert_eq!(
                bytes.len() as u64,
                expected["plaintext"][format!("{side}_size")]
                    .as_u64()
                    .unwrap(),
                "{what}: {side} plaintext size"
            );
            assert_eq!(
                mailscope::hex::encode(&Sha256::digest(&bytes)),
                expected["plaintext"][format!("{side}_sha256")],
                "{what}: {side} plaintext"
            );
            // For TLS 1.0 this includes the empty records OpenSSL sends before each record
            // (against BEAST), which tshark decrypts but leaves out of its follow output.
            let records = expected["tshark_decrypted_records"][side].as_u64().unwrap();
            assert_eq!(
                tls.application_records[i], records,
                "{what}: {side} records tshark decrypts"
            );
        }
    }
    truth.len()
}

/// The dialogue inside TLS: the credentials the clients gave and the messages they sent or
/// fetched, for STARTTLS (587, 143, 110) and implicit TLS (465, 993, 995), from a key log
/// file and from the capture's own Decryption Secrets Block.
#[test]
fn credentials_and_messages_inside_tls_match_the_clients() {
    let manifest = common::manifest();
    let mut checked = 0;
    for (file, keylog) in [
        ("smtp-auth-starttls.pcap", keys("smtp-auth-starttls.keys")),
        ("tls-mixed.pcapng", keys("tls-mixed.keys")),
        ("tls-mixed-secrets.pcapng", Vec::new()),
    ] {
        let (got, _) = common::dialogues_with_keys(&common::sample(file), &keylog);
        for expected in manifest["captures"][file]["sessions"].as_array().unwrap() {
            let session = session_by_port(&got.sessions, expected);
            let what = format!("{file} session {}", session.id);
            assert!(session.tls.decrypted(), "{what}: {:?}", session.tls.error());
            let mode = expected["tls"]["mode"].as_str().unwrap();
            assert_eq!(session.tls.mode.name(), mode, "{what}");
            for credential in expected["credentials"].as_array().unwrap() {
                let user = credential["username"].as_str().unwrap();
                let attempt = session
                    .auth
                    .iter()
                    .find(|a| a.username.as_deref() == Some(user))
                    .unwrap_or_else(|| panic!("{what}: {user} authenticates"));
                assert_eq!(
                    attempt.secret.as_ref().map(|s| s.expose()),
                    credential["password"].as_str(),
                    "{what}"
                );
                assert_eq!(attempt.success, credential["success"].as_bool(), "{what}");
                checked += 1;
            }
            let hashes: Vec<String> = got
                .messages
                .get(&session.id)
                .map(|m| {
                    m.iter()
                        .map(|m| mailscope::hex::encode(&m.captured.sha256))
                        .collect()
                })
                .unwrap_or_default();
            let sent = expected["messages_sent"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let fetched = expected["messages_fetched"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for m in &sent {
                assert!(
                    hashes.contains(&m["sha256"].as_str().unwrap().to_string()),
                    "{what}: sent {}",
                    m["id"]
                );
                checked += 1;
            }
            for m in &fetched {
                let h = m["received_sha256"].as_str().unwrap().to_string();
                assert!(hashes.contains(&h), "{what}: fetched {}", m["command"]);
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "{checked}");
}

fn flip_secrets(text: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = line.split(' ').map(String::from).collect();
            if let Some(secret) = fields.get_mut(2) {
                let first = if secret.starts_with('0') { "1" } else { "0" };
                secret.replace_range(..1, first);
            }
            fields.join(" ") + "\n"
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn a_wrong_key_is_named_and_gives_no_plaintext() {
    let wrong = flip_secrets(&keys("tls-ciphers.keys"));
    let (got, _) = common::dialogues_with_keys(&common::sample("tls-ciphers.pcap"), &wrong);
    for session in &got.sessions {
        assert!(!session.tls.decrypted());
        let error = session.tls.error().unwrap();
        if session.tls.info().records_undecrypted > 0 && !error.contains("no key") {
            assert!(
                error.contains("wrong key"),
                "session {}: {error}",
                session.id
            );
        }
        assert!(!got.decrypted.keys().any(|(id, _)| *id == session.id));
        if session.tls.mode == mailscope::session::model::TlsMode::Implicit {
            assert!(
                !got.exchanges.contains_key(&session.id),
                "session {}",
                session.id
            );
        }
    }
}

#[test]
fn a_cut_key_log_decrypts_what_it_has_and_says_what_it_lacks() {
    let full = keys("tls-ciphers.keys");
    let cut = &full[..full.len() / 2];
    let (got, keylog) = common::dialogues_with_keys(&common::sample("tls-ciphers.pcap"), cut);
    assert_eq!(
        keylog.malformed,
        u64::from(!cut.ends_with(b"\n")),
        "the cut line"
    );
    let (decrypted, not): (Vec<&Session>, Vec<&Session>) =
        got.sessions.iter().partition(|s| s.tls.decrypted());
    assert!(!decrypted.is_empty() && !not.is_empty());
    for session in not {
        let error = session.tls.error().unwrap();
        assert!(
            error.contains("no key") || error.contains("the key log has no"),
            "session {}: {error}",
            session.id
        );
    }
}

#[test]
fn keys_for_other_connections_only() {
    let (got, _) = common::dialogues_with_keys(
        &common::sample("tls-mixed.pcapng"),
        &keys("tls-ciphers.keys"),
    );
    assert_eq!(got.sessions.len(), 6);
    for session in &got.sessions {
        assert_eq!(session.tls.error(), Some("no key for this client random"));
        assert!(
            session.tls.info().version.is_some(),
            "the handshake is still read"
        );
    }
    assert!(got.decrypted.is_empty());
}

/// Losing a segment in the middle of a TLS stream stops that direction at the gap: what came
/// before stays, nothing after it is guessed.
#[test]
fn a_gap_stops_decryption_at_the_gap() {
    let path = common::sample("tls-ciphers.pcap");
    let mut frames = common::frames(&path);
    let (whole, _) = common::dialogues_with_keys(&path, &keys("tls-ciphers.keys"));
    // The last big segment from a POP3S server: the RETR reply, past the handshake, with
    // the reply to QUIT still to come. (Ethernet, IPv4 without options, as tcpdump wrote it.)
    let payload = |data: &[u8]| {
        data.len()
            .saturating_sub(34 + usize::from(data[46] >> 4) * 4)
    };
    let at = frames
        .iter()
        .rposition(|f| f.data[34..36] == 995u16.to_be_bytes() && payload(&f.data) > 200)
        .unwrap();
    frames.remove(at);
    let source = mailscope::capture::MemorySource { frames };
    let mut analyzer = mailscope::pipeline::Analyzer::new(Default::default());
    let mut table = mailscope::session::SessionTable::new(common::Dialogues::default());
    table.keys.add(&keys("tls-ciphers.keys"));
    table.keys.finish();
    analyzer.run(
        &mut [Box::new(source) as Box<dyn mailscope::capture::PacketSource>],
        &mut table,
    );
    let cut = table.into_sink();
    let hit: Vec<&Session> = cut
        .sessions
        .iter()
        .filter(|s| s.tls.error() == Some("gap in the stream"))
        .collect();
    assert_eq!(hit.len(), 1);
    let id = hit[0].id;
    for i in 0..2 {
        let before = whole.decrypted.get(&(id, i)).cloned().unwrap_or_default();
        let after = cut.decrypted.get(&(id, i)).cloned().unwrap_or_default();
        assert!(
            before.starts_with(&after),
            "only a prefix of the true plaintext"
        );
    }
    let lost = whole.decrypted.get(&(id, 1)).map_or(0, Vec::len)
        - cut.decrypted.get(&(id, 1)).map_or(0, Vec::len);
    assert!(lost > 0);
}

/// `--inject-secrets` writes a pcapng that both tshark and mailscope decrypt with no key log.
#[test]
fn injected_secrets_open_decrypted_without_a_key_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("with-secrets.pcapng");
    let status = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .arg(common::sample("tls-ciphers.pcap"))
        .args([
            "--keylog",
            common::sample("tls-ciphers.keys").to_str().unwrap(),
        ])
        .args(["--inject-secrets", out.to_str().unwrap(), "--quiet"])
        .env_remove("SSLKEYLOGFILE")
        .status()
        .unwrap();
    assert!(status.success());
    let (original, _) = common::dialogues_with_keys(
        &common::sample("tls-ciphers.pcap"),
        &keys("tls-ciphers.keys"),
    );
    let (injected, _) = common::dialogues_with_keys(&out, b"");
    assert_eq!(injected.decrypted, original.decrypted);
    assert!(!injected.decrypted.is_empty());
    let decrypted_by_tshark = |file: &std::path::Path, keylog: Option<&str>| {
        let option = keylog.map(|k| format!("tls.keylog_file:{k}"));
        let extra: Vec<&str> = option.iter().flat_map(|o| ["-o", o.as_str()]).collect();
        common::tshark_fields(file, "pop || imap || smtp", &["frame.number"], &extra).len()
    };
    let with_file = decrypted_by_tshark(
        &common::sample("tls-ciphers.pcap"),
        common::sample("tls-ciphers.keys").to_str(),
    );
    assert!(with_file > 100);
    assert_eq!(decrypted_by_tshark(&out, None), with_file);
}

/// Live capture: the client writes its key log while the capture runs, so records can arrive
/// before their keys. They wait (within bounds) and are decrypted once the keys are logged;
/// connections that end before their keys are logged say so and give no plaintext.
#[test]
fn records_that_arrive_before_their_keys_wait_for_them() {
    let (frames, all_keys, at_once) = ciphers_sample();
    // Keys logged in the middle of the first handshake, and half way through the capture.
    for keys_at in [8, frames.len() / 2] {
        let late = with_keys_logged_at(&frames, keys_at, &all_keys);
        for session in &late.sessions {
            if session.tls.decrypted() {
                assert_eq!(
                    plaintext(&late, session.id),
                    plaintext(&at_once, session.id)
                );
            } else {
                assert!(session.tls.error().unwrap().starts_with("no key"));
                assert_eq!(plaintext(&late, session.id), [None, None]);
            }
        }
        let decrypted = late.sessions.iter().filter(|s| s.tls.decrypted()).count();
        if keys_at == 8 {
            assert_eq!(
                decrypted, 13,
                "all but the connection whose keys were never logged"
            );
        } else {
            assert!(
                decrypted > 0 && decrypted < 13,
                "those still open when the keys came"
            );
        }
    }
}

/// Records that wait for their keys draw on one room that all connections share: a connection
/// that finds none left says why and is not decrypted from there on, the others are decrypted
/// as if the keys had been logged from the start, and the room is whole again at the end.
#[test]
fn records_waiting_for_their_keys_share_a_room() {
    use mailscope::proto::room::{Room, Rooms};
    let (frames, all_keys, at_once) = ciphers_sample();
    let keys_at = frames.len() / 2;
    let roomy = with_keys_logged_at(&frames, keys_at, &all_keys);
    // Room for a record or two: less than the connection open when the keys come holds
    // (about 150 bytes), more than nothing, so that taking and giving back are both at work.
    let room = Room::new(100);
    let rooms = Rooms {
        waiting: room.clone(),
        ..Rooms::default()
    };
    let cramped = with_keys_logged_at_in(&frames, keys_at, &all_keys, rooms);
    assert_eq!(
        room.take(room.limit()),
        room.limit(),
        "all of it given back"
    );

    let decrypted =
        |d: &common::Dialogues, id: u64| d.sessions.iter().any(|s| s.id == id && s.tls.decrypted());
    let mut cut = 0;
    for session in &cramped.sessions {
        if session.tls.decrypted() {
            assert_eq!(
                plaintext(&cramped, session.id),
                plaintext(&at_once, session.id)
            );
            continue;
        }
        let error = session.tls.error().unwrap();
        if error.starts_with("records waited for a key past the limit") {
            // Where the keys came while it was open, the same connection got them with room.
            cut += usize::from(decrypted(&roomy, session.id));
            let notes = cramped.notes.get(&session.id).cloned().unwrap_or_default();
            assert!(
                notes.iter().any(|n| n.contains("went past what may wait")),
                "{notes:?}"
            );
        } else {
            assert!(error.starts_with("no key"), "{error}");
            assert!(!decrypted(&roomy, session.id));
        }
    }
    assert!(
        cut > 0,
        "a connection that waited past the room, decrypted with room"
    );
}

/// tls-ciphers.pcap's frames, its key log, and what it gives with every key known from the start.
fn ciphers_sample() -> (
    Vec<mailscope::capture::MemoryFrame>,
    Vec<u8>,
    common::Dialogues,
) {
    let path = common::sample("tls-ciphers.pcap");
    let all_keys = keys("tls-ciphers.keys");
    let (at_once, _) = common::dialogues_with_keys(&path, &all_keys);
    (common::frames(&path), all_keys, at_once)
}

/// A session's decrypted bytes, each direction.
fn plaintext(dialogues: &common::Dialogues, session: u64) -> [Option<Vec<u8>>; 2] {
    [0, 1].map(|i| dialogues.decrypted.get(&(session, i)).cloned())
}

fn with_keys_logged_at(
    frames: &[mailscope::capture::MemoryFrame],
    at: usize,
    keylog: &[u8],
) -> common::Dialogues {
    with_keys_logged_at_in(frames, at, keylog, Default::default())
}

/// Frames through one thread, as a live capture whose key log is written at frame `at`, with
/// these rooms.
fn with_keys_logged_at_in(
    frames: &[mailscope::capture::MemoryFrame],
    at: usize,
    keylog: &[u8],
    rooms: mailscope::proto::room::Rooms,
) -> common::Dialogues {
    use mailscope::capture::{Frame, Record};
    let mut analyzer = mailscope::pipeline::Analyzer::new(Default::default());
    let mut table = mailscope::session::SessionTable::new(common::Dialogues::default());
    table.keys_may_come = true;
    table.rooms = rooms;
    for (i, f) in frames.iter().enumerate() {
        if i == at {
            table.keys.add(keylog);
        }
        let frame = Frame {
            index: i as u64 + 1,
            ts: f.ts,
            link: f.link,
            interface: 0,
            data: &f.data,
            orig_len: f.data.len() as u32,
        };
        analyzer.feed(Record::Frame(frame), &mut table);
    }
    analyzer.finish(&mut table);
    table.into_sink()
}
