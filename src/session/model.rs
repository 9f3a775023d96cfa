//! The model users see: sessions (one per connection on a mail port), with their exchanges,
//! authentications, messages and notes. Built by the session layer, read by outputs and the UI.

use std::net::SocketAddr;

use crate::capture::Timestamp;
use crate::mime::MessageView;
use crate::ports::Service;
use crate::proto::{AuthAttempt, CapturedMessage, MailboxEntry, MailboxState, Note, Upgrade};
use crate::tcp::FlowEnd;
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
    /// What the TLS layer saw and made of it.
    pub info: TlsInfo,
}

impl TlsStatus {
    pub fn decrypted(&self) -> bool {
        self.mode != TlsMode::None && self.info.decrypted()
    }

    /// Why the TLS part is not (all) readable.
    pub fn error(&self) -> Option<&str> {
        self.info.error.as_deref()
    }
}

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
    pub auth: Vec<AuthAttempt>,
    pub capabilities: Vec<String>,
    /// The mailbox as POP3 LIST and UIDL showed it.
    pub mailbox: Vec<MailboxEntry>,
    /// IMAP: the selected mailbox as the dialogue so far has it.
    pub selected: Option<MailboxState>,
    pub exchanges: u64,
    pub messages: u64,
    pub gaps: u64,
    pub notes: Vec<Note>,
    pub ended: Option<FlowEnd>,
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
}
