//! Findings in the dialogue, one exchange at a time: refused STARTTLS, replies that refuse,
//! pipelining and early talking, HELO names, relaying, probing, and every authentication.

use std::net::IpAddr;

use super::analyst::{remember, Found, Options, Watch, MAX_ERROR_REPLIES, MAX_NAMES};
use super::explain;
use super::tally::Tally;
use crate::proto::{smtp, AuthAttempt, Exchange, Reply};
use crate::sanitize;
use crate::session::model::{FindingKind, Protocol, Session, TlsMode};

/// Commands that do not use the service: greeting, capabilities, closing.
const HOUSEKEEPING: &[&str] = &[
    "EHLO",
    "HELO",
    "LHLO",
    "CAPA",
    "CAPABILITY",
    "QUIT",
    "LOGOUT",
    "NOOP",
    "RSET",
    "STARTTLS",
    "STLS",
    "ID",
];

/// A command and its reply as the lines a finding shows.
pub fn evidence(exchange: &Exchange) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(c) = &exchange.command {
        lines.push(format!("C: {}", c.line));
    }
    if let Some(r) = &exchange.reply {
        lines.extend(r.lines().take(3).map(|l| format!("S: {l}")));
    }
    lines
}

/// Commands or replies carrying terminal control sequences, reported once per session.
fn control_characters(watch: &mut Watch, exchange: &Exchange, found: &mut Found) {
    if watch.controls_reported {
        return;
    }
    let command = exchange.command.as_ref().map(|c| &c.line);
    let reply = exchange.reply.iter().flat_map(Reply::lines);
    let sender = if command.is_some_and(|line| sanitize::has_controls(line)) {
        "client"
    } else if reply.into_iter().any(sanitize::has_controls) {
        "server"
    } else {
        return;
    };
    watch.controls_reported = true;
    let ts = exchange
        .command
        .as_ref()
        .map(|c| c.ts)
        .or(exchange.reply.as_ref().map(|r| r.ts))
        .unwrap_or_default();
    found.add(
        FindingKind::ControlCharacters,
        ts,
        format!("the {sender} sent terminal control characters in the dialogue (the first here)"),
        evidence(exchange),
    );
}

/// Whether a reply says no: SMTP 4xx and 5xx, POP3 -ERR, IMAP NO and BAD.
pub fn refused(protocol: Protocol, reply: &Reply) -> bool {
    match protocol {
        Protocol::Smtp => reply.code().starts_with(['4', '5']),
        Protocol::Pop3 => reply.code() == "-ERR",
        Protocol::Imap => matches!(reply.code(), "NO" | "BAD"),
        Protocol::Unknown => false,
    }
}

pub(super) fn exchange(
    watch: &mut Watch,
    tally: &mut Tally,
    options: &Options,
    exchange: &Exchange,
    found: &mut Found,
) {
    let session = found.session;
    capabilities(watch, session);
    control_characters(watch, exchange, found);
    let Some(command) = &exchange.command else {
        // A reply nobody asked for: the greeting.
        if let (None, Some(reply)) = (&watch.greeting, &exchange.reply) {
            let host = match session.protocol {
                Protocol::Smtp => greeting_host(reply.first_line()),
                _ => None,
            };
            watch.greeting = Some((reply.ts, host));
            watch.last_reply = Some(reply.ts);
        }
        return;
    };
    let verb = command.verb.to_ascii_uppercase();
    if !HOUSEKEEPING.contains(&verb.as_str()) {
        watch.transacted = true;
    }
    early_or_pipelined(watch, session, exchange, found);
    let Some(reply) = &exchange.reply else {
        watch.unanswered_count += 1;
        remember(&mut watch.unanswered, &verb);
        return;
    };
    watch.last_reply = Some(reply.ts);
    // IDLE's reply comes when the client ends it: a wait, not a delay.
    if verb != "IDLE" {
        watch.latency(reply.ts.since(command.ts), &verb, reply.ts);
    }
    let refused = refused(session.protocol, reply);
    let argument = command.line.split_once(' ').map_or("", |(_, a)| a).trim();
    match (session.protocol, verb.as_str()) {
        (_, "STARTTLS" | "STLS") if refused => found.add(
            FindingKind::StartTlsRefused,
            reply.ts,
            format!("the server answered {} to {verb}", reply.code()),
            evidence(exchange),
        ),
        (Protocol::Smtp, "EHLO" | "HELO") => {
            watch.ehlo_host = greeting_host(reply.first_line());
            helo_literal(session, argument, exchange, found);
        }
        (Protocol::Smtp, "MAIL") if !refused => {
            watch.in_transaction = true;
            watch.mail_command = Some(command.line.clone());
        }
        (Protocol::Smtp, "RCPT") if refused && reply.code().starts_with('5') => {
            let ip = session.client.ip();
            let address = Some(path_address(argument));
            let refused = tally.alarm(ip, |c| &mut c.rejected_recipients, address);
            if let Some((count, names)) = refused {
                found.add(
                    FindingKind::RecipientEnumeration,
                    reply.ts,
                    format!("{count} recipients refused for {ip} so far: {names}"),
                    evidence(exchange),
                );
            }
        }
        (Protocol::Smtp, "RCPT") if !refused => {
            relayed(watch, options, argument, exchange, found);
        }
        (Protocol::Smtp, "." | "RSET" | "BDAT") => watch.in_transaction = false,
        (Protocol::Smtp, "VRFY" | "EXPN") => {
            watch.vrfy_count += 1;
            remember(&mut watch.vrfy, &format!("{verb} {argument}"));
            if reply.code().starts_with('2') {
                watch.vrfy_answered += 1;
            }
        }
        _ => {}
    }
    if refused {
        watch.error_replies += 1;
        if watch.error_replies <= MAX_ERROR_REPLIES {
            error_reply(session.protocol, &verb, reply, exchange, found);
        } else {
            remember(
                &mut watch.unreported_codes,
                &format!("{verb} {}", reply.code()),
            );
        }
    }
}

