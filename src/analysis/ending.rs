//! Findings that need the whole session: STARTTLS offered and not used, or failed, or offered
//! to others; where the time went; what stayed unanswered; a reset mid-transaction; probes,
//! gaps and protocol errors summed up; TLS that could not be read.

use super::analyst::{Found, Watch, MAX_ERROR_REPLIES};
use super::dialogue::masked_starttls;
use super::tally::Tally;
use crate::session::model::{FindingKind, Protocol, Session, TlsMode};
use crate::tcp::{Direction, FlowEnd};

/// Whether any payload went either way (delivered or lost).
fn carried(session: &Session) -> bool {
    session
        .streams
        .iter()
        .any(|s| s.bytes + s.gap_bytes + s.after_reset_bytes > 0)
}

/// What reassembly saw: copies of the same bytes that differ, and a server that never answered.
fn reassembly(tally: &mut Tally, found: &mut Found) {
    let session = found.session;
    for direction in [Direction::ClientToServer, Direction::ServerToClient] {
        let stats = direction.pick(&session.streams);
        if stats.conflicts > 0 {
            found.add(
                FindingKind::OverlapConflict,
                session.end,
                format!(
                    "{} time(s) the {} sent bytes again with other content; the first copy is \
                     the one shown",
                    stats.conflicts,
                    direction.sender()
                ),
                Vec::new(),
            );
        }
    }
    let [client, server] = &session.streams;
    if client.packets > 0 && server.packets == 0 && !carried(session) {
        let attempt = session.client.to_string();
        if let Some((count, clients)) = tally.unanswered(session.server.ip(), &attempt) {
            found.add(
                FindingKind::UnansweredConnections,
                session.end,
                format!(
                    "{count} connection attempts to {} got no answer so far, from {clients}",
                    session.server.ip()
                ),
                Vec::new(),
            );
        }
    }
}

/// A reply this slow is worth a look whatever the session's pace (greeting pauses are 6 s).
const SLOW_ALWAYS_NS: u64 = 5_000_000_000;
/// Otherwise a reply is slow when it takes this long and ...
pub(super) const SLOW_AT_LEAST_NS: u64 = 1_000_000_000;
/// ... this many times the session's median.
const SLOW_FACTOR: u64 = 10;

pub(super) fn session(watch: &Watch, tally: &mut Tally, found: &mut Found) {
    let session = found.session;
    let end = session.end;
    starttls(watch, tally, found);
    slow_replies(watch, found);
    if watch.unanswered_count > 0 {
        found.add(
            FindingKind::UnansweredCommand,
            end,
            format!(
                "{} command(s) got no reply: {}",
                watch.unanswered_count,
                watch.unanswered.join(", ")
            ),
            Vec::new(),
        );
    }
    let more_errors = watch.error_replies.saturating_sub(MAX_ERROR_REPLIES);
    if more_errors > 0 {
        found.add(
            FindingKind::ErrorReply,
            end,
            format!(
                "{more_errors} more error replies after the first {MAX_ERROR_REPLIES} (each is \
                 in the dialogue): {}",
                watch.unreported_codes.join(", ")
            ),
            Vec::new(),
        );
    }
    reassembly(tally, found);
    let (unfinished, cut) = &watch.unfinished;
    match session.ended {
        Some(FlowEnd::Reset)
            if watch.in_transaction || watch.unanswered_count > 0 || *unfinished > 0 =>
        {
            let mut evidence: Vec<String> = watch
                .mail_command
                .iter()
                .map(|m| format!("C: {m}"))
                .collect();
            evidence.extend(cut.iter().cloned());
            found.add(
                FindingKind::ResetMidTransaction,
                end,
                "the connection was reset while a transaction was in progress".into(),
                evidence,
            );
        }
        // A connection that never carried a byte lost nothing (a flood of SYNs is judged below).
        Some(FlowEnd::Evicted) if carried(session) => found.add(
            FindingKind::CaptureLimit,
            end,
            "the connection table was full: this session was closed early to make room".into(),
            Vec::new(),
        ),
        Some(FlowEnd::Reset | FlowEnd::Fin) => {}
        _ if *unfinished > 0 => found.add(
            FindingKind::CaptureGap,
            end,
            format!(
                "the capture stopped while the session was mid-way: {}",
                cut.join("; ")
            ),
            cut.clone(),
        ),
        _ => {}
    }
    if watch.vrfy_count > 0 {
        found.add(
            FindingKind::VrfyExpn,
            end,
            format!(
                "{} VRFY/EXPN probe(s), {} answered with a 2xx: {}",
                watch.vrfy_count,
                watch.vrfy_answered,
                watch.vrfy.join(", ")
            ),
            watch.vrfy.iter().map(|v| format!("C: {v}")).collect(),
        );
    }
    for (kind, (count, texts), what) in [
        (
            FindingKind::CaptureGap,
            &watch.gaps,
            "gap(s) in the capture",
        ),
        (
            FindingKind::ProtocolError,
            &watch.malformed,
            "protocol error(s)",
        ),
    ] {
        if *count > 0 {
            found.add(
                kind,
                end,
                format!("{count} {what}: {}", texts.join("; ")),
                texts.clone(),
            );
        }
    }
    let tls = &session.tls;
    if tls.mode != TlsMode::None && !tls.decrypted() && !handshake_failed(session) {
        let reason = tls.error().unwrap_or("no key for it");
        found.add(
            FindingKind::TlsUndecrypted,
            end,
            format!("TLS ({}) not decrypted: {reason}", tls.mode.name()),
            Vec::new(),
        );
    }
}

