//! One TLS connection seen from the wire: the handshake read as it passes, record keys made from
//! the key log when a side starts protecting its records, and the application data handed on
//! as plaintext. When something stops decryption the status says what, once.

use std::collections::VecDeque;

use tls_parser::{TlsCipherEnc, TlsCipherEncMode, TlsCipherMac, TlsCipherSuite, TlsPRF};

use super::cipher::{DirectionKeys, MacHash, OpenError, Protection, RecordCipher};
use super::handshake::{self, CertificateInfo, ClientHello, HandshakeReader, ServerHello};
use super::keylog::{KeyLog, Secrets};
use super::keys::{self, Hash};
use super::record::{self, Record, RecordReader};
use crate::capture::Timestamp;
use crate::proto::room::Room;
use crate::tcp::Direction;

const TLS10: u16 = 0x0301;
const TLS13: u16 = 0x0304;

/// Records held per side while waiting for a key that may still be logged (live capture); all
/// connections together hold at most [`crate::proto::room::WAITING_ROOM_BYTES`].
const MAX_WAITING_BYTES: usize = 1 << 20;

/// What a session shows of its TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The ClientHello's random: what key logs are keyed by.
    pub client_random: Option<[u8; 32]>,
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub certificate: Option<CertificateInfo>,
    pub resumed: bool,
    /// Records opened, both sides together.
    pub records_decrypted: u64,
    /// Protected records that could not be opened.
    pub records_undecrypted: u64,
    /// Application data records opened: [client, server].
    pub application_records: [u64; 2],
    /// Records of any kind seen: [client, server]. A client that sent only its ClientHello
    /// never finished the handshake.
    pub records: [u64; 2],
    /// Why (part of) the connection could not be read, first reason only.
    pub error: Option<String>,
}

