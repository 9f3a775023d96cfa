//! Handshake messages: joined across records (a message may span several, a record may hold
//! several), and the ones we read parsed: ClientHello and ServerHello with tls-parser, the
//! server's certificate with x509-parser.

use std::cell::RefCell;
use std::collections::HashMap;

use tls_parser::{
    parse_tls_extensions, parse_tls_message_handshake, SNIType, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};

pub const CLIENT_HELLO: u8 = 1;
pub const SERVER_HELLO: u8 = 2;
pub const NEW_SESSION_TICKET: u8 = 4;
pub const CERTIFICATE: u8 = 11;
pub const FINISHED: u8 = 20;
pub const KEY_UPDATE: u8 = 24;

/// A handshake message longer than this is not read (certificate chains are well under it).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// The random a TLS 1.3 ServerHello carries when it is a HelloRetryRequest (RFC 8446 4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Joins one direction's handshake bytes into whole messages.
#[derive(Debug, Default)]
pub struct HandshakeReader {
    held: Vec<u8>,
    /// A message too long to read was met: the rest of the handshake is not parsed.
    pub overlong: bool,
}

impl HandshakeReader {
    /// Adds handshake record bytes; hands each whole message they complete to `each` (its
    /// type and body). Messages whole within `bytes` are read where they are.
    pub fn push(&mut self, bytes: &[u8], each: &mut dyn FnMut(u8, &[u8])) {
        if self.overlong {
            return;
        }
        let mut held = std::mem::take(&mut self.held);
        let input = if held.is_empty() {
            bytes
        } else {
            held.extend_from_slice(bytes);
            &held
        };
        let Some(used) = self.read(input, each) else {
            return;
        };
        if held.is_empty() {
            held.extend_from_slice(bytes.get(used..).unwrap_or_default());
        } else {
            held.drain(..used);
        }
        self.held = held;
    }

    /// Hands out the whole messages at the start of `input`; how many bytes they took, or
    /// `None` once a message is too long to read.
    fn read(&mut self, input: &[u8], each: &mut dyn FnMut(u8, &[u8])) -> Option<usize> {
        let mut at = 0;
        while let Some(&[kind, len_high, len_mid, len_low]) = input.get(at..at + 4) {
            let len = u32::from_be_bytes([0, len_high, len_mid, len_low]) as usize;
            if len > MAX_MESSAGE {
                self.overlong = true;
                return None;
            }
            let Some(body) = input.get(at + 4..at + 4 + len) else {
                break;
            };
            each(kind, body);
            at += 4 + len;
        }
        Some(at)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHello {
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    /// The negotiated version (supported_versions for TLS 1.3), as its two bytes.
    pub version: u16,
    pub cipher_suite: u16,
    pub encrypt_then_mac: bool,
    pub alpn: Option<String>,
    pub hello_retry: bool,
    /// TLS 1.3: the server accepted a pre-shared key (a resumed session).
    pub pre_shared_key: bool,
}

/// The message with its 4-byte header again, as tls-parser reads it.
fn framed(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_be_bytes();
    [&[kind, len[1], len[2], len[3]][..], body].concat()
}

fn extensions(raw: Option<&[u8]>) -> Vec<TlsExtension<'_>> {
    raw.and_then(|r| parse_tls_extensions(r).ok())
        .map(|(_, e)| e)
        .unwrap_or_default()
}

fn text(bytes: &[u8]) -> String {
    crate::sanitize::line(bytes)
}

pub fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let message = framed(CLIENT_HELLO, body);
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)))) =
        parse_tls_message_handshake(&message)
    else {
        return None;
    };
    let mut parsed = ClientHello {
        random: hello.random.try_into().ok()?,
        session_id: hello.session_id.unwrap_or_default().to_vec(),
        ..ClientHello::default()
    };
    for extension in extensions(hello.ext) {
        match extension {
            TlsExtension::SNI(names) => {
                parsed.sni = names
                    .iter()
                    .find(|(kind, _)| *kind == SNIType::HostName)
                    .map(|(_, name)| text(name));
            }
            TlsExtension::ALPN(protocols) => {
                parsed.alpn = protocols.iter().map(|p| text(p)).collect();
            }
            _ => {}
        }
    }
    Some(parsed)
}

pub fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let message = framed(SERVER_HELLO, body);
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ServerHello(hello)))) =
        parse_tls_message_handshake(&message)
    else {
        return None;
    };
    let random: [u8; 32] = hello.random.try_into().ok()?;
    let mut parsed = ServerHello {
        random,
        session_id: hello.session_id.unwrap_or_default().to_vec(),
        version: hello.version.0,
        cipher_suite: hello.cipher.0,
        encrypt_then_mac: false,
        alpn: None,
        hello_retry: random == HELLO_RETRY_RANDOM,
        pre_shared_key: false,
    };
    for extension in extensions(hello.ext) {
        match extension {
            TlsExtension::SupportedVersions(versions) => {
                if let Some(v) = versions.first() {
                    parsed.version = v.0;
                }
            }
            TlsExtension::EncryptThenMac => parsed.encrypt_then_mac = true,
            TlsExtension::PreSharedKey(_) => parsed.pre_shared_key = true,
            TlsExtension::ALPN(protocols) => parsed.alpn = protocols.first().map(|p| text(p)),
            _ => {}
        }
    }
    Some(parsed)
}