/// A refusal, explained (with its RFC 3463 enhanced code).
fn error_reply(
    protocol: Protocol,
    verb: &str,
    reply: &Reply,
    exchange: &Exchange,
    found: &mut Found,
) {
    let meaning = explain::reply(protocol, reply.code()).unwrap_or("refused");
    let enhanced = reply
        .enhanced()
        .and_then(|e| explain::enhanced(e).map(|text| format!(" ({e}: {text})")))
        .unwrap_or_default();
    found.add(
        FindingKind::ErrorReply,
        reply.ts,
        format!("{verb}: {} {meaning}{enhanced}", reply.code()),
        evidence(exchange),
    );
}

/// Notes what the capabilities offer while the session is in clear, and a STARTTLS keyword
/// masked by a middlebox (`XXXXXXXA`, as Cisco's SMTP inspection writes it).
fn capabilities(watch: &mut Watch, session: &Session) {
    if session.tls.mode != TlsMode::None || session.capabilities.is_empty() {
        return;
    }
    watch.capabilities_in_clear = true;
    if session
        .capabilities
        .iter()
        .any(|c| c == "STARTTLS" || c == "STLS")
    {
        watch.offered_starttls = true;
    }
}

/// A keyword a middlebox wrote over STARTTLS.
pub fn masked_starttls(session: &Session) -> Option<&str> {
    session
        .capabilities
        .iter()
        .find(|c| c.len() == 8 && c.starts_with("XXXX"))
        .map(String::as_str)
}

/// SMTP: a client that talks before the greeting, or sends commands ahead of replies without
/// the server's PIPELINING.
fn early_or_pipelined(
    watch: &mut Watch,
    session: &Session,
    exchange: &Exchange,
    found: &mut Found,
) {
    let Some(command) = &exchange.command else {
        return;
    };
    if session.protocol != Protocol::Smtp {
        return;
    }
    // The dissector reports the greeting first, also when the client spoke before it.
    let early = watch
        .greeting
        .as_ref()
        .is_some_and(|(greeting, _)| command.ts < *greeting);
    if early {
        if std::mem::replace(&mut watch.early_reported, true) {
            return;
        }
        return found.add(
            FindingKind::EarlyTalker,
            command.ts,
            format!(
                "the client sent {:?} before the server's greeting",
                command.line
            ),
            evidence(exchange),
        );
    }
    let ahead = watch.last_reply.is_some_and(|reply| command.ts < reply);
    let offered = session.capabilities.iter().any(|c| c == "PIPELINING");
    if !ahead || offered || watch.pipelining_reported || command.verb == "." {
        return;
    }
    watch.pipelining_reported = true;
    found.add(
        FindingKind::PipeliningWithoutCapability,
        command.ts,
        format!(
            "the client sent {:?} before the previous reply, and the server did not offer PIPELINING",
            command.line
        ),
        evidence(exchange),
    );
}

/// An address literal in HELO/EHLO (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) that is not the
/// address the client connects from.
fn helo_literal(session: &Session, argument: &str, exchange: &Exchange, found: &mut Found) {
    let Some(literal) = argument
        .split_whitespace()
        .next()
        .and_then(|a| a.strip_prefix('['))
        .and_then(|a| a.strip_suffix(']'))
    else {
        return;
    };
    let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
    let Ok(named) = literal.parse::<IpAddr>() else {
        return;
    };
    let real = session.client.ip();
    if named.to_canonical() != real.to_canonical() {
        found.add(
            FindingKind::HeloMismatch,
            exchange
                .reply
                .as_ref()
                .map_or_else(Default::default, |r| r.ts),
            format!("the client calls itself [{named}] but connects from {real}"),
            evidence(exchange),
        );
    }
}