impl TlsInfo {
    pub fn decrypted(&self) -> bool {
        self.error.is_none() && self.records_decrypted > 0
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TlsEvent {
    Plaintext {
        direction: Direction,
        bytes: Vec<u8>,
        ts: Timestamp,
    },
    Note {
        direction: Direction,
        ts: Timestamp,
        text: String,
    },
    /// An alert other than close_notify, named.
    Alert {
        direction: Direction,
        ts: Timestamp,
        text: String,
    },
    /// The stream breaks TLS's framing (a record or handshake length over its limit): nothing
    /// more is read from that side.
    Broken {
        direction: Direction,
        ts: Timestamp,
        text: String,
    },
    /// Bytes one side sent before its first TLS record: after STARTTLS, an injection.
    NotTls {
        direction: Direction,
        ts: Timestamp,
        text: String,
    },
}

#[derive(Default)]
struct Side {
    records: RecordReader,
    handshake: HandshakeReader,
    /// From here on this side's records are protected.
    protected: bool,
    cipher: Option<RecordCipher>,
    /// TLS 1.3: the traffic secret in use, for KeyUpdate.
    secret: Vec<u8>,
    /// Protected records kept until a key is logged, and their bytes (all drawn on the room).
    waiting: VecDeque<Record>,
    waiting_bytes: usize,
    /// A record found no room to wait: the ones after it could not be opened without it.
    refused: bool,
    /// Nothing more is read from this side.
    stopped: bool,
    /// Bytes before the first record that are not TLS (sent after STARTTLS, before the hello):
    /// how many, when the first came, and the first of them as shown.
    skipped: u64,
    skipped_first: Option<(Timestamp, String)>,
    opened: u64,
}

impl Side {
    /// Keeps a protected record until its key comes, if this side's bound and the room allow.
    fn wait(&mut self, record: Record, room: &Room) -> bool {
        let len = record.body.len();
        if self.waiting_bytes + len <= MAX_WAITING_BYTES {
            let granted = room.take(len);
            if granted == len {
                self.waiting_bytes += len;
                self.waiting.push_back(record);
                return true;
            }
            room.give_back(granted);
        }
        self.refused = true;
        false
    }
}

/// The negotiated suite, as far as decryption needs it.
#[derive(Clone, Copy)]
struct Suite {
    protection: Protection,
    hash: Hash,
}

pub struct TlsConnection {
    pub info: TlsInfo,
    client_hello: Option<ClientHello>,
    server_hello: Option<ServerHello>,
    suite: Option<Suite>,
    /// A HelloRetryRequest came: this is TLS 1.3 before the real ServerHello says so.
    hello_retried: bool,
    sides: [Side; 2],
    /// TLS 1.2 and earlier: the key block of both directions, made for the first one to
    /// change cipher and kept for the other (made anew after another ServerHello).
    key_block: Option<Vec<u8>>,
    /// The records one push of bytes framed, emptied after each: kept for its room.
    framed: Vec<Record>,
    /// Keys may still be logged (a live capture following its key log): records wait for them,
    /// within each side's bound and this room, which all connections share.
    waiting_room: Option<Room>,
}

fn version_name(version: u16) -> String {
    match version {
        0x0300 => "SSL3.0".into(),
        0x0301 => "TLS1.0".into(),
        0x0302 => "TLS1.1".into(),
        0x0303 => "TLS1.2".into(),
        0x0304 => "TLS1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// How the suite protects records, or why it is not supported.
fn suite(id: u16, version: u16) -> Result<(Suite, &'static str), String> {
    let Some(suite) = TlsCipherSuite::from_id(id) else {
        return Err(format!("unknown cipher suite 0x{id:04x}"));
    };
    let key_len = suite.enc_key_size();
    let protection = match (suite.enc, suite.enc_mode, suite.mac) {
        (TlsCipherEnc::Aes, TlsCipherEncMode::Gcm, _) => Protection::Gcm { key_len },
        (TlsCipherEnc::Chacha20_Poly1305, _, _) => Protection::ChaCha20Poly1305,
        (TlsCipherEnc::Aes, TlsCipherEncMode::Ccm, _) => Protection::Ccm {
            key_len,
            tag_len: if suite.name.contains("CCM_8") { 8 } else { 16 },
        },
        (TlsCipherEnc::Aes, TlsCipherEncMode::Cbc, mac) if version < TLS13 => {
            let mac = match mac {
                TlsCipherMac::HmacSha1 => MacHash::Sha1,
                TlsCipherMac::HmacSha256 => MacHash::Sha256,
                TlsCipherMac::HmacSha384 => MacHash::Sha384,
                _ => return Err(format!("cipher not supported: {}", suite.name)),
            };
            Protection::Cbc { key_len, mac }
        }
        _ => return Err(format!("cipher not supported: {}", suite.name)),
    };
    let hash = if version < 0x0303 {
        Hash::Md5Sha1
    } else if suite.prf == TlsPRF::Sha384 || suite.name.ends_with("_SHA384") {
        Hash::Sha384
    } else {
        Hash::Sha256
    };
    Ok((Suite { protection, hash }, suite.name))
}

impl TlsConnection {
    /// `waiting_room`: keys may still be logged, and records wait for them there.
    pub fn new(waiting_room: Option<Room>) -> TlsConnection {
        TlsConnection {
            info: TlsInfo::default(),
            client_hello: None,
            server_hello: None,
            suite: None,
            hello_retried: false,
            sides: [Side::default(), Side::default()],
            key_block: None,
            framed: Vec::new(),
            waiting_room,
        }
    }

    fn keys_may_come(&self) -> bool {
        self.waiting_room.is_some()
    }

    fn fail(&mut self, reason: String) {
        self.info.error.get_or_insert(reason);
    }

    fn tls13(&self) -> bool {
        self.hello_retried
            || self
                .server_hello
                .as_ref()
                .is_some_and(|h| h.version == TLS13)
    }

    pub fn data(
        &mut self,
        direction: Direction,
        mut bytes: &[u8],
        ts: Timestamp,
        keys: &KeyLog,
        out: &mut Vec<TlsEvent>,
    ) {
        let side = direction.pick_mut(&mut self.sides);
        if side.stopped {
            return;
        }
        if side.records.records == 0 && side.records.held() == 0 {
            // What comes before the first record is not TLS: bytes a client or server slipped
            // in after STARTTLS (the CVE-2011-0411 family). A first record may be an alert
            // (a server refusing the handshake) as well as a handshake.
            let start = bytes
                .windows(3)
                .position(|w| matches!(w, [20..=24, 3, 0..=4]))
                .unwrap_or(bytes.len());
            if start > 0 {
                // Judged once TLS shows up (or does not, by the end): see `judge_skipped`.
                side.skipped += start as u64;
                let shown = bytes.get(..start.min(200)).unwrap_or_default();
                side.skipped_first
                    .get_or_insert_with(|| (ts, crate::sanitize::line(shown)));
                bytes = bytes.get(start..).unwrap_or_default();
            }
        }
        let mut records = std::mem::take(&mut self.framed);
        let framed = side.records.push(bytes, ts, &mut |r| records.push(r));
        if self.keys_may_come() {
            self.retry_waiting(direction, keys, out);
        }
        if !records.is_empty() {
            self.judge_skipped(direction, out);
        }
        for record in records.drain(..) {
            self.record(direction, record, keys, out);
        }
        self.framed = records;
        if let Err(e) = framed {
            direction.pick_mut(&mut self.sides).stopped = true;
            out.push(TlsEvent::Broken {
                direction,
                ts,
                text: format!("the TLS stream cannot be followed further: {e}"),
            });
            self.fail("the TLS stream broke off (not a TLS record)".into());
        }
    }

    /// Bytes lost in one direction: its record boundaries and sequence numbers are gone.
    pub fn gap(&mut self, direction: Direction, len: u64, ts: Timestamp, out: &mut Vec<TlsEvent>) {
        let side = direction.pick_mut(&mut self.sides);
        if side.stopped {
            return;
        }
        side.stopped = true;
        out.push(TlsEvent::Note {
            direction,
            ts,
            text: format!(
                "{len} TLS bytes were not captured; this direction is not decrypted from here on"
            ),
        });
        self.fail("gap in the stream".into());
    }

    /// The connection is over: what was still waiting for a key never got one.
    /// Bytes a side sent before its TLS: once TLS shows up on either side, they were slipped
    /// in (an injection). Reported once per side.
    fn judge_skipped(&mut self, direction: Direction, out: &mut Vec<TlsEvent>) {
        let side = direction.pick_mut(&mut self.sides);
        let Some((ts, shown)) = side.skipped_first.take() else {
            return;
        };
        let who = match direction {
            Direction::ClientToServer => "the client",
            Direction::ServerToClient => "the server",
        };
        let text = format!(
            "{who} sent {} bytes before its TLS handshake: {shown}",
            side.skipped
        );
        out.push(TlsEvent::NotTls {
            direction,
            ts,
            text,
        });
    }

    pub fn end(&mut self, keys: &KeyLog, out: &mut Vec<TlsEvent>) {
        let tls_seen = self.sides.iter().any(|s| s.records.records > 0);
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            if tls_seen {
                self.judge_skipped(direction, out);
            }
        }
        if !tls_seen && self.sides.iter().any(|s| s.skipped > 0) {
            // Both sides went on without TLS: STARTTLS did not take effect (or the capture was
            // made behind a TLS-terminating proxy). Not an injection; the bytes are not read.
            let [client, server] = [self.sides[0].skipped, self.sides[1].skipped];
            out.push(TlsEvent::Note {
                direction: Direction::ClientToServer,
                ts: self.sides[0]
                    .skipped_first
                    .as_ref()
                    .or(self.sides[1].skipped_first.as_ref())
                    .map_or_else(Default::default, |(ts, _)| *ts),
                text: format!(
                    "neither side started TLS after the upgrade: {client} bytes from the client and {server} from the server went on in clear, not dissected (TLS did not take effect, or the capture was made behind a TLS proxy)"
                ),
            });
        }
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            self.retry_waiting(direction, keys, out);
            let side = direction.pick_mut(&mut self.sides);
            if !side.waiting.is_empty() {
                self.info.records_undecrypted += side.waiting.len() as u64;
                self.stop_waiting(direction);
                self.fail("no key for this client random (none was logged by the end)".into());
            }
        }
        if self.client_hello.is_none() && self.sides.iter().any(|s| s.records.records > 0) {
            self.fail("handshake not captured".into());
        } else if self.server_hello.is_none() && self.client_hello.is_some() {
            self.fail("the server never answered the ClientHello".into());
        } else if self.info.records_decrypted + self.info.records_undecrypted == 0 {
            self.fail("the handshake did not finish in the capture".into());
        }
    }

    fn record(
        &mut self,
        direction: Direction,
        mut record: Record,
        keys: &KeyLog,
        out: &mut Vec<TlsEvent>,
    ) {
        *direction.pick_mut(&mut self.info.records) += 1;
        if record.content_type == record::CHANGE_CIPHER_SPEC {
            // TLS 1.3 sends it only for middleboxes; before it, it starts protection.
            if !self.tls13() {
                direction.pick_mut(&mut self.sides).protected = true;
                self.install_tls12(direction, keys);
            }
            return;
        }
        if !direction.pick(&self.sides).protected {
            match record.content_type {
                record::HANDSHAKE => {
                    self.handshake_record(direction, &record.body, record.ts, keys, out);
                }
                record::ALERT => out.extend(alert(direction, &record.body, record.ts)),
                _ => out.push(TlsEvent::Note {
                    direction,
                    ts: record.ts,
                    text: format!(
                        "a record of type {} before the handshake protected anything",
                        record.content_type
                    ),
                }),
            }
            return;
        }
        let side = direction.pick_mut(&mut self.sides);
        if side.refused {
            // A record before this one was not kept: this one's sequence number is unknown.
            self.info.records_undecrypted += 1;
            return;
        }
        if side.cipher.is_none() {
            let Some(room) = &self.waiting_room else {
                self.info.records_undecrypted += 1;
                return;
            };
            let ts = record.ts;
            if side.wait(record, room) {
                return;
            }
            self.info.records_undecrypted += 1;
            let text = format!(
                "protected records waiting for a key that may still be logged went past what \
                 may wait ({} MiB for this side, {} MiB for all connections): this direction \
                 is not decrypted from here on",
                MAX_WAITING_BYTES >> 20,
                room.limit() >> 20
            );
            out.push(TlsEvent::Note {
                direction,
                ts,
                text,
            });
            self.fail("records waited for a key past the limit".into());
            return;
        }
        self.open(direction, &mut record, keys, out);
    }

    fn open(
        &mut self,
        direction: Direction,
        record: &mut Record,
        keys: &KeyLog,
        out: &mut Vec<TlsEvent>,
    ) {
        let tls13 = self.tls13();
        let side = direction.pick_mut(&mut self.sides);
        let Some(cipher) = side.cipher.as_mut() else {
            return;
        };
        if let Err(e) = cipher.open(record) {
            side.stopped = true;
            self.info.records_undecrypted += 1;
            let reason = match (e, side.opened) {
                (OpenError::Authentication, 0) => {
                    "key present but the first record fails authentication (wrong key)".to_string()
                }
                (OpenError::Authentication, n) => {
                    format!(
                        "record {} failed authentication (changed on the way?)",
                        n + 1
                    )
                }
                (OpenError::Malformed, _) => "a protected record too short for its cipher".into(),
            };
            out.push(TlsEvent::Note {
                direction,
                ts: record.ts,
                text: format!("{reason}; this direction is not decrypted from here on"),
            });
            self.fail(reason);
            return;
        }
        side.opened += 1;
        self.info.records_decrypted += 1;
        let content_type = if tls13 {
            // TLSInnerPlaintext: content, the real type, then zero padding.
            let last_nonzero = record.body.iter().enumerate().rfind(|&(_, &b)| b != 0);
            let Some((end, &kind)) = last_nonzero else {
                return;
            };
            record.body.truncate(end);
            kind
        } else {
            record.content_type
        };
        match content_type {
            record::APPLICATION_DATA => {
                *direction.pick_mut(&mut self.info.application_records) += 1;
                out.push(TlsEvent::Plaintext {
                    direction,
                    bytes: std::mem::take(&mut record.body),
                    ts: record.ts,
                })
            }
            record::HANDSHAKE => {
                self.handshake_record(direction, &record.body, record.ts, keys, out);
            }
            record::ALERT => out.extend(alert(direction, &record.body, record.ts)),
            _ => {}
        }
    }

    fn handshake(
        &mut self,
        direction: Direction,
        kind: u8,
        body: &[u8],
        ts: Timestamp,
        keys: &KeyLog,
        out: &mut Vec<TlsEvent>,
    ) {
        match (direction, kind) {
            (Direction::ClientToServer, handshake::CLIENT_HELLO) => {
                let Some(hello) = handshake::client_hello(body) else {
                    return out.push(note(direction, ts, "a ClientHello that does not parse"));
                };
                self.info.sni = hello.sni.clone();
                self.info.client_random = Some(hello.random);
                self.client_hello = Some(hello);
            }
            (Direction::ServerToClient, handshake::SERVER_HELLO) => {
                let Some(hello) = handshake::server_hello(body) else {
                    return out.push(note(direction, ts, "a ServerHello that does not parse"));
                };
                if hello.hello_retry {
                    self.hello_retried = true;
                    return out.push(note(
                        direction,
                        ts,
                        "HelloRetryRequest: the client says hello again",
                    ));
                }
                self.info.version = Some(version_name(hello.version));
                self.info.alpn = hello.alpn.clone();
                match suite(hello.cipher_suite, hello.version) {
                    Ok((suite, name)) => {
                        self.info.cipher = Some(name.to_string());
                        self.suite = Some(suite);
                    }
                    Err(reason) => {
                        self.info.cipher = Some(reason.clone());
                        self.fail(reason);
                    }
                }
                let tls13 = hello.version == TLS13;
                // TLS 1.3 echoes the session id for middleboxes; a PSK is what resumes it.
                self.info.resumed = if tls13 {
                    hello.pre_shared_key
                } else {
                    self.client_hello.as_ref().is_some_and(|c| {
                        !c.session_id.is_empty() && c.session_id == hello.session_id
                    })
                };
                self.server_hello = Some(hello);
                self.key_block = None;
                if tls13 {
                    for side in [Direction::ServerToClient, Direction::ClientToServer] {
                        side.pick_mut(&mut self.sides).protected = true;
                        self.install_tls13(side, "HANDSHAKE", keys);
                    }
                }
            }
            (Direction::ServerToClient, handshake::CERTIFICATE) => {
                self.info.certificate = handshake::certificate(body, self.tls13());
            }
            (_, handshake::FINISHED) if self.tls13() => {
                // The side's handshake is over: its application traffic keys take over.
                self.install_tls13(direction, "TRAFFIC", keys);
            }
            (_, handshake::KEY_UPDATE) if self.tls13() => self.key_update(direction),
            _ => {}
        }
    }

    fn secrets<'k>(&mut self, keys: &'k KeyLog) -> Option<&'k Secrets> {
        let Some(hello) = &self.client_hello else {
            self.fail("handshake not captured".into());
            return None;
        };
        let found = keys.secrets(&hello.random);
        if found.is_none() && !self.keys_may_come() {
            self.fail("no key for this client random".into());
        }
        found
    }

