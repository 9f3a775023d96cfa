//! Link layers: strip the link header and hand the rest to etherparse's IP slicer.
//! Ethernet (with 802.1Q and QinQ tags) is etherparse's; Linux cooked v1/v2 and BSD NULL are a
//! fixed-size header each, read here (etherparse has no SLL2 and no NULL).

use etherparse::{EtherType, LaxSlicedPacket};

use super::DropReason;
use crate::capture::LinkType;

/// Linux cooked capture v1: packet type, ARPHRD, address length, 8-byte address, protocol.
const SLL_HEADER: usize = 16;
const SLL_PROTOCOL_AT: usize = 14;
/// Linux cooked capture v2: protocol, reserved, interface index, ARPHRD, packet type, address
/// length, 8-byte address.
const SLL2_HEADER: usize = 20;
const SLL2_PROTOCOL_AT: usize = 0;
/// BSD loopback: a 4-byte address family in the byte order of the capturing host.
const NULL_HEADER: usize = 4;

pub(super) fn slice(link: LinkType, data: &[u8]) -> Result<LaxSlicedPacket<'_>, DropReason> {
    match link {
        LinkType::ETHERNET => {
            LaxSlicedPacket::from_ethernet(data).map_err(|_| DropReason::MalformedHeader)
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

fn cooked(
    data: &[u8],
    header: usize,
    protocol_at: usize,
) -> Result<LaxSlicedPacket<'_>, DropReason> {
    let protocol = data
        .get(protocol_at..)
        .and_then(|tail| tail.first_chunk::<2>())
        .ok_or(DropReason::MalformedHeader)?;
    let rest = data.get(header..).ok_or(DropReason::MalformedHeader)?;
    let ether_type = EtherType(u16::from_be_bytes(*protocol));
    match ether_type {
        EtherType::IPV4
        | EtherType::IPV6
        | EtherType::VLAN_TAGGED_FRAME
        | EtherType::PROVIDER_BRIDGING => Ok(LaxSlicedPacket::from_ether_type(ether_type, rest)),
        _ => Err(DropReason::NotIp),
    }
}

fn ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, DropReason> {
    match data.first().map(|b| b >> 4) {
        Some(4) | Some(6) => {
            LaxSlicedPacket::from_ip(data).map_err(|_| DropReason::MalformedHeader)
        }
        _ => Err(DropReason::NotIp),
    }
}
