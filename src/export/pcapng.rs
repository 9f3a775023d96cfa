//! Writing a capture back as pcapng with TLS secrets embedded in a Decryption Secrets Block,
//! so that it opens decrypted in Wireshark with no key log beside it (what `editcap
//! --inject-secrets` does, limited to the secrets this capture's connections use). The block
//! layout is pcap-parser's serializer; this module only orders the blocks.

use std::collections::HashMap;
use std::io::{self, Write};

use pcap_parser::pcapng::{
    DecryptionSecretsBlock, EnhancedPacketBlock, InterfaceDescriptionBlock, SecretsType,
    SectionHeaderBlock,
};
use pcap_parser::{Linktype, ToVec};

use crate::capture::Frame;

/// Timestamps are written in nanoseconds (if_tsresol 9).
const NANOSECONDS: u8 = 9;

pub struct PcapngWriter<W: Write> {
    out: W,
    /// Interface id per link type, in the order they were met.
    interfaces: HashMap<u32, u32>,
    pub packets: u64,
}

fn serialized<E: std::fmt::Debug>(result: Result<Vec<u8>, E>) -> io::Result<Vec<u8>> {
    result.map_err(|e| io::Error::other(format!("pcapng block: {e:?}")))
}

impl<W: Write> PcapngWriter<W> {
    /// Starts the file: the section header, then the secrets (before any packet needing them).
    pub fn new(mut out: W, keylog: &[u8]) -> io::Result<PcapngWriter<W>> {
        let mut header = SectionHeaderBlock {
            block_type: 0,
            block_len1: 0,
            bom: 0,
            major_version: 1,
            minor_version: 0,
            section_len: -1,
            options: Vec::new(),
            block_len2: 0,
        };
        out.write_all(&serialized(header.to_vec())?)?;
        if !keylog.is_empty() {
            let mut secrets = DecryptionSecretsBlock {
                block_type: 0,
                block_len1: 0,
                secrets_type: SecretsType::TlsKeyLog,
                secrets_len: keylog.len() as u32,
                data: keylog,
                options: Vec::new(),
                block_len2: 0,
            };
            out.write_all(&serialized(secrets.to_vec())?)?;
        }
        Ok(PcapngWriter {
            out,
            interfaces: HashMap::new(),
            packets: 0,
        })
    }

    pub fn frame(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        let next = self.interfaces.len() as u32;
        let interface = match self.interfaces.get(&frame.link.0) {
            Some(&id) => id,
            None => {
                let mut description = InterfaceDescriptionBlock {
                    block_type: 0,
                    block_len1: 0,
                    linktype: Linktype(frame.link.0 as i32),
                    reserved: 0,
                    snaplen: 0,
                    options: Vec::new(),
                    block_len2: 0,
                    if_tsresol: NANOSECONDS,
                    if_tsoffset: 0,
                };
                self.out.write_all(&serialized(description.to_vec())?)?;
                self.interfaces.insert(frame.link.0, next);
                next
            }
        };
        let ns = frame.ts.0 as u64;
        let mut packet = EnhancedPacketBlock {
            block_type: 0,
            block_len1: 0,
            if_id: interface,
            ts_high: (ns >> 32) as u32,
            ts_low: ns as u32,
            caplen: frame.data.len() as u32,
            origlen: frame.orig_len,
            data: frame.data,
            options: Vec::new(),
            block_len2: 0,
        };
        self.out.write_all(&serialized(packet.to_vec())?)?;
        self.packets += 1;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}