/// An accepted recipient outside the server's domains, without authentication.
fn relayed(
    watch: &mut Watch,
    options: &Options,
    argument: &str,
    exchange: &Exchange,
    found: &mut Found,
) {
    if watch.authenticated {
        return;
    }
    let address = path_address(argument);
    let Some((_, domain)) = address.rsplit_once('@') else {
        return;
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let servers: Vec<&str> = [
        watch.greeting.as_ref().and_then(|(_, h)| h.as_deref()),
        watch.ehlo_host.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let local = if options.local_domains.is_empty() {
        // Without --local-domain, the server's own name and its parent domain are local.
        let parents: Vec<&str> = servers
            .iter()
            .filter_map(|h| h.split_once('.').map(|(_, parent)| parent))
            .filter(|parent| parent.contains('.'))
            .collect();
        if parents.is_empty() {
            return; // Nothing to judge by.
        }
        servers.iter().chain(&parents).any(|d| within(&domain, d))
    } else {
        options.local_domains.iter().any(|d| within(&domain, d))
    };
    // Once per recipient domain and session: a spam run relays thousands of messages.
    if !local && !watch.relayed.contains(&domain) && watch.relayed.len() < MAX_NAMES {
        watch.relayed.push(domain.clone());
        let reply = exchange.reply.as_ref();
        found.add(
            FindingKind::OpenRelay,
            reply.map_or_else(Default::default, |r| r.ts),
            format!(
                "the server ({}) accepted {address} for {domain}, not a domain of its own, from an unauthenticated client (declare the domains it hosts with --local-domain)",
                servers.first().copied().unwrap_or("unnamed")
            ),
            evidence(exchange),
        );
    }
}

/// `domain` is `parent` or below it.
fn within(domain: &str, parent: &str) -> bool {
    let parent = parent.trim_end_matches('.').to_ascii_lowercase();
    domain == parent || domain.ends_with(&format!(".{parent}"))
}

/// The host name a greeting or EHLO reply line gives: `220 mail.example.test ESMTP`.
fn greeting_host(line: &str) -> Option<String> {
    let rest = line.get(4..)?;
    let host = rest.split_whitespace().next()?;
    (host.contains('.') && !host.starts_with('[')).then(|| host.to_ascii_lowercase())
}

/// The mailbox of `TO:<a@b> NOTIFY=...` or `FROM:<@relay:a@b>`, as the SMTP grammar reads it.
pub fn path_address(argument: &str) -> &str {
    let keyword = argument.split(':').next().unwrap_or("");
    smtp::parser::path_arg(argument, keyword).map_or("", |path| path.mailbox)
}

/// An authentication, once its outcome is known (or the session ended): credentials in clear
/// and before STARTTLS (once per user and outcome), and failures counted per client.
pub(super) fn authentication(
    watch: &mut Watch,
    tally: &mut Tally,
    attempt: &AuthAttempt,
    found: &mut Found,
) {
    let session = found.session;
    watch.authenticated |= attempt.success == Some(true);
    let user = attempt.username.as_deref().unwrap_or("?");
    let outcome = match attempt.success {
        Some(true) => "succeeded",
        Some(false) => "failed",
        None => "outcome not captured",
    };
    let line = format!("{} as {user}: {outcome}", attempt.mechanism);
    let in_clear = match (&session.tls.mode, &session.tls.upgrade) {
        (TlsMode::None, _) => true,
        (TlsMode::StartTls, Some(upgrade)) => attempt.ts < upgrade.ts,
        _ => false,
    };
    let reported = (user.to_string(), attempt.success);
    if in_clear
        && attempt.secret.is_some()
        && watch.in_clear.len() < MAX_NAMES
        && !watch.in_clear.contains(&reported)
    {
        watch.in_clear.push(reported);
        found.add(
            FindingKind::CleartextCredentials,
            attempt.ts,
            format!("{line}, with the secret in clear text"),
            vec![line.clone()],
        );
        if watch.offered_starttls {
            found.add(
                FindingKind::AuthBeforeStartTls,
                attempt.ts,
                format!("{line}, although the server had offered STARTTLS"),
                vec![line.clone()],
            );
        }
    }
    if attempt.success == Some(false) {
        let ip = session.client.ip();
        let failed = tally.alarm(ip, |c| &mut c.auth_failures, attempt.username.as_deref());
        if let Some((count, names)) = failed {
            found.add(
                FindingKind::AuthBruteForce,
                attempt.ts,
                format!("{count} failed logins from {ip} so far, as {names}"),
                vec![line],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_addresses() {
        assert_eq!(path_address("TO:<a@b.test>"), "a@b.test");
        assert_eq!(path_address("TO:<a@b.test> NOTIFY=NEVER"), "a@b.test");
        assert_eq!(path_address("TO:<@r1.test,@r2.test:a@b.test>"), "a@b.test");
        assert_eq!(path_address("FROM:<>"), "");
        assert_eq!(path_address("TO: a@b.test"), "a@b.test");
    }

    #[test]
    fn greeting_hosts() {
        assert_eq!(
            greeting_host("220 mail.example.test ESMTP Postfix").as_deref(),
            Some("mail.example.test")
        );
        assert_eq!(greeting_host("220 localhost ESMTP"), None);
        assert_eq!(greeting_host("2"), None);
    }
}
