//! Messages as a reader sees them: raw bytes turned into decoded headers, the MIME tree, the best
//! text body, attachments with their SHA-256, and the Received chain as a relay path. The MIME
//! grammar, RFC 2047/2231 decoding and charsets are mail-parser's (stalwartlabs, lenient and
//! fuzzed); this module only chooses what to show.

mod base64_parts;

use base64_parts::DecodedParts;
use mail_parser::{
    HeaderValue, Host, MessageParser, MessagePart, MessagePartId, MimeHeaders, PartType,
};
use sha2::{Digest, Sha256};

/// What a message says about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageView {
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub reply_to: Vec<String>,
    pub date: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The MIME tree, depth first: (depth, content type, size of the decoded body).
    pub parts: Vec<(usize, String, usize)>,
    /// The relay path from the Received headers, oldest hop first.
    pub hops: Vec<Hop>,
    /// Whether the bytes parsed as a message at all.
    pub parsed: bool,
    /// A delivery status notification (RFC 3464): what it reports.
    pub report: Option<DeliveryReport>,
}

/// What a bounce (multipart/report; report-type=delivery-status) says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The Message-ID of the message it reports on, from its returned headers.
    pub original_message_id: Option<String>,
    pub recipients: Vec<RecipientStatus>,
}

/// One per-recipient group of a delivery-status part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientStatus {
    pub recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

/// Recipients read from one delivery report (a hostile one can list endlessly).
const MAX_REPORTED_RECIPIENTS: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// As the message names it (RFC 2231 and 2047 decoded); not safe as a path: see export.
    pub filename: Option<String>,
    pub content_type: String,
    pub size: usize,
    pub sha256: [u8; 32],
    /// The decoded bytes, for export.
    pub bytes: Vec<u8>,
}

/// One Received header: a relay that handled the message.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hop {
    pub from: Option<String>,
    pub from_ip: Option<String>,
    pub by: Option<String>,
    pub via: Option<String>,
    pub with: Option<String>,
    pub id: Option<String>,
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// RFC 3339.
    pub date: Option<String>,
    /// The same date as Unix seconds, to compare hops.
    #[serde(skip)]
    pub unix: Option<i64>,
    pub tls: Option<String>,
    /// The hop says it was protected: a TLS version, or `with ESMTPS` and kin (RFC 3848).
    pub encrypted: bool,
    /// The hop says the client authenticated: `with ESMTPA`, `ESMTPSA` and kin (RFC 3848).
    pub authenticated: bool,
    /// Seconds since the hop before it (None for the first hop or a missing date).
    pub delay_s: Option<i64>,
}