/// STARTTLS offered and not used, failed, masked, or offered by the same server elsewhere.
fn starttls(watch: &Watch, tally: &mut Tally, found: &mut Found) {
    let session = found.session;
    let tls = &session.tls;
    let end = session.end;
    if watch.offered_starttls && tls.mode == TlsMode::None && watch.transacted {
        found.add(
            FindingKind::StartTlsNotUsed,
            end,
            "the server offered STARTTLS; the client went on in clear text".into(),
            Vec::new(),
        );
    }
    if tls.mode == TlsMode::StartTls && handshake_failed(session) {
        let alert = watch.tls_alert.as_deref().unwrap_or("no TLS alert seen");
        let how = if tls.info().version.is_none() {
            "no server hello"
        } else {
            "the client sent nothing after its hello"
        };
        found.add(
            FindingKind::StartTlsFailed,
            end,
            format!(
                "STARTTLS was accepted but the TLS handshake did not complete: {how} ({alert})"
            ),
            Vec::new(),
        );
    }
    if let Some(masked) = masked_starttls(session) {
        found.add(
            FindingKind::StartTlsDowngrade,
            end,
            format!("the capabilities list {masked}: a middlebox wrote over STARTTLS"),
            vec![format!("S: 250-{masked}")],
        );
    }
    if !watch.capabilities_in_clear || tls.mode == TlsMode::Implicit {
        return;
    }
    // The same server: by the name it greets with (a stripping proxy passes it on), else its
    // address.
    let name = match (session.protocol, &watch.greeting) {
        (Protocol::Smtp, Some((_, Some(host)))) => host.clone(),
        _ => session.server.ip().to_string(),
    };
    let key = format!(
        "{} {name}:{}",
        session.protocol.name(),
        session.server.port()
    );
    let Some(offers) = tally.server(key) else {
        return;
    };
    let (this, other) = if watch.offered_starttls {
        (&mut offers.offered, offers.not_offered)
    } else {
        (&mut offers.not_offered, offers.offered)
    };
    let first_of_its_kind = this.is_none();
    this.get_or_insert(session.id);
    let Some(other) = other.filter(|_| first_of_its_kind) else {
        return;
    };
    let (with, without) = if watch.offered_starttls {
        (session.id, other)
    } else {
        (other, session.id)
    };
    found.add(
        FindingKind::StartTlsDowngrade,
        end,
        format!(
            "{name} offered STARTTLS in session {with} but not in session {without}: something on the path of session {without} may strip it"
        ),
        Vec::new(),
    );
}

/// The TLS handshake never completed: no ServerHello, or a client that sent nothing after its
/// ClientHello (every completed handshake has the client send its Finished, at least).
fn handshake_failed(session: &Session) -> bool {
    let info = session.tls.info();
    info.version.is_none() || info.records[0] <= 1
}

/// Replies far slower than the session's usual pace, and a slow greeting.
fn slow_replies(watch: &Watch, found: &mut Found) {
    let session = found.session;
    let mut sorted = watch.latencies.clone();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let slow = |ns: u64| {
        ns >= SLOW_ALWAYS_NS
            || (sorted.len() >= 3
                && ns >= SLOW_AT_LEAST_NS
                && ns >= median.saturating_mul(SLOW_FACTOR))
    };
    let mut shown = Vec::new();
    if let Some((ts, _)) = &watch.greeting {
        let wait = ts.since(session.start);
        if slow(wait) {
            shown.push((wait, "the greeting".to_string(), *ts));
        }
    }
    shown.extend(
        watch
            .slow
            .iter()
            .filter(|(ns, ..)| slow(*ns))
            .take(5)
            .map(|(ns, verb, ts)| (*ns, verb.clone(), *ts)),
    );
    let Some(&(_, _, first)) = shown.first() else {
        return;
    };
    let list: Vec<String> = shown
        .iter()
        .map(|(ns, verb, _)| format!("{verb} {:.1} s", *ns as f64 / 1e9))
        .collect();
    found.add(
        FindingKind::SlowReply,
        first,
        format!(
            "slow replies (the session's median is {:.1} ms): {}",
            median as f64 / 1e6,
            list.join(", ")
        ),
        Vec::new(),
    );
}
