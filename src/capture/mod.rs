//! Capture: the first stage. Packet sources (capture files, live interfaces, memory) turn their
//! input into [`Record`]s: link-layer frames with a capture time, and the TLS secrets a pcapng file
//! carries. Nothing here looks inside a frame.
//!
//! Sources push records into a callback rather than returning them, so a frame can borrow the
//! reader's buffer without a copy. The callback may stop the read early (`ControlFlow::Break`).

mod file;
mod live;
mod memory;

use std::fmt;
use std::ops::ControlFlow;

pub use file::FileSource;
pub use live::{LiveOptions, LiveSource, DEFAULT_LIVE_SNAPLEN};
pub use memory::{MemoryFrame, MemorySource};

/// A capture time, nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_parts(secs: i64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(i64::from(nanos)),
        )
    }

    /// Nanoseconds elapsed since `earlier` (zero if `earlier` is later: captures are not always
    /// in time order).
    pub fn since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }
}

impl fmt::Display for Timestamp {
    /// Unix seconds with microseconds, the form of the NDJSON contract.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.div_euclid(1000);
        write!(
            f,
            "{}.{:06}",
            micros.div_euclid(1_000_000),
            micros.rem_euclid(1_000_000)
        )
    }
}

/// A link-layer header type, as numbered by tcpdump.org's LINKTYPE_ values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW_OPENBSD: LinkType = LinkType(12);
    pub const RAW_BSDOS: LinkType = LinkType(14);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// One captured packet as it came off the wire or out of the file.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// 1-based position in the input, as Wireshark numbers frames.
    pub index: u64,
    pub ts: Timestamp,
    pub link: LinkType,
    /// The pcapng interface (0 for classic pcap and live captures).
    pub interface: u32,
    /// The captured bytes; shorter than `orig_len` when the snapshot length cut the packet.
    pub data: &'a [u8],
    pub orig_len: u32,
}

/// What a source hands to its consumer.
#[derive(Debug)]
pub enum Record<'a> {
    Frame(Frame<'a>),
    /// The body of a pcapng Decryption Secrets Block of type TLS key log (NSS key log lines).
    TlsKeyLog(&'a [u8]),
    /// The source has handed out all it holds: what comes next may take a while (the rest of
    /// a pipe, the next live packet). Outputs write out what they hold here.
    Pause,
}

/// What a source returns once it stops without a fatal error at its start.
#[derive(Debug, Default)]
pub struct ReadSummary {
    pub frames: u64,
    /// Set when the input ended in a fault after some records were read: those records were still
    /// delivered, and the caller reports a partial read.
    pub fault: Option<CaptureError>,
    /// A live capture: what libpcap counted.
    pub drops: Option<LiveDrops>,
}

/// A live capture's packet counts, from libpcap (pcap_stats): packets the filter passed, and
/// packets lost because mailscope did not read them fast enough (the kernel's buffer was
/// full) or that the interface itself dropped.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveDrops {
    pub received: u32,
    pub kernel: u32,
    pub interface: u32,
}

pub trait PacketSource: Send {
    /// A name for messages: the file name, `-` for standard input, or the interface.
    fn name(&self) -> &str;

    /// Reads records until the input ends, a fault stops it, or `deliver` breaks.
    fn read(
        &mut self,
        deliver: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Result<ReadSummary, CaptureError>;
}

/// Why a capture could not be read (in full).
#[derive(Debug, thiserror::Error)]
#[error("{source_name}{}: {kind}", at.map(|p| format!(", {p}")).unwrap_or_default())]
pub struct CaptureError {
    pub source_name: String,
    /// Where in the input the fault is.
    pub at: Option<Position>,
    pub kind: CaptureErrorKind,
}

/// A place in a capture, numbered from 1 as Wireshark numbers frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// A classic pcap packet record (the file header is not counted).
    Record(u64),
    /// A pcapng block of any type.
    Block(u64),
    /// A packet of a live capture.
    Packet(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Record(n) => write!(f, "record {n}"),
            Position::Block(n) => write!(f, "block {n}"),
            Position::Packet(n) => write!(f, "packet {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureErrorKind {
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    #[error("read failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("not a pcap or pcapng capture (the first bytes are neither format's magic number)")]
    NotACapture,
    #[error("the file is empty")]
    Empty,
    #[error("the capture ends in the middle of a record (truncated file)")]
    Truncated,
    #[error("record length {claimed} exceeds the {limit}-byte limit (corrupt length field)")]
    RecordTooLarge { claimed: u64, limit: usize },
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Live(String),
}