fn addresses(value: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    value
        .map(|list| {
            list.iter()
                .map(|a| match (a.name(), a.address()) {
                    (Some(name), Some(address)) => format!("{name} <{address}>"),
                    (None, Some(address)) => address.to_string(),
                    (Some(name), None) => name.to_string(),
                    (None, None) => String::new(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn host(host: &Option<Host<'_>>) -> Option<String> {
    host.as_ref().map(|h| match h {
        Host::Name(name) => name.to_string(),
        Host::IpAddr(ip) => ip.to_string(),
    })
}

fn content_type<'x>(part: &impl MimeHeaders<'x>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_string(),
    }
}

/// Parses a message. Never fails: bytes that are not a message give a view with `parsed` false.
pub fn parse(bytes: &[u8]) -> MessageView {
    with_message(bytes, view).unwrap_or_default()
}

/// The best text body (text/plain, else text/html), decoded to UTF-8: what a reader of the
/// message sees. Made only when asked (the message view), not with the [`MessageView`]: it is a
/// copy as large as the body, and no other output reads it.
pub fn text(bytes: &[u8]) -> Option<String> {
    with_message(bytes, |message, _| {
        message
            .body_text(0)
            .or_else(|| message.body_html(0))
            .map(|t| t.into_owned())
    })
    .flatten()
}

/// `read` applied to the parsed message, with its base64 parts decoded in bulk where that
/// gives what mail-parser would (see [`base64_parts`]); None when the bytes are no message.
fn with_message<T>(
    bytes: &[u8],
    read: impl FnOnce(&mail_parser::Message<'_>, DecodedParts) -> T,
) -> Option<T> {
    if let Some(disguised) = base64_parts::disguise(bytes) {
        if let Some(message) = MessageParser::default().parse(&disguised.bytes) {
            if let Some(decoded) = base64_parts::decode(bytes, &message, &disguised) {
                return Some(read(&message, decoded));
            }
        }
    }
    MessageParser::default()
        .parse(bytes)
        .map(|message| read(&message, DecodedParts::new()))
}

/// What `message` shows, with the bodies of `decoded` parts in place of their stored bytes.
fn view(message: &mail_parser::Message<'_>, mut decoded: DecodedParts) -> MessageView {
    let mut view = MessageView {
        subject: message.subject().map(str::to_string),
        message_id: message.message_id().map(|id| format!("<{id}>")),
        from: addresses(message.from()),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        reply_to: addresses(message.reply_to()),
        date: message.date().map(|d| d.to_rfc3339()),
        parsed: true,
        parts: mime_tree(message, &decoded),
        report: delivery_report(message),
        ..MessageView::default()
    };
    let uuencoded: Vec<Attachment> = message
        .text_body
        .iter()
        .filter_map(|&id| Some((id, message.part(id)?)))
        .flat_map(|(id, part)| uudecode_blocks(part_bytes(id, part, &decoded)))
        .map(|(name, bytes)| Attachment {
            filename: Some(name),
            content_type: "application/octet-stream".into(),
            size: bytes.len(),
            sha256: Sha256::digest(&bytes).into(),
            bytes,
        })
        .collect();
    // A header-only fetch of a multipart message leaves an empty multipart "part": not a file.
    for &id in &message.attachments {
        let Some(part) = message
            .part(id)
            .filter(|p| !content_type(*p).starts_with("multipart/"))
        else {
            continue;
        };
        let bytes = decoded
            .remove(&id)
            .unwrap_or_else(|| part.contents().to_vec());
        view.attachments.push(Attachment {
            filename: part.attachment_name().map(str::to_string),
            content_type: content_type(part),
            size: bytes.len(),
            sha256: Sha256::digest(&bytes).into(),
            bytes,
        });
    }
    view.attachments.extend(uuencoded);
    let mut hops: Vec<Hop> = message
        .header_values("Received")
        .filter_map(|value| match value {
            HeaderValue::Received(r) => Some(Hop {
                from: host(&r.from),
                from_ip: r.from_ip.map(|ip| ip.to_string()),
                by: host(&r.by),
                via: r.via.as_ref().map(|v| v.to_string()),
                with: r.with.as_ref().map(|w| w.to_string()),
                encrypted: r.tls_version.is_some()
                    || r.with.as_ref().is_some_and(|w| {
                        let w = w.to_string();
                        w != "MMS" && (w.ends_with('S') || w.ends_with("SA"))
                    }),
                authenticated: r
                    .with
                    .as_ref()
                    .is_some_and(|w| w.to_string().ends_with('A')),
                delay_s: None,
                id: r.id.as_ref().map(|id| id.to_string()),
                for_: r.for_.as_ref().map(|f| f.to_string()),
                date: r.date.as_ref().map(|d| d.to_rfc3339()),
                unix: r.date.as_ref().map(|d| d.to_timestamp()),
                tls: r.tls_version.as_ref().map(|v| format!("{v:?}")),
            }),
            _ => None,
        })
        .collect();
    // Each relay adds its Received header on top: the oldest hop is the last header.
    hops.reverse();
    let mut previous_unix = None;
    for hop in &mut hops {
        if let (Some(before), Some(at)) = (previous_unix, hop.unix) {
            hop.delay_s = Some(at.saturating_sub(before));
        }
        previous_unix = hop.unix;
    }
    view.hops = hops;
    view
}

/// Files that old mailers put in a text body with uuencode (`begin MODE NAME` ... `end`), as
/// (name, decoded bytes). Written here because the one crate for it panics on malformed input
/// and ignores each line's length byte.
pub fn uudecode_blocks(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(b"begin ") else {
            continue;
        };
        let mut words = rest.splitn(2, |&b| b == b' ');
        let mode_ok = words
            .next()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|b| (b'0'..=b'7').contains(b)));
        let Some(name) = words.next().filter(|n| mode_ok && !n.is_empty()) else {
            continue;
        };
        let mut bytes = Vec::new();
        let mut ended = false;
        for line in lines.by_ref() {
            if line == b"end" {
                ended = true;
                break;
            }
            let Some((&count, data)) = line.split_first() else {
                continue;
            };
            // Each character carries 6 bits, offset by 32 (a backquote stands for 0).
            let len = usize::from(count.wrapping_sub(32) & 63);
            let mut decoded = Vec::with_capacity(len + 2);
            for group in data.chunks(4) {
                // A short last group counts its missing characters as 0.
                let n = (0..4).fold(0u32, |n, i| {
                    (n << 6) | u32::from(group.get(i).map_or(0, |c| c.wrapping_sub(32) & 63))
                });
                decoded.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
            }
            decoded.truncate(len);
            bytes.extend_from_slice(&decoded);
        }
        if ended {
            found.push((String::from_utf8_lossy(name).into_owned(), bytes));
        }
    }
    found
}

/// The report of a delivery status notification, if the message is one.
fn delivery_report(message: &mail_parser::Message<'_>) -> Option<DeliveryReport> {
    if content_type(message.root_part()) != "multipart/report" {
        return None;
    }
    let mut report = DeliveryReport::default();
    for part in message.parts.iter() {
        match content_type(part).as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                report.recipients = recipient_groups(part.contents());
            }
            "text/rfc822-headers" | "message/rfc822" | "message/global" => {
                let original = match part.message() {
                    Some(m) => m.message_id().map(str::to_string),
                    None => MessageParser::default()
                        .parse(part.contents())
                        .and_then(|m| m.message_id().map(str::to_string)),
                };
                report.original_message_id = original.map(|id| format!("<{id}>"));
            }
            _ => {}
        }
    }
    Some(report)
}

