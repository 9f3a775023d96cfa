//! mailscope's engine: bytes in, sessions out. No terminal code lives here.
//!
//! ```text
//! capture   PacketSource (file, live, memory)      -> Record::Frame / Record::TlsKeyLog
//! decode    link + IP (+ defrag) + TCP headers     -> TcpSegment on a mail port
//! tcp       FlowTable, per-direction reassembly    -> StreamEvent { Data, Gap, Fin, Rst }
//! pipeline  Analyzer::feed drives the stages above, synchronously and deterministically
//! export    pure formatters over what the stages produced
//! ```
//!
//! - `capture` reads pcap and pcapng (plain, gzip, standard input) and live interfaces. It knows
//!   record framing and timestamps, nothing inside a frame.
//! - `decode` strips the link layer (Ethernet with VLAN tags, Linux cooked v1/v2, BSD loopback,
//!   raw IP), reassembles IP fragments, and keeps only TCP on mail ports. Every drop is counted.
//! - `tcp` keys connections, decides client and server, and turns each direction into an ordered
//!   byte stream where missing bytes are an explicit gap, within named memory limits.
//! - `pipeline` ties them together for one run; the same capture always gives the same result.
//! - `export` formats the results (flow tables, followed streams); `sanitize` is the one place
//!   that makes captured text safe for a terminal.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod capture;
pub mod decode;
pub mod export;
pub mod hex;
pub mod mime;
pub mod pipeline;
pub mod ports;
pub mod proto;
pub mod sanitize;
pub mod secret;
pub mod session;
pub mod tcp;
pub mod tls;
