//! Link layers: strip the link header (and any VLAN tags) down to the IP packet, which
//! etherparse's IP slicer reads. Ethernet and its 802.1Q/QinQ tags are read with etherparse's
//! slices; Linux cooked v1/v2 and BSD NULL are a fixed-size header each, read here (etherparse
//! has no SLL2 and no NULL).
//!
//! Not etherparse's whole-packet slicer: its result is a struct of several hundred bytes, moved
//! at each layer, and those moves were a third of the time decode took.

use etherparse::{
    EtherType, Ethernet2Slice, LaxMacsecPayloadSlice, LaxMacsecSlice, SingleVlanSlice,
};

use super::DropReason;
use crate::capture::LinkType;

/// Tags read before the IP header at most, as etherparse's slicer does.
const MAX_TAGS: usize = 3;

/// Linux cooked capture v1: packet type, ARPHRD, address length, 8-byte address, protocol.
const SLL_HEADER: usize = 16;
const SLL_PROTOCOL_AT: usize = 14;
/// Linux cooked capture v2: protocol, reserved, interface index, ARPHRD, packet type, address
/// length, 8-byte address.
const SLL2_HEADER: usize = 20;
const SLL2_PROTOCOL_AT: usize = 0;
/// BSD loopback: a 4-byte address family in the byte order of the capturing host.
const NULL_HEADER: usize = 4;

/// The IP packet the frame carries.
pub(super) fn slice(link: LinkType, data: &[u8]) -> Result<&[u8], DropReason> {
    match link {
        LinkType::ETHERNET => {
            let frame = Ethernet2Slice::from_slice_without_fcs(data)
                .map_err(|_| DropReason::MalformedHeader)?;
            ether_payload(frame.ether_type(), frame.payload_slice())
        }
        LinkType::LINUX_SLL => cooked(data, SLL_HEADER, SLL_PROTOCOL_AT),
        LinkType::LINUX_SLL2 => cooked(data, SLL2_HEADER, SLL2_PROTOCOL_AT),
        LinkType::NULL | LinkType::LOOP => {
            // The family value differs between systems (2 for IPv4; 10, 24, 28 or 30 for IPv6);
            // the IP version nibble says the same thing portably.
            ip(data.get(NULL_HEADER..).ok_or(DropReason::MalformedHeader)?)
        }
        LinkType::RAW
        | LinkType::RAW_OPENBSD
        | LinkType::RAW_BSDOS
        | LinkType::IPV4
        | LinkType::IPV6 => ip(data),
        _ => Err(DropReason::UnsupportedLinkType),
    }
}

fn cooked(data: &[u8], header: usize, protocol_at: usize) -> Result<&[u8], DropReason> {
    let protocol = data
        .get(protocol_at..)
        .and_then(|tail| tail.first_chunk::<2>())
        .ok_or(DropReason::MalformedHeader)?;
    let rest = data.get(header..).ok_or(DropReason::MalformedHeader)?;
    ether_payload(EtherType(u16::from_be_bytes(*protocol)), rest)
}

/// The IP packet behind an EtherType, past VLAN tags and MACsec headers that leave it in clear.
fn ether_payload(mut ether_type: EtherType, mut payload: &[u8]) -> Result<&[u8], DropReason> {
    for _ in 0..=MAX_TAGS {
        match ether_type {
            EtherType::IPV4 | EtherType::IPV6 => return Ok(payload),
            EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME => {
                let tag = SingleVlanSlice::from_slice(payload)
                    .map_err(|_| DropReason::MalformedHeader)?;
                (ether_type, payload) = (tag.ether_type(), tag.payload_slice());
            }
            EtherType::MACSEC => {
                let macsec =
                    LaxMacsecSlice::from_slice(payload).map_err(|_| DropReason::MalformedHeader)?;
                let LaxMacsecPayloadSlice::Unmodified(inner) = macsec.payload else {
                    return Err(DropReason::NotIp);
                };
                (ether_type, payload) = (inner.ether_type, inner.payload);
            }
            _ => return Err(DropReason::NotIp),
        }
    }
    Err(DropReason::NotIp)
}

fn ip(data: &[u8]) -> Result<&[u8], DropReason> {
    match data.first().map(|b| b >> 4) {
        Some(4) | Some(6) => Ok(data),
        _ => Err(DropReason::NotIp),
    }
}
