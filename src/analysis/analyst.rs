//! The analyst: a [`SessionSink`] that passes everything on to the outputs and adds the
//! findings it draws from it, as soon as each is certain. What it keeps is bounded: a small
//! [`Watch`] per open session and a [`Tally`] per client and server.

use std::collections::HashMap;

use super::tally::Tally;
use super::{content, dialogue, ending};
use crate::capture::Timestamp;
use crate::proto::{AuthAttempt, Exchange, Note, NoteKind};
use crate::session::model::{Finding, FindingKind, Message, Session};
use crate::session::SessionSink;
use crate::tcp::Direction;

/// What the user told the analysis about the network it looks at.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Domains the captured servers receive mail for (`--local-domain`): a recipient outside
    /// them accepted from an unauthenticated client is relayed.
    pub local_domains: Vec<String>,
}

/// Reply latencies kept per session for the median (the first ones are representative).
const MAX_LATENCIES: usize = 1_000;
/// Replies that took long enough to be slow, kept per session with their verb and time.
const MAX_SLOW_REPLIES: usize = 100;
/// Names kept per session for a finding's detail (VRFY arguments, unanswered verbs).
pub(super) const MAX_NAMES: usize = 20;
/// Error replies reported one by one per session; the rest are counted in one finding at its
/// end (a brute force draws a million refusals, each already in the dialogue).
pub(super) const MAX_ERROR_REPLIES: u64 = 100;

/// What the analysis remembers of one open session.
#[derive(Default)]
pub(super) struct Watch {
    /// The greeting's time and the host name it gives (SMTP).
    pub greeting: Option<(Timestamp, Option<String>)>,
    /// The host name in the EHLO reply.
    pub ehlo_host: Option<String>,
    /// Capabilities were listed before TLS, and whether STARTTLS (or STLS) was among them.
    pub capabilities_in_clear: bool,
    pub offered_starttls: bool,
    /// An authentication succeeded (the client may relay).
    pub authenticated: bool,
    /// (user, outcome) of the secrets in clear reported so far: once each, at most
    /// [`MAX_NAMES`] (a brute force tries a million; credentials.csv has each).
    pub in_clear: Vec<(String, Option<bool>)>,
    /// The latency in ns of each answered command (a session of 10,000 open at once holds
    /// these, so they are numbers only).
    pub latencies: Vec<u64>,
    /// (latency in ns, command verb, when) of the replies that took at least
    /// [`ending::SLOW_AT_LEAST_NS`]: only those can be slow, whatever the median.
    pub slow: Vec<(u64, String, Timestamp)>,
    /// When the previous reply came: a command sent before it was pipelined.
    pub last_reply: Option<Timestamp>,
    pub pipelining_reported: bool,
    pub early_reported: bool,
    /// Recipient domains an open relay was reported for (once each per session).
    pub relayed: Vec<String>,
    /// Control characters in the dialogue were reported (once per session).
    pub controls_reported: bool,
    /// SMTP: between an accepted MAIL and the reply to the end of its data.
    pub in_transaction: bool,
    /// SMTP: the MAIL command of the transaction in progress.
    pub mail_command: Option<String>,
    /// A command other than greeting, capability and closing ones was sent.
    pub transacted: bool,
    pub vrfy: Vec<String>,
    pub vrfy_count: u64,
    pub vrfy_answered: u64,
    pub unanswered: Vec<String>,
    pub unanswered_count: u64,
    /// Error replies, and the codes of those past [`MAX_ERROR_REPLIES`].
    pub error_replies: u64,
    pub unreported_codes: Vec<String>,
    /// Notes summed up at the end: (count, first texts).
    pub gaps: (u64, Vec<String>),
    pub malformed: (u64, Vec<String>),
    pub unfinished: (u64, Vec<String>),
    pub tls_alert: Option<String>,
}

impl Watch {
    pub fn latency(&mut self, ns: u64, verb: &str, ts: Timestamp) {
        if self.latencies.len() < MAX_LATENCIES {
            self.latencies.push(ns);
        }
        if ns >= ending::SLOW_AT_LEAST_NS && self.slow.len() < MAX_SLOW_REPLIES {
            self.slow.push((ns, verb.to_string(), ts));
        }
    }
}

/// Adds `name` to a bounded list of names.
pub(super) fn remember(list: &mut Vec<String>, name: &str) {
    if list.len() < MAX_NAMES && !list.iter().any(|n| n == name) {
        list.push(name.to_string());
    }
}

