//! A message being assembled from the wire: kept up to MAX_MESSAGE_BYTES, hashed and counted in
//! full, with the holes that capture gaps left in it.

use sha2::{Digest, Sha256};

use super::framing::MAX_MESSAGE_BYTES;
use super::CapturedMessage;
use crate::capture::Timestamp;

#[derive(Debug)]
pub struct MessageBuilder {
    bytes: Vec<u8>,
    hasher: Sha256,
    size: u64,
    hole_bytes: u64,
    ts: Timestamp,
}

impl MessageBuilder {
    pub fn new(ts: Timestamp) -> MessageBuilder {
        MessageBuilder {
            bytes: Vec::new(),
            hasher: Sha256::new(),
            size: 0,
            hole_bytes: 0,
            ts,
        }
    }

    pub fn append(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.size += data.len() as u64;
        let room = MAX_MESSAGE_BYTES.saturating_sub(self.bytes.len());
        let kept = data.get(..room).unwrap_or(data);
        self.bytes.extend_from_slice(kept);
    }

    pub fn hole(&mut self, len: u64) {
        self.hole_bytes += len;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(
        self,
        source: &'static str,
        complete: bool,
        mail_from: Option<String>,
        rcpt_to: Vec<String>,
    ) -> CapturedMessage {
        CapturedMessage {
            source,
            mailbox: None,
            uidvalidity: None,
            uid: None,
            flags: Vec::new(),
            section: None,
            part_of: None,
            parts: Vec::new(),
            truncated: self.size > self.bytes.len() as u64,
            partial: false,
            bytes: self.bytes,
            size: self.size,
            sha256: self.hasher.finalize().into(),
            complete: complete && self.hole_bytes == 0,
            hole_bytes: self.hole_bytes,
            mail_from,
            rcpt_to,
            ts: self.ts,
        }
    }
}
