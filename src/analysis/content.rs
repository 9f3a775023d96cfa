//! Findings in the messages: what SMTP carried against what the server offered (SIZE,
//! 8BITMIME), who the message says it is from against the envelope, the relay path, bounces,
//! and a message seen again with another body.

use std::net::IpAddr;

use super::analyst::{Found, Watch};
use crate::export::files;
use crate::hex;
use crate::mime::{self, bare_address};
use crate::proto::smtp;
use crate::sanitize;
use crate::session::model::{FindingKind, Message};

/// Headers a reader sees and attachment names that carry control sequences, and attachment
/// names that would be dangerous as file names.
fn hostile_text(message: &Message, found: &mut Found) {
    let ts = message.captured.ts;
    let view = &message.view;
    let names = view
        .attachments
        .iter()
        .filter_map(|a| a.filename.as_deref());
    let shown = [("Subject", view.subject.as_deref())]
        .into_iter()
        .chain(view.from.iter().map(|f| ("From", Some(f.as_str()))))
        .chain(view.to.iter().map(|t| ("To", Some(t.as_str()))))
        .chain(view.cc.iter().map(|c| ("Cc", Some(c.as_str()))))
        .chain(names.clone().map(|n| ("attachment", Some(n))))
        .filter_map(|(field, text)| Some((field, text?)));
    let with_controls: Vec<String> = shown
        .filter(|(_, text)| sanitize::has_controls(text))
        .map(|(field, text)| format!("{field}: {}", sanitize::line(text.as_bytes())))
        .collect();
    if let Some(first) = with_controls.first() {
        found.add(
            FindingKind::ControlCharacters,
            ts,
            format!(
                "message {} carries control characters in {} field(s), first {first}",
                message.id,
                with_controls.len()
            ),
            with_controls.iter().take(5).cloned().collect(),
        );
    }
    for name in names {
        if let Some(why) = files::name_hazard(name) {
            let shown: String = sanitize::line(name.as_bytes()).chars().take(120).collect();
            found.add(
                FindingKind::HostileFileName,
                ts,
                format!(
                    "message {} has an attachment named \"{shown}\": {why}",
                    message.id
                ),
                Vec::new(),
            );
        }
    }
}

/// Received hops may disagree by this much (clocks are never quite in step).
const CLOCK_SKEW_SECONDS: i64 = 300;

pub(super) fn message(watch: &Watch, message: &Message, found: &mut Found) {
    let ts = message.captured.ts;
    if message.captured.source == "smtp" {
        envelope(watch, message, found);
    }
    altered(message, found);
    // What the message says about itself is judged at its first sighting, not at each fetch.
    if !message.seen_before.is_empty() || message.part_of.is_some() {
        return;
    }
    hostile_text(message, found);
    let view = &message.view;
    let from = view.from.first().map(|f| bare_address(f));
    if let (Some(from), Some(reply_to)) = (from, view.reply_to.first()) {
        let reply_to = bare_address(reply_to);
        if domain(reply_to) != domain(from) {
            found.add(
                FindingKind::ReplyToMismatch,
                ts,
                format!("From: {from}, but Reply-To: {reply_to}"),
                vec![format!("From: {from}"), format!("Reply-To: {reply_to}")],
            );
        }
    }
    relay_path(message, found);
    if let Some(report) = &view.report {
        let original = report
            .original_message_id
            .as_deref()
            .unwrap_or("an unnamed message");
        let seen = message
            .reports_on
            .map(|id| format!(" (message {id} in this capture)"))
            .unwrap_or_default();
        let outcomes: Vec<String> = report
            .recipients
            .iter()
            .map(|r| {
                format!(
                    "{}: {} {}",
                    r.recipient.as_deref().unwrap_or("?"),
                    r.action.as_deref().unwrap_or("?"),
                    r.status.as_deref().unwrap_or("")
                )
            })
            .collect();
        found.add(
            FindingKind::Bounce,
            ts,
            format!(
                "a delivery report on {original}{seen}: {}",
                if outcomes.is_empty() {
                    "no recipient listed".into()
                } else {
                    outcomes.join("; ")
                }
            ),
            report
                .recipients
                .iter()
                .filter_map(|r| r.diagnostic.clone())
                .take(3)
                .collect(),
        );
    }
}

