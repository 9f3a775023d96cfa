//! Decode: the second stage. A link-layer [`Frame`] becomes a [`TcpSegment`] on a mail port, or
//! is dropped with a counted [`DropReason`]. Link layers are in `link`, IP fragment reassembly in
//! `defrag`; the IP and TCP grammar is etherparse's (lax mode, so that a packet cut short by the
//! snapshot length still yields its headers).
//!
//! A packet cut short keeps the bytes that were captured as data and reports the rest as
//! `missing`, which the TCP stage turns into a gap: missing bytes never become data.

mod defrag;
mod link;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use etherparse::{LaxIpSlice, TcpSlice};

use crate::capture::{Frame, LinkType, Timestamp};
use crate::ports::MailPorts;
use crate::tcp::SeqNumber;

/// The TCP flags the reassembler acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// One TCP segment on a mail port, borrowed from its frame (or from the defragmenter).
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub frame: u64,
    pub ts: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    /// The payload bytes that were captured.
    pub payload: &'a [u8],
    /// Payload bytes the headers announce but the capture cut off (snapshot length).
    pub missing: u32,
    /// The length of the frame on the wire.
    pub wire_len: u32,
}

/// Why a frame did not become a mail segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    UnsupportedLinkType,
    NotIp,
    NotTcp,
    NotMailPort,
    /// A link, IP or TCP header that is cut short or invalid.
    MalformedHeader,
    /// A fragment held until the rest of its datagram arrives (not lost: counted while waiting).
    FragmentHeld,
    /// A fragment that overlaps wrongly, overflows 64 KiB, or was pushed out by the limit.
    FragmentRejected,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::UnsupportedLinkType,
        DropReason::NotIp,
        DropReason::NotTcp,
        DropReason::NotMailPort,
        DropReason::MalformedHeader,
        DropReason::FragmentHeld,
        DropReason::FragmentRejected,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            DropReason::UnsupportedLinkType => "unsupported link type",
            DropReason::NotIp => "not IP",
            DropReason::NotTcp => "not TCP",
            DropReason::NotMailPort => "TCP not on a mail port",
            DropReason::MalformedHeader => "malformed or truncated header",
            DropReason::FragmentHeld => "IP fragment (held for reassembly)",
            DropReason::FragmentRejected => "IP fragment rejected",
        }
    }
}

/// Counters of what the decoder did, and the one-time warnings it raised.
#[derive(Clone, Debug, Default)]
pub struct DecodeStats {
    pub segments: u64,
    pub dropped: [u64; DropReason::ALL.len()],
    /// Segments whose IP header claims more bytes than the frame holds although the capture did
    /// not cut it: a broken or hostile packet (what is there is still used).
    pub overlong_claims: u64,
    pub truncated_segments: u64,
    pub reassembled_datagrams: u64,
    pub warnings: Vec<String>,
}

impl DecodeStats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason as usize).copied().unwrap_or(0)
    }

    fn count_drop(&mut self, reason: DropReason) {
        // `dropped` has one slot per variant (`DropReason::ALL`), so this always finds one.
        if let Some(count) = self.dropped.get_mut(reason as usize) {
            *count += 1;
        }
    }
}

pub struct Decoder {
    ports: MailPorts,
    defrag: defrag::Defragmenter,
    warned_links: HashSet<(u32, LinkType)>,
    pub stats: DecodeStats,
}

impl Decoder {
    pub fn new(ports: MailPorts) -> Decoder {
        Decoder {
            ports,
            defrag: defrag::Defragmenter::default(),
            warned_links: HashSet::new(),
            stats: DecodeStats::default(),
        }
    }

    /// Decodes one frame. Counts every drop; warns once per interface about a link type it cannot
    /// read.
    pub fn decode<'a>(&'a mut self, frame: &Frame<'a>) -> Option<TcpSegment<'a>> {
        let Decoder {
            ports,
            defrag,
            warned_links,
            stats,
        } = self;
        match try_decode(ports, defrag, stats, frame) {
            Ok(segment) => {
                stats.segments += 1;
                if segment.missing > 0 {
                    stats.truncated_segments += 1;
                }
                Some(segment)
            }
            Err(reason) => {
                stats.count_drop(reason);
                if reason == DropReason::UnsupportedLinkType
                    && warned_links.insert((frame.interface, frame.link))
                {
                    stats.warnings.push(format!(
                        "interface {}: link type {} is not supported; its packets are skipped",
                        frame.interface, frame.link.0
                    ));
                }
                None
            }
        }
    }
}

