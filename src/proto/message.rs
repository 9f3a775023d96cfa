//! A message being assembled from the wire: kept up to MAX_MESSAGE_BYTES, hashed and counted in
//! full, with the holes that capture gaps left in it.

use sha2::{Digest, Sha256};

use super::framing::MAX_MESSAGE_BYTES;
use super::CapturedMessage;
use crate::capture::Timestamp;

/// A sender's announced size is believed only once this much has arrived: an announcement
/// alone reserves nothing.
const BELIEVE_ANNOUNCED_AFTER: usize = 64 * 1024;

#[derive(Debug)]
pub struct MessageBuilder {
    bytes: Vec<u8>,
    hasher: Sha256,
    size: u64,
    hole_bytes: u64,
    ts: Timestamp,
    /// The size the sender announced (SMTP `SIZE=`, an IMAP literal's length), if any.
    announced: Option<u64>,
}

impl MessageBuilder {
    pub fn new(ts: Timestamp) -> MessageBuilder {
        MessageBuilder {
            bytes: Vec::new(),
            hasher: Sha256::new(),
            size: 0,
            hole_bytes: 0,
            ts,
            announced: None,
        }
    }

    /// A builder for a message whose sender said how large it is.
    pub fn announced(ts: Timestamp, size: Option<u64>) -> MessageBuilder {
        MessageBuilder {
            announced: size,
            ..MessageBuilder::new(ts)
        }
    }

    pub fn append(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.size += data.len() as u64;
        let room = MAX_MESSAGE_BYTES.saturating_sub(self.bytes.len());
        let kept = data.get(..room).unwrap_or(data);
        if kept.len() > self.bytes.capacity() - self.bytes.len() {
            self.grow_to_announced(kept.len());
        }
        self.bytes.extend_from_slice(kept);
    }

    /// Growing by doubling copies a large message once more in all; with an announced size
    /// past the first bytes, the buffer grows once to it (and a little more, as SMTP's
    /// `SIZE=` is approximate). Never past the cap; pages not written are not resident.
    fn grow_to_announced(&mut self, needed: usize) {
        let Some(announced) = self.announced else {
            return;
        };
        let announced = usize::try_from(announced).unwrap_or(usize::MAX);
        if self.bytes.len() < BELIEVE_ANNOUNCED_AFTER || announced <= self.bytes.len() + needed {
            return;
        }
        let target = announced
            .saturating_add(announced / 32 + 4096)
            .min(MAX_MESSAGE_BYTES);
        // Should the room not be had, growing by doubling is what was going to happen anyway.
        let _ = self.bytes.try_reserve_exact(target - self.bytes.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_size_is_believed_after_the_first_bytes_and_never_past_the_cap() {
        let mut claimed = MessageBuilder::announced(Timestamp::default(), Some(4 << 30));
        claimed.append(b"x");
        assert!(
            claimed.bytes.capacity() < BELIEVE_ANNOUNCED_AFTER,
            "an announcement alone reserves nothing"
        );
        claimed.append(&vec![b'x'; BELIEVE_ANNOUNCED_AFTER]);
        assert!(claimed.bytes.capacity() < 2 * BELIEVE_ANNOUNCED_AFTER);
        claimed.append(b"x");
        assert_eq!(claimed.bytes.capacity(), MAX_MESSAGE_BYTES);

        // Past the first bytes, an honest announcement grows the buffer once.
        let body: Vec<u8> = (0..1_000_000u32).map(|n| (n % 251) as u8).collect();
        let mut honest = MessageBuilder::announced(Timestamp::default(), Some(1_000_000));
        // (bytes held, capacity) at each growth.
        let mut growths = Vec::new();
        for piece in body.chunks(1448) {
            let (held, before) = (honest.bytes.len(), honest.bytes.capacity());
            honest.append(piece);
            if honest.bytes.capacity() != before {
                growths.push((held, honest.bytes.capacity()));
            }
        }
        let believed: Vec<_> = growths
            .iter()
            .filter(|&&(held, _)| held >= BELIEVE_ANNOUNCED_AFTER)
            .collect();
        assert_eq!(believed.len(), 1, "{growths:?}");
        let message = honest.finish("smtp", true, None, Vec::new());
        assert_eq!(message.bytes, body);
        assert_eq!(message.sha256, <[u8; 32]>::from(Sha256::digest(&body)));
    }
}