/// SMTP: the message against the transaction that carried it and what the server offered.
fn envelope(watch: &Watch, message: &Message, found: &mut Found) {
    let (captured, ts) = (&message.captured, message.captured.ts);
    let capabilities = &found.session.capabilities;
    let limit = capabilities
        .iter()
        .find_map(|c| c.strip_prefix("SIZE "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .filter(|&n| n > 0);
    if let Some(limit) = limit.filter(|&limit| captured.size > limit) {
        found.add(
            FindingKind::SizeExceeded,
            ts,
            format!(
                "a message of {} bytes, over the SIZE {limit} the server offered",
                captured.size
            ),
            vec![format!("S: 250-SIZE {limit}")],
        );
    }
    if !captured.bytes.is_ascii() {
        let offered = capabilities.iter().any(|c| c == "8BITMIME");
        let mail = watch.mail_command.as_deref().unwrap_or("");
        let argument = mail.split_once(' ').map_or("", |(_, a)| a);
        let declared = smtp::parser::path_arg(argument, "FROM").is_some_and(|path| {
            path.params.iter().any(|p| {
                p.eq_ignore_ascii_case("BODY=8BITMIME") || p.eq_ignore_ascii_case("SMTPUTF8")
            })
        });
        if !offered || !declared {
            let why = if offered {
                "the client did not declare BODY=8BITMIME"
            } else {
                "the server did not offer 8BITMIME"
            };
            found.add(
                FindingKind::EightBitWithout8BitMime,
                ts,
                format!("the message holds 8-bit bytes, and {why}"),
                vec![format!("C: {mail}")],
            );
        }
    }
    let envelope_from = captured.mail_from.as_deref().unwrap_or("");
    let header_from = message.view.from.first().map(|f| bare_address(f));
    if let Some(header_from) = header_from {
        if !envelope_from.is_empty() && !envelope_from.eq_ignore_ascii_case(header_from) {
            found.add(
                FindingKind::SenderMismatch,
                ts,
                format!("envelope sender {envelope_from}, but From: {header_from}"),
                vec![
                    format!("C: MAIL FROM:<{envelope_from}>"),
                    format!("From: {header_from}"),
                ],
            );
        }
    }
}

/// The Received chain: internal addresses, and hops dated before the hop below them.
fn relay_path(message: &Message, found: &mut Found) {
    let ts = message.captured.ts;
    let hops = &message.view.hops;
    let private: Vec<&str> = hops
        .iter()
        .filter_map(|h| h.from_ip.as_deref())
        .filter(|ip| ip.parse::<IpAddr>().is_ok_and(is_private))
        .collect();
    if !private.is_empty() {
        found.add(
            FindingKind::ReceivedPrivate,
            ts,
            format!(
                "the Received chain names internal addresses: {}",
                private.join(", ")
            ),
            private
                .iter()
                .map(|ip| format!("Received: from [{ip}]"))
                .collect(),
        );
    }
    for pair in hops.windows(2) {
        let [older_hop, newer_hop] = pair else {
            continue;
        };
        let (Some(older), Some(newer)) = (older_hop.unix, newer_hop.unix) else {
            continue;
        };
        if newer.saturating_add(CLOCK_SKEW_SECONDS) < older {
            let name = |h: &mime::Hop| h.by.clone().unwrap_or_else(|| "?".into());
            found.add(
                FindingKind::ReceivedTimeOrder,
                ts,
                format!(
                    "the hop by {} is dated {} s before the hop by {} that handed it the message",
                    name(newer_hop),
                    older.saturating_sub(newer),
                    name(older_hop)
                ),
                pair.iter()
                    .map(|h| {
                        format!(
                            "Received: by {} at {}",
                            name(h),
                            h.date.as_deref().unwrap_or("?")
                        )
                    })
                    .collect(),
            );
            break;
        }
    }
}

/// The same Message-ID seen earlier with another body.
fn altered(message: &Message, found: &mut Found) {
    let c = &message.captured;
    let Some(body) = message.body_hash else {
        return;
    };
    if !c.complete || c.partial || c.truncated || message.seen_before.is_empty() {
        return;
    }
    if let Some(earlier) = message
        .seen_before
        .iter()
        .find(|s| s.whole && s.body_hash != body)
    {
        found.add(
            FindingKind::MessageAltered,
            c.ts,
            format!(
                "message {} ({}) has another body than message {} ({}) in session {} with the same Message-ID",
                message.id, c.source, earlier.message, earlier.source, earlier.session
            ),
            vec![
                format!("body BLAKE3 {}", hex::encode(&body)),
                format!("earlier body BLAKE3 {}", hex::encode(&earlier.body_hash)),
            ],
        );
    }
}

fn domain(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .to_ascii_lowercase()
}

/// RFC 1918, shared (100.64/10), link-local and unique-local addresses.
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}
