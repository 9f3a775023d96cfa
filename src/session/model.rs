//! The model users see: sessions (one per connection on a mail port), with their exchanges,
//! authentications, messages and notes. Built by the session layer, read by outputs and the UI.

use std::net::SocketAddr;

use crate::capture::Timestamp;
use crate::mime::MessageView;
use crate::ports::Service;
use crate::proto::{AuthAttempt, CapturedMessage, MailboxEntry, MailboxState, Upgrade};
use crate::tcp::{FlowEnd, HalfStats};
use crate::tls::TlsInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Pop3,
    Imap,
    Unknown,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Unknown => "unknown",
        }
    }

    pub fn of(service: Option<Service>) -> Protocol {
        match service {
            Some(Service::Smtp | Service::Smtps) => Protocol::Smtp,
            Some(Service::Pop3 | Service::Pop3s) => Protocol::Pop3,
            Some(Service::Imap | Service::Imaps) => Protocol::Imap,
            None => Protocol::Unknown,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    None,
    /// Upgraded in the dialogue (STARTTLS, STLS).
    StartTls,
    /// TLS from the first byte (ports 465, 993, 995).
    Implicit,
}

impl TlsMode {
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "implicit",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsStatus {
    pub mode: TlsMode,
    /// Where STARTTLS or STLS took effect.
    pub upgrade: Option<Upgrade>,
    /// What the TLS layer saw and made of it, once the connection is over. Boxed and absent
    /// until then: it is a third of a session, and a flood holds many open sessions.
    info: Option<Box<TlsInfo>>,
}

/// The TLS a session shows before its connection ends, or without TLS.
static NO_TLS: TlsInfo = TlsInfo {
    client_random: None,
    version: None,
    cipher: None,
    sni: None,
    alpn: None,
    certificate: None,
    resumed: false,
    records_decrypted: 0,
    records_undecrypted: 0,
    application_records: [0; 2],
    records: [0; 2],
    error: None,
};

impl TlsStatus {
    pub fn new(mode: TlsMode) -> TlsStatus {
        TlsStatus {
            mode,
            upgrade: None,
            info: None,
        }
    }

    pub fn info(&self) -> &TlsInfo {
        self.info.as_deref().unwrap_or(&NO_TLS)
    }

    pub fn set_info(&mut self, info: Box<TlsInfo>) {
        self.info = Some(info);
    }

    pub fn decrypted(&self) -> bool {
        self.mode != TlsMode::None && self.info().decrypted()
    }

    /// Why the TLS part is not (all) readable.
    pub fn error(&self) -> Option<&str> {
        self.info().error.as_deref()
    }
}

/// Authentication attempts a session keeps: a brute force in one connection can make millions.
pub const MAX_KEPT_AUTH: usize = 1_000;

#[derive(Clone, Debug)]
pub struct Session {
    /// The connection's number, as `mailscope flows` shows it.
    pub id: u64,
    pub protocol: Protocol,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub start: Timestamp,
    pub end: Timestamp,
    pub tls: TlsStatus,
    /// The first [`MAX_KEPT_AUTH`] authentication attempts (outputs that need every one take
    /// them from [`crate::session::SessionSink::auth`] as they come).
    pub auth: Vec<AuthAttempt>,
    /// Every authentication attempt, kept or not.
    pub auth_attempts: u64,
    pub capabilities: Vec<String>,
    /// The mailbox as POP3 LIST and UIDL showed it.
    pub mailbox: Vec<MailboxEntry>,
    /// IMAP: the selected mailbox as the dialogue so far has it.
    pub selected: Option<MailboxState>,
    pub exchanges: u64,
    pub messages: u64,
    pub gaps: u64,
    /// Notes made (the sink has each as it comes).
    pub notes: u64,
    pub ended: Option<FlowEnd>,
    /// What reassembly counted each way (by [`crate::tcp::Direction::index`]), final at the
    /// session's end.
    pub streams: [HalfStats; 2],
}

impl Session {
    pub fn user(&self) -> Option<&str> {
        user_of(&self.auth)
    }
}

/// The user name of the first successful authentication, else of the first attempt.
pub fn user_of(auth: &[AuthAttempt]) -> Option<&str> {
    auth.iter()
        .find(|a| a.success == Some(true))
        .or(auth.first())
        .and_then(|a| a.username.as_deref())
}

/// A message with what it says about itself.
#[derive(Clone, Debug)]
pub struct Message {
    /// Numbered across the capture from 1, in the order messages are complete.
    pub id: u64,
    pub session: u64,
    pub captured: CapturedMessage,
    pub view: MessageView,
    /// IMAP: the whole message this part belongs to, when it was captured before it.
    pub part_of: Option<u64>,
    /// IMAP: for a whole message, its parts captured before it.
    pub parts: Vec<u64>,
    /// The BLAKE3 hash of the body, for messages with a Message-ID (see [`Sighting`]).
    pub body_hash: Option<[u8; 32]>,
    /// Earlier sightings of the same Message-ID, in this capture: its journey so far (the
    /// first [`super::journeys::MAX_PER_MESSAGE`] of them).
    pub seen_before: Vec<Sighting>,
    /// Earlier sightings in all.
    pub seen_count: u64,
    /// For a delivery report (bounce): the message it reports on, when it was seen earlier.
    pub reports_on: Option<u64>,
}

/// An earlier sighting of a message with the same Message-ID: one step of its journey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub message: u64,
    pub session: u64,
    pub source: &'static str,
    pub sha256: [u8; 32],
    /// The body's BLAKE3 hash (after the header): relays add Received headers, so a changed
    /// body is what says the message itself changed.
    pub body_hash: [u8; 32],
    /// The whole message was captured (not a part, not cut short): its hashes can be compared.
    pub whole: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Alert,
}

impl Severity {
    pub fn named(name: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Alert]
            .into_iter()
            .find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Alert => "alert",
        }
    }
}

