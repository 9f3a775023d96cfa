//! The messages of the selected mailbox as the dialogue identifies them: sequence number to UID
//! (every FETCH response names the sequence number, many also the UID; EXPUNGE renumbers), the
//! flags last seen, and which captured messages were a whole message and which were parts of it,
//! so that a header or section fetch attaches to its message whichever of them came first.

use std::collections::HashMap;

/// Messages followed per selected mailbox; past this the rest are not linked (a hostile server
/// can name endless sequence numbers, and EXPUNGE renumbers all the ones above it).
const MAX_SLOTS: usize = 10_000;
/// Parts remembered per message.
const MAX_PARTS: usize = 64;

/// Where a message is kept in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(usize);

#[derive(Debug, Default)]
struct Entry {
    uid: Option<u64>,
    flags: Option<Vec<String>>,
    /// The session's message number of the whole message, once captured.
    whole: Option<usize>,
    /// Parts captured before the whole message was.
    parts: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<Entry>,
    /// Sorted by sequence number.
    by_seq: Vec<(u64, Slot)>,
    by_uid: HashMap<u64, Slot>,
}

impl Catalog {
    /// Another mailbox is selected (or none): sequence numbers and UIDs mean other messages.
    pub fn clear(&mut self) {
        *self = Catalog::default();
    }

    /// A FETCH response about message `seq`, with what it says of its UID and flags.
    pub fn seen(&mut self, seq: u64, uid: Option<u64>, flags: Option<Vec<String>>) -> Option<Slot> {
        let at_seq = self.by_seq.binary_search_by_key(&seq, |&(s, _)| s);
        let known = uid
            .and_then(|u| self.by_uid.get(&u).copied())
            .or_else(|| self.by_seq.get(at_seq.ok()?).map(|&(_, slot)| slot));
        let slot = match known {
            Some(slot) => slot,
            None if self.entries.len() < MAX_SLOTS => {
                self.entries.push(Entry::default());
                Slot(self.entries.len() - 1)
            }
            None => return None,
        };
        match at_seq {
            Ok(i) => {
                if let Some((_, at_slot)) = self.by_seq.get_mut(i) {
                    *at_slot = slot;
                }
            }
            Err(i) => self.by_seq.insert(i, (seq, slot)),
        }
        let entry = self.entries.get_mut(slot.0)?;
        if let Some(uid) = uid {
            entry.uid = Some(uid);
            self.by_uid.insert(uid, slot);
        }
        if flags.is_some() {
            entry.flags = flags;
        }
        Some(slot)
    }

    // A slot kept from before `clear` may name no entry: it then has no UID, flags or parts.
    pub fn uid(&self, slot: Slot) -> Option<u64> {
        self.entries.get(slot.0)?.uid
    }

    pub fn flags(&self, slot: Slot) -> Vec<String> {
        self.entries
            .get(slot.0)
            .and_then(|entry| entry.flags.clone())
            .unwrap_or_default()
    }

    /// The message was captured whole as the session's message `number`: the parts captured
    /// before it.
    pub fn whole(&mut self, slot: Slot, number: usize) -> Vec<usize> {
        let Some(entry) = self.entries.get_mut(slot.0) else {
            return Vec::new();
        };
        entry.whole.get_or_insert(number);
        std::mem::take(&mut entry.parts)
    }

    /// A part of the message was captured as the session's message `number`: the whole message
    /// if it was captured before.
    pub fn part(&mut self, slot: Slot, number: usize) -> Option<usize> {
        let entry = self.entries.get_mut(slot.0)?;
        if entry.whole.is_none() && entry.parts.len() < MAX_PARTS {
            entry.parts.push(number);
        }
        entry.whole
    }

    /// `* n EXPUNGE`: message `seq` is gone and the ones above it move down by one.
    pub fn expunge(&mut self, seq: u64) {
        let from = match self.by_seq.binary_search_by_key(&seq, |&(s, _)| s) {
            Ok(i) => {
                self.by_seq.remove(i);
                i
            }
            Err(i) => i,
        };
        for (s, _) in self.by_seq.iter_mut().skip(from) {
            *s -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expunge_renumbers_and_uids_survive_it() {
        let mut c = Catalog::default();
        let two = c.seen(2, None, None).unwrap();
        let three = c.seen(3, Some(30), None).unwrap();
        c.expunge(1);
        // Message 3 is now 2, and still UID 30; what was 2 is now 1.
        assert_eq!(c.seen(2, None, None), Some(three));
        assert_eq!(c.seen(1, Some(20), None), Some(two));
        assert_eq!(c.uid(two), Some(20));
        c.expunge(1);
        assert_eq!(c.seen(1, Some(30), None), Some(three));
    }

    #[test]
    fn parts_attach_whichever_comes_first() {
        let mut c = Catalog::default();
        let slot = c.seen(5, None, None).unwrap();
        assert_eq!(c.part(slot, 0), None);
        assert_eq!(c.part(slot, 1), None);
        assert_eq!(c.whole(slot, 2), vec![0, 1]);
        assert_eq!(c.part(slot, 3), Some(2));
    }

    #[test]
    fn bounded() {
        let mut c = Catalog::default();
        for seq in 0..(MAX_SLOTS as u64 + 10) {
            c.seen(seq, Some(seq), None);
        }
        assert_eq!(c.entries.len(), MAX_SLOTS);
        assert_eq!(c.seen(u64::MAX, None, None), None);
    }
}
