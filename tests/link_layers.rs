//! Every link layer and IP fragmentation must give the same streams as the original capture.
//! The frames of real samples (tcpdump on lo, Ethernet framing) are rewritten here into VLAN and
//! QinQ tagged Ethernet, MACsec with integrity only, BSD loopback in both byte orders, raw IP, and IPv4/IPv6 fragments
//! delivered last-first.

mod common;

use mailscope::capture::{LinkType, MemoryFrame};

const ETHERNET_HEADER: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
const IPV6_HEADER: usize = 40;
/// Fragment payload size: a multiple of 8, small enough to cut every data segment.
const FRAGMENT: usize = 24;

fn original(name: &str) -> Vec<MemoryFrame> {
    let frames = common::frames(&common::sample(name));
    assert!(frames.iter().all(|f| f.link == LinkType::ETHERNET));
    frames
}

fn rewrite(
    frames: &[MemoryFrame],
    link: LinkType,
    f: impl Fn(&[u8]) -> Vec<Vec<u8>>,
) -> Vec<MemoryFrame> {
    frames
        .iter()
        .flat_map(|frame| {
            f(&frame.data).into_iter().map(move |data| MemoryFrame {
                ts: frame.ts,
                link,
                data,
            })
        })
        .collect()
}

fn split_ethernet(data: &[u8]) -> (&[u8], [u8; 2], &[u8]) {
    (&data[..12], [data[12], data[13]], &data[ETHERNET_HEADER..])
}

fn assert_same_streams(name: &str, variant: &str, frames: Vec<MemoryFrame>) {
    let want = common::run_frames(original(name));
    let got = common::run_frames(frames);
    assert!(
        want.streams.values().any(|s| s.bytes.len() > 100),
        "{name} has data"
    );
    assert_eq!(got.streams, want.streams, "{variant}");
    let endpoints = |c: &common::Collected| {
        c.flows
            .values()
            .map(|f| (f.client, f.server))
            .collect::<Vec<_>>()
    };
    assert_eq!(endpoints(&got), endpoints(&want), "{variant}");
}

#[test]
fn vlan_qinq_macsec_loopback_and_raw_ip() {
    let name = "variants/smtp-small.pcap";
    let frames = original(name);
    let vlan = rewrite(&frames, LinkType::ETHERNET, |d| {
        let (macs, ethertype, rest) = split_ethernet(d);
        vec![[macs, &[0x81, 0x00, 0x00, 0x64], &ethertype, rest].concat()]
    });
    let qinq = rewrite(&frames, LinkType::ETHERNET, |d| {
        let (macs, ethertype, rest) = split_ethernet(d);
        vec![[
            macs,
            &[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x64],
            &ethertype,
            rest,
        ]
        .concat()]
    });
    // MACsec with integrity only (802.1AE, E and C clear): the SecTAG (TCI/AN, short length,
    // packet number), the original EtherType and payload in clear, then a 16-byte ICV.
    let macsec = rewrite(&frames, LinkType::ETHERNET, |d| {
        let (macs, ethertype, rest) = split_ethernet(d);
        let secure = [&ethertype[..], rest].concat();
        let short_len = if secure.len() < 48 {
            secure.len() as u8
        } else {
            0
        };
        vec![[
            macs,
            &[0x88, 0xe5, 0x00, short_len, 0, 0, 0, 1],
            &secure,
            &[0xaa; 16],
        ]
        .concat()]
    });
    let null = rewrite(&frames, LinkType::NULL, |d| {
        vec![[&[2, 0, 0, 0], split_ethernet(d).2].concat()]
    });
    let looped = rewrite(&frames, LinkType::LOOP, |d| {
        vec![[&[0, 0, 0, 2], split_ethernet(d).2].concat()]
    });
    let raw = rewrite(&frames, LinkType::RAW, |d| {
        vec![split_ethernet(d).2.to_vec()]
    });
    for (variant, frames) in [
        ("802.1Q", vlan),
        ("QinQ", qinq),
        ("MACsec", macsec),
        ("NULL", null),
        ("LOOP", looped),
        ("raw IP", raw),
    ] {
        assert_same_streams(name, variant, frames);
    }
}

/// IPv4 fragments of FRAGMENT bytes, last fragment first.
fn fragment_ipv4(data: &[u8], id: u16) -> Vec<Vec<u8>> {
    let (macs, ethertype, ip) = split_ethernet(data);
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ethertype != ETHERTYPE_IPV4 || total - header_len <= FRAGMENT {
        return vec![data.to_vec()];
    }
    let payload = &ip[header_len..total];
    let mut out = Vec::new();
    for (i, chunk) in payload.chunks(FRAGMENT).enumerate() {
        let mut header = ip[..header_len].to_vec();
        header[2..4].copy_from_slice(&((header_len + chunk.len()) as u16).to_be_bytes());
        header[4..6].copy_from_slice(&id.to_be_bytes());
        let more = (i + 1) * FRAGMENT < payload.len();
        let flags_offset = ((i * FRAGMENT / 8) as u16) | if more { 0x2000 } else { 0 };
        header[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        header[10..12].copy_from_slice(&[0, 0]); // checksum is not checked
        out.push([macs, &ethertype, &header, chunk].concat());
    }
    out.reverse();
    out
}

/// IPv6 fragments (a Fragment extension header after the fixed header), last fragment first.
fn fragment_ipv6(data: &[u8], id: u32) -> Vec<Vec<u8>> {
    let (macs, ethertype, ip) = split_ethernet(data);
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if ethertype != ETHERTYPE_IPV6 || payload_len <= FRAGMENT {
        return vec![data.to_vec()];
    }
    let next_header = ip[6];
    let payload = &ip[IPV6_HEADER..IPV6_HEADER + payload_len];
    let mut out = Vec::new();
    for (i, chunk) in payload.chunks(FRAGMENT).enumerate() {
        let mut header = ip[..IPV6_HEADER].to_vec();
        header[4..6].copy_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
        header[6] = 44;
        let more = (i + 1) * FRAGMENT < payload.len();
        let offset_flags = (((i * FRAGMENT / 8) as u16) << 3) | u16::from(more);
        let fragment_header = [
            &[next_header, 0][..],
            &offset_flags.to_be_bytes(),
            &id.to_be_bytes(),
        ]
        .concat();
        out.push([macs, &ethertype, &header, &fragment_header, chunk].concat());
    }
    out.reverse();
    out
}

#[test]
fn ipv4_and_ipv6_fragments_are_reassembled() {
    let v4 = "variants/smtp-small.pcap";
    let frames = original(v4);
    let fragmented: Vec<MemoryFrame> = frames
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            fragment_ipv4(&f.data, i as u16)
                .into_iter()
                .map(|data| MemoryFrame { data, ..f.clone() })
        })
        .collect();
    assert!(fragmented.len() > frames.len() * 2, "data packets were cut");
    assert_same_streams(v4, "IPv4 fragments", fragmented);

    let v6 = "variants/smtp-ipv6.pcap";
    let frames = original(v6);
    let fragmented: Vec<MemoryFrame> = frames
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            fragment_ipv6(&f.data, i as u32)
                .into_iter()
                .map(|data| MemoryFrame { data, ..f.clone() })
        })
        .collect();
    assert!(fragmented.len() > frames.len() * 2, "data packets were cut");
    assert_same_streams(v6, "IPv6 fragments", fragmented);
}