/// Something about a session that an analyst or admin should look at.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: FindingKind,
    pub session: u64,
    pub ts: Timestamp,
    /// What happened here, in one sentence.
    pub detail: String,
    /// The exact exchanges that show it, as `C: ...` and `S: ...` lines.
    pub evidence: Vec<String>,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }
}

macro_rules! finding_kinds {
    ($($kind:ident $name:literal $severity:ident $why:literal,)*) => {
        /// Every kind of finding, with its name (the `kind` of JSON records), its severity and
        /// why it matters.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FindingKind { $($kind,)* }

        impl FindingKind {
            pub const ALL: &'static [FindingKind] = &[$(FindingKind::$kind,)*];

            pub fn name(self) -> &'static str {
                match self { $(FindingKind::$kind => $name,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(FindingKind::$kind => Severity::$severity,)* }
            }

            /// One sentence on why it matters.
            pub fn why(self) -> &'static str {
                match self { $(FindingKind::$kind => $why,)* }
            }
        }
    };
}

finding_kinds! {
    CleartextCredentials "cleartext-credentials" Alert
        "anyone on the path can read these credentials and log in with them",
    AuthBeforeStartTls "auth-before-starttls" Warning
        "the server offered STARTTLS, yet the client sent its credentials before using it",
    StartTlsNotUsed "starttls-not-used" Warning
        "the server offered encryption and the session went on in clear text",
    StartTlsRefused "starttls-refused" Warning
        "the client asked for encryption and did not get it; a client that goes on sends everything in clear",
    StartTlsFailed "starttls-failed" Warning
        "the TLS handshake after STARTTLS did not complete, so the session could not go on protected",
    StartTlsDowngrade "starttls-downgrade" Alert
        "the same server offers STARTTLS elsewhere: something on the path may strip it to force clear text",
    StartTlsInjection "starttls-injection" Alert
        "a server that buffers these bytes runs them as if they came inside TLS (CVE-2011-0411 and kin)",
    SmtpSmuggling "smtp-smuggling" Alert
        "servers disagree on where such a message ends, which lets a sender smuggle in a second, spoofed one (CVE-2023-51764 and kin)",
    BareLineEnd "bare-line-end" Warning
        "SMTP lines end with CRLF only; bare CR or LF is where smuggling and parser confusion start",
    OpenRelay "open-relay" Alert
        "a server that relays for unauthenticated strangers is abused for spam within hours",
    SourceRoute "source-route" Warning
        "source routes are obsolete (RFC 5321 appendix C) and used to probe for relays",
    HeloMismatch "helo-mismatch" Warning
        "a client naming itself with an address it does not use is typical of spam software",
    SenderMismatch "sender-mismatch" Info
        "bounces go to the envelope sender, not the author the reader sees: normal for lists, common in spoofing",
    ReplyToMismatch "reply-to-mismatch" Warning
        "replies go to another domain than the author's: the classic trick of fraud mail",
    ReceivedPrivate "received-private" Info
        "the relay path reveals internal addresses",
    ReceivedTimeOrder "received-time-order" Warning
        "hops out of time order mean a wrong clock or a forged Received header",
    VrfyExpn "vrfy-expn" Warning
        "VRFY and EXPN tell whoever asks which mailboxes and lists exist",
    RecipientEnumeration "recipient-enumeration" Warning
        "many rejected recipients from one client is how address lists are harvested",
    AuthBruteForce "auth-brute-force" Alert
        "repeated failed logins from one client is how passwords are guessed",
    SlowReply "slow-reply" Info
        "this is where the time went: DNS or policy checks, tarpitting, greeting pauses, overloaded filters",
    ErrorReply "error-reply" Info
        "the server refused or failed what was asked",
    UnansweredCommand "unanswered-command" Info
        "the server never answered: it hung, closed the connection, or the capture ended first",
    ResetMidTransaction "reset-mid-transaction" Warning
        "the connection broke while mail was in flight; that message was probably not delivered",
    PipeliningWithoutCapability "pipelining-without-capability" Warning
        "sending ahead of replies without PIPELINING breaks RFC 2920 and is a spam-bot trait",
    EarlyTalker "early-talker" Warning
        "talking before the greeting is a spam-bot trait (what Postfix's postscreen looks for)",
    EightBitWithout8BitMime "8bit-without-8bitmime" Info
        "8-bit data without 8BITMIME may be mangled or refused on the way",
    SizeExceeded "size-exceeded" Warning
        "the message is larger than the server said it accepts",
    Bounce "bounce" Info
        "a delivery report: the message it reports on did not reach (all) its recipients",
    MessageAltered "message-altered" Warning
        "the same message (by Message-ID) was seen with another body: altered on the way, or a forgery",
    CaptureGap "capture-gap" Warning
        "bytes were not captured; what depends on them is incomplete",
    CaptureLimit "capture-limit" Warning
        "a size limit was reached and bytes were dropped, to keep memory bounded",
    ProtocolError "protocol-error" Info
        "the dialogue does not follow the protocol here",
    TlsUndecrypted "tls-undecrypted" Info
        "the encrypted part of this session cannot be read",
    OverlapConflict "overlap-conflict" Alert
        "two copies of the same TCP bytes differ: monitors and the receiver may each have read \
         another text (an evasion trick, or a broken stack)",
    DataAfterReset "data-after-reset" Warning
        "data came after the connection was reset: a monitor that stops at the reset misses it, \
         and a receiver that ignored the reset may have read it",
    UnansweredConnections "unanswered-connections" Warning
        "connection attempts the server never answered: a scan, a flood, or a server that is down",
    ControlCharacters "control-characters" Warning
        "captured text carries terminal control sequences that could rewrite what a terminal or \
         log viewer shows; mailscope shows them escaped",
    HostileFileName "hostile-file-name" Warning
        "an attachment name that could write outside a folder, name a device or hide its \
         extension if saved as given; exports use a safe name instead",
}