    /// TLS 1.2 and earlier: both directions' keys come from the master secret.
    fn install_tls12(&mut self, direction: Direction, keys: &KeyLog) {
        let (Some(suite), Some(server)) = (self.suite, &self.server_hello) else {
            return self.fail("handshake not captured".into());
        };
        let (tls10, encrypt_then_mac) = (server.version <= TLS10, server.encrypt_then_mac);
        let p = suite.protection;
        let (mac, key, iv) = (p.mac_key_len(), p.key_len(), p.fixed_iv_len());
        if self.key_block.is_none() {
            let Some(block) = self.key_block(suite.hash, 2 * (mac + key + iv), keys) else {
                return;
            };
            self.key_block = Some(block);
        }
        let Some(block) = &self.key_block else {
            return;
        };
        // The block holds both MAC keys, then both keys, then both IVs, each client first.
        let n = direction.index();
        let part = |len: usize, base: usize| block.get(base + n * len..base + (n + 1) * len);
        let (Some(mac_key), Some(cipher_key), Some(fixed_iv)) =
            (part(mac, 0), part(key, 2 * mac), part(iv, 2 * (mac + key)))
        else {
            return;
        };
        let keys = DirectionKeys {
            mac_key,
            key: cipher_key,
            iv: fixed_iv,
        };
        let cipher = RecordCipher::new(p, keys, false, tls10, encrypt_then_mac);
        direction.pick_mut(&mut self.sides).cipher = cipher;
    }