/// The per-recipient field groups of a delivery-status body (RFC 3464 2.3): the groups after
/// the first (per-message) one, each a block of `Name: value` lines.
fn recipient_groups(body: &[u8]) -> Vec<RecipientStatus> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    let mut out = Vec::new();
    for group in text.split("\n\n").skip(1) {
        let mut status = RecipientStatus::default();
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in group.lines() {
            match (line.starts_with([' ', '\t']), fields.last_mut()) {
                (true, Some((_, value))) => value.push_str(line),
                _ => {
                    if let Some((name, value)) = line.split_once(':') {
                        fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                    }
                }
            }
        }
        for (name, value) in fields {
            let slot = match name.as_str() {
                "final-recipient" => &mut status.recipient,
                "original-recipient" if status.recipient.is_none() => &mut status.recipient,
                "action" => &mut status.action,
                "status" => &mut status.status,
                "diagnostic-code" => &mut status.diagnostic,
                _ => continue,
            };
            // "rfc822; user@example.test": the address type is not the address.
            let value = value
                .split_once(';')
                .map_or(value.as_str(), |(_, v)| v)
                .trim();
            *slot = Some(value.to_string());
        }
        if status != RecipientStatus::default() && out.len() < MAX_REPORTED_RECIPIENTS {
            out.push(status);
        }
    }
    out
}

/// `Name <a@b>` (as [`MessageView`] shows addresses) to `a@b`.
pub fn bare_address(shown: &str) -> &str {
    // The last `>` must come after the last `<`, so it is in the text after that `<`.
    shown
        .rsplit_once('<')
        .and_then(|(_, after_open)| after_open.rsplit_once('>'))
        .map_or_else(|| shown.trim(), |(address, _)| address)
}

/// The BLAKE3 hash of a message's body (the bytes after the blank line that ends its
/// header), to tell whether two sightings of a message carry the same body. BLAKE3 rather
/// than a second SHA-256: this runs over every message, and it is several times faster.
pub fn body_hash(bytes: &[u8]) -> [u8; 32] {
    let body = memchr::memmem::find(bytes, b"\r\n\r\n")
        .and_then(|i| bytes.get(i + 4..))
        .or_else(|| memchr::memmem::find(bytes, b"\n\n").and_then(|i| bytes.get(i + 2..)))
        .unwrap_or_default();
    blake3::hash(body).into()
}

/// A part's body bytes: ours where we decoded it, else mail-parser's.
fn part_bytes<'a>(
    id: MessagePartId,
    part: &'a MessagePart<'_>,
    decoded: &'a DecodedParts,
) -> &'a [u8] {
    decoded.get(&id).map_or(part.contents(), Vec::as_slice)
}

fn mime_tree(
    message: &mail_parser::Message<'_>,
    decoded: &DecodedParts,
) -> Vec<(usize, String, usize)> {
    let mut out = Vec::new();
    let mut stack = vec![(0u32, 0usize)];
    while let Some((id, depth)) = stack.pop() {
        let Some(part) = message.part(id) else {
            continue;
        };
        let size = decoded.get(&id).map_or(part.len(), Vec::len);
        out.push((depth, content_type(part), size));
        if let PartType::Multipart(children) = &part.body {
            for child in children.iter().rev() {
                stack.push((*child, depth + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uudecode_known_answers() {
        // `printf 'Cat' | uuencode cat.txt` (GNU sharutils).
        let text = b"hello\r\nbegin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\nbye\r\n";
        assert_eq!(
            uudecode_blocks(text),
            vec![("cat.txt".to_string(), b"Cat".to_vec())]
        );
        assert!(
            uudecode_blocks(b"begin 644 x\r\n#0V%T\r\n").is_empty(),
            "no end line: not a file"
        );
        assert!(
            uudecode_blocks(b"begin here is some text\r\nend\r\n").is_empty(),
            "not a mode"
        );
        assert_eq!(
            uudecode_blocks(b"begin 600 y\n\xff\xfe\x00\nend\n").len(),
            1,
            "garbage lines do not panic"
        );
    }
}