/// What users want to know of the server's certificate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
}

/// The first (the server's own) certificate of a Certificate message. TLS 1.3 adds a request
/// context before the list and extensions after each entry (RFC 8446 4.4.2).
pub fn certificate(body: &[u8], tls13: bool) -> Option<CertificateInfo> {
    let list = if tls13 {
        let context = *body.first()? as usize;
        body.get(1 + context..)?
    } else {
        body
    };
    let first = list.get(3..)?;
    let len = u32::from_be_bytes([0, *first.first()?, *first.get(1)?, *first.get(2)?]) as usize;
    let der = first.get(3..3 + len)?;
    PARSED_CERTIFICATES.with_borrow_mut(|cache| cache.parse(der))
}

fn parse_certificate(der: &[u8]) -> Option<CertificateInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let validity = cert.validity();
    Some(CertificateInfo {
        subject: text(cert.subject().to_string().as_bytes()),
        issuer: text(cert.issuer().to_string().as_bytes()),
        not_before: validity.not_before.to_string(),
        not_after: validity.not_after.to_string(),
    })
}

/// Certificates a thread remembers; when more arrive, it forgets them all (a flood of
/// distinct ones then costs what it cost without the cache: a parse each).
const CACHED_CERTIFICATES: usize = 32;
/// Larger certificates are parsed each time rather than kept.
const MAX_CACHED_DER: usize = 16 * 1024;

/// A server shows the same certificate to every client, and parsing it was a twentieth of
/// the work on a capture of many short TLS sessions. So each thread (a worker and its flows)
/// remembers what the last few certificates it parsed said, by their DER bytes.
#[derive(Default)]
struct CertificateCache(HashMap<Vec<u8>, Option<CertificateInfo>, ahash::RandomState>);

impl CertificateCache {
    fn parse(&mut self, der: &[u8]) -> Option<CertificateInfo> {
        if der.len() > MAX_CACHED_DER {
            return parse_certificate(der);
        }
        if let Some(known) = self.0.get(der) {
            return known.clone();
        }
        let parsed = parse_certificate(der);
        if self.0.len() >= CACHED_CERTIFICATES {
            self.0.clear();
        }
        self.0.insert(der.to_vec(), parsed.clone());
        parsed
    }
}

thread_local! {
    static PARSED_CERTIFICATES: RefCell<CertificateCache> = RefCell::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab's certificate, made by OpenSSL (scripts/lab/setup.sh), as DER.
    fn lab_certificate() -> Vec<u8> {
        let pem = include_bytes!("../../scripts/lab/config/tls/server.crt");
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem).expect("PEM");
        pem.contents
    }

    #[test]
    fn a_certificate_seen_again_reads_the_same_and_a_changed_one_anew() {
        let der = lab_certificate();
        let mut cache = CertificateCache::default();
        let first = cache.parse(&der).expect("the lab's certificate parses");
        // What `openssl x509 -noout -subject -dates` says of it.
        assert_eq!(first.subject, "O=mail-lab, CN=mail.example.test");
        assert!(first.not_after.contains("2036"), "{first:?}");
        assert_eq!(cache.parse(&der).as_ref(), Some(&first));

        // Same length, one letter of the issuer changed (it comes first in the DER): parsed
        // anew, not found.
        let at = der
            .windows(4)
            .position(|w| w == b"mail")
            .expect("the name in the DER");
        let mut changed = der.clone();
        changed[at] = b'n';
        let second = cache.parse(&changed).expect("still parses");
        assert_eq!(second.issuer, "O=nail-lab, CN=mail.example.test");
        assert_eq!(cache.parse(&der).as_ref(), Some(&first));
    }

    #[test]
    fn a_flood_of_certificates_is_not_all_kept() {
        let mut cache = CertificateCache::default();
        for n in 0..(CACHED_CERTIFICATES * 3) as u32 {
            assert_eq!(cache.parse(&n.to_be_bytes()), None);
            assert!(cache.0.len() <= CACHED_CERTIFICATES);
        }
    }

    #[test]
    fn messages_are_joined_across_records_and_split_within_one() {
        let mut reader = HandshakeReader::default();
        let mut push = |bytes: &[u8]| {
            let mut got = Vec::new();
            reader.push(bytes, &mut |kind, body| got.push((kind, body.to_vec())));
            got
        };
        assert!(push(&[1, 0, 0, 3, 0xaa]).is_empty());
        let got = push(&[0xbb, 0xcc, 20, 0, 0, 1, 0xdd]);
        assert_eq!(got, vec![(1, vec![0xaa, 0xbb, 0xcc]), (20, vec![0xdd])]);
        let got = push(&[11, 0, 0, 0, 2, 0, 0, 1, 7, 2]);
        assert_eq!(got, vec![(11, vec![]), (2, vec![7])], "read where they lie");
        assert!(push(&[0xff, 0xff, 0xff]).is_empty());
        assert!(reader.overlong, "a 16 MB message is not held");
    }
}