    /// The TLS 1.2 key block from the logged master secret and the hellos' randoms.
    fn key_block(&mut self, hash: keys::Hash, len: usize, keys: &KeyLog) -> Option<Vec<u8>> {
        let secrets = self.secrets(keys)?;
        let Some(master) = &secrets.master else {
            self.fail("the key log has no CLIENT_RANDOM line for this connection".into());
            return None;
        };
        let (client, server) = (self.client_hello.as_ref()?, self.server_hello.as_ref()?);
        Some(keys::key_block(
            hash,
            master,
            &client.random,
            &server.random,
            len,
        ))
    }

    /// TLS 1.3: the direction's handshake or application traffic secret from the key log.
    fn install_tls13(&mut self, direction: Direction, stage: &str, keys: &KeyLog) {
        let Some(suite) = self.suite else {
            return;
        };
        let Some(secrets) = self.secrets(keys) else {
            return;
        };
        let (secret, label) = match (direction, stage) {
            (Direction::ClientToServer, "HANDSHAKE") => {
                (&secrets.client_handshake, "CLIENT_HANDSHAKE_TRAFFIC_SECRET")
            }
            (Direction::ServerToClient, "HANDSHAKE") => {
                (&secrets.server_handshake, "SERVER_HANDSHAKE_TRAFFIC_SECRET")
            }
            (Direction::ClientToServer, _) => (&secrets.client_traffic, "CLIENT_TRAFFIC_SECRET_0"),
            (Direction::ServerToClient, _) => (&secrets.server_traffic, "SERVER_TRAFFIC_SECRET_0"),
        };
        let Some(secret) = secret.clone() else {
            if !self.keys_may_come() {
                self.fail(format!("the key log has no {label} for this connection"));
            }
            direction.pick_mut(&mut self.sides).cipher = None;
            return;
        };
        self.set_tls13_secret(direction, suite, secret);
    }