/// Findings made while handling one event, delivered once it is handled.
pub(super) struct Found<'a> {
    pub session: &'a Session,
    pub list: Vec<Finding>,
}

impl Found<'_> {
    pub fn add(&mut self, kind: FindingKind, ts: Timestamp, detail: String, evidence: Vec<String>) {
        self.list.push(Finding {
            kind,
            session: self.session.id,
            ts,
            detail,
            evidence,
        });
    }
}

pub struct Analyst<S: SessionSink> {
    pub inner: S,
    pub(super) options: Options,
    watches: HashMap<u64, Watch, ahash::RandomState>,
    pub(super) tally: Tally,
}

impl<S: SessionSink> Analyst<S> {
    pub fn new(inner: S, options: Options) -> Analyst<S> {
        Analyst {
            inner,
            options,
            watches: HashMap::default(),
            tally: Tally::default(),
        }
    }

    /// Runs one judgement with the session's watch and passes on what it found.
    fn judge(
        &mut self,
        session: &Session,
        judge: impl FnOnce(&mut Watch, &mut Tally, &Options, &mut Found),
    ) {
        let watch = self.watches.entry(session.id).or_default();
        let mut found = Found {
            session,
            list: Vec::new(),
        };
        judge(watch, &mut self.tally, &self.options, &mut found);
        for finding in &found.list {
            self.inner.finding(session, finding);
        }
    }
}

impl<S: SessionSink> SessionSink for Analyst<S> {
    fn exchange(&mut self, session: &Session, exchange: &Exchange) {
        self.inner.exchange(session, exchange);
        self.judge(session, |watch, tally, options, found| {
            dialogue::exchange(watch, tally, options, exchange, found);
        });
    }

    fn message(&mut self, session: &Session, message: &Message) {
        self.inner.message(session, message);
        self.judge(session, |watch, _, _, found| {
            content::message(watch, message, found)
        });
    }

    fn note(&mut self, session: &Session, note: &Note) {
        self.inner.note(session, note);
        let watch = self.watches.entry(session.id).or_default();
        let kind = match note.kind {
            NoteKind::SourceRoute => FindingKind::SourceRoute,
            NoteKind::Smuggling => FindingKind::SmtpSmuggling,
            NoteKind::BareLineEnd => FindingKind::BareLineEnd,
            NoteKind::Injection => FindingKind::StartTlsInjection,
            NoteKind::Limit => FindingKind::CaptureLimit,
            NoteKind::Gap => return summed(&mut watch.gaps, &note.text),
            NoteKind::Unfinished => return summed(&mut watch.unfinished, &note.text),
            NoteKind::Malformed => return summed(&mut watch.malformed, &note.text),
            NoteKind::TlsAlert => {
                watch.tls_alert.get_or_insert_with(|| note.text.clone());
                return;
            }
            NoteKind::Tls | NoteKind::Info => return,
        };
        let side = match note.direction {
            Some(Direction::ServerToClient) => "S",
            _ => "C",
        };
        let finding = Finding {
            kind,
            session: session.id,
            ts: note.ts,
            detail: note.text.clone(),
            evidence: vec![format!("{side}: {}", note.text)],
        };
        self.inner.finding(session, &finding);
    }

    fn auth(&mut self, session: &Session, attempt: &AuthAttempt) {
        self.inner.auth(session, attempt);
        self.judge(session, |watch, tally, _, found| {
            dialogue::authentication(watch, tally, attempt, found)
        });
    }

    fn decrypted(&mut self, session: &Session, direction: Direction, bytes: &[u8]) {
        self.inner.decrypted(session, direction, bytes);
    }

    fn finding(&mut self, session: &Session, finding: &Finding) {
        self.inner.finding(session, finding);
    }

    fn session_end(&mut self, session: &Session) {
        self.judge(session, |watch, tally, _, found| {
            ending::session(watch, tally, found)
        });
        // The session is over: what was watched goes with it.
        self.watches.remove(&session.id);
        self.inner.session_end(session);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }
}

/// Counts a note to be summed up at the session's end, keeping the first few texts.
fn summed(sum: &mut (u64, Vec<String>), text: &str) {
    sum.0 += 1;
    if sum.1.len() < 3 {
        sum.1.push(text.to_string());
    }
}
