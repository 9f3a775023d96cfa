//! TLS from a second, independent stack: a rustls client and server talk IMAP in memory, the
//! client's KeyLog writes the secrets, and their TLS bytes are laid into TCP segments as a
//! capture would hold them. mailscope must give back exactly the plaintext each side wrote:
//! TLS 1.3 with a HelloRetryRequest and a KeyUpdate, ChaCha20, and TLS 1.2 ECDHE suites.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use mailscope::capture::{LinkType, MemoryFrame, MemorySource, PacketSource, Timestamp};
use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConnection, SupportedCipherSuite};

/// The client's key log, as SSLKEYLOGFILE would have it.
#[derive(Debug, Default)]
struct KeyLines(Mutex<String>);

impl rustls::KeyLog for KeyLines {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!(
            "{label} {} {}\n",
            mailscope::hex::encode(client_random),
            mailscope::hex::encode(secret)
        );
        self.0.lock().unwrap().push_str(&line);
    }
}

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
const MSS: usize = 1448;

/// TCP segments of one connection on port 993, built as tcpdump would capture them.
struct Wire {
    frames: Vec<MemoryFrame>,
    next_seq: [u32; 2],
}

impl Wire {
    fn new() -> Wire {
        let mut wire = Wire {
            frames: Vec::new(),
            next_seq: [1000, 5000],
        };
        wire.segment(0, &[], true, false);
        wire.segment(1, &[], true, true);
        wire.segment(0, &[], false, true);
        wire
    }

    fn segment(&mut self, side: usize, payload: &[u8], syn: bool, ack: bool) {
        let (src, dst, sport, dport) = match side {
            0 => (CLIENT, SERVER, 40000, 993),
            _ => (SERVER, CLIENT, 993, 40000),
        };
        let mut tcp = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, self.next_seq[side], 65535);
        if syn {
            tcp = tcp.syn();
        }
        if ack {
            tcp = tcp.ack(self.next_seq[1 - side]);
        }
        let mut data = Vec::new();
        tcp.write(&mut data, payload).unwrap();
        self.next_seq[side] = self.next_seq[side]
            .wrapping_add(payload.len() as u32)
            .wrapping_add(u32::from(syn));
        let ts = Timestamp(1_700_000_000_000_000_000 + self.frames.len() as i64 * 1_000_000);
        self.frames.push(MemoryFrame {
            ts,
            link: LinkType::ETHERNET,
            data,
        });
    }

    fn send(&mut self, side: usize, bytes: &[u8]) {
        for chunk in bytes.chunks(MSS) {
            self.segment(side, chunk, false, true);
        }
    }
}

struct Peers {
    client: ClientConnection,
    server: ServerConnection,
    wire: Wire,
    /// What each side wrote as application data: [client, server].
    written: [Vec<u8>; 2],
}

impl Peers {
    /// Moves TLS bytes both ways until neither side has anything to send.
    fn flush(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            while self.client.wants_write() {
                let mut bytes = Vec::new();
                self.client.write_tls(&mut bytes).unwrap();
                self.wire.send(0, &bytes);
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    self.server.read_tls(&mut rest).unwrap();
                    self.server.process_new_packets().unwrap();
                }
                moved = true;
            }
            while self.server.wants_write() {
                let mut bytes = Vec::new();
                self.server.write_tls(&mut bytes).unwrap();
                self.wire.send(1, &bytes);
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    self.client.read_tls(&mut rest).unwrap();
                    self.client.process_new_packets().unwrap();
                }
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the peers never settled");
    }

    fn say(&mut self, side: usize, text: &[u8]) {
        match side {
            0 => self.client.writer().write_all(text).unwrap(),
            _ => self.server.writer().write_all(text).unwrap(),
        }
        self.written[side].extend_from_slice(text);
        self.flush();
        // Drain what the other side received, as a real peer would.
        let mut sink = Vec::new();
        let _ = match side {
            0 => self.server.reader().read_to_end(&mut sink),
            _ => self.client.reader().read_to_end(&mut sink),
        };
        assert_eq!(sink, text, "rustls delivered what was written");
    }
}

fn provider(
    suite: SupportedCipherSuite,
    kx: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![suite],
        kx_groups: kx.to_vec(),
        ..default_provider()
    })
}