    fn set_tls13_secret(&mut self, direction: Direction, suite: Suite, secret: Vec<u8>) {
        let prk = keys::Prk::new(suite.hash, &secret);
        let traffic = prk.and_then(|prk| {
            let key = prk.expand_label("key", suite.protection.key_len())?;
            Some((key, prk.expand_label("iv", 12)?))
        });
        let side = direction.pick_mut(&mut self.sides);
        side.cipher = traffic.and_then(|(key, iv)| {
            let keys = DirectionKeys {
                key: &key,
                iv: &iv,
                mac_key: &[],
            };
            RecordCipher::new(suite.protection, keys, true, false, false)
        });
        side.secret = secret;
    }

    /// KeyUpdate (RFC 8446 4.6.3): the sender's next records use the next traffic secret.
    fn key_update(&mut self, direction: Direction) {
        let Some(suite) = self.suite else {
            return;
        };
        let current = &direction.pick(&self.sides).secret;
        if let Some(next) =
            keys::expand_label(suite.hash, current, "traffic upd", suite.hash.output_len())
        {
            self.set_tls13_secret(direction, suite, next);
        }
    }

    /// Records that waited for a key: opened if it came.
    fn retry_waiting(&mut self, direction: Direction, keys: &KeyLog, out: &mut Vec<TlsEvent>) {
        let side = direction.pick(&self.sides);
        if side.waiting.is_empty() || side.cipher.is_some() {
            return;
        }
        if self.tls13() {
            self.install_tls13(direction, "HANDSHAKE", keys);
        } else {
            self.install_tls12(direction, keys);
        }
        if direction.pick(&self.sides).cipher.is_none() {
            return;
        }
        let waiting = std::mem::take(&mut direction.pick_mut(&mut self.sides).waiting);
        self.stop_waiting(direction);
        for mut record in waiting {
            self.open(direction, &mut record, keys, out);
        }
    }

