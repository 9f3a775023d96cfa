//! mailscope's engine: bytes in, sessions out. No terminal code lives here.
//!
//! ```text
//! capture   PacketSource (file, live, memory)      -> Record::Frame / TlsKeyLog / Pause
//! decode    link + IP (+ defrag) + TCP headers     -> TcpSegment on a mail port
//! tcp       FlowTable, per-direction reassembly    -> StreamEvent { Data, Gap, Fin, Rst }
//! tls       key logs, records, handshakes, ciphers -> plaintext, TlsInfo
//! proto     SMTP, POP3, IMAP dissectors            -> ProtoEvent (exchange, auth, message, note)
//! session   per-connection glue and the model      -> Session, Exchange, Message to a SessionSink
//! analysis  Analyst, a SessionSink over the model  -> Finding; credentials; explanations
//! export    formatters over the model: NDJSON (+ECS), transcripts, folders, mbox, slices
//! pipeline  Analyzer::feed drives capture to tcp, synchronously and deterministically
//! ```
//!
//! - `capture` reads pcap and pcapng (plain, gzip, standard input) and live interfaces. It knows
//!   record framing and timestamps, nothing inside a frame.
//! - `decode` strips the link layer (Ethernet with VLAN tags, Linux cooked v1/v2, BSD loopback,
//!   raw IP), reassembles IP fragments, and keeps only TCP on mail ports. Every drop is counted.
//! - `tcp` keys connections, decides client and server, and turns each direction into an ordered
//!   byte stream where missing bytes are an explicit gap, within named memory limits.
//! - `tls` decrypts TLS 1.0 to 1.3 with the secrets of key logs or pcapng secrets blocks.
//! - `proto` turns each connection's two streams into commands, replies, logins and messages;
//!   `mime` turns message bytes into what a reader sees.
//! - `session` runs TLS and a dissector per connection (switching at STARTTLS), numbers and
//!   links messages, and hands each finished piece to a `SessionSink`.
//! - `analysis` watches those pieces and adds findings; `export` writes them out; `sanitize` is
//!   the one place that makes captured text safe for a terminal.
//! - `pipeline` ties capture, decode and tcp together for one run; the same capture always
//!   gives the same result.

#![forbid(unsafe_code)]
// Captures are hostile: nothing that input reaches may panic. Tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod analysis;
pub mod capture;
pub mod decode;
pub mod export;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod hex;
pub mod mime;
pub mod pipeline;
pub mod ports;
pub mod privileges;
pub mod proto;
pub mod sanitize;
pub mod secret;
pub mod session;
pub mod tcp;
pub mod tls;