/// One IMAP conversation over rustls with this suite; the capture, its key log, and what each
/// side wrote.
fn conversation(
    suite: SupportedCipherSuite,
    server_groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
    key_update: bool,
) -> (Vec<MemoryFrame>, String, [Vec<u8>; 2]) {
    let certified = rcgen::generate_simple_self_signed(vec!["mail.example.test".into()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let versions = rustls::ALL_VERSIONS;
    let server_config = rustls::ServerConfig::builder_with_provider(provider(suite, server_groups))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_groups = [kx_group::X25519, kx_group::SECP256R1];
    let mut client_config =
        rustls::ClientConfig::builder_with_provider(provider(suite, &client_groups))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let keys = Arc::new(KeyLines::default());
    client_config.key_log = keys.clone();
    let name = ServerName::try_from("mail.example.test").unwrap();
    let mut peers = Peers {
        client: ClientConnection::new(Arc::new(client_config), name).unwrap(),
        server: ServerConnection::new(Arc::new(server_config)).unwrap(),
        wire: Wire::new(),
        written: [Vec::new(), Vec::new()],
    };
    peers.flush();
    peers.say(
        1,
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] rustls test server ready\r\n",
    );
    peers.say(0, b"a1 LOGIN alice \"s3cret pass\"\r\n");
    peers.say(1, b"a1 OK Logged in\r\n");
    if key_update {
        peers.client.refresh_traffic_keys().unwrap();
        peers.server.refresh_traffic_keys().unwrap();
        peers.flush();
    }
    peers.say(0, b"a2 SELECT INBOX\r\n");
    let body = "Subject: over rustls\r\n\r\n".to_string() + &"x".repeat(5000) + "\r\n";
    let fetch = format!(
        "* 1 FETCH (UID 7 BODY[] {{{}}}\r\n{body})\r\na2 OK done\r\n",
        body.len()
    );
    peers.say(1, fetch.as_bytes());
    peers.say(0, b"a3 LOGOUT\r\n");
    peers.say(1, b"* BYE\r\na3 OK Logout completed\r\n");
    let keylog = keys.0.lock().unwrap().clone();
    (peers.wire.frames, keylog, peers.written)
}

fn check(
    name: &str,
    suite: SupportedCipherSuite,
    server_groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
    key_update: bool,
    version: &str,
) {
    let (frames, keylog, written) = conversation(suite, server_groups, key_update);
    let mut analyzer = mailscope::pipeline::Analyzer::new(Default::default());
    let mut table = mailscope::session::SessionTable::new(common::Dialogues::default());
    table.keys.add(keylog.as_bytes());
    table.keys.finish();
    let mut sources = [Box::new(MemorySource { frames }) as Box<dyn PacketSource>];
    analyzer.run(&mut sources, &mut table);
    let got = table.into_sink();
    assert_eq!(got.sessions.len(), 1, "{name}");
    let session = &got.sessions[0];
    assert!(session.tls.decrypted(), "{name}: {:?}", session.tls.error());
    assert_eq!(
        session.tls.info().version.as_deref(),
        Some(version),
        "{name}"
    );
    for (i, side) in written.iter().enumerate() {
        assert_eq!(
            got.decrypted.get(&(session.id, i)),
            Some(side),
            "{name}: side {i}"
        );
    }
    let login = &session.auth[0];
    assert_eq!(login.username.as_deref(), Some("alice"));
    assert_eq!(
        login.secret.as_ref().map(|s| s.expose()),
        Some("s3cret pass")
    );
    let messages = &got.messages[&session.id];
    assert_eq!(messages[0].captured.uid, Some(7), "{name}");
    assert_eq!(messages[0].view.subject.as_deref(), Some("over rustls"));
    let retried = got
        .notes
        .get(&session.id)
        .is_some_and(|notes| notes.iter().any(|n| n.contains("HelloRetryRequest")));
    assert_eq!(retried, name.contains("HRR"), "{name}");
    let cert = session.tls.info().certificate.as_ref().unwrap();
    assert!(
        cert.subject.contains("rcgen") || !cert.subject.is_empty(),
        "{name}"
    );
}

#[test]
fn tls13_with_hello_retry_and_key_update() {
    // The client offers an X25519 key share; a server that only takes P-256 asks again.
    check(
        "TLS 1.3 AES-128-GCM, HRR, KeyUpdate",
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        &[kx_group::SECP256R1],
        true,
        "TLS1.3",
    );
}

#[test]
fn tls13_chacha20_and_aes256() {
    for suite in [
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
    ] {
        check(
            &format!("{:?}", suite.suite()),
            suite,
            &[kx_group::X25519],
            false,
            "TLS1.3",
        );
    }
}

#[test]
fn tls12_ecdhe_suites() {
    for suite in [
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        check(
            &format!("{:?}", suite.suite()),
            suite,
            &[kx_group::X25519],
            false,
            "TLS1.2",
        );
    }
}