    /// Gives back the room a side's waiting records took.
    fn stop_waiting(&mut self, direction: Direction) {
        let side = direction.pick_mut(&mut self.sides);
        side.waiting.clear();
        if let Some(room) = &self.waiting_room {
            room.give_back(std::mem::take(&mut side.waiting_bytes));
        }
    }
}

/// Records still waiting give their room back to the other connections.
impl Drop for TlsConnection {
    fn drop(&mut self) {
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            self.stop_waiting(direction);
        }
    }
}

impl TlsConnection {
    /// A handshake record's bytes: each message they complete is handled; a message claiming
    /// more than a handshake message may hold ends the reading of this side's handshake.
    fn handshake_record(
        &mut self,
        direction: Direction,
        body: &[u8],
        ts: Timestamp,
        keys: &KeyLog,
        out: &mut Vec<TlsEvent>,
    ) {
        // Out of its side while its messages are handled (they never read records, so
        // nothing pushes to it meanwhile).
        let side = direction.pick_mut(&mut self.sides);
        let mut reader = std::mem::take(&mut side.handshake);
        let was_overlong = reader.overlong;
        reader.push(body, &mut |kind, message| {
            self.handshake(direction, kind, message, ts, keys, out)
        });
        if reader.overlong && !was_overlong {
            out.push(TlsEvent::Broken {
                direction,
                ts,
                text: format!(
                    "a handshake message claims more than {} bytes: the handshake is not read \
                     further",
                    handshake::MAX_MESSAGE
                ),
            });
        }
        direction.pick_mut(&mut self.sides).handshake = reader;
    }
}