fn try_decode<'a>(
    ports: &MailPorts,
    defrag: &'a mut defrag::Defragmenter,
    stats: &mut DecodeStats,
    frame: &Frame<'a>,
) -> Result<TcpSegment<'a>, DropReason> {
    let (packet, _) = LaxIpSlice::from_slice(link::slice(frame.link, frame.data)?)
        .map_err(|_| DropReason::MalformedHeader)?;
    let cut_by_snaplen = (frame.orig_len as usize).saturating_sub(frame.data.len());
    let ip = Ip::from_slice(&packet);
    if ip.payload.fragmented {
        let datagram = defrag.add(&ip, frame.ts)?;
        stats.reassembled_datagrams += 1;
        let tcp = TcpSlice::from_slice(datagram).map_err(|_| DropReason::MalformedHeader)?;
        return segment(ports, frame, ip.src, ip.dst, tcp, 0);
    }
    if ip.payload.ip_number != etherparse::IpNumber::TCP {
        return Err(DropReason::NotTcp);
    }
    let tcp = TcpSlice::from_slice(ip.payload.payload).map_err(|_| DropReason::MalformedHeader)?;
    let missing = if ip.payload.incomplete {
        let announced = ip
            .claimed_payload_len
            .saturating_sub(ip.payload.payload.len());
        if announced > cut_by_snaplen {
            stats.overlong_claims += 1;
        }
        announced.min(cut_by_snaplen)
    } else {
        0
    };
    segment(ports, frame, ip.src, ip.dst, tcp, missing as u32)
}

fn segment<'a>(
    ports: &MailPorts,
    frame: &Frame<'a>,
    src: IpAddr,
    dst: IpAddr,
    tcp: TcpSlice<'a>,
    missing: u32,
) -> Result<TcpSegment<'a>, DropReason> {
    let (sport, dport) = (tcp.source_port(), tcp.destination_port());
    if !ports.is_mail(sport) && !ports.is_mail(dport) {
        return Err(DropReason::NotMailPort);
    }
    Ok(TcpSegment {
        frame: frame.index,
        ts: frame.ts,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        seq: SeqNumber(tcp.sequence_number()),
        ack: SeqNumber(tcp.acknowledgment_number()),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload: tcp.payload(),
        missing,
        wire_len: frame.orig_len,
    })
}

/// The fragment header among an IPv6 packet's extension headers, if it fragments the payload:
/// (identification, offset in 8-byte units, more fragments). The chain is walked here because
/// etherparse's iterator over it reads past the end of a cut chain (found by `fuzz/` decode).
fn ipv6_fragment(first: u8, mut chain: &[u8]) -> Option<(u32, u16, bool)> {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AUTH: u8 = 51;
    const DESTINATION_OPTIONS: u8 = 60;
    let mut next = first;
    loop {
        let len = match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS => (usize::from(*chain.get(1)?) + 1) * 8,
            AUTH => (usize::from(*chain.get(1)?) + 2) * 4,
            FRAGMENT => {
                let header: [u8; 8] = chain.get(..8)?.try_into().ok()?;
                let [_, _, position @ .., i0, i1, i2, i3] = header;
                let position = u16::from_be_bytes(position);
                let (offset, more) = (position >> 3, position & 1 == 1);
                let id = u32::from_be_bytes([i0, i1, i2, i3]);
                return (offset != 0 || more).then_some((id, offset, more));
            }
            _ => return None,
        };
        next = *chain.first()?;
        chain = chain.get(len..)?;
    }
}

/// The IP layer of a packet, with what the defragmenter and the truncation check need.
pub(crate) struct Ip<'p, 'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub payload: &'p etherparse::LaxIpPayloadSlice<'a>,
    /// The payload length the header announces.
    pub claimed_payload_len: usize,
    /// Fragment identity and position: (identification, offset in 8-byte units, more fragments).
    pub fragment: Option<(u32, u16, bool)>,
}

impl<'p, 'a> Ip<'p, 'a> {
    fn from_slice(packet: &'p LaxIpSlice<'a>) -> Ip<'p, 'a> {
        match packet {
            LaxIpSlice::Ipv4(v4) => {
                let header = v4.header();
                let claimed =
                    usize::from(header.total_len()).saturating_sub(usize::from(header.ihl()) * 4);
                let fragment = header.is_fragmenting_payload().then(|| {
                    (
                        u32::from(header.identification()),
                        header.fragments_offset().value(),
                        header.more_fragments(),
                    )
                });
                Ip {
                    src: IpAddr::V4(header.source_addr()),
                    dst: IpAddr::V4(header.destination_addr()),
                    payload: v4.payload(),
                    claimed_payload_len: claimed,
                    fragment,
                }
            }
            LaxIpSlice::Ipv6(v6) => {
                let header = v6.header();
                let claimed = usize::from(header.payload_length())
                    .saturating_sub(v6.extensions().slice().len());
                let fragment = ipv6_fragment(header.next_header().0, v6.extensions().slice());
                Ip {
                    src: IpAddr::V6(header.source_addr()),
                    dst: IpAddr::V6(header.destination_addr()),
                    payload: v6.payload(),
                    claimed_payload_len: claimed,
                    fragment,
                }
            }
        }
    }
}