fn note(direction: Direction, ts: Timestamp, text: &str) -> TlsEvent {
    TlsEvent::Note {
        direction,
        ts,
        text: text.to_string(),
    }
}

/// An alert, named (RFC 8446 6); close_notify is the normal end and says nothing.
fn alert(direction: Direction, body: &[u8], ts: Timestamp) -> Option<TlsEvent> {
    let (level, description) = (body.first().copied(), body.get(1).copied());
    let name = match description {
        Some(0) => return None,
        Some(10) => "unexpected_message",
        Some(20) => "bad_record_mac",
        Some(40) => "handshake_failure",
        Some(42) => "bad_certificate",
        Some(45) => "certificate_expired",
        Some(46) => "certificate_unknown",
        Some(48) => "unknown_ca",
        Some(50) => "decode_error",
        Some(51) => "decrypt_error",
        Some(70) => "protocol_version",
        Some(71) => "insufficient_security",
        Some(80) => "internal_error",
        Some(86) => "inappropriate_fallback",
        Some(112) => "unrecognized_name",
        Some(116) => "certificate_required",
        Some(120) => "no_application_protocol",
        _ => "other",
    };
    let level = if level == Some(2) { "fatal" } else { "warning" };
    Some(TlsEvent::Alert {
        direction,
        ts,
        text: format!("TLS alert ({level}): {name} ({})", description.unwrap_or(0)),
    })
}
